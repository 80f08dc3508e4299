use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use http::{Method, Uri};

use super::compare::{structure_changes, Captured, ChangeKey, DiffKind, FieldDiff};
pub(crate) use super::outcome::Outcome;
use super::outcome::OUTCOMES;
use super::telemetry::CompareTelemetry;
use super::versions::ComparedVersions;
use crate::stats::{Histogram, Percentiles};

pub(crate) type OnMismatch = dyn Fn(&Exemplar) + Send + Sync;

/// Live counters and exemplars of one pair of versions.
pub(crate) struct Report {
    /// The pair compared (`None` for a standalone comparator).
    versions: Option<ComparedVersions>,
    counts: [AtomicU64; OUTCOMES],
    /// Mismatches with a field on one side only or a type change.
    reshaped: AtomicU64,
    primary_latency: Histogram,
    shadow_latency: Histogram,
    fields: Mutex<HashMap<String, u64>>,
    /// Comparisons per structure change (folded pointer and kind).
    structure: Mutex<HashMap<ChangeKey, u64>>,
    exemplars: Mutex<VecDeque<Exemplar>>,
    max_exemplars: usize,
    on_mismatch: Option<Arc<OnMismatch>>,
    /// Metrics and events, when the owning layer names the comparator.
    telemetry: Arc<CompareTelemetry>,
    #[cfg(feature = "drift")]
    drift: Option<Mutex<crate::drift::Drift>>,
    /// Pairs of answers counted in `drift` (the gauges are set every
    /// [`DRIFT_GAUGES_EVERY`]).
    #[cfg(feature = "drift")]
    drift_seen: AtomicU64,
}

/// Answers between two updates of the drift gauges (each update computes
/// the statistics, on the comparison task).
#[cfg(feature = "drift")]
pub(crate) const DRIFT_GAUGES_EVERY: u64 = 100;

impl Report {
    pub(crate) fn new(
        max_exemplars: usize,
        on_mismatch: Option<Arc<OnMismatch>>,
        telemetry: Arc<CompareTelemetry>,
        versions: Option<ComparedVersions>,
        #[cfg(feature = "drift")] drift: Option<&crate::drift::DriftSettings>,
    ) -> Self {
        let max_exemplars = max_exemplars.min(MAX_EXEMPLARS);
        Report {
            versions,
            counts: Default::default(),
            reshaped: AtomicU64::new(0),
            primary_latency: Histogram::new(),
            shadow_latency: Histogram::new(),
            fields: Mutex::new(HashMap::new()),
            structure: Mutex::new(HashMap::new()),
            exemplars: Mutex::new(VecDeque::with_capacity(max_exemplars)),
            max_exemplars,
            on_mismatch,
            telemetry,
            #[cfg(feature = "drift")]
            drift: drift.map(|d| Mutex::new(crate::drift::Drift::new(d))),
            #[cfg(feature = "drift")]
            drift_seen: AtomicU64::new(0),
        }
    }

    pub(crate) fn count(&self, outcome: Outcome) {
        self.counts[outcome as usize].fetch_add(1, Ordering::Relaxed);
        self.telemetry.outcome(outcome);
    }

    pub(crate) fn latencies(&self, primary: Duration, shadow: Duration) {
        self.primary_latency.record(primary);
        self.shadow_latency.record(shadow);
        self.telemetry.latencies(primary, shadow);
    }

    pub(crate) fn mismatch(&self, mut exemplar: Exemplar) {
        self.count(Outcome::Mismatch);
        exemplar.diffs.truncate(MAX_DIFFS);
        let changes = structure_changes(&exemplar.diffs);
        if changes.iter().any(|c| c.kind != DiffKind::Length) {
            self.reshaped.fetch_add(1, Ordering::Relaxed);
        }
        self.telemetry.mismatch(&exemplar.diffs, &changes);
        {
            let mut fields = lock(&self.fields);
            for d in exemplar.diffs.iter().filter(|d| !d.kind.is_structural()) {
                count_field(&mut fields, &d.path);
            }
        }
        {
            let mut structure = lock(&self.structure);
            for c in changes {
                if let Some(n) = structure.get_mut(&c) {
                    *n += 1;
                } else if structure.len() < MAX_FIELDS {
                    structure.insert(c, 1);
                }
            }
        }
        self.keep(exemplar);
    }

