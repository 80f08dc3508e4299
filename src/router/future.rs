use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use http::Response;
use pin_project_lite::pin_project;

use super::body::RolloutBody;
use super::mode::{Mode, Plain};
use crate::control::{Admission, Probe, Tags};
use crate::telemetry::RequestTelemetry;

pin_project! {
    /// Response future of [`BlueGreenRouter`](super::BlueGreenRouter): the
    /// inner service's future and the request's admission.
    pub struct ResponseFuture<FB, FG, M = Plain>
    where
        M: Mode,
    {
        #[pin]
        kind: Kind<FB, FG>,
        // Counts the request in flight, with what it needs at the response
        // head; moves into the response body.
        state: Option<Admitted<M>>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<FB, FG> {
        Blue { #[pin] fut: FB },
        Green { #[pin] fut: FG },
    }
}

struct Admitted<M: Mode> {
    guard: Admission,
    extra: Extra<M>,
}

/// What a request needs at its response head beyond its admission; all
/// empty on the plain path.
pub(crate) struct Extra<M: Mode> {
    /// Measures the outcome, while measuring is on.
    pub(crate) probe: Option<Probe>,
    /// The version's tags, when the served-by header is added.
    pub(crate) served_by: Option<Arc<Tags>>,
    /// The active color's side of a shadow comparison, when compared.
    pub(crate) pending: M::Pending,
    /// The request's span and response counter (empty without the
    /// `metrics` and `tracing` features).
    pub(crate) telemetry: RequestTelemetry,
}

impl<M: Mode> Extra<M> {
    /// Nothing beyond the admission: no probe, no header, no comparison.
    #[inline(always)]
    fn is_plain(&self) -> bool {
        self.probe.is_none()
            && self.served_by.is_none()
            && !M::COMPARES
            && self.telemetry.is_empty()
    }

    /// Only the probe, if the request is measured.
    #[inline(always)]
    pub(crate) fn probed(probe: Option<Probe>) -> Self {
        Extra {
            probe,
            served_by: None,
            pending: M::Pending::default(),
            telemetry: RequestTelemetry::none(),
        }
    }

    #[inline]
    pub(crate) fn none() -> Self {
        Extra {
            probe: None,
            served_by: None,
            pending: M::Pending::default(),
            telemetry: RequestTelemetry::none(),
        }
    }
}

impl<FB, FG, M: Mode> ResponseFuture<FB, FG, M> {
    #[inline(always)]
    pub(crate) fn blue(fut: FB, guard: Admission, extra: Extra<M>) -> Self {
        ResponseFuture {
            kind: Kind::Blue { fut },
            state: Some(Admitted { guard, extra }),
        }
    }

    #[inline(always)]
    pub(crate) fn green(fut: FG, guard: Admission, extra: Extra<M>) -> Self {
        ResponseFuture {
            kind: Kind::Green { fut },
            state: Some(Admitted { guard, extra }),
        }
    }
}

impl<FB, FG, M: Mode> ResponseFuture<FB, FG, M> {
    /// Sets the request's telemetry (after the inner call ran in its span).
    #[inline]
    pub(crate) fn with_telemetry(mut self, telemetry: RequestTelemetry) -> Self {
        if let Some(s) = self.state.as_mut() {
            s.extra.telemetry = telemetry;
        }
        self
    }
}

impl<FB, FG, M, RB, E> Future for ResponseFuture<FB, FG, M>
where
    FB: Future<Output = Result<Response<RB>, E>>,
    FG: Future<Output = Result<Response<RB>, E>>,
    M: Mode,
    RB: http_body::Body,
{
    type Output = Result<Response<RolloutBody<RB, M::Capture>>, E>;

    #[inline(always)]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        // Each color's arm runs to the end on its own, so the response moves
        // straight from the inner future into the output.
        match this.kind.project() {
            KindProj::Blue { fut } => {
                let polled = {
                    let _entered = this.state.as_ref().map(|s| s.extra.telemetry.enter());
                    fut.poll(cx)
                };
                finish(polled, this.state)
            }
            KindProj::Green { fut } => {
                let polled = {
                    let _entered = this.state.as_ref().map(|s| s.extra.telemetry.enter());
                    fut.poll(cx)
                };
                finish(polled, this.state)
            }
        }
    }
}

/// What the response future yields for an inner response body `RB`.
type Routed<RB, M, E> = Poll<Result<Response<RolloutBody<RB, <M as Mode>::Capture>>, E>>;

/// The inner future's outcome, with the admission moved into the body. The
/// plain case is decided before the response is looked at, so it moves only
/// once.
#[inline(always)]
fn finish<RB, E, M>(
    polled: Poll<Result<Response<RB>, E>>,
    state: &mut Option<Admitted<M>>,
) -> Routed<RB, M, E>
where
    M: Mode,
    RB: http_body::Body,
{
    if state.as_ref().is_some_and(|s| s.extra.is_plain()) {
        let res = ready!(polled);
        let guard = match state.take() {
            Some(s) => s.guard,
            None => unreachable!("checked above"),
        };
        return Poll::Ready(res.map(|res| res.map(|body| RolloutBody::plain(body, guard))));
    }
    finish_with_extras(polled, state)
}

#[inline(never)]
fn finish_with_extras<RB, E, M>(
    polled: Poll<Result<Response<RB>, E>>,
    state: &mut Option<Admitted<M>>,
) -> Routed<RB, M, E>
where
    M: Mode,
    RB: http_body::Body,
{
    let res = ready!(polled);
    let Admitted { guard, extra } = state
        .take()
        .expect("ResponseFuture polled after completion");
    Poll::Ready(respond(res, guard, extra))
}

/// The response, with the admission and the extras moved into its body.
#[inline]
fn respond<RB, E, M>(
    res: Result<Response<RB>, E>,
    mut guard: Admission,
    extra: Extra<M>,
) -> Result<Response<RolloutBody<RB, M::Capture>>, E>
where
    M: Mode,
    RB: http_body::Body,
{
    let Extra {
        probe,
        served_by,
        pending,
        telemetry,
    } = extra;
    match res {
        Ok(res) => {
            let (mut head, body) = res.into_parts();
            telemetry.respond(Some(head.status));
            if let Some(p) = probe {
                p.head(&mut guard, head.status, &head.headers, body.is_end_stream());
            }
            let capture = M::begin(pending, head.status, &head.headers);
            if let Some((name, value)) = served_by.as_ref().and_then(|t| t.served_by.as_ref()) {
                head.headers.insert(name.clone(), value.clone());
            }
            Ok(Response::from_parts(
                head,
                RolloutBody::new(body, guard, capture),
            ))
        }
        Err(e) => {
            // The request is no longer in flight.
            telemetry.respond(None);
            if let Some(p) = probe {
                p.error(&mut guard);
            }
            M::failed(pending);
            Err(e)
        }
    }
}

impl<FB, FG, M: Mode> fmt::Debug for ResponseFuture<FB, FG, M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture")
            .field("admitted", &self.state.is_some())
            .finish_non_exhaustive()
    }
}
