use std::fmt;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;
use tokio::sync::mpsc;

use tower::BoxError;

use super::stats::{Outcome, Stats};

/// The error a shadow's request body ends with when its copy was abandoned
/// (the shadow fell behind, the byte budget was exceeded, or the primary
/// stopped reading early). A shadow never sees a shortened body that ends
/// cleanly.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CopyAborted;

impl fmt::Display for CopyAborted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("mirrored request body was abandoned")
    }
}

impl std::error::Error for CopyAborted {}

pin_project! {
    /// The request body services behind a [`Mirror`](super::Mirror), a
    /// [`ShadowComparator`](crate::shadow::ShadowComparator) and a
    /// [`BlueGreenRouter`](crate::BlueGreenRouter) that mirrors or compares
    /// receive (a plain router passes bodies through unchanged).
    ///
    /// For the primary it yields exactly the frames of the original body, in
    /// order, as they arrive (copying each to the shadow on the way); for the
    /// shadow it yields the copy, or ends with [`CopyAborted`] if the copy was
    /// abandoned.
    pub struct MirrorBody<B> {
        #[pin]
        kind: Kind<B>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<B> {
        Plain { #[pin] inner: B },
        Tee { #[pin] inner: B, tee: Tee },
        Shadow {
            rx: mpsc::Receiver<Frame<Bytes>>,
            state: Arc<CopyState>,
            hint: SizeHint,
            // The start of the body, kept for comparison exemplars.
            sample: Option<RequestSample>,
        },
        Empty,
    }
}

impl<B> MirrorBody<B> {
    /// Wraps a body that is not mirrored.
    pub fn new(inner: B) -> Self {
        MirrorBody {
            kind: Kind::Plain { inner },
        }
    }

    pub(crate) fn tee(inner: B, tee: Tee) -> Self {
        MirrorBody {
            kind: Kind::Tee { inner, tee },
        }
    }

    pub(crate) fn shadow(
        rx: mpsc::Receiver<Frame<Bytes>>,
        state: Arc<CopyState>,
        hint: SizeHint,
        sample: Option<RequestSample>,
    ) -> Self {
        MirrorBody {
            kind: Kind::Shadow {
                rx,
                state,
                hint,
                sample,
            },
        }
    }

    pub(crate) fn empty() -> Self {
        MirrorBody { kind: Kind::Empty }
    }

    /// True for the copy a shadow receives.
    pub fn is_mirrored_copy(&self) -> bool {
        matches!(self.kind, Kind::Shadow { .. } | Kind::Empty)
    }
}

impl<B> Body for MirrorBody<B>
where
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.project().kind.project() {
            KindProj::Plain { inner } => inner.poll_frame(cx).map_err(Into::into),
            KindProj::Tee { mut inner, tee } => {
                let res = std::task::ready!(inner.as_mut().poll_frame(cx));
                match &res {
                    Some(Ok(frame)) => {
                        tee.offer(frame);
                        if inner.is_end_stream() {
                            tee.complete();
                        }
                    }
                    None => tee.complete(),
                    Some(Err(_)) => tee.abort(Outcome::PrimaryEarly),
                }
                Poll::Ready(res.map(|r| r.map_err(Into::into)))
            }
            KindProj::Shadow {
                rx, state, sample, ..
            } => match std::task::ready!(rx.poll_recv(cx)) {
                Some(frame) => {
                    if let (Some(sample), Some(data)) = (sample.as_ref(), frame.data_ref()) {
                        sample.record(data);
                    }
                    Poll::Ready(Some(Ok(frame)))
                }
                None if state.completed.load(Ordering::Acquire) => Poll::Ready(None),
                None => Poll::Ready(Some(Err(CopyAborted.into()))),
            },
            KindProj::Empty => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Plain { inner } | Kind::Tee { inner, .. } => inner.is_end_stream(),
            Kind::Shadow { .. } => false,
            Kind::Empty => true,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Plain { inner } | Kind::Tee { inner, .. } => inner.size_hint(),
            Kind::Shadow { hint, .. } => *hint,
            Kind::Empty => SizeHint::with_exact(0),
        }
    }
}

impl<B> fmt::Debug for MirrorBody<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.kind {
            Kind::Plain { .. } => "plain",
            Kind::Tee { .. } => "tee",
            Kind::Shadow { .. } => "shadow",
            Kind::Empty => "empty",
        };
        f.debug_struct("MirrorBody").field("kind", &kind).finish()
    }
}

