use std::fmt;
use std::sync::Arc;

use http::{HeaderName, HeaderValue, Request};

use super::{BlueGreenLayer, BlueGreenRouter};
use crate::control::{default_classifier, Classifier, Control, Finished, Meter, RolloutHandle};
use crate::error::{header_name, ConfigError};
use crate::mirror::MirrorBuilder;
use crate::shadow::CompareSettings;
use crate::telemetry::{Name, RouterTelemetry};
use crate::{Color, RequestHead};

type KeyFn = dyn Fn(&RequestHead<'_>) -> Option<u64> + Send + Sync;
type AllowFn = dyn Fn(&RequestHead<'_>) -> bool + Send + Sync;

/// Configures a [`BlueGreenRouter`] or [`BlueGreenLayer`] beyond the defaults.
///
/// Obtained from [`BlueGreenRouter::builder`]. Setters never panic: a bad value
/// (an invalid header name) is remembered and returned as a [`ConfigError`] by
/// [`build`](Builder::build) or [`layer`](Builder::layer).
///
/// ```
/// use tower_rollout::BlueGreenRouter;
/// # let svc = tower::service_fn(|_req: http::Request<()>| async {
/// #     Ok::<_, std::convert::Infallible>(http::Response::new(()))
/// # });
/// let (router, handle) = BlueGreenRouter::builder()
///     .sticky_header("x-user-id")
///     .served_by_header("x-served-by")
///     .override_header("x-rollout-color", |head| {
///         head.headers().get("x-internal-tester").is_some()
///     })
///     .color_extension(true)
///     .build(svc.clone(), svc)
///     .expect("valid configuration");
/// # drop((router, handle));
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
#[derive(Default)]
pub struct Builder {
    config: Config,
    mirror: Option<MirrorBuilder<()>>,
    compare: Option<CompareSettings>,
    measure: bool,
    classifier: Option<Arc<Classifier>>,
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

impl Builder {
    pub(crate) fn new() -> Self {
        Builder::default()
    }

    fn fail(&mut self, err: ConfigError) {
        self.error.get_or_insert(err);
    }

    /// Makes the canary sticky by the value of a request header (a user or
    /// session id): the value is hashed into one of 2²⁰ fixed buckets, and a
    /// request goes to the standby when its bucket is below the split. So one
    /// user stays on one color, and raising the split never moves a user back
    /// from the standby to the active color. Requests without the header are
    /// drawn at random. The hash is stable across processes and versions of
    /// this crate, so replicas agree on each user's color.
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
    /// [`RolloutStatus::unknown_override`](crate::control::RolloutStatus::unknown_override).
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

    /// Adds a response header naming the color (`blue` or `green`) that served
    /// the request. Off by default.
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

    /// Inserts the serving [`Color`] as a request extension the inner service
    /// can read. Off by default: the first extension inserted into a request
    /// allocates.
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

    /// Bounds and header handling for the copies that
    /// [`RolloutHandle::mirror_standby`] sends to the standby; see
    /// [`MirrorBuilder`] (its `sample` is ignored here). Default: the
    /// defaults of [`MirrorLayer::settings`](crate::MirrorLayer::settings).
    pub fn mirror(mut self, settings: MirrorBuilder<()>) -> Self {
        self.mirror = Some(settings);
        self
    }

    /// Compares the copies that [`RolloutHandle::mirror_standby`] sends to the
    /// standby with the active color's answers; read the results with
    /// [`RolloutHandle::shadow_report`]. The copies' bounds then come from
    /// [`CompareSettings::mirror`] (and [`mirror`](Self::mirror) is not used).
    pub fn compare(mut self, settings: CompareSettings) -> Self {
        self.compare = Some(settings);
        self
    }

    /// Measures every request's outcome per color (finished, failed, time
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

    /// Builds a router over `blue` (active) and `green` (standby).
    ///
    /// # Errors
    /// The first bad setting given to this builder.
    pub fn build<SB, SG>(
        self,
        blue: SB,
        green: SG,
    ) -> Result<(BlueGreenRouter<SB, SG>, RolloutHandle), ConfigError> {
        let (control, config) = self.finish()?;
        let handle = RolloutHandle::new(control.clone());
        Ok((
            BlueGreenRouter::from_parts(blue, green, control, config),
            handle,
        ))
    }

    /// Builds a layer that puts a router in front of the service it wraps
    /// (blue, active) with `green` as the standby.
    ///
    /// # Errors
    /// The first bad setting given to this builder.
    pub fn layer<G>(self, green: G) -> Result<(BlueGreenLayer<G>, RolloutHandle), ConfigError> {
        let (control, config) = self.finish()?;
        let handle = RolloutHandle::new(control.clone());
        Ok((BlueGreenLayer::new(green, control, config), handle))
    }

    fn finish(self) -> Result<(Arc<Control>, Arc<Config>), ConfigError> {
        if let Some(e) = self.error {
            return Err(e);
        }
        let (mirror, judge) = match (self.compare, self.mirror) {
            (Some(compare), _) => {
                let shared = compare.build(None)?;
                (Some(Arc::new(shared.engine)), Some(shared.judge))
            }
            (None, Some(settings)) => (Some(Arc::new(settings.engine()?.1)), None),
            // Without an executor there is no default engine; mirror_standby
            // then reports `ConfigError::MissingSpawner`.
            (None, None) => (
                crate::MirrorLayer::settings()
                    .engine()
                    .ok()
                    .map(|(_, e)| Arc::new(e)),
                None,
            ),
        };
        let classify = self.classifier.unwrap_or_else(default_classifier);
        let telemetry =
            RouterTelemetry::new(&self.config.name, mirror.as_deref(), judge.as_deref());
        let control = Control::new(mirror, judge, Meter::new(classify), self.measure, telemetry);
        Ok((Arc::new(control), Arc::new(self.config)))
    }
}

impl fmt::Debug for Builder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Builder")
            .field("config", &self.config)
            .field("measure", &self.measure)
            .field("error", &self.error)
            .finish()
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
            StickyKey::Header(name) => sticky_hash(req.headers().get(name)?.as_bytes()),
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

pub(crate) fn color_header_value(color: Color) -> HeaderValue {
    HeaderValue::from_static(color.as_str())
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
pub fn sticky_hash(bytes: &[u8]) -> u64 {
    mix(fnv1a(bytes))
}

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
