//! [`JsonCompare`]: field-by-field comparison of JSON bodies, with numeric
//! tolerances, ignored and selected fields, and order-free arrays.

use std::cmp::Ordering;
use std::fmt::{self, Write as _};

use serde_json::{Map, Number, Value};

use super::compare::{status_diff, Captured, Comparator, Compare, FieldDiff, Verdict};
use crate::ConfigError;

/// Nesting depth compared in full: above serde_json's parse limit (127
/// nested arrays or objects), so any body that parses is compared completely.
const MAX_DEPTH: usize = 128;

/// Element pairs tried by the tolerant matching of one unordered array
/// (`len(primary) * len(shadow)`), beyond which it falls back to pairing in
/// sorted order.
const MATCHING_BUDGET: usize = 1 << 16;

/// Rendered values are cut a little past what [`FieldDiff`] keeps (200 bytes),
/// so its truncation marker shows and huge values are never rendered whole.
const RENDER_MAX: usize = 240;

const MISSING: &str = "<missing>";
const TOO_DEEP: &str = "<nested deeper than 128 levels>";

/// Compares two JSON bodies field by field.
///
/// Build one with [`JsonCompare::new`] and the setters, then either call
/// [`build`](JsonCompare::build) to validate the settings and get a
/// [`Comparator`], or use it directly as a [`Compare`] (unvalidated: a bad
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
    abs: f64,
    rel: f64,
    overrides: Vec<Override>,
    ignore: Vec<Pointer>,
    only: Vec<Pointer>,
    unordered: bool,
    max_diffs: usize,
    /// The first pointer that did not parse, reported by `build`.
    bad_pointer: Option<String>,
}

#[derive(Clone, Debug)]
struct Override {
    pointer: Pointer,
    abs: f64,
    rel: f64,
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

    /// The differences between two JSON values under these settings, capped
    /// at [`max_diffs`](Self::max_diffs) plus one `…` diff with the counts.
    ///
    /// Paths are concrete JSON pointers (a `*` in an ignore or `only`
    /// pointer never appears in them), so diffs can be counted per path.
    ///
    /// ```
    /// use serde_json::json;
    /// use tower_rollout::shadow::JsonCompare;
    ///
    /// let cmp = JsonCompare::new().rel_tolerance(0.5);
    /// // |1 - 2| == 0.5 * max(1, 2): the relative bound is inclusive.
    /// assert!(cmp.diff_values(&json!([1, 0]), &json!([2, 0])).is_empty());
    /// // 0 against anything non-zero is never within a relative tolerance below 1.
    /// let diffs = cmp.diff_values(&json!([1, 0]), &json!([2, 1e-9]));
    /// assert_eq!(diffs.len(), 1);
    /// assert_eq!(diffs[0].path, "/1");
    /// assert_eq!((diffs[0].primary.as_str(), diffs[0].shadow.as_str()), ("0", "1e-9"));
    /// ```
    pub fn diff_values(&self, primary: &Value, shadow: &Value) -> Vec<FieldDiff> {
        let mut out = Out::collect(self.max_diffs);
        self.diff_into(primary, shadow, &mut out);
        out.finish()
    }

    fn diff_into(&self, primary: &Value, shadow: &Value, out: &mut Out) {
        if let Step::Visit(ctx) = Ctx::root(self) {
            let walk = Walk::new(self);
            walk.walk(
                Some(primary),
                Some(shadow),
                &ctx,
                &mut String::new(),
                0,
                out,
            );
        }
    }

    fn has_tolerance(&self) -> bool {
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

impl Compare for JsonCompare {
    fn compare(&self, primary: &Captured, shadow: &Captured) -> Verdict {
        let mut out = Out::collect(self.max_diffs);
        if let Some(diff) = status_diff(primary, shadow) {
            out.push_diff(diff);
        }
        let parse = |body: &[u8]| serde_json::from_slice::<Value>(body);
        match (parse(&primary.body), parse(&shadow.body)) {
            (Ok(p), Ok(s)) => self.diff_into(&p, &s, &mut out),
            (Err(e), Ok(_)) => out.push(
                "body",
                || invalid(&e, &primary.body),
                || lossy(&shadow.body),
            ),
            (Ok(_), Err(e)) => out.push(
                "body",
                || lossy(&primary.body),
                || invalid(&e, &shadow.body),
            ),
            (Err(_), Err(_)) => {
                if primary.body != shadow.body {
                    out.push("body", || lossy(&primary.body), || lossy(&shadow.body));
                }
            }
        }
        Verdict::from_diffs(out.finish())
    }
}

fn check_tolerance(setting: &'static str, value: f64) -> Result<(), ConfigError> {
    if value.is_finite() && value >= 0.0 {
        Ok(())
    } else {
        Err(ConfigError::InvalidTolerance { setting, value })
    }
}

// === pointers ===

/// A parsed JSON pointer whose `*` segments match anything.
#[derive(Clone)]
struct Pointer {
    text: String,
    segs: Vec<Seg>,
}

#[derive(Clone, Debug)]
enum Seg {
    Any,
    Key {
        name: String,
        /// The array index this segment names, if it is one (`0` or digits
        /// without a leading zero, as RFC 6901 says).
        index: Option<usize>,
    },
}

impl Pointer {
    fn parse(text: &str) -> Option<Pointer> {
        let mut segs = Vec::new();
        if !text.is_empty() {
            let rest = text.strip_prefix('/')?;
            for raw in rest.split('/') {
                segs.push(if raw == "*" {
                    Seg::Any
                } else {
                    let name = unescape(raw)?;
                    let digits = name.bytes().all(|b| b.is_ascii_digit());
                    let index = (digits && (name == "0" || !name.starts_with('0')))
                        .then(|| name.parse().ok())
                        .flatten();
                    Seg::Key { name, index }
                });
            }
        }
        Some(Pointer {
            text: text.to_owned(),
            segs,
        })
    }
}

impl fmt::Debug for Pointer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.text, f)
    }
}

fn unescape(raw: &str) -> Option<String> {
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars();
    while let Some(c) = chars.next() {
        if c == '~' {
            match chars.next() {
                Some('0') => out.push('~'),
                Some('1') => out.push('/'),
                _ => return None,
            }
        } else {
            out.push(c);
        }
    }
    Some(out)
}

fn push_segment(path: &mut String, key: &str) {
    path.push('/');
    for c in key.chars() {
        match c {
            '~' => path.push_str("~0"),
            '/' => path.push_str("~1"),
            c => path.push(c),
        }
    }
}

fn push_index(path: &mut String, index: usize) {
    // Writing to a String cannot fail.
    let _ = write!(path, "/{index}");
}

/// A child of a JSON value as pointers see it.
#[derive(Clone, Copy)]
enum Key<'a> {
    Field(&'a str),
    Index(usize),
    /// Any element of an unordered array: only `*` matches it.
    Elem,
}

impl Seg {
    fn matches(&self, key: Key<'_>) -> bool {
        match (self, key) {
            (Seg::Any, _) => true,
            (Seg::Key { name, .. }, Key::Field(field)) => name == field,
            (Seg::Key { index, .. }, Key::Index(i)) => *index == Some(i),
            (Seg::Key { .. }, Key::Elem) => false,
        }
    }
}

// === filter context ===

/// Where a value sits relative to the configured pointers: the pointers
/// partly matched by its path, each as (pointer index, segments matched).
#[derive(Clone)]
struct Ctx {
    ignore: Vec<(usize, usize)>,
    /// `None`: everything here is compared. `Some`: only values named by the
    /// partly matched `only` pointers are.
    only: Option<Vec<(usize, usize)>>,
    tol: Vec<(usize, usize)>,
    /// The `tolerance_at` override covering this value (the last set wins).
    tol_hit: Option<usize>,
}

