//! Replicas with a loader, on the in-memory store: a fleet-wide deploy is
//! loaded by every replica and a promote then goes through; a promote while
//! one replica still loads names it; a label no loader knows is a typed
//! error while the replica keeps serving; a fresh replica loads the active
//! version before it is ready; a newer state drops a pending load. (The
//! same deploy on a real etcd: `etcd/tests/replicas.rs`.)
#![cfg(feature = "store")]

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures_util::future::BoxFuture;
use http::{Request, Response};
use tokio::sync::Semaphore;
use tower::{service_fn, BoxError, ServiceExt};
use tower_rollout::control::{TransitionKind, VersionLabel};
use tower_rollout::store::{
    LoadErrorKind, LoadStatus, MemoryStore, Replica, RolloutState, StateStore, SyncError,
};
use tower_rollout::{BlueGreenRouter, Color, RolloutHandle};

type Answer = tower::util::BoxCloneSyncService<Request<String>, Response<String>, Infallible>;
type Router = BlueGreenRouter<Answer, Answer>;

const WAIT: Duration = Duration::from_secs(10);

/// A model version: answers with its label.
fn answer(label: &str) -> Answer {
    let label = label.to_owned();
    tower::util::BoxCloneSyncService::new(service_fn(move |_: Request<String>| {
        let label = label.clone();
        async move { Ok::<_, Infallible>(Response::new(label)) }
    }))
}

/// A router holding `blue` and `green`, blue active; `x-color` picks a
/// color per request.
fn router(blue: &str, green: &str) -> (Router, RolloutHandle) {
    BlueGreenRouter::builder()
        .versions(blue, green)
        .override_header("x-color", |_| true)
        .build(answer(blue), answer(green))
        .unwrap()
}

/// Who answers a request sent to `color`.
async fn ask(router: &Router, color: Color) -> String {
    let req = Request::get("/")
        .header("x-color", color.as_str())
        .body(String::new())
        .unwrap();
    let body = router.clone().oneshot(req).await.unwrap().into_body();
    let bytes = http_body_util::BodyExt::collect(body)
        .await
        .unwrap()
        .to_bytes();
    String::from_utf8(bytes.to_vec()).unwrap()
}

/// What a test's loader knows: versions v1 to v4; some held back by a gate
/// until the test opens it.
#[derive(Clone, Default)]
struct Models {
    gates: Arc<Mutex<HashMap<String, Gate>>>,
    /// Every load started, in order.
    started: Arc<Mutex<Vec<String>>>,
}

#[derive(Clone)]
struct Gate {
    open: Arc<Semaphore>,
    /// Set when a load waiting at this gate was dropped.
    dropped: Arc<AtomicBool>,
}

/// Sets `flag` when dropped.
struct OnDrop(Arc<AtomicBool>);

impl Drop for OnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

impl Models {
    /// Loads of `version` wait until [`Gate::open`] gets a permit.
    fn hold(&self, version: &str) -> Gate {
        let gate = Gate {
            open: Arc::new(Semaphore::new(0)),
            dropped: Arc::new(AtomicBool::new(false)),
        };
        self.gates
            .lock()
            .unwrap()
            .insert(version.to_owned(), gate.clone());
        gate
    }

    fn started(&self) -> Vec<String> {
        self.started.lock().unwrap().clone()
    }

    /// The loader: a label to a future of its service.
    fn loader(&self) -> impl Fn(VersionLabel) -> BoxFuture<'static, Result<Answer, BoxError>> {
        let models = self.clone();
        move |label: VersionLabel| {
            let models = models.clone();
            Box::pin(async move {
                models.started.lock().unwrap().push(label.to_string());
                let gate = models.gates.lock().unwrap().get(label.as_str()).cloned();
                if let Some(gate) = gate {
                    let _dropped = OnDrop(gate.dropped.clone());
                    let permit = gate.open.acquire().await?;
                    permit.forget();
                    std::mem::forget(_dropped);
                }
                match label.as_str() {
                    "v1" | "v2" | "v3" | "v4" => Ok(answer(label.as_str())),
                    other => Err(format!("no model named {other}").into()),
                }
            })
        }
    }
}

