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
    /// One side accepted the request (2xx) and the other rejected it (4xx).
    SchemaBreak,
}

pub(crate) const OUTCOMES: usize = 10;