enum Step {
    /// Compare this value with the given context.
    Visit(Ctx),
    /// Ignored, or not selected by `only`: not compared.
    Skip,
}

impl Ctx {
    fn root(cfg: &JsonCompare) -> Step {
        let start = |n: usize| (0..n).map(|i| (i, 0)).collect::<Vec<_>>();
        let ctx = Ctx {
            ignore: start(cfg.ignore.len()),
            only: (!cfg.only.is_empty()).then(|| start(cfg.only.len())),
            tol: start(cfg.overrides.len()),
            tol_hit: None,
        };
        ctx.settle(cfg)
    }

    /// Resolves states that have matched their whole pointer.
    fn settle(mut self, cfg: &JsonCompare) -> Step {
        if self
            .ignore
            .iter()
            .any(|&(i, pos)| pos == cfg.ignore[i].segs.len())
        {
            return Step::Skip;
        }
        if let Some(only) = &self.only {
            if only.iter().any(|&(i, pos)| pos == cfg.only[i].segs.len()) {
                self.only = None;
            } else if only.is_empty() {
                return Step::Skip;
            }
        }
        let mut live = Vec::with_capacity(self.tol.len());
        for &(i, pos) in &self.tol {
            if pos == cfg.overrides[i].pointer.segs.len() {
                self.tol_hit = self.tol_hit.max(Some(i));
            } else {
                live.push((i, pos));
            }
        }
        self.tol = live;
        Step::Visit(self)
    }

    fn child(&self, key: Key<'_>, cfg: &JsonCompare) -> Step {
        let ctx = Ctx {
            ignore: advance(&self.ignore, key, |i| &cfg.ignore[i].segs),
            only: self
                .only
                .as_ref()
                .map(|only| advance(only, key, |i| &cfg.only[i].segs)),
            tol: advance(&self.tol, key, |i| &cfg.overrides[i].pointer.segs),
            tol_hit: self.tol_hit,
        };
        ctx.settle(cfg)
    }
}

/// Keeps the partial matches whose next segment matches `key`, one segment
/// further on.
fn advance<'p>(
    states: &[(usize, usize)],
    key: Key<'_>,
    segs: impl Fn(usize) -> &'p [Seg],
) -> Vec<(usize, usize)> {
    states
        .iter()
        .filter(|&&(i, pos)| segs(i)[pos].matches(key))
        .map(|&(i, pos)| (i, pos + 1))
        .collect()
}

// === comparison ===

/// One comparison's settings, borrowed.
struct Walk<'c> {
    cfg: &'c JsonCompare,
    /// No tolerance anywhere: numbers match only when equal.
    exact: bool,
}

impl<'c> Walk<'c> {
    fn new(cfg: &'c JsonCompare) -> Self {
        Walk {
            cfg,
            exact: !cfg.has_tolerance(),
        }
    }

    /// Compares the values at `path` (either may be missing) into `out`.
    fn walk(
        &self,
        p: Option<&Value>,
        s: Option<&Value>,
        ctx: &Ctx,
        path: &mut String,
        depth: usize,
        out: &mut Out,
    ) {
        if out.done() {
            return;
        }
        if depth > MAX_DEPTH {
            out.push(path, || TOO_DEEP.into(), || TOO_DEEP.into());
            return;
        }
        if ctx.only.is_some() {
            // `only` pointers name values below this one: compare those, and
            // nothing about this value itself.
            let (po, so) = (p.and_then(Value::as_object), s.and_then(Value::as_object));
            if po.is_some() || so.is_some() {
                self.objects(po, so, ctx, path, depth, out);
            }
            let (pa, sa) = (p.and_then(Value::as_array), s.and_then(Value::as_array));
            if pa.is_some() || sa.is_some() {
                let (pa, sa) = (pa.map(Vec::as_slice), sa.map(Vec::as_slice));
                self.arrays(pa, sa, ctx, path, depth, out);
            }
            return;
        }
        match (p, s) {
            (None, None) => {}
            (Some(a), None) => out.push(path, || render(a), || MISSING.into()),
            (None, Some(b)) => out.push(path, || MISSING.into(), || render(b)),
            (Some(a), Some(b)) => self.values(a, b, ctx, path, depth, out),
        }
    }

    fn values(
        &self,
        a: &Value,
        b: &Value,
        ctx: &Ctx,
        path: &mut String,
        depth: usize,
        out: &mut Out,
    ) {
        let same = match (a, b) {
            (Value::Null, Value::Null) => true,
            (Value::Bool(x), Value::Bool(y)) => x == y,
            (Value::String(x), Value::String(y)) => x == y,
            (Value::Number(x), Value::Number(y)) => self.numbers_match(x, y, ctx),
            (Value::Object(x), Value::Object(y)) => {
                return self.objects(Some(x), Some(y), ctx, path, depth, out);
            }
            (Value::Array(x), Value::Array(y)) => {
                return self.arrays(Some(x), Some(y), ctx, path, depth, out);
            }
            _ => false,
        };
        if !same {
            out.push(path, || render(a), || render(b));
        }
    }

    fn numbers_match(&self, x: &Number, y: &Number, ctx: &Ctx) -> bool {
        if Num::of(x) == Num::of(y) {
            return true;
        }
        let (abs, rel) = match ctx.tol_hit {
            Some(i) => (self.cfg.overrides[i].abs, self.cfg.overrides[i].rel),
            None => (self.cfg.abs, self.cfg.rel),
        };
        let (Some(a), Some(b)) = (x.as_f64(), y.as_f64()) else {
            return false;
        };
        let d = distance(x, y, a, b);
        // Zero means exact: distinct values never compare within a zero
        // tolerance, even integers beyond 2^53 that convert to one float.
        (abs > 0.0 && d <= abs) || (rel > 0.0 && d <= rel * a.abs().max(b.abs()))
    }

    fn objects(
        &self,
        x: Option<&Map<String, Value>>,
        y: Option<&Map<String, Value>>,
        ctx: &Ctx,
        path: &mut String,
        depth: usize,
        out: &mut Out,
    ) {
        let len = path.len();
        let mut child = |key: &str, p: Option<&Value>, s: Option<&Value>, out: &mut Out| {
            if let Step::Visit(c) = ctx.child(Key::Field(key), self.cfg) {
                push_segment(path, key);
                self.walk(p, s, &c, path, depth + 1, out);
                path.truncate(len);
            }
        };
        for (k, v) in x.into_iter().flatten() {
            if out.done() {
                return;
            }
            child(k, Some(v), y.and_then(|y| y.get(k)), out);
        }
        for (k, v) in y.into_iter().flatten() {
            if out.done() {
                return;
            }
            if !x.is_some_and(|x| x.contains_key(k)) {
                child(k, None, Some(v), out);
            }
        }
    }

    fn arrays(
        &self,
        x: Option<&[Value]>,
        y: Option<&[Value]>,
        ctx: &Ctx,
        path: &mut String,
        depth: usize,
        out: &mut Out,
    ) {
        let (x, y) = (x.unwrap_or(&[]), y.unwrap_or(&[]));
        if self.cfg.unordered {
            return self.bag(x, y, ctx, path, depth, out);
        }
        let len = path.len();
        for i in 0..x.len().max(y.len()) {
            if out.done() {
                return;
            }
            if let Step::Visit(c) = ctx.child(Key::Index(i), self.cfg) {
                push_index(path, i);
                self.walk(x.get(i), y.get(i), &c, path, depth + 1, out);
                path.truncate(len);
            }
        }
    }

