use std::fmt;
use std::sync::Arc;

use http::{HeaderName, Request};

use super::mode::{Mode, Plain};
use super::{BlueGreenLayer, BlueGreenRouter};
use crate::control::{
    Classifier, Control, Finished, Initial, Observer, RolloutHandle, VersionLabel,
};
use crate::error::{header_name, ConfigError};
use crate::telemetry::{Name, RouterTelemetry};
use crate::{Color, RequestHead};

type KeyFn = dyn Fn(&RequestHead<'_>) -> Option<u64> + Send + Sync;
type AllowFn = dyn Fn(&RequestHead<'_>) -> bool + Send + Sync;
type MakeMode<M> = Box<dyn FnOnce(&Name) -> Result<M, ConfigError> + Send>;

/// Configures a [`BlueGreenRouter`] or [`BlueGreenLayer`] beyond the defaults.
///
/// Obtained from [`BlueGreenRouter::builder`]. Setters never panic: a bad value
/// (an invalid header name) is remembered and returned as a [`ConfigError`] by
/// [`build`](Builder::build) or [`layer`](Builder::layer). The result never
/// depends on the order of the calls.
///
/// `M` is the router's [`Mode`]: [`Plain`] unless
/// [`mirror`](Builder::mirror) or [`compare`](Builder::compare) was called
/// (each once, and not both: the comparison has its own mirror settings).
///
/// ```
/// use tower_rollout::BlueGreenRouter;
/// # let svc = tower::service_fn(|_req: http::Request<()>| async {
/// #     Ok::<_, std::convert::Infallible>(http::Response::new(()))
/// # });
/// let (router, handle) = BlueGreenRouter::builder()
///     .versions("iris-v1", "iris-v2")
///     .sticky_header("x-user-id")
///     .served_by_header("x-served-by")
///     .override_header("x-rollout-color", |head| {
///         head.headers().get("x-internal-tester").is_some()
///     })
///     .color_extension(true)
///     .build(svc.clone(), svc)
///     .expect("valid configuration");
/// assert_eq!(handle.active_version(), "iris-v1");
/// # drop(router);
///
/// let err = BlueGreenRouter::builder().sticky_header("not a header").build(
/// #   tower::service_fn(|_req: http::Request<()>| async {
/// #       Ok::<_, std::convert::Infallible>(http::Response::new(()))
/// #   }),
/// #   tower::service_fn(|_req: http::Request<()>| async {
/// #       Ok::<_, std::convert::Infallible>(http::Response::new(()))
/// #   }),
///     // ...
/// );
/// assert!(err.is_err());
/// ```
pub struct Builder<M = Plain> {
    config: Config,
    /// Made when the router is built, so the mode's engines get the final
    /// name whatever the order of the calls.
    mode: MakeMode<M>,
    measure: bool,
    classifier: Option<Arc<Classifier>>,
    versions: (String, String),
    error: Option<ConfigError>,
}

#[derive(Default)]
pub(crate) struct Config {
    pub(crate) sticky: Option<StickyKey>,
    pub(crate) override_header: Option<Override>,
    pub(crate) served_by: Option<HeaderName>,
    pub(crate) color_extension: bool,
    pub(crate) name: Name,
}

pub(crate) enum StickyKey {
    Header(HeaderName),
    Fn(Arc<KeyFn>),
}

pub(crate) struct Override {
    header: HeaderName,
    allow: Arc<AllowFn>,
}

impl Builder<Plain> {
    pub(crate) fn new() -> Self {
        Builder {
            config: Config::default(),
            mode: Box::new(|_| Ok(Plain)),
            measure: false,
            classifier: None,
            versions: ("blue".to_owned(), "green".to_owned()),
            error: None,
        }
    }
}

impl<M> Builder<M> {
    fn fail(&mut self, err: ConfigError) {
        self.error.get_or_insert(err);
    }

    /// The same settings with another mode, made from the router's name
    /// when the router is built (for the mirror's and the comparison's
    /// builder methods).
    pub(crate) fn with_mode<N>(
        self,
        mode: impl FnOnce(&Name) -> Result<N, ConfigError> + Send + 'static,
    ) -> Builder<N> {
        Builder {
            config: self.config,
            mode: Box::new(mode),
            measure: self.measure,
            classifier: self.classifier,
            versions: self.versions,
            error: self.error,
        }
    }

    /// The version labels of the two services given to
    /// [`build`](Self::build) (or of the wrapped service and the standby of
    /// [`layer`](Self::layer)): 1 to 64 ASCII letters, digits, `_`, `-`, `.`,
    /// `:` or `/`, not the same twice. They name the versions in the status,
    /// transitions, the served-by header, the request extension, metrics and
    /// tracing. Default `"blue"` and `"green"`.
    pub fn versions(mut self, blue: impl Into<String>, green: impl Into<String>) -> Self {
        self.versions = (blue.into(), green.into());
        self
    }

    /// Makes the canary sticky by the value of a request header (a user or
    /// session id): the value is hashed into one of 2²⁰ fixed buckets, and a
    /// request goes to the standby when its bucket is below the split. So one
    /// user stays on one color, and raising the split never moves a user back
    /// from the standby to the active color. Requests without the header are
    /// drawn at random. The hash is stable across processes and versions of
    /// this crate, so replicas agree on each user's color. A user whose color
    /// is not ready at that moment is served by the other one (counted in
    /// [`RolloutStatus::fallbacks`](crate::control::RolloutStatus::fallbacks)).
    pub fn sticky_header<K>(mut self, name: K) -> Self
    where
        K: TryInto<HeaderName> + Clone + fmt::Debug,
    {
        match header_name("sticky header", name) {
            Ok(name) => self.config.sticky = Some(StickyKey::Header(name)),
            Err(e) => self.fail(e),
        }
        self
    }

    /// Makes the canary sticky by a key computed from the request; `None`
    /// means the request has no key and is drawn at random. Hash strings with
    /// [`sticky_hash`](crate::router::sticky_hash) to get the same buckets as
    /// [`sticky_header`](Self::sticky_header).
    pub fn sticky_key<F>(mut self, key: F) -> Self
    where
        F: Fn(&RequestHead<'_>) -> Option<u64> + Send + Sync + 'static,
    {
        self.config.sticky = Some(StickyKey::Fn(Arc::new(key)));
        self
    }

    /// Lets a request choose its color with a header (`blue` or `green`), like
    /// Argo Rollouts' preview service, but only when `allow` returns true for
    /// it. Off by default. Values naming no color are ignored (the request is
    /// routed normally) and counted in
    /// [`RolloutStatus::unknown_override`](crate::control::RolloutStatus::unknown_override);
    /// a color that is not ready at that moment is replaced by the other one
    /// (counted as a fallback).
    ///
    /// Anyone who can reach the server can send the header: make `allow` check
    /// something a client cannot forge, such as a peer address or an
    /// authenticated identity set by an earlier layer.
    pub fn override_header<K, F>(mut self, name: K, allow: F) -> Self
    where
        K: TryInto<HeaderName> + Clone + fmt::Debug,
        F: Fn(&RequestHead<'_>) -> bool + Send + Sync + 'static,
    {
        match header_name("override header", name) {
            Ok(header) => {
                self.config.override_header = Some(Override {
                    header,
                    allow: Arc::new(allow),
                })
            }
            Err(e) => self.fail(e),
        }
        self
    }

    /// Adds a response header naming the color and version that served the
    /// request, as `green; version=iris-v3`. Off by default.
    pub fn served_by_header<K>(mut self, name: K) -> Self
    where
        K: TryInto<HeaderName> + Clone + fmt::Debug,
    {
        match header_name("served-by header", name) {
            Ok(name) => self.config.served_by = Some(name),
            Err(e) => self.fail(e),
        }
        self
    }

    /// Inserts the serving color and version, a
    /// [`ColorVersion`](crate::control::ColorVersion), as a request extension
    /// the inner service can read. Off by default: the first extension
    /// inserted into a request allocates.
    pub fn color_extension(mut self, on: bool) -> Self {
        self.config.color_extension = on;
        self
    }

    /// The name that labels this router's metrics and tracing (see
    /// [`telemetry`](crate::telemetry)), and those of its copies to the
    /// standby and its comparisons: 1 to 64 ASCII letters, digits, `_`, `-`,
    /// `.`, `:` or `/`. Default `"default"`.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        match Name::new(name) {
            Ok(name) => self.config.name = name,
            Err(e) => self.fail(e),
        }
        self
    }

    /// Measures every request's outcome per version (finished, failed, time
    /// to the response head) from the start, for
    /// [`RolloutHandle::measurements`] and the status. Off by default: then
    /// outcomes are measured only while a
    /// [`RolloutPlan`](crate::plan::RolloutPlan) runs, and the request path
    /// does not read the clock.
    pub fn measure(mut self, always: bool) -> Self {
        self.measure = always;
        self
    }

    /// Decides which measured requests count as failures (for the status and
    /// a plan's error-rate gate). Default:
    /// [`Finished::is_failure_by_default`] (service error, 5xx, a failed body,
    /// a server-fault gRPC status). A panicking classifier counts a failure.
    ///
    /// ```
    /// use tower_rollout::BlueGreenRouter;
    /// use tower_rollout::control::Finished;
    /// // Also count 429 (the model is overloaded) and gRPC RESOURCE_EXHAUSTED.
    /// let builder = BlueGreenRouter::builder().failure_classifier(|f: &Finished| {
    ///     f.is_failure_by_default()
    ///         || f.status.is_some_and(|s| s.as_u16() == 429)
    ///         || f.grpc_status == Some(8)
    /// });
    /// # drop(builder);
    /// ```
    pub fn failure_classifier<F>(mut self, classify: F) -> Self
    where
        F: Fn(&Finished) -> bool + Send + Sync + 'static,
    {
        self.classifier = Some(Arc::new(classify));
        self
    }
}

impl<M: Mode + Clone> Builder<M> {
    /// Builds a router over `blue` (active) and `green` (standby). Each color
    /// is a slot: a [`Deployer`](crate::control::Deployer) loads later
    /// versions into the standby while the router serves (when both services
    /// have the same type).
    ///
    /// # Errors
    /// The first bad setting given to this builder.
    pub fn build<SB, SG>(
        self,
        blue: SB,
        green: SG,
    ) -> Result<(BlueGreenRouter<SB, SG, M>, RolloutHandle), ConfigError>
    where
        SB: Clone + Send + Sync + 'static,
        SG: Clone + Send + Sync + 'static,
    {
        let parts = self.finish()?;
        let handle = RolloutHandle::new(parts.control.clone());
        Ok((BlueGreenRouter::slotted(blue, green, parts), handle))
    }

    /// Builds a layer that puts a router in front of the service it wraps
    /// (blue, active) with `green` as the standby. Versions cannot be
    /// deployed into a layer's routers (their blue is the service each route
    /// wraps); build a router over two services for that.
    ///
    /// # Errors
    /// The first bad setting given to this builder.
    pub fn layer<G>(self, green: G) -> Result<(BlueGreenLayer<G, M>, RolloutHandle), ConfigError> {
        let parts = self.finish()?;
        let handle = RolloutHandle::new(parts.control.clone());
        Ok((BlueGreenLayer::new(green, parts), handle))
    }

    fn finish(self) -> Result<Parts<M>, ConfigError> {
        if let Some(e) = self.error {
            return Err(e);
        }
        let blue = VersionLabel::new(self.versions.0)?;
        let green = VersionLabel::new(self.versions.1)?;
        if blue == green {
            return Err(ConfigError::DuplicateVersion {
                label: blue.to_string(),
            });
        }
        let mode = (self.mode)(&self.config.name)?;
        let telemetry = RouterTelemetry::new(&self.config.name);
        let observer: Option<Arc<dyn Observer>> = telemetry.clone().map(|t| t as Arc<dyn Observer>);
        let control = Control::new(Initial {
            observer,
            served_by: self.config.served_by.clone(),
            blue,
            green,
            measure_always: self.measure,
            can_mirror: mode.can_mirror(),
            classify: self.classifier,
        });
        for attachment in mode.attachments() {
            control.attach(attachment);
        }
        Ok(Parts {
            control: Arc::new(control),
            config: Arc::new(self.config),
            mode,
            telemetry,
        })
    }
}

/// What a builder hands to the router or layer it builds.
pub(crate) struct Parts<M> {
    pub(crate) control: Arc<Control>,
    pub(crate) config: Arc<Config>,
    pub(crate) mode: M,
    pub(crate) telemetry: Option<Arc<RouterTelemetry>>,
}

impl<M> fmt::Debug for Builder<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Builder")
            .field("config", &self.config)
            .field("versions", &self.versions)
            .field("measure", &self.measure)
            .field("error", &self.error)
            .finish_non_exhaustive()
    }
}

