//! Invariants of `JsonCompare` over arbitrary documents and settings: no
//! panic, a document always matches itself (and its pretty-printed form),
//! the verdict is symmetric, independent of array order with
//! `unordered_arrays`, consistent with `diff_values`, and the diff count is
//! capped.
//!
//! Shared by the `json_compare` fuzz target and `tests/fuzz_regressions.rs`.

use http::StatusCode;
use serde_json::Value;
use tower_rollout::shadow::{Captured, Compare, FieldDiff, JsonCompare, Verdict};

/// A response body: raw bytes, or a JSON value serialized compactly or
/// pretty-printed.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Doc {
    Raw(Vec<u8>),
    Json { value: Value, pretty: bool },
}

#[derive(Debug, Clone, Default)]
pub(crate) struct Settings {
    pub(crate) abs: f64,
    pub(crate) rel: f64,
    pub(crate) unordered: bool,
    pub(crate) ignore: Vec<String>,
    pub(crate) only: Vec<String>,
    pub(crate) tolerance_at: Vec<(String, f64, f64)>,
    pub(crate) max_diffs: usize,
}

#[derive(Debug, Clone)]
pub(crate) struct Input {
    pub(crate) settings: Settings,
    pub(crate) primary: Doc,
    pub(crate) shadow: Doc,
    /// The shadow's status differs from the primary's.
    pub(crate) other_status: bool,
    /// Nesting levels wrapped around the primary for `diff_values`.
    pub(crate) deep: u16,
}

impl Doc {
    pub(crate) fn bytes(&self) -> Vec<u8> {
        match self {
            Doc::Raw(b) => b.clone(),
            Doc::Json {
                value,
                pretty: false,
            } => serde_json::to_vec(value).unwrap(),
            Doc::Json {
                value,
                pretty: true,
            } => serde_json::to_vec_pretty(value).unwrap(),
        }
    }
}

impl Settings {
    fn json(&self) -> JsonCompare {
        let mut c = JsonCompare::new()
            .abs_tolerance(self.abs)
            .rel_tolerance(self.rel)
            .unordered_arrays(self.unordered)
            .max_diffs(self.max_diffs);
        for p in &self.ignore {
            c = c.ignore(p);
        }
        for p in &self.only {
            c = c.only(p);
        }
        for (p, abs, rel) in &self.tolerance_at {
            c = c.tolerance_at(p, *abs, *rel);
        }
        c
    }
}

/// Every array reversed, recursively.
pub(crate) fn reverse_arrays(v: &Value) -> Value {
    match v {
        Value::Array(items) => Value::Array(items.iter().rev().map(reverse_arrays).collect()),
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| (k.clone(), reverse_arrays(v)))
                .collect(),
        ),
        other => other.clone(),
    }
}

/// `value` inside `levels` arrays and objects, alternating.
fn nest(value: &Value, levels: u16) -> Value {
    let mut v = value.clone();
    for i in 0..levels {
        v = if i % 2 == 0 {
            Value::Array(vec![v])
        } else {
            let mut m = serde_json::Map::new();
            m.insert("k".into(), v);
            Value::Object(m)
        };
    }
    v
}

fn depth(v: &Value) -> usize {
    match v {
        Value::Array(items) => 1 + items.iter().map(depth).max().unwrap_or(0),
        Value::Object(map) => 1 + map.values().map(depth).max().unwrap_or(0),
        _ => 0,
    }
}

fn diffs(v: Verdict) -> Vec<FieldDiff> {
    match v {
        Verdict::Match => Vec::new(),
        Verdict::Mismatch(d) => {
            assert!(!d.is_empty(), "a mismatch names a difference");
            d
        }
    }
}

fn check_capped(d: &[FieldDiff], max: usize) {
    assert!(d.len() <= max.max(1) + 1, "{} diffs, max {max}", d.len());
    for (i, diff) in d.iter().enumerate() {
        if diff.path == "…" {
            assert_eq!(i, d.len() - 1, "the summary diff comes last");
        } else {
            assert!(
                diff.path.is_empty()
                    || diff.path.starts_with('/')
                    || diff.path == "status"
                    || diff.path == "body",
                "path {:?}",
                diff.path
            );
        }
    }
}

