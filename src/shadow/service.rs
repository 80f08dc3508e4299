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
use tower::BoxError;

use super::capture::Judge;
use crate::mirror::{CopyStart, Engine, MirrorBody, Second};

/// The secondary of a [`ShadowComparator`](super::ShadowComparator) without a noise floor. Never
/// called.
#[derive(Debug, Clone, Copy, Default)]
#[non_exhaustive]
pub struct NoSecondary;

impl<R> tower_service::Service<R> for NoSecondary {
    type Response = http::Response<String>;
    type Error = std::convert::Infallible;
    type Future = std::future::Ready<Result<Self::Response, Self::Error>>;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: R) -> Self::Future {
        std::future::ready(Ok(http::Response::new(String::new())))
    }
}

/// What a comparator's layer and its services share: the copies' engine and
/// the judge of their answers.
pub(crate) struct Shared {
    pub(crate) engine: Engine,
    pub(crate) judge: Arc<Judge>,
}

/// A primary service whose sampled requests are also sent to a shadow and
/// compared. Made by [`ShadowComparator`](super::ShadowComparator); see the
/// [module docs](super).
#[derive(Clone)]
pub struct Shadowed<S, T, U = NoSecondary> {
    primary: S,
    shadow: T,
    secondary: Option<U>,
    shared: Arc<Shared>,
}

impl<S, T, U> Shadowed<S, T, U> {
    pub(crate) fn from_parts(
        primary: S,
        shadow: T,
        secondary: Option<U>,
        shared: Arc<Shared>,
    ) -> Self {
        Shadowed {
            primary,
            shadow,
            secondary,
            shared,
        }
    }
}

impl<B, S, T, U, RB, TB, UB> Service<Request<B>> for Shadowed<S, T, U>
where
    U: Service<Request<MirrorBody<B>>, Response = Response<UB>> + Clone + Send + 'static,
    U::Future: Send + 'static,
    UB: Body + Send + 'static,
    UB::Data: Send,
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
        let pair = self.shared.judge.pairs.single();
        let started = self.shared.judge.start(req.method(), req.uri(), pair);
        let second = started.secondary.and_then(|followup| {
            Some(Second {
                svc: self.secondary.clone()?,
                followup,
            })
        });
        let teed = self.shared.engine.copy_pair(
            req,
            self.shadow.clone(),
            None,
            Some(started.shadow),
            second,
        );
        let pending = match teed.start {
            CopyStart::Started => Some(started.capture),
            CopyStart::NotChosen => None,
            // Counted by the dropped follow-up (skipped_not_started).
            CopyStart::NotStarted => None,
        };
        ResponseFuture::new(self.primary.call(teed.req), pending)
    }
}

impl<S: fmt::Debug, T: fmt::Debug, U> fmt::Debug for Shadowed<S, T, U> {
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
    RB: Body,
{
    type Output = Result<Response<CompareBody<RB>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let res = ready!(this.inner.poll(cx));
        let pending = this.pending.take();
        Poll::Ready(match res {
            Ok(res) => {
                let capture = pending.map(|p| (*p).begin(res.status(), res.headers()));
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
