//! The README's first command, `cargo run --example model_fleet`, run as a
//! test: the example's walkthrough against its own server on 127.0.0.1:0,
//! with its summary checked against the models themselves.

#[allow(dead_code)]
#[path = "../examples/model_fleet.rs"]
mod demo;

use demo::{parse_args, run_plan, run_walkthrough, Mode, Options};
use tower_rollout::plan::{AbortReason, PlanOutcome};
use tower_rollout::Color;
use tower_rollout_models::{samples, Model};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn walkthrough_rolls_out_and_back() {
    let opts = Options::default();
    let mut out = Vec::new();
    let summary = run_walkthrough(&opts, &mut out).await.unwrap();
    let printed = String::from_utf8(out).unwrap();

    // Every request answered, each by the model of the color that served it.
    assert_eq!(summary.failed, 0, "{:?}", summary.errors);
    assert_eq!(summary.wrong_answers, 0);
    let canary_requests = 2 * opts.users as u64;
    assert_eq!(
        summary.requests,
        (opts.live + opts.mirrored + 2 * opts.after) as u64 + canary_requests + 1
    );

    // 1-2. Only blue answers users, even while green gets every request.
    assert_eq!(summary.live.blue, opts.live as u64);
    assert_eq!(summary.mirror.blue, opts.mirrored as u64);
    assert_eq!(summary.live.green + summary.mirror.green, 0);

    // 2. Every copy compared; the label mismatches are exactly the inputs on
    // which the two models, run here, disagree.
    let r = &summary.report;
    assert_eq!(r.matched + r.mismatched, opts.mirrored as u64, "{r:?}");
    let (v1, v2) = Model::train_both().unwrap();
    let label_disagreements = samples(opts.mirrored)
        .into_iter()
        .filter(|x| v1.predict(*x).label != v2.predict(*x).label)
        .count() as u64;
    assert!(label_disagreements > 0);
    let label_mismatches = r
        .field_mismatches
        .iter()
        .find(|(f, _)| f == "/label")
        .map_or(0, |(_, n)| *n);
    assert_eq!(label_mismatches, label_disagreements);
    assert!(r.mismatched >= label_disagreements);
    assert!(r.agreement_rate().unwrap() > 0.5);
    assert!(r.primary_latency.p99.is_some() && r.shadow_latency.p99.is_some());

    // 3. The sticky canary: one color per user, the share near the split.
    assert_eq!(summary.canary_users_on_both, 0);
    let n = summary.canary_users as f64;
    let share = summary.canary_green_users as f64 / n;
    let sd = (opts.canary * (1.0 - opts.canary) / n).sqrt();
    assert!(
        (share - opts.canary).abs() <= 5.0 * sd,
        "share {share} for split {}",
        opts.canary
    );

    // 4. A request admitted by blue before the promote finished on blue, and
    // drained(Blue) waited for it; new requests went to green.
    assert!(summary.blue_in_flight_at_promote >= 1);
    assert!(!summary.drained_early);
    assert_eq!(summary.held_served_by, Some(Color::Blue));
    assert_eq!(summary.held_version.as_deref(), Some("v1"));
    assert!(summary.blue_drained);
    assert_eq!(summary.after_promote.green, opts.after as u64);
    assert_eq!(summary.after_promote.blue, 0);

    // 5. The rollback put blue back.
    assert_eq!(summary.after_rollback.blue, opts.after as u64);
    assert_eq!(summary.after_rollback.green, 0);
    assert_eq!(summary.active_at_end, Some(Color::Blue));

    assert_eq!(summary.problems(), Vec::<String>::new());
    for step in [
        "1. blue",
        "2. green",
        "3. canary",
        "4. promote",
        "5. rollback",
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
        canary_split: 0.1,
        canary_users: 100,
        canary_green_users: 40,
        canary_users_on_both: 2,
        ..Default::default()
    };
    let problems = bad.problems().join("\n");
    for part in [
        "1 of 3 requests failed: user-1: connection refused",
        "2 canary users saw both colors",
        "canary share 0.400",
        "blue did not drain",
        "the rollback did not put blue back",
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
    let s = run_plan(false, &mut out).await.unwrap();
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
    let s = run_plan(true, &mut out).await.unwrap();
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
