//! Version labels, and what the core keeps of each loaded version.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use http::{HeaderName, HeaderValue};

use super::counters::{Block, InFlight, Lane};
use crate::error::ConfigError;
use crate::Color;

/// The longest version label accepted, in bytes.
const MAX_LABEL: usize = 64;

/// The label of a version held in a color's slot, such as `"iris-v3"`.
///
/// 1 to 64 ASCII letters, digits, `_`, `-`, `.`, `:` or `/` (checked when it
/// is made), so it can label metrics, name a version in a header value and
/// travel in JSON unchanged. Cheap to clone.
///
/// ```
/// use tower_rollout::control::VersionLabel;
///
/// let v3 = VersionLabel::new("iris-v3")?;
/// assert_eq!(v3.as_str(), "iris-v3");
/// assert_eq!(v3, "iris-v3");
/// assert!(VersionLabel::new("iris v3").is_err());
/// assert!(VersionLabel::new("").is_err());
/// # Ok::<(), tower_rollout::ConfigError>(())
/// ```
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct VersionLabel(Arc<str>);

impl VersionLabel {
    /// Checks `label`.
    ///
    /// # Errors
    /// [`ConfigError::InvalidVersion`] when it is empty, longer than 64 bytes,
    /// or has another character than ASCII letters, digits, `_`, `-`, `.`,
    /// `:` and `/`.
    pub fn new(label: impl Into<String>) -> Result<VersionLabel, ConfigError> {
        let label = label.into();
        let allowed =
            |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b':' | b'/');
        if label.is_empty() || label.len() > MAX_LABEL || !label.bytes().all(allowed) {
            return Err(ConfigError::InvalidVersion { label });
        }
        Ok(VersionLabel(label.into()))
    }

    /// The label.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for VersionLabel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for VersionLabel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl PartialEq<str> for VersionLabel {
    fn eq(&self, other: &str) -> bool {
        &*self.0 == other
    }
}

impl PartialEq<&str> for VersionLabel {
    fn eq(&self, other: &&str) -> bool {
        &*self.0 == *other
    }
}

impl AsRef<str> for VersionLabel {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl TryFrom<&str> for VersionLabel {
    type Error = ConfigError;

    fn try_from(label: &str) -> Result<Self, ConfigError> {
        VersionLabel::new(label)
    }
}

impl TryFrom<String> for VersionLabel {
    type Error = ConfigError;

    fn try_from(label: String) -> Result<Self, ConfigError> {
        VersionLabel::new(label)
    }
}

/// A color and the version it holds.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ColorVersion {
    /// The color.
    pub color: Color,
    /// The version in its slot.
    pub version: VersionLabel,
}

impl fmt::Display for ColorVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.version, self.color)
    }
}

impl ColorVersion {
    /// Reads the value of the router's
    /// [served-by header](crate::router::Builder::served_by_header),
    /// `green; version=iris-v3`, as a client or a test would.
    ///
    /// ```
    /// use tower_rollout::control::ColorVersion;
    /// use tower_rollout::Color;
    ///
    /// let served = ColorVersion::from_served_by("green; version=iris-v3")?;
    /// assert_eq!((served.color, served.version.as_str()), (Color::Green, "iris-v3"));
    /// assert!(ColorVersion::from_served_by("green").is_err());
    /// # Ok::<(), tower_rollout::control::ParseServedByError>(())
    /// ```
    ///
    /// # Errors
    /// [`ParseServedByError`] when the value is not a color, `;` and
    /// `version=` with a valid [`VersionLabel`].
    pub fn from_served_by(value: &str) -> Result<ColorVersion, ParseServedByError> {
        let bad = || ParseServedByError {
            value: value.chars().take(80).collect(),
        };
        let (color, rest) = value.split_once(';').ok_or_else(bad)?;
        let label = rest.trim().strip_prefix("version=").ok_or_else(bad)?;
        Ok(ColorVersion {
            color: color.trim().parse().map_err(|_| bad())?,
            version: VersionLabel::new(label).map_err(|_| bad())?,
        })
    }

    /// The served-by header's value for this color and version.
    pub fn served_by_value(&self) -> String {
        format!("{}; version={}", self.color, self.version)
    }
}

/// The error of [`ColorVersion::from_served_by`]: the value it could not read
/// (its first 80 characters).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseServedByError {
    value: String,
}

impl fmt::Display for ParseServedByError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "expected a served-by value such as `green; version=iris-v3`, got {:?}",
            self.value
        )
    }
}

