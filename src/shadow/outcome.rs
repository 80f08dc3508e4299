//! How a sampled comparison ends: counted by the report, labelled by the
//! telemetry.

/// How one sampled comparison ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    Match,
    Mismatch,
    ShadowError,
    ShadowTimeout,
    SkippedOverCap,
    SkippedPrimaryFailed,
    SkippedNotStarted,
    SkippedDropped,
    ComparatorPanic,
}

pub(crate) const OUTCOMES: usize = 9;
