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
use http::{HeaderMap, Method, StatusCode, Uri};
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;
use tokio::sync::oneshot;

use super::compare::{truncate_bytes, Captured, Comparator, Compare, FieldDiff, Verdict};
use super::pairs::{Pair, Pairs};
use super::report::{Exemplar, Outcome};
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
    pub(crate) pairs: Pairs,
    /// The largest response body (either side) that is compared.
    pub(crate) cap: u64,
    /// How long the comparison waits for the primary's body after the shadow
    /// answered.
    pub(crate) wait: Duration,
    pub(crate) spawner: Arc<dyn Spawn>,
    /// Set when a secondary instance of the primary measures the noise.
    pub(crate) noise: Option<Noise>,
}

/// Per-field difference counts of primary vs shadow and primary vs secondary.
#[derive(Debug)]
pub(crate) struct Noise {
    pub(crate) relative: f64,
    pub(crate) absolute: f64,
    pub(crate) counts: std::sync::Mutex<NoiseCounts>,
}

#[derive(Debug, Default)]
pub(crate) struct NoiseCounts {
    pub(crate) comparisons: u64,
    pub(crate) candidate: std::collections::HashMap<String, u64>,
    pub(crate) noise: std::collections::HashMap<String, u64>,
}

/// What a comparison waits for once the shadow answered, and where it is
/// counted.
struct Waiting {
    primary: oneshot::Receiver<Primary>,
    secondary: Option<oneshot::Receiver<ShadowResult>>,
    method: Method,
    uri: Uri,
    request: RequestSample,
    pair: Arc<Pair>,
}

/// A comparison started by [`Judge::start`].
pub(crate) struct Started {
    /// The follow-up for the shadow's task.
    pub(crate) shadow: Followup,
    /// The capture of the primary's answer.
    pub(crate) capture: Box<PendingCapture>,
    /// With a noise floor, the follow-up for the secondary's task.
    pub(crate) secondary: Option<Followup>,
}

impl Judge {
    /// Starts one comparison: the follow-ups of the copies and the capture
    /// of the primary's answer.
    /// `pair` is the report it is counted in.
    pub(crate) fn start(self: &Arc<Self>, method: &Method, uri: &Uri, pair: Arc<Pair>) -> Started {
        let (tx, rx) = oneshot::channel();
        let request = RequestSample::default();
        let (second, second_rx) = match self.noise {
            Some(_) => {
                let (stx, srx) = oneshot::channel::<ShadowResult>();
                let then = move |result: ShadowResult| -> crate::mirror::BoxTask {
                    let _ = stx.send(result);
                    Box::pin(std::future::ready(()))
                };
                let f = Followup {
                    cap: self.cap,
                    request: RequestSample::default(),
                    then: Box::new(then),
                    began: None,
                };
                (Some(f), Some(srx))
            }
            None => (None, None),
        };
        let judge = self.clone();
        // Counts the comparison as skipped if the task is dropped before it
        // is counted (never run, or stopped mid-way by a runtime shutdown).
        let began = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let guard = CountOnDrop(Some(pair.clone()), began.clone());
        let waiting = Waiting {
            primary: rx,
            secondary: second_rx,
            method: method.clone(),
            uri: uri.clone(),
            request: request.clone(),
            pair,
        };
        let then = move |result: ShadowResult| -> crate::mirror::BoxTask {
            Box::pin(async move {
                let guard = guard;
                judge.settle(result, waiting).await;
                guard.disarm();
            })
        };
        Started {
            shadow: Followup {
                cap: self.cap,
                request,
                then: Box::new(then),
                began: Some(began),
            },
            capture: Box::new(PendingCapture {
                tx,
                cap: self.cap,
                start: Instant::now(),
            }),
            secondary: second,
        }
    }

