//! Rollout plans on tokio's paused clock: a driver sends one request per
//! millisecond through the router while the plan's task evaluates its gates;
//! nothing here depends on how fast the machine is.

use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use tokio::time::Instant;
use tower::{service_fn, ServiceExt};
use tower_rollout::plan::{
    AbortReason, Gate, GateVerdict, Phase, PlanError, PlanEvent, PlanOutcome, PlanRun, PlanState,
    RolloutPlan,
};
use tower_rollout::router::Builder;
use tower_rollout::shadow::{Comparator, CompareSettings};
use tower_rollout::{BlueGreenRouter, Color, RolloutHandle};

const SEC: Duration = Duration::from_secs(1);
const MS: Duration = Duration::from_millis(1);

/// One model version: counts what it served, can fail, be slow, or answer
/// differently from the other version.
#[derive(Default)]
struct Model {
    name: &'static str,
    served: AtomicU64,
    failing: AtomicBool,
    delay_ms: AtomicU64,
    /// Answer "other" to every n-th request (0: never).
    differ_every: AtomicU64,
    /// When each failure was answered, on the paused clock.
    failed_at: Mutex<Vec<Instant>>,
}

impl Model {
    fn new(name: &'static str) -> Arc<Model> {
        Arc::new(Model {
            name,
            ..Model::default()
        })
    }

    fn served(&self) -> u64 {
        self.served.load(Ordering::SeqCst)
    }
}

/// A model's service, for any request body (a plain router passes the
/// client's body on; a comparing one a `MirrorBody`).
#[derive(Clone)]
struct Svc(Arc<Model>);

type BoxFuture = std::pin::Pin<
    Box<dyn std::future::Future<Output = Result<Response<Full<Bytes>>, Infallible>> + Send>,
>;

impl<B> tower::Service<Request<B>> for Svc
where
    B: http_body::Body + Send + 'static,
    B::Data: Send,
{
    type Response = Response<Full<Bytes>>;
    type Error = Infallible;
    type Future = BoxFuture;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Infallible>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<B>) -> BoxFuture {
        let model = self.0.clone();
        Box::pin(async move {
            let n = model.served.fetch_add(1, Ordering::SeqCst) + 1;
            let _ = req.into_body().collect().await;
            let delay = model.delay_ms.load(Ordering::SeqCst);
            if delay > 0 {
                tokio::time::sleep(Duration::from_millis(delay)).await;
            }
            if model.failing.load(Ordering::SeqCst) {
                model.failed_at.lock().unwrap().push(Instant::now());
                let mut res = Response::new(Full::from("down"));
                *res.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
                return Ok(res);
            }
            let every = model.differ_every.load(Ordering::SeqCst);
            let body = if every > 0 && n % every == 0 {
                "other"
            } else {
                "same"
            };
            let _ = model.name;
            Ok(Response::new(Full::from(body)))
        })
    }
}

fn service(model: Arc<Model>) -> Svc {
    Svc(model)
}

/// A router over the two models, as a service of `Request<Full<Bytes>>`.
trait Router:
    tower::Service<
        Request<Full<Bytes>>,
        Response = Response<Self::Body>,
        Error = Infallible,
        Future: Send,
    > + Clone
    + Send
{
    type Body: http_body::Body<Data = Bytes, Error: std::fmt::Debug> + Send;
}

impl<S, B> Router for S
where
    S: tower::Service<
            Request<Full<Bytes>>,
            Response = Response<B>,
            Error = Infallible,
            Future: Send,
        > + Clone
        + Send,
    B: http_body::Body<Data = Bytes, Error: std::fmt::Debug> + Send,
{
    type Body = B;
}

struct Setup<R> {
    router: R,
    handle: RolloutHandle,
    blue: Arc<Model>,
    green: Arc<Model>,
}