    /// A request one side accepted (2xx) and the other rejected (4xx):
    /// counted apart from disagreements (not in the per-field mismatch
    /// counts), kept among the exemplars.
    pub(crate) fn schema_break(&self, exemplar: Exemplar) {
        self.count(Outcome::SchemaBreak);
        self.keep(exemplar);
    }

    /// Hands the exemplar to the hook and keeps it in the ring.
    fn keep(&self, mut exemplar: Exemplar) {
        exemplar.versions = self.versions.clone();
        if let Some(hook) = &self.on_mismatch {
            // A panicking hook must not take the task (and its counts) down.
            let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| hook(&exemplar)));
        }
        if self.max_exemplars > 0 {
            let mut ring = lock(&self.exemplars);
            if ring.len() == self.max_exemplars {
                ring.pop_front();
            }
            ring.push_back(exemplar);
        }
    }

    /// Counts both answers to one copied request in the drift samples.
    #[cfg(feature = "drift")]
    pub(crate) fn drift(&self, primary: &Captured, shadow: &Captured) {
        if let Some(d) = &self.drift {
            if primary.status.is_success() && shadow.status.is_success() {
                let mut drift = lock(d);
                drift.observe(&primary.body, &shadow.body);
                let seen = self.drift_seen.fetch_add(1, Ordering::Relaxed) + 1;
                if seen % DRIFT_GAUGES_EVERY == 0 {
                    self.telemetry
                        .drift(self.versions.as_ref(), &drift.report());
                }
            }
        }
    }

    pub(crate) fn snapshot(&self) -> ShadowReport {
        let get = |o: Outcome| self.counts[o as usize].load(Ordering::Relaxed);
        let mut field_mismatches: Vec<(String, u64)> = lock(&self.fields)
            .iter()
            .map(|(k, v)| (k.clone(), *v))
            .collect();
        field_mismatches.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        let mut structure_changes: Vec<StructureChange> = lock(&self.structure)
            .iter()
            .map(|(k, &count)| StructureChange {
                pointer: k.pattern.clone(),
                kind: k.kind,
                count,
            })
            .collect();
        structure_changes
            .sort_by(|a, b| (b.count, &a.pointer, a.kind).cmp(&(a.count, &b.pointer, b.kind)));
        ShadowReport {
            versions: self.versions.clone(),
            matched: get(Outcome::Match),
            mismatched: get(Outcome::Mismatch),
            reshaped: self.reshaped.load(Ordering::Relaxed),
            shadow_errors: get(Outcome::ShadowError),
            shadow_timeouts: get(Outcome::ShadowTimeout),
            skipped_over_cap: get(Outcome::SkippedOverCap),
            skipped_primary_failed: get(Outcome::SkippedPrimaryFailed),
            skipped_not_started: get(Outcome::SkippedNotStarted),
            skipped_dropped: get(Outcome::SkippedDropped),
            comparator_panics: get(Outcome::ComparatorPanic),
            schema_breaks: get(Outcome::SchemaBreak),
            primary_latency: self.primary_latency.snapshot(),
            shadow_latency: self.shadow_latency.snapshot(),
            field_mismatches,
            structure_changes,
            exemplars: lock(&self.exemplars).iter().cloned().collect(),
            noise: None,
            #[cfg(feature = "drift")]
            drift: self
                .drift
                .as_ref()
                .map(|d| lock(d).report())
                .unwrap_or_default(),
        }
    }
}

