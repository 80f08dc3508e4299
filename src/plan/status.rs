//! What a running plan shows: its state, phase, gate verdicts and timeline.

use std::time::Duration;

use crate::Color;

/// Where a plan is.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Phase {
    /// A fraction of the stable color's traffic is mirrored to the candidate
    /// (users see only the stable color's answers).
    Mirror {
        /// The mirrored fraction.
        fraction: f64,
    },
    /// A canary step: a fraction of requests goes to the candidate.
    Canary {
        /// The step, counted from 1.
        step: usize,
        /// How many canary steps the plan has.
        steps: usize,
        /// The fraction of requests sent to the candidate.
        split: f64,
    },
    /// The candidate is active; the stable color stays warm on standby, so a
    /// rollback is still one step.
    PostPromotion,
    /// Finished (promoted, aborted or superseded).
    Done,
}

/// A plan's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum PlanState {
    /// Advancing when each phase's bake time is over and its gates pass.
    Running,
    /// The bake time is over but a gate is inconclusive (it has not seen its
    /// minimum sample): the plan waits instead of passing it.
    Holding,
    /// Paused by hand: it does not advance, but its gates still abort it.
    Paused,
    /// Finished: the candidate is active.
    Promoted,
    /// Finished: the stable color is active again.
    Aborted,
    /// Finished: someone else changed the rollout state (a promote, rollback,
    /// split or mirror call outside the plan), so the plan stopped without
    /// touching traffic.
    Superseded,
}

impl PlanState {
    /// Whether the plan has finished.
    pub fn is_finished(self) -> bool {
        matches!(
            self,
            PlanState::Promoted | PlanState::Aborted | PlanState::Superseded
        )
    }
}

/// A gate's result at one evaluation: each variant says what the gate
/// measured (the figures, against the threshold).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GateVerdict {
    /// The gate passes; the text gives the figures (`3 of 1200 requests
    /// failed (0.25%, at most 1.00%)`).
    Pass(String),
    /// The gate fails; the plan aborts. The text says why, with the figures.
    Fail(String),
    /// The gate cannot decide (not enough samples yet); the plan holds.
    Inconclusive(String),
}

impl GateVerdict {
    /// Whether this is [`GateVerdict::Pass`].
    pub fn is_pass(&self) -> bool {
        matches!(self, GateVerdict::Pass(_))
    }

    /// `pass`, `fail` or `inconclusive`.
    pub fn as_str(&self) -> &'static str {
        match self {
            GateVerdict::Pass(_) => "pass",
            GateVerdict::Fail(_) => "fail",
            GateVerdict::Inconclusive(_) => "inconclusive",
        }
    }

    /// The figures (pass), the reason (fail) or what is missing
    /// (inconclusive).
    pub fn detail(&self) -> &str {
        match self {
            GateVerdict::Pass(s) | GateVerdict::Fail(s) | GateVerdict::Inconclusive(s) => s,
        }
    }
}

/// A gate's latest verdict.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct GateStatus {
    /// The gate's name.
    pub gate: String,
    /// Its threshold, in words (`error rate at most 1.00%`).
    pub threshold: String,
    /// The sample it needs before it decides.
    pub min_sample: u64,
    /// Its verdict at the last evaluation.
    pub verdict: GateVerdict,
}

/// Why a plan aborted.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum AbortReason {
    /// A gate failed.
    Gate {
        /// The gate's name.
        gate: String,
        /// What it measured.
        detail: String,
    },
    /// [`PlanRun::abort`](super::PlanRun::abort) was called.
    Manual(String),
    /// The router was dropped while the plan ran.
    RouterDropped,
}

impl std::fmt::Display for AbortReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AbortReason::Gate { gate, detail } => write!(f, "gate {gate} failed: {detail}"),
            AbortReason::Manual(why) => write!(f, "by hand: {why}"),
            AbortReason::RouterDropped => f.write_str("the router was dropped"),
        }
    }
}

/// How a plan ended.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum PlanOutcome {
    /// The candidate is active.
    Promoted,
    /// The stable color is active again.
    Aborted(AbortReason),
    /// Someone else changed the rollout state; the plan stopped there.
    Superseded,
}

/// One thing that happened in a plan.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum PlanEvent {
    /// The plan started.
    Started {
        /// The color serving users when it started.
        stable: Color,
        /// The color being rolled out.
        candidate: Color,
    },
    /// A phase began (the traffic change it makes has taken effect).
    Phase(Phase),
    /// A gate's verdict changed.
    Gate {
        /// The gate's name.
        gate: String,
        /// The new verdict.
        verdict: GateVerdict,
    },
    /// The bake time is over but these gates are inconclusive.
    Holding {
        /// The gates that hold the plan.
        gates: Vec<String>,
    },
    /// Paused by hand.
    Paused,
    /// Resumed by hand.
    Resumed,
    /// The candidate was promoted.
    Promoted,
    /// The plan aborted; the stable color is active again.
    Aborted(AbortReason),
    /// The plan finished with the candidate active.
    Completed,
    /// Someone else changed the rollout state; the plan stopped.
    Superseded {
        /// The generation the plan found instead of its own.
        generation: u64,
    },
}

/// An event and when it happened.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct PlanRecord {
    /// Time since the plan started (on tokio's clock).
    pub at: Duration,
    /// What happened.
    pub event: PlanEvent,
}

/// A snapshot of a plan, from [`PlanRun::status`](super::PlanRun::status) or
/// [`RolloutHandle::plan_status`](crate::RolloutHandle::plan_status).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct PlanStatus {
    /// Running, holding, paused or finished.
    pub state: PlanState,
    /// The current phase.
    pub phase: Phase,
    /// The color serving users when the plan started.
    pub stable: Color,
    /// The color being rolled out.
    pub candidate: Color,
    /// The latest verdict of each gate that applies to the current phase.
    pub gates: Vec<GateStatus>,
    /// Time since the plan started.
    pub elapsed: Duration,
    /// Bake time accumulated in the current phase (paused time excluded).
    pub baked: Duration,
    /// How it ended, once finished.
    pub outcome: Option<PlanOutcome>,
    /// Every event so far, oldest first (the last 256).
    pub history: Vec<PlanRecord>,
}
