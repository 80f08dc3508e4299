//! [`PlanError`]: why a plan could not be built or started.

use std::fmt;

/// Why a plan could not be built or started.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum PlanError {
    /// A split or mirror fraction outside `0 < s ≤ 1` (or NaN).
    InvalidSplit {
        /// The rejected value.
        value: f64,
    },
    /// A canary step lower than the one before it.
    DecreasingSplit {
        /// The rejected value.
        value: f64,
        /// The step before it.
        after: f64,
    },
    /// A plan with no mirror phase, no canary step and no
    /// [`all_at_once`](super::RolloutPlan::all_at_once).
    EmptyPlan,
    /// Canary steps added to an all-at-once plan.
    StepsWithAllAtOnce,
    /// A bake time, mirror phase or interval of zero.
    ZeroDuration {
        /// Which one.
        what: &'static str,
    },
    /// A gate without a minimum sample (see [`Gate::min_sample`](super::Gate::min_sample)).
    MissingMinSample {
        /// The gate.
        gate: String,
    },
    /// A gate threshold out of range.
    InvalidThreshold {
        /// The gate.
        gate: String,
        /// Which threshold.
        what: &'static str,
        /// The rejected value.
        value: f64,
    },
    /// A gate with an empty name.
    EmptyGateName,
    /// Two gates with the same name.
    DuplicateGate {
        /// The name.
        gate: String,
    },
    /// A shadow-comparison gate in a plan without a mirror phase.
    GateNeedsMirror {
        /// The gate.
        gate: String,
    },
    /// Another plan runs on this router.
    AlreadyRunning,
    /// [`RolloutPlan::start`](super::RolloutPlan::start) was called outside a tokio runtime.
    NoRuntime,
    /// The plan compares (a comparison gate, or a mirror phase counted in
    /// compared requests) and the router was built without
    /// [`Builder::compare`](crate::router::Builder::compare).
    NoComparison,
    /// The plan mirrors and the router has no executor for shadow work.
    NoMirror,
    /// The plan has a [`Gate::live_drift`](super::Gate::live_drift) and no
    /// [`LiveDriftLayer`](crate::live::LiveDriftLayer) was built for the
    /// router (feature `drift`).
    NoLiveDrift,
}

impl fmt::Display for PlanError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PlanError::InvalidSplit { value } => {
                write!(f, "a split must be above 0 and at most 1, got {value}")
            }
            PlanError::DecreasingSplit { value, after } => {
                write!(
                    f,
                    "canary step {value} is lower than the step before it ({after})"
                )
            }
            PlanError::EmptyPlan => f.write_str(
                "the plan does nothing: add a mirror phase or a canary step, or use all_at_once",
            ),
            PlanError::StepsWithAllAtOnce => f.write_str("an all-at-once plan has no canary steps"),
            PlanError::ZeroDuration { what } => write!(f, "{what} must be above zero"),
            PlanError::MissingMinSample { gate } => {
                write!(f, "gate {gate} needs a minimum sample above zero")
            }
            PlanError::InvalidThreshold { gate, what, value } => {
                write!(f, "gate {gate}: {what} {value} is out of range")
            }
            PlanError::EmptyGateName => f.write_str("a gate name must not be empty"),
            PlanError::DuplicateGate { gate } => write!(f, "two gates are named {gate}"),
            PlanError::GateNeedsMirror { gate } => {
                write!(
                    f,
                    "gate {gate} reads the shadow comparison: add a mirror phase"
                )
            }
            PlanError::AlreadyRunning => f.write_str("another plan runs on this router"),
            PlanError::NoRuntime => f.write_str("a plan runs on a tokio runtime; none is running"),
            PlanError::NoComparison => f.write_str(
                "the plan reads the shadow comparison: build the router with Builder::compare",
            ),
            PlanError::NoMirror => {
                f.write_str("the plan mirrors and the router has no executor for shadow work")
            }
            PlanError::NoLiveDrift => f.write_str(
                "the plan has a live drift gate: put a live::LiveDriftLayer around the router",
            ),
        }
    }
}

impl std::error::Error for PlanError {}