fn setup<M>(builder: Builder<M>) -> Setup<BlueGreenRouter<Svc, Svc, M>>
where
    M: tower_rollout::router::Mode + Clone,
{
    let blue = Model::new("v1");
    let green = Model::new("v2");
    let (router, handle) = builder
        .build(service(blue.clone()), service(green.clone()))
        .expect("valid router");
    Setup {
        router,
        handle,
        blue,
        green,
    }
}

/// Sends one request and reads its body to the end; returns the status.
async fn send(router: &impl Router) -> StatusCode {
    let res = router
        .clone()
        .oneshot(Request::new(Full::from("x")))
        .await
        .unwrap();
    let status = res.status();
    res.into_body().collect().await.unwrap();
    status
}

/// Drives traffic (one request per millisecond) until the plan finishes or
/// `max` passes, calling `each` after every request. Returns the statuses.
async fn drive(
    router: &impl Router,
    run: &PlanRun,
    max: Duration,
    mut each: impl FnMut(&PlanRun),
) -> Vec<StatusCode> {
    let until = Instant::now() + max;
    let mut statuses = Vec::new();
    while Instant::now() < until && !run.status().state.is_finished() {
        statuses.push(send(router).await);
        each(run);
        tokio::time::sleep(MS).await;
    }
    statuses
}

/// The plan's outcome; a plan still running ten (paused) minutes later is a
/// failure, not a hang.
async fn finished(run: &PlanRun) -> PlanOutcome {
    match tokio::time::timeout(600 * SEC, run.finished()).await {
        Ok(outcome) => outcome,
        Err(_) => panic!("the plan did not finish: {:?}", run.status()),
    }
}

fn phases(run: &PlanRun) -> Vec<Phase> {
    run.status()
        .history
        .into_iter()
        .filter_map(|r| match r.event {
            PlanEvent::Phase(p) => Some(p),
            _ => None,
        })
        .collect()
}

