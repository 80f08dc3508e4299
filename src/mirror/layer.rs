use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use http::header::{self, HeaderName};
use tower_layer::Layer;

use super::engine::{Engine, EngineParts};
use super::service::Mirror;
use super::spawn::Spawn;
use super::stats::MirrorStats;
use crate::error::{header_name, ConfigError};
use crate::telemetry::{Name, Owner};
use crate::RequestHead;

/// Copies sampled requests to a shadow service. Made by [`MirrorLayer::new`]
/// or [`MirrorLayer::builder`]. See the [module docs](super).
#[derive(Clone)]
pub struct MirrorLayer<T> {
    shadow: T,
    engine: Arc<Engine>,
}

impl<T> MirrorLayer<T> {
    /// Mirrors every request to `shadow` with the default bounds (see
    /// [`MirrorBuilder`]), and returns the handle that reads its counters.
    pub fn new(shadow: T) -> (Self, MirrorHandle) {
        MirrorLayer::builder(shadow)
            .build()
            .expect("the default mirror settings are valid")
    }

    /// A builder for the sample fraction, bounds and header handling.
    pub fn builder(shadow: T) -> MirrorBuilder<T> {
        MirrorBuilder::new(shadow)
    }

    /// A handle on this layer's counters and sample fraction.
    pub fn handle(&self) -> MirrorHandle {
        MirrorHandle {
            engine: self.engine.clone(),
        }
    }
}

impl<S, T: Clone> Layer<S> for MirrorLayer<T> {
    type Service = Mirror<S, T>;

    fn layer(&self, primary: S) -> Mirror<S, T> {
        Mirror::from_parts(primary, self.shadow.clone(), self.engine.clone())
    }
}

impl<T: fmt::Debug> fmt::Debug for MirrorLayer<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MirrorLayer")
            .field("shadow", &self.shadow)
            .field("engine", &self.engine)
            .finish()
    }
}

/// Reads a mirror's counters and changes its sample fraction at run time.
#[derive(Clone, Debug)]
pub struct MirrorHandle {
    pub(crate) engine: Arc<Engine>,
}

impl MirrorHandle {
    /// A snapshot of the counters.
    pub fn stats(&self) -> MirrorStats {
        self.engine.stats()
    }

    /// Sets the fraction of requests copied to the shadow.
    ///
    /// # Errors
    /// [`ConfigError::InvalidFraction`] when `fraction` is NaN or outside
    /// `0..=1`; the fraction is unchanged then.
    pub fn set_sample(&self, fraction: f64) -> Result<(), ConfigError> {
        self.engine.set_sample(fraction)
    }
}

