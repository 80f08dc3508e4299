//! Body wrappers shared by the layers.

use std::pin::Pin;
use std::task::{Context, Poll};

use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;

use crate::control::{InFlight, Probe};
use crate::shadow::Capture;
use crate::Color;

pin_project! {
    /// The response body of a [`BlueGreenRouter`](crate::BlueGreenRouter).
    ///
    /// Passes every frame of the inner body through unchanged and keeps the
    /// request counted as in flight on its color until the body has ended (its
    /// last frame was read, it reported an error, or it was empty) or is
    /// dropped.
    pub struct RolloutBody<B> {
        #[pin]
        inner: B,
        guard: Option<InFlight>,
        // A copy for the shadow comparison, when this request was compared.
        capture: Option<Box<Capture>>,
        // Classifies the outcome at the end (a gRPC status in the trailers),
        // while measuring is on.
        probe: Option<Box<Probe>>,
    }
}

impl<B: Body> RolloutBody<B> {
    pub(crate) fn new(
        inner: B,
        guard: InFlight,
        capture: Option<Box<Capture>>,
        probe: Option<Box<Probe>>,
    ) -> Self {
        let mut capture = capture;
        let mut probe = probe;
        let guard = if inner.is_end_stream() {
            if let Some(c) = capture.as_mut() {
                c.end();
            }
            if let Some(mut p) = probe.take() {
                p.end(None, false);
            }
            None
        } else {
            Some(guard)
        };
        RolloutBody {
            inner,
            guard,
            capture,
            probe,
        }
    }
}

impl<B> RolloutBody<B> {
    /// The color that served this response, while it is still in flight.
    pub fn color(&self) -> Option<Color> {
        self.guard.as_ref().map(InFlight::color)
    }

    /// The wrapped body.
    pub fn get_ref(&self) -> &B {
        &self.inner
    }

    /// The wrapped body. Ending the request early is done by dropping `self`.
    pub fn into_inner(self) -> B {
        self.inner
    }
}

impl<B: Body> Body for RolloutBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    #[inline]
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
        if let Some(c) = this.capture.as_mut() {
            captured(c, &res, ended);
        }
        if this.probe.is_some() {
            probed(this.probe, &res, ended);
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
fn captured<D: bytes::Buf, E>(
    capture: &mut Capture,
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
fn probed<D, E>(
    probe: &mut Option<Box<Probe>>,
    res: &Poll<Option<Result<Frame<D>, E>>>,
    ended: bool,
) {
    let trailers = match res {
        Poll::Ready(Some(Ok(frame))) => frame.trailers_ref(),
        _ => None,
    };
    let failed = matches!(res, Poll::Ready(Some(Err(_))));
    // The status is in the trailers; a body ends with them.
    if ended || trailers.is_some() || failed {
        if let Some(mut p) = probe.take() {
            p.end(trailers, failed);
        }
    }
}

impl<B> std::fmt::Debug for RolloutBody<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RolloutBody")
            .field("color", &self.color())
            .finish_non_exhaustive()
    }
}
