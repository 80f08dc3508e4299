//! What the fleet-wide plan tests share, on any store: replicas over toy
//! routers (v1 in blue, v2 in green that can be made to fail), client
//! load, waiting on a plan, and the cases run both on the memory store
//! (`tests/fleet_plan.rs`) and on a real etcd (the `tower-rollout-etcd`
//! crate's `tests/fleet_plan.rs`, which includes this file).
#![allow(dead_code, unreachable_pub)]

use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::StreamExt;
use http::{Request, Response, StatusCode};
use serde_json::json;
use tower::{service_fn, ServiceExt};
use tower_rollout::store::{
    Entry, FleetPlanStatus, MemoryStore, Replica, StateStore, StoreError, StoreFuture,
    StoredPlanState, WatchStream,
};
use tower_rollout::{BlueGreenRouter, Color, RolloutHandle};

pub type Answer = tower::util::BoxCloneSyncService<Request<String>, Response<String>, Infallible>;
pub type Router = BlueGreenRouter<Answer, Answer>;

pub const TTL: Duration = Duration::from_secs(3);

/// One replica: its router (v1 in blue, v2 in green; green answers 500
/// while `failing` is set) and its sync.
pub struct Node {
    pub router: Router,
    pub handle: RolloutHandle,
    pub replica: Replica,
    pub failing: Arc<AtomicBool>,
}

pub async fn node(store: impl StateStore, id: &str) -> Node {
    let failing = Arc::new(AtomicBool::new(false));
    let blue = Answer::new(service_fn(|_: Request<String>| async {
        Ok::<_, Infallible>(Response::new("v1".to_owned()))
    }));
    let fails = failing.clone();
    let green = Answer::new(service_fn(move |_: Request<String>| {
        let fails = fails.load(Ordering::Relaxed);
        async move {
            let mut res = Response::new("v2".to_owned());
            if fails {
                *res.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
            }
            Ok::<_, Infallible>(res)
        }
    }));
    let (router, handle) = BlueGreenRouter::builder()
        .versions("v1", "v2")
        .sticky_header("x-user")
        .build(blue, green)
        .unwrap();
    let replica = Replica::builder(&handle, store, "iris")
        .id(id)
        .report_ttl(TTL)
        .timeout(Duration::from_millis(500))
        .start()
        .await
        .unwrap();
    Node {
        router,
        handle,
        replica,
        failing,
    }
}

/// One replica `r{i}` on each store.
pub async fn fleet<S: StateStore>(stores: Vec<S>) -> Vec<Node> {
    let mut nodes = Vec::new();
    for (i, store) in stores.into_iter().enumerate() {
        nodes.push(node(store, &format!("r{i}")).await);
    }
    nodes
}

/// Sends one request of `user` through `router`; the answering version.
pub async fn ask(router: &Router, user: u64) -> String {
    let req = Request::get("/")
        .header("x-user", format!("user-{user}"))
        .body(String::new())
        .unwrap();
    let res = router.clone().oneshot(req).await.unwrap();
    let body = http_body_util::BodyExt::collect(res.into_body())
        .await
        .unwrap()
        .to_bytes();
    String::from_utf8(body.to_vec()).unwrap()
}

/// Client load on every router until `stop` is set (each request a new
/// user, so the split decides who answers).
pub fn load(nodes: &[Node], stop: &Arc<AtomicBool>) -> Vec<tokio::task::JoinHandle<u64>> {
    nodes
        .iter()
        .enumerate()
        .map(|(i, n)| {
            let router = n.router.clone();
            let stop = stop.clone();
            tokio::spawn(async move {
                let mut sent = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    ask(&router, (i as u64) << 32 | sent).await;
                    sent += 1;
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
                sent
            })
        })
        .collect()
}

