use std::pin::Pin;
use std::task::{Context, Poll};

use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;

use super::mode::{Capture, NoCapture};
use crate::control::{end_measured, Admission};

pin_project! {
    /// The response body of a [`BlueGreenRouter`](crate::BlueGreenRouter).
    ///
    /// Passes every frame of the inner body through unchanged and keeps the
    /// request counted as in flight on its version until the body has ended
    /// (its last frame was read, it reported an error, or it was empty) or is
    /// dropped. `C` is the comparison's copy of the body, when the router
    /// compares.
    pub struct RolloutBody<B, C = NoCapture> {
        #[pin]
        inner: B,
        // Counts the request in flight until the end; while measuring, it
        // also classifies the outcome there (a gRPC status in the trailers).
        guard: Option<Admission>,
        capture: C,
    }
}

impl<B: Body, C: Capture> RolloutBody<B, C> {
    #[inline]
    pub(crate) fn new(inner: B, mut guard: Admission, mut capture: C) -> Self {
        if inner.is_end_stream() {
            // Servers drop an empty body without polling it: it ended now.
            if capture.active() {
                capture.end();
            }
            if guard.measuring() {
                end_measured(&mut guard, None, false);
            }
            return RolloutBody {
                inner,
                guard: None,
                capture,
            };
        }
        RolloutBody {
            inner,
            guard: Some(guard),
            capture,
        }
    }
}

impl<B: Body, C: Capture + Default> RolloutBody<B, C> {
    /// A body with nothing but the admission.
    #[inline(always)]
    pub(crate) fn plain(inner: B, guard: Admission) -> Self {
        let guard = (!inner.is_end_stream()).then_some(guard);
        RolloutBody {
            inner,
            guard,
            capture: C::default(),
        }
    }
}

impl<B, C> RolloutBody<B, C> {
    /// Whether the request is still counted in flight (its body has not
    /// ended).
    pub fn in_flight(&self) -> bool {
        self.guard.is_some()
    }

    /// The wrapped body.
    pub fn get_ref(&self) -> &B {
        &self.inner
    }

    /// The wrapped body; the request stops being counted in flight.
    pub fn into_inner(self) -> B {
        self.inner
    }
}

impl<B: Body, C: Capture> Body for RolloutBody<B, C> {
    type Data = B::Data;
    type Error = B::Error;

    #[inline(always)]
    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<B::Data>, B::Error>>> {
        let mut this = self.project();
        let res = this.inner.as_mut().poll_frame(cx);
        let ended = match &res {
            Poll::Ready(None) | Poll::Ready(Some(Err(_))) => true,
            Poll::Ready(Some(Ok(_))) => this.inner.is_end_stream(),
            Poll::Pending => false,
        };
        if this.capture.active() {
            captured(this.capture, &res, ended);
        }
        if let Some(guard) = this.guard.as_mut() {
            if guard.measuring() {
                probed(guard, &res, ended);
            }
        }
        if ended {
            this.guard.take();
        }
        res
    }

    #[inline]
    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    #[inline]
    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The compared path, out of line: most responses are not compared.
#[cold]
#[inline(never)]
fn captured<C: Capture, D: bytes::Buf, E>(
    capture: &mut C,
    res: &Poll<Option<Result<Frame<D>, E>>>,
    ended: bool,
) {
    match res {
        Poll::Ready(Some(Ok(frame))) => capture.frame(frame),
        Poll::Ready(Some(Err(_))) => capture.fail(),
        _ => {}
    }
    if ended {
        capture.end();
    }
}

/// The measured path, out of line: most responses are not measured.
#[cold]
#[inline(never)]
fn probed<D, E>(guard: &mut Admission, res: &Poll<Option<Result<Frame<D>, E>>>, ended: bool) {
    let trailers = match res {
        Poll::Ready(Some(Ok(frame))) => frame.trailers_ref(),
        _ => None,
    };
    let failed = matches!(res, Poll::Ready(Some(Err(_))));
    // The status is in the trailers; a body ends with them.
    if ended || trailers.is_some() || failed {
        end_measured(guard, trailers, failed);
    }
}

impl<B, C> std::fmt::Debug for RolloutBody<B, C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RolloutBody")
            .field("in_flight", &self.in_flight())
            .finish_non_exhaustive()
    }
}
