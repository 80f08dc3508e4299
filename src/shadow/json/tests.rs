//! Unit tests of the JSON comparison.

use http::StatusCode;
use serde_json::json;

use super::number::Num;
use super::*;
use crate::shadow::DiffKind;
use crate::ConfigError;

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
    let s = json!({"batch": [{"top": [{"label": "cat", "p": 0.8}]}, {"top": [{"label": "x"}]}]});
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
    let s =
        json!({"label": "a", "top": [{"id": 1, "p": 0.7}, {"id": 2, "q": 1}, {"id": 4}], "x": 2});
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

fn kinds(diffs: &[FieldDiff]) -> Vec<(&str, DiffKind, &str)> {
    diffs
        .iter()
        .map(|d| (d.path.as_str(), d.kind, d.pattern.as_str()))
        .collect()
}

#[test]
fn structure_changes_are_kinds_of_their_own_with_indices_folded() {
    let cmp = JsonCompare::new();
    let p = json!({"predictions": [{"label": "cat", "score": 1}, {"label": "dog", "score": 2}]});
    // A renamed field in every element, a type change, a value change.
    let s = json!({"predictions": [{"class": "cat", "score": "1"}, {"class": "dog", "score": 3}]});
    let diffs = cmp.diff_values(&p, &s);
    let mut got = kinds(&diffs);
    got.sort();
    assert_eq!(
        got,
        [
            (
                "/predictions/0/class",
                DiffKind::OnlyShadow,
                "/predictions/*/class"
            ),
            (
                "/predictions/0/label",
                DiffKind::OnlyPrimary,
                "/predictions/*/label"
            ),
            (
                "/predictions/0/score",
                DiffKind::Type,
                "/predictions/*/score"
            ),
            (
                "/predictions/1/class",
                DiffKind::OnlyShadow,
                "/predictions/*/class"
            ),
            (
                "/predictions/1/label",
                DiffKind::OnlyPrimary,
                "/predictions/*/label"
            ),
            (
                "/predictions/1/score",
                DiffKind::Value,
                "/predictions/*/score"
            ),
        ]
    );
}

#[test]
fn an_array_length_change_is_counted_at_the_array() {
    let cmp = JsonCompare::new();
    let p = json!({"probabilities": [0.5, 0.5], "top": [[1, 2], [3]]});
    let s = json!({"probabilities": [0.5, 0.25, 0.25], "top": [[1, 2], [3, 4]]});
    let diffs = cmp.diff_values(&p, &s);
    let mut got = kinds(&diffs);
    got.sort();
    assert_eq!(
        got,
        [
            ("/probabilities/1", DiffKind::Value, "/probabilities/*"),
            ("/probabilities/2", DiffKind::Length, "/probabilities"),
            ("/top/1/1", DiffKind::Length, "/top/*"),
        ]
    );
    // Unordered: the surplus element is a length change too.
    let bag = JsonCompare::new().unordered_arrays(true);
    let got = bag.diff_values(&json!({"tags": ["a"]}), &json!({"tags": ["a", "b"]}));
    assert_eq!(kinds(&got), [("/tags/1", DiffKind::Length, "/tags")]);
}

#[test]
fn keys_made_of_digits_are_not_folded_and_the_root_is_no_array() {
    let cmp = JsonCompare::new();
    let got = cmp.diff_values(&json!({"2024": {"n": 1}}), &json!({"2024": {}}));
    assert_eq!(kinds(&got), [("/2024/n", DiffKind::OnlyPrimary, "/2024/n")]);
    let got = cmp.diff_values(&json!(1), &json!("1"));
    assert_eq!(kinds(&got), [("", DiffKind::Type, "")]);
    let got = cmp.diff_values(&json!({"a/b": [{"~": 1}]}), &json!({"a/b": [{}]}));
    assert_eq!(
        kinds(&got),
        [("/a~1b/0/~0", DiffKind::OnlyPrimary, "/a~1b/*/~0")]
    );
}
