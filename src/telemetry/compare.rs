//! What a comparator emits: comparisons by outcome and field, mismatches.

use std::fmt;
#[cfg(feature = "tracing")]
use std::sync::Arc;
use std::time::Duration;

#[cfg(feature = "metrics")]
use super::handles;
#[cfg(feature = "metrics")]
use super::labels;
use super::{Name, Owner};
use crate::shadow::{CompareOutcome, FieldDiff};

/// What a comparator emits: set once by the layer or router that owns it.
#[derive(Default)]
pub(crate) struct CompareTelemetry {
    #[cfg(any(feature = "metrics", feature = "tracing"))]
    inner: std::sync::OnceLock<CompareInner>,
}

#[cfg(any(feature = "metrics", feature = "tracing"))]
struct CompareInner {
    #[cfg(feature = "tracing")]
    name: Arc<str>,
    #[cfg(feature = "tracing")]
    owner: Owner,
    #[cfg(feature = "metrics")]
    metrics: handles::Compare,
}

/// Distinct fields named in a mismatch event.
#[cfg(feature = "tracing")]
const EVENT_FIELDS: usize = 8;

impl CompareTelemetry {
    /// Names the comparator; the first call wins.
    pub(crate) fn attach(&self, name: &Name, owner: Owner) {
        #[cfg(any(feature = "metrics", feature = "tracing"))]
        self.inner.get_or_init(|| CompareInner {
            #[cfg(feature = "tracing")]
            name: name.0.clone(),
            #[cfg(feature = "tracing")]
            owner,
            #[cfg(feature = "metrics")]
            metrics: handles::Compare::new(&name.0, owner),
        });
        #[cfg(not(any(feature = "metrics", feature = "tracing")))]
        let _ = (name, owner);
    }

    /// Counts how a comparison ended (exactly once per comparison).
    pub(crate) fn outcome(&self, outcome: CompareOutcome) {
        #[cfg(any(feature = "metrics", feature = "tracing"))]
        if let Some(inner) = self.inner.get() {
            #[cfg(feature = "metrics")]
            inner.metrics.outcomes[labels::compare_label(outcome).0].increment(1);
            #[cfg(feature = "tracing")]
            if outcome == CompareOutcome::ComparatorPanic {
                tracing::warn!(
                    target: "tower_rollout::shadow",
                    name = &*inner.name,
                    layer = inner.owner.as_str(),
                    "comparator panicked"
                );
            }
            #[cfg(not(feature = "tracing"))]
            let _ = inner;
        }
        #[cfg(not(any(feature = "metrics", feature = "tracing")))]
        let _ = outcome;
    }

    pub(crate) fn latencies(&self, primary: Duration, shadow: Duration) {
        #[cfg(feature = "metrics")]
        if let Some(inner) = self.inner.get() {
            inner.metrics.primary.record(primary.as_secs_f64());
            inner.metrics.shadow.record(shadow.as_secs_f64());
        }
        #[cfg(not(feature = "metrics"))]
        let _ = (primary, shadow);
    }

    /// Counts the fields of one mismatch (its outcome is counted apart).
    pub(crate) fn mismatch(&self, diffs: &[FieldDiff]) {
        #[cfg(any(feature = "metrics", feature = "tracing"))]
        if let Some(inner) = self.inner.get() {
            #[cfg(feature = "metrics")]
            inner.metrics.fields(diffs);
            #[cfg(feature = "tracing")]
            tracing::debug!(
                target: "tower_rollout::shadow",
                name = &*inner.name,
                layer = inner.owner.as_str(),
                diffs = diffs.len(),
                fields = %FieldList(diffs),
                "shadow mismatch"
            );
        }
        #[cfg(not(any(feature = "metrics", feature = "tracing")))]
        let _ = diffs;
    }
}

impl fmt::Debug for CompareTelemetry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CompareTelemetry").finish_non_exhaustive()
    }
}

/// The first [`EVENT_FIELDS`] distinct fields of a mismatch, comma separated,
/// then `…` if there are more.
#[cfg(feature = "tracing")]
struct FieldList<'a>(&'a [FieldDiff]);

#[cfg(feature = "tracing")]
impl fmt::Display for FieldList<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut shown: Vec<&str> = Vec::with_capacity(EVENT_FIELDS);
        for d in self.0 {
            if shown.contains(&d.path.as_str()) {
                continue;
            }
            if shown.len() == EVENT_FIELDS {
                return f.write_str(", …");
            }
            if !shown.is_empty() {
                f.write_str(", ")?;
            }
            f.write_str(&d.path)?;
            shown.push(&d.path);
        }
        Ok(())
    }
}

#[cfg(all(test, feature = "tracing"))]
mod tests {
    use super::*;

    #[test]
    fn field_list_is_bounded_and_distinct() {
        let d = |p: &str| FieldDiff::new(p, 1, 2);
        let diffs: Vec<_> = ["/a", "/a", "/b"].map(d).into();
        assert_eq!(FieldList(&diffs).to_string(), "/a, /b");
        let many: Vec<_> = (0..20).map(|i| d(&format!("/f{i}"))).collect();
        assert_eq!(
            FieldList(&many).to_string(),
            "/f0, /f1, /f2, /f3, /f4, /f5, /f6, /f7, …"
        );
        assert_eq!(FieldList(&[]).to_string(), "");
    }
}