fn event_at(run: &PlanRun, want: impl Fn(&PlanEvent) -> bool) -> Option<Duration> {
    run.status()
        .history
        .into_iter()
        .find(|r| want(&r.event))
        .map(|r| r.at)
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_healthy_candidate_walks_every_step_and_is_promoted() {
    let s = setup(BlueGreenRouter::builder());
    let plan = RolloutPlan::linear(0.25, 2 * SEC, 1.0)
        .gate(Gate::error_rate(0.01).min_sample(50))
        .gate(Gate::latency(0.99, 1.5).min_sample(50).slack(MS))
        .post_promotion_bake(3 * SEC)
        .build()
        .unwrap();
    let run = plan.start(&s.handle).unwrap();
    let mut events = run.subscribe();
    assert!(s.handle.is_measuring());
    assert_eq!(
        s.handle.status().split,
        0.25,
        "the first step is taken at start"
    );

    let statuses = drive(&s.router, &run, 60 * SEC, |_| {}).await;
    assert_eq!(finished(&run).await, PlanOutcome::Promoted);
    assert!(statuses.iter().all(|s| s.is_success()));
    assert_eq!(s.handle.active(), Color::Green);
    assert_eq!(s.handle.status().split, 0.0);
    assert!(!s.handle.is_measuring(), "measuring stops with the plan");

    let splits: Vec<f64> = phases(&run)
        .into_iter()
        .filter_map(|p| match p {
            Phase::Canary { split, .. } => Some(split),
            _ => None,
        })
        .collect();
    assert_eq!(splits, [0.25, 0.5, 0.75, 1.0]);
    assert!(phases(&run).contains(&Phase::PostPromotion));

    // Each step baked at least its bake time.
    let history = run.status().history;
    let starts: Vec<Duration> = history
        .iter()
        .filter(|r| matches!(r.event, PlanEvent::Phase(_)))
        .map(|r| r.at)
        .collect();
    for pair in starts.windows(2) {
        assert!(pair[1] - pair[0] >= 2 * SEC, "{starts:?}");
    }
    let completed = event_at(&run, |e| matches!(e, PlanEvent::Completed)).unwrap();
    assert!(completed - starts[starts.len() - 1] >= 3 * SEC);
    // The candidate really served traffic in the canary steps.
    assert!(s.green.served() > 500 && s.blue.served() > 500);

    // The subscription saw the same timeline.
    let mut seen = Vec::new();
    while let Ok(r) = events.try_recv() {
        seen.push(r);
    }
    assert_eq!(seen.as_slice(), &history[history.len() - seen.len()..]);
    assert!(matches!(seen.last().unwrap().event, PlanEvent::Completed));
    let gate_passes = seen
        .iter()
        .filter(|r| {
            matches!(
                &r.event,
                PlanEvent::Gate {
                    verdict: GateVerdict::Pass(_),
                    ..
                }
            )
        })
        .count();
    assert!(
        gate_passes >= 2 * 5,
        "both gates passed in every live phase"
    );
    assert_eq!(s.handle.plan_status().unwrap().state, PlanState::Promoted);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn an_error_rate_rising_at_step_two_rolls_back_within_one_interval() {
    let s = setup(BlueGreenRouter::builder());
    let interval = Duration::from_millis(250);
    let plan = RolloutPlan::linear(0.2, 5 * SEC, 0.6)
        .gate(Gate::error_rate(0.05).min_sample(20))
        .interval(interval)
        .build()
        .unwrap();
    let t0 = Instant::now();
    let run = plan.start(&s.handle).unwrap();
    let green = s.green.clone();
    let statuses = drive(&s.router, &run, 60 * SEC, |run| {
        if matches!(run.status().phase, Phase::Canary { step: 2, .. }) {
            green.failing.store(true, Ordering::SeqCst);
        }
    })
    .await;
    let outcome = finished(&run).await;
    let PlanOutcome::Aborted(AbortReason::Gate { gate, detail }) = &outcome else {
        panic!("expected a gate abort, got {outcome:?}");
    };
    assert_eq!(gate, "error_rate");
    assert!(detail.contains("failed"), "{detail}");
    assert_eq!(s.handle.active(), Color::Blue);
    assert_eq!(s.handle.status().split, 0.0);
    assert!(statuses.iter().any(|s| s.is_server_error()));

    // The abort came within one evaluation interval of the moment the gate
    // had its minimum sample of failures.
    let failed_at = s.green.failed_at.lock().unwrap().clone();
    assert!(failed_at.len() >= 20);
    let sample_at = failed_at[19] - t0;
    let aborted_at = event_at(&run, |e| matches!(e, PlanEvent::Aborted(_))).unwrap();
    assert!(aborted_at >= sample_at, "{aborted_at:?} {sample_at:?}");
    assert!(
        aborted_at - sample_at <= interval,
        "aborted {:?} after the 20th failure",
        aborted_at - sample_at
    );
    // It aborted in step 2, never reaching step 3.
    assert!(!phases(&run)
        .iter()
        .any(|p| matches!(p, Phase::Canary { step: 3, .. })));

    // No request after the abort reaches the candidate.
    let green_before = s.green.served();
    for _ in 0..500 {
        assert_eq!(send(&s.router).await, StatusCode::OK);
        tokio::time::sleep(MS).await;
    }
    assert_eq!(s.green.served(), green_before);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_latency_regression_aborts() {
    let s = setup(BlueGreenRouter::builder());
    s.blue.delay_ms.store(2, Ordering::SeqCst);
    s.green.delay_ms.store(10, Ordering::SeqCst);
    let plan = RolloutPlan::canary(0.5, 30 * SEC)
        .gate(Gate::error_rate(0.01).min_sample(20))
        .gate(Gate::latency(0.9, 2.0).min_sample(20))
        .build()
        .unwrap();
    let run = plan.start(&s.handle).unwrap();
    drive(&s.router, &run, 60 * SEC, |_| {}).await;
    match finished(&run).await {
        PlanOutcome::Aborted(AbortReason::Gate { gate, detail }) => {
            assert_eq!(gate, "latency");
            assert!(detail.contains("p90"), "{detail}");
        }
        other => panic!("expected a latency abort, got {other:?}"),
    }
    assert_eq!(s.handle.active(), Color::Blue);
    // It did not wait for the bake time to end.
    let aborted = event_at(&run, |e| matches!(e, PlanEvent::Aborted(_))).unwrap();
    assert!(aborted < 5 * SEC, "{aborted:?}");

    // The same plan with a candidate as fast as the stable one is promoted.
    let s = setup(BlueGreenRouter::builder());
    s.blue.delay_ms.store(2, Ordering::SeqCst);
    s.green.delay_ms.store(2, Ordering::SeqCst);
    let plan = RolloutPlan::canary(0.5, 2 * SEC)
        .gate(Gate::latency(0.9, 2.0).min_sample(20))
        .build()
        .unwrap();
    let run = plan.start(&s.handle).unwrap();
    drive(&s.router, &run, 60 * SEC, |_| {}).await;
    assert_eq!(finished(&run).await, PlanOutcome::Promoted);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_candidate_that_disagrees_with_the_shadow_comparison_never_serves_a_user() {
    let s = setup(BlueGreenRouter::builder().compare(CompareSettings::new(Comparator::bytes())));
    // One answer in four differs.
    s.green.differ_every.store(4, Ordering::SeqCst);
    let plan = RolloutPlan::builder()
        .mirror_until_compared(1.0, 200)
        .step(0.1, 10 * SEC)
        .gate(Gate::agreement(0.95).min_sample(40))
        .gate(Gate::error_rate(0.01).min_sample(20))
        .build()
        .unwrap();
    let run = plan.start(&s.handle).unwrap();
    assert_eq!(s.handle.status().mirror, 1.0);
    drive(&s.router, &run, 60 * SEC, |_| {}).await;
    match finished(&run).await {
        PlanOutcome::Aborted(AbortReason::Gate { gate, .. }) => assert_eq!(gate, "agreement"),
        other => panic!("expected an agreement abort, got {other:?}"),
    }
    let status = s.handle.status();
    assert_eq!(
        (status.active, status.split, status.mirror),
        (Color::Blue, 0.0, 0.0)
    );
    assert_eq!(
        status.green.served, 0,
        "no user request reached the candidate"
    );
    assert!(s.green.served() >= 40, "the candidate saw mirrored copies");
    let report = s.handle.shadow_report();
    assert!(report.mismatched > 0 && report.agreement_rate().unwrap() < 0.95);

    // An agreeing candidate passes the mirror phase and the canary.
    let s = setup(BlueGreenRouter::builder().compare(CompareSettings::new(Comparator::bytes())));
    let plan = RolloutPlan::builder()
        .mirror_until_compared(1.0, 100)
        .step(0.1, 2 * SEC)
        .gate(Gate::agreement(0.95).min_sample(40))
        .build()
        .unwrap();
    let run = plan.start(&s.handle).unwrap();
    drive(&s.router, &run, 60 * SEC, |_| {}).await;
    assert_eq!(finished(&run).await, PlanOutcome::Promoted);
    assert!(phases(&run)
        .iter()
        .any(|p| matches!(p, Phase::Mirror { .. })));
    // The comparison of the mirror phase is blue's (v1) against green's;
    // the promote started a new pair, which has compared nothing.
    let reports = s.handle.shadow_reports();
    let mirrored = reports
        .iter()
        .find(|r| r.versions.as_ref().map(|v| v.primary.color) == Some(Color::Blue))
        .expect("the mirror phase's pair is kept");
    assert_eq!(
        mirrored.versions.as_ref().unwrap().shadow.color,
        Color::Green
    );
    assert!(mirrored.matched >= 100, "{mirrored:?}");
    assert_eq!(
        s.handle.shadow_report().total(),
        0,
        "a new pair after the promote"
    );
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_gate_without_its_minimum_sample_holds_the_plan() {
    let s = setup(BlueGreenRouter::builder());
    let plan = RolloutPlan::canary(0.1, SEC)
        .gate(Gate::error_rate(0.05).min_sample(1_000_000))
        .build()
        .unwrap();
    let run = plan.start(&s.handle).unwrap();
    drive(&s.router, &run, 20 * SEC, |_| {}).await;
    let status = run.status();
    assert_eq!(status.state, PlanState::Holding);
    assert!(matches!(status.phase, Phase::Canary { step: 1, .. }));
    assert!(
        matches!(&status.gates[0].verdict, GateVerdict::Inconclusive(why) if why.contains("of 1000000"))
    );
    assert_eq!(s.handle.active(), Color::Blue, "not promoted");
    assert_eq!(s.handle.status().split, 0.1);
    let holds = status
        .history
        .iter()
        .filter(|r| matches!(r.event, PlanEvent::Holding { .. }))
        .count();
    assert_eq!(holds, 1, "the hold is reported once");
    assert!(run.abort("test over"));
    assert_eq!(
        finished(&run).await,
        PlanOutcome::Aborted(AbortReason::Manual("test over".into()))
    );
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn pause_resume_and_abort_by_hand() {
    let s = setup(BlueGreenRouter::builder());
    let plan = RolloutPlan::linear(0.25, 2 * SEC, 1.0)
        .gate(Gate::error_rate(0.05).min_sample(10))
        .build()
        .unwrap();
    let run = plan.start(&s.handle).unwrap();
    let mut paused = false;
    drive(&s.router, &run, 60 * SEC, |run| {
        if !paused && matches!(run.status().phase, Phase::Canary { step: 2, .. }) {
            paused = run.pause();
        }
    })
    .await
    .len();
    // `drive` stops at 60 s: the plan stayed paused at step 2 all along.
    let status = run.status();
    assert_eq!(status.state, PlanState::Paused);
    assert!(matches!(status.phase, Phase::Canary { step: 2, .. }));
    assert_eq!(s.handle.status().split, 0.5);
    assert!(!run.pause(), "already paused");

    // Gates still run while paused: they are passing here.
    assert!(status.gates.iter().all(|g| g.verdict.is_pass()));

    assert!(run.resume());
    let resumed = Instant::now();
    drive(&s.router, &run, 60 * SEC, |run| {
        if matches!(run.status().phase, Phase::Canary { step: 3, .. }) {
            run.abort("operator saw something");
        }
    })
    .await;
    // Step 2 had baked before the pause, so step 3 came after the rest of
    // its bake time, not a whole new one.
    let step3 = event_at(&run, |e| {
        matches!(e, PlanEvent::Phase(Phase::Canary { step: 3, .. }))
    })
    .unwrap();
    let resumed_at = event_at(&run, |e| matches!(e, PlanEvent::Resumed)).unwrap();
    assert!(
        step3 > resumed_at && step3 - resumed_at <= 2 * SEC,
        "{step3:?} {resumed_at:?}"
    );
    assert!(Instant::now() > resumed);
    assert_eq!(
        finished(&run).await,
        PlanOutcome::Aborted(AbortReason::Manual("operator saw something".into()))
    );
    let status = s.handle.status();
    assert_eq!((status.active, status.split), (Color::Blue, 0.0));
    assert!(!run.abort("again"), "already finished");
    assert!(!run.resume());
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn skip_to_promote_then_bake() {
    let s = setup(BlueGreenRouter::builder());
    let plan = RolloutPlan::linear(0.1, 10 * SEC, 0.5)
        .gate(Gate::error_rate(0.05).min_sample(10))
        .post_promotion_bake(2 * SEC)
        .build()
        .unwrap();
    let run = plan.start(&s.handle).unwrap();
    assert!(run.skip_to_promote());
    assert_eq!(
        s.handle.active(),
        Color::Green,
        "promoted before the call returned"
    );
    assert_eq!(run.status().phase, Phase::PostPromotion);
    assert!(!run.skip_to_promote());
    drive(&s.router, &run, 60 * SEC, |_| {}).await;
    assert_eq!(finished(&run).await, PlanOutcome::Promoted);
    assert_eq!(s.handle.active(), Color::Green);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_failure_after_the_promote_rolls_back_to_the_warm_stable_color() {
    let s = setup(BlueGreenRouter::builder());
    let plan = RolloutPlan::canary(0.5, SEC)
        .gate(Gate::error_rate(0.05).min_sample(20))
        .post_promotion_bake(30 * SEC)
        .build()
        .unwrap();
    let run = plan.start(&s.handle).unwrap();
    let green = s.green.clone();
    drive(&s.router, &run, 60 * SEC, |run| {
        if run.status().phase == Phase::PostPromotion {
            green.failing.store(true, Ordering::SeqCst);
        }
    })
    .await;
    assert!(matches!(
        finished(&run).await,
        PlanOutcome::Aborted(AbortReason::Gate { .. })
    ));
    assert_eq!(s.handle.active(), Color::Blue);
    let blue_before = s.blue.served();
    assert_eq!(send(&s.router).await, StatusCode::OK);
    assert_eq!(s.blue.served(), blue_before + 1);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn someone_else_changing_the_state_supersedes_the_plan() {
    let s = setup(BlueGreenRouter::builder());
    let plan = RolloutPlan::canary(0.1, 10 * SEC).build().unwrap();
    let run = plan.start(&s.handle).unwrap();
    s.handle.set_split(0.3).unwrap();
    drive(&s.router, &run, 5 * SEC, |_| {}).await;
    assert_eq!(finished(&run).await, PlanOutcome::Superseded);
    assert_eq!(
        s.handle.status().split,
        0.3,
        "the plan left the other call's state"
    );
    assert!(!run.abort("late"));
    assert_eq!(s.handle.status().split, 0.3);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn start_checks_what_the_plan_needs() {
    let s = setup(BlueGreenRouter::builder());
    let plan = RolloutPlan::canary(0.1, SEC).build().unwrap();
    let run = plan.clone().start(&s.handle).unwrap();
    assert_eq!(
        plan.clone().start(&s.handle).unwrap_err(),
        PlanError::AlreadyRunning
    );
    run.abort("done");
    // A finished plan does not block the next one.
    let again = plan.start(&s.handle).unwrap();
    again.abort("done");

    let compared = RolloutPlan::builder()
        .mirror_until_compared(0.5, 10)
        .build()
        .unwrap();
    assert_eq!(
        compared.start(&s.handle).unwrap_err(),
        PlanError::NoComparison
    );
}

#[test]
fn start_outside_a_runtime_is_an_error() {
    let s = setup(BlueGreenRouter::builder());
    let plan = RolloutPlan::canary(0.1, SEC).build().unwrap();
    assert_eq!(plan.start(&s.handle).unwrap_err(), PlanError::NoRuntime);
    assert!(!s.handle.is_measuring());
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn measurements_classify_outcomes_per_color() {
    let s = setup(BlueGreenRouter::builder().measure(true));
    assert!(s.handle.is_measuring());
    for _ in 0..10 {
        send(&s.router).await;
    }
    s.blue.failing.store(true, Ordering::SeqCst);
    for _ in 0..5 {
        send(&s.router).await;
    }
    // Dropped before its body ended: abandoned, not classified.
    s.blue.failing.store(false, Ordering::SeqCst);
    let res = s
        .router
        .clone()
        .oneshot(Request::new(Full::from("x")))
        .await
        .unwrap();
    drop(res);
    let m = s.handle.measurements();
    assert_eq!(
        (m.blue.finished, m.blue.failures, m.blue.abandoned),
        (15, 5, 1)
    );
    assert_eq!(m.blue.failure_rate(), Some(5.0 / 15.0));
    assert_eq!(m.green.finished, 0);
    assert_eq!(m.blue.latency.count(), 16);
    let status = s.handle.status();
    assert_eq!((status.blue.finished, status.blue.failures), (15, 5));

    // Not measuring: nothing recorded.
    let s = setup(BlueGreenRouter::builder());
    send(&s.router).await;
    assert_eq!(s.handle.measurements().blue.finished, 0);
}

/// gRPC answers 200 and carries its status in the trailers (or, for a
/// trailers-only answer, in the headers): the classifier sees both.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn grpc_statuses_are_classified_from_trailers_and_headers() {
    use http_body_util::{combinators::UnsyncBoxBody, StreamBody};
    type GrpcBody = UnsyncBoxBody<Bytes, Infallible>;
    type GrpcReq = Request<Full<Bytes>>;

    // The request body says which status to answer and where to put it.
    let grpc = service_fn(|req: GrpcReq| async move {
        let ask = req.into_body().collect().await.unwrap().to_bytes();
        let ask = std::str::from_utf8(&ask).unwrap().to_owned();
        let (place, code) = ask.split_once(':').unwrap();
        let mut builder = Response::builder().header("content-type", "application/grpc");
        let body: GrpcBody = if place == "headers" {
            builder = builder.header("grpc-status", code);
            Full::new(Bytes::new()).boxed_unsync()
        } else {
            let mut trailers = http::HeaderMap::new();
            trailers.insert("grpc-status", code.parse().unwrap());
            let frames = vec![
                Ok::<_, Infallible>(http_body::Frame::data(Bytes::from_static(b"\0\0\0\0\0"))),
                Ok(http_body::Frame::trailers(trailers)),
            ];
            StreamBody::new(futures_util::stream::iter(frames)).boxed_unsync()
        };
        Ok::<_, Infallible>(builder.body(body).unwrap())
    });
    let (router, handle) = BlueGreenRouter::builder()
        .measure(true)
        .build(grpc, grpc)
        .unwrap();
    for ask in [
        "trailers:0",
        "trailers:3",  // INVALID_ARGUMENT: the caller's fault
        "trailers:13", // INTERNAL
        "trailers:14", // UNAVAILABLE
        "headers:0",
        "headers:2", // UNKNOWN, trailers-only
    ] {
        let res = router
            .clone()
            .oneshot(Request::new(Full::from(ask)))
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        res.into_body().collect().await.unwrap();
    }
    let m = handle.measurements();
    assert_eq!((m.blue.finished, m.blue.failures), (6, 3));

    // A user classifier replaces the default: only UNAVAILABLE fails here.
    let grpc = service_fn(|_: GrpcReq| async {
        let mut trailers = http::HeaderMap::new();
        trailers.insert("grpc-status", "13".parse().unwrap());
        let frames = vec![Ok::<_, Infallible>(http_body::Frame::trailers(trailers))];
        let body: GrpcBody = StreamBody::new(futures_util::stream::iter(frames)).boxed_unsync();
        Ok::<_, Infallible>(
            Response::builder()
                .header("content-type", "application/grpc")
                .body(body)
                .unwrap(),
        )
    });
    let (router, handle) = BlueGreenRouter::builder()
        .measure(true)
        .failure_classifier(|f| f.grpc_status == Some(14))
        .build(grpc, grpc)
        .unwrap();
    let res = router.oneshot(Request::new(Full::from("x"))).await.unwrap();
    res.into_body().collect().await.unwrap();
    let m = handle.measurements();
    assert_eq!((m.blue.finished, m.blue.failures), (1, 0));
}
