//! How a mirrored copy ends: counted by the stats, labelled by the telemetry.

/// How one sampled copy ended. Each copy gets exactly one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum Outcome {
    Saturated = 1,
    OverBudget,
    ShadowSlow,
    PrimaryEarly,
    NoExecutor,
    Completed,
    Error,
    Timeout,
    Panic,
}

pub(crate) const OUTCOMES: usize = 9;
