//! Live-traffic drift during a canary: a `LiveDriftLayer` around the router,
//! served by axum and called by a real HTTP client. The two colors answer
//! label distributions shifted by a known amount; the live figures equal
//! scipy's for those samples (`tests/data/drift_reference.json`), the live
//! drift gate aborts a canary above its limit and passes one below, and
//! sampling, the body cap, failed answers and a missing layer behave as
//! documented.
#![cfg(feature = "drift")]

mod support;

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use serde_json::{json, Value};
use tower::{service_fn, Layer};
use tower_rollout::drift::{DriftField, DriftSettings, Statistic};
use tower_rollout::live::LiveDriftLayer;
use tower_rollout::plan::{AbortReason, Gate, PlanError, PlanOutcome, RolloutPlan};
use tower_rollout::{BlueGreenRouter, Color, RolloutHandle};

const SERVED_BY: &str = "x-served-by";
const NAMES: [&str; 3] = ["setosa", "versicolor", "virginica"];

fn reference(name: &str) -> Value {
    let all: Value = serde_json::from_str(include_str!("data/drift_reference.json")).unwrap();
    all["categorical"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no reference case {name:?}"))
        .clone()
}

/// `counts[i]` labels `NAMES[i]`, interleaved.
fn labels(counts: &[u64]) -> VecDeque<String> {
    let mut left = counts.to_vec();
    let mut out = VecDeque::new();
    while left.iter().any(|&n| n > 0) {
        for (i, n) in left.iter_mut().enumerate() {
            if *n > 0 {
                *n -= 1;
                out.push_back(NAMES[i].to_owned());
            }
        }
    }
    out
}

/// What a color answers: the next label of its list (the last one again
/// once the list is used up), or a 500 for `/fail`, or a large body for
/// `/large`.
#[derive(Clone)]
struct Answers(Arc<Mutex<VecDeque<String>>>);

impl Answers {
    fn new(labels: VecDeque<String>) -> Self {
        Answers(Arc::new(Mutex::new(labels)))
    }

    fn next(&self) -> String {
        let mut q = self.0.lock().unwrap();
        if q.len() > 1 {
            q.pop_front().unwrap()
        } else {
            q.front().cloned().unwrap_or_default()
        }
    }
}

/// An axum server: the live layer around a router over two colors.
async fn server(
    blue: Answers,
    green: Answers,
    live: impl FnOnce(&RolloutHandle) -> LiveDriftLayer,
) -> (std::net::SocketAddr, RolloutHandle) {
    let app = |answers: Answers| {
        service_fn(move |req: Request<axum::body::Body>| {
            let answers = answers.clone();
            async move {
                let res = match req.uri().path() {
                    "/fail" => Response::builder()
                        .status(StatusCode::INTERNAL_SERVER_ERROR)
                        .body(axum::body::Body::from(r#"{"label": "error"}"#)),
                    "/large" => Response::builder().body(axum::body::Body::from(
                        json!({ "label": answers.next(), "pad": "x".repeat(4096) }).to_string(),
                    )),
                    _ => Response::builder().body(axum::body::Body::from(
                        json!({ "label": answers.next() }).to_string(),
                    )),
                };
                Ok::<_, Infallible>(res.unwrap())
            }
        })
    };
    let (router, handle) = BlueGreenRouter::builder()
        .versions("v1", "v2")
        .sticky_header("x-user")
        .served_by_header(SERVED_BY)
        .build(app(blue), app(green))
        .unwrap();
    let layer = live(&handle);
    let (addr, _server) =
        support::serve(axum::Router::new().fallback_service(layer.layer(router))).await;
    (addr, handle)
}

fn settings() -> DriftSettings {
    DriftSettings::new([DriftField::categorical("/label").unwrap()])
}

async fn get(client: &support::HttpClient, addr: std::net::SocketAddr, path: &str, user: u64) {
    let req = Request::get(format!("http://{addr}{path}"))
        .header("x-user", format!("user-{user}"))
        .body(Full::new(Bytes::new()))
        .unwrap();
    support::send(client, req, SERVED_BY).await.unwrap();
}

#[track_caller]
fn close(ours: Option<f64>, theirs: &Value) {
    let (ours, theirs) = (ours.expect("a statistic"), theirs.as_f64().unwrap());
    assert!((ours - theirs).abs() <= 1e-9, "{ours} vs scipy's {theirs}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_answers_of_each_color_give_scipys_figures() {
    let case = reference("shifted");
    let e: Vec<u64> = serde_json::from_value(case["expected"].clone()).unwrap();
    let a: Vec<u64> = serde_json::from_value(case["actual"].clone()).unwrap();
    let (addr, handle) = server(Answers::new(labels(&e)), Answers::new(labels(&a)), |h| {
        LiveDriftLayer::builder(h, settings(), SERVED_BY)
            .sample(1.0)
            .build()
            .unwrap()
    })
    .await;
    let client = support::client();
    // Blue stays active; split 0 then 1 sends every user to one color and
    // then the other, so each color answers exactly its list.
    for i in 0..e.iter().sum::<u64>() {
        get(&client, addr, "/predict", i).await;
    }
    handle.set_split(1.0).unwrap();
    for i in 0..a.iter().sum::<u64>() {
        get(&client, addr, "/predict", i).await;
    }
    let report = handle.live_drift().expect("a live report");
    assert_eq!(report.active.color, Color::Blue);
    assert_eq!(report.active.version.as_str(), "v1");
    assert_eq!(report.standby.version.as_str(), "v2");
    assert_eq!((report.active_answers, report.standby_answers), (100, 100));
    let d = &report.fields[0];
    close(d.get(Statistic::Psi), &case["psi"]);
    close(d.get(Statistic::JensenShannon), &case["jensen_shannon"]);
    close(
        d.get(Statistic::ChiSquare),
        &case["chi_square"]["statistic"],
    );
    close(
        d.get(Statistic::ChiSquarePValue),
        &case["chi_square"]["p_value"],
    );
    // A promote starts a new pair (green active); the old one stays readable.
    handle.promote().unwrap();
    get(&client, addr, "/predict", 0).await;
    let now = handle.live_drift().unwrap();
    assert_eq!((now.active.color, now.active_answers), (Color::Green, 1));
    assert_eq!(handle.live_drift_reports().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sampling_the_cap_and_failed_answers() {
    let same = || Answers::new(labels(&[1, 1, 1]));
    // Nothing sampled: no report at all.
    let (addr, handle) = server(same(), same(), |h| {
        LiveDriftLayer::builder(h, settings(), SERVED_BY)
            .sample(0.0)
            .build()
            .unwrap()
    })
    .await;
    let client = support::client();
    for i in 0..20 {
        get(&client, addr, "/predict", i).await;
    }
    assert_eq!(handle.live_drift(), None);

    // Every answer sampled, bodies up to 1 KiB: large bodies are counted
    // over the cap and not parsed; a 500 is not counted at all.
    let (addr, handle) = server(same(), same(), |h| {
        LiveDriftLayer::builder(h, settings(), SERVED_BY)
            .sample(1.0)
            .max_body(1024)
            .build()
            .unwrap()
    })
    .await;
    for i in 0..5 {
        get(&client, addr, "/large", i).await;
        get(&client, addr, "/fail", i).await;
        get(&client, addr, "/predict", i).await;
    }
    let r = handle.live_drift().unwrap();
    assert_eq!((r.over_cap, r.active_answers, r.standby_answers), (5, 5, 0));
    assert_eq!(r.fields[0].primary_n, 5);

    // A fraction: about that share of the answers, never all of them.
    let (addr, handle) = server(same(), same(), |h| {
        LiveDriftLayer::builder(h, settings(), SERVED_BY)
            .sample(0.25)
            .build()
            .unwrap()
    })
    .await;
    for i in 0..400 {
        get(&client, addr, "/predict", i).await;
    }
    let n = handle.live_drift().unwrap().active_answers;
    // Binomial(400, 0.25): mean 100, sd 8.7; these bounds are 6 sd out.
    assert!((48..=152).contains(&n), "{n} of 400 sampled at 0.25");
}

#[test]
fn bad_settings_fail_at_construction() {
    let svc = service_fn(|_: Request<String>| async {
        Ok::<_, Infallible>(Response::new(String::new()))
    });
    let (_router, handle) = BlueGreenRouter::new(svc, svc);
    let err = |b: tower_rollout::live::LiveDriftBuilder| b.build().unwrap_err().to_string();
    assert!(
        err(LiveDriftLayer::builder(&handle, settings(), SERVED_BY).sample(1.5))
            .contains("live drift sample")
    );
    assert!(
        err(LiveDriftLayer::builder(&handle, settings(), SERVED_BY).max_body(0))
            .contains("live drift max_body")
    );
    assert!(err(LiveDriftLayer::builder(&handle, settings(), "bad header")).contains("bad header"));
}

/// A plan whose canary is gated on the live drift of `/label`: the
/// candidate answering `green` labels (all of one category, against the
/// stable color's even mix) is rolled back; one answering the same mix is
/// promoted.
async fn canary(green: [u64; 3]) -> (PlanOutcome, RolloutHandle) {
    let blue = Answers::new(
        labels(&[400, 400, 400])
            .into_iter()
            .cycle()
            .take(100_000)
            .collect(),
    );
    let green = Answers::new(labels(&green).into_iter().cycle().take(100_000).collect());
    let (addr, handle) = server(blue, green, |h| {
        LiveDriftLayer::builder(h, settings(), SERVED_BY)
            .sample(1.0)
            .build()
            .unwrap()
    })
    .await;
    let plan = RolloutPlan::canary(0.5, Duration::from_millis(300))
        .gate(Gate::live_drift("/label", Statistic::Psi, 0.25).min_sample(60))
        .post_promotion_bake(Duration::from_millis(50))
        .interval(Duration::from_millis(20))
        .build()
        .unwrap();
    let run = plan.start(&handle).unwrap();
    let client = support::client();
    let finished = run.finished();
    tokio::pin!(finished);
    let mut user = 0;
    let outcome = loop {
        tokio::select! {
            outcome = &mut finished => break outcome,
            () = get(&client, addr, "/predict", user) => user += 1,
        }
        assert!(user < 20_000, "the plan did not finish");
    };
    (outcome, handle)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_live_drift_gate_aborts_above_its_limit_and_passes_below() {
    let (outcome, handle) = canary([0, 0, 1]).await;
    match &outcome {
        PlanOutcome::Aborted(AbortReason::Gate { gate, detail }) => {
            assert_eq!(gate, "live_drift:/label:psi");
            assert!(detail.contains("above 0.25"), "{detail}");
        }
        other => panic!("expected a live drift abort, got {other:?}"),
    }
    assert_eq!(handle.active(), Color::Blue);

    let (outcome, handle) = canary([1, 1, 1]).await;
    assert_eq!(outcome, PlanOutcome::Promoted);
    assert_eq!(handle.active(), Color::Green);
}

#[tokio::test]
async fn a_live_gate_without_the_layer_does_not_start() {
    let svc = service_fn(|_: Request<String>| async {
        Ok::<_, Infallible>(Response::new(String::new()))
    });
    let (_router, handle) = BlueGreenRouter::new(svc, svc);
    let plan = RolloutPlan::canary(0.1, Duration::from_secs(1))
        .gate(Gate::live_drift("/label", Statistic::Psi, 0.25).min_sample(10))
        .build()
        .unwrap();
    assert_eq!(plan.start(&handle).unwrap_err(), PlanError::NoLiveDrift);
}
