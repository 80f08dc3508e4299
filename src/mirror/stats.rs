use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

pub(crate) use super::outcome::Outcome;
use super::outcome::OUTCOMES;
use super::telemetry::MirrorTelemetry;
use crate::stats::{Histogram, Percentiles};

/// Live counters of one mirror engine.
#[derive(Debug)]
pub(crate) struct Stats {
    sampled: AtomicU64,
    outcomes: [AtomicU64; OUTCOMES],
    latency: Histogram,
    /// Metrics and events, when the owning layer names the engine.
    pub(crate) telemetry: MirrorTelemetry,
}

impl Stats {
    pub(crate) fn new() -> Self {
        Stats {
            sampled: AtomicU64::new(0),
            outcomes: Default::default(),
            latency: Histogram::new(),
            telemetry: MirrorTelemetry::default(),
        }
    }

    pub(crate) fn sampled(&self) {
        self.sampled.fetch_add(1, Ordering::Relaxed);
        self.telemetry.sampled();
    }

    pub(crate) fn count(&self, outcome: Outcome) {
        self.outcomes[outcome as usize - 1].fetch_add(1, Ordering::Relaxed);
        self.telemetry.outcome(outcome);
    }

    pub(crate) fn latency(&self, d: Duration) {
        self.latency.record(d);
        self.telemetry.latency(d);
    }

    /// `running`: shadow tasks holding a permit now.
    pub(crate) fn snapshot(&self, running: u64) -> MirrorStats {
        let get = |o: Outcome| self.outcomes[o as usize - 1].load(Ordering::Relaxed);
        let mut s = MirrorStats {
            dropped_saturated: get(Outcome::Saturated),
            dropped_over_budget: get(Outcome::OverBudget),
            dropped_shadow_slow: get(Outcome::ShadowSlow),
            dropped_primary_early: get(Outcome::PrimaryEarly),
            skipped_no_executor: get(Outcome::NoExecutor),
            completed: get(Outcome::Completed),
            errors: get(Outcome::Error),
            timeouts: get(Outcome::Timeout),
            panics: get(Outcome::Panic),
            sampled: 0,
            in_flight: 0,
            latency: self.latency.snapshot(),
        };
        s.sampled = self.sampled.load(Ordering::Relaxed);
        s.in_flight = running;
        s
    }
}

/// A snapshot of a mirror's counters, from
/// [`MirrorHandle::stats`](super::MirrorHandle::stats) or
/// [`RolloutHandle::mirror_stats`](crate::RolloutHandle::mirror_stats).
///
/// Every sampled copy ends in exactly one of the outcome counters, so once
/// `in_flight` is zero, `sampled == settled()` (dropped + skipped + completed +
/// errors + timeouts + panics).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct MirrorStats {
    /// Requests chosen for mirroring (by the sample fraction and predicate).
    pub sampled: u64,
    /// Copies not started: `max_in_flight` shadow requests were already running.
    pub dropped_saturated: u64,
    /// Copies abandoned because the body exceeded the byte budget (known up
    /// front from its size, or while streaming).
    pub dropped_over_budget: u64,
    /// Copies abandoned because the shadow read its body too slowly.
    pub dropped_shadow_slow: u64,
    /// Copies abandoned because the primary stopped reading its body early
    /// (or the client's body failed).
    pub dropped_primary_early: u64,
    /// Copies skipped because no executor was available (for example no tokio
    /// runtime on the calling thread), or because the executor dropped the
    /// task before it finished (a runtime shutting down).
    pub skipped_no_executor: u64,
    /// Shadow requests that answered and whose response body was read to the end.
    pub completed: u64,
    /// Shadow requests that failed (service error or response body error).
    pub errors: u64,
    /// Shadow requests stopped at the shadow deadline.
    pub timeouts: u64,
    /// Shadow requests whose service panicked (caught).
    pub panics: u64,
    /// Shadow tasks running now (each holds one of `max_in_flight` permits). A
    /// copy abandoned while streaming has its outcome counted at once, and its
    /// task stops when the shadow sees the aborted body or its deadline.
    pub in_flight: u64,
    /// Shadow latency, from spawn to the end of its response body, for
    /// completed requests and errors.
    pub latency: Percentiles,
}

impl MirrorStats {
    /// All copies dropped, for any reason.
    pub fn dropped(&self) -> u64 {
        self.dropped_saturated
            + self.dropped_over_budget
            + self.dropped_shadow_slow
            + self.dropped_primary_early
    }

    /// Copies whose outcome is known.
    pub fn settled(&self) -> u64 {
        self.dropped()
            + self.skipped_no_executor
            + self.completed
            + self.errors
            + self.timeouts
            + self.panics
    }
}
