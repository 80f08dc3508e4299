//! Deploying versions into the standby color at run time: what a deploy
//! refuses (and that it then changes nothing), readiness and warm-up, router
//! clones picking the new version up, and the retirement of the version it
//! replaced (its service value dropped once, after its last request).
//!
//! Each version's service holds an `Arc<Weights>`, the stand-in for a model's
//! memory: `Weights` records its drop, so a test sees when the last clone of
//! a version is gone.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use http::{Request, Response};
use http_body_util::BodyExt;
use tokio::sync::Semaphore;
use tower::{BoxError, Layer, Service, ServiceExt};
use tower_rollout::control::{
    Change, ColorVersion, ControlError, DeployError, Readiness, TransitionKind,
};
use tower_rollout::mirror::MirrorLayer;
use tower_rollout::plan::RolloutPlan;
use tower_rollout::{BlueGreenRouter, Color, ConfigError};

// === versions ===

/// The labels of the versions whose weights were dropped, in order.
#[derive(Clone, Default)]
struct Drops(Arc<Mutex<Vec<&'static str>>>);

impl Drops {
    fn list(&self) -> Vec<&'static str> {
        self.0.lock().unwrap().clone()
    }

    fn count(&self, label: &str) -> usize {
        self.list().iter().filter(|l| **l == label).count()
    }
}

/// A model's memory: records its drop.
struct Weights {
    label: &'static str,
    drops: Drops,
}

