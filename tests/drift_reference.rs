//! The drift statistics for fixed samples equal scipy's within 1e-9. The
//! reference figures come from `scripts/drift_reference.py` (scipy and
//! numpy), committed as `tests/data/drift_reference.json`.
#![cfg(feature = "drift")]

use serde_json::Value;
use tower_rollout::drift::stats;

const TOLERANCE: f64 = 1e-9;

fn reference() -> Value {
    serde_json::from_str(include_str!("data/drift_reference.json")).unwrap()
}

fn counts(v: &Value) -> Vec<u64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap())
        .collect()
}

fn sample(v: &Value) -> Vec<f64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect()
}

#[track_caller]
fn close(name: &str, what: &str, ours: f64, theirs: &Value) {
    let theirs = theirs.as_f64().unwrap();
    assert!(
        (ours - theirs).abs() <= TOLERANCE,
        "{name}: {what} is {ours}, scipy says {theirs}"
    );
}

#[test]
fn categorical_statistics_equal_scipy() {
    let r = reference();
    assert_eq!(r["psi_smoothing"].as_f64().unwrap(), stats::PSI_SMOOTHING);
    let cases = r["categorical"].as_array().unwrap();
    assert!(cases.len() >= 5);
    for c in cases {
        let name = c["name"].as_str().unwrap();
        let (e, a) = (counts(&c["expected"]), counts(&c["actual"]));
        close(name, "PSI", stats::psi(&e, &a).unwrap(), &c["psi"]);
        close(
            name,
            "JS distance",
            stats::jensen_shannon(&e, &a).unwrap(),
            &c["jensen_shannon"],
        );
        let chi = stats::chi_square(&e, &a).unwrap();
        close(
            name,
            "chi-square",
            chi.statistic,
            &c["chi_square"]["statistic"],
        );
        close(
            name,
            "chi-square p",
            chi.p_value,
            &c["chi_square"]["p_value"],
        );
        assert_eq!(
            chi.dof as u64,
            c["chi_square"]["dof"].as_u64().unwrap(),
            "{name}"
        );
    }
}

#[test]
fn numeric_statistics_equal_scipy() {
    let r = reference();
    let cases = r["numeric"].as_array().unwrap();
    let mut exact = 0;
    for c in cases {
        let name = c["name"].as_str().unwrap();
        let (e, a) = (sample(&c["expected"]), sample(&c["actual"]));
        let ks = stats::kolmogorov_smirnov(&e, &a).unwrap();
        close(name, "KS statistic", ks.statistic, &c["ks"]["statistic"]);
        close(name, "KS p-value", ks.p_value, &c["ks"]["p_value"]);
        assert_eq!(ks.exact, c["ks"]["exact"].as_bool().unwrap(), "{name}");
        exact += usize::from(ks.exact);
        close(
            name,
            "Wasserstein",
            stats::wasserstein(&e, &a).unwrap(),
            &c["wasserstein"],
        );
    }
    assert!(
        exact > 0 && exact < cases.len(),
        "both p-value methods checked"
    );
}

#[test]
fn empty_or_degenerate_samples_have_no_statistic() {
    assert_eq!(stats::psi(&[0, 0], &[1, 2]), None);
    assert_eq!(stats::jensen_shannon(&[3, 1], &[0, 0]), None);
    assert_eq!(stats::chi_square(&[5, 0], &[7, 0]), None, "one category");
    assert_eq!(stats::kolmogorov_smirnov(&[], &[1.0]), None);
    assert_eq!(stats::kolmogorov_smirnov(&[f64::NAN], &[1.0]), None);
    assert_eq!(stats::wasserstein(&[1.0, f64::INFINITY], &[1.0]), None);
}
