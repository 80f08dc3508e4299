//! The [`JsonCompare`] type: its settings, setters and their checks.

use super::super::compare::Comparator;
use super::pointer::Pointer;
use crate::ConfigError;

/// Compares two JSON bodies field by field.
///
/// Build one with [`JsonCompare::new`] and the setters, then either call
/// [`build`](JsonCompare::build) to validate the settings and get a
/// [`Comparator`], or use it directly as a [`Compare`](super::super::Compare) (unvalidated: a bad
/// pointer is left out, a NaN or negative tolerance acts as zero).
///
/// ```
/// use http::StatusCode;
/// use serde_json::json;
/// use tower_rollout::shadow::{Captured, Compare, JsonCompare};
///
/// let cmp = JsonCompare::new()
///     .abs_tolerance(0.25)
///     .ignore("/request_id")
///     .ignore("/items/*/ts")
///     .build()?;
/// let primary = Captured::new(
///     StatusCode::OK,
///     r#"{"request_id": "a1", "score": 1.0, "items": [{"id": 1, "ts": 100}]}"#,
/// );
/// let shadow = Captured::new(
///     StatusCode::OK,
///     r#"{"request_id": "b2", "score": 1.25, "items": [{"id": 1, "ts": 200}]}"#,
/// );
/// // |1.0 - 1.25| == 0.25: exactly at the tolerance still matches.
/// assert!(cmp.compare(&primary, &shadow).is_match());
///
/// // Just past it does not; diffs carry JSON pointers.
/// let further = Captured::new(StatusCode::OK, r#"{"score": 1.26, "items": [{"id": 2}]}"#);
/// let diffs = match cmp.compare(&primary, &further) {
///     tower_rollout::shadow::Verdict::Mismatch(diffs) => diffs,
///     _ => unreachable!(),
/// };
/// let mut shown: Vec<String> = diffs.iter().map(|d| d.to_string()).collect();
/// shown.sort();
/// assert_eq!(shown, ["/items/0/id: 1 != 2", "/score: 1.0 != 1.26"]);
///
/// // Without settings: exact, but integers and floats compare by value.
/// let exact = JsonCompare::new();
/// assert!(exact.diff_values(&json!({"n": 1}), &json!({"n": 1.0})).is_empty());
/// assert_eq!(exact.diff_values(&json!({"n": 1}), &json!({"n": "1"})).len(), 1);
/// # Ok::<(), tower_rollout::ConfigError>(())
/// ```
///
/// # What is compared
///
/// Different status codes make a diff at `status`; the bodies are compared
/// too. Both bodies are parsed as JSON. When exactly one side is not valid
/// JSON the result is a single diff at `body` showing both (the invalid side
/// prefixed with the parse error); when neither is, the bytes are compared
/// and differing bytes give one diff at `body`. Headers and trailers are not
/// compared.
///
/// Values of different JSON types differ (`1` and `"1"`, `null` and `0`),
/// with one exception: numbers compare by value, so `1`, `1.0` and `1e0`
/// are equal. A key present on one side only gives a diff whose other side
/// reads `<missing>`; arrays of different lengths give such a diff for each
/// index past the shorter one.
///
/// Diff paths are JSON pointers ([RFC 6901]) to the concrete value, such as
/// `/probabilities/2` or `/items/3/label` (keys containing `~` or `/` are
/// escaped as `~0` and `~1`); the whole document is the empty path. Values
/// are rendered as compact JSON and cut at 200 bytes.
///
/// # Numbers and tolerances
///
/// Two numbers `a` and `b` match when they are equal, or when
///
/// ```text
/// |a - b| <= abs   or   |a - b| <= rel * max(|a|, |b|)
/// ```
///
/// where `abs` and `rel` come from
/// [`abs_tolerance`](Self::abs_tolerance) and
/// [`rel_tolerance`](Self::rel_tolerance) (both 0 by default, meaning exact).
/// The rule is symmetric in `a` and `b`, and both bounds are inclusive. A
/// relative tolerance alone never lets `0` match a non-zero number unless
/// `rel >= 1`. The tolerances apply to every number in the document, except
/// numbers at or below a pointer given to
/// [`tolerance_at`](Self::tolerance_at), which use that pointer's own pair
/// instead (when several such pointers cover a number, the one set last
/// wins). Tolerances must be finite and non-negative.
///
/// The difference is computed in `f64`, so a tolerance that is not exactly
/// representable needs a margin: `|1.0 - 1.1|` is `0.10000000000000009`,
/// which `abs_tolerance(0.1)` does not cover.
///
/// # Pointers: ignoring and selecting fields
///
/// [`ignore`](Self::ignore), [`only`](Self::only) and
/// [`tolerance_at`](Self::tolerance_at) take JSON pointers, with one
/// extension: a segment `*` matches any object key or array index
/// (`/items/*/ts`). A pointer covers the value it names and everything
/// below it. An object key that is literally `*` can only be reached through
/// the wildcard.
///
/// Ignored values are skipped wherever they are, including a key present on
/// one side only. When any [`only`](Self::only) pointer is set, just the
/// values those pointers name are compared: a named value missing on one side
/// is a difference, missing on both sides is not, and the structure around
/// the named values is not compared.
///
/// # Unordered arrays
///
/// With [`unordered_arrays(true)`](Self::unordered_arrays) every array is
/// compared as a multiset: the result never depends on the order of the
/// elements, and duplicates count. Inside such arrays, elements have no
/// position, so pointer segments at their level only match through `*`
/// (`/items/*/ts`; `/items/0/ts` matches nothing). A diff inside an unordered
/// array uses the primary's index, or the shadow's for an element only the
/// shadow has.
///
/// Without tolerances, both sides are sorted by a canonical form (keys
/// sorted, numbers by value, ignored fields left out, nested arrays sorted)
/// and equal elements paired off: this is exact. With tolerances, "within
/// tolerance" is not transitive (with `abs = 1`, `[0, 1]` matches `[1, 2]`
/// only by pairing `0–1` and `1–2`), so neither sorting nor greedy pairing
/// is exact; instead the elements are paired by a maximum bipartite matching
/// over "matches within tolerance", which finds a pairing of every element
/// whenever one exists, whatever the order, and is symmetric in primary and
/// shadow. It tries every element pair, so it is used while
/// `len(primary) * len(shadow) <= 65 536`. Beyond that, equal elements are
/// paired off as without tolerances and the rest paired in sorted order: still
/// order-independent and never a false match, and still exact for arrays of
/// numbers (pairing sorted numbers is optimal for interval tolerances), but
/// for arrays of objects it may report a mismatch where a tolerant pairing
/// exists.
///
/// # Limits
///
/// At most [`max_diffs`](Self::max_diffs) diffs (32 by default, counting the
/// `status` diff) are reported per comparison. When there are more, one last
/// diff at path `…` gives the number left out (`primary`, e.g. `17 more
/// differences`) and the total (`shadow`, e.g. `49 in total`).
///
/// Values nested deeper than 128 levels (more than serde_json parses, so only
/// reachable through [`diff_values`](Self::diff_values)) are not compared
/// below that depth: a diff at that path says so. Comparison never recurses
/// deeper than that, so it cannot overflow the stack.
///
/// [RFC 6901]: https://www.rfc-editor.org/rfc/rfc6901
#[derive(Clone, Debug)]
pub struct JsonCompare {
    pub(super) abs: f64,
    pub(super) rel: f64,
    pub(super) overrides: Vec<Override>,
    pub(super) ignore: Vec<Pointer>,
    pub(super) only: Vec<Pointer>,
    pub(super) unordered: bool,
    pub(super) max_diffs: usize,
    /// The first pointer that did not parse, reported by `build`.
    pub(super) bad_pointer: Option<String>,
}