impl Drop for Weights {
    fn drop(&mut self) {
        self.drops.0.lock().unwrap().push(self.label);
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Ready {
    Yes,
    /// `poll_ready` stays pending.
    Never,
    /// `poll_ready` fails.
    Fails,
}

/// A version: answers with its label. With gates, a request with an
/// `x-wait: N` header waits for a permit of gate `N` first.
#[derive(Clone)]
struct Version {
    weights: Arc<Weights>,
    ready: Ready,
    gates: Option<Arc<[Semaphore; 2]>>,
}

impl Version {
    fn new(label: &'static str, drops: &Drops) -> Version {
        Version {
            weights: Arc::new(Weights {
                label,
                drops: drops.clone(),
            }),
            ready: Ready::Yes,
            gates: None,
        }
    }

    fn ready(mut self, ready: Ready) -> Version {
        self.ready = ready;
        self
    }

    fn gated(mut self, gates: &Arc<[Semaphore; 2]>) -> Version {
        self.gates = Some(gates.clone());
        self
    }
}

impl<B> Service<Request<B>> for Version {
    type Response = Response<String>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Response<String>, BoxError>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        match self.ready {
            Ready::Yes => Poll::Ready(Ok(())),
            Ready::Never => Poll::Pending,
            Ready::Fails => Poll::Ready(Err("the model failed to load".into())),
        }
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let label = self.weights.label;
        let wait = req
            .headers()
            .get("x-wait")
            .and_then(|v| v.to_str().ok()?.parse::<usize>().ok());
        let gates = self.gates.clone();
        Box::pin(async move {
            if let (Some(gates), Some(n)) = (gates, wait) {
                gates
                    .get(n)
                    .ok_or("no such gate")?
                    .acquire()
                    .await?
                    .forget();
            }
            Ok(Response::new(label.to_owned()))
        })
    }
}

type Router = BlueGreenRouter<Version, Version>;

fn router(drops: &Drops) -> (Router, tower_rollout::RolloutHandle) {
    BlueGreenRouter::builder()
        .versions("v1", "v2")
        .served_by_header("x-served-by")
        .build(Version::new("v1", drops), Version::new("v2", drops))
        .unwrap()
}

/// Sends one request through `router` (a clone keeps its caches) and reads
/// the answer to its end: the version named by the served-by header and the
/// body.
async fn ask(router: &mut Router) -> (ColorVersion, String) {
    let res = ServiceExt::<Request<String>>::ready(router)
        .await
        .unwrap()
        .call(Request::new(String::new()))
        .await
        .unwrap();
    let served =
        ColorVersion::from_served_by(res.headers()["x-served-by"].to_str().unwrap()).unwrap();
    let body = res.into_body().collect().await.unwrap().to_bytes();
    (served, String::from_utf8(body.to_vec()).unwrap())
}

fn poll_once<F: Future + Unpin>(fut: &mut F) -> Poll<F::Output> {
    Pin::new(fut).poll(&mut Context::from_waker(Waker::noop()))
}

fn versions(handle: &tower_rollout::RolloutHandle) -> (String, String) {
    let s = handle.status();
    (s.blue.version.to_string(), s.green.version.to_string())
}

// === deploying ===

#[tokio::test]
async fn a_deploy_loads_the_standby_and_router_clones_pick_it_up_on_their_next_request() {
    let drops = Drops::default();
    let (mut router, handle) = router(&drops);
    let deployer = router.deployer::<String>();
    // A clone made (and used on green) before the deploy: it caches v2.
    let mut old_clone = router.clone();
    handle.set_split(1.0).unwrap();
    assert_eq!(ask(&mut old_clone).await.1, "v2");
    handle.set_split(0.0).unwrap();
    let generation = handle.generation();

    let deployed = deployer
        .deploy("v3", Version::new("v3", &drops))
        .await
        .unwrap();
    assert_eq!(deployed.color, Color::Green);
    assert_eq!(deployed.version, "v3");
    assert_eq!(deployed.replaced(), "v2");
    let t = &deployed.transition;
    assert_eq!(t.kind, TransitionKind::Deploy);
    assert_eq!(t.generation, generation + 1);
    assert_eq!((t.blue.as_str(), t.green.as_str()), ("v1", "v3"));
    assert_eq!(t.replaced.as_ref().map(|v| v.as_str()), Some("v2"));
    let status = handle.status();
    assert_eq!(status.green.version, "v3");
    assert_eq!(status.green.readiness, Readiness::Ready);
    assert_eq!(status.green.served, 0, "the counters are the new version's");
    assert_eq!(
        handle.active_version(),
        "v1",
        "the live version is untouched"
    );

    // v2 is replaced but the old clone still holds a copy: not retired yet.
    let mut retired = deployed.retired();
    assert!(poll_once(&mut retired).is_pending());
    assert_eq!(drops.count("v2"), 0);
    let retiring = &handle.status().retiring;
    assert_eq!(retiring.len(), 1);
    assert_eq!(
        (retiring[0].version.as_str(), retiring[0].holders),
        ("v2", 1)
    );

    // Its next request (to blue) swaps its copies: v2 is then dropped, once.
    assert_eq!(ask(&mut old_clone).await.1, "v1");
    assert_eq!(
        tokio::time::timeout(Duration::from_secs(5), retired)
            .await
            .unwrap(),
        "v2"
    );
    assert_eq!(drops.list(), ["v2"]);
    assert!(handle.status().retiring.is_empty());

    // Every clone serves v3 from the standby.
    handle.set_split(1.0).unwrap();
    let mut new_clone = router.clone();
    for r in [&mut router, &mut old_clone, &mut new_clone] {
        let (served, body) = ask(r).await;
        assert_eq!(
            (served.color, served.version.as_str(), body.as_str()),
            (Color::Green, "v3", "v3")
        );
    }
    drop((router, old_clone, new_clone, deployer, handle));
    assert_eq!(drops.count("v2"), 1, "dropped exactly once");
    let mut all = drops.list();
    all.sort();
    assert_eq!(
        all,
        ["v1", "v2", "v3"],
        "everything dropped with the router"
    );
}

#[tokio::test]
async fn deploys_that_would_disturb_traffic_are_refused_and_change_nothing() {
    let drops = Drops::default();
    let (mut router, handle) = router(&drops);
    let deployer = router.deployer::<String>();
    let unchanged = |handle: &tower_rollout::RolloutHandle, generation: u64| {
        assert_eq!(handle.generation(), generation);
        assert_eq!(versions(handle), ("v1".into(), "v2".into()));
        assert_eq!(handle.status().history.len() as u64, generation);
    };

    // Into the active color.
    let err = deployer
        .deploy("v3", Version::new("v3", &drops))
        .into_color(Color::Blue)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, DeployError::ActiveColor { color: Color::Blue, version } if version == "v1"),
        "{err:?}"
    );
    unchanged(&handle, 0);

    // Into a standby that takes canary traffic.
    handle.set_split(0.1).unwrap();
    let err = deployer
        .deploy("v3", Version::new("v3", &drops))
        .await
        .unwrap_err();
    assert!(
        matches!(err, DeployError::CanaryRunning { split } if split == 0.1),
        "{err:?}"
    );
    handle.set_split(0.0).unwrap();
    unchanged(&handle, 2);

    // While a rollout plan runs.
    let plan = RolloutPlan::builder()
        .step(0.5, Duration::from_secs(60))
        .build()
        .unwrap()
        .start(&handle)
        .unwrap();
    let err = deployer
        .deploy("v3", Version::new("v3", &drops))
        .await
        .unwrap_err();
    assert!(matches!(err, DeployError::PlanRunning), "{err:?}");
    assert!(handle.status().plan_running);
    assert!(plan.abort("the test is done with it"));
    tokio::time::timeout(Duration::from_secs(5), plan.finished())
        .await
        .unwrap();
    let generation = handle.generation();

    // With the label of the live version.
    let err = deployer
        .deploy("v1", Version::new("v1-again", &drops))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, DeployError::DuplicateVersion { version } if version == "v1"),
        "{err:?}"
    );

    // Conditional, with a generation the state has moved from.
    let err = deployer
        .deploy("v3", Version::new("v3", &drops))
        .expect_generation(generation - 1)
        .await
        .unwrap_err();
    assert!(
        matches!(err, DeployError::Conflict { expected, actual } if expected == generation - 1 && actual == generation),
        "{err:?}"
    );

    // Bad arguments.
    let err = deployer
        .deploy("v 3", Version::new("v3", &drops))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, DeployError::InvalidVersion(ConfigError::InvalidVersion { label }) if label == "v 3"),
        "{err:?}"
    );
    let err = deployer
        .deploy("v3", Version::new("v3", &drops))
        .timeout(Duration::ZERO)
        .await
        .unwrap_err();
    assert!(matches!(err, DeployError::InvalidTimeout), "{err:?}");

    unchanged(&handle, generation);
    assert!(handle.status().retiring.is_empty());
    // The refused services were dropped; the loaded ones were not.
    assert_eq!(drops.count("v1") + drops.count("v2"), 0);
    assert_eq!(drops.count("v3"), 6);
    assert_eq!(drops.count("v1-again"), 1);
    assert_eq!(ask(&mut router).await.1, "v1");

    // A conditional deploy at the current generation goes through.
    let deployed = deployer
        .deploy("v3", Version::new("v3", &drops))
        .expect_generation(generation)
        .await
        .unwrap();
    assert_eq!(deployed.transition.generation, generation + 1);
}

