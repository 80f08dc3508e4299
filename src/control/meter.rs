//! Per-color outcome measurements: how many requests each color finished,
//! how many of them failed, and how long each took to answer. Kept only while
//! measuring is on (a rollout plan runs, or the router was built with
//! [`Builder::measure`](crate::router::Builder::measure)); otherwise the
//! request path does not read the clock.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::{HeaderMap, StatusCode};

use super::state::Control;
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

pub(crate) fn default_classifier() -> Arc<Classifier> {
    Arc::new(Finished::is_failure_by_default)
}

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

#[derive(Debug)]
struct ColorMeter {
    finished: AtomicU64,
    failures: AtomicU64,
    abandoned: AtomicU64,
    latency: Histogram,
}

pub(crate) struct Meter {
    colors: [ColorMeter; 2],
    pub(crate) classify: Arc<Classifier>,
}

impl Meter {
    pub(crate) fn new(classify: Arc<Classifier>) -> Self {
        let color = || ColorMeter {
            finished: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            abandoned: AtomicU64::new(0),
            latency: Histogram::new(),
        };
        Meter {
            colors: [color(), color()],
            classify,
        }
    }

    pub(crate) fn snapshot(&self) -> Measurements {
        let one = |c: &ColorMeter| Measurement {
            finished: c.finished.load(Ordering::Acquire),
            failures: c.failures.load(Ordering::Acquire),
            abandoned: c.abandoned.load(Ordering::Acquire),
            latency: c.latency.latencies(),
        };
        Measurements {
            blue: one(&self.colors[Color::Blue.index()]),
            green: one(&self.colors[Color::Green.index()]),
        }
    }
}

impl fmt::Debug for Meter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Meter")
            .field("colors", &self.colors)
            .finish_non_exhaustive()
    }
}

/// One measured request, from the router's `call` to its classification.
pub(crate) struct Probe {
    control: Arc<Control>,
    color: Color,
    start: Instant,
    grpc: bool,
    grpc_code: Option<i32>,
    status: Option<StatusCode>,
    done: bool,
}

impl Probe {
    pub(crate) fn start(control: Arc<Control>, color: Color) -> Box<Probe> {
        Box::new(Probe {
            control,
            color,
            start: now(),
            grpc: false,
            grpc_code: None,
            status: None,
            done: false,
        })
    }

    fn meter(&self) -> &ColorMeter {
        &self.control.meter.colors[self.color.index()]
    }

    /// The service failed: no response.
    pub(crate) fn error(&mut self) {
        self.meter().latency.record(now() - self.start);
        self.finish(None, false);
    }

    /// The response head arrived. Returns the probe back unless the body
    /// has already ended: the outcome is decided at the end of the body (a
    /// failed body, or a gRPC status in the trailers, is a failure).
    pub(crate) fn head(
        mut self: Box<Self>,
        status: StatusCode,
        headers: &HeaderMap,
        body_ended: bool,
    ) -> Option<Box<Self>> {
        self.meter().latency.record(now() - self.start);
        self.status = Some(status);
        self.grpc = headers
            .get(http::header::CONTENT_TYPE)
            .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"));
        // A trailers-only gRPC response carries its status in the headers.
        self.grpc_code = grpc_status(headers);
        if body_ended {
            self.finish(None, false);
            return None;
        }
        Some(self)
    }

    /// The body ended: `trailers` are the trailers it carried, if any.
    pub(crate) fn end(&mut self, trailers: Option<&HeaderMap>, body_error: bool) {
        let code = trailers.and_then(grpc_status);
        self.finish(code, body_error);
    }

    fn finish(&mut self, grpc_status: Option<i32>, body_error: bool) {
        self.done = true;
        let finished = Finished {
            status: self.status,
            grpc_status: grpc_status.or(self.grpc_code),
            grpc: self.grpc,
            body_error,
        };
        // A panicking user classifier must not take the request down with it.
        let failed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            (self.control.meter.classify)(&finished)
        }))
        .unwrap_or(true);
        let m = self.meter();
        if failed {
            m.failures.fetch_add(1, Ordering::Relaxed);
        }
        m.finished.fetch_add(1, Ordering::Release);
    }
}

impl Drop for Probe {
    /// Dropped unfinished: the response (or its body) was dropped before it
    /// ended, the client went away. Counted apart, neither success nor failure.
    fn drop(&mut self) {
        if !self.done {
            self.meter().abandoned.fetch_add(1, Ordering::Relaxed);
        }
    }
}

impl fmt::Debug for Probe {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Probe")
            .field("color", &self.color)
            .finish_non_exhaustive()
    }
}

fn grpc_status(headers: &HeaderMap) -> Option<i32> {
    std::str::from_utf8(headers.get("grpc-status")?.as_bytes())
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// Outcome measurements of both colors, from
/// [`RolloutHandle::measurements`](crate::RolloutHandle::measurements).
/// Counters only move while measuring is on.
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

/// Outcome measurements of one color.
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