#[derive(Clone, Debug)]
pub(super) struct Override {
    pub(super) pointer: Pointer,
    pub(super) abs: f64,
    pub(super) rel: f64,
}

// === impl JsonCompare ===

impl JsonCompare {
    /// Exact comparison of two JSON documents: no tolerances, nothing ignored,
    /// arrays in order, at most 32 diffs reported.
    pub fn new() -> Self {
        JsonCompare {
            abs: 0.0,
            rel: 0.0,
            overrides: Vec::new(),
            ignore: Vec::new(),
            only: Vec::new(),
            unordered: false,
            max_diffs: 32,
            bad_pointer: None,
        }
    }

    /// Numbers within `abs` of each other match: `|a - b| <= abs`. Applies to
    /// every number not covered by [`tolerance_at`](Self::tolerance_at); see
    /// the [type docs](Self#numbers-and-tolerances). `build` rejects negative,
    /// infinite and NaN values.
    pub fn abs_tolerance(mut self, abs: f64) -> Self {
        self.abs = abs;
        self
    }

    /// Numbers within `rel` times the larger magnitude match:
    /// `|a - b| <= rel * max(|a|, |b|)`. Applies to every number not covered
    /// by [`tolerance_at`](Self::tolerance_at); see the
    /// [type docs](Self#numbers-and-tolerances). `build` rejects negative,
    /// infinite and NaN values.
    pub fn rel_tolerance(mut self, rel: f64) -> Self {
        self.rel = rel;
        self
    }

