//! What a comparator emits: comparisons by outcome and field, mismatches.

use std::fmt;
#[cfg(any(feature = "metrics", feature = "tracing"))]
use std::sync::Arc;
use std::time::Duration;

#[cfg(feature = "metrics")]
use std::collections::HashMap;
#[cfg(feature = "metrics")]
use std::sync::Mutex;

#[cfg(feature = "metrics")]
use metrics::{Counter, Histogram, Label, Unit};

use super::compare::{ChangeKey, FieldDiff};
use super::outcome::Outcome as CompareOutcome;
#[cfg(feature = "metrics")]
use crate::telemetry::handles::{counter, histogram, labels};
use crate::telemetry::{Name, Owner};

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
    metrics: CompareMetrics,
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
            metrics: CompareMetrics::new(&name.0, owner),
        });
        #[cfg(not(any(feature = "metrics", feature = "tracing")))]
        let _ = (name, owner);
    }

    /// Counts how a comparison ended (exactly once per comparison).
    pub(crate) fn outcome(&self, outcome: CompareOutcome) {
        #[cfg(any(feature = "metrics", feature = "tracing"))]
        if let Some(inner) = self.inner.get() {
            #[cfg(feature = "metrics")]
            inner.metrics.outcomes[compare_label(outcome).0].increment(1);
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

    /// Sets the drift gauges of one pair of versions.
    #[cfg(feature = "drift")]
    pub(crate) fn drift(
        &self,
        versions: Option<&super::versions::ComparedVersions>,
        fields: &[crate::drift::FieldDrift],
    ) {
        #[cfg(feature = "metrics")]
        if let Some(inner) = self.inner.get() {
            inner.metrics.drift(versions, fields);
        }
        #[cfg(not(feature = "metrics"))]
        let _ = (versions, fields);
    }

    /// Counts the value fields and the structure changes of one mismatch
    /// (its outcome is counted apart).
    pub(crate) fn mismatch(&self, diffs: &[FieldDiff], changes: &[ChangeKey]) {
        #[cfg(any(feature = "metrics", feature = "tracing"))]
        if let Some(inner) = self.inner.get() {
            #[cfg(feature = "metrics")]
            {
                inner.metrics.fields(diffs);
                inner.metrics.structure(changes);
            }
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
        let _ = (diffs, changes);
    }
}

#[cfg(feature = "metrics")]
const COMPARED: &str = "rollout_compare_total";
#[cfg(feature = "metrics")]
const COMPARE_DURATION: &str = "rollout_compare_duration_seconds";
#[cfg(feature = "metrics")]
const FIELDS: &str = "rollout_compare_field_mismatches_total";
#[cfg(feature = "metrics")]
const STRUCTURE: &str = "rollout_compare_structure_changes_total";
#[cfg(all(feature = "metrics", feature = "drift"))]
const DRIFT: &str = "rollout_drift";

/// Distinct `field` labels per comparator; the rest go to [`OTHER_FIELD`].
#[cfg(feature = "metrics")]
const MAX_FIELDS: usize = 32;
#[cfg(feature = "metrics")]
const OTHER_FIELD: &str = "(other)";

#[cfg(feature = "metrics")]
const COMPARE_OUTCOMES: [CompareOutcome; 10] = [
    CompareOutcome::Match,
    CompareOutcome::Mismatch,
    CompareOutcome::ShadowError,
    CompareOutcome::ShadowTimeout,
    CompareOutcome::SkippedOverCap,
    CompareOutcome::SkippedPrimaryFailed,
    CompareOutcome::SkippedNotStarted,
    CompareOutcome::SkippedDropped,
    CompareOutcome::ComparatorPanic,
    CompareOutcome::SchemaBreak,
];

/// The `outcome` label of a comparison's outcome, and its index.
#[cfg(feature = "metrics")]
fn compare_label(o: CompareOutcome) -> (usize, &'static str) {
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
        CompareOutcome::SchemaBreak => (9, "schema_break"),
    }
}

#[cfg(feature = "metrics")]
struct CompareMetrics {
    name: Arc<str>,
    layer: &'static str,
    outcomes: [Counter; COMPARE_OUTCOMES.len()],
    primary: Histogram,
    shadow: Histogram,
    /// Registered at the first mismatch of each field, at most
    /// `MAX_FIELDS` of them plus the `(other)` one.
    fields: Mutex<HashMap<String, Counter>>,
    /// The same for structure changes, by folded pointer and kind.
    structure: Mutex<HashMap<ChangeKey, Counter>>,
}

#[cfg(feature = "metrics")]
impl CompareMetrics {
    fn new(name: &Arc<str>, owner: Owner) -> CompareMetrics {
        metrics::describe_counter!(COMPARED, Unit::Count, "How each sampled comparison ended.");
        metrics::describe_histogram!(
            COMPARE_DURATION,
            Unit::Seconds,
            "Latency of compared requests, primary and shadow side."
        );
        metrics::describe_counter!(
            FIELDS,
            Unit::Count,
            "Value differences per field (at most 32 fields, the rest as \"(other)\")."
        );
        metrics::describe_counter!(
            STRUCTURE,
            Unit::Count,
            "Comparisons per structure change (a field on one side only, a type or an array-length change), by pointer with indices folded (at most 32)."
        );
        let layer = ("layer", owner.as_str());
        let side = |s| histogram(COMPARE_DURATION, labels(name, &[layer, ("side", s)]));
        CompareMetrics {
            name: name.clone(),
            layer: owner.as_str(),
            outcomes: COMPARE_OUTCOMES.map(|o| {
                let outcome = compare_label(o).1;
                counter(COMPARED, labels(name, &[layer, ("outcome", outcome)]))
            }),
            primary: side("primary"),
            shadow: side("shadow"),
            fields: Mutex::new(HashMap::new()),
            structure: Mutex::new(HashMap::new()),
        }
    }

    /// One gauge per configured field and statistic of the pair, labelled
    /// with both versions.
    #[cfg(feature = "drift")]
    fn drift(
        &self,
        versions: Option<&super::versions::ComparedVersions>,
        fields: &[crate::drift::FieldDrift],
    ) {
        for d in fields {
            for stat in crate::drift::Statistic::ALL {
                let Some(value) = d.get(stat) else { continue };
                let mut l = labels(
                    &self.name,
                    &[("layer", self.layer), ("statistic", stat.as_str())],
                );
                l.push(Label::new("field", d.field.clone()));
                if let Some(v) = versions {
                    l.push(Label::new("primary_version", v.primary.version.to_string()));
                    l.push(Label::new("shadow_version", v.shadow.version.to_string()));
                }
                metrics::gauge!(DRIFT, l).set(value);
            }
        }
    }

    /// Counts each structure change once; beyond `MAX_FIELDS` distinct
    /// ones, further ones are not counted (the report has them all).
    fn structure(&self, changes: &[ChangeKey]) {
        let mut counters = self.structure.lock().unwrap_or_else(|e| e.into_inner());
        for c in changes {
            if let Some(counter) = counters.get(c) {
                counter.increment(1);
            } else if counters.len() < MAX_FIELDS {
                let mut l = labels(
                    &self.name,
                    &[("layer", self.layer), ("change", c.kind.as_str())],
                );
                l.push(Label::new("field", c.pattern.clone()));
                let counter = counter(STRUCTURE, l);
                counter.increment(1);
                counters.insert(c.clone(), counter);
            }
        }
    }

    fn fields(&self, diffs: &[FieldDiff]) {
        let mut fields = self.fields.lock().unwrap_or_else(|e| e.into_inner());
        for d in diffs.iter().filter(|d| !d.kind.is_structural()) {
            if let Some(c) = fields.get(&d.path) {
                c.increment(1);
                continue;
            }
            let key = if fields.len() < MAX_FIELDS {
                d.path.clone()
            } else {
                OTHER_FIELD.to_owned()
            };
            let name = &self.name;
            let layer = self.layer;
            fields
                .entry(key)
                .or_insert_with_key(|field| {
                    let mut l = labels(name, &[("layer", layer)]);
                    l.push(Label::new("field", field.clone()));
                    counter(FIELDS, l)
                })
                .increment(1);
        }
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

#[cfg(all(test, feature = "metrics"))]
mod metric_tests {
    use super::*;

    #[test]
    fn every_outcome_has_its_own_index() {
        for (i, o) in COMPARE_OUTCOMES.into_iter().enumerate() {
            assert_eq!(compare_label(o).0, i);
        }
    }
}