#[tokio::test(start_paused = true)]
async fn a_version_that_never_becomes_ready_times_out_and_the_slot_keeps_what_it_had() {
    let drops = Drops::default();
    let (mut router, handle) = router(&drops);
    let deployer = router.deployer::<String>();

    let err = deployer
        .deploy("v3", Version::new("v3", &drops).ready(Ready::Never))
        .timeout(Duration::from_secs(2))
        .await
        .unwrap_err();
    assert!(
        matches!(err, DeployError::Timeout { after } if after == Duration::from_secs(2)),
        "{err:?}"
    );
    assert_eq!(versions(&handle), ("v1".into(), "v2".into()));
    assert_eq!(handle.generation(), 0);
    assert_eq!(
        drops.list(),
        ["v3"],
        "the new version was dropped, the old kept"
    );
    handle.set_split(1.0).unwrap();
    assert_eq!(
        ask(&mut router).await.1,
        "v2",
        "the standby still serves v2"
    );
}

#[tokio::test]
async fn a_version_whose_readiness_or_warm_up_fails_is_refused() {
    let drops = Drops::default();
    let (_router, handle) = router(&drops);
    let deployer = BlueGreenRouter::deployer::<String>(&_router);

    let err = deployer
        .deploy("v3", Version::new("v3", &drops).ready(Ready::Fails))
        .await
        .unwrap_err();
    match err {
        DeployError::NotReady(e) => assert_eq!(e.to_string(), "the model failed to load"),
        other => panic!("{other:?}"),
    }

    let err = deployer
        .deploy("v3", Version::new("v3", &drops))
        .warm_up(|svc: Version| async move {
            let res = svc.oneshot(Request::new(String::new())).await?;
            Err::<(), BoxError>(format!("warm-up answer {:?} is wrong", res.into_body()).into())
        })
        .await
        .unwrap_err();
    match err {
        DeployError::WarmUp(e) => assert_eq!(e.to_string(), "warm-up answer \"v3\" is wrong"),
        other => panic!("{other:?}"),
    }
    assert_eq!(versions(&handle), ("v1".into(), "v2".into()));
    assert_eq!(handle.generation(), 0);
    assert_eq!(handle.status().green.readiness, Readiness::Unknown);
}

