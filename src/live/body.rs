//! [`LiveBody`]: a response body that, for a sampled answer, keeps a copy
//! of its bytes up to a cap and counts it once the body has ended.

use std::io::IoSlice;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Buf;
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;

use super::state::Answer;
use super::Shared;
use crate::control::ColorVersion;

pin_project! {
    /// The response body of a [`LiveDriftService`](super::LiveDriftService):
    /// the inner body, frame for frame; a sampled answer is also copied (up
    /// to the cap) and counted when its last frame has been read.
    pub struct LiveBody<B> {
        #[pin]
        inner: B,
        tap: Option<Tap>,
    }

    impl<B> PinnedDrop for LiveBody<B> {
        fn drop(this: Pin<&mut Self>) {
            // A body dropped after its last frame was read (its reader saw
            // `is_end_stream` and stopped polling) still counts; one dropped
            // before is not a whole answer.
            let this = this.project();
            if let Some(tap) = this.tap.take() {
                if tap.ended {
                    tap.finish();
                }
            }
        }
    }
}

/// The copy of one sampled answer.
pub(super) struct Tap {
    shared: Arc<Shared>,
    served: ColorVersion,
    buf: Vec<u8>,
    over_cap: bool,
    /// The inner body has said it has no more data.
    ended: bool,
}

impl Tap {
    pub(super) fn new(shared: Arc<Shared>, served: ColorVersion) -> Tap {
        Tap {
            shared,
            served,
            buf: Vec::new(),
            over_cap: false,
            ended: false,
        }
    }

    fn data<D: Buf>(&mut self, data: &D) {
        if self.over_cap {
            return;
        }
        if self.buf.len() + data.remaining() > self.shared.max_body {
            return self.give_up();
        }
        let chunk = data.chunk();
        if chunk.len() == data.remaining() {
            self.buf.extend_from_slice(chunk);
            return;
        }
        // A buffer in several chunks (rare in response bodies).
        let mut slices = [IoSlice::new(&[]); 16];
        let n = data.chunks_vectored(&mut slices);
        if slices[..n].iter().map(|s| s.len()).sum::<usize>() != data.remaining() {
            // More chunks than can be seen without consuming them.
            return self.give_up();
        }
        for s in &slices[..n] {
            self.buf.extend_from_slice(s);
        }
    }

    /// Too large (or not readable whole): counted as over the cap.
    fn give_up(&mut self) {
        self.over_cap = true;
        self.buf = Vec::new();
    }

    fn finish(self) {
        let answer = if self.over_cap {
            Answer::OverCap
        } else {
            Answer::Body(&self.buf)
        };
        self.shared.observe(&self.served, answer);
    }
}

impl<B> LiveBody<B> {
    pub(super) fn new(inner: B, tap: Option<Tap>) -> Self {
        LiveBody { inner, tap }
    }
}

impl<B> Body for LiveBody<B>
where
    B: Body,
{
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let mut this = self.project();
        let polled = this.inner.as_mut().poll_frame(cx);
        if let Some(tap) = this.tap.as_mut() {
            match &polled {
                Poll::Ready(Some(Ok(frame))) => {
                    if let Some(data) = frame.data_ref() {
                        tap.data(data);
                    }
                    tap.ended = this.inner.is_end_stream();
                }
                Poll::Ready(None) => tap.ended = true,
                // An error or a pending poll: an error drops the copy.
                Poll::Ready(Some(Err(_))) => *this.tap = None,
                Poll::Pending => {}
            }
            if this.tap.as_ref().is_some_and(|t| t.ended) {
                if let Some(tap) = this.tap.take() {
                    tap.finish();
                }
            }
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
