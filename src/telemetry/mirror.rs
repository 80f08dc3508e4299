//! What a mirror engine emits: copies by outcome, shadow latency, spans.

use std::fmt;
#[cfg(feature = "tracing")]
use std::sync::Arc;
use std::time::Duration;

#[cfg(feature = "metrics")]
use super::handles;
#[cfg(any(feature = "metrics", feature = "tracing"))]
use super::labels;
use super::{Name, Owner};
use crate::mirror::CopyOutcome;

/// What a mirror engine emits: set once by the layer or router that owns it.
#[derive(Default)]
pub(crate) struct MirrorTelemetry {
    #[cfg(any(feature = "metrics", feature = "tracing"))]
    inner: std::sync::OnceLock<MirrorInner>,
}

#[cfg(any(feature = "metrics", feature = "tracing"))]
struct MirrorInner {
    #[cfg(feature = "tracing")]
    name: Arc<str>,
    #[cfg(feature = "tracing")]
    owner: Owner,
    #[cfg(feature = "metrics")]
    metrics: handles::Mirror,
}

/// A shadow task, inside its `rollout.mirror` span with the `tracing` feature.
#[cfg(feature = "tracing")]
pub(crate) type Instrumented<F> = tracing::instrument::Instrumented<F>;
/// A shadow task, inside its `rollout.mirror` span with the `tracing` feature.
#[cfg(not(feature = "tracing"))]
pub(crate) type Instrumented<F> = F;

impl MirrorTelemetry {
    /// Names the engine; the first call wins.
    pub(crate) fn attach(&self, name: &Name, owner: Owner) {
        #[cfg(any(feature = "metrics", feature = "tracing"))]
        self.inner.get_or_init(|| MirrorInner {
            #[cfg(feature = "tracing")]
            name: name.0.clone(),
            #[cfg(feature = "tracing")]
            owner,
            #[cfg(feature = "metrics")]
            metrics: handles::Mirror::new(&name.0, owner),
        });
        #[cfg(not(any(feature = "metrics", feature = "tracing")))]
        let _ = (name, owner);
    }

    #[inline]
    pub(crate) fn sampled(&self) {
        #[cfg(feature = "metrics")]
        if let Some(inner) = self.inner.get() {
            inner.metrics.sampled.increment(1);
        }
    }

    /// Counts how a copy ended (called exactly once per copy).
    #[inline]
    pub(crate) fn outcome(&self, outcome: CopyOutcome) {
        #[cfg(any(feature = "metrics", feature = "tracing"))]
        if let Some(inner) = self.inner.get() {
            inner.outcome(outcome);
        }
        #[cfg(not(any(feature = "metrics", feature = "tracing")))]
        let _ = outcome;
    }

    pub(crate) fn latency(&self, d: Duration) {
        #[cfg(feature = "metrics")]
        if let Some(inner) = self.inner.get() {
            inner.metrics.latency.record(d.as_secs_f64());
        }
        #[cfg(not(feature = "metrics"))]
        let _ = d;
    }

    /// Runs a shadow task inside a `rollout.mirror` span.
    #[inline]
    pub(crate) fn instrument<F>(&self, task: F) -> Instrumented<F> {
        #[cfg(feature = "tracing")]
        {
            use tracing::Instrument;
            let span = match self.inner.get() {
                Some(inner) => tracing::info_span!(
                    target: "tower_rollout::mirror",
                    "rollout.mirror",
                    name = &*inner.name,
                    layer = inner.owner.as_str(),
                ),
                None => tracing::Span::none(),
            };
            task.instrument(span)
        }
        #[cfg(not(feature = "tracing"))]
        task
    }
}

#[cfg(any(feature = "metrics", feature = "tracing"))]
impl MirrorInner {
    #[cold]
    fn outcome_event(&self, outcome: &'static str, reason: Option<&'static str>) {
        #[cfg(feature = "tracing")]
        {
            let (name, layer) = (&*self.name, self.owner.as_str());
            let reason = reason.unwrap_or("");
            if outcome == "panic" {
                tracing::warn!(
                    target: "tower_rollout::mirror",
                    name, layer, outcome, reason,
                    "mirrored copy not completed"
                );
            } else {
                tracing::debug!(
                    target: "tower_rollout::mirror",
                    name, layer, outcome, reason,
                    "mirrored copy not completed"
                );
            }
        }
        #[cfg(not(feature = "tracing"))]
        let _ = (outcome, reason);
    }

    #[inline]
    fn outcome(&self, o: CopyOutcome) {
        let (index, outcome, reason) = labels::copy_labels(o);
        #[cfg(feature = "metrics")]
        self.metrics.outcomes[index].increment(1);
        #[cfg(not(feature = "metrics"))]
        let _ = index;
        if o != CopyOutcome::Completed {
            self.outcome_event(outcome, reason);
        }
    }
}

impl fmt::Debug for MirrorTelemetry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MirrorTelemetry").finish_non_exhaustive()
    }
}