impl std::error::Error for ParseServedByError {}

/// Tells loaded versions apart (labels can repeat over time).
pub(crate) fn next_version_id() -> u64 {
    static IDS: AtomicU64 = AtomicU64::new(1);
    IDS.fetch_add(1, Ordering::Relaxed)
}

/// What a response or a request extension says of the version that served
/// it, made once per loaded version: the color and label, the served-by
/// header value, and the telemetry's per-version handles.
pub(crate) struct Tags {
    pub(crate) served: ColorVersion,
    /// The router's served-by header and its value for this version,
    /// `green; version=iris-v3`, when the router adds it.
    pub(crate) served_by: Option<(HeaderName, HeaderValue)>,
    /// Whatever the observer keeps per version (metric handles).
    #[cfg_attr(not(any(feature = "metrics", feature = "tracing")), allow(dead_code))]
    pub(crate) telemetry: Option<Arc<dyn std::any::Any + Send + Sync>>,
}

impl Tags {
    pub(crate) fn new(
        color: Color,
        label: &VersionLabel,
        served_by: Option<&HeaderName>,
        telemetry: Option<Arc<dyn std::any::Any + Send + Sync>>,
    ) -> Arc<Tags> {
        let served = ColorVersion {
            color,
            version: label.clone(),
        };
        let served_by = served_by.and_then(|name| {
            // Labels are checked to be header-safe: this always parses.
            let value = HeaderValue::from_str(&served.served_by_value()).ok()?;
            Some((name.clone(), value))
        });
        Arc::new(Tags {
            served,
            served_by,
            telemetry,
        })
    }
}

impl fmt::Debug for Tags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Tags").field(&self.served).finish()
    }
}

/// What the core knows of the version a color holds: its label, identity,
/// counters, and a hold that keeps the counters from being recycled while the
/// core can still read them.
#[derive(Debug)]
pub(crate) struct Live {
    pub(crate) label: VersionLabel,
    pub(crate) id: u64,
    pub(crate) block: &'static Block,
    /// The block's epoch when the version was loaded.
    pub(crate) epoch: u64,
    pub(crate) readiness: Readiness,
    pub(crate) tags: Arc<Tags>,
    _hold: InFlight,
}

impl Live {
    pub(crate) fn new(
        label: VersionLabel,
        id: u64,
        block: &'static Block,
        tags: Arc<Tags>,
    ) -> Live {
        Live {
            label,
            id,
            epoch: block.epoch(),
            block,
            readiness: Readiness::Unknown,
            tags,
            _hold: block.start(Lane::Held),
        }
    }

    /// Gives up the core's hold; the version is retired with `payload` (its
    /// service value) kept until it is idle.
    pub(crate) fn retire(
        self,
        color: Color,
        payload: Option<Box<dyn std::any::Any + Send>>,
    ) -> Retiring {
        let Live {
            label,
            id,
            block,
            epoch,
            _hold,
            ..
        } = self;
        // The payload first, so the block cannot recycle before it holds it.
        block.retire(payload);
        drop(_hold);
        Retiring {
            label,
            id,
            color,
            block,
            epoch,
        }
    }
}

/// A version that was replaced and has not finished yet: requests, copies or
/// router clones still use it.
#[derive(Debug, Clone)]
pub(crate) struct Retiring {
    pub(crate) label: VersionLabel,
    #[allow(dead_code)]
    pub(crate) id: u64,
    pub(crate) color: Color,
    pub(crate) block: &'static Block,
    pub(crate) epoch: u64,
}

impl Retiring {
    /// Whether the version is gone (its block recycled).
    pub(crate) fn gone(&self) -> bool {
        self.block.epoch() != self.epoch
    }
}

/// Whether a color's version was last seen able to take requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Readiness {
    /// Not known yet: the version was given when the router was built and
    /// no request has reached it.
    Unknown,
    /// Ready: driven to readiness by a deploy, or seen ready.
    Ready,
    /// Its `poll_ready` was pending when last polled.
    NotReady,
    /// Its `poll_ready` failed: the service is broken until a new version is
    /// deployed into the color.
    Failed,
}

impl Readiness {
    /// `"unknown"`, `"ready"`, `"not_ready"` or `"failed"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Readiness::Unknown => "unknown",
            Readiness::Ready => "ready",
            Readiness::NotReady => "not_ready",
            Readiness::Failed => "failed",
        }
    }
}

impl fmt::Display for Readiness {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