/// The most exemplars a report keeps, whatever is asked for.
pub(crate) const MAX_EXEMPLARS: usize = 4096;
/// Diffs kept per exemplar.
const MAX_DIFFS: usize = 64;
/// Distinct field paths counted; further paths (from responses keyed by ids
/// or user input) are counted together under [`OTHER_FIELDS`].
pub(crate) const MAX_FIELDS: usize = 1024;
/// The bucket for fields beyond [`MAX_FIELDS`].
pub(crate) const OTHER_FIELDS: &str = "(other fields)";

/// Counts one difference at `path`, keeping the map bounded.
pub(crate) fn count_field(fields: &mut HashMap<String, u64>, path: &str) {
    if let Some(n) = fields.get_mut(path) {
        *n += 1;
    } else if fields.len() < MAX_FIELDS {
        fields.insert(path.to_owned(), 1);
    } else {
        *fields.entry(OTHER_FIELDS.to_owned()).or_default() += 1;
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl fmt::Debug for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Report").field(&self.snapshot()).finish()
    }
}

/// One mismatch kept for debugging: the request, both answers, the diff.
///
/// Bodies are kept up to 4 KiB each (request and both responses).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Exemplar {
    /// When the comparison ran.
    pub at: SystemTime,
    /// The request method.
    pub method: Method,
    /// The request URI.
    pub uri: Uri,
    /// The start of the request body, as the shadow received it.
    pub request: bytes::Bytes,
    /// The primary's response (body truncated).
    pub primary: Captured,
    /// The shadow's response (body truncated).
    pub shadow: Captured,
    /// What differs.
    pub diffs: Vec<FieldDiff>,
    /// The versions and colors of both sides, when compared through a
    /// router (a standalone comparator has no colors: `None`).
    pub versions: Option<ComparedVersions>,
}

/// A snapshot of a comparator's results, from
/// [`ShadowHandle::report`](super::ShadowHandle::report), or of one pair of
/// versions from [`RolloutHandle::shadow_report`](crate::RolloutHandle::shadow_report)
/// and [`RolloutHandle::shadow_reports`](crate::RolloutHandle::shadow_reports).
///
/// Every sampled request ends in exactly one counter. Requests that were not
/// sampled are not counted.
#[derive(Debug, Clone, PartialEq, Default)]
#[non_exhaustive]
pub struct ShadowReport {
    /// The pair of versions compared, primary first; `None` for a
    /// standalone [`ShadowComparator`](super::ShadowComparator) and for a
    /// router that has compared nothing yet.
    pub versions: Option<ComparedVersions>,
    /// Comparisons that matched.
    pub matched: u64,
    /// Comparisons that found a difference.
    pub mismatched: u64,
    /// The shadow failed (service or body error, or a panic).
    pub shadow_errors: u64,
    /// The shadow missed its deadline.
    pub shadow_timeouts: u64,
    /// Not compared: a response body was over the comparison cap.
    pub skipped_over_cap: u64,
    /// Not compared: the primary failed, or its body ended early or took
    /// longer than the comparison wait.
    pub skipped_primary_failed: u64,
    /// Not compared: the copy was not started (mirror saturated, request over
    /// budget, not chosen by the mirror's predicate, no executor, or a task
    /// the executor dropped before it ran).
    pub skipped_not_started: u64,
    /// Not compared: the copy was abandoned while streaming (the shadow never
    /// saw the whole request), or its task was stopped part-way (a runtime
    /// shutting down).
    pub skipped_dropped: u64,
    /// The comparator panicked (caught).
    pub comparator_panics: u64,
    /// Requests one side accepted (2xx) and the other rejected (4xx): the
    /// new version requires a field the old one did not, or rejects a
    /// value it accepted (or the reverse). Counted apart from
    /// `mismatched`; kept among the exemplars with a `status` diff.
    pub schema_breaks: u64,
    /// Primary latency, from the call to the end of its response body, for
    /// compared requests.
    pub primary_latency: Percentiles,
    /// Shadow latency, from the copy's start to the end of its response body,
    /// for compared requests.
    pub shadow_latency: Percentiles,
    /// Mismatches (of those in `mismatched`) whose answers differ in
    /// structure: a field on one side only, or of another JSON type. Array
    /// lengths are left out here (a list's length is usually data), and
    /// shown in `structure_changes`.
    pub reshaped: u64,
    /// Value mismatches per field (JSON pointer or `status`, `body`, …),
    /// most frequent first; structure changes are counted apart, in
    /// `structure_changes`. At most 1024 distinct fields are counted; the
    /// rest are counted together as `(other fields)`.
    pub field_mismatches: Vec<(String, u64)>,
    /// Structure changes (a field on one side only, a type change, an
    /// array-length change), by pointer with array indices folded
    /// (`/predictions/*/label`): in how many comparisons each appeared,
    /// most frequent first. At most 1024 distinct changes are counted.
    pub structure_changes: Vec<StructureChange>,
    /// The last mismatches, oldest first.
    pub exemplars: Vec<Exemplar>,
    /// With a noise floor: which fields differ more between primary and
    /// shadow than between the primary and its secondary instance.
    pub noise: Option<NoiseReport>,
    /// With [`CompareSettings::drift`](super::CompareSettings::drift): the
    /// drift of each configured field between the two sides' answers.
    #[cfg(feature = "drift")]
    #[cfg_attr(docsrs, doc(cfg(feature = "drift")))]
    pub drift: Vec<crate::drift::FieldDrift>,
}

