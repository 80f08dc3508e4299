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
use crate::control::{InFlight, Probe};
use crate::shadow::PendingCapture;
use crate::telemetry::{EnteredRequest, RequestTelemetry};

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
        // Measures the outcome, while measuring is on.
        probe: Option<Box<Probe>>,
        // The request's span and response counter (empty without the
        // `metrics` and `tracing` features).
        telemetry: RequestTelemetry,
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

/// What the router adds to each response future: the in-flight guard, the
/// served-by header name, the capture for a shadow comparison, the probe
/// that measures the outcome, and the request's telemetry (its span entered
/// while the inner service is called).
pub(crate) type Extra = (
    InFlight,
    Option<HeaderName>,
    Option<Box<PendingCapture>>,
    Option<Box<Probe>>,
    EnteredRequest,
);

impl<R, SB, SG> ResponseFuture<R, SB, SG>
where
    SB: Service<R>,
    SG: Service<R>,
{
    #[inline]
    fn new(kind: Kind<R, SB, SG>, (guard, served_by, pending, probe, telemetry): Extra) -> Self {
        ResponseFuture {
            kind,
            guard: Some(guard),
            served_by,
            pending,
            probe,
            telemetry: telemetry.exit(),
        }
    }

    #[inline]
    pub(crate) fn blue(fut: SB::Future, extra: Extra) -> Self {
        Self::new(Kind::Blue { fut }, extra)
    }

    #[inline]
    pub(crate) fn green(fut: SG::Future, extra: Extra) -> Self {
        Self::new(Kind::Green { fut }, extra)
    }

    pub(crate) fn blue_oneshot(fut: Oneshot<SB, R>, extra: Extra) -> Self {
        Self::new(Kind::BlueOneshot { fut: Box::pin(fut) }, extra)
    }

    pub(crate) fn green_oneshot(fut: Oneshot<SG, R>, extra: Extra) -> Self {
        Self::new(Kind::GreenOneshot { fut: Box::pin(fut) }, extra)
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
        let _entered = this.telemetry.enter();
        let res = match this.kind.project() {
            KindProj::Blue { fut } => ready!(fut.poll(cx)),
            KindProj::Green { fut } => ready!(fut.poll(cx)),
            KindProj::BlueOneshot { fut } => ready!(fut.as_mut().poll(cx)),
            KindProj::GreenOneshot { fut } => ready!(fut.as_mut().poll(cx)),
        };
        this.telemetry
            .respond(res.as_ref().ok().map(http::Response::status));
        // On error the guard is dropped here: the request is no longer in flight.
        let guard = this
            .guard
            .take()
            .expect("ResponseFuture polled after completion");
        let (mut head, body) = match res {
            Ok(res) => res.into_parts(),
            Err(e) => {
                if let Some(p) = this.pending.take() {
                    (*p).failed();
                }
                if let Some(mut p) = this.probe.take() {
                    p.error();
                }
                return Poll::Ready(Err(e));
            }
        };
        let capture = this.pending.take().map(|p| begin(*p, &head));
        let probe = this
            .probe
            .take()
            .and_then(|p| p.head(head.status, &head.headers, body.is_end_stream()));
        if let Some(name) = this.served_by.take() {
            head.headers.insert(name, color_header_value(guard.color()));
        }
        Poll::Ready(Ok(Response::from_parts(
            head,
            RolloutBody::new(body, guard, capture, probe),
        )))
    }
}

/// The compared path, out of line: most responses are not compared.
#[cold]
#[inline(never)]
fn begin(pending: PendingCapture, head: &http::response::Parts) -> Box<crate::shadow::Capture> {
    pending.begin(head.status, &head.headers)
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