async fn replica(store: &MemoryStore, router: &Router, id: &str, models: &Models) -> Replica {
    Replica::builder(&router.handle(), store.clone(), "iris")
        .id(id)
        .report_ttl(Duration::from_secs(3))
        .timeout(Duration::from_millis(500))
        .loader(router.deployer::<String>(), models.loader())
        .start()
        .await
        .unwrap()
}

/// Waits (at most [`WAIT`], polling) until `done` holds.
async fn until(what: &str, mut done: impl FnMut() -> bool) {
    tokio::time::timeout(WAIT, async {
        while !done() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("{what}: not within {WAIT:?}"));
}

/// Waits until `r`'s fleet view lists `ids`, each with green holding
/// `green` ready or not as `loaded` says.
async fn fleet_green(r: &Replica, green: &str, loaded: &[(&str, bool)]) {
    until(
        &format!("the fleet reports green {green} as {loaded:?}"),
        || {
            let fleet = r.fleet();
            fleet.len() == loaded.len()
                && loaded.iter().all(|(id, has)| {
                    fleet.iter().any(|f| {
                        let v = f.version(Color::Green);
                        f.id == *id && (v.version == green && v.ready) == *has
                    })
                })
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fleet_deploy_is_loaded_everywhere_and_a_promote_then_succeeds() {
    let store = MemoryStore::new();
    let models = Models::default();
    let mut fleet = Vec::new();
    for id in ["pod-a", "pod-b", "pod-c"] {
        let (router, _) = router("v1", "v2");
        let r = replica(&store, &router, id, &models).await;
        fleet.push((router, r));
    }
    let a = fleet[0].1.clone();
    let done = a.deploy("v3").await.unwrap();
    assert!(done.changed);
    assert_eq!(done.state.version(Color::Green).unwrap().as_str(), "v3");
    for (router, r) in &fleet {
        until("green loaded v3", || {
            router.handle().version(Color::Green).as_str() == "v3"
                && r.status().loads[1] == LoadStatus::Idle
        })
        .await;
        assert_eq!(ask(router, Color::Green).await, "v3");
        assert_eq!(ask(router, Color::Blue).await, "v1");
    }
    // One load per replica, nothing else.
    assert_eq!(models.started(), ["v3", "v3", "v3"]);
    fleet_green(
        &a,
        "v3",
        &[("pod-a", true), ("pod-b", true), ("pod-c", true)],
    )
    .await;
    let promoted = a.promote().await.unwrap();
    for (router, r) in &fleet {
        tokio::time::timeout(WAIT, r.applied(promoted.revision))
            .await
            .unwrap();
        assert_eq!(router.handle().active(), Color::Green);
    }
    // Deploying again what green holds now changes nothing; a canary on
    // the standby refuses a deploy, typed, writing nothing.
    assert_eq!(
        a.deploy("v3").await,
        Err(SyncError::DuplicateVersion {
            version: "v3".into()
        })
    );
    a.set_split(0.1).await.unwrap();
    let before = a.status().state.unwrap().generation;
    assert_eq!(
        a.deploy("v4").await,
        Err(SyncError::CanaryRunning { split: 0.1 })
    );
    assert!(matches!(
        a.deploy("not a label").await,
        Err(SyncError::Control(_))
    ));
    assert_eq!(a.status().state.unwrap().generation, before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_promote_while_one_replica_still_loads_names_it_then_succeeds() {
    let store = MemoryStore::new();
    let (models, slow) = (Models::default(), Models::default());
    let gate = slow.hold("v3");
    let (ra, _) = router("v1", "v2");
    let (rb, _) = router("v1", "v2");
    let a = replica(&store, &ra, "pod-a", &models).await;
    let b = replica(&store, &rb, "pod-b", &slow).await;
    a.deploy("v3").await.unwrap();
    until("pod-b loads v3", || {
        b.status().loads[1]
            == LoadStatus::Loading {
                version: VersionLabel::new("v3").unwrap(),
            }
    })
    .await;
    fleet_green(&a, "v3", &[("pod-a", true), ("pod-b", false)]).await;
    match a.promote().await {
        Err(SyncError::NotEverywhere {
            color,
            version,
            replicas,
        }) => {
            assert_eq!((color, version.as_str()), (Color::Green, "v3"));
            assert_eq!(replicas, ["pod-b"]);
        }
        other => panic!("expected NotEverywhere, got {other:?}"),
    }
    assert_eq!(ra.handle().active(), Color::Blue, "nothing written");
    // Meanwhile pod-b serves what it has.
    assert_eq!(ask(&rb, Color::Green).await, "v2");
    assert!(b.is_ready());
    gate.open.add_permits(1);
    fleet_green(&a, "v3", &[("pod-a", true), ("pod-b", true)]).await;
    let done = a.promote().await.unwrap();
    tokio::time::timeout(WAIT, b.applied(done.revision))
        .await
        .unwrap();
    assert_eq!(ask(&rb, rb.handle().active()).await, "v3");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_label_no_loader_knows_is_a_typed_error_and_the_replica_keeps_serving() {
    let store = MemoryStore::new();
    let models = Models::default();
    let (router, handle) = router("v1", "v2");
    let r = replica(&store, &router, "pod-a", &models).await;
    until("the replica's report is listed", || r.fleet().len() == 1).await;
    r.deploy("v9").await.unwrap();
    until("the load of v9 fails", || {
        matches!(&r.status().loads[1], LoadStatus::Failed(_))
    })
    .await;
    let status = r.status();
    let LoadStatus::Failed(e) = &status.loads[1] else {
        unreachable!()
    };
    assert_eq!((e.version.as_str(), e.color), ("v9", Color::Green));
    assert_eq!(e.kind, LoadErrorKind::Loader);
    assert!(e.reason.contains("no model named v9"), "{e}");
    assert_eq!(status.last_error, Some(e.to_string()));
    assert!(status.ready);
    // Both colors serve what they hold.
    assert_eq!(handle.version(Color::Green).as_str(), "v2");
    assert_eq!(ask(&router, Color::Green).await, "v2");
    assert_eq!(ask(&router, Color::Blue).await, "v1");
    // A promote to it is refused: green does not hold v9 here.
    assert!(matches!(
        r.promote().await,
        Err(SyncError::NotEverywhere { .. })
    ));
    // A deploy of a known version replaces the failing one.
    r.deploy("v3").await.unwrap();
    until("green loads v3", || {
        handle.version(Color::Green).as_str() == "v3" && r.status().loads[1] == LoadStatus::Idle
    })
    .await;
    assert_eq!(r.status().last_error, None);
    assert_eq!(ask(&router, Color::Green).await, "v3");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fresh_replica_loads_the_active_version_before_it_is_ready() {
    let store = MemoryStore::new();
    let mut state = RolloutState::new([
        Some(VersionLabel::new("v1").unwrap()),
        Some(VersionLabel::new("v2").unwrap()),
    ]);
    state.active = Color::Green;
    state.previous = Some(Color::Blue);
    state.generation = 4;
    store
        .compare_and_set("models/iris/state", 0, Bytes::from(state.to_json()))
        .await
        .unwrap();
    let models = Models::default();
    let gate = models.hold("v2");
    // A new process: green holds an older build until v2 is loaded.
    let (router, handle) = router("v1", "v0");
    let r = replica(&store, &router, "pod-new", &models).await;
    assert_eq!(handle.active(), Color::Green);
    until("green loads v2", || {
        r.status().loads[1]
            == LoadStatus::Loading {
                version: VersionLabel::new("v2").unwrap(),
            }
    })
    .await;
    assert!(!r.is_ready());
    assert!(!r.status().ready);
    assert_eq!(ask(&router, Color::Green).await, "v0");
    gate.open.add_permits(1);
    until("the replica is ready", || r.is_ready()).await;
    assert_eq!(handle.version(Color::Green).as_str(), "v2");
    assert_eq!(ask(&router, Color::Green).await, "v2");
    assert_eq!(r.status().loads, [LoadStatus::Idle, LoadStatus::Idle]);
    // Now it serves: a state naming another version for the active color
    // is reported, not loaded.
    let mut next = r.status().state.unwrap();
    next.versions[1] = Some(VersionLabel::new("v4").unwrap());
    next.generation += 1;
    let revision = r.status().applied_revision;
    let written = store
        .compare_and_set("models/iris/state", revision, Bytes::from(next.to_json()))
        .await
        .unwrap();
    tokio::time::timeout(WAIT, r.applied(written))
        .await
        .unwrap();
    match &r.status().loads[1] {
        LoadStatus::Failed(e) => assert_eq!(e.kind, LoadErrorKind::ActiveColor),
        other => panic!("expected the active color refused, got {other:?}"),
    }
    assert!(r.is_ready());
    assert_eq!(ask(&router, Color::Green).await, "v2");
    assert_eq!(models.started(), ["v2"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_newer_state_drops_a_pending_load() {
    let store = MemoryStore::new();
    let models = Models::default();
    let gate = models.hold("v3");
    let (router, handle) = router("v1", "v2");
    let r = replica(&store, &router, "pod-a", &models).await;
    r.deploy("v3").await.unwrap();
    until("green loads v3", || {
        matches!(&r.status().loads[1], LoadStatus::Loading { version } if version.as_str() == "v3")
    })
    .await;
    r.deploy("v4").await.unwrap();
    until("green loads v4", || {
        handle.version(Color::Green).as_str() == "v4"
    })
    .await;
    until("the load of v3 is dropped", || {
        gate.dropped.load(Ordering::SeqCst)
    })
    .await;
    // Dropped before it got its permit: v3 can never be deployed now.
    gate.open.add_permits(1);
    assert_eq!(models.started(), ["v3", "v4"]);
    let deployed: Vec<String> = handle
        .status()
        .history
        .iter()
        .filter(|t| t.kind == TransitionKind::Deploy)
        .map(|t| t.green.to_string())
        .collect();
    assert_eq!(deployed, ["v4"]);
    assert_eq!(r.status().loads[1], LoadStatus::Idle);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forced_promote_of_a_standby_still_loading_stops_the_load() {
    let store = MemoryStore::new();
    let models = Models::default();
    let gate = models.hold("v3");
    let (router, handle) = router("v1", "v2");
    let r = replica(&store, &router, "pod-a", &models).await;
    r.deploy("v3").await.unwrap();
    until("green loads v3", || {
        matches!(&r.status().loads[1], LoadStatus::Loading { version } if version.as_str() == "v3")
    })
    .await;
    r.call().force().promote().await.unwrap();
    assert_eq!(handle.active(), Color::Green);
    // The serving replica never replaces its active version: the load is
    // dropped, and the refusal stays in the status.
    until("the load of v3 is dropped", || {
        gate.dropped.load(Ordering::SeqCst)
    })
    .await;
    until("the refusal is reported", || {
        matches!(&r.status().loads[1], LoadStatus::Failed(e) if e.kind == LoadErrorKind::ActiveColor)
    })
    .await;
    let status = r.status();
    assert!(status.ready);
    assert!(status
        .last_error
        .is_some_and(|e| e.contains("green should hold v3, this replica holds v2")));
    assert_eq!(ask(&router, Color::Green).await, "v2");
}