/// Waits, polling, at most `within`, until `done` holds on `replica`'s
/// plan status; the status then.
pub async fn plan_until(
    replica: &Replica,
    within: Duration,
    what: &str,
    done: impl Fn(&FleetPlanStatus) -> bool,
) -> FleetPlanStatus {
    let start = Instant::now();
    loop {
        if let Some(s) = replica.plan_status() {
            if done(&s) {
                return s;
            }
        }
        assert!(
            start.elapsed() < within,
            "{what}: not within {within:?}; plan: {:#?}",
            replica.plan_status()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The phase entries of the timeline (not takeovers, pauses or the
/// abort), in order.
pub fn phases(s: &FleetPlanStatus) -> Vec<(u64, String)> {
    s.stored
        .timeline
        .iter()
        .filter(|t| {
            ["mirror", "canary", "promoted", "completed"]
                .iter()
                .any(|p| t.what.starts_with(p))
        })
        .map(|t| (t.seq, t.what.clone()))
        .collect()
}

pub fn finished(s: &FleetPlanStatus) -> bool {
    s.stored.state.is_finished()
}

/// Starts the plan `doc` through `replica`.
pub async fn start(replica: &Replica, doc: &serde_json::Value) {
    replica
        .start_plan(doc.to_string().as_bytes())
        .await
        .unwrap_or_else(|e| panic!("the plan {doc} refused: {e}"));
}

pub fn done_revision(n: &Node) -> u64 {
    n.replica.status().applied_revision
}

/// Runs a three-step plan, kills its driver in step 2, and returns the
/// survivors, the dead driver's id and the time the takeover took.
pub async fn kill_the_driver_mid_canary<S: StateStore>(
    stores: Vec<S>,
    doc: serde_json::Value,
) -> (Vec<Node>, String, Duration, Arc<AtomicBool>) {
    let mut nodes = fleet(stores).await;
    let stop = Arc::new(AtomicBool::new(false));
    let _clients = load(&nodes, &stop);
    start(&nodes[0].replica, &doc).await;
    let at_step_2 = plan_until(
        &nodes[0].replica,
        Duration::from_secs(20),
        "step 2 with a driver",
        |s| s.stored.seq == 2 && s.stored.driver.is_some(),
    )
    .await;
    let driver = at_step_2.stored.driver.clone().unwrap();
    let i = nodes
        .iter()
        .position(|n| n.replica.status().id == driver)
        .unwrap();
    // kill: its tasks stop, its lease is no longer refreshed.
    drop(nodes.remove(i));
    let killed = Instant::now();
    let taken = plan_until(
        &nodes[0].replica,
        TTL + Duration::from_secs(5),
        "another driver",
        |s| s.stored.driver.as_ref().is_some_and(|d| *d != driver),
    )
    .await;
    let took = killed.elapsed();
    assert!(taken.stored.term > at_step_2.stored.term);
    (nodes, driver, took, stop)
}

/// A candidate failing on one replica of three (`stores`, one each) is
/// aborted on all three, judged on the fleet's sum.
pub async fn failing_on_one_of_three<S: StateStore + Clone>(stores: Vec<S>) {
    let nodes = fleet(stores).await;
    nodes[2].failing.store(true, Ordering::Relaxed);
    let doc = json!({
        "steps": [{ "split": 0.5, "bake_seconds": 60 }],
        "interval_ms": 100,
        "gates": [{ "type": "error_rate", "max": 0.05, "min_sample": 90 }],
    });
    let stop = Arc::new(AtomicBool::new(false));
    let clients = load(&nodes, &stop);
    start(&nodes[0].replica, &doc).await;
    let done = plan_until(
        &nodes[0].replica,
        Duration::from_secs(20),
        "aborted",
        finished,
    )
    .await;
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.await.unwrap();
    }
    assert_eq!(done.stored.state, StoredPlanState::Aborted, "{done:#?}");
    let reason = done.stored.reason.clone().unwrap();
    assert!(reason.starts_with("gate error_rate:"), "{reason}");
    // The verdict counts the fleet: the failures (all from r2) against
    // every replica's candidate requests.
    let figures: Vec<u64> = reason
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|w| w.parse().ok())
        .take(2)
        .collect();
    let (failed, of) = (figures[0], figures[1]);
    assert!(of >= 90 && failed < of, "{reason}");
    assert!(
        (failed as f64) < 0.8 * of as f64,
        "healthy replicas' requests are in the sum: {reason}"
    );
    // Every replica applied the abort: the stable color for every user.
    let revision = nodes[0].replica.status().applied_revision;
    for n in &nodes {
        tokio::time::timeout(Duration::from_secs(5), n.replica.applied(revision))
            .await
            .unwrap();
        assert_eq!(n.handle.active(), Color::Blue);
        assert_eq!(n.handle.status().split, 0.0);
        for user in 0..50 {
            assert_eq!(ask(&n.router, user).await, "v1");
        }
    }
}

/// The driver dies mid-canary: another replica goes on from the stored
/// phase, each step once.
pub async fn driver_dies_mid_canary<S: StateStore + Clone>(stores: Vec<S>) {
    let doc = json!({
        "steps": [
            { "split": 0.1, "bake_seconds": 1 },
            { "split": 0.2, "bake_seconds": 6 },
            { "split": 0.3, "bake_seconds": 1 }
        ],
        "post_promotion_bake_seconds": 1,
        "interval_ms": 100,
        "gates": [{ "type": "error_rate", "max": 0.05, "min_sample": 10 }],
    });
    let (nodes, dead, took, stop) = kill_the_driver_mid_canary(stores, doc).await;
    // Within the lease's time to live after the kill, plus one campaign
    // (500 ms) and etcd's own lease check (up to a second or so late).
    assert!(took < TTL + Duration::from_secs(2), "took {took:?}");
    eprintln!("takeover after the driver's kill: {took:?}");
    let done = plan_until(
        &nodes[0].replica,
        Duration::from_secs(30),
        "promoted",
        finished,
    )
    .await;
    stop.store(true, Ordering::Relaxed);
    assert_eq!(done.stored.state, StoredPlanState::Promoted, "{done:#?}");
    // No step run twice: each phase once, one seq after the other.
    let entered = phases(&done);
    let names: Vec<&str> = entered.iter().map(|p| p.1.as_str()).collect();
    assert_eq!(
        names,
        [
            "canary 1/3 at 10%",
            "canary 2/3 at 20%",
            "canary 3/3 at 30%",
            "promoted",
            "completed"
        ],
        "{:#?}",
        done.stored.timeline
    );
    let seqs: Vec<u64> = entered.iter().map(|p| p.0).collect();
    assert_eq!(seqs, [1, 2, 3, 4, 5]);
    // The takeover is in the timeline, in step 2, by a survivor.
    let takeover = done
        .stored
        .timeline
        .iter()
        .find(|t| t.what.starts_with("driven by") && t.by != dead && t.seq == 2);
    assert!(takeover.is_some(), "{:#?}", done.stored.timeline);
    let after: Vec<&str> = done
        .stored
        .timeline
        .iter()
        .filter(|t| t.seq >= 3)
        .map(|t| t.by.as_str())
        .collect();
    assert!(
        !after.contains(&dead.as_str()),
        "{:#?}",
        done.stored.timeline
    );
    for n in &nodes {
        n.replica.applied(done_revision(&nodes[0])).await;
        assert_eq!(n.handle.active(), Color::Green);
    }
}

/// After the driver's failover, a candidate that starts failing is
/// aborted everywhere.
pub async fn failing_after_a_failover<S: StateStore + Clone>(stores: Vec<S>) {
    let doc = json!({
        "steps": [
            { "split": 0.3, "bake_seconds": 1 },
            { "split": 0.5, "bake_seconds": 60 },
        ],
        "interval_ms": 100,
        "gates": [{ "type": "error_rate", "max": 0.05, "min_sample": 30 }],
    });
    let (nodes, _, _, stop) = kill_the_driver_mid_canary(stores, doc).await;
    for n in &nodes {
        n.failing.store(true, Ordering::Relaxed);
    }
    let done = plan_until(
        &nodes[0].replica,
        Duration::from_secs(20),
        "aborted",
        finished,
    )
    .await;
    stop.store(true, Ordering::Relaxed);
    assert_eq!(done.stored.state, StoredPlanState::Aborted, "{done:#?}");
    for n in &nodes {
        n.replica.applied(done_revision(&nodes[0])).await;
        assert_eq!(n.handle.active(), Color::Blue);
        assert_eq!(n.handle.status().split, 0.0);
    }
}

/// A replica's own way to the store, which can be cut (a partition of
/// that replica alone).
#[derive(Clone)]
pub struct Cut {
    pub store: MemoryStore,
    pub cut: Arc<AtomicBool>,
}

impl Cut {
    fn check(&self) -> Result<(), StoreError> {
        if self.cut.load(Ordering::SeqCst) {
            Err(StoreError::Unavailable {
                reason: "partitioned".into(),
            })
        } else {
            Ok(())
        }
    }
}

impl StateStore for Cut {
    fn get<'a>(&'a self, key: &'a str) -> StoreFuture<'a, Option<Entry>> {
        Box::pin(async move {
            self.check()?;
            self.store.get(key).await
        })
    }

    fn compare_and_set<'a>(
        &'a self,
        key: &'a str,
        expected: u64,
        value: Bytes,
    ) -> StoreFuture<'a, u64> {
        Box::pin(async move {
            self.check()?;
            self.store.compare_and_set(key, expected, value).await
        })
    }

    fn watch<'a>(&'a self, key: &'a str, after: u64) -> StoreFuture<'a, WatchStream> {
        Box::pin(async move {
            self.check()?;
            let cut = self.cut.clone();
            let changes = self.store.watch(key, after).await?;
            let cut = changes.take_while(move |_| std::future::ready(!cut.load(Ordering::SeqCst)));
            Ok(Box::pin(cut) as WatchStream)
        })
    }

    fn grant(&self, ttl: Duration) -> StoreFuture<'_, u64> {
        Box::pin(async move {
            self.check()?;
            self.store.grant(ttl).await
        })
    }

    fn refresh(&self, lease: u64) -> StoreFuture<'_, ()> {
        Box::pin(async move {
            self.check()?;
            self.store.refresh(lease).await
        })
    }

    fn put_leased<'a>(&'a self, key: &'a str, value: Bytes, lease: u64) -> StoreFuture<'a, u64> {
        Box::pin(async move {
            self.check()?;
            self.store.put_leased(key, value, lease).await
        })
    }

    fn create_leased<'a>(&'a self, key: &'a str, value: Bytes, lease: u64) -> StoreFuture<'a, u64> {
        Box::pin(async move {
            self.check()?;
            self.store.create_leased(key, value, lease).await
        })
    }

    fn compare_and_set_guarded<'a>(
        &'a self,
        key: &'a str,
        expected: u64,
        value: Bytes,
        guard: &'a str,
        guard_revision: u64,
    ) -> StoreFuture<'a, u64> {
        Box::pin(async move {
            self.check()?;
            self.store
                .compare_and_set_guarded(key, expected, value, guard, guard_revision)
                .await
        })
    }

    fn list<'a>(&'a self, prefix: &'a str) -> StoreFuture<'a, Vec<(String, Entry)>> {
        Box::pin(async move {
            self.check()?;
            self.store.list(prefix).await
        })
    }
}
