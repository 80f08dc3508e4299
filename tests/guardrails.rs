//! Plan gates on ML guardrails. Drift, between two synthetic versions whose
//! label distributions differ by a known amount: above the PSI limit the
//! plan is aborted in its mirror phase, naming the field; below it the plan
//! goes on and promotes; a field that never appears holds the plan
//! (inconclusive), never passes it. Schema: a candidate that rejects
//! requests the stable version accepted is aborted by the schema gate,
//! which names the field. (The statistics themselves are checked against
//! scipy in `tests/drift.rs`.)
#![cfg(feature = "drift")]

use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use tokio::time::Instant;
use tower::{service_fn, Service, ServiceExt};
use tower_rollout::drift::{limits, DriftField, DriftSettings, Statistic};
use tower_rollout::plan::{AbortReason, Gate, GateVerdict, PlanOutcome, PlanRun, RolloutPlan};
use tower_rollout::shadow::{Comparator, CompareSettings};
use tower_rollout::{BlueGreenRouter, Color, RolloutHandle};

const SEC: Duration = Duration::from_secs(1);

type Req = Request<tower_rollout::mirror::MirrorBody<Full<Bytes>>>;

/// A version that answers `{"label": ...}` cycling through `pattern`
/// (one period of 100 answers with the wanted counts per label).
fn version<B>(
    pattern: Vec<&'static str>,
    field: &'static str,
) -> impl Service<Request<B>, Response = Response<Full<Bytes>>, Error = Infallible, Future: Send>
       + Clone
       + Send
       + Sync
       + 'static
