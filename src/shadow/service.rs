use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use bytes::Bytes;
use http::{Request, Response};
use http_body::Body;
use pin_project_lite::pin_project;
use tower_service::Service;

use super::capture::{CompareBody, PendingCapture};
use super::layer::Shared;
use super::report::Outcome;
use crate::mirror::{BoxError, CopyStart, MirrorBody};

/// A primary service whose sampled requests are also sent to a shadow and
/// compared. Made by [`ShadowComparator`](super::ShadowComparator); see the
/// [module docs](super).
#[derive(Clone)]
pub struct Shadowed<S, T> {
    primary: S,
    shadow: T,
    shared: Arc<Shared>,
}

impl<S, T> Shadowed<S, T> {
    pub(crate) fn from_parts(primary: S, shadow: T, shared: Arc<Shared>) -> Self {
        Shadowed {
            primary,
            shadow,
            shared,
        }
    }
}

impl<B, S, T, RB, TB> Service<Request<B>> for Shadowed<S, T>
where
    S: Service<Request<MirrorBody<B>>, Response = Response<RB>>,
    RB: Body,
    T: Service<Request<MirrorBody<B>>, Response = Response<TB>> + Clone + Send + 'static,
    T::Future: Send + 'static,
    TB: Body + Send + 'static,
    TB::Data: Send,
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    type Response = Response<CompareBody<RB>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    /// Only the primary is polled.
    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.primary.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        if !self.shared.engine.sample_hit() {
            return ResponseFuture::new(self.primary.call(req.map(MirrorBody::new)), None);
        }
        let (followup, pending) = self.shared.judge.start(req.method(), req.uri());
        let (req, started) =
            self.shared
                .engine
                .copy_with(req, self.shadow.clone(), None, Some(followup));
        let pending = match started {
            CopyStart::Started => Some(pending),
            CopyStart::NotChosen => None,
            CopyStart::NotStarted => {
                self.shared.judge.report.count(Outcome::SkippedNotStarted);
                None
            }
        };
        ResponseFuture::new(self.primary.call(req), pending)
    }
}

impl<S: fmt::Debug, T: fmt::Debug> fmt::Debug for Shadowed<S, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Shadowed")
            .field("primary", &self.primary)
            .field("shadow", &self.shadow)
            .finish_non_exhaustive()
    }
}

pin_project! {
    /// Response future of [`Shadowed`].
    pub struct ResponseFuture<F> {
        #[pin]
        inner: F,
        // Set when the request was sampled: the primary's side of the comparison.
        pending: Option<Box<PendingCapture>>,
    }
}

impl<F> ResponseFuture<F> {
    pub(crate) fn new(inner: F, pending: Option<Box<PendingCapture>>) -> Self {
        ResponseFuture { inner, pending }
    }
}

impl<F, RB, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<RB>, E>>,
{
    type Output = Result<Response<CompareBody<RB>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let res = ready!(this.inner.poll(cx));
        let pending = this.pending.take();
        Poll::Ready(match res {
            Ok(res) => {
                let capture = pending.map(|p| (*p).begin(&res));
                Ok(res.map(|body| CompareBody::new(body, capture)))
            }
            Err(e) => {
                if let Some(p) = pending {
                    (*p).failed();
                }
                Err(e)
            }
        })
    }
}

impl<F> fmt::Debug for ResponseFuture<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture")
            .field("compared", &self.pending.is_some())
            .finish_non_exhaustive()
    }
}