// === RequestSample ===

/// The first bytes of a mirrored request body, as the shadow reads them.
#[derive(Debug, Clone, Default)]
pub(crate) struct RequestSample(Arc<std::sync::Mutex<Vec<u8>>>);

/// How much of a request body an exemplar keeps.
const SAMPLE_BYTES: usize = 4096;

impl RequestSample {
    fn record(&self, data: &Bytes) {
        let mut buf = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let room = SAMPLE_BYTES.saturating_sub(buf.len());
        buf.extend_from_slice(&data[..room.min(data.len())]);
    }

    pub(crate) fn get(&self) -> Bytes {
        Bytes::copy_from_slice(&self.0.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

// === CopyState ===

const OPEN: u8 = 0;

/// What one copy's tee, shadow body and shadow task share. The first of them
/// to settle the copy's outcome counts it: every copy is counted exactly once.
#[derive(Debug)]
pub(crate) struct CopyState {
    /// Set by the tee after it forwarded the last frame of the original body.
    completed: AtomicBool,
    outcome: AtomicU8,
    stats: Arc<Stats>,
}

impl CopyState {
    pub(crate) fn new(stats: Arc<Stats>) -> Arc<Self> {
        Arc::new(CopyState {
            completed: AtomicBool::new(false),
            outcome: AtomicU8::new(OPEN),
            stats,
        })
    }

    /// Records `outcome` if none was recorded yet. True if this call did.
    pub(crate) fn settle(&self, outcome: Outcome) -> bool {
        let won = self
            .outcome
            .compare_exchange(OPEN, outcome as u8, Ordering::AcqRel, Ordering::Acquire)
            .is_ok();
        if won {
            self.stats.count(outcome);
        }
        won
    }
}

/// The primary side of one or more copies: offers each frame to every shadow
/// without waiting.
pub(crate) struct Tee {
    outs: Vec<Out>,
    sent: u64,
    budget: u64,
}

struct Out {
    tx: Option<mpsc::Sender<Frame<Bytes>>>,
    state: Arc<CopyState>,
}

impl Out {
    fn complete(&mut self) {
        if let Some(tx) = self.tx.take() {
            // Mark completion before the channel closes, so the shadow's body
            // ends cleanly instead of with `CopyAborted`.
            self.state.completed.store(true, Ordering::Release);
            drop(tx);
        }
    }

    fn abort(&mut self, outcome: Outcome) {
        if self.tx.take().is_some() {
            self.state.settle(outcome);
        }
    }
}

impl Tee {
    pub(crate) fn new(budget: u64) -> Self {
        Tee {
            outs: Vec::with_capacity(1),
            sent: 0,
            budget,
        }
    }

    pub(crate) fn add(&mut self, tx: mpsc::Sender<Frame<Bytes>>, state: Arc<CopyState>) {
        self.outs.push(Out {
            tx: Some(tx),
            state,
        });
    }

    fn offer(&mut self, frame: &Frame<Bytes>) {
        if let Some(data) = frame.data_ref() {
            self.sent += data.len() as u64;
            if self.sent > self.budget {
                return self.abort(Outcome::OverBudget);
            }
        }
        for out in &mut self.outs {
            let Some(tx) = &out.tx else { continue };
            let copy = if let Some(data) = frame.data_ref() {
                Frame::data(data.clone()) // a refcount, not a copy of the bytes
            } else if let Some(trailers) = frame.trailers_ref() {
                Frame::trailers(trailers.clone())
            } else {
                continue;
            };
            match tx.try_send(copy) {
                Ok(()) => {}
                Err(mpsc::error::TrySendError::Full(_)) => out.abort(Outcome::ShadowSlow),
                // The shadow stopped reading its body (it answered, failed or
                // timed out): nothing more to copy; its task settles the outcome.
                Err(mpsc::error::TrySendError::Closed(_)) => out.tx = None,
            }
        }
    }

    fn complete(&mut self) {
        self.outs.iter_mut().for_each(Out::complete);
    }

    fn abort(&mut self, outcome: Outcome) {
        self.outs.iter_mut().for_each(|o| o.abort(outcome));
    }
}

impl Drop for Tee {
    fn drop(&mut self) {
        // The primary dropped its body before the end.
        self.abort(Outcome::PrimaryEarly);
    }
}