// === impl Config ===

impl Config {
    /// The color an override header asks for, if the request may override.
    #[inline]
    pub(crate) fn override_color<B>(&self, req: &Request<B>, control: &Control) -> Option<Color> {
        let o = self.override_header.as_ref()?;
        let value = req.headers().get(&o.header)?;
        if !(o.allow)(&RequestHead::of(req)) {
            return None;
        }
        let color = Color::from_bytes(value.as_bytes());
        if color.is_none() {
            control
                .unknown_override
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        color
    }

    /// The sticky bucket of a request, if a key is configured and present.
    #[inline]
    pub(crate) fn sticky_bucket<B>(&self, req: &Request<B>) -> Option<u32> {
        let hash = match self.sticky.as_ref()? {
            StickyKey::Header(name) => {
                sticky_hash(crate::head::header(req.headers(), name)?.as_bytes())
            }
            StickyKey::Fn(f) => mix(f(&RequestHead::of(req))?),
        };
        Some(bucket(hash))
    }
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sticky = self.sticky.as_ref().map(|s| match s {
            StickyKey::Header(h) => h.as_str(),
            StickyKey::Fn(_) => "<fn>",
        });
        f.debug_struct("Config")
            .field("sticky", &sticky)
            .field(
                "override_header",
                &self.override_header.as_ref().map(|o| &o.header),
            )
            .field("served_by", &self.served_by)
            .field("color_extension", &self.color_extension)
            .field("name", &self.name)
            .finish()
    }
}

