//! Live-traffic drift between the two colors during a canary (feature
//! `drift`): the answers each color gives to its own users, sampled and
//! capped, compared as distributions.
//!
//! The comparison ([`shadow`](crate::shadow)) measures drift over mirrored
//! pairs: both versions' answers to the same requests. Once a canary sends
//! real users to the candidate, the candidate's answers to *its* users can be
//! compared with the stable color's answers to the others. A
//! [`LiveDriftLayer`], put around the router, takes a sampled fraction of the
//! answers (2xx, bodies up to a cap, never a full copy of every body), reads
//! the router's served-by header to know which color and version answered,
//! and counts the configured fields of each in a bounded sample per color
//! ([`Drift`](crate::drift::Drift)), per pair of versions (the active color's
//! and the standby's: a promote or a deploy starts a new pair; the last 8 are
//! kept). [`RolloutHandle::live_drift`] reads the current pair, and
//! [`Gate::live_drift`](crate::plan::Gate::live_drift) gates a plan's canary
//! steps on it.
//!
//! The two samples come from different users, so unlike mirrored pairs
//! they differ by the users' own mix as well: a sticky split by user id
//! keeps that mix comparable; a split by region or tenant does not.
//!
//! ```
//! use std::convert::Infallible;
//! use http::{Request, Response};
//! use tower::{service_fn, Layer};
//! use tower_rollout::drift::{DriftField, DriftSettings};
//! use tower_rollout::live::LiveDriftLayer;
//! use tower_rollout::BlueGreenRouter;
//!
//! # fn main() -> Result<(), tower_rollout::ConfigError> {
//! let svc = service_fn(|_: Request<String>| async {
//!     Ok::<_, Infallible>(Response::new(String::from(r#"{"label": "setosa"}"#)))
//! });
//! let (router, handle) = BlueGreenRouter::builder()
//!     .served_by_header("x-served-by")
//!     .build(svc.clone(), svc)?;
//! let live = LiveDriftLayer::builder(
//!     &handle,
//!     DriftSettings::new([DriftField::categorical("/label")?]),
//!     "x-served-by",
//! )
//! .sample(0.05)       // one answer in 20
//! .max_body(16 << 10) // bodies up to 16 KiB, larger ones counted apart
//! .build()?;
//! let app = live.layer(router);
//! # drop(app);
//! # Ok(())
//! # }
//! ```

mod body;
mod state;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{HeaderName, Request, Response};
use pin_project_lite::pin_project;
use rand::RngExt;
use tower_layer::Layer;
use tower_service::Service;

pub use body::LiveBody;
use body::Tap;
use state::Answer;
pub use state::LiveDriftReport;
pub(crate) use state::LiveState;

use crate::control::ColorVersion;
use crate::drift::DriftSettings;
use crate::error::{check_fraction, header_name};
use crate::{ConfigError, RolloutHandle};

/// The default fraction of answers sampled.
pub const DEFAULT_SAMPLE: f64 = 0.1;
/// The default cap on a sampled body (64 KiB).
pub const DEFAULT_MAX_BODY: usize = 64 << 10;

/// Samples live answers of both colors into the router's live drift; see
/// the [module docs](self).
#[derive(Clone)]
pub struct LiveDriftLayer {
    shared: Arc<Shared>,
}

/// Builds a [`LiveDriftLayer`]; invalid settings fail in
/// [`build`](Self::build).
pub struct LiveDriftBuilder {
    handle: RolloutHandle,
    settings: DriftSettings,
    header: Result<HeaderName, ConfigError>,
    sample: f64,
    max_body: usize,
}

/// What the layer's services share.
struct Shared {
    handle: RolloutHandle,
    state: Arc<LiveState>,
    header: HeaderName,
    sample: f64,
    max_body: usize,
}

impl LiveDriftLayer {
    /// A layer for the router steered by `handle`, counting `settings`'
    /// fields, reading the color and version of each answer from the
    /// router's served-by header `served_by` (the name given to
    /// [`served_by_header`](crate::router::Builder::served_by_header)).
    pub fn builder<K>(
        handle: &RolloutHandle,
        settings: DriftSettings,
        served_by: K,
    ) -> LiveDriftBuilder
    where
        K: TryInto<HeaderName> + Clone + std::fmt::Debug,
    {
        LiveDriftBuilder {
            handle: handle.clone(),
            settings,
            header: header_name("live drift served-by header", served_by),
            sample: DEFAULT_SAMPLE,
            max_body: DEFAULT_MAX_BODY,
        }
    }
}

impl LiveDriftBuilder {
    /// The fraction of answers sampled (0.1 by default; 0 samples nothing).
    /// `build` rejects a value outside `0..=1`.
    pub fn sample(mut self, fraction: f64) -> Self {
        self.sample = fraction;
        self
    }

    /// The largest body copied (64 KiB by default); a larger answer is
    /// counted in [`LiveDriftReport::over_cap`], not parsed. `build` rejects
    /// 0.
    pub fn max_body(mut self, bytes: usize) -> Self {
        self.max_body = bytes;
        self
    }

