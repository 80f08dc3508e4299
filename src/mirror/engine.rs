//! The mirroring engine shared by [`Mirror`](super::Mirror) and the router.

use std::fmt;
use std::future::poll_fn;
use std::panic::AssertUnwindSafe;
use std::pin::pin;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes};
use futures_util::future::{select, Either};
use futures_util::FutureExt;
use http::header::{self, HeaderName, HeaderValue};
use http::uri::Authority;
use http::{Request, Response, Uri};
use http_body::Body;
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use tower::ServiceExt;
use tower_service::Service;

use tower::BoxError;

use super::body::{CopyState, MirrorBody, RequestSample, Tee};
use super::captured::Captured;
use super::spawn::Spawn;
use super::stats::{Outcome, Stats};
use crate::control::{threshold as state_threshold, InFlight};
use crate::error::ConfigError;
use crate::RequestHead;

type Predicate = dyn Fn(&RequestHead<'_>) -> bool + Send + Sync;

/// Marks a request as a mirrored copy: found in the copy's extensions, so a
/// handler can skip side effects (writes, emails, billing).
///
/// ```
/// # use http::Request;
/// use tower_rollout::mirror::Mirrored;
/// fn should_write(req: &Request<()>) -> bool {
///     req.extensions().get::<Mirrored>().is_none()
/// }
/// # assert!(should_write(&Request::new(())));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct Mirrored;

/// Settings of the mirroring engine, validated when the engine is built.
pub(crate) struct Engine {
    sample: AtomicU32,
    max_in_flight: usize,
    predicate: Option<Arc<Predicate>>,
    max_body_bytes: u64,
    buffer_frames: usize,
    timeout: Duration,
    strip: Vec<HeaderName>,
    marker: HeaderName,
    authority_suffix: Option<String>,
    spawner: Arc<dyn Spawn>,
    permits: Arc<Semaphore>,
    pub(crate) stats: Arc<Stats>,
}

pub(crate) struct EngineParts {
    pub(crate) sample: f64,
    pub(crate) predicate: Option<Arc<Predicate>>,
    pub(crate) max_in_flight: usize,
    pub(crate) max_body_bytes: u64,
    pub(crate) buffer_frames: usize,
    pub(crate) timeout: Duration,
    pub(crate) strip: Vec<HeaderName>,
    pub(crate) marker: HeaderName,
    pub(crate) authority_suffix: Option<String>,
    pub(crate) spawner: Arc<dyn Spawn>,
}

impl Engine {
    pub(crate) fn new(p: EngineParts) -> Result<Engine, ConfigError> {
        let sample = crate::error::check_fraction("sample", p.sample)?;
        let positive = |setting, ok: bool| {
            if ok {
                Ok(())
            } else {
                Err(ConfigError::MustBePositive { setting })
            }
        };
        positive("max_in_flight", p.max_in_flight > 0)?;
        positive("max_body_bytes", p.max_body_bytes > 0)?;
        positive("buffer_frames", p.buffer_frames > 0)?;
        positive("timeout", !p.timeout.is_zero())?;
        if p.max_in_flight > Semaphore::MAX_PERMITS {
            return Err(ConfigError::TooLarge {
                setting: "max_in_flight",
            });
        }
        if p.buffer_frames > Semaphore::MAX_PERMITS {
            return Err(ConfigError::TooLarge {
                setting: "buffer_frames",
            });
        }
        if let Some(suffix) = &p.authority_suffix {
            if suffix.is_empty() || Authority::try_from(format!("host{suffix}")).is_err() {
                return Err(ConfigError::InvalidAuthoritySuffix {
                    suffix: suffix.clone(),
                });
            }
        }
        Ok(Engine {
            sample: AtomicU32::new(state_threshold(sample)),
            max_in_flight: p.max_in_flight,
            predicate: p.predicate,
            max_body_bytes: p.max_body_bytes,
            buffer_frames: p.buffer_frames,
            timeout: p.timeout,
            strip: p.strip,
            marker: p.marker,
            authority_suffix: p.authority_suffix,
            spawner: p.spawner,
            permits: Arc::new(Semaphore::new(p.max_in_flight)),
            stats: Arc::new(Stats::new()),
        })
    }

    pub(crate) fn stats(&self) -> super::MirrorStats {
        let running = self.max_in_flight - self.permits.available_permits();
        self.stats.snapshot(running as u64)
    }

    pub(crate) fn spawner(&self) -> Arc<dyn Spawn> {
        self.spawner.clone()
    }

    pub(crate) fn set_sample(&self, fraction: f64) -> Result<(), ConfigError> {
        let f = crate::error::check_fraction("sample", fraction)?;
        self.sample.store(state_threshold(f), Ordering::Relaxed);
        Ok(())
    }

    /// The layer's own sampling: one relaxed load, and a random draw only
    /// when the fraction is strictly between 0 and 1.
    #[inline]
    pub(crate) fn sample_hit(&self) -> bool {
        crate::control::hit(self.sample.load(Ordering::Relaxed))
    }

    /// Sends a copy of `req` to `shadow` in the background when the predicate
    /// and the bounds allow, and returns the request for the primary: the
    /// same head and exactly the same body frames.
    ///
    /// With `lane`, the running copy is counted there until it ends (the
    /// router counts copies on its standby's version, so `drained` and a
    /// retirement wait for them).
    pub(crate) fn copy<B, T, TB>(
        &self,
        req: Request<B>,
        shadow: T,
        lane: Option<InFlight>,
    ) -> Request<MirrorBody<B>>
    where
        B: Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
        T: Service<Request<MirrorBody<B>>, Response = Response<TB>> + Send + 'static,
        T::Future: Send + 'static,
        TB: Body + Send + 'static,
        TB::Data: Send,
    {
        self.copy_with(req, shadow, lane, None).req
    }

    /// [`copy`](Self::copy), and then, with `followup`, collect the shadow's
    /// response (up to a cap) and hand the result to the follow-up inside the
    /// same task, still holding the permit. Also tells whether the copy
    /// started.
    pub(crate) fn copy_with<B, T, TB>(
        &self,
        req: Request<B>,
        shadow: T,
        lane: Option<InFlight>,
        followup: Option<Followup>,
    ) -> Teed<B>
    where
        B: Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
        T: Service<Request<MirrorBody<B>>, Response = Response<TB>> + Send + 'static,
        T::Future: Send + 'static,
        TB: Body + Send + 'static,
        TB::Data: Send,
    {
        // No second copy: any service type fits the absent one; the shadow's
        // own meets the bounds.
        self.copy_pair(req, shadow, lane, followup, None::<Second<T>>)
    }

    /// [`copy_with`](Self::copy_with), and a second copy of the same request
    /// to `second` (the noise-floor secondary), under its own permit. The
    /// second copy is made only when the first one starts.
    pub(crate) fn copy_pair<B, T, TB, U, UB>(
        &self,
        req: Request<B>,
        shadow: T,
        lane: Option<InFlight>,
        followup: Option<Followup>,
        second: Option<Second<U>>,
    ) -> Teed<B>
    where
        B: Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
        T: Service<Request<MirrorBody<B>>, Response = Response<TB>> + Send + 'static,
        T::Future: Send + 'static,
        TB: Body + Send + 'static,
        TB::Data: Send,
        U: Service<Request<MirrorBody<B>>, Response = Response<UB>> + Send + 'static,
        U::Future: Send + 'static,
        UB: Body + Send + 'static,
        UB::Data: Send,
    {
        if let Some(predicate) = &self.predicate {
            if !predicate(&RequestHead::of(&req)) {
                return Teed::untouched(req, CopyStart::NotChosen);
            }
        }
        let guard = lane;
        self.stats.sampled();
        let hint = req.body().size_hint();
        if hint.lower() > self.max_body_bytes {
            self.stats.count(Outcome::OverBudget);
            return Teed::untouched(req, CopyStart::NotStarted);
        }
        let Ok(permit) = self.permits.clone().try_acquire_owned() else {
            self.stats.count(Outcome::Saturated);
            return Teed::untouched(req, CopyStart::NotStarted);
        };
        let second = second.and_then(|Second { svc, followup }| {
            self.stats.sampled();
            match self.permits.clone().try_acquire_owned() {
                Ok(permit) => Some((svc, followup, permit)),
                Err(_) => {
                    self.stats.count(Outcome::Saturated);
                    None
                }
            }
        });
        let (parts, body) = req.into_parts();
        // The head first: a request whose headers cannot be copied is not
        // mirrored (counted with the over-budget copies), never a panic.
        let Some(head) = self.copy_head(&parts) else {
            self.stats.count(Outcome::OverBudget);
            if second.is_some() {
                self.stats.count(Outcome::OverBudget);
            }
            return Teed::untouched(Request::from_parts(parts, body), CopyStart::NotStarted);
        };
        let mut tee = (!body.is_end_stream()).then(|| Tee::new(self.max_body_bytes));
        let mut prepare = |sample: Option<RequestSample>| {
            let state = CopyState::new(self.stats.clone());
            let body = match tee.as_mut() {
                None => MirrorBody::empty(),
                Some(tee) => {
                    let (tx, rx) = mpsc::channel(self.buffer_frames);
                    tee.add(tx, state.clone());
                    MirrorBody::shadow(rx, state.clone(), hint, sample)
                }
            };
            let mut req = Request::new(body);
            *req.method_mut() = head.method().clone();
            *req.version_mut() = head.version();
            *req.uri_mut() = head.uri().clone();
            *req.headers_mut() = head.headers().clone();
            req.extensions_mut().insert(Mirrored);
            (req, state)
        };
        let (first_req, first_state) = prepare(followup.as_ref().map(|f| f.request.clone()));
        let second = second.map(|(svc, followup, permit)| {
            let (req, state) = prepare(Some(followup.request.clone()));
            (svc, followup, permit, req, state)
        });
        let primary_body = match tee {
            Some(tee) => MirrorBody::tee(body, tee),
            None => MirrorBody::new(body),
        };
        let started = self.spawn(self.stats.telemetry.instrument(shadow_task(
            shadow,
            first_req,
            SettleOnDrop(first_state.clone()),
            Hold {
                permit,
                lane: guard,
            },
            Deadline {
                spawner: self.spawner.clone(),
                after: self.timeout,
            },
            self.stats.clone(),
            followup,
        )));
        if !started {
            // The task was dropped with its request: the tee sees the channel
            // closed and stops copying.
            first_state.settle(Outcome::NoExecutor);
        }
        if let Some((svc, followup, permit, req, state)) = second {
            let task = shadow_task(
                svc,
                req,
                SettleOnDrop(state.clone()),
                Hold { permit, lane: None },
                Deadline {
                    spawner: self.spawner.clone(),
                    after: self.timeout,
                },
                self.stats.clone(),
                Some(followup),
            );
            if !started || !self.spawn(self.stats.telemetry.instrument(task)) {
                state.settle(Outcome::NoExecutor);
            }
        }
        let start = if started {
            CopyStart::Started
        } else {
            CopyStart::NotStarted
        };
        Teed {
            req: Request::from_parts(parts, primary_body),
            start,
        }
    }

    fn spawn(&self, task: impl std::future::Future<Output = ()> + Send + 'static) -> bool {
        self.spawner.spawn(Box::pin(task)).is_ok()
    }

    /// The head of a copy; `None` when its headers would not fit a
    /// `HeaderMap` (a request with tens of thousands of headers).
    fn copy_head(&self, parts: &http::request::Parts) -> Option<Request<()>> {
        let mut copy = Request::new(());
        *copy.method_mut() = parts.method.clone();
        *copy.version_mut() = parts.version;
        *copy.uri_mut() = parts.uri.clone();
        let headers = copy.headers_mut();
        headers.try_reserve(parts.headers.len() + 1).ok()?;
        for (name, value) in &parts.headers {
            if !self.strip.contains(name) {
                headers.try_append(name.clone(), value.clone()).ok()?;
            }
        }
        headers
            .try_insert(self.marker.clone(), HeaderValue::from_static("1"))
            .ok()?;
        if let Some(suffix) = &self.authority_suffix {
            rewrite_authority(&mut copy, suffix);
        }
        copy.extensions_mut().insert(Mirrored);
        Some(copy)
    }
}

/// Appends `suffix` to the host (before any port), in the URI and in `Host`,
/// like Envoy's `-shadow`. A result that does not parse leaves the copy as it
/// was.
fn rewrite_authority(req: &mut Request<()>, suffix: &str) {
    let with_suffix = |authority: &str| -> Option<String> {
        let a = Authority::try_from(authority).ok()?;
        let out = match a.port() {
            Some(port) => format!("{}{suffix}:{port}", a.host()),
            None => format!("{}{suffix}", a.host()),
        };
        Authority::try_from(out.as_str()).ok().map(|_| out)
    };
    if let Some(authority) = req.uri().authority().map(|a| a.as_str().to_owned()) {
        if let Some(new) = with_suffix(&authority) {
            let mut parts = req.uri().clone().into_parts();
            parts.authority = Authority::try_from(new).ok();
            if let Ok(uri) = Uri::from_parts(parts) {
                *req.uri_mut() = uri;
            }
        }
    }
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .and_then(with_suffix);
    if let Some(host) = host.and_then(|h| HeaderValue::try_from(h).ok()) {
        req.headers_mut().insert(header::HOST, host);
    }
}

/// The primary's request after [`Engine::copy_with`], and whether a copy
/// started.
pub(crate) struct Teed<B> {
    pub(crate) req: Request<MirrorBody<B>>,
    pub(crate) start: CopyStart,
}

impl<B> Teed<B> {
    fn untouched(req: Request<B>, start: CopyStart) -> Self {
        Teed {
            req: req.map(MirrorBody::new),
            start,
        }
    }
}

/// A second copy of a request (the comparison's noise-floor secondary).
pub(crate) struct Second<U> {
    pub(crate) svc: U,
    pub(crate) followup: Followup,
}

/// What a shadow task holds until it ends: its permit, and the count of the
/// copy on the standby's version (through the router).
struct Hold {
    permit: OwnedSemaphorePermit,
    lane: Option<InFlight>,
}

/// Where a shadow task's deadline timer comes from, and when it fires.
struct Deadline {
    spawner: Arc<dyn Spawn>,
    after: Duration,
}

/// Whether [`Engine::copy_with`] started a copy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CopyStart {
    Started,
    /// The predicate did not choose the request.
    NotChosen,
    /// Chosen, but not started: over budget, saturated or no executor.
    NotStarted,
}