/// The stable hash used for sticky keys: FNV-1a over the bytes, then a
/// SplitMix64 finalizer so that similar ids spread over all buckets.
///
/// Use it in a [`Builder::sticky_key`] closure to hash a string id the same way
/// [`Builder::sticky_header`] hashes a header value:
///
/// ```
/// use tower_rollout::router::sticky_hash;
/// assert_eq!(sticky_hash(b"user-42"), sticky_hash(b"user-42"));
/// assert_ne!(sticky_hash(b"user-42"), sticky_hash(b"user-43"));
/// ```
#[inline]
pub fn sticky_hash(bytes: &[u8]) -> u64 {
    mix(fnv1a(bytes))
}

#[inline]
fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// SplitMix64's finalizer: a bijection that spreads nearby inputs.
#[inline]
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The top 20 bits: a bucket in `0..2^20`.
#[inline]
fn bucket(hash: u64) -> u32 {
    (hash >> 44) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_spread_evenly() {
        // 20 000 consecutive ids into 10 ranges of buckets: each range gets
        // about 2 000; a bad mix would pile them into a few.
        let mut ranges = [0u32; 10];
        for i in 0..20_000u32 {
            let b = bucket(sticky_hash(format!("user-{i}").as_bytes()));
            assert!(b < 1 << 20);
            ranges[(b as usize * 10) >> 20] += 1;
        }
        for n in ranges {
            assert!((1_700..2_300).contains(&n), "{ranges:?}");
        }
    }

    #[test]
    fn hash_is_stable_across_builds() {
        // Published test vectors of FNV-1a (64 bit) and of SplitMix64 (first
        // output for seed 0): replicas and future versions must agree on buckets.
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a(b"foobar"), 0x8594_4171_f739_67e8);
        assert_eq!(mix(0x9e37_79b9_7f4a_7c15), 0xe220_a839_7b1d_cdaf);
    }
}
