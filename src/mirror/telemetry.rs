//! What a mirror engine emits: copies by outcome, shadow latency, spans.

use std::fmt;
#[cfg(any(feature = "metrics", feature = "tracing"))]
use std::sync::Arc;
use std::time::Duration;

#[cfg(feature = "metrics")]
use metrics::{Counter, Histogram, Label, Unit};

use super::outcome::Outcome as CopyOutcome;
#[cfg(feature = "metrics")]
use crate::telemetry::handles::{counter, histogram, labels};
use crate::telemetry::{Name, Owner};

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
    metrics: MirrorMetrics,
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
            metrics: MirrorMetrics::new(&name.0, owner),
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
        let (index, outcome, reason) = copy_labels(o);
        #[cfg(feature = "metrics")]
        self.metrics.outcomes[index].increment(1);
        #[cfg(not(feature = "metrics"))]
        let _ = index;
        if o != CopyOutcome::Completed {
            self.outcome_event(outcome, reason);
        }
    }
}

#[cfg(feature = "metrics")]
const SAMPLED: &str = "rollout_mirror_sampled_total";
#[cfg(feature = "metrics")]
const COPIES: &str = "rollout_mirror_copies_total";
#[cfg(feature = "metrics")]
const SHADOW_DURATION: &str = "rollout_mirror_shadow_duration_seconds";

#[cfg(feature = "metrics")]
const COPY_OUTCOMES: [CopyOutcome; 9] = [
    CopyOutcome::Saturated,
    CopyOutcome::OverBudget,
    CopyOutcome::ShadowSlow,
    CopyOutcome::PrimaryEarly,
    CopyOutcome::NoExecutor,
    CopyOutcome::Completed,
    CopyOutcome::Error,
    CopyOutcome::Timeout,
    CopyOutcome::Panic,
];

/// The `outcome` and `reason` labels of a copy's outcome, and its index.
#[cfg(any(feature = "metrics", feature = "tracing"))]
fn copy_labels(o: CopyOutcome) -> (usize, &'static str, Option<&'static str>) {
    match o {
        CopyOutcome::Saturated => (0, "dropped", Some("saturated")),
        CopyOutcome::OverBudget => (1, "dropped", Some("over_budget")),
        CopyOutcome::ShadowSlow => (2, "dropped", Some("shadow_slow")),
        CopyOutcome::PrimaryEarly => (3, "dropped", Some("primary_early")),
        CopyOutcome::NoExecutor => (4, "skipped", Some("no_executor")),
        CopyOutcome::Completed => (5, "completed", None),
        CopyOutcome::Error => (6, "error", None),
        CopyOutcome::Timeout => (7, "timeout", None),
        CopyOutcome::Panic => (8, "panic", None),
    }
}

#[cfg(feature = "metrics")]
struct MirrorMetrics {
    sampled: Counter,
    outcomes: [Counter; COPY_OUTCOMES.len()],
    latency: Histogram,
}

#[cfg(feature = "metrics")]
impl MirrorMetrics {
    fn new(name: &Arc<str>, owner: Owner) -> MirrorMetrics {
        metrics::describe_counter!(SAMPLED, Unit::Count, "Requests chosen for a copy.");
        metrics::describe_counter!(
            COPIES,
            Unit::Count,
            "How each chosen copy ended, by outcome and reason."
        );
        metrics::describe_histogram!(
            SHADOW_DURATION,
            Unit::Seconds,
            "Shadow latency, from the copy's start to the end of its response body."
        );
        let layer = ("layer", owner.as_str());
        MirrorMetrics {
            sampled: counter(SAMPLED, labels(name, &[layer])),
            outcomes: COPY_OUTCOMES.map(|o| {
                let (_, outcome, reason) = copy_labels(o);
                let mut l = labels(name, &[layer, ("outcome", outcome)]);
                if let Some(reason) = reason {
                    l.push(Label::from_static_parts("reason", reason));
                }
                counter(COPIES, l)
            }),
            latency: histogram(SHADOW_DURATION, labels(name, &[layer])),
        }
    }
}

impl fmt::Debug for MirrorTelemetry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MirrorTelemetry").finish_non_exhaustive()
    }
}

#[cfg(all(test, feature = "metrics"))]
mod tests {
    use super::*;

    #[test]
    fn every_outcome_has_its_own_index() {
        for (i, o) in COPY_OUTCOMES.into_iter().enumerate() {
            assert_eq!(copy_labels(o).0, i);
        }
    }
}
