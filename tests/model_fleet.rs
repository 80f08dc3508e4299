//! The README's first command, `cargo run --example model_fleet`, run as a
//! test: the example's walkthrough (v1, v2, then v3 deployed at run time)
//! against its own server on 127.0.0.1:0, with its summary checked against
//! the models themselves.

#[allow(dead_code)]
#[path = "../examples/model_fleet.rs"]
mod demo;

use demo::{parse_args, run_plan, run_walkthrough, Candidate, Mode, Options};
use tower_rollout::plan::{AbortReason, PlanOutcome};
use tower_rollout::Color;
use tower_rollout_models::{samples, Model, Version};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn walkthrough_rolls_v1_v2_v3_through_one_process() {
    let opts = Options::default();
    let mut out = Vec::new();
    let summary = run_walkthrough(&opts, &mut out).await.unwrap();
    let printed = String::from_utf8(out).unwrap();

    // Every request answered, each by the model of the version that served it.
    assert_eq!(summary.failed, 0, "{:?}", summary.errors);
    assert_eq!(summary.wrong_answers, 0);
    let canary_requests = 2 * 2 * opts.users as u64;
    assert_eq!(
        summary.requests,
        (opts.live + 2 * opts.mirrored + 3 * opts.after) as u64 + canary_requests + 1
    );

    // 1-2. Only v1 answers users, even while v2 gets every request.
    assert_eq!(summary.live.by("v1"), opts.live as u64);
    assert_eq!(summary.live.besides("v1"), 0);
    assert_eq!(summary.mirror_v2.by("v1"), opts.mirrored as u64);
    assert_eq!(summary.mirror_v2.besides("v1"), 0);

    // 2. Every copy compared; the label mismatches are exactly the inputs on
    // which the two models, run here, disagree.
    let (v1, v2) = Model::train_both().unwrap();
    let v3 = Model::train(Version::V3).unwrap();
    let disagreements = |a: &Model, b: &Model| {
        samples(opts.mirrored)
            .into_iter()
            .filter(|x| a.predict(*x).label != b.predict(*x).label)
            .count() as u64
    };
    let r = &summary.report_v2;
    assert_eq!(r.matched + r.mismatched, opts.mirrored as u64, "{r:?}");
    let label_mismatches = r
        .field_mismatches
        .iter()
        .find(|(f, _)| f == "/label")
        .map_or(0, |(_, n)| *n);
    assert!(disagreements(&v1, &v2) > 0);
    assert_eq!(label_mismatches, disagreements(&v1, &v2));
    assert!(r.mismatched >= label_mismatches);
    assert!(r.agreement_rate().unwrap() > 0.5);
    assert!(r.primary_latency.p99.is_some() && r.shadow_latency.p99.is_some());

    // 3 and 8. The sticky canaries: one version per user, the share near the split.
    for canary in [summary.canary_v2, summary.canary_v3] {
        assert_eq!(canary.on_both, 0);
        let n = canary.users as f64;
        let share = canary.on_candidate as f64 / n;
        let sd = (opts.canary * (1.0 - opts.canary) / n).sqrt();
        assert!(
            (share - opts.canary).abs() <= 5.0 * sd,
            "share {share} for split {}",
            opts.canary
        );
    }

    // 4. A request admitted by blue before the promote finished on blue (v1),
    // and drained(Blue) waited for it; new requests went to v2.
    assert!(summary.blue_in_flight_at_promote >= 1);
    assert!(!summary.drained_early);
    let held = summary.held.as_ref().unwrap();
    assert_eq!((held.color, held.version.as_str()), (Color::Blue, "v1"));
    assert!(summary.blue_drained);
    assert_eq!(summary.after_promote.by("v2"), opts.after as u64);
    assert_eq!(summary.after_promote.besides("v2"), 0);

    // 5. The rollback returned to v1 and said so; a retried promote to v2
    // changed nothing.
    assert_eq!(summary.rollback_to.as_deref(), Some("v1"));
    assert_eq!(summary.after_rollback.by("v1"), opts.after as u64);
    assert_eq!(summary.retried_promote_changed, Some(false));

    // 6. v3 went into blue (v1's slot) under traffic, and v1's model was
    // released: the server held it before the deploy, nothing after.
    let d = &summary.deploy;
    assert_eq!(d.color, Some(Color::Blue));
    assert_eq!((d.replaced.as_str(), d.retired.as_str()), ("v1", "v1"));
    assert!(d.v1_clones_before >= 1);
    assert!(d.v1_released);
    assert_eq!(d.failed_during, 0);
    assert!(d.during.by("v2") >= opts.after as u64);
    assert_eq!(d.during.besides("v2"), 0);

    // 7. v3 compared with v2: every copy compared; label differences are
    // exactly where the two models, run here, disagree.
    let c = &summary.compared_v3;
    assert_eq!(summary.mirror_v3.by("v2"), opts.mirrored as u64);
    assert_eq!(summary.mirror_v3.besides("v2"), 0);
    assert_eq!((c.compared, c.not_compared), (opts.mirrored as u64, 0));
    assert!(disagreements(&v2, &v3) > 0);
    assert_eq!(c.label_mismatches, disagreements(&v2, &v3));

    // 9. v3 is live on blue, v2 warm on green.
    assert_eq!(summary.after_v3.by("v3"), opts.after as u64);
    let end = summary.live_at_end.as_ref().unwrap();
    assert_eq!((end.color, end.version.as_str()), (Color::Blue, "v3"));

    assert_eq!(summary.problems(), Vec::<String>::new());
    for step in [
        "1. blue (v1)",
        "2. green (v2)",
        "3. canary",
        "4. promote",
        "5. rollback",
        "6. deploy v3",
        "7. blue (v3)",
        "8. canary of v3",
        "9. promote",
        // Labels and drift come from the report of each pair.
        "v1 (blue) says",
        "the pair compared: v2 (green) against v3 (blue)",
        "drift of /label (150 vs 150 answers): PSI",
        "drift of /probabilities/0 (150 vs 150 answers): KS",
    ] {
        assert!(printed.contains(step), "{step} missing from:\n{printed}");
    }
}