    /// Numbers at or below `pointer` use `abs` and `rel` instead of the
    /// global tolerances (`*` segments allowed; the last matching call wins).
    /// `build` rejects a bad pointer or tolerance.
    pub fn tolerance_at(mut self, pointer: &str, abs: f64, rel: f64) -> Self {
        if let Some(pointer) = self.parse(pointer) {
            self.overrides.push(Override { pointer, abs, rel });
        }
        self
    }

    /// Skips the values at `pointer` (for example `/request_id`, or
    /// `/items/*/ts` for a field of every element). Repeatable. `build`
    /// rejects a pointer that is not empty and does not start with `/`.
    pub fn ignore(mut self, pointer: &str) -> Self {
        if let Some(pointer) = self.parse(pointer) {
            self.ignore.push(pointer);
        }
        self
    }

    /// Compares only the values at `pointer` (for example `/label`).
    /// Repeatable: the union of all such pointers is compared. A selected
    /// value missing on one side is a difference, on both sides is not.
    /// `build` rejects a bad pointer.
    pub fn only(mut self, pointer: &str) -> Self {
        if let Some(pointer) = self.parse(pointer) {
            self.only.push(pointer);
        }
        self
    }

    /// Compares every array as a multiset, ignoring element order; see the
    /// [type docs](Self#unordered-arrays) for how elements are paired.
    pub fn unordered_arrays(mut self, unordered: bool) -> Self {
        self.unordered = unordered;
        self
    }

    /// Reports at most `max` diffs per comparison, then one `…` diff with the
    /// counts (32 by default). `build` rejects 0.
    pub fn max_diffs(mut self, max: usize) -> Self {
        self.max_diffs = max;
        self
    }

    /// Checks the settings and returns the comparator.
    ///
    /// # Errors
    ///
    /// [`ConfigError::InvalidTolerance`] for a negative, infinite or NaN
    /// tolerance,
    /// [`ConfigError::InvalidPointer`] for a pointer that is neither empty nor
    /// starts with `/` (or has a `~` not followed by `0` or `1`), and
    /// [`ConfigError::MustBePositive`] for `max_diffs(0)`.
    ///
    /// ```
    /// use tower_rollout::{shadow::JsonCompare, ConfigError};
    ///
    /// let err = JsonCompare::new().ignore("request_id").build().unwrap_err();
    /// assert_eq!(err, ConfigError::InvalidPointer { pointer: "request_id".into() });
    /// let err = JsonCompare::new().abs_tolerance(-0.1).build().unwrap_err();
    /// assert!(matches!(err, ConfigError::InvalidTolerance { setting: "abs_tolerance", .. }));
    /// ```
    pub fn build(self) -> Result<Comparator, ConfigError> {
        self.validate()?;
        Ok(Comparator::new(self))
    }

    fn validate(&self) -> Result<(), ConfigError> {
        check_tolerance("abs_tolerance", self.abs)?;
        check_tolerance("rel_tolerance", self.rel)?;
        for o in &self.overrides {
            check_tolerance("tolerance_at abs", o.abs)?;
            check_tolerance("tolerance_at rel", o.rel)?;
        }
        if let Some(pointer) = &self.bad_pointer {
            return Err(ConfigError::InvalidPointer {
                pointer: pointer.clone(),
            });
        }
        if self.max_diffs == 0 {
            return Err(ConfigError::MustBePositive {
                setting: "max_diffs",
            });
        }
        Ok(())
    }

    fn parse(&mut self, pointer: &str) -> Option<Pointer> {
        let parsed = Pointer::parse(pointer);
        if parsed.is_none() && self.bad_pointer.is_none() {
            self.bad_pointer = Some(pointer.to_owned());
        }
        parsed
    }

    pub(super) fn has_tolerance(&self) -> bool {
        self.abs > 0.0
            || self.rel > 0.0
            || self.overrides.iter().any(|o| o.abs > 0.0 || o.rel > 0.0)
    }
}

impl Default for JsonCompare {
    fn default() -> Self {
        JsonCompare::new()
    }
}

pub(super) fn check_tolerance(setting: &'static str, value: f64) -> Result<(), ConfigError> {
    if value.is_finite() && value >= 0.0 {
        Ok(())
    } else {
        Err(ConfigError::InvalidTolerance { setting, value })
    }
}