    /// Compares two arrays as multisets (see the type docs for the pairing).
    fn bag(
        &self,
        x: &[Value],
        y: &[Value],
        ctx: &Ctx,
        path: &mut String,
        depth: usize,
        out: &mut Out,
    ) {
        let Step::Visit(ectx) = ctx.child(Key::Elem, self.cfg) else {
            return;
        };
        let (Ok(cx), Ok(cy)) = (
            self.canon_elems(x, &ectx, depth + 1),
            self.canon_elems(y, &ectx, depth + 1),
        ) else {
            out.push(path, || TOO_DEEP.into(), || TOO_DEEP.into());
            return;
        };
        if cx.len() == cy.len() && cx.iter().zip(&cy).all(|(a, b)| a.1 == b.1) {
            return;
        }
        if out.any && cx.len() != cy.len() {
            return out.push(path, String::new, String::new);
        }
        // Positions in `cx` and `cy` (sorted order) left unpaired, and
        // whether they are known to differ.
        let (left, right, conclusive) = if self.exact {
            let (l, r) = unpaired_equal(&cx, &cy);
            (l, r, true)
        } else if cx.len() == 1 && cy.len() == 1 {
            (vec![0], vec![0], false)
        } else if cx.len().saturating_mul(cy.len()) <= MATCHING_BUDGET {
            let (l, r) = self.unpaired_matching(x, y, &cx, &cy, &ectx, depth + 1);
            (l, r, true)
        } else if cx.len() == cy.len() && cx.iter().chain(&cy).all(|c| c.1.is_scalar()) {
            // Sorted pairing is optimal for scalars (see the type docs).
            ((0..cx.len()).collect(), (0..cy.len()).collect(), false)
        } else {
            let (l, r) = unpaired_equal(&cx, &cy);
            (l, r, false)
        };
        if out.any && conclusive && !(left.is_empty() && right.is_empty()) {
            // Walking them again would only confirm it, and, nested, double
            // the work at every level.
            return out.push(path, String::new, String::new);
        }
        // Pair the rest in sorted order so that diffs name fields where they
        // can; the surplus of the longer side is missing on the other.
        let len = path.len();
        for k in 0..left.len().max(right.len()) {
            if out.done() {
                return;
            }
            let p = left.get(k).map(|&a| cx[a].0);
            let s = right.get(k).map(|&b| cy[b].0);
            let Some(index) = p.or(s) else { break };
            push_index(path, index);
            self.walk(
                p.map(|i| &x[i]),
                s.map(|j| &y[j]),
                &ectx,
                path,
                depth + 1,
                out,
            );
            path.truncate(len);
        }
    }

    /// Pairs elements by a maximum matching over "no diff between them";
    /// returns the unpaired positions on each side.
    fn unpaired_matching(
        &self,
        x: &[Value],
        y: &[Value],
        cx: &[(usize, Canon<'_>)],
        cy: &[(usize, Canon<'_>)],
        ectx: &Ctx,
        depth: usize,
    ) -> (Vec<usize>, Vec<usize>) {
        let (n, m) = (cx.len(), cy.len());
        let mut compat = vec![false; n * m];
        for (a, (i, ca)) in cx.iter().enumerate() {
            for (b, (j, cb)) in cy.iter().enumerate() {
                compat[a * m + b] = ca == cb || !self.differs(&x[*i], &y[*j], ectx, depth);
            }
        }
        let left_of = max_matching(&compat, n, m);
        let mut paired = vec![false; n];
        for a in left_of.iter().flatten() {
            paired[*a] = true;
        }
        let left = (0..n).filter(|&a| !paired[a]).collect();
        let right = (0..m).filter(|&b| left_of[b].is_none()).collect();
        (left, right)
    }

    fn differs(&self, a: &Value, b: &Value, ctx: &Ctx, depth: usize) -> bool {
        let mut out = Out::any();
        self.walk(Some(a), Some(b), ctx, &mut String::new(), depth, &mut out);
        out.total > 0
    }

    // === canonical forms ===

    /// Canonical forms of the compared elements, sorted, with their indices.
    fn canon_elems<'v>(
        &self,
        elems: &'v [Value],
        ectx: &Ctx,
        depth: usize,
    ) -> Result<Vec<(usize, Canon<'v>)>, TooDeep> {
        let mut out = Vec::with_capacity(elems.len());
        for (i, e) in elems.iter().enumerate() {
            let c = self.canon(e, ectx, depth)?;
            if !c.is_empty_selection() {
                out.push((i, c));
            }
        }
        out.sort_by(|a, b| a.1.cmp(&b.1));
        Ok(out)
    }

    /// A form of `v` that equals another's exactly when an exact comparison
    /// (no tolerances) under `ctx` finds no difference, and sorts.
    fn canon<'v>(&self, v: &'v Value, ctx: &Ctx, depth: usize) -> Result<Canon<'v>, TooDeep> {
        if depth > MAX_DEPTH {
            return Err(TooDeep);
        }
        if ctx.only.is_some() {
            let fields = match v.as_object() {
                Some(m) => self.canon_fields(m, ctx, depth)?,
                None => Vec::new(),
            };
            let (items, bag) = match v.as_array() {
                Some(a) if self.cfg.unordered => (Vec::new(), self.canon_bag(a, ctx, depth)?),
                Some(a) => (self.canon_items(a, ctx, depth)?, Vec::new()),
                None => (Vec::new(), Vec::new()),
            };
            return Ok(Canon::Sel { fields, items, bag });
        }
        Ok(match v {
            Value::Null => Canon::Null,
            Value::Bool(b) => Canon::Bool(*b),
            Value::Number(n) => Canon::Num(Num::of(n)),
            Value::String(s) => Canon::Str(s),
            Value::Array(a) if self.cfg.unordered => Canon::Bag(self.canon_bag(a, ctx, depth)?),
            Value::Array(a) => Canon::Arr(self.canon_items(a, ctx, depth)?),
            Value::Object(m) => Canon::Obj(self.canon_fields(m, ctx, depth)?),
        })
    }

    fn canon_fields<'v>(
        &self,
        m: &'v Map<String, Value>,
        ctx: &Ctx,
        depth: usize,
    ) -> Result<Vec<(&'v str, Canon<'v>)>, TooDeep> {
        let mut out = Vec::new();
        for (k, v) in m {
            if let Step::Visit(c) = ctx.child(Key::Field(k), self.cfg) {
                let cv = self.canon(v, &c, depth + 1)?;
                if !cv.is_empty_selection() {
                    out.push((k.as_str(), cv));
                }
            }
        }
        out.sort_by(|a, b| a.0.cmp(b.0));
        Ok(out)
    }

    fn canon_items<'v>(
        &self,
        a: &'v [Value],
        ctx: &Ctx,
        depth: usize,
    ) -> Result<Vec<(usize, Canon<'v>)>, TooDeep> {
        let mut out = Vec::new();
        for (i, v) in a.iter().enumerate() {
            if let Step::Visit(c) = ctx.child(Key::Index(i), self.cfg) {
                let cv = self.canon(v, &c, depth + 1)?;
                if !cv.is_empty_selection() {
                    out.push((i, cv));
                }
            }
        }
        Ok(out)
    }

    fn canon_bag<'v>(
        &self,
        a: &'v [Value],
        ctx: &Ctx,
        depth: usize,
    ) -> Result<Vec<Canon<'v>>, TooDeep> {
        match ctx.child(Key::Elem, self.cfg) {
            Step::Visit(ectx) => Ok(self
                .canon_elems(a, &ectx, depth + 1)?
                .into_iter()
                .map(|(_, c)| c)
                .collect()),
            Step::Skip => Ok(Vec::new()),
        }
    }
}