/// What happened to a copy whose response is collected for a follow-up.
#[derive(Debug)]
pub(crate) enum ShadowResult {
    /// The shadow answered; its whole response, and its latency.
    Answered(Box<Captured>, Duration),
    /// The shadow answered with a body over the cap.
    OverCap,
    /// The shadow's service or response body failed.
    Error,
    /// The shadow missed its deadline.
    Timeout,
    /// The shadow panicked.
    Panic,
    /// The copy was abandoned while streaming (slow shadow, budget, primary
    /// stopped early): the shadow never saw the whole request.
    Dropped,
}

/// Work to do with a collected shadow response, off the request path.
pub(crate) struct Followup {
    /// The largest shadow response body collected.
    pub(crate) cap: u64,
    /// Where the start of the request body is kept.
    pub(crate) request: RequestSample,
    pub(crate) then: Box<dyn FnOnce(ShadowResult) -> super::spawn::BoxTask + Send>,
    /// Set when the shadow's task first runs: a follow-up dropped before
    /// then was never started.
    pub(crate) began: Option<Arc<std::sync::atomic::AtomicBool>>,
}

enum Collected {
    Drained,
    Whole(Box<Captured>),
    OverCap,
}

/// Runs one shadow request to the end of its response body, under the
/// deadline, catching panics; settles the copy's outcome; then runs the
/// follow-up, if any, still holding the permit.
async fn shadow_task<T, B, TB>(
    shadow: T,
    req: Request<B>,
    state: SettleOnDrop,
    hold: Hold,
    deadline: Deadline,
    stats: Arc<Stats>,
    followup: Option<Followup>,
) where
    T: Service<Request<B>, Response = Response<TB>>,
    TB: Body,
{
    if let Some(began) = followup.as_ref().and_then(|f| f.began.as_ref()) {
        began.store(true, Ordering::Release);
    }
    // The permit is released when the task ends; the lane once the standby
    // has answered.
    let Hold {
        permit: _permit,
        lane: lane_guard,
    } = hold;
    let state = &state.0;
    let start = Instant::now();
    // Made here, inside the executor, rather than on the request path.
    let deadline = deadline.spawner.sleep(deadline.after);
    let cap = followup.as_ref().map(|f| f.cap);
    let work = async move {
        let res = shadow.oneshot(req).await.map_err(drop)?;
        let (head, body) = res.into_parts();
        let mut body = pin!(body);
        let mut collected = cap.map(|_| (Vec::<Bytes>::new(), 0u64, None));
        let mut over = false;
        while let Some(frame) = poll_fn(|cx| body.as_mut().poll_frame(cx)).await {
            let frame = frame.map_err(drop)?;
            let (Some((chunks, len, trailers)), Some(cap)) = (collected.as_mut(), cap) else {
                continue;
            };
            match frame.into_data() {
                Ok(mut data) => {
                    *len += data.remaining() as u64;
                    if *len > cap {
                        over = true;
                    } else if !over {
                        chunks.push(data.copy_to_bytes(data.remaining()));
                    }
                }
                Err(frame) => {
                    if let Ok(t) = frame.into_trailers() {
                        *trailers = Some(t);
                    }
                }
            }
        }
        Ok::<_, ()>(match collected {
            None => Collected::Drained,
            Some(_) if over => Collected::OverCap,
            Some((chunks, _, trailers)) => Collected::Whole(Box::new(Captured {
                status: head.status,
                headers: head.headers,
                body: chunks.concat().into(),
                trailers,
            })),
        })
    };
    let work = pin!(AssertUnwindSafe(work).catch_unwind());
    let result = match select(work, deadline).await {
        Either::Left((Ok(Ok(collected)), _)) => {
            let elapsed = start.elapsed();
            if state.settle(Outcome::Completed) {
                stats.latency(elapsed);
                match collected {
                    Collected::Whole(c) => ShadowResult::Answered(c, elapsed),
                    Collected::OverCap | Collected::Drained => ShadowResult::OverCap,
                }
            } else {
                ShadowResult::Dropped
            }
        }
        Either::Left((Ok(Err(())), _)) => {
            if state.settle(Outcome::Error) {
                stats.latency(start.elapsed());
                ShadowResult::Error
            } else {
                ShadowResult::Dropped
            }
        }
        Either::Left((Err(_panic), _)) => {
            if state.settle(Outcome::Panic) {
                ShadowResult::Panic
            } else {
                ShadowResult::Dropped
            }
        }
        Either::Right(((), _)) => {
            if state.settle(Outcome::Timeout) {
                ShadowResult::Timeout
            } else {
                ShadowResult::Dropped
            }
        }
    };
    // The standby has answered: it is no longer busy with this copy, even if
    // the comparison still waits for the primary.
    drop(lane_guard);
    if let Some(f) = followup {
        (f.then)(result).await;
    }
}

/// Settles a copy as skipped when its task is dropped before settling it
/// (an executor that drops tasks, a runtime shutting down); a no-op after
/// the task settled it.
pub(crate) struct SettleOnDrop(pub(crate) Arc<CopyState>);

impl Drop for SettleOnDrop {
    fn drop(&mut self) {
        self.0.settle(Outcome::NoExecutor);
    }
}

impl fmt::Debug for Engine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Engine")
            .field("max_body_bytes", &self.max_body_bytes)
            .field("buffer_frames", &self.buffer_frames)
            .field("timeout", &self.timeout)
            .field("strip", &self.strip)
            .field("marker", &self.marker)
            .field("authority_suffix", &self.authority_suffix)
            .finish_non_exhaustive()
    }
}