where
    B: http_body::Body + Send + 'static,
    B::Data: Send,
{
    let n = Arc::new(AtomicUsize::new(0));
    let pattern: Arc<[&'static str]> = pattern.into();
    service_fn(move |req: Request<B>| {
        let (n, pattern) = (n.clone(), pattern.clone());
        async move {
            let _ = req.into_body().collect().await;
            let i = n.fetch_add(1, Ordering::SeqCst);
            let body = format!(r#"{{"{field}": "{}"}}"#, pattern[i % pattern.len()]);
            Ok::<_, Infallible>(Response::new(Full::from(body)))
        }
    })
}

/// 100 labels with `counts` of setosa, versicolor and virginica.
fn pattern(counts: [usize; 3]) -> Vec<&'static str> {
    let names = ["setosa", "versicolor", "virginica"];
    let mut out = Vec::new();
    let mut left = counts;
    while left.iter().any(|&n| n > 0) {
        for (i, n) in left.iter_mut().enumerate() {
            if *n > 0 {
                *n -= 1;
                out.push(names[i]);
            }
        }
    }
    out
}

fn psi_reference(name: &str) -> f64 {
    let all: serde_json::Value =
        serde_json::from_str(include_str!("data/drift_reference.json")).unwrap();
    all["categorical"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap()["psi"]
        .as_f64()
        .unwrap()
}

async fn drive<S, RB>(router: &S, run: &PlanRun, max: Duration)
where
    S: Service<Request<Full<Bytes>>, Response = Response<RB>, Error = Infallible> + Clone,
    RB: http_body::Body,
    RB::Error: std::fmt::Debug,
{
    let until = Instant::now() + max;
    while Instant::now() < until && !run.status().state.is_finished() {
        let res = router
            .clone()
            .oneshot(Request::new(Full::from("x")))
            .await
            .unwrap();
        res.into_body().collect().await.unwrap();
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

fn plan() -> RolloutPlan {
    RolloutPlan::builder()
        .mirror_until_compared(1.0, 200)
        .step(0.5, 2 * SEC)
        .gate(Gate::drift("/label", Statistic::Psi, limits::PSI_LARGE).min_sample(200))
        .build()
        .unwrap()
}

async fn rollout(
    stable: [usize; 3],
    candidate: [usize; 3],
    field: &'static str,
) -> (PlanOutcome, RolloutHandle, PlanRun) {
    let settings = DriftSettings::new([DriftField::categorical("/label").unwrap()]);
    let (router, handle) = BlueGreenRouter::builder()
        .compare(CompareSettings::new(Comparator::bytes()).drift(settings))
        .build(
            version(pattern(stable), "label"),
            version(pattern(candidate), field),
        )
        .unwrap();
    let run = plan().start(&handle).unwrap();
    drive(&router, &run, 120 * SEC).await;
    let outcome = tokio::time::timeout(600 * SEC, run.finished())
        .await
        .expect("finished");
    (outcome, handle, run)
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_large_label_shift_aborts_the_plan_in_its_mirror_phase() {
    let (outcome, handle, run) = rollout([90, 5, 5], [30, 35, 35], "label").await;
    match &outcome {
        PlanOutcome::Aborted(AbortReason::Gate {
            gate,
            detail: reason,
        }) => {
            assert_eq!(gate, "drift:/label:psi");
            assert!(
                reason.contains("/label") && reason.contains("psi"),
                "{reason}"
            );
        }
        other => panic!("expected a drift abort, got {other:?}"),
    }
    let status = handle.status();
    assert_eq!((status.active, status.split), (Color::Blue, 0.0));
    assert_eq!(
        status.green.served, 0,
        "no user reached the drifted version"
    );
    let report = handle
        .shadow_reports()
        .into_iter()
        .find(|r| r.versions.as_ref().map(|v| v.primary.color) == Some(Color::Blue))
        .unwrap();
    let d = &report.drift[0];
    assert!(d.sample() >= 200, "{d:?}");
    // Over whole periods these counts give scipy's 1.745.
    let psi = d.psi.unwrap();
    assert!(
        psi > limits::PSI_LARGE && psi_reference("large shift") > 1.7,
        "{psi}"
    );
    assert!(run.status().state.is_finished());
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_small_label_shift_passes_and_the_candidate_is_promoted() {
    let (outcome, handle, _) = rollout([50, 30, 20], [40, 30, 30], "label").await;
    assert_eq!(outcome, PlanOutcome::Promoted);
    assert_eq!(handle.active(), Color::Green);
    let report = handle
        .shadow_reports()
        .into_iter()
        .find(|r| r.versions.as_ref().map(|v| v.primary.color) == Some(Color::Blue))
        .unwrap();
    let psi = report.drift[0].psi.unwrap();
    // No shift by the usual reading (scipy's figure for whole periods of
    // these counts is 0.061; the sample here ends mid-period).
    assert!(psi < limits::PSI_NONE, "{psi}");
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_field_that_never_appears_holds_the_plan_and_never_passes() {
    // The candidate renamed `label` to `class`: the gate has nothing to
    // judge on its side.
    let settings = DriftSettings::new([DriftField::categorical("/label").unwrap()]);
    let (router, handle) = BlueGreenRouter::builder()
        .compare(CompareSettings::new(Comparator::bytes()).drift(settings))
        .build(
            version(pattern([50, 30, 20]), "label"),
            version(pattern([50, 30, 20]), "class"),
        )
        .unwrap();
    let run = plan().start(&handle).unwrap();
    drive(&router, &run, 30 * SEC).await;
    let status = run.status();
    assert!(
        !status.state.is_finished(),
        "held, not promoted: {status:?}"
    );
    let verdict = status
        .gates
        .iter()
        .find(|g| g.gate == "drift:/label:psi")
        .map(|g| g.verdict.clone());
    match verdict {
        Some(GateVerdict::Inconclusive(why)) => assert!(why.contains("never appeared"), "{why}"),
        other => panic!("expected inconclusive, got {other:?}"),
    }
    let d = &handle.shadow_report().drift[0];
    assert_eq!(d.shadow_n, 0);
    assert!(d.problems.missing_shadow >= 200, "{:?}", d.problems);
    run.abort("test over");
}

/// A candidate that requires a request field the stable version did not
/// (it answers 400 without it): the schema gate aborts the plan in the
/// mirror phase, and its verdict names the field from the candidate's
/// answer; the breaks are counted apart from disagreements.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_candidate_that_rejects_what_the_stable_accepted_is_aborted_by_the_schema_gate() {
    let strict = service_fn(|req: Req| async move {
        let body = BodyExt::collect(req.into_body())
            .await
            .map(|b| b.to_bytes());
        let ok = body.is_ok_and(|b| b.windows(5).any(|w| w == b"petal"));
        let mut res = Response::new(Full::<Bytes>::from(if ok {
            r#"{"label": "setosa"}"#
        } else {
            r#"{"error": "missing field `petal_width`"}"#
        }));
        if !ok {
            *res.status_mut() = http::StatusCode::BAD_REQUEST;
        }
        Ok::<_, Infallible>(res)
    });
    let lenient = service_fn(|req: Req| async move {
        let _ = BodyExt::collect(req.into_body()).await;
        Ok::<_, Infallible>(Response::new(Full::<Bytes>::from(r#"{"label": "setosa"}"#)))
    });
    let (router, handle) = BlueGreenRouter::builder()
        .compare(CompareSettings::new(Comparator::bytes()))
        .build(
            tower::util::BoxCloneSyncService::new(lenient),
            tower::util::BoxCloneSyncService::new(strict),
        )
        .unwrap();
    let plan = RolloutPlan::builder()
        .mirror_until_compared(1.0, 100)
        .step(0.5, 2 * SEC)
        .gate(Gate::schema_compatible(0).min_sample(50))
        .build()
        .unwrap();
    let run = plan.start(&handle).unwrap();
    drive(&router, &run, 120 * SEC).await;
    match tokio::time::timeout(600 * SEC, run.finished())
        .await
        .unwrap()
    {
        PlanOutcome::Aborted(AbortReason::Gate { gate, detail }) => {
            assert_eq!(gate, "schema_compatible");
            assert!(detail.contains("petal_width"), "{detail}");
            assert!(detail.contains("200") && detail.contains("400"), "{detail}");
        }
        other => panic!("expected a schema abort, got {other:?}"),
    }
    assert_eq!(handle.status().green.served, 0);
    let report = handle.shadow_reports().remove(0);
    assert!(report.schema_breaks >= 50, "{report:?}");
    assert_eq!(report.mismatched, 0, "breaks are not disagreements");
    let e = report.exemplars.last().unwrap();
    assert_eq!(e.diffs[0].path, "status");
    assert_eq!(
        (e.primary.status.as_u16(), e.shadow.status.as_u16()),
        (200, 400)
    );
}
