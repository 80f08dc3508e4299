//! Properties of `JsonCompare` over arbitrary JSON values and settings:
//! every value matches itself; the verdict does not depend on which side is
//! the primary; with unordered arrays, shuffling arrays at any depth changes
//! nothing, and with tolerances two arrays match exactly when some ordering
//! of one matches the other; numbers moved by less than the tolerance still
//! match.
//!
//! Cases: `ROLLOUT_PROPTEST_CASES` (default 256). A deep run:
//! `ROLLOUT_PROPTEST_CASES=10000 cargo test --release --test json_compare`.
#![cfg(feature = "json")]

use http::StatusCode;
use proptest::prelude::*;
use serde_json::{json, Map, Value};
use tower_rollout::shadow::{Captured, Compare, JsonCompare};

fn cases() -> u32 {
    std::env::var("ROLLOUT_PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256)
}

/// Finite floats: small, integral (so that `1` meets `1.0`), and anywhere
/// in the finite range.
fn float() -> impl Strategy<Value = f64> {
    prop_oneof![
        -1e3..1e3f64,
        (-5i32..5).prop_map(f64::from),
        any::<f64>().prop_filter("finite", |f| f.is_finite() && f.abs() < 1e300),
    ]
}

/// Any JSON value: nesting at most 4 deep, about 64 nodes. Keys come from a
/// small alphabet so that objects share keys and pointers hit them.
fn value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|i| json!(i)),
        (-3i64..3).prop_map(|i| json!(i)),
        float().prop_map(|f| json!(f)),
        "[ab]{0,2}".prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 64, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map("[abc]{1,2}", inner, 0..5)
                .prop_map(|m| Value::Object(m.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

/// A pointer over the keys `value()` makes: keys, small indices and `*`.
fn pointer() -> impl Strategy<Value = String> {
    let seg = prop_oneof![
        "[abc]{1,2}",
        Just("*".to_owned()),
        Just("0".to_owned()),
        Just("1".to_owned())
    ];
    prop::collection::vec(seg, 0..4).prop_map(|segs| segs.iter().map(|s| format!("/{s}")).collect())
}

/// Settings other than tolerances.
#[derive(Debug, Clone)]
struct Shape {
    unordered: bool,
    ignore: Vec<String>,
    only: Vec<String>,
}

fn shape() -> impl Strategy<Value = Shape> {
    (
        any::<bool>(),
        prop::collection::vec(pointer(), 0..3),
        prop::collection::vec(pointer(), 0..3),
    )
        .prop_map(|(unordered, ignore, only)| Shape {
            unordered,
            ignore,
            only,
        })
}

/// Tolerances: (abs, rel), zero meaning exact.
fn tolerances() -> impl Strategy<Value = (f64, f64)> {
    let t = prop_oneof![Just(0.0), Just(1e-3), Just(0.5), Just(10.0)];
    let r = prop_oneof![Just(0.0), Just(1e-6), Just(0.1), Just(0.5)];
    (t, r)
}

fn with(shape: &Shape, (abs, rel): (f64, f64)) -> JsonCompare {
    let mut cmp = JsonCompare::new()
        .abs_tolerance(abs)
        .rel_tolerance(rel)
        .unordered_arrays(shape.unordered);
    for p in &shape.ignore {
        cmp = cmp.ignore(p);
    }
    for p in &shape.only {
        cmp = cmp.only(p);
    }
    cmp.clone().build().expect("generated settings are valid");
    cmp
}

fn matches(cmp: &JsonCompare, a: &Value, b: &Value) -> bool {
    cmp.diff_values(a, b).is_empty()
}

/// `v` with every number replaced by `f(number)`, in document order (kept
/// as it was when `f` does not change it, so large integers stay exact).
fn map_numbers(v: &Value, f: &mut impl FnMut(f64) -> f64) -> Value {
    match v {
        Value::Number(n) => {
            let x = n.as_f64().unwrap();
            let y = f(x);
            if y == x {
                v.clone()
            } else {
                json!(y)
            }
        }
        Value::Array(a) => Value::Array(a.iter().map(|e| map_numbers(e, f)).collect()),
        Value::Object(m) => Value::Object(
            m.iter()
                .map(|(k, e)| (k.clone(), map_numbers(e, f)))
                .collect(),
        ),
        other => other.clone(),
    }
}

/// `v` with every array (at any depth) permuted, driven by `seeds`.
fn shuffle(v: &Value, seeds: &[u64], next: &mut usize) -> Value {
    match v {
        Value::Array(a) => {
            let mut items: Vec<Value> = a.iter().map(|e| shuffle(e, seeds, next)).collect();
            for i in (1..items.len()).rev() {
                *next += 1;
                let j = (seeds[*next % seeds.len()] % (i as u64 + 1)) as usize;
                items.swap(i, j);
            }
            Value::Array(items)
        }
        Value::Object(m) => Value::Object(
            m.iter()
                .map(|(k, e)| (k.clone(), shuffle(e, seeds, next)))
                .collect(),
        ),
        other => other.clone(),
    }
}

/// Every ordering of `items`.
fn permutations(items: &[Value]) -> Vec<Vec<Value>> {
    if items.is_empty() {
        return vec![Vec::new()];
    }
    let mut out = Vec::new();
    for i in 0..items.len() {
        let mut rest = items.to_vec();
        let first = rest.remove(i);
        for mut tail in permutations(&rest) {
            tail.insert(0, first.clone());
            out.push(tail);
        }
    }
    out
}

/// Small records whose fields are close enough that "within tolerance"
/// pairs elements in tangled ways.
fn record() -> impl Strategy<Value = Value> {
    let n = prop_oneof![Just(0.0), Just(0.5), Just(1.0), Just(1.5), Just(2.0)];
    (n.clone(), n, prop::option::of("[xy]")).prop_map(|(a, b, tag)| match tag {
        Some(tag) => json!({"a": a, "b": b, "tag": tag}),
        None => json!({"a": a, "b": b}),
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases()))]

    #[test]
    fn every_value_matches_itself(v in value(), shape in shape(), tol in tolerances()) {
        let cmp = with(&shape, tol);
        prop_assert_eq!(cmp.diff_values(&v, &v), vec![]);
        let body = Captured::new(StatusCode::OK, serde_json::to_vec(&v).unwrap());
        prop_assert!(cmp.compare(&body, &body).is_match());
    }

    #[test]
    fn the_verdict_does_not_depend_on_which_side_is_primary(
        a in value(),
        b in value(),
        noise in prop::collection::vec(-2.0..2.0f64, 1..16),
        shape in shape(),
        tol in tolerances(),
    ) {
        let cmp = with(&shape, tol);
        prop_assert_eq!(matches(&cmp, &a, &b), matches(&cmp, &b, &a));
        // Near misses and near matches: `a` with its numbers moved up to
        // twice the tolerance.
        let (abs, rel) = tol;
        let mut k = 0;
        let near = map_numbers(&a, &mut |x| {
            k += 1;
            let e = noise[k % noise.len()];
            x + e * abs + x * e * rel
        });
        prop_assert_eq!(matches(&cmp, &a, &near), matches(&cmp, &near, &a));
    }

    #[test]
    fn unordered_arrays_ignore_element_order(
        v in value(),
        seeds in prop::collection::vec(any::<u64>(), 1..16),
        noise in prop::collection::vec(-2.0..2.0f64, 1..16),
        shape in shape(),
        tol in tolerances(),
    ) {
        let shape = Shape { unordered: true, ..shape };
        let cmp = with(&shape, tol);
        let shuffled = shuffle(&v, &seeds, &mut 0);
        prop_assert_eq!(cmp.diff_values(&v, &shuffled), vec![]);
        // And against another value, the verdict survives shuffling both.
        let (abs, rel) = tol;
        let mut k = 0;
        let near = map_numbers(&v, &mut |x| {
            k += 1;
            let e = noise[k % noise.len()];
            x + e * abs + x * e * rel
        });
        let near_shuffled = shuffle(&near, &seeds, &mut 7);
        prop_assert_eq!(
            matches(&cmp, &v, &near),
            matches(&cmp, &shuffled, &near_shuffled),
            "{} vs {}", v, near
        );
    }

    #[test]
    fn numbers_moved_within_tolerance_still_match(
        v in value(),
        noise in prop::collection::vec(-0.9..0.9f64, 1..16),
        shape in shape(),
        tol in tolerances(),
    ) {
        let cmp = with(&shape, tol);
        let (abs, rel) = tol;
        let mut k = 0;
        let moved_abs = map_numbers(&v, &mut |x| {
            k += 1;
            // Beyond 2^52 the float sum itself rounds by up to half an ulp
            // (8 at 2^56), more than the tolerance: such a number cannot be
            // moved "within tolerance" in f64, so it is left as it is.
            if x.abs() >= 4_503_599_627_370_496.0 {
                return x;
            }
            x + noise[k % noise.len()] * abs
        });
        prop_assert_eq!(cmp.diff_values(&v, &moved_abs), vec![]);
        let moved_rel = map_numbers(&v, &mut |x| {
            k += 1;
            x + x * noise[k % noise.len()] * rel
        });
        prop_assert_eq!(cmp.diff_values(&v, &moved_rel), vec![]);
    }

    #[test]
    fn any_two_values_give_a_bounded_report(
        a in value(),
        b in value(),
        max in 1usize..8,
        shape in shape(),
        tol in tolerances(),
    ) {
        let cmp = with(&shape, tol).max_diffs(max);
        let diffs = cmp.diff_values(&a, &b);
        prop_assert!(diffs.len() <= max + 1);
        for d in &diffs {
            prop_assert!(d.path.is_empty() || d.path.starts_with('/') || d.path == "…");
            prop_assert!(!d.path.contains("/*"), "concrete paths: {}", d.path);
        }
    }

    #[test]
    fn tolerant_unordered_arrays_match_when_some_ordering_does(
        p in prop::collection::vec(record(), 0..6),
        shifts in prop::collection::vec(-2i8..=2, 12),
        seeds in prop::collection::vec(any::<u64>(), 1..8),
        drop_one in any::<bool>(),
        abs in prop_oneof![Just(0.5), Just(1.0)],
    ) {
        // The shadow: the primary with numbers moved by multiples of 0.5,
        // shuffled, sometimes one element short.
        let mut k = 0;
        let moved = map_numbers(&Value::Array(p.clone()), &mut |x| {
            k += 1;
            x + f64::from(shifts[k % shifts.len()]) * 0.5
        });
        let Value::Array(mut s) = shuffle(&moved, &seeds, &mut 0) else { unreachable!() };
        if drop_one {
            s.pop();
        }
        let ordered = JsonCompare::new().abs_tolerance(abs);
        let unordered = ordered.clone().unordered_arrays(true);
        let oracle = p.len() == s.len()
            && permutations(&s)
                .iter()
                .any(|s| matches(&ordered, &Value::Array(p.clone()), &Value::Array(s.clone())));
        let (p, s) = (Value::Array(p), Value::Array(s));
        prop_assert_eq!(matches(&unordered, &p, &s), oracle);
        prop_assert_eq!(matches(&unordered, &s, &p), oracle);
    }
}