    async fn settle(&self, result: ShadowResult, waiting: Waiting) {
        let Waiting {
            primary: rx,
            secondary: second,
            method,
            uri,
            request,
            pair,
        } = waiting;
        let report = &pair.report;
        let (shadow, shadow_latency) = match result {
            ShadowResult::Answered(c, d) => (c, d),
            ShadowResult::OverCap => return report.count(Outcome::SkippedOverCap),
            ShadowResult::Error | ShadowResult::Panic => return report.count(Outcome::ShadowError),
            ShadowResult::Timeout => return report.count(Outcome::ShadowTimeout),
            ShadowResult::Dropped => return report.count(Outcome::SkippedDropped),
        };
        let primary = match select(rx, self.spawner.sleep(self.wait)).await {
            Either::Left((Ok(primary), _)) => primary,
            // The capture was dropped without an answer, or took too long.
            Either::Left((Err(_), _)) | Either::Right(_) => Primary::Failed,
        };
        let (primary, primary_latency) = match primary {
            Primary::Whole(c, d) => (c, d),
            Primary::OverCap => return report.count(Outcome::SkippedOverCap),
            Primary::Failed => return report.count(Outcome::SkippedPrimaryFailed),
        };
        let (primary, shadow) = (*primary, *shadow);
        // An exemplar of this comparison, bodies cut to 4 KiB (the pair's
        // report names its versions).
        let exemplar = |primary: Captured, shadow: Captured, diffs| {
            let short = |mut c: Captured| {
                c.body = truncate_bytes(c.body, 4096);
                c
            };
            Exemplar {
                at: SystemTime::now(),
                method,
                uri,
                request: request.get(),
                primary: short(primary),
                shadow: short(shadow),
                diffs,
                versions: None,
            }
        };
        if is_schema_break(primary.status, shadow.status) {
            report.latencies(primary_latency, shadow_latency);
            let diffs = vec![FieldDiff::new(
                "status",
                primary.status.as_str(),
                shadow.status.as_str(),
            )];
            report.schema_break(exemplar(primary, shadow, diffs));
            return;
        }
        #[cfg(feature = "drift")]
        report.drift(&primary, &shadow);
        // The panic payload is not `Sync`: drop it before awaiting.
        let verdict = std::panic::catch_unwind(AssertUnwindSafe(|| {
            self.comparator.compare(&primary, &shadow)
        }))
        .map_err(drop);
        if let (Some(noise), Some(second), Ok(verdict)) = (&self.noise, second, &verdict) {
            self.measure_noise(noise, second, &primary, verdict).await;
        }
        match verdict {
            Ok(Verdict::Match) => {
                report.count(Outcome::Match);
                report.latencies(primary_latency, shadow_latency);
            }
            Ok(Verdict::Mismatch(diffs)) => {
                report.latencies(primary_latency, shadow_latency);
                report.mismatch(exemplar(primary, shadow, diffs));
            }
            Err(_panic) => report.count(Outcome::ComparatorPanic),
        }
    }
}

impl Judge {
    /// Compares the primary with its secondary instance and counts, per
    /// field, the differences of both comparisons. Only requests for which
    /// all three answers are known count.
    async fn measure_noise(
        &self,
        noise: &Noise,
        second: oneshot::Receiver<ShadowResult>,
        primary: &Captured,
        candidate: &Verdict,
    ) {
        let secondary = match select(second, self.spawner.sleep(self.wait)).await {
            Either::Left((Ok(ShadowResult::Answered(c, _)), _)) => c,
            _ => return,
        };
        let Ok(noisy) = std::panic::catch_unwind(AssertUnwindSafe(|| {
            self.comparator.compare(primary, &secondary)
        })) else {
            return;
        };
        let paths = |v: &Verdict| -> Vec<String> {
            match v {
                Verdict::Match => Vec::new(),
                Verdict::Mismatch(d) => {
                    let mut p: Vec<String> = d.iter().map(|d| d.path.clone()).collect();
                    p.sort();
                    p.dedup();
                    p
                }
            }
        };
        let mut counts = noise.counts.lock().unwrap_or_else(|e| e.into_inner());
        counts.comparisons += 1;
        for p in paths(candidate) {
            super::report::count_field(&mut counts.candidate, &p);
        }
        for p in paths(&noisy) {
            super::report::count_field(&mut counts.noise, &p);
        }
    }

