use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use tower_layer::Layer;

use super::capture::{Judge, Noise};
use super::compare::Comparator;
use super::pairs::Pairs;
use super::report::{Exemplar, OnMismatch, ShadowReport};
use super::service::{NoSecondary, Shadowed, Shared};
use crate::error::ConfigError;
use crate::mirror::{MirrorBuilder, MirrorLayer, MirrorStats};
use crate::telemetry::{Name, Owner};

/// Sends sampled requests to a shadow too and compares its answers with the
/// primary's, off the request path. Made by [`ShadowComparator::new`] or
/// [`ShadowComparator::builder`]; wraps a primary service in [`Shadowed`].
/// See the [module docs](super).
#[derive(Clone)]
pub struct ShadowComparator<T, U = NoSecondary> {
    shadow: T,
    secondary: Option<U>,
    shared: Arc<Shared>,
}

impl<T> ShadowComparator<T> {
    /// Compares every request's answers from the primary and `shadow` with
    /// `comparator`, with the default bounds; returns the handle that reads the
    /// report.
    pub fn new(shadow: T, comparator: Comparator) -> (Self, ShadowHandle) {
        ShadowComparator::builder(shadow, comparator)
            .build()
            .expect("the default settings are valid")
    }

    /// A builder: `settings` is a [`Comparator`] (the default bounds) or
    /// a [`CompareSettings`] (bounds, exemplars, hook, drift); the builder
    /// adds the sample fraction, the name and the noise floor.
    ///
    /// ```
    /// use std::time::Duration;
    /// use tower_rollout::shadow::{Comparator, CompareSettings, ShadowComparator};
    /// # let shadow = tower::service_fn(|_: http::Request<String>| async {
    /// #     Ok::<_, std::convert::Infallible>(http::Response::new(String::new()))
    /// # });
    /// let (layer, handle) = ShadowComparator::builder(
    ///     shadow,
    ///     CompareSettings::new(Comparator::json())
    ///         .max_compare_bytes(64 << 10)
    ///         .exemplars(32),
    /// )
    /// .sample(0.1)
    /// .name("iris")
    /// .build()?;
    /// # drop((layer, handle));
    /// # Ok::<(), tower_rollout::ConfigError>(())
    /// ```
    pub fn builder(shadow: T, settings: impl Into<CompareSettings>) -> ShadowBuilder<T> {
        ShadowBuilder {
            shadow,
            secondary: None,
            noise: (0.20, 0.0003),
            settings: settings.into(),
            name: Ok(Name::default()),
            sample: None,
        }
    }
}

impl<S, T: Clone, U: Clone> Layer<S> for ShadowComparator<T, U> {
    type Service = Shadowed<S, T, U>;

    fn layer(&self, primary: S) -> Shadowed<S, T, U> {
        Shadowed::from_parts(
            primary,
            self.shadow.clone(),
            self.secondary.clone(),
            self.shared.clone(),
        )
    }
}

impl<T: fmt::Debug, U> fmt::Debug for ShadowComparator<T, U> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ShadowComparator")
            .field("shadow", &self.shadow)
            .finish_non_exhaustive()
    }
}

/// Reads a comparator's report and its mirror's counters.
#[derive(Clone)]
pub struct ShadowHandle {
    shared: Arc<Shared>,
}

impl ShadowHandle {
    /// A snapshot of the comparison results.
    pub fn report(&self) -> ShadowReport {
        let mut report = self.shared.judge.pairs.single().report.snapshot();
        report.noise = self.shared.judge.noise_report();
        report
    }

    /// The counters of the copies sent to the shadow.
    pub fn mirror_stats(&self) -> MirrorStats {
        self.shared.engine.stats()
    }

    /// Sets the fraction of requests compared.
    ///
    /// # Errors
    /// [`ConfigError::InvalidFraction`] when `fraction` is NaN or outside
    /// `0..=1`.
    pub fn set_sample(&self, fraction: f64) -> Result<(), ConfigError> {
        self.shared.engine.set_sample(fraction)
    }
}