/// Runs the invariants; panics on a violation. Returns whether the primary
/// and the shadow documents matched.
pub(crate) fn check(input: &Input) -> bool {
    let json = input.settings.json();
    let max = input.settings.max_diffs;
    // Unvalidated settings are usable as they are; validated ones as a
    // `Comparator`. Both must behave.
    let built = json.clone().build();
    let valid_tolerances = [input.settings.abs, input.settings.rel]
        .into_iter()
        .chain(input.settings.tolerance_at.iter().flat_map(|t| [t.1, t.2]))
        .all(|t| t.is_finite() && t >= 0.0);
    if valid_tolerances && max > 0 {
        let pointers_ok = input
            .settings
            .ignore
            .iter()
            .chain(&input.settings.only)
            .chain(input.settings.tolerance_at.iter().map(|t| &t.0))
            .all(|p| pointer_is_valid(p));
        assert_eq!(built.is_ok(), pointers_ok, "{:?}", built.err());
    } else {
        assert!(built.is_err(), "invalid settings accepted");
    }
    let cmps: Vec<&dyn Compare> = match &built {
        Ok(c) => vec![&json, c],
        Err(_) => vec![&json],
    };

    let status = StatusCode::OK;
    let shadow_status = if input.other_status {
        StatusCode::INTERNAL_SERVER_ERROR
    } else {
        status
    };
    let p = Captured::new(status, input.primary.bytes());
    let s = Captured::new(shadow_status, input.shadow.bytes());
    let matched = cmps[0].compare(&p, &s).is_match();
    for cmp in &cmps {
        // A document matches itself.
        let same = diffs(cmp.compare(&p, &p));
        assert!(same.is_empty(), "self-comparison: {same:?}");
        let same = diffs(cmp.compare(&s, &s));
        assert!(same.is_empty(), "self-comparison: {same:?}");

        let forward = diffs(cmp.compare(&p, &s));
        let backward = diffs(cmp.compare(&s, &p));
        check_capped(&forward, max);
        check_capped(&backward, max);
        assert_eq!(
            forward.is_empty(),
            backward.is_empty(),
            "symmetric verdict: {forward:?} / {backward:?}"
        );
        if input.other_status {
            // The status diff comes first, unless the cap leaves room for
            // none (unvalidated `max_diffs(0)`: only the summary diff).
            let first = forward.first().map(|d| d.path.as_str());
            let expect = if max == 0 { "…" } else { "status" };
            assert_eq!(first, Some(expect), "{forward:?}");
        }
    }

    // Formatting does not matter: compact and pretty forms match.
    if let Doc::Json { value, pretty } = &input.primary {
        let other = Doc::Json {
            value: value.clone(),
            pretty: !pretty,
        };
        let o = Captured::new(status, other.bytes());
        for cmp in &cmps {
            let d = diffs(cmp.compare(&p, &o));
            assert!(d.is_empty(), "compact vs pretty: {d:?}");
        }
    }

    // The bytes and the values agree.
    let parse = |b: &[u8]| serde_json::from_slice::<Value>(b).ok();
    if let (Some(pv), Some(sv)) = (parse(&p.body), parse(&s.body)) {
        let values = json.diff_values(&pv, &sv);
        check_capped(&values, max);
        let same_status = Captured::new(status, s.body.clone());
        let bytes = diffs(json.compare(&p, &same_status));
        assert_eq!(
            values.is_empty(),
            bytes.is_empty(),
            "diff_values {values:?} vs compare {bytes:?}"
        );
        assert!(json.diff_values(&pv, &pv).is_empty());

        // With unordered arrays, the order of elements never matters.
        if input.settings.unordered {
            let reversed = reverse_arrays(&sv);
            assert!(json.diff_values(&sv, &reversed).is_empty(), "reversed self");
            let r = json.diff_values(&pv, &reversed);
            assert_eq!(
                values.is_empty(),
                r.is_empty(),
                "order changed the verdict: {values:?} / {r:?}"
            );
        }

        // Deep nesting: never a stack overflow; within the depth limit a
        // value still matches itself.
        if input.deep > 0 {
            let deep = nest(&pv, input.deep);
            let d = json.diff_values(&deep, &deep);
            check_capped(&d, max);
            if depth(&deep) <= 120 {
                assert!(d.is_empty(), "nested self-comparison: {d:?}");
            }
            check_capped(&json.diff_values(&deep, &sv), max);
            check_capped(&json.diff_values(&sv, &deep), max);
            let bytes = serde_json::to_vec(&deep).unwrap();
            let c = Captured::new(status, bytes);
            for cmp in &cmps {
                assert!(diffs(cmp.compare(&c, &c)).is_empty(), "deep bytes");
                check_capped(&diffs(cmp.compare(&c, &p)), max);
            }
        }
    }
    matched
}

/// The documented pointer syntax: empty, or `/` then segments in which `~`
/// is followed by `0` or `1`.
fn pointer_is_valid(p: &str) -> bool {
    if p.is_empty() {
        return true;
    }
    if !p.starts_with('/') {
        return false;
    }
    let b = p.as_bytes();
    b.iter()
        .enumerate()
        .all(|(i, &c)| c != b'~' || matches!(b.get(i + 1), Some(b'0' | b'1')))
}
