//! Measuring one request's outcome: its [`Probe`] (start time) in the
//! response future, then the facts its [`Admission`] carries until the body
//! ends, classified once into its version's [`Meter`](super::meter::Meter).
//!
//! Nothing here allocates per request.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::header::CONTENT_TYPE;
use http::{HeaderMap, HeaderName, StatusCode};

use super::counters::{Admission, Block};
use super::meter::{now, Classifier, Finished, CLASSIFIED, GRPC, MEASURING, NO_CODE};

/// Installs `classify` as the failure classifier of the version counted in
/// `block` (`None`: the default).
pub(crate) fn set_classifier(block: &Block, classify: Option<Arc<Classifier>>) {
    block
        .meter
        .custom
        .store(classify.is_some(), Ordering::Release);
    block.classify.store(classify.map(Arc::new));
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
            Some(classify) => {
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| (**classify)(&finished)))
                    .unwrap_or(true)
            }
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

#[cfg(test)]
mod tests {
    use super::*;

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