    pub(crate) fn noise_report(&self) -> Option<super::report::NoiseReport> {
        let noise = self.noise.as_ref()?;
        let counts = noise.counts.lock().unwrap_or_else(|e| e.into_inner());
        let n = counts.comparisons.max(1) as f64;
        let mut paths: Vec<&String> = counts.candidate.keys().chain(counts.noise.keys()).collect();
        paths.sort();
        paths.dedup();
        let mut fields: Vec<super::report::FieldNoise> = paths
            .into_iter()
            .map(|path| {
                let candidate_rate = *counts.candidate.get(path).unwrap_or(&0) as f64 / n;
                let noise_rate = *counts.noise.get(path).unwrap_or(&0) as f64 / n;
                let excess = candidate_rate - noise_rate;
                let real = counts.comparisons > 0
                    && excess > noise.absolute
                    && (noise_rate == 0.0 || excess / noise_rate > noise.relative);
                super::report::FieldNoise {
                    path: path.clone(),
                    candidate_rate,
                    noise_rate,
                    real,
                }
            })
            .collect();
        fields.sort_by(|a, b| b.real.cmp(&a.real).then_with(|| a.path.cmp(&b.path)));
        Some(super::report::NoiseReport {
            comparisons: counts.comparisons,
            relative_threshold: noise.relative,
            absolute_threshold: noise.absolute,
            fields,
        })
    }
}

impl fmt::Debug for Judge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Judge")
            .field("cap", &self.cap)
            .field("wait", &self.wait)
            .field("pairs", &self.pairs.all().len())
            .finish_non_exhaustive()
    }
}

struct CountOnDrop(Option<Arc<Pair>>, Arc<std::sync::atomic::AtomicBool>);

impl CountOnDrop {
    fn disarm(mut self) {
        self.0 = None;
    }
}

impl Drop for CountOnDrop {
    fn drop(&mut self) {
        if let Some(pair) = self.0.take() {
            // Never run: not started (saturated, over budget, predicate, no
            // executor); stopped mid-way: dropped.
            let began = self.1.load(std::sync::atomic::Ordering::Acquire);
            pair.report.count(if began {
                Outcome::SkippedDropped
            } else {
                Outcome::SkippedNotStarted
            });
        }
    }
}

/// Made when a copy starts; becomes a [`Capture`] when the primary answers.
/// (Public only as a router mode's per-request state.)
#[doc(hidden)]
#[derive(Debug)]
pub struct PendingCapture {
    tx: oneshot::Sender<Primary>,
    cap: u64,
    start: Instant,
}

impl PendingCapture {
    pub(crate) fn failed(self) {
        let _ = self.tx.send(Primary::Failed);
    }

    pub(crate) fn begin(self, status: StatusCode, headers: &HeaderMap) -> Box<Capture> {
        Box::new(Capture {
            tx: Some(self.tx),
            cap: self.cap,
            start: self.start,
            status,
            headers: headers.clone(),
            chunks: Vec::new(),
            len: 0,
            trailers: None,
        })
    }
}

/// Keeps a copy of the primary's response body (up to the cap) as it streams.
/// (Public only as a router mode's per-response state.)
#[doc(hidden)]
#[derive(Debug)]
pub struct Capture {
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
        match &self.tx {
            None => return,
            // The comparison gave up (shadow failed, or it stopped waiting):
            // stop keeping a copy.
            Some(tx) if tx.is_closed() => {
                self.tx = None;
                self.chunks = Vec::new();
                return;
            }
            Some(_) => {}
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
    pub(crate) fn new(inner: B, mut capture: Option<Box<Capture>>) -> Self
    where
        B: Body,
    {
        if inner.is_end_stream() {
            // Servers drop an empty body without polling it: it is whole now.
            if let Some(c) = capture.as_mut() {
                c.end();
            }
        }
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

/// One side accepted the request and the other rejected it as the client's
/// fault: a change of what the versions accept.
fn is_schema_break(primary: StatusCode, shadow: StatusCode) -> bool {
    (primary.is_success() && shadow.is_client_error())
        || (primary.is_client_error() && shadow.is_success())
}
