//! Outcome measurements per version: how many requests each version finished,
//! how many of them failed, and how long each took to answer. Kept only while
//! measuring is on (a rollout plan runs, or the router was built with
//! [`Builder::measure`](crate::router::Builder::measure)); otherwise the
//! request path does not read the clock.
//!
//! The counters live in each version's block; the request path records into
//! them through `probe`.

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use http::StatusCode;

use crate::stats::{Histogram, Latencies};
use crate::Color;

/// [`Admission::code`](super::counters::Admission) when there is no gRPC status.
pub(crate) const NO_CODE: i32 = i32::MIN;
/// An admission's measuring state: not measured at all.
pub(crate) const UNMEASURED: u8 = 0;
/// Measured, the response head seen, the outcome not classified yet.
pub(crate) const MEASURING: u8 = 1;
/// Measured and classified.
pub(crate) const CLASSIFIED: u8 = 2;
/// Set in the state of a gRPC response.
pub(crate) const GRPC: u8 = 4;

/// What the router saw of one finished request; the input of a failure
/// classifier (see [`Builder::failure_classifier`](crate::router::Builder::failure_classifier)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Finished {
    /// The response status; `None` when the service returned an error instead
    /// of a response.
    pub status: Option<StatusCode>,
    /// The gRPC status code, from the response headers (a trailers-only
    /// response) or the trailers; `None` when there was none.
    pub grpc_status: Option<i32>,
    /// Whether the response was gRPC (`content-type: application/grpc...`).
    pub grpc: bool,
    /// Whether the response body failed while it was read.
    pub body_error: bool,
}

/// gRPC codes the default classifier counts as failures: the server's own
/// faults (UNKNOWN, DEADLINE_EXCEEDED, UNIMPLEMENTED, INTERNAL, UNAVAILABLE,
/// DATA_LOSS), not the caller's (INVALID_ARGUMENT, NOT_FOUND, ...).
pub const DEFAULT_GRPC_FAILURES: [i32; 6] = [2, 4, 12, 13, 14, 15];

impl Finished {
    /// The default classification: a failure when the service returned an
    /// error, the status is 5xx, the body failed, a gRPC response carries one
    /// of [`DEFAULT_GRPC_FAILURES`], or a gRPC response ended without a status.
    pub fn is_failure_by_default(&self) -> bool {
        match self.status {
            None => true,
            Some(s) if s.is_server_error() => true,
            Some(_) if self.body_error => true,
            Some(_) if self.grpc => match self.grpc_status {
                Some(code) => DEFAULT_GRPC_FAILURES.contains(&code),
                None => true,
            },
            Some(_) => false,
        }
    }
}

pub(crate) type Classifier = dyn Fn(&Finished) -> bool + Send + Sync;

/// The current instant, on tokio's clock when the `tokio` feature is on (so a
/// paused test clock moves measured latencies too).
#[inline]
pub(crate) fn now() -> Instant {
    #[cfg(feature = "tokio")]
    {
        tokio::time::Instant::now().into_std()
    }
    #[cfg(not(feature = "tokio"))]
    {
        Instant::now()
    }
}

/// The measurement counters of one version (in its block).
pub(crate) struct Meter {
    pub(super) finished: AtomicU64,
    pub(super) failures: AtomicU64,
    abandoned: AtomicU64,
    pub(super) latency: Histogram,
    /// Whether the version's router has its own classifier (read before
    /// looking it up, so the default costs no lookup).
    pub(super) custom: AtomicBool,
}

impl Meter {
    pub(crate) fn new() -> Self {
        Meter {
            finished: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            abandoned: AtomicU64::new(0),
            latency: Histogram::new(),
            custom: AtomicBool::new(false),
        }
    }

    pub(crate) fn reset(&self) {
        self.finished.store(0, Ordering::Relaxed);
        self.failures.store(0, Ordering::Relaxed);
        self.abandoned.store(0, Ordering::Relaxed);
        self.latency.reset();
        self.custom.store(false, Ordering::Relaxed);
    }

    /// A measured response dropped before it was classified.
    pub(crate) fn abandoned(&self) {
        self.abandoned.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn snapshot(&self) -> Measurement {
        Measurement {
            finished: self.finished.load(Ordering::Acquire),
            failures: self.failures.load(Ordering::Acquire),
            abandoned: self.abandoned.load(Ordering::Acquire),
            latency: self.latency.latencies(),
        }
    }
}

impl fmt::Debug for Meter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Meter").field(&self.snapshot()).finish()
    }
}

/// Outcome measurements of both colors' current versions, from
/// [`RolloutHandle::measurements`](crate::RolloutHandle::measurements).
/// Counters only move while measuring is on, and start at zero when a new
/// version is deployed into a color.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Measurements {
    /// Blue's.
    pub blue: Measurement,
    /// Green's.
    pub green: Measurement,
}

impl Measurements {
    /// One color's.
    pub fn color(&self, color: Color) -> &Measurement {
        match color {
            Color::Blue => &self.blue,
            Color::Green => &self.green,
        }
    }

    /// What happened after `earlier` was taken.
    pub fn since(&self, earlier: &Measurements) -> Measurements {
        Measurements {
            blue: self.blue.since(&earlier.blue),
            green: self.green.since(&earlier.green),
        }
    }
}

/// Outcome measurements of one version.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Measurement {
    /// Requests classified (the response ended, or the service failed).
    pub finished: u64,
    /// Of those, the ones the failure classifier called failures.
    pub failures: u64,
    /// Responses dropped before their body ended (not classified).
    pub abandoned: u64,
    /// Time from the router's `call` to the response head (or the error).
    pub latency: Latencies,
}

impl Measurement {
    /// `failures / finished`, `None` when nothing finished.
    pub fn failure_rate(&self) -> Option<f64> {
        (self.finished > 0).then(|| self.failures as f64 / self.finished as f64)
    }

    /// The `q` quantile of the latency (see [`Latencies::quantile`]).
    pub fn latency_quantile(&self, q: f64) -> Option<Duration> {
        self.latency.quantile(q)
    }

    /// What happened after `earlier` was taken.
    pub fn since(&self, earlier: &Measurement) -> Measurement {
        Measurement {
            finished: self.finished.saturating_sub(earlier.finished),
            failures: self.failures.saturating_sub(earlier.failures),
            abandoned: self.abandoned.saturating_sub(earlier.abandoned),
            latency: self.latency.since(&earlier.latency),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn finished(status: Option<u16>, grpc: Option<i32>, is_grpc: bool) -> Finished {
        Finished {
            status: status.map(|s| StatusCode::from_u16(s).unwrap()),
            grpc_status: grpc,
            grpc: is_grpc,
            body_error: false,
        }
    }

    #[test]
    fn default_classification() {
        assert!(finished(None, None, false).is_failure_by_default());
        assert!(finished(Some(500), None, false).is_failure_by_default());
        assert!(finished(Some(503), None, false).is_failure_by_default());
        assert!(!finished(Some(404), None, false).is_failure_by_default());
        assert!(!finished(Some(200), None, false).is_failure_by_default());
        assert!(!finished(Some(200), Some(0), true).is_failure_by_default());
        assert!(!finished(Some(200), Some(3), true).is_failure_by_default());
        assert!(finished(Some(200), Some(13), true).is_failure_by_default());
        assert!(finished(Some(200), Some(14), true).is_failure_by_default());
        assert!(finished(Some(200), None, true).is_failure_by_default());
        let mut f = finished(Some(200), None, false);
        f.body_error = true;
        assert!(f.is_failure_by_default());
    }
}
