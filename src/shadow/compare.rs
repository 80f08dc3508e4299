use std::fmt;
use std::sync::Arc;

use bytes::Bytes;

pub use crate::mirror::captured::Captured;

/// One field that differs between the primary and the shadow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldDiff {
    /// Where: a JSON pointer (`/label`, `/probabilities/2`), or a name such as
    /// `status`, `body` or `grpc-status`.
    pub path: String,
    /// The primary's value, rendered and truncated for display.
    pub primary: String,
    /// The shadow's value, rendered and truncated for display.
    pub shadow: String,
    /// A different value, or a different structure (a field on one side
    /// only, another JSON type, another array length).
    pub kind: DiffKind,
    /// `path` with array indices folded to `*` (`/predictions/*/label`), so
    /// that differences in every element count as one field. For a
    /// [`DiffKind::Length`] change, the array's own pointer.
    pub pattern: String,
}

impl FieldDiff {
    /// A different value at `path` (truncated to 256 bytes), rendering both
    /// values (each truncated to 200 bytes); its `pattern` is `path`.
    pub fn new(
        path: impl Into<String>,
        primary: impl fmt::Display,
        shadow: impl fmt::Display,
    ) -> Self {
        let path = truncate(path.into(), 256);
        FieldDiff {
            pattern: path.clone(),
            path,
            primary: truncate(primary.to_string(), 200),
            shadow: truncate(shadow.to_string(), 200),
            kind: DiffKind::Value,
        }
    }

    /// The same difference as another kind, counted under `pattern`
    /// (truncated to 256 bytes).
    pub fn with_kind(mut self, kind: DiffKind, pattern: impl Into<String>) -> Self {
        self.kind = kind;
        self.pattern = truncate(pattern.into(), 256);
        self
    }
}

/// What kind of difference a [`FieldDiff`] is: a value, or the structure of
/// the answer (which a schema change makes, and
/// [`Gate::schema_compatible`](crate::plan::Gate::schema_compatible) judges).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum DiffKind {
    /// Both sides have the field, with the same JSON type, and different
    /// values (or a difference that is not about JSON: `status`, `body`).
    Value,
    /// An object field only the primary has (renamed or removed by the
    /// shadow).
    OnlyPrimary,
    /// An object field only the shadow has (added or renamed).
    OnlyShadow,
    /// Both have the field, as different JSON types (`1` and `"1"`).
    Type,
    /// An array with another length: one diff per element past the
    /// shorter side; its pattern is the array's pointer.
    Length,
}

impl DiffKind {
    /// Every kind but [`Value`](Self::Value).
    pub fn is_structural(self) -> bool {
        self != DiffKind::Value
    }

    /// A short name: `value`, `only_primary`, `only_shadow`, `type`,
    /// `length` (the metrics label and the admin's JSON).
    pub fn as_str(self) -> &'static str {
        match self {
            DiffKind::Value => "value",
            DiffKind::OnlyPrimary => "only_primary",
            DiffKind::OnlyShadow => "only_shadow",
            DiffKind::Type => "type",
            DiffKind::Length => "length",
        }
    }
}

impl fmt::Display for DiffKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Display for FieldDiff {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {} != {}", self.path, self.primary, self.shadow)
    }
}

/// The result of one comparison.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// The shadow answered like the primary.
    Match,
    /// The shadow answered differently: the fields that differ (at least one).
    Mismatch(Vec<FieldDiff>),
}

impl Verdict {
    /// `Match` when `diffs` is empty, `Mismatch(diffs)` otherwise.
    pub fn from_diffs(diffs: Vec<FieldDiff>) -> Self {
        if diffs.is_empty() {
            Verdict::Match
        } else {
            Verdict::Mismatch(diffs)
        }
    }

    /// True for `Match`.
    pub fn is_match(&self) -> bool {
        matches!(self, Verdict::Match)
    }
}

/// One structure change of one comparison: where (indices folded) and what.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct ChangeKey {
    pub(crate) pattern: String,
    pub(crate) kind: DiffKind,
}

/// The distinct structure changes among one comparison's diffs (a renamed
/// field in each of 50 elements is one change).
pub(crate) fn structure_changes(diffs: &[FieldDiff]) -> Vec<ChangeKey> {
    let mut out: Vec<ChangeKey> = Vec::new();
    for d in diffs.iter().filter(|d| d.kind.is_structural()) {
        if !out
            .iter()
            .any(|c| c.kind == d.kind && c.pattern == d.pattern)
        {
            out.push(ChangeKey {
                pattern: d.pattern.clone(),
                kind: d.kind,
            });
        }
    }
    out
}

