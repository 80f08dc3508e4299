//! What a router emits: request counters and spans per version, transitions.

use std::any::Any;
use std::fmt;
use std::sync::Arc;

use http::StatusCode;

#[cfg(feature = "metrics")]
use super::handles;
#[cfg(any(feature = "metrics", feature = "tracing"))]
use super::labels;
use super::Name;
use crate::control::{Observer, Tags, Transition, VersionLabel};
use crate::Color;

/// What a router emits; attached to its control state as an observer.
/// `None` (nothing at all) without the `metrics` and `tracing` features.
pub(crate) struct RouterTelemetry {
    #[cfg(any(feature = "metrics", feature = "tracing"))]
    name: Arc<str>,
    #[cfg(feature = "metrics")]
    metrics: handles::Router,
}

impl RouterTelemetry {
    /// Registers the router's metrics.
    pub(crate) fn new(name: &Name) -> Option<Arc<RouterTelemetry>> {
        #[cfg(any(feature = "metrics", feature = "tracing"))]
        {
            Some(Arc::new(RouterTelemetry {
                name: name.0.clone(),
                #[cfg(feature = "metrics")]
                metrics: handles::Router::new(&name.0),
            }))
        }
        #[cfg(not(any(feature = "metrics", feature = "tracing")))]
        {
            let _ = name;
            None
        }
    }
}

impl Observer for RouterTelemetry {
    /// Called under the state lock right after each control call, so the
    /// gauges end at the last state.
    fn transition(&self, t: &Transition) {
        #[cfg(feature = "metrics")]
        self.metrics.transition(t);
        #[cfg(feature = "tracing")]
        tracing::info!(
            target: "tower_rollout::router",
            name = &*self.name,
            kind = labels::kind_label(t.kind).1,
            from = t.from.color.as_str(),
            from_version = t.from.version.as_str(),
            to = t.active.as_str(),
            to_version = t.version.as_str(),
            replaced = t.replaced.as_ref().map(VersionLabel::as_str),
            split = t.split,
            mirror = t.mirror,
            generation = t.generation,
            "rollout transition"
        );
        #[cfg(not(any(feature = "metrics", feature = "tracing")))]
        let _ = t;
    }

    fn loaded(
        &self,
        color: Color,
        version: &VersionLabel,
        replaced: Option<&VersionLabel>,
    ) -> Option<Arc<dyn Any + Send + Sync>> {
        #[cfg(feature = "metrics")]
        self.metrics.loaded(color, version, replaced);
        #[cfg(not(feature = "metrics"))]
        let _ = replaced;
        Some(Arc::new(VersionTelemetry {
            #[cfg(feature = "tracing")]
            name: self.name.clone(),
            #[cfg(feature = "tracing")]
            color,
            #[cfg(feature = "tracing")]
            version: version.clone(),
            #[cfg(feature = "metrics")]
            metrics: handles::Version::new(&self.name, color, version),
            #[cfg(not(any(feature = "metrics", feature = "tracing")))]
            _unused: (color, version.clone()),
        }))
    }
}

impl fmt::Debug for RouterTelemetry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RouterTelemetry").finish_non_exhaustive()
    }
}

/// What a router keeps per loaded version: its request and response
/// counters and the fields of its requests' spans.
pub(crate) struct VersionTelemetry {
    #[cfg(feature = "tracing")]
    name: Arc<str>,
    #[cfg(feature = "tracing")]
    color: Color,
    #[cfg(feature = "tracing")]
    version: VersionLabel,
    #[cfg(feature = "metrics")]
    metrics: handles::Version,
    #[cfg(not(any(feature = "metrics", feature = "tracing")))]
    _unused: (Color, VersionLabel),
}

/// Counts a request admitted to the version of `tags` and makes its span,
/// entered until [`EnteredRequest::exit`] (so the inner service's `call`
/// runs inside it).
#[inline]
pub(crate) fn request(tags: Option<&Tags>) -> EnteredRequest {
    #[cfg(any(feature = "metrics", feature = "tracing"))]
    {
        let version = tags
            .and_then(|t| t.telemetry.clone())
            .and_then(|t| t.downcast::<VersionTelemetry>().ok());
        #[cfg(feature = "metrics")]
        if let Some(v) = &version {
            v.metrics.requests.increment(1);
        }
        EnteredRequest {
            #[cfg(feature = "tracing")]
            span: match &version {
                Some(v) => tracing::info_span!(
                    target: "tower_rollout::router",
                    "rollout.request",
                    name = &*v.name,
                    color = v.color.as_str(),
                    version = v.version.as_str(),
                ),
                None => tracing::Span::none(),
            }
            .entered(),
            #[cfg(feature = "metrics")]
            version,
        }
    }
    #[cfg(not(any(feature = "metrics", feature = "tracing")))]
    {
        let _ = tags;
        EnteredRequest {}
    }
}

/// A routed request's span (entered) and response counter, between the
/// router's admission and its response future.
pub(crate) struct EnteredRequest {
    #[cfg(feature = "tracing")]
    span: tracing::span::EnteredSpan,
    #[cfg(feature = "metrics")]
    version: Option<Arc<VersionTelemetry>>,
}

impl EnteredRequest {
    /// Leaves the span; the response future enters it again at each poll.
    #[inline]
    pub(crate) fn exit(self) -> RequestTelemetry {
        RequestTelemetry {
            #[cfg(feature = "tracing")]
            span: self.span.exit(),
            #[cfg(feature = "metrics")]
            version: self.version,
        }
    }
}

/// A routed request's span and response counter, in its response future.
pub(crate) struct RequestTelemetry {
    #[cfg(feature = "tracing")]
    span: tracing::Span,
    #[cfg(feature = "metrics")]
    version: Option<Arc<VersionTelemetry>>,
}

impl RequestTelemetry {
    /// Nothing to emit (the plain path, or no telemetry).
    #[inline]
    pub(crate) fn none() -> Self {
        RequestTelemetry {
            #[cfg(feature = "tracing")]
            span: tracing::Span::none(),
            #[cfg(feature = "metrics")]
            version: None,
        }
    }

    /// Nothing to count or enter (always, without the features).
    #[inline(always)]
    pub(crate) fn is_empty(&self) -> bool {
        #[cfg(feature = "metrics")]
        if self.version.is_some() {
            return false;
        }
        #[cfg(feature = "tracing")]
        if !self.span.is_none() {
            return false;
        }
        true
    }

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
        if let Some(v) = &self.version {
            v.metrics.responses[labels::class(status)].increment(1);
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