#[tokio::test]
async fn the_warm_up_runs_on_the_new_version_before_it_counts_as_deployed() {
    let drops = Drops::default();
    let (_router, handle) = router(&drops);
    let deployer = _router.deployer::<String>();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let deployed = deployer
        .deploy("v3", Version::new("v3", &drops))
        .warm_up({
            let (seen, handle) = (seen.clone(), handle.clone());
            move |svc: Version| async move {
                let res = svc.oneshot(Request::new(String::new())).await?;
                // The router still has v2 in green while the warm-up runs.
                seen.lock()
                    .unwrap()
                    .push((res.into_body(), versions(&handle)));
                Ok::<(), BoxError>(())
            }
        })
        .await
        .unwrap();
    assert_eq!(
        seen.lock().unwrap().clone(),
        [("v3".to_owned(), ("v1".to_owned(), "v2".to_owned()))]
    );
    assert_eq!(deployed.version, "v3");
    assert_eq!(versions(&handle), ("v1".into(), "v3".into()));
}

#[tokio::test]
async fn the_replaced_version_is_dropped_once_after_its_last_request_and_copy() {
    let drops = Drops::default();
    // Gate 0 holds the request, gate 1 the copy.
    let gates = Arc::new([Semaphore::new(0), Semaphore::new(0)]);
    let (router, handle) = BlueGreenRouter::builder()
        .versions("v1", "v2")
        .mirror(MirrorLayer::settings())
        .build(
            Version::new("v1", &drops).gated(&gates),
            Version::new("v2", &drops),
        )
        .unwrap();
    let deployer = router.deployer::<String>();
    // A request admitted by v1 (blue), whose answer waits at the gate, and a
    // copy to v1 once it is the standby.
    let wait = |gate: &str| {
        Request::builder()
            .header("x-wait", gate)
            .body(String::new())
            .unwrap()
    };
    let held = tokio::spawn(router.clone().oneshot(wait("0")));
    while handle.in_flight(Color::Blue) == 0 {
        tokio::task::yield_now().await;
    }
    handle.promote().unwrap();
    handle.mirror_standby(1.0).unwrap();
    let res = router.clone().oneshot(wait("1")).await.unwrap();
    assert_eq!(res.into_body().collect().await.unwrap().to_bytes(), "v2");
    while handle.status().blue.mirrored_in_flight == 0 {
        tokio::task::yield_now().await;
    }
    handle.mirror_standby(0.0).unwrap();

    // v3 replaces v1 in blue while v1 still has a request and a copy.
    let deployed = deployer
        .deploy("v3", Version::new("v3", &drops))
        .await
        .unwrap();
    assert_eq!(
        (deployed.color, deployed.replaced().as_str()),
        (Color::Blue, "v1")
    );
    let mut retired = deployed.retired();
    let status = handle.status();
    assert_eq!(status.blue.version, "v3");
    let r = &status.retiring[0];
    assert_eq!(
        (r.version.as_str(), r.in_flight, r.mirrored_in_flight),
        ("v1", 1, 1),
        "{status:?}"
    );
    assert!(poll_once(&mut retired).is_pending());

    // The copy ends first: still one request.
    gates[1].add_permits(1);
    while handle
        .status()
        .retiring
        .first()
        .is_some_and(|r| r.mirrored_in_flight > 0)
    {
        tokio::task::yield_now().await;
    }
    assert!(poll_once(&mut retired).is_pending());
    assert_eq!(drops.count("v1"), 0);

    // Then the held request: v1 is dropped, exactly once, and retired resolves.
    gates[0].add_permits(1);
    let res = held.await.unwrap().unwrap();
    assert_eq!(res.into_body().collect().await.unwrap().to_bytes(), "v1");
    let gone = tokio::time::timeout(Duration::from_secs(5), retired)
        .await
        .unwrap();
    assert_eq!(gone, "v1");
    assert_eq!(drops.list(), ["v1"]);
    assert!(handle.status().retiring.is_empty());
    drop((router, handle, deployer));
    assert_eq!(drops.count("v1"), 1);
}