    /// Checks the settings, attaches the live samples to the router (a
    /// second layer for the same router replaces the first's), and returns
    /// the layer.
    ///
    /// # Errors
    /// [`ConfigError::InvalidHeaderName`], [`ConfigError::InvalidFraction`]
    /// (setting `live drift sample`), [`ConfigError::MustBePositive`]
    /// (setting `live drift max_body`).
    pub fn build(self) -> Result<LiveDriftLayer, ConfigError> {
        let header = self.header?;
        let sample = check_fraction("live drift sample", self.sample)?;
        if self.max_body == 0 {
            return Err(ConfigError::MustBePositive {
                setting: "live drift max_body",
            });
        }
        let state = Arc::new(LiveState::new(self.settings));
        self.handle.control.replace(state.clone());
        Ok(LiveDriftLayer {
            shared: Arc::new(Shared {
                handle: self.handle,
                state,
                header,
                sample,
                max_body: self.max_body,
            }),
        })
    }
}

impl Shared {
    /// Counts an answer of `served` against the versions in the colors now.
    fn observe(&self, served: &ColorVersion, answer: Answer<'_>) {
        let (active, standby) = sides(&self.handle);
        self.state.observe(served, active, standby, answer);
    }
}

impl<S> Layer<S> for LiveDriftLayer {
    type Service = LiveDriftService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        LiveDriftService {
            inner,
            shared: self.shared.clone(),
        }
    }
}

/// The service of a [`LiveDriftLayer`].
#[derive(Clone)]
pub struct LiveDriftService<S> {
    inner: S,
    shared: Arc<Shared>,
}

impl<S, ReqB, ResB> Service<Request<ReqB>> for LiveDriftService<S>
where
    S: Service<Request<ReqB>, Response = Response<ResB>>,
    ResB: http_body::Body,
{
    type Response = Response<LiveBody<ResB>>;
    type Error = S::Error;
    type Future = LiveFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqB>) -> Self::Future {
        let s = self.shared.sample;
        let sampled = s > 0.0 && (s >= 1.0 || rand::rng().random::<f64>() < s);
        LiveFuture {
            inner: self.inner.call(req),
            shared: sampled.then(|| self.shared.clone()),
        }
    }
}

pin_project! {
    /// The response future of a [`LiveDriftService`].
    pub struct LiveFuture<F> {
        #[pin]
        inner: F,
        shared: Option<Arc<Shared>>,
    }
}

impl<F, B, E> Future for LiveFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
    B: http_body::Body,
{
    type Output = Result<Response<LiveBody<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let res = match this.inner.poll(cx) {
            Poll::Ready(res) => res?,
            Poll::Pending => return Poll::Pending,
        };
        // Only a 2xx answer with a served-by header the router wrote.
        let tap = this.shared.take().and_then(|shared| {
            let served = res
                .headers()
                .get(&shared.header)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| ColorVersion::from_served_by(v).ok())?;
            res.status().is_success().then(|| Tap::new(shared, served))
        });
        Poll::Ready(Ok(res.map(|body| LiveBody::new(body, tap))))
    }
}

impl RolloutHandle {
    /// The live drift of the pair of versions in the colors now (the active
    /// color's answers against the standby's), from a [`LiveDriftLayer`];
    /// `None` without one, or before the pair's first sampled answer.
    pub fn live_drift(&self) -> Option<LiveDriftReport> {
        let state = self.control.attached::<LiveState>()?;
        current(self, &state)
    }

    /// Every pair of versions the live drift kept (at most 8), oldest
    /// first.
    pub fn live_drift_reports(&self) -> Vec<LiveDriftReport> {
        self.control
            .attached::<LiveState>()
            .map(|s| s.reports())
            .unwrap_or_default()
    }
}

/// The current pair's report.
pub(crate) fn current(handle: &RolloutHandle, state: &LiveState) -> Option<LiveDriftReport> {
    let (active, standby) = sides(handle);
    state.report(&active, &standby)
}

/// The active and the standby color with their versions, read together.
fn sides(handle: &RolloutHandle) -> (ColorVersion, ColorVersion) {
    let st = handle.control.state();
    let side = |color: crate::Color| ColorVersion {
        color,
        version: st.version(color).label.clone(),
    };
    (side(st.active), side(st.active.other()))
}

impl std::fmt::Debug for LiveDriftLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveDriftLayer")
            .field("header", &self.shared.header)
            .field("sample", &self.shared.sample)
            .field("max_body", &self.shared.max_body)
            .finish_non_exhaustive()
    }
}

impl<S: std::fmt::Debug> std::fmt::Debug for LiveDriftService<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveDriftService")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for LiveDriftBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveDriftBuilder")
            .field("sample", &self.sample)
            .field("max_body", &self.max_body)
            .finish_non_exhaustive()
    }
}