/// One change in the structure of the answers, counted over comparisons.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct StructureChange {
    /// The JSON pointer, array indices folded to `*`; for an array-length
    /// change, the array's pointer.
    pub pointer: String,
    /// What changed there.
    pub kind: DiffKind,
    /// Comparisons in which it appeared.
    pub count: u64,
}

/// The noise floor (Diffy's idea): a second instance of the primary receives
/// each copy too, and the differences between the two instances of the same
/// version are noise (timestamps, ids, sampling). A field is a real
/// difference only when its primary-vs-shadow difference rate exceeds its
/// noise rate by more than the absolute threshold *and* by more than the
/// relative threshold (as a fraction of the noise rate; any excess counts when
/// the noise rate is zero).
#[derive(Debug, Clone, PartialEq, Default)]
#[non_exhaustive]
pub struct NoiseReport {
    /// Requests for which the primary, the shadow and the secondary answered.
    pub comparisons: u64,
    /// The relative threshold in use (default 0.20).
    pub relative_threshold: f64,
    /// The absolute threshold in use (default 0.0003, i.e. 0.03%).
    pub absolute_threshold: f64,
    /// Every field that differed in either comparison, real differences first.
    pub fields: Vec<FieldNoise>,
}

/// One field's difference rates against the shadow and against the noise.
#[derive(Debug, Clone, PartialEq, Default)]
#[non_exhaustive]
pub struct FieldNoise {
    /// The field (JSON pointer, or `status`, `body`, …).
    pub path: String,
    /// Fraction of comparisons in which primary and shadow differ here.
    pub candidate_rate: f64,
    /// Fraction of comparisons in which primary and secondary differ here.
    pub noise_rate: f64,
    /// Whether this is a real difference (above the noise floor).
    pub real: bool,
}

impl NoiseReport {
    /// The fields that differ above the noise floor.
    pub fn real_differences(&self) -> Vec<&str> {
        self.fields
            .iter()
            .filter(|f| f.real)
            .map(|f| f.path.as_str())
            .collect()
    }
}

impl ShadowReport {
    /// Matches over comparisons (`matched / (matched + mismatched)`); `None`
    /// before the first comparison.
    pub fn agreement_rate(&self) -> Option<f64> {
        let n = self.matched + self.mismatched;
        (n > 0).then(|| self.matched as f64 / n as f64)
    }

    /// All sampled requests, whatever their outcome.
    pub fn total(&self) -> u64 {
        self.matched
            + self.mismatched
            + self.shadow_errors
            + self.shadow_timeouts
            + self.skipped_over_cap
            + self.skipped_primary_failed
            + self.skipped_not_started
            + self.skipped_dropped
            + self.comparator_panics
            + self.schema_breaks
    }
}