/// Compares the primary's response with the shadow's.
///
/// Implemented for closures `Fn(&Captured, &Captured) -> Verdict`; built-ins
/// are on [`Comparator`]. Comparisons run on a spawned task, never on the
/// request path; a comparator that panics is caught and counted.
pub trait Compare: Send + Sync + 'static {
    /// Compares `primary` with `shadow`.
    fn compare(&self, primary: &Captured, shadow: &Captured) -> Verdict;
}

impl<F> Compare for F
where
    F: Fn(&Captured, &Captured) -> Verdict + Send + Sync + 'static,
{
    fn compare(&self, primary: &Captured, shadow: &Captured) -> Verdict {
        self(primary, shadow)
    }
}

/// Built-in comparators.
///
/// ```
/// use http::StatusCode;
/// use tower_rollout::shadow::{Captured, Compare, Comparator};
///
/// let ok = Captured::new(StatusCode::OK, "cat");
/// let other = Captured::new(StatusCode::OK, "dog");
/// assert!(Comparator::status().compare(&ok, &other).is_match());
/// assert!(!Comparator::bytes().compare(&ok, &other).is_match());
/// ```
#[derive(Clone)]
pub struct Comparator {
    inner: Arc<dyn Compare>,
}

impl Comparator {
    /// Wraps any [`Compare`].
    pub fn new(compare: impl Compare) -> Self {
        Comparator {
            inner: Arc::new(compare),
        }
    }

    /// Equal status codes match.
    pub fn status() -> Self {
        Comparator::new(|p: &Captured, s: &Captured| {
            Verdict::from_diffs(status_diff(p, s).into_iter().collect())
        })
    }

    /// Equal status codes and byte-identical bodies match.
    pub fn bytes() -> Self {
        Comparator::new(|p: &Captured, s: &Captured| {
            let mut diffs: Vec<_> = status_diff(p, s).into_iter().collect();
            if p.body != s.body {
                diffs.push(FieldDiff::new(
                    "body",
                    String::from_utf8_lossy(&p.body),
                    String::from_utf8_lossy(&s.body),
                ));
            }
            Verdict::from_diffs(diffs)
        })
    }

    /// Equal `grpc-status` (from the trailers, or the headers of a
    /// trailers-only response) matches; bodies are not compared.
    pub fn grpc_status() -> Self {
        Comparator::new(|p: &Captured, s: &Captured| {
            let (a, b) = (p.grpc_status(), s.grpc_status());
            Verdict::from_diffs(if a == b {
                Vec::new()
            } else {
                vec![FieldDiff::new(
                    "grpc-status",
                    a.unwrap_or("<none>"),
                    b.unwrap_or("<none>"),
                )]
            })
        })
    }

    /// JSON bodies compared exactly, field by field (feature `json`); see
    /// [`JsonCompare`](super::JsonCompare) for tolerances, ignored fields and
    /// more.
    #[cfg(feature = "json")]
    #[cfg_attr(docsrs, doc(cfg(feature = "json")))]
    pub fn json() -> Self {
        super::JsonCompare::new()
            .build()
            .expect("the default JSON settings are valid")
    }

    /// Decodes both sides with `decode` (for example a protobuf message into
    /// JSON-like bytes) and compares the results with `inner`. A side that
    /// fails to decode makes a mismatch at `decode`.
    pub fn decoded<D, E>(decode: D, inner: Comparator) -> Self
    where
        D: Fn(&Captured) -> Result<Captured, E> + Send + Sync + 'static,
        E: fmt::Display,
    {
        Comparator::new(
            move |p: &Captured, s: &Captured| match (decode(p), decode(s)) {
                (Ok(p), Ok(s)) => inner.compare(&p, &s),
                (p, s) => {
                    let show = |r: Result<Captured, E>| match r {
                        Ok(_) => "ok".to_owned(),
                        Err(e) => format!("error: {e}"),
                    };
                    Verdict::Mismatch(vec![FieldDiff::new("decode", show(p), show(s))])
                }
            },
        )
    }
}

impl Compare for Comparator {
    fn compare(&self, primary: &Captured, shadow: &Captured) -> Verdict {
        self.inner.compare(primary, shadow)
    }
}

impl fmt::Debug for Comparator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Comparator").finish_non_exhaustive()
    }
}

pub(crate) fn status_diff(p: &Captured, s: &Captured) -> Option<FieldDiff> {
    (p.status != s.status).then(|| FieldDiff::new("status", p.status.as_u16(), s.status.as_u16()))
}

pub(crate) fn truncate(mut s: String, max: usize) -> String {
    if s.len() > max {
        let mut cut = max;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
        s.push('…');
    }
    s
}

pub(crate) fn truncate_bytes(b: Bytes, max: usize) -> Bytes {
    if b.len() > max {
        b.slice(..max)
    } else {
        b
    }
}