impl fmt::Debug for ShadowHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ShadowHandle").finish_non_exhaustive()
    }
}

/// Settings of a comparison: the comparator and what bounds it.
///
/// Shared by [`ShadowBuilder`] and
/// [`router::Builder::compare`](crate::router::Builder::compare).
pub struct CompareSettings {
    comparator: Comparator,
    mirror: MirrorBuilder<()>,
    max_compare_bytes: u64,
    compare_wait: Duration,
    exemplars: usize,
    on_mismatch: Option<Arc<OnMismatch>>,
    #[cfg(feature = "drift")]
    drift: Option<Arc<crate::drift::DriftSettings>>,
}

impl CompareSettings {
    /// Settings with `comparator` and the defaults.
    pub fn new(comparator: Comparator) -> Self {
        CompareSettings {
            comparator,
            mirror: MirrorLayer::settings(),
            max_compare_bytes: 1024 * 1024,
            compare_wait: Duration::from_secs(30),
            exemplars: 16,
            on_mismatch: None,
            #[cfg(feature = "drift")]
            drift: None,
        }
    }

    /// Also measures the drift of these response fields between the
    /// primary's and the shadow's answers to the same copied requests
    /// (answers both sides gave with a 2xx status), per pair of versions:
    /// [`ShadowReport::drift`](super::ShadowReport::drift). Runs on the
    /// comparison task, never on the request path; memory is bounded (see
    /// [`DriftSettings::sample`](crate::drift::DriftSettings::sample)).
    #[cfg(feature = "drift")]
    #[cfg_attr(docsrs, doc(cfg(feature = "drift")))]
    pub fn drift(mut self, settings: crate::drift::DriftSettings) -> Self {
        self.drift = Some(Arc::new(settings));
        self
    }

    /// Responses (either side) whose body exceeds this many bytes are not
    /// compared (counted as skipped). The primary's body still streams to its
    /// client in full. Default 1 MiB.
    pub fn max_compare_bytes(mut self, bytes: u64) -> Self {
        self.max_compare_bytes = bytes;
        self
    }

    /// After the shadow answered, how long to wait for the end of the
    /// primary's body (a long stream) before giving up on this comparison.
    /// Default 30 s.
    pub fn compare_wait(mut self, wait: Duration) -> Self {
        self.compare_wait = wait;
        self
    }

    /// How many recent mismatches the report keeps. Default 16, at most 4096.
    pub fn exemplars(mut self, n: usize) -> Self {
        self.exemplars = n;
        self
    }

    /// Called with each mismatch (on the comparison task, never on the
    /// request path), for example to log or publish it.
    pub fn on_mismatch<F>(mut self, hook: F) -> Self
    where
        F: Fn(&Exemplar) + Send + Sync + 'static,
    {
        self.on_mismatch = Some(Arc::new(hook));
        self
    }

    /// The bounds of the copies to the shadow (deadline, in-flight limit, byte
    /// budget, headers): see [`MirrorBuilder`]. Its `sample` is the fraction
    /// compared (for the router it is ignored: `mirror_standby` sets it).
    pub fn mirror(mut self, settings: MirrorBuilder<()>) -> Self {
        self.mirror = settings;
        self
    }

    pub(crate) fn build(self, noise: Option<(f64, f64)>) -> Result<Shared, ConfigError> {
        let noise = match noise {
            Some((relative, absolute)) => {
                for (setting, value) in [
                    ("relative threshold", relative),
                    ("absolute threshold", absolute),
                ] {
                    if !value.is_finite() || value < 0.0 {
                        return Err(ConfigError::InvalidTolerance { setting, value });
                    }
                }
                Some(Noise {
                    relative,
                    absolute,
                    counts: Default::default(),
                })
            }
            None => None,
        };
        if self.max_compare_bytes == 0 {
            return Err(ConfigError::MustBePositive {
                setting: "max_compare_bytes",
            });
        }
        if self.compare_wait.is_zero() {
            return Err(ConfigError::MustBePositive {
                setting: "compare_wait",
            });
        }
        let (_, engine) = self.mirror.engine()?;
        let judge = Arc::new(Judge {
            comparator: self.comparator,
            pairs: Pairs::new(
                self.exemplars,
                self.on_mismatch,
                #[cfg(feature = "drift")]
                self.drift,
            ),
            cap: self.max_compare_bytes,
            wait: self.compare_wait,
            spawner: engine.spawner(),
            noise,
        });
        Ok(Shared { engine, judge })
    }
}