#[test]
fn problems_name_what_went_wrong() {
    // A summary of a run that went wrong everywhere is not passed.
    let bad = demo::Summary {
        requests: 3,
        failed: 1,
        errors: vec!["user-1: connection refused".into()],
        canary_v2: demo::Canary {
            split: 0.1,
            users: 100,
            on_candidate: 40,
            on_both: 2,
        },
        ..Default::default()
    };
    let problems = bad.problems().join("\n");
    for part in [
        "1 of 3 requests failed: user-1: connection refused",
        "2 users of the v2 canary saw both versions",
        "the v2 canary's share 0.400",
        "blue did not drain",
        "the rollback returned to None, not v1",
        "the retried promote to v2 was not a no-op",
        "v1's model was not released",
        "live at the end: None",
    ] {
        assert!(problems.contains(part), "{part} missing from:\n{problems}");
    }
}

#[test]
fn arguments() {
    let args = |a: &[&str]| parse_args(a.iter().map(|s| s.to_string()));
    assert_eq!(args(&[]), Ok(Mode::Walkthrough));
    let addr = "127.0.0.1:3000".parse().unwrap();
    assert_eq!(args(&["--serve", "127.0.0.1:3000"]), Ok(Mode::Serve(addr)));
    assert_eq!(args(&["--serve=127.0.0.1:3000"]), Ok(Mode::Serve(addr)));
    assert_eq!(args(&["--help"]), Ok(Mode::Help));
    assert_eq!(args(&["--plan"]), Ok(Mode::Plan));
    assert!(args(&["--serve"]).unwrap_err().contains("needs an address"));
    assert!(args(&["--serve", "localhost"])
        .unwrap_err()
        .contains("not an address"));
    assert!(args(&["--verbose"])
        .unwrap_err()
        .contains("unknown argument"));
}