#[tokio::test]
async fn rollback_returns_to_the_previous_version_only_while_it_is_loaded() {
    let drops = Drops::default();
    let (mut router, handle) = router(&drops);
    let deployer = router.deployer::<String>();
    handle.promote_to_version("v2").unwrap();
    // v3 replaces v1, the version a rollback would have gone back to.
    let deployed = deployer
        .deploy("v3", Version::new("v3", &drops))
        .await
        .unwrap();
    assert_eq!(deployed.replaced(), "v1");
    let generation = handle.generation();
    assert_eq!(handle.rollback().unwrap(), Change::Unchanged { generation });
    assert_eq!(handle.active_version(), "v2");

    // Promote v3, then roll back: back to v2, still loaded in green.
    handle.promote_to_version("v3").unwrap();
    assert_eq!(ask(&mut router).await.1, "v3");
    let change = handle.rollback().unwrap();
    let t = change.transition().expect("a rollback that undoes");
    assert_eq!(
        (t.kind, t.active, t.version.as_str()),
        (TransitionKind::Rollback, Color::Green, "v2")
    );
    assert_eq!((t.from.color, t.from.version.as_str()), (Color::Blue, "v3"));
    assert_eq!(ask(&mut router).await.1, "v2");

    // A version no slot holds.
    assert_eq!(
        handle.promote_to_version("v1").unwrap_err(),
        ControlError::UnknownVersion {
            version: "v1".into()
        }
    );
}

#[tokio::test]
async fn a_layers_router_has_no_slots_to_deploy_into() {
    let drops = Drops::default();
    let (layer, handle) = BlueGreenRouter::builder()
        .layer(Version::new("v2", &drops))
        .unwrap();
    let router = layer.layer(Version::new("v1", &drops));
    let err = router
        .deployer::<String>()
        .deploy("v3", Version::new("v3", &drops))
        .await
        .unwrap_err();
    assert!(matches!(err, DeployError::NotDeployable), "{err:?}");
    assert!(err.to_string().contains("build a router over two services"));
    assert_eq!(handle.generation(), 0);
}

#[test]
fn deploy_errors_explain_themselves() {
    let cases = [
        (
            DeployError::CanaryRunning { split: 0.25 },
            "the standby takes 0.25 of the traffic as a canary: set the split to 0 first",
        ),
        (
            DeployError::PlanRunning,
            "a rollout plan runs on this router",
        ),
        (
            DeployError::InvalidTimeout,
            "the deploy timeout must be above zero",
        ),
    ];
    for (err, text) in cases {
        assert_eq!(err.to_string(), text);
    }
    let err: BoxError = Box::new(DeployError::Timeout {
        after: Duration::from_secs(3),
    });
    assert!(err.to_string().contains("3s"), "{err}");
}
