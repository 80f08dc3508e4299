//! The primary's side of a comparison: a copy of its response, taken as the
//! body streams to the client, and the task that judges both sides.

use std::fmt;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant, SystemTime};

use bytes::{Buf, Bytes};
use futures_util::future::{select, Either};
use http::{HeaderMap, Method, Response, StatusCode, Uri};
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;
use tokio::sync::oneshot;

use super::compare::{truncate_bytes, Captured, Comparator, Compare, Verdict};
use super::report::{Exemplar, Outcome, Report};
use crate::mirror::{Followup, RequestSample, ShadowResult, Spawn};

/// How the primary's response ended, as far as the comparison is concerned.
#[derive(Debug)]
pub(crate) enum Primary {
    Whole(Box<Captured>, Duration),
    OverCap,
    Failed,
}

/// What a comparator shares between requests.
pub(crate) struct Judge {
    pub(crate) comparator: Comparator,
    pub(crate) report: Report,
    /// The largest response body (either side) that is compared.
    pub(crate) cap: u64,
    /// How long the comparison waits for the primary's body after the shadow
    /// answered.
    pub(crate) wait: Duration,
    pub(crate) spawner: Arc<dyn Spawn>,
}

impl Judge {
    /// The follow-up for the shadow's task and the capture for the primary.
    pub(crate) fn start(
        self: &Arc<Self>,
        method: &Method,
        uri: &Uri,
    ) -> (Followup, Box<PendingCapture>) {
        let (tx, rx) = oneshot::channel();
        let request = RequestSample::default();
        let judge = self.clone();
        let method = method.clone();
        let uri = uri.clone();
        let sample = request.clone();
        let then = move |result: ShadowResult| -> crate::mirror::BoxTask {
            Box::pin(async move {
                judge.settle(result, rx, method, uri, sample).await;
            })
        };
        (
            Followup {
                cap: self.cap,
                request,
                then: Box::new(then),
            },
            Box::new(PendingCapture {
                tx,
                cap: self.cap,
                start: Instant::now(),
            }),
        )
    }

    async fn settle(
        &self,
        result: ShadowResult,
        rx: oneshot::Receiver<Primary>,
        method: Method,
        uri: Uri,
        request: RequestSample,
    ) {
        let (shadow, shadow_latency) = match result {
            ShadowResult::Answered(c, d) => (c, d),
            ShadowResult::OverCap => return self.report.count(Outcome::SkippedOverCap),
            ShadowResult::Error | ShadowResult::Panic => {
                return self.report.count(Outcome::ShadowError)
            }
            ShadowResult::Timeout => return self.report.count(Outcome::ShadowTimeout),
            ShadowResult::Dropped => return self.report.count(Outcome::SkippedDropped),
        };
        let primary = match select(rx, self.spawner.sleep(self.wait)).await {
            Either::Left((Ok(primary), _)) => primary,
            // The capture was dropped without an answer, or took too long.
            Either::Left((Err(_), _)) | Either::Right(_) => Primary::Failed,
        };
        let (primary, primary_latency) = match primary {
            Primary::Whole(c, d) => (c, d),
            Primary::OverCap => return self.report.count(Outcome::SkippedOverCap),
            Primary::Failed => return self.report.count(Outcome::SkippedPrimaryFailed),
        };
        let (primary, shadow) = (*primary, *shadow);
        let verdict = std::panic::catch_unwind(AssertUnwindSafe(|| {
            self.comparator.compare(&primary, &shadow)
        }));
        match verdict {
            Ok(Verdict::Match) => {
                self.report.count(Outcome::Match);
                self.report.latencies(primary_latency, shadow_latency);
            }
            Ok(Verdict::Mismatch(diffs)) => {
                self.report.latencies(primary_latency, shadow_latency);
                let short = |mut c: Captured| {
                    c.body = truncate_bytes(c.body, 4096);
                    c
                };
                self.report.mismatch(Exemplar {
                    at: SystemTime::now(),
                    method,
                    uri,
                    request: request.get(),
                    primary: short(primary),
                    shadow: short(shadow),
                    diffs,
                });
            }
            Err(_panic) => self.report.count(Outcome::ComparatorPanic),
        }
    }
}