impl From<Comparator> for CompareSettings {
    /// The comparator with the default settings.
    fn from(comparator: Comparator) -> Self {
        CompareSettings::new(comparator)
    }
}

impl fmt::Debug for CompareSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CompareSettings")
            .field("max_compare_bytes", &self.max_compare_bytes)
            .field("compare_wait", &self.compare_wait)
            .field("exemplars", &self.exemplars)
            .finish_non_exhaustive()
    }
}

/// Builds a [`ShadowComparator`]: the settings of its comparison come in a
/// [`CompareSettings`] (the same type the router's `compare` takes); this
/// builder adds what only a standalone comparator has (sample, name, noise
/// floor).
#[derive(Debug)]
pub struct ShadowBuilder<T, U = NoSecondary> {
    shadow: T,
    secondary: Option<U>,
    noise: (f64, f64),
    settings: CompareSettings,
    name: Result<Name, ConfigError>,
    /// Set by [`sample`](Self::sample): applied at `build`, over the
    /// settings' mirror sample.
    sample: Option<f64>,
}

impl<T, U> ShadowBuilder<T, U> {
    /// Turns on the noise floor: `secondary`, a second instance of the
    /// primary's version, receives each compared request too, and fields
    /// that differ as often between the two instances of the same version as
    /// between primary and shadow are reported as noise, not as real
    /// differences. See [`NoiseReport`](super::NoiseReport).
    pub fn noise_floor<V>(self, secondary: V) -> ShadowBuilder<T, V> {
        ShadowBuilder {
            shadow: self.shadow,
            secondary: Some(secondary),
            noise: self.noise,
            settings: self.settings,
            name: self.name,
            sample: self.sample,
        }
    }

    /// The noise floor's thresholds: a field is a real difference when its
    /// shadow difference rate exceeds its noise rate by more than `absolute`
    /// and by more than `relative` times the noise rate. Defaults (Diffy's):
    /// 0.20 and 0.0003.
    pub fn noise_thresholds(mut self, relative: f64, absolute: f64) -> Self {
        self.noise = (relative, absolute);
        self
    }

    /// The fraction of requests compared, `0.0..=1.0`. Default 1. Wins over
    /// a `sample` inside [`CompareSettings::mirror`]'s settings.
    pub fn sample(mut self, fraction: f64) -> Self {
        self.sample = Some(fraction);
        self
    }

    /// The name that labels this comparator's metrics and tracing events,
    /// and those of its copies to the shadow (see
    /// [`telemetry`](crate::telemetry)): 1 to 64 ASCII letters, digits, `_`,
    /// `-`, `.`, `:` or `/`. Default `"default"`.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Name::new(name);
        self
    }

    /// Builds the layer and its handle.
    ///
    /// # Errors
    /// The first invalid setting (see [`MirrorBuilder::build`] for the mirror's).
    pub fn build(self) -> Result<(ShadowComparator<T, U>, ShadowHandle), ConfigError> {
        let name = self.name?;
        let noise = self.secondary.as_ref().map(|_| self.noise);
        let mut settings = self.settings;
        if let Some(fraction) = self.sample {
            settings.mirror = settings.mirror.sample(fraction);
        }
        let shared = Arc::new(settings.build(noise)?);
        shared.engine.stats.telemetry.attach(&name, Owner::Shadow);
        shared.judge.pairs.telemetry.attach(&name, Owner::Shadow);
        let handle = ShadowHandle {
            shared: shared.clone(),
        };
        Ok((
            ShadowComparator {
                shadow: self.shadow,
                secondary: self.secondary,
                shared,
            },
            handle,
        ))
    }
}
