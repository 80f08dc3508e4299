//! Drift between two synthetic versions whose outputs are shifted by a known
//! amount: the statistics equal scipy's figures for the same samples
//! (`tests/data/drift_reference.json`), and bad input is counted per field and
//! never folded in. Memory: `tests/drift_memory.rs`.
#![cfg(feature = "drift")]

use serde_json::{json, Value};
use tower_rollout::drift::{Drift, DriftField, DriftSettings, FieldKind};

fn reference(kind: &str, name: &str) -> Value {
    let all: Value = serde_json::from_str(include_str!("data/drift_reference.json")).unwrap();
    all[kind]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no reference case {name:?}"))
        .clone()
}

fn body(v: Value) -> Vec<u8> {
    serde_json::to_vec(&v).unwrap()
}

/// `counts[i]` answers of category `names[i]`, in a fixed interleaved order.
fn labels(names: &[&str], counts: &[u64]) -> Vec<String> {
    let mut left = counts.to_vec();
    let mut out = Vec::new();
    while left.iter().any(|&n| n > 0) {
        for (i, n) in left.iter_mut().enumerate() {
            if *n > 0 {
                *n -= 1;
                out.push(names[i].to_owned());
            }
        }
    }
    out
}

#[track_caller]
fn close(ours: Option<f64>, theirs: &Value) {
    let (ours, theirs) = (ours.expect("a statistic"), theirs.as_f64().unwrap());
    assert!((ours - theirs).abs() <= 1e-9, "{ours} vs scipy's {theirs}");
}

#[test]
fn a_known_label_shift_gives_scipys_figures() {
    let case = reference("categorical", "shifted");
    let (e, a): (Vec<u64>, Vec<u64>) = (
        serde_json::from_value(case["expected"].clone()).unwrap(),
        serde_json::from_value(case["actual"].clone()).unwrap(),
    );
    let names = ["setosa", "versicolor", "virginica"];
    let settings = DriftSettings::new([DriftField::categorical("/label").unwrap()]);
    let mut drift = Drift::new(&settings);
    for (p, s) in labels(&names, &e).iter().zip(labels(&names, &a)) {
        drift.observe(&body(json!({ "label": p })), &body(json!({ "label": s })));
    }
    let d = &drift.report()[0];
    assert_eq!(
        (d.kind, d.primary_n, d.shadow_n),
        (FieldKind::Categorical, 100, 100)
    );
    close(d.psi, &case["psi"]);
    close(d.jensen_shannon, &case["jensen_shannon"]);
    close(
        d.chi_square.map(|c| c.statistic),
        &case["chi_square"]["statistic"],
    );
    close(
        d.chi_square.map(|c| c.p_value),
        &case["chi_square"]["p_value"],
    );
    let counts: Vec<_> = d
        .categories
        .iter()
        .map(|c| (c.name.as_str(), c.primary, c.shadow))
        .collect();
    assert_eq!(
        counts,
        [
            ("setosa", 50, 40),
            ("versicolor", 30, 30),
            ("virginica", 20, 30)
        ]
    );
}

#[test]
fn a_known_score_shift_gives_scipys_figures_and_missing_fields_are_counted() {
    let case = reference("numeric", "normal 60 vs 70, shifted by 0.5 (exact)");
    let (e, a): (Vec<f64>, Vec<f64>) = (
        serde_json::from_value(case["expected"].clone()).unwrap(),
        serde_json::from_value(case["actual"].clone()).unwrap(),
    );
    let settings = DriftSettings::new([DriftField::numeric("/predictions/*/score").unwrap()]);
    let mut drift = Drift::new(&settings);
    // 70 requests: the primary answered 60 of them with a score, the other
    // 10 without the field.
    for (i, shadow) in a.iter().enumerate() {
        let p = match e.get(i) {
            Some(x) => json!({ "predictions": [{ "score": x }] }),
            None => json!({ "predictions": [{ "label": "x" }] }),
        };
        drift.observe(
            &body(p),
            &body(json!({ "predictions": [{ "score": shadow }] })),
        );
    }
    let d = &drift.report()[0];
    assert_eq!((d.primary_n, d.shadow_n), (60, 70));
    assert_eq!(d.problems.missing_primary, 10);
    close(d.ks.map(|k| k.statistic), &case["ks"]["statistic"]);
    close(d.ks.map(|k| k.p_value), &case["ks"]["p_value"]);
    close(d.wasserstein, &case["wasserstein"]);
}

#[test]
fn bad_input_is_counted_per_field_never_folded_in() {
    let settings = DriftSettings::new([
        DriftField::categorical("/label").unwrap(),
        DriftField::numeric("/p").unwrap(),
    ]);
    let mut drift = Drift::new(&settings);
    let good = body(json!({ "label": "a", "p": 0.5 }));
    drift.observe(&good, &body(json!({ "label": 1.5, "p": "high" }))); // wrong types
    drift.observe(&good, b"not json");
    drift.observe(&good, &body(json!({ "other": true }))); // both fields missing
    drift.observe(&good, &body(json!({ "label": { "nested": 1 }, "p": [1] })));
    drift.observe(&good, &body(json!({ "p": 1e308 * 10.0 }))); // serde_json writes null
    let r = drift.report();
    let (label, p) = (&r[0], &r[1]);
    assert_eq!(
        (label.primary_n, label.shadow_n),
        (5, 0),
        "nothing folded in"
    );
    assert_eq!((p.primary_n, p.shadow_n), (5, 0));
    assert_eq!(label.problems.wrong_type, 2);
    assert_eq!(label.problems.not_json, 1);
    assert_eq!(label.problems.missing_shadow, 2);
    assert_eq!(p.problems.wrong_type, 3, "a string, an array, a null");
    assert_eq!(p.problems.missing_shadow, 1);
    assert_eq!(label.psi, None, "no statistic without a shadow sample");
    assert_eq!(p.ks, None);
    assert!(DriftField::numeric("p").is_err(), "not a pointer");
    assert!(DriftField::numeric("/a~2").is_err(), "bad escape");
    assert!(DriftSettings::new([]).sample(0).is_err());
}
