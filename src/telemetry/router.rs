//! What a router emits: request counters and spans, transitions.

use std::fmt;
#[cfg(any(feature = "metrics", feature = "tracing"))]
use std::sync::Arc;

use http::StatusCode;

#[cfg(feature = "metrics")]
use super::handles;
#[cfg(any(feature = "metrics", feature = "tracing"))]
use super::labels;
use super::Name;
#[cfg(any(feature = "metrics", feature = "tracing"))]
use super::Owner;
use crate::control::Transition;
use crate::mirror::Engine;
use crate::shadow::Judge;
use crate::Color;

/// What a router emits; lives in its control state.
pub(crate) struct RouterTelemetry {
    #[cfg(feature = "tracing")]
    name: Arc<str>,
    #[cfg(feature = "metrics")]
    metrics: Arc<handles::Router>,
}

impl RouterTelemetry {
    /// Registers the router's metrics, and names its mirror engine and
    /// comparator (if any) after it.
    pub(crate) fn new(name: &Name, mirror: Option<&Engine>, judge: Option<&Judge>) -> Self {
        #[cfg(any(feature = "metrics", feature = "tracing"))]
        {
            if let Some(engine) = mirror {
                engine.stats.telemetry.attach(name, Owner::Router);
            }
            if let Some(judge) = judge {
                judge.report.telemetry.attach(name, Owner::Router);
            }
            RouterTelemetry {
                #[cfg(feature = "tracing")]
                name: name.0.clone(),
                #[cfg(feature = "metrics")]
                metrics: Arc::new(handles::Router::new(&name.0)),
            }
        }
        #[cfg(not(any(feature = "metrics", feature = "tracing")))]
        {
            let _ = (name, mirror, judge);
            RouterTelemetry {}
        }
    }

    /// Counts a request admitted to `color` and makes its span, entered
    /// until the router's response future is made (so the inner service's
    /// `call` runs inside it).
    #[inline]
    pub(crate) fn admit(&self, color: Color) -> EnteredRequest {
        #[cfg(feature = "metrics")]
        self.metrics.requests[color.index()].increment(1);
        #[cfg(not(feature = "metrics"))]
        let _ = color;
        EnteredRequest {
            #[cfg(feature = "tracing")]
            span: tracing::info_span!(
                target: "tower_rollout::router",
                "rollout.request",
                name = &*self.name,
                color = color.as_str(),
            )
            .entered(),
            #[cfg(feature = "metrics")]
            responses: (self.metrics.clone(), color),
        }
    }

    /// Called under the state lock right after each control call, so the
    /// gauges end at the last state.
    pub(crate) fn transition(&self, t: &Transition, from: Color) {
        #[cfg(feature = "metrics")]
        self.metrics.transition(t);
        #[cfg(feature = "tracing")]
        tracing::info!(
            target: "tower_rollout::router",
            name = &*self.name,
            kind = labels::kind_label(t.kind).1,
            from = from.as_str(),
            to = t.active.as_str(),
            split = t.split,
            mirror = t.mirror,
            generation = t.generation,
            "rollout transition"
        );
        #[cfg(not(any(feature = "metrics", feature = "tracing")))]
        let _ = (t, from);
        #[cfg(all(feature = "metrics", not(feature = "tracing")))]
        let _ = from;
    }
}

impl fmt::Debug for RouterTelemetry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RouterTelemetry").finish_non_exhaustive()
    }
}

/// A routed request's span (entered) and response counter, between the
/// router's admission and its response future.
pub(crate) struct EnteredRequest {
    #[cfg(feature = "tracing")]
    span: tracing::span::EnteredSpan,
    #[cfg(feature = "metrics")]
    responses: (Arc<handles::Router>, Color),
}

impl EnteredRequest {
    /// Leaves the span; the response future enters it again at each poll.
    #[inline]
    pub(crate) fn exit(self) -> RequestTelemetry {
        RequestTelemetry {
            #[cfg(feature = "tracing")]
            span: self.span.exit(),
            #[cfg(feature = "metrics")]
            responses: self.responses,
        }
    }
}

/// A routed request's span and response counter, in its response future.
pub(crate) struct RequestTelemetry {
    #[cfg(feature = "tracing")]
    span: tracing::Span,
    #[cfg(feature = "metrics")]
    responses: (Arc<handles::Router>, Color),
}

impl RequestTelemetry {
    /// Enters the request's span until the guard is dropped.
    #[inline]
    pub(crate) fn enter(&self) -> Entered<'_> {
        Entered {
            #[cfg(feature = "tracing")]
            _guard: self.span.enter(),
            _span: std::marker::PhantomData,
        }
    }

    /// Counts the response by class: its status, or `None` when the inner
    /// service failed.
    #[inline]
    pub(crate) fn respond(&self, status: Option<StatusCode>) {
        #[cfg(feature = "metrics")]
        {
            let (metrics, color) = &self.responses;
            metrics.responses[color.index()][labels::class(status)].increment(1);
        }
        #[cfg(not(feature = "metrics"))]
        let _ = status;
    }
}

impl fmt::Debug for RequestTelemetry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RequestTelemetry").finish_non_exhaustive()
    }
}

/// Returned by [`RequestTelemetry::enter`]: the span is left when dropped.
pub(crate) struct Entered<'a> {
    #[cfg(feature = "tracing")]
    _guard: tracing::span::Entered<'a>,
    _span: std::marker::PhantomData<&'a ()>,
}
