use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use http::{HeaderName, Response};
use pin_project_lite::pin_project;
use tower::util::Oneshot;
use tower_service::Service;

use super::config::color_header_value;
use crate::body::RolloutBody;
use crate::control::InFlight;
use crate::shadow::PendingCapture;

pin_project! {
    /// Response future of [`BlueGreenRouter`](super::BlueGreenRouter).
    pub struct ResponseFuture<R, SB, SG>
    where
        SB: Service<R>,
        SG: Service<R>,
    {
        #[pin]
        kind: Kind<R, SB, SG>,
        // Counts the request in flight; moves into the response body.
        guard: Option<InFlight>,
        served_by: Option<HeaderName>,
        // The active color's side of a shadow comparison, when compared.
        pending: Option<Box<PendingCapture>>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<R, SB, SG>
    where
        SB: Service<R>,
        SG: Service<R>,
    {
        Blue { #[pin] fut: SB::Future },
        Green { #[pin] fut: SG::Future },
        // The other color: rare, and as large as a request, so boxed to keep
        // the common future small (every byte of it is copied per request).
        BlueOneshot { fut: Pin<Box<Oneshot<SB, R>>> },
        GreenOneshot { fut: Pin<Box<Oneshot<SG, R>>> },
    }
}

impl<R, SB, SG> ResponseFuture<R, SB, SG>
where
    SB: Service<R>,
    SG: Service<R>,
{
    fn new(kind: Kind<R, SB, SG>, guard: InFlight, served_by: Option<HeaderName>) -> Self {
        ResponseFuture {
            kind,
            guard: Some(guard),
            served_by,
            pending: None,
        }
    }

    pub(crate) fn compared(mut self, pending: Option<Box<PendingCapture>>) -> Self {
        self.pending = pending;
        self
    }

    pub(crate) fn blue(fut: SB::Future, guard: InFlight, served_by: Option<HeaderName>) -> Self {
        Self::new(Kind::Blue { fut }, guard, served_by)
    }

    pub(crate) fn green(fut: SG::Future, guard: InFlight, served_by: Option<HeaderName>) -> Self {
        Self::new(Kind::Green { fut }, guard, served_by)
    }

    pub(crate) fn blue_oneshot(
        fut: Oneshot<SB, R>,
        guard: InFlight,
        served_by: Option<HeaderName>,
    ) -> Self {
        Self::new(Kind::BlueOneshot { fut: Box::pin(fut) }, guard, served_by)
    }

    pub(crate) fn green_oneshot(
        fut: Oneshot<SG, R>,
        guard: InFlight,
        served_by: Option<HeaderName>,
    ) -> Self {
        Self::new(Kind::GreenOneshot { fut: Box::pin(fut) }, guard, served_by)
    }
}

impl<R, SB, SG, RB, E> Future for ResponseFuture<R, SB, SG>
where
    SB: Service<R, Response = Response<RB>, Error = E>,
    SG: Service<R, Response = Response<RB>, Error = E>,
    RB: http_body::Body,
{
    type Output = Result<Response<RolloutBody<RB>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let res = match this.kind.project() {
            KindProj::Blue { fut } => ready!(fut.poll(cx)),
            KindProj::Green { fut } => ready!(fut.poll(cx)),
            KindProj::BlueOneshot { fut } => ready!(fut.as_mut().poll(cx)),
            KindProj::GreenOneshot { fut } => ready!(fut.as_mut().poll(cx)),
        };
        // On error the guard is dropped here: the request is no longer in flight.
        let guard = this
            .guard
            .take()
            .expect("ResponseFuture polled after completion");
        let pending = this.pending.take();
        let res = match res {
            Ok(res) => res,
            Err(e) => {
                if let Some(p) = pending {
                    (*p).failed();
                }
                return Poll::Ready(Err(e));
            }
        };
        let capture = pending.map(|p| (*p).begin(&res));
        let (mut head, body) = res.into_parts();
        if let Some(name) = this.served_by.take() {
            head.headers.insert(name, color_header_value(guard.color()));
        }
        Poll::Ready(Ok(Response::from_parts(
            head,
            RolloutBody::new(body, guard, capture),
        )))
    }
}

impl<R, SB, SG> fmt::Debug for ResponseFuture<R, SB, SG>
where
    SB: Service<R>,
    SG: Service<R>,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture")
            .field("color", &self.guard.as_ref().map(InFlight::color))
            .finish_non_exhaustive()
    }
}
