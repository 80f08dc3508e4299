//! Label values, and the index of each in the arrays of metric handles.

#[cfg(feature = "metrics")]
use http::StatusCode;

#[cfg(any(feature = "metrics", feature = "tracing"))]
use crate::mirror::CopyOutcome;
#[cfg(feature = "metrics")]
use crate::shadow::CompareOutcome;

#[cfg(any(feature = "metrics", feature = "tracing"))]
pub(super) fn kind_label(kind: crate::control::TransitionKind) -> (usize, &'static str) {
    use crate::control::TransitionKind;
    match kind {
        TransitionKind::Promote => (0, "promote"),
        TransitionKind::Rollback => (1, "rollback"),
        TransitionKind::Split => (2, "split"),
        TransitionKind::Mirror => (3, "mirror"),
        TransitionKind::Abort => (4, "abort"),
    }
}

#[cfg(feature = "metrics")]
pub(super) const KINDS: [&str; 5] = ["promote", "rollback", "split", "mirror", "abort"];

#[cfg(feature = "metrics")]
pub(super) const CLASSES: [&str; 7] = ["1xx", "2xx", "3xx", "4xx", "5xx", "other", "error"];

/// The index into [`CLASSES`] of a response's status; `None` is an error.
#[cfg(feature = "metrics")]
pub(super) fn class(status: Option<StatusCode>) -> usize {
    match status.map(|s| s.as_u16() / 100) {
        Some(n @ 1..=5) => usize::from(n) - 1,
        Some(_) => 5,
        None => 6,
    }
}

#[cfg(feature = "metrics")]
pub(super) const COPY_OUTCOMES: [CopyOutcome; 9] = [
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
pub(super) fn copy_labels(o: CopyOutcome) -> (usize, &'static str, Option<&'static str>) {
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
pub(super) const COMPARE_OUTCOMES: [CompareOutcome; 9] = [
    CompareOutcome::Match,
    CompareOutcome::Mismatch,
    CompareOutcome::ShadowError,
    CompareOutcome::ShadowTimeout,
    CompareOutcome::SkippedOverCap,
    CompareOutcome::SkippedPrimaryFailed,
    CompareOutcome::SkippedNotStarted,
    CompareOutcome::SkippedDropped,
    CompareOutcome::ComparatorPanic,
];

/// The `outcome` label of a comparison's outcome, and its index.
#[cfg(feature = "metrics")]
pub(super) fn compare_label(o: CompareOutcome) -> (usize, &'static str) {
    match o {
        CompareOutcome::Match => (0, "matched"),
        CompareOutcome::Mismatch => (1, "mismatched"),
        CompareOutcome::ShadowError => (2, "shadow_error"),
        CompareOutcome::ShadowTimeout => (3, "shadow_timeout"),
        CompareOutcome::SkippedOverCap => (4, "skipped_over_cap"),
        CompareOutcome::SkippedPrimaryFailed => (5, "skipped_primary_failed"),
        CompareOutcome::SkippedNotStarted => (6, "skipped_not_started"),
        CompareOutcome::SkippedDropped => (7, "skipped_dropped"),
        CompareOutcome::ComparatorPanic => (8, "comparator_panic"),
    }
}

#[cfg(all(test, feature = "metrics"))]
mod tests {
    use super::*;

    #[test]
    fn status_classes() {
        let class_of = |s: u16| CLASSES[class(Some(StatusCode::from_u16(s).unwrap()))];
        assert_eq!(class_of(100), "1xx");
        assert_eq!(class_of(200), "2xx");
        assert_eq!(class_of(308), "3xx");
        assert_eq!(class_of(404), "4xx");
        assert_eq!(class_of(599), "5xx");
        assert_eq!(class_of(600), "other");
        assert_eq!(CLASSES[class(None)], "error");
    }

    #[test]
    fn every_outcome_has_its_own_index() {
        for (i, o) in COPY_OUTCOMES.into_iter().enumerate() {
            assert_eq!(copy_labels(o).0, i);
        }
        for (i, o) in COMPARE_OUTCOMES.into_iter().enumerate() {
            assert_eq!(compare_label(o).0, i);
        }
    }
}