/// Pairs off equal canonical forms (both sorted); returns the unpaired
/// positions on each side, in sorted order.
fn unpaired_equal(
    cx: &[(usize, Canon<'_>)],
    cy: &[(usize, Canon<'_>)],
) -> (Vec<usize>, Vec<usize>) {
    let (mut a, mut b) = (0, 0);
    let (mut left, mut right) = (Vec::new(), Vec::new());
    while a < cx.len() && b < cy.len() {
        match cx[a].1.cmp(&cy[b].1) {
            Ordering::Equal => {
                a += 1;
                b += 1;
            }
            Ordering::Less => {
                left.push(a);
                a += 1;
            }
            Ordering::Greater => {
                right.push(b);
                b += 1;
            }
        }
    }
    left.extend(a..cx.len());
    right.extend(b..cy.len());
    (left, right)
}

/// A maximum bipartite matching (Kuhn's augmenting paths) between `n` left
/// and `m` right elements, `compat[a * m + b]` saying which may pair: for
/// each right element, its left partner.
fn max_matching(compat: &[bool], n: usize, m: usize) -> Vec<Option<usize>> {
    // Recursion depth is at most the number of pairs so far, which is at
    // most min(n, m) <= sqrt(MATCHING_BUDGET).
    fn augment(
        a: usize,
        compat: &[bool],
        m: usize,
        seen: &mut [bool],
        left_of: &mut [Option<usize>],
    ) -> bool {
        for b in 0..m {
            if compat[a * m + b] && !seen[b] {
                seen[b] = true;
                let free = match left_of[b] {
                    None => true,
                    Some(other) => augment(other, compat, m, seen, left_of),
                };
                if free {
                    left_of[b] = Some(a);
                    return true;
                }
            }
        }
        false
    }
    let mut left_of = vec![None; m];
    let mut seen = vec![false; m];
    for a in 0..n {
        seen.fill(false);
        augment(a, compat, m, &mut seen, &mut left_of);
    }
    left_of
}

/// Nesting beyond [`MAX_DEPTH`] met while building a canonical form.
struct TooDeep;

/// A value's canonical form: equal forms compare equal exactly, and forms
/// sort, so multisets of them can be compared by sorting.
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Canon<'v> {
    Null,
    Bool(bool),
    Num(Num),
    Str(&'v str),
    /// An ordered array: compared indices and their values.
    Arr(Vec<(usize, Canon<'v>)>),
    /// An unordered array: its compared elements, sorted.
    Bag(Vec<Canon<'v>>),
    /// An object: compared keys, sorted, with their values.
    Obj(Vec<(&'v str, Canon<'v>)>),
    /// A value above the values `only` names: those values, whatever this
    /// one is (empty ones left out, as missing and empty compare equal).
    Sel {
        fields: Vec<(&'v str, Canon<'v>)>,
        items: Vec<(usize, Canon<'v>)>,
        bag: Vec<Canon<'v>>,
    },
}

impl Canon<'_> {
    fn is_scalar(&self) -> bool {
        matches!(
            self,
            Canon::Null | Canon::Bool(_) | Canon::Num(_) | Canon::Str(_)
        )
    }

    fn is_empty_selection(&self) -> bool {
        matches!(self, Canon::Sel { fields, items, bag }
            if fields.is_empty() && items.is_empty() && bag.is_empty())
    }
}

/// 2^127: floats at or beyond it are outside `i128`.
const TWO_127: f64 = 170_141_183_460_469_231_731_687_303_715_884_105_728.0;

/// A JSON number by value: integral values (whether written `1` or `1.0`)
/// as integers, so that equality is exact and transitive.
#[derive(Clone, Copy, Debug)]
enum Num {
    Int(i128),
    /// Not integral, or beyond `i128`.
    Float(f64),
}

impl Num {
    fn of(n: &Number) -> Num {
        if let Some(i) = n.as_i64() {
            return Num::Int(i.into());
        }
        if let Some(u) = n.as_u64() {
            return Num::Int(u.into());
        }
        match n.as_f64() {
            Some(f) if f.fract() == 0.0 && (-TWO_127..TWO_127).contains(&f) => Num::Int(f as i128),
            Some(f) => Num::Float(f),
            None => Num::Float(f64::NAN),
        }
    }
}

/// Orders an integer against a float that is not an integer within `i128`
/// (so they are never equal).
fn int_vs_float(i: i128, f: f64) -> Ordering {
    let floor = f.floor();
    if f.is_nan() || floor >= TWO_127 {
        Ordering::Less
    } else if floor < -TWO_127 {
        Ordering::Greater
    } else if i <= floor as i128 {
        Ordering::Less
    } else {
        Ordering::Greater
    }
}

impl Ord for Num {
    fn cmp(&self, other: &Self) -> Ordering {
        match (*self, *other) {
            (Num::Int(a), Num::Int(b)) => a.cmp(&b),
            (Num::Float(a), Num::Float(b)) => a.total_cmp(&b),
            (Num::Int(a), Num::Float(b)) => int_vs_float(a, b),
            (Num::Float(a), Num::Int(b)) => int_vs_float(b, a).reverse(),
        }
    }
}

impl PartialOrd for Num {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for Num {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Num {}

// === output ===

/// Diffs found so far: kept up to a cap, counted beyond it; or, for pairing
/// elements, just whether there is any.
struct Out {
    diffs: Vec<FieldDiff>,
    max: usize,
    total: usize,
    /// Stop at the first difference.
    any: bool,
}

impl Out {
    fn collect(max: usize) -> Self {
        Out {
            diffs: Vec::new(),
            max,
            total: 0,
            any: false,
        }
    }

    fn any() -> Self {
        Out {
            diffs: Vec::new(),
            max: 0,
            total: 0,
            any: true,
        }
    }

    fn done(&self) -> bool {
        self.any && self.total > 0
    }

    fn push(
        &mut self,
        path: &str,
        primary: impl FnOnce() -> String,
        shadow: impl FnOnce() -> String,
    ) {
        self.total += 1;
        if self.diffs.len() < self.max {
            self.diffs.push(FieldDiff::new(path, primary(), shadow()));
        }
    }

    fn push_diff(&mut self, diff: FieldDiff) {
        self.total += 1;
        if self.diffs.len() < self.max {
            self.diffs.push(diff);
        }
    }

    fn finish(mut self) -> Vec<FieldDiff> {
        let left_out = self.total - self.diffs.len();
        if left_out > 0 {
            let s = if left_out == 1 { "" } else { "s" };
            self.diffs.push(FieldDiff::new(
                "…",
                format!("{left_out} more difference{s}"),
                format!("{} in total", self.total),
            ));
        }
        self.diffs
    }
}

/// Compact JSON, stopping soon after [`RENDER_MAX`] bytes.
fn render(v: &Value) -> String {
    let mut out = String::new();
    render_into(v, &mut out, 0);
    out
}

fn render_into(v: &Value, out: &mut String, depth: usize) {
    if out.len() > RENDER_MAX {
        return;
    }
    if depth > MAX_DEPTH {
        out.push('…');
        return;
    }
    match v {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => out.push_str(&n.to_string()),
        Value::String(s) => render_str(s, out),
        Value::Array(a) => {
            out.push('[');
            for (i, e) in a.iter().enumerate() {
                if out.len() > RENDER_MAX {
                    return;
                }
                if i > 0 {
                    out.push(',');
                }
                render_into(e, out, depth + 1);
            }
            out.push(']');
        }
        Value::Object(m) => {
            out.push('{');
            for (i, (k, e)) in m.iter().enumerate() {
                if out.len() > RENDER_MAX {
                    return;
                }
                if i > 0 {
                    out.push(',');
                }
                render_str(k, out);
                out.push(':');
                render_into(e, out, depth + 1);
            }
            out.push('}');
        }
    }
}

fn render_str(s: &str, out: &mut String) {
    let mut cut = s.len().min(RENDER_MAX);
    while !s.is_char_boundary(cut) {
        cut -= 1;
    }
    // Serializing a string cannot fail.
    out.push_str(&serde_json::to_string(&s[..cut]).unwrap_or_default());
}

/// The start of a body as text.
fn lossy(body: &[u8]) -> String {
    String::from_utf8_lossy(&body[..body.len().min(RENDER_MAX)]).into_owned()
}

fn invalid(err: &serde_json::Error, body: &[u8]) -> String {
    format!("<invalid JSON: {err}> {}", lossy(body))
}

/// `|x - y|`, exact for integers beyond 2^53 (where `as_f64` rounds by up
/// to 2^(e-53)): an integer is compared with the other side's integer part
/// in `i128`, and only the fraction (exact in `f64`) is subtracted after.
fn distance(x: &Number, y: &Number, a: f64, b: f64) -> f64 {
    fn int(n: &Number) -> Option<i128> {
        n.as_i64()
            .map(i128::from)
            .or_else(|| n.as_u64().map(i128::from))
    }
    // An integer `i` against a float `f`: (i - trunc f) exactly, then the
    // fraction of `f` (every f64 beyond 2^53 is an integer, so large values
    // have none).
    fn against(i: i128, f: f64) -> f64 {
        const LIMIT: f64 = 1e38; // well inside i128
        if !f.is_finite() || f.abs() >= LIMIT {
            return (i as f64 - f).abs();
        }
        let whole = f.trunc();
        let fraction = f - whole;
        ((i - whole as i128) as f64 - fraction).abs()
    }
    match (int(x), int(y)) {
        (Some(i), Some(j)) => (i - j).unsigned_abs() as f64,
        (Some(i), None) => against(i, b),
        (None, Some(j)) => against(j, a),
        (None, None) => (a - b).abs(),
    }
}

#[cfg(test)]
mod tests {
    use http::StatusCode;
    use serde_json::json;

    use super::*;

    fn paths(diffs: &[FieldDiff]) -> Vec<&str> {
        diffs.iter().map(|d| d.path.as_str()).collect()
    }

    fn same(cmp: &JsonCompare, a: Value, b: Value) -> bool {
        let diffs = cmp.diff_values(&a, &b);
        let back = cmp.diff_values(&b, &a);
        assert_eq!(diffs.is_empty(), back.is_empty(), "asymmetric: {a} vs {b}");
        diffs.is_empty()
    }

    fn verdict(cmp: &JsonCompare, p: Captured, s: Captured) -> Vec<FieldDiff> {
        match cmp.compare(&p, &s) {
            Verdict::Match => Vec::new(),
            Verdict::Mismatch(diffs) => diffs,
        }
    }

    #[test]
    fn abs_tolerance_is_inclusive_at_its_edge() {
        let cmp = JsonCompare::new().abs_tolerance(0.5);
        assert!(same(&cmp, json!(1.0), json!(1.5)));
        assert!(same(&cmp, json!(-1.0), json!(-1.5)));
        assert!(same(&cmp, json!(-0.25), json!(0.25)));
        assert!(!same(&cmp, json!(1.0), json!(1.500_000_1)));
        assert!(!same(&cmp, json!(-0.25), json!(0.250_000_1)));
        // Integers too.
        assert!(same(
            &JsonCompare::new().abs_tolerance(1.0),
            json!(10),
            json!(11)
        ));
        assert!(!same(
            &JsonCompare::new().abs_tolerance(1.0),
            json!(10),
            json!(12)
        ));
    }

    #[test]
    fn rel_tolerance_is_inclusive_and_scales_with_the_larger_magnitude() {
        let cmp = JsonCompare::new().rel_tolerance(0.25);
        // |3 - 4| == 0.25 * 4.
        assert!(same(&cmp, json!(3), json!(4)));
        assert!(same(&cmp, json!(-3), json!(-4)));
        assert!(!same(&cmp, json!(2.999_999), json!(4)));
        assert!(same(&cmp, json!(300.0), json!(400.0)));
        // Opposite signs: |1 - (-1)| = 2 > 0.25.
        assert!(!same(&cmp, json!(1), json!(-1)));
    }

    #[test]
    fn rel_tolerance_never_matches_zero_with_nonzero_below_one() {
        let cmp = JsonCompare::new().rel_tolerance(0.999);
        assert!(same(&cmp, json!(0), json!(0.0)));
        assert!(!same(&cmp, json!(0), json!(1e-300)));
        assert!(!same(&cmp, json!(0), json!(-5)));
        // rel = 1: |0 - b| <= 1 * |b| always.
        let cmp = JsonCompare::new().rel_tolerance(1.0);
        assert!(same(&cmp, json!(0), json!(5)));
        // abs rescues zero.
        let cmp = JsonCompare::new().rel_tolerance(0.5).abs_tolerance(1e-9);
        assert!(same(&cmp, json!(0), json!(1e-9)));
        assert!(!same(&cmp, json!(0), json!(2e-9)));
    }

    #[test]
    fn numbers_compare_by_value_exactly() {
        let cmp = JsonCompare::new();
        assert!(same(&cmp, json!(1), json!(1.0)));
        assert!(same(&cmp, json!(-0.0), json!(0)));
        assert!(same(&cmp, json!(u64::MAX), json!(u64::MAX)));
        assert!(!same(&cmp, json!(u64::MAX), json!(-1)));
        assert!(!same(&cmp, json!(0.1 + 0.2), json!(0.3)));
        // Beyond 2^53 integers stay exact.
        assert!(!same(
            &cmp,
            json!(9_007_199_254_740_993_i64),
            json!(9_007_199_254_740_992_i64)
        ));
        assert!(same(
            &cmp,
            json!(9_007_199_254_740_992_i64),
            json!(9_007_199_254_740_992.0)
        ));
        let p: Value = serde_json::from_str("[1e0, 1E2, 2.50]").unwrap();
        assert!(same(&cmp, p, json!([1, 100, 2.5])));
    }

    #[test]
    fn tolerances_beyond_2_pow_53_use_the_exact_distance() {
        // Found by the tolerance proptest: 2^56 + 9 against the float 2^56 is
        // 9 apart, but 2^56 + 9 rounds to the float 2^56 + 16 (16 apart).
        let abs = |t: f64| JsonCompare::new().abs_tolerance(t);
        let big = 72_057_594_037_927_945_u64; // 2^56 + 9
        let float = 72_057_594_037_927_936.0_f64; // 2^56
        assert!(same(&abs(10.0), json!(big), json!(float)));
        assert!(same(&abs(10.0), json!(float), json!(big)), "symmetric");
        assert!(!same(&abs(8.0), json!(big), json!(float)));
        // Integer against integer.
        assert!(same(&abs(9.0), json!(big), json!(big - 9)));
        assert!(!same(&abs(8.9), json!(big), json!(big - 9)));
        // 2^53 + 1 rounds to the float 2^53: against 2^53 - 1 it is 2 apart,
        // not 1.
        let near = 9_007_199_254_740_993_i64;
        assert!(!same(
            &abs(1.5),
            json!(near),
            json!(9_007_199_254_740_991.0)
        ));
        assert!(same(&abs(2.0), json!(near), json!(9_007_199_254_740_991.0)));
    }

    #[test]
    fn tolerance_at_overrides_the_global_tolerance_below_its_pointer() {
        let cmp = JsonCompare::new()
            .abs_tolerance(0.25)
            .tolerance_at("/scores", 0.5, 0.0)
            .tolerance_at("/scores/*/exact", 0.0, 0.0);
        let p = json!({"scores": [{"p": 1.0, "exact": 1}], "other": 1.0});
        let s = json!({"scores": [{"p": 1.5, "exact": 1}], "other": 1.25});
        assert!(same(&cmp, p.clone(), s));
        let s = json!({"scores": [{"p": 1.5, "exact": 1.125}], "other": 1.5});
        assert_eq!(
            paths(&cmp.diff_values(&p, &s)),
            ["/other", "/scores/0/exact"]
        );
    }

    #[test]
    fn ignored_fields_are_skipped_even_when_missing_on_one_side() {
        let cmp = JsonCompare::new().ignore("/request_id").ignore("/meta/ts");
        let p = json!({"request_id": "a", "label": "cat", "meta": {"ts": 1, "v": 2}});
        let s = json!({"label": "cat", "meta": {"ts": 9, "v": 2}});
        assert!(same(&cmp, p.clone(), s));
        let s = json!({"request_id": "b", "label": "dog", "meta": {"v": 3}});
        assert_eq!(paths(&cmp.diff_values(&p, &s)), ["/label", "/meta/v"]);
    }

    #[test]
    fn wildcard_ignores_match_every_key_and_index_and_diffs_stay_concrete() {
        let cmp = JsonCompare::new()
            .ignore("/items/*/ts")
            .ignore("/by_id/*/ts");
        let p = json!({
            "items": [{"id": 1, "ts": 10}, {"id": 2, "ts": 11}],
            "by_id": {"a": {"ts": 1, "n": 1}, "b": {"ts": 2, "n": 2}},
        });
        let s = json!({
            "items": [{"id": 1, "ts": 20}, {"id": 3}],
            "by_id": {"a": {"ts": 5, "n": 1}, "b": {"n": 4}},
        });
        let diffs = cmp.diff_values(&p, &s);
        assert_eq!(paths(&diffs), ["/by_id/b/n", "/items/1/id"]);
        assert_eq!(diffs[1].primary, "2");
        assert_eq!(diffs[1].shadow, "3");
    }

    #[test]
    fn index_and_escaped_pointers_name_one_value() {
        let cmp = JsonCompare::new().ignore("/items/0").ignore("/a~1b/~0c");
        let p = json!({"items": [1, 2], "a/b": {"~c": 1, "d": 1}});
        let s = json!({"items": [9, 2], "a/b": {"~c": 2, "d": 1}});
        assert!(same(&cmp, p.clone(), s));
        let s = json!({"items": [9, 3], "a/b": {"~c": 2, "d": 2}});
        assert_eq!(paths(&cmp.diff_values(&p, &s)), ["/a~1b/d", "/items/1"]);
        // "01" is not an index.
        let cmp = JsonCompare::new().ignore("/01");
        assert!(!same(&cmp, json!([0, 1]), json!([0, 2])));
    }

    #[test]
    fn nested_arrays_of_objects_report_full_paths() {
        let cmp = JsonCompare::new();
        let p = json!({"batch": [{"top": [{"label": "cat", "p": 0.9}]}, {"top": []}]});
        let s =
            json!({"batch": [{"top": [{"label": "cat", "p": 0.8}]}, {"top": [{"label": "x"}]}]});
        let diffs = cmp.diff_values(&p, &s);
        assert_eq!(paths(&diffs), ["/batch/0/top/0/p", "/batch/1/top/0"]);
        assert_eq!(diffs[1].primary, MISSING);
        assert_eq!(diffs[1].shadow, r#"{"label":"x"}"#);
    }

    #[test]
    fn missing_keys_and_elements_show_missing() {
        let cmp = JsonCompare::new();
        let diffs = cmp.diff_values(
            &json!({"a": 1, "list": [1]}),
            &json!({"b": [2], "list": [1, 2]}),
        );
        let shown: Vec<String> = diffs.iter().map(ToString::to_string).collect();
        assert_eq!(
            shown,
            [
                "/a: 1 != <missing>",
                "/list/1: <missing> != 2",
                "/b: <missing> != [2]"
            ]
        );
    }

    #[test]
    fn type_mismatches_are_diffs() {
        let cmp = JsonCompare::new().abs_tolerance(10.0);
        for (a, b) in [
            (json!(1), json!("1")),
            (json!(0), json!(null)),
            (json!(false), json!(0)),
            (json!({}), json!([])),
            (json!([1]), json!(1)),
            (json!(""), json!(null)),
        ] {
            let diffs = cmp.diff_values(&json!({"x": a}), &json!({"x": b}));
            assert_eq!(paths(&diffs), ["/x"], "{a} vs {b}");
        }
        let diffs = cmp.diff_values(&json!(1), &json!("1"));
        assert_eq!(
            (diffs[0].path.as_str(), diffs[0].shadow.as_str()),
            ("", r#""1""#)
        );
    }

    #[test]
    fn unordered_arrays_match_permutations() {
        let cmp = JsonCompare::new().unordered_arrays(true);
        assert!(same(&cmp, json!([1, 2, 3, 2]), json!([2, 3, 2, 1.0])));
        assert!(same(
            &cmp,
            json!([{"id": 1, "tags": ["a", "b"]}, {"id": 2, "tags": []}, null]),
            json!([null, {"tags": [], "id": 2}, {"tags": ["b", "a"], "id": 1}]),
        ));
        assert!(same(&cmp, json!([[1, 2], [3]]), json!([[3], [2, 1]])));
        // Ordered comparison tells them apart.
        assert!(!same(&JsonCompare::new(), json!([1, 2]), json!([2, 1])));
    }

    #[test]
    fn unordered_arrays_count_duplicates() {
        let cmp = JsonCompare::new().unordered_arrays(true);
        assert!(!same(&cmp, json!([1, 1, 2]), json!([1, 2, 2])));
        assert!(!same(&cmp, json!([1, 1]), json!([1])));
        assert!(!same(&cmp, json!([]), json!([null])));
        let diffs = cmp.diff_values(&json!([5, 1, 1, 2]), &json!([1, 2, 2, 5]));
        // The second 1 (primary index 2) is left over, against the second 2.
        assert_eq!(diffs.len(), 1);
        assert_eq!(diffs[0].to_string(), "/2: 1 != 2");
        let diffs = cmp.diff_values(&json!([3, 1]), &json!([1]));
        assert_eq!(diffs[0].to_string(), "/0: 3 != <missing>");
        let diffs = cmp.diff_values(&json!([1]), &json!([7, 1]));
        assert_eq!(diffs[0].to_string(), "/0: <missing> != 7");
    }

    #[test]
    fn unordered_arrays_with_tolerance_find_a_pairing_when_one_exists() {
        let cmp = JsonCompare::new().unordered_arrays(true).abs_tolerance(1.0);
        // Pairing 1-1 first would leave 0-2; the only pairing is 0-1, 1-2.
        assert!(same(&cmp, json!([0, 1]), json!([1, 2])));
        assert!(same(&cmp, json!([1, 0]), json!([2, 1])));
        assert!(!same(&cmp, json!([0, 1]), json!([2, 2])));
        // Objects: sorting by canonical form would pair {a:1,b:x} with
        // {a:1,b:y}; only a matching finds the pairing.
        let cmp = JsonCompare::new().unordered_arrays(true).abs_tolerance(0.5);
        let p = json!([{"a": 1, "b": "y"}, {"a": 1.4, "b": "x"}]);
        let s = json!([{"a": 1.4, "b": "y"}, {"a": 1, "b": "x"}]);
        assert!(same(&cmp, p, s));
        let p = json!([{"a": 1, "b": "y"}, {"a": 1.4, "b": "x"}]);
        let s = json!([{"a": 2, "b": "y"}, {"a": 1, "b": "x"}]);
        let diffs = cmp.diff_values(&p, &s);
        assert_eq!(paths(&diffs), ["/0/a"]);
        // Greedy pairing in sorted order would give the first primary element
        // the first shadow element it matches, which the second one needs.
        let p = json!([{"a": 0, "b": 1}, {"a": 1, "b": 0}]);
        let s = json!([{"a": 0.5, "b": 0.5}, {"a": 0.5, "b": 1.5}]);
        assert!(same(&cmp, p, s));
    }

    #[test]
    fn unordered_arrays_address_elements_with_wildcards_only() {
        let cmp = JsonCompare::new()
            .unordered_arrays(true)
            .ignore("/items/*/ts");
        let p = json!({"items": [{"id": 1, "ts": 5}, {"id": 2, "ts": 6}]});
        let s = json!({"items": [{"id": 2, "ts": 9}, {"id": 1}]});
        assert!(same(&cmp, p, s));
        let cmp = JsonCompare::new()
            .unordered_arrays(true)
            .ignore("/items/0/ts");
        assert!(!same(
            &cmp,
            json!({"items": [{"ts": 1}]}),
            json!({"items": [{"ts": 2}]})
        ));
    }

    #[test]
    fn unordered_arrays_past_the_matching_budget_still_match_permutations() {
        let n = 300; // 300 * 300 > MATCHING_BUDGET
        let p: Vec<Value> = (0..n)
            .map(|i| json!({"i": i, "x": i as f64 / 7.0}))
            .collect();
        let mut s: Vec<Value> = (0..n)
            .rev()
            .map(|i| json!({"i": i, "x": i as f64 / 7.0 + 1e-4}))
            .collect();
        let cmp = JsonCompare::new()
            .unordered_arrays(true)
            .abs_tolerance(1e-3);
        assert!(same(&cmp, Value::Array(p.clone()), Value::Array(s.clone())));
        s[7] = json!({"i": -1, "x": 0.0});
        assert!(!same(&cmp, Value::Array(p), Value::Array(s)));
        // Scalars: sorted pairing is exact.
        let p: Vec<Value> = (0..n).map(|i| json!(i as f64)).collect();
        let s: Vec<Value> = (0..n).rev().map(|i| json!(i as f64 + 0.9)).collect();
        let cmp = JsonCompare::new().unordered_arrays(true).abs_tolerance(1.0);
        assert!(same(&cmp, Value::Array(p), Value::Array(s)));
    }

    #[test]
    fn only_compares_the_selected_fields() {
        let cmp = JsonCompare::new().only("/label");
        assert!(same(
            &cmp,
            json!({"label": "cat", "p": 0.9}),
            json!({"label": "cat", "p": 0.1})
        ));
        assert!(
            same(&cmp, json!({"p": 0.9}), json!({"p": 0.1})),
            "missing on both"
        );
        assert!(same(&cmp, json!({"p": 0.9}), json!([1])), "missing on both");
        let diffs = cmp.diff_values(&json!({"label": "cat"}), &json!({"other": 1}));
        assert_eq!(diffs[0].to_string(), r#"/label: "cat" != <missing>"#);
        let diffs = cmp.diff_values(&json!(7), &json!({"label": "dog"}));
        assert_eq!(diffs[0].to_string(), r#"/label: <missing> != "dog""#);
        let diffs = cmp.diff_values(&json!({"label": "cat"}), &json!({"label": "dog"}));
        assert_eq!(paths(&diffs), ["/label"]);
    }

    #[test]
    fn only_is_repeatable_and_takes_wildcards() {
        let cmp = JsonCompare::new()
            .only("/label")
            .only("/top/*/id")
            .ignore("/top/2");
        let p = json!({"label": "a", "top": [{"id": 1, "p": 0.5}, {"id": 2}, {"id": 3}], "x": 1});
        let s = json!({"label": "a", "top": [{"id": 1, "p": 0.7}, {"id": 2, "q": 1}, {"id": 4}], "x": 2});
        assert!(same(&cmp, p.clone(), s));
        let s = json!({"label": "b", "top": [{"id": 1}, {"p": 2}]});
        assert_eq!(paths(&cmp.diff_values(&p, &s)), ["/label", "/top/1/id"]);
        // Everything: the empty pointer names the whole document.
        let all = JsonCompare::new().only("").only("/label");
        assert!(!same(&all, json!({"x": 1}), json!({"x": 2})));
    }

    #[test]
    fn only_with_unordered_arrays_compares_selected_multisets() {
        let cmp = JsonCompare::new()
            .unordered_arrays(true)
            .only("/items/*/label");
        let p = json!({"items": [{"label": "a", "p": 1}, {"label": "b"}, {"p": 3}]});
        let s = json!({"items": [{"label": "b", "p": 2}, {"label": "a"}]});
        assert!(same(&cmp, p.clone(), s));
        let s = json!({"items": [{"label": "b"}, {"label": "b"}]});
        let diffs = cmp.diff_values(&p, &s);
        assert_eq!(diffs[0].to_string(), r#"/items/0/label: "a" != "b""#);
        let diffs = cmp.diff_values(&p, &json!({"items": null}));
        assert_eq!(paths(&diffs), ["/items/0/label", "/items/1/label"]);
    }

    #[test]
    fn the_root_pointer_ignores_everything() {
        let cmp = JsonCompare::new().ignore("");
        assert!(same(&cmp, json!({"a": 1}), json!([2])));
    }

    #[test]
    fn invalid_json_on_one_side_is_one_body_diff() {
        let cmp = JsonCompare::new();
        let ok = Captured::new(StatusCode::OK, r#"{"a": 1}"#);
        let bad = Captured::new(StatusCode::OK, "{\"a\": 1");
        let diffs = verdict(&cmp, ok.clone(), bad.clone());
        assert_eq!(paths(&diffs), ["body"]);
        assert_eq!(diffs[0].primary, r#"{"a": 1}"#);
        assert!(
            diffs[0].shadow.starts_with("<invalid JSON: "),
            "{}",
            diffs[0].shadow
        );
        assert!(
            diffs[0].shadow.ends_with("> {\"a\": 1"),
            "{}",
            diffs[0].shadow
        );
        let diffs = verdict(&cmp, bad, ok);
        assert!(diffs[0].primary.starts_with("<invalid JSON: "));
        // Long bodies are cut.
        let long = Captured::new(StatusCode::OK, "x".repeat(10_000));
        let diffs = verdict(&cmp, Captured::new(StatusCode::OK, "1"), long);
        assert!(diffs[0].shadow.len() <= 200 + '…'.len_utf8());
        assert!(diffs[0].shadow.ends_with('…'));
    }

    #[test]
    fn invalid_json_on_both_sides_compares_bytes() {
        let cmp = JsonCompare::new();
        let a = || Captured::new(StatusCode::OK, "not json");
        assert_eq!(cmp.compare(&a(), &a()), Verdict::Match);
        let empty = || Captured::new(StatusCode::NO_CONTENT, "");
        assert_eq!(cmp.compare(&empty(), &empty()), Verdict::Match);
        let diffs = verdict(&cmp, a(), Captured::new(StatusCode::OK, "not JSON"));
        assert_eq!(diffs, [FieldDiff::new("body", "not json", "not JSON")]);
    }

    #[test]
    fn status_differences_are_reported_with_the_body_diffs() {
        let cmp = JsonCompare::new();
        let p = Captured::new(StatusCode::OK, r#"{"label": "cat"}"#);
        let s = Captured::new(StatusCode::SERVICE_UNAVAILABLE, r#"{"label": "dog"}"#);
        let diffs = verdict(&cmp, p.clone(), s);
        let shown: Vec<String> = diffs.iter().map(ToString::to_string).collect();
        assert_eq!(shown, ["status: 200 != 503", r#"/label: "cat" != "dog""#]);
        let s = Captured::new(StatusCode::NOT_FOUND, r#"{"label":"cat"}"#);
        assert_eq!(paths(&verdict(&cmp, p, s)), ["status"]);
    }

    #[test]
    fn diffs_are_capped_with_a_visible_count() {
        let p: Vec<u32> = (0..100).collect();
        let s: Vec<u32> = (1..101).collect();
        let diffs = JsonCompare::new().diff_values(&json!(p), &json!(s));
        assert_eq!(diffs.len(), 33);
        assert_eq!(diffs[31].path, "/31");
        assert_eq!(
            diffs[32],
            FieldDiff::new("…", "68 more differences", "100 in total")
        );
        let cmp = JsonCompare::new().max_diffs(2);
        let p = Captured::new(StatusCode::OK, r#"[1, 2]"#);
        let s = Captured::new(StatusCode::IM_A_TEAPOT, r#"[3, 4]"#);
        let diffs = verdict(&cmp, p, s);
        assert_eq!(paths(&diffs), ["status", "/0", "…"]);
        assert_eq!(diffs[2].primary, "1 more difference");
        assert_eq!(diffs[2].shadow, "3 in total");
        // Exactly at the cap: no marker.
        let diffs = JsonCompare::new()
            .max_diffs(2)
            .diff_values(&json!([1, 2]), &json!([3, 4]));
        assert_eq!(paths(&diffs), ["/0", "/1"]);
    }

    #[test]
    fn rendered_values_are_compact_and_cut() {
        let cmp = JsonCompare::new();
        let big: Vec<u32> = (0..10_000).collect();
        let diffs = cmp.diff_values(&json!({"a": {"b": [1, "x"]}}), &json!({"a": big}));
        assert_eq!(diffs[0].primary, r#"{"b":[1,"x"]}"#);
        assert!(diffs[0].shadow.starts_with("[0,1,2,"));
        assert!(diffs[0].shadow.ends_with('…'));
        assert!(diffs[0].shadow.len() <= 203);
        let s = "é".repeat(1000);
        let diffs = cmp.diff_values(&json!(s), &json!("e"));
        assert!(diffs[0].primary.starts_with("\"éé"));
        assert!(diffs[0].primary.ends_with('…'));
    }

    #[test]
    fn bad_settings_are_typed_errors() {
        let tol = |setting, value| ConfigError::InvalidTolerance { setting, value };
        let err = |c: JsonCompare| c.build().unwrap_err();
        assert_eq!(
            err(JsonCompare::new().abs_tolerance(-1e-9)),
            tol("abs_tolerance", -1e-9)
        );
        assert_eq!(
            err(JsonCompare::new().rel_tolerance(-1.0)),
            tol("rel_tolerance", -1.0)
        );
        assert_eq!(
            err(JsonCompare::new().rel_tolerance(f64::INFINITY)),
            tol("rel_tolerance", f64::INFINITY)
        );
        assert!(matches!(
            err(JsonCompare::new().abs_tolerance(f64::NAN)),
            ConfigError::InvalidTolerance { setting: "abs_tolerance", value } if value.is_nan()
        ));
        assert_eq!(
            err(JsonCompare::new().tolerance_at("/a", 0.0, -2.0)),
            tol("tolerance_at rel", -2.0)
        );
        for bad in ["label", "a/b", "/a~", "/a~2b", "*"] {
            assert_eq!(
                err(JsonCompare::new().ignore("/ok").only(bad)),
                ConfigError::InvalidPointer {
                    pointer: bad.into()
                },
                "{bad:?}"
            );
        }
        assert_eq!(
            err(JsonCompare::new().tolerance_at("x", 0.1, 0.0).ignore("y")),
            ConfigError::InvalidPointer {
                pointer: "x".into()
            },
            "the first bad pointer"
        );
        assert_eq!(
            err(JsonCompare::new().max_diffs(0)),
            ConfigError::MustBePositive {
                setting: "max_diffs"
            }
        );
        let fine = JsonCompare::new()
            .abs_tolerance(0.0)
            .rel_tolerance(0.0)
            .ignore("")
            .ignore("/")
            .only("/a~0~1/*/0");
        assert!(fine.build().is_ok());
    }

    #[test]
    fn unvalidated_bad_settings_never_panic() {
        let cmp = JsonCompare::new()
            .abs_tolerance(f64::NAN)
            .rel_tolerance(-1.0)
            .ignore("nope")
            .max_diffs(0)
            .unordered_arrays(true);
        assert!(cmp.diff_values(&json!([1]), &json!([1])).is_empty());
        assert_eq!(paths(&cmp.diff_values(&json!([1]), &json!([1.5]))), ["…"]);
    }

    fn nested(depth: usize, leaf: Value) -> Value {
        (0..depth).fold(leaf, |v, i| {
            if i % 2 == 0 {
                json!([v])
            } else {
                json!({"k": v})
            }
        })
    }

    #[test]
    fn every_parseable_depth_is_compared() {
        let deepest = format!("{}1{}", "[".repeat(127), "]".repeat(127));
        let other = format!("{}2{}", "[".repeat(127), "]".repeat(127));
        for cmp in [
            JsonCompare::new(),
            JsonCompare::new().unordered_arrays(true).abs_tolerance(0.5),
        ] {
            let ok = |b: &str| Captured::new(StatusCode::OK, b.to_owned());
            assert!(cmp.compare(&ok(&deepest), &ok(&deepest)).is_match());
            let diffs = verdict(&cmp, ok(&deepest), ok(&other));
            assert_eq!(diffs.len(), 1);
            assert_eq!(diffs[0].path, "/0".repeat(127));
            assert_eq!(
                (diffs[0].primary.as_str(), diffs[0].shadow.as_str()),
                ("1", "2")
            );
        }
    }

    #[test]
    fn deeper_values_give_a_diff_instead_of_overflowing() {
        let deep = nested(400, json!(1));
        for cmp in [
            JsonCompare::new(),
            JsonCompare::new()
                .unordered_arrays(true)
                .abs_tolerance(0.5)
                .only("/*"),
        ] {
            let diffs = cmp.diff_values(&deep, &deep);
            assert_eq!(diffs.len(), 1, "{diffs:?}");
            assert_eq!(diffs[0].primary, TOO_DEEP);
        }
        // Mismatches above the limit are still found.
        let diffs = JsonCompare::new().diff_values(&json!([deep.clone(), 1]), &json!([deep, 2]));
        assert_eq!(paths(&diffs)[1], "/1");
    }

    #[test]
    fn numbers_order_exactly_across_ints_and_floats() {
        let n = |v: Value| match v {
            Value::Number(n) => Num::of(&n),
            _ => unreachable!(),
        };
        let ordered = [
            json!(-1e300),
            json!(i64::MIN),
            json!(-1.5),
            json!(-1),
            json!(0),
            json!(0.5),
            json!(1),
            json!(9_007_199_254_740_992_i64),
            json!(9_007_199_254_740_993_i64),
            json!(u64::MAX),
            json!(1e300),
        ];
        for (i, a) in ordered.iter().enumerate() {
            for (j, b) in ordered.iter().enumerate() {
                assert_eq!(n(a.clone()).cmp(&n(b.clone())), i.cmp(&j), "{a} vs {b}");
            }
        }
    }
}
