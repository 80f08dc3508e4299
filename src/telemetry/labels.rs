//! Label values, and the index of each in the arrays of metric handles.

#[cfg(feature = "metrics")]
use http::StatusCode;

#[cfg(any(feature = "metrics", feature = "tracing"))]
pub(super) fn kind_label(kind: crate::control::TransitionKind) -> (usize, &'static str) {
    use crate::control::TransitionKind;
    match kind {
        TransitionKind::Promote => (0, "promote"),
        TransitionKind::Rollback => (1, "rollback"),
        TransitionKind::Split => (2, "split"),
        TransitionKind::Mirror => (3, "mirror"),
        TransitionKind::Abort => (4, "abort"),
        TransitionKind::Deploy => (5, "deploy"),
        TransitionKind::Sync => (6, "sync"),
    }
}

#[cfg(feature = "metrics")]
pub(super) const KINDS: [&str; 7] = [
    "promote", "rollback", "split", "mirror", "abort", "deploy", "sync",
];

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
    fn every_kind_has_its_own_index() {
        use crate::control::TransitionKind as K;
        let all = [
            K::Promote,
            K::Rollback,
            K::Split,
            K::Mirror,
            K::Abort,
            K::Deploy,
            K::Sync,
        ];
        for (i, k) in all.into_iter().enumerate() {
            assert_eq!(kind_label(k), (i, KINDS[i]));
            assert_eq!(k.as_str(), KINDS[i]);
        }
    }
}