/// Issue 6's end-to-end case, with real axum servers and HTTP clients: v2
/// starts answering every fourth request with a 500 when the plan reaches its
/// second canary step. The plan rolls back by itself, and no request sent
/// after the abort was announced fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plan_rolls_a_failing_v2_back_by_itself() {
    let mut out = Vec::new();
    let s = run_plan(Candidate::Failing, &mut out).await.unwrap();
    let printed = String::from_utf8(out).unwrap();
    match &s.outcome {
        Some(PlanOutcome::Aborted(AbortReason::Gate { gate, .. })) => {
            assert_eq!(gate, "error_rate", "{printed}")
        }
        other => panic!("expected an error-rate abort, got {other:?}\n{printed}"),
    }
    assert_eq!(s.active_at_end, Some(Color::Blue));
    // Users did see v2's failures before the abort: the gate needs its sample.
    assert!(s.failed > 0 && s.failed == s.failed_on_green, "{printed}");
    // Traffic went on after the abort, and none of it failed.
    assert!(s.sent_after_abort > 100, "{printed}");
    assert_eq!(s.failed_after_abort, 0, "{printed}");
    assert!(printed.contains("ABORTED"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plan_promotes_a_good_v2() {
    let mut out = Vec::new();
    let s = run_plan(Candidate::Good, &mut out).await.unwrap();
    let printed = String::from_utf8(out).unwrap();
    assert_eq!(s.outcome, Some(PlanOutcome::Promoted), "{printed}");
    assert_eq!(s.failed, 0, "{printed}");
    assert_eq!(s.active_at_end, Some(Color::Green));
    for step in [
        "canary step 1/3",
        "canary step 2/3",
        "canary step 3/3",
        "promoted",
        "completed",
    ] {
        assert!(
            s.timeline.iter().any(|l| l.contains(step)),
            "{step}: {printed}"
        );
    }
}

/// Issue 14's schema case: a v2 that renames its `label` field to `class`
/// is stopped by the schema gate while mirrored, the abort names both
/// fields, and no user got an answer from it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plan_stops_a_v2_that_renames_a_field_at_the_schema_gate() {
    let mut out = Vec::new();
    let s = run_plan(Candidate::Renamed, &mut out).await.unwrap();
    let printed = String::from_utf8(out).unwrap();
    match &s.outcome {
        Some(PlanOutcome::Aborted(AbortReason::Gate { gate, detail })) => {
            assert_eq!(gate, "schema_compatible", "{printed}");
            assert!(
                detail.contains("/label only on the stable version")
                    && detail.contains("/class only on the candidate"),
                "{detail}"
            );
        }
        other => panic!("expected a schema abort, got {other:?}\n{printed}"),
    }
    assert_eq!(s.active_at_end, Some(Color::Blue));
    assert_eq!((s.failed, s.served_by_green), (0, 0), "{printed}");
    // The gates and their thresholds were printed before the first event,
    // and the table has the mirror phase with its (failed) agreement.
    let gates = printed.find("gate schema_compatible: at most 0").unwrap();
    let started = printed.find("started:").unwrap();
    assert!(gates < started, "{printed}");
    let mirror = &s.phases[0];
    assert!(mirror.name.starts_with("mirror"), "{:?}", s.phases);
    assert!(mirror.compared >= 50 && mirror.agreed == 0, "{:?}", mirror);
}

/// The per-phase table of a promoted plan: every phase, requests on v2
/// growing with the split, agreement only where answers were compared.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_promoted_plan_prints_a_row_per_phase() {
    let mut out = Vec::new();
    let s = run_plan(Candidate::Good, &mut out).await.unwrap();
    let printed = String::from_utf8(out).unwrap();
    let names: Vec<&str> = s.phases.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "mirror 100%",
            "canary 1/3",
            "canary 2/3",
            "canary 3/3",
            "after promote"
        ],
        "{printed}"
    );
    // Users get no mirrored answer (a request sent in the microseconds
    // between the first canary split and its event can count in the
    // mirror row: the renamed case above checks that none reach users).
    assert!(
        s.phases[0].green.requests * 50 <= s.phases[0].blue.requests,
        "{:?}",
        s.phases[0]
    );
    assert!(s.phases[0].compared >= 100, "{:?}", s.phases[0]);
    assert!(
        s.phases[1].green.requests > 0 && s.phases[4].blue.requests == 0,
        "{printed}"
    );
    assert!(printed.contains("| agreement"), "{printed}");
    // The drift of the label and of a probability between the versions.
    assert!(
        s.drift
            .iter()
            .any(|l| l.contains("/label (") && l.contains("PSI"))
            && s.drift
                .iter()
                .any(|l| l.contains("/probabilities/") && l.contains("KS")),
        "{printed}"
    );
    // A passing gate shows its figures.
    assert!(printed.contains("gate error_rate: pass, 0 of"), "{printed}");
}
