//! Outcome measurements per version: how many requests each version finished,
//! how many of them failed, and how long each took to answer. Kept only while
//! measuring is on (a rollout plan runs, or the router was built with
//! [`Builder::measure`](crate::router::Builder::measure)); otherwise the
//! request path does not read the clock.
//!
//! Nothing here allocates per request: a measured request carries a
//! [`Probe`] (its start time) in its response future, and its
//! [`Admission`] (the in-flight guard) holds the status and gRPC facts until
//! the body ends; both record into the counters of the version's
//! [`Block`](super::counters::Block).

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::header::CONTENT_TYPE;
use http::{HeaderMap, HeaderName, StatusCode};

use super::counters::{Admission, Block, CLASSIFIED, GRPC, MEASURING, NO_CODE};
use crate::stats::{Histogram, Latencies};
use crate::Color;

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
    finished: AtomicU64,
    failures: AtomicU64,
    abandoned: AtomicU64,
    latency: Histogram,
    /// Whether the version's router has its own classifier (read before
    /// looking it up, so the default costs no lookup).
    custom: AtomicBool,
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

/// Installs `classify` as the failure classifier of the version counted in
/// `block` (`None`: the default).
pub(crate) fn set_classifier(block: &Block, classify: Option<Arc<Classifier>>) {
    block.meter.custom.store(classify.is_some(), Ordering::Release);
    block.classify.store(classify.map(Arc::new));
}

impl fmt::Debug for Meter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Meter").field(&self.snapshot()).finish()
    }
}

/// A measured request in its response future: when it was called.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Probe {
    start: Instant,
}

impl Probe {
    #[inline]
    pub(crate) fn start() -> Probe {
        Probe { start: now() }
    }

    #[inline]
    fn elapsed(self) -> Duration {
        now().saturating_duration_since(self.start)
    }

    /// The service failed: no response.
    pub(crate) fn error(self, admission: &mut Admission) {
        let block = admission.block();
        block.meter.latency.record(self.elapsed());
        admission.state = (admission.state & GRPC) | CLASSIFIED;
        finish(
            block,
            Finished {
                status: None,
                grpc_status: None,
                grpc: false,
                body_error: false,
            },
        );
    }

    /// The response head arrived: the admission now carries what the end of
    /// the body needs to classify the outcome (classified at once when the
    /// body already ended).
    pub(crate) fn head(
        self,
        admission: &mut Admission,
        status: StatusCode,
        headers: &HeaderMap,
        body_ended: bool,
    ) {
        admission.block().meter.latency.record(self.elapsed());
        let grpc = crate::head::header(headers, &CONTENT_TYPE)
            .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"));
        admission.status = status.as_u16();
        admission.state = MEASURING | if grpc { GRPC } else { 0 };
        // A trailers-only gRPC response carries its status in the headers;
        // only gRPC responses are searched for it.
        admission.code = if grpc {
            grpc_status(headers).unwrap_or(NO_CODE)
        } else {
            NO_CODE
        };
        if body_ended {
            end(admission, None, false);
        }
    }
}

/// The body of a measured response ended: `trailers` are the trailers it
/// carried, if any. Classifies the outcome once.
pub(crate) fn end(admission: &mut Admission, trailers: Option<&HeaderMap>, body_error: bool) {
    if !admission.measuring() {
        return;
    }
    let grpc = admission.state & GRPC != 0;
    admission.state = (admission.state & GRPC) | CLASSIFIED;
    let from_head = (admission.code != NO_CODE).then_some(admission.code);
    let code = if grpc {
        trailers.and_then(grpc_status).or(from_head)
    } else {
        None
    };
    finish(
        admission.block(),
        Finished {
            status: StatusCode::from_u16(admission.status).ok(),
            grpc_status: code,
            grpc,
            body_error,
        },
    );
}

fn finish(block: &'static Block, finished: Finished) {
    let meter = &block.meter;
    let failed = if meter.custom.load(Ordering::Acquire) {
        match block.classify.load_full() {
            // A panicking user classifier must not take the request down.
            Some(classify) => std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                (**classify)(&finished)
            }))
            .unwrap_or(true),
            None => finished.is_failure_by_default(),
        }
    } else {
        finished.is_failure_by_default()
    };
    if failed {
        meter.failures.fetch_add(1, Ordering::Relaxed);
    }
    meter.finished.fetch_add(1, Ordering::Release);
}

static GRPC_STATUS: HeaderName = HeaderName::from_static("grpc-status");

fn grpc_status(headers: &HeaderMap) -> Option<i32> {
    std::str::from_utf8(crate::head::header(headers, &GRPC_STATUS)?.as_bytes())
        .ok()?
        .trim()
        .parse()
        .ok()
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

    #[test]
    fn grpc_status_parses_or_is_none() {
        let mut h = HeaderMap::new();
        assert_eq!(grpc_status(&h), None);
        h.insert("grpc-status", "14".parse().unwrap());
        assert_eq!(grpc_status(&h), Some(14));
        h.insert("grpc-status", "x".parse().unwrap());
        assert_eq!(grpc_status(&h), None);
    }
}