impl fmt::Debug for Judge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Judge")
            .field("cap", &self.cap)
            .field("wait", &self.wait)
            .field("report", &self.report)
            .finish_non_exhaustive()
    }
}

/// Made when a copy starts; becomes a [`Capture`] when the primary answers.
#[derive(Debug)]
pub(crate) struct PendingCapture {
    tx: oneshot::Sender<Primary>,
    cap: u64,
    start: Instant,
}

impl PendingCapture {
    pub(crate) fn failed(self) {
        let _ = self.tx.send(Primary::Failed);
    }

    pub(crate) fn begin<B>(self, res: &Response<B>) -> Box<Capture> {
        Box::new(Capture {
            tx: Some(self.tx),
            cap: self.cap,
            start: self.start,
            status: res.status(),
            headers: res.headers().clone(),
            chunks: Vec::new(),
            len: 0,
            trailers: None,
        })
    }
}

/// Keeps a copy of the primary's response body (up to the cap) as it streams.
#[derive(Debug)]
pub(crate) struct Capture {
    tx: Option<oneshot::Sender<Primary>>,
    cap: u64,
    start: Instant,
    status: StatusCode,
    headers: HeaderMap,
    chunks: Vec<Bytes>,
    len: u64,
    trailers: Option<HeaderMap>,
}

impl Capture {
    pub(crate) fn frame<D: Buf>(&mut self, frame: &Frame<D>) {
        if self.tx.is_none() {
            return;
        }
        if let Some(data) = frame.data_ref() {
            self.len += data.remaining() as u64;
            if self.len > self.cap {
                self.chunks.clear();
                self.send(Primary::OverCap);
            } else if data.remaining() > 0 {
                // Only sampled responses are captured: one copy per chunk,
                // read without consuming the frame the client will receive.
                let n = data.remaining();
                let mut slices = [std::io::IoSlice::new(&[]); 32];
                let k = data.chunks_vectored(&mut slices);
                let mut chunk = Vec::with_capacity(n);
                for s in &slices[..k] {
                    chunk.extend_from_slice(s);
                }
                if chunk.len() != n {
                    // A buffer in more than 32 pieces: not compared.
                    return self.fail();
                }
                self.chunks.push(chunk.into());
            }
        } else if let Some(t) = frame.trailers_ref() {
            self.trailers = Some(t.clone());
        }
    }

    pub(crate) fn end(&mut self) {
        if self.tx.is_some() {
            let captured = Captured {
                status: self.status,
                headers: std::mem::take(&mut self.headers),
                body: std::mem::take(&mut self.chunks).concat().into(),
                trailers: self.trailers.take(),
            };
            self.send(Primary::Whole(Box::new(captured), self.start.elapsed()));
        }
    }

    pub(crate) fn fail(&mut self) {
        self.send(Primary::Failed);
    }

    fn send(&mut self, primary: Primary) {
        if let Some(tx) = self.tx.take() {
            let _ = tx.send(primary);
        }
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        // The body was dropped before its end: nothing whole to compare.
        self.send(Primary::Failed);
    }
}

pin_project! {
    /// The response body of a [`Shadowed`](super::Shadowed) service: the
    /// primary's body, frame by frame and unchanged, with a copy kept for the
    /// comparison when the request was sampled.
    pub struct CompareBody<B> {
        #[pin]
        inner: B,
        capture: Option<Box<Capture>>,
    }
}

impl<B> CompareBody<B> {
    pub(crate) fn new(inner: B, capture: Option<Box<Capture>>) -> Self {
        CompareBody { inner, capture }
    }
}

impl<B: Body> Body for CompareBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<B::Data>, B::Error>>> {
        let mut this = self.project();
        let res = this.inner.as_mut().poll_frame(cx);
        if let Some(capture) = this.capture.as_mut() {
            match &res {
                Poll::Ready(Some(Ok(frame))) => {
                    capture.frame(frame);
                    if this.inner.is_end_stream() {
                        capture.end();
                    }
                }
                Poll::Ready(None) => capture.end(),
                Poll::Ready(Some(Err(_))) => capture.fail(),
                Poll::Pending => {}
            }
        }
        res
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl<B> fmt::Debug for CompareBody<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CompareBody")
            .field("captured", &self.capture.is_some())
            .finish_non_exhaustive()
    }
}