type Predicate = dyn Fn(&RequestHead<'_>) -> bool + Send + Sync;

/// Settings of a mirror, each with a default that is safe in production.
///
/// `MirrorLayer::builder(shadow)` starts one for a [`MirrorLayer`];
/// [`MirrorLayer::settings`] starts one without a shadow for
/// [`router::Builder::mirror`](crate::router::Builder::mirror), where the
/// shadow is the standby color and the fraction comes from
/// [`RolloutHandle::mirror_standby`](crate::RolloutHandle::mirror_standby).
/// Setters never panic; a bad value is returned as a [`ConfigError`] by
/// [`build`](MirrorBuilder::build).
pub struct MirrorBuilder<T = ()> {
    shadow: T,
    sample: f64,
    predicate: Option<Arc<Predicate>>,
    max_in_flight: usize,
    max_body_bytes: u64,
    buffer_frames: usize,
    timeout: Duration,
    strip: Vec<HeaderName>,
    keep_credentials: bool,
    marker: HeaderName,
    authority_suffix: Option<String>,
    spawner: Option<Arc<dyn Spawn>>,
    name: Name,
    error: Option<ConfigError>,
}

/// The header that marks mirrored copies unless set otherwise.
pub const DEFAULT_MARKER: &str = "x-rollout-mirror";

impl MirrorLayer<()> {
    /// Mirror settings without a shadow, for
    /// [`router::Builder::mirror`](crate::router::Builder::mirror).
    pub fn settings() -> MirrorBuilder<()> {
        MirrorBuilder::new(())
    }
}

impl<T> MirrorBuilder<T> {
    fn new(shadow: T) -> Self {
        MirrorBuilder {
            shadow,
            sample: 1.0,
            predicate: None,
            max_in_flight: 64,
            max_body_bytes: 1024 * 1024,
            buffer_frames: 16,
            timeout: Duration::from_secs(5),
            strip: Vec::new(),
            keep_credentials: false,
            marker: HeaderName::from_static(DEFAULT_MARKER),
            authority_suffix: None,
            spawner: None,
            name: Name::default(),
            error: None,
        }
    }

    /// The fraction of requests copied, `0.0..=1.0`. Default 1 (every request
    /// the predicate allows). Changeable later with
    /// [`MirrorHandle::set_sample`]. Ignored by the router, whose fraction is
    /// set with `mirror_standby`.
    pub fn sample(mut self, fraction: f64) -> Self {
        self.sample = fraction;
        self
    }

    /// Only requests for which `predicate` returns true are copied (for
    /// example: only `POST /predict`, never writes). Default: all.
    pub fn predicate<F>(mut self, predicate: F) -> Self
    where
        F: Fn(&RequestHead<'_>) -> bool + Send + Sync + 'static,
    {
        self.predicate = Some(Arc::new(predicate));
        self
    }

    /// At most this many shadow requests run at once; beyond it new copies are
    /// dropped and counted, never queued. Default 64.
    pub fn max_in_flight(mut self, n: usize) -> Self {
        self.max_in_flight = n;
        self
    }

    /// A copy whose request body exceeds this many bytes is abandoned (and
    /// never started when the body's size is known to exceed it). Memory held
    /// for shadows is bounded by `max_in_flight × max_body_bytes`. Default 1 MiB.
    pub fn max_body_bytes(mut self, bytes: u64) -> Self {
        self.max_body_bytes = bytes;
        self
    }

    /// How many body frames may wait for a slow shadow before its copy is
    /// abandoned. Default 16.
    pub fn buffer_frames(mut self, frames: usize) -> Self {
        self.buffer_frames = frames;
        self
    }

    /// The shadow's deadline, from the copy's start to the end of the shadow's
    /// response body; independent of the primary. Default 5 s.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Also removes this header from copies. `authorization`, `cookie` and
    /// `proxy-authorization` are removed unless [`keep_credentials`](Self::keep_credentials).
    pub fn strip_header<K>(mut self, name: K) -> Self
    where
        K: TryInto<HeaderName> + Clone + fmt::Debug,
    {
        match header_name("strip header", name) {
            Ok(name) => self.strip.push(name),
            Err(e) => {
                self.error.get_or_insert(e);
            }
        }
        self
    }

    /// Copies credential headers to the shadow too. Off by default: a shadow
    /// should not act with a user's credentials.
    pub fn keep_credentials(mut self, keep: bool) -> Self {
        self.keep_credentials = keep;
        self
    }

    /// The header set to `1` on every copy, so handlers can skip side
    /// effects; copies also carry the [`Mirrored`](super::Mirrored) extension.
    /// Default `x-rollout-mirror`.
    pub fn marker_header<K>(mut self, name: K) -> Self
    where
        K: TryInto<HeaderName> + Clone + fmt::Debug,
    {
        match header_name("marker header", name) {
            Ok(name) => self.marker = name,
            Err(e) => {
                self.error.get_or_insert(e);
            }
        }
        self
    }

    /// Appends `suffix` to the host of each copy's URI and `Host` header, like
    /// Envoy's `-shadow`: with `"-shadow"`, `api.local:8080` becomes
    /// `api.local-shadow:8080`. Default: unchanged.
    pub fn authority_suffix(mut self, suffix: impl Into<String>) -> Self {
        self.authority_suffix = Some(suffix.into());
        self
    }

    /// Runs shadow work on this executor. Default: [`TokioSpawner`](super::TokioSpawner)
    /// with the `tokio` feature.
    pub fn spawner<X: Spawn>(mut self, spawner: X) -> Self {
        self.spawner = Some(Arc::new(spawner));
        self
    }

    /// The name that labels this mirror's metrics and tracing events (see
    /// [`telemetry`](crate::telemetry)): 1 to 64 ASCII letters, digits, `_`,
    /// `-`, `.`, `:` or `/`. Default `"default"`. Ignored by the router and
    /// the comparator, which label their copies with their own names.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        match Name::new(name) {
            Ok(name) => self.name = name,
            Err(e) => {
                self.error.get_or_insert(e);
            }
        }
        self
    }

    pub(crate) fn engine(self) -> Result<(T, Engine), ConfigError> {
        if let Some(e) = self.error {
            return Err(e);
        }
        let mut strip = self.strip;
        if !self.keep_credentials {
            strip.extend([
                header::AUTHORIZATION,
                header::COOKIE,
                header::PROXY_AUTHORIZATION,
            ]);
        }
        let spawner = match self.spawner {
            Some(s) => s,
            None => default_spawner()?,
        };
        let engine = Engine::new(EngineParts {
            sample: self.sample,
            predicate: self.predicate,
            max_in_flight: self.max_in_flight,
            max_body_bytes: self.max_body_bytes,
            buffer_frames: self.buffer_frames,
            timeout: self.timeout,
            strip,
            marker: self.marker,
            authority_suffix: self.authority_suffix,
            spawner,
        })?;
        Ok((self.shadow, engine))
    }

    /// Builds the layer and the handle that reads its counters.
    ///
    /// # Errors
    /// The first invalid setting: a fraction outside `0..=1`, a zero limit,
    /// budget or timeout, an invalid header name or authority suffix, or no
    /// executor, or an invalid name.
    pub fn build(self) -> Result<(MirrorLayer<T>, MirrorHandle), ConfigError> {
        let name = self.name.clone();
        let (shadow, engine) = self.engine()?;
        engine.stats.telemetry.attach(&name, Owner::Mirror);
        let engine = Arc::new(engine);
        let handle = MirrorHandle {
            engine: engine.clone(),
        };
        Ok((MirrorLayer { shadow, engine }, handle))
    }
}

#[cfg(feature = "tokio")]
fn default_spawner() -> Result<Arc<dyn Spawn>, ConfigError> {
    Ok(Arc::new(super::TokioSpawner))
}

#[cfg(not(feature = "tokio"))]
fn default_spawner() -> Result<Arc<dyn Spawn>, ConfigError> {
    Err(ConfigError::MissingSpawner)
}

impl<T: fmt::Debug> fmt::Debug for MirrorBuilder<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MirrorBuilder")
            .field("shadow", &self.shadow)
            .field("sample", &self.sample)
            .field("max_in_flight", &self.max_in_flight)
            .field("max_body_bytes", &self.max_body_bytes)
            .field("timeout", &self.timeout)
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}
