//! Fleet-wide plans on the in-memory store (the same on a real etcd is in
//! the `tower-rollout-etcd` crate's `fleet_plan` test): gates judge the sum
//! of every replica's window, a candidate failing on one replica of three
//! is aborted on all three, the driver's death hands the plan to another
//! replica at the stored phase with no step run twice, a driver cut off
//! alone is replaced and stands down when it is back, and an abort made
//! while the store is away is written when it is back.
#![cfg(feature = "store")]

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
    Entry, FleetPlanStatus, MemoryStore, PlanAbort, Replica, StateStore, StoreError, StoreFuture,
    StoredPlanState, SyncError, WatchStream,
};
use tower_rollout::{BlueGreenRouter, Color, RolloutHandle};

type Answer = tower::util::BoxCloneSyncService<Request<String>, Response<String>, Infallible>;
type Router = BlueGreenRouter<Answer, Answer>;

const TTL: Duration = Duration::from_secs(3);

/// One replica: its router (v1 in blue, v2 in green; green answers 500
/// while `failing` is set) and its sync.
struct Node {
    router: Router,
    handle: RolloutHandle,
    replica: Replica,
    failing: Arc<AtomicBool>,
}

async fn node(store: impl StateStore, id: &str) -> Node {
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

async fn fleet(store: &MemoryStore, n: usize) -> Vec<Node> {
    let mut nodes = Vec::new();
    for i in 0..n {
        nodes.push(node(store.clone(), &format!("r{i}")).await);
    }
    nodes
}

/// Sends one request of `user` through `router`; the answering version.
async fn ask(router: &Router, user: u64) -> String {
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
fn load(nodes: &[Node], stop: &Arc<AtomicBool>) -> Vec<tokio::task::JoinHandle<u64>> {
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
async fn plan_until(
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
fn phases(s: &FleetPlanStatus) -> Vec<(u64, String)> {
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

fn finished(s: &FleetPlanStatus) -> bool {
    s.stored.state.is_finished()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_candidate_failing_on_one_replica_of_three_is_aborted_on_all_three() {
    let store = MemoryStore::new();
    let nodes = fleet(&store, 3).await;
    nodes[2].failing.store(true, Ordering::Relaxed);
    let doc = json!({
        "steps": [{ "split": 0.5, "bake_seconds": 60 }],
        "interval_ms": 100,
        "gates": [{ "type": "error_rate", "max": 0.05, "min_sample": 90 }],
    });
    let stop = Arc::new(AtomicBool::new(false));
    let clients = load(&nodes, &stop);
    nodes[0]
        .replica
        .start_plan(doc.to_string().as_bytes())
        .await
        .unwrap();
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gate_reaches_its_minimum_sample_from_the_whole_fleet() {
    let store = MemoryStore::new();
    let nodes = fleet(&store, 3).await;
    // A 100% step, so every request is the candidate's; 40 requests per
    // replica: none reaches the gate's 100 alone, the three together do.
    let doc = json!({
        "steps": [{ "split": 1.0, "bake_seconds": 1 }],
        "interval_ms": 100,
        "gates": [{ "type": "error_rate", "max": 0.05, "min_sample": 100 }],
    });
    nodes[1]
        .replica
        .start_plan(doc.to_string().as_bytes())
        .await
        .unwrap();
    let revision = nodes[1].replica.status().applied_revision;
    for n in &nodes {
        n.replica.applied(revision).await;
    }
    let send = |i: usize| {
        let router = nodes[i].router.clone();
        async move {
            for user in 0..40 {
                assert_eq!(ask(&router, (i as u64) << 32 | user).await, "v2");
            }
        }
    };
    // Two replicas' 80 requests: past the bake, the plan holds on the gate.
    send(0).await;
    send(1).await;
    let held = plan_until(
        &nodes[2].replica,
        Duration::from_secs(10),
        "holding on 80 of 100",
        |s| {
            s.holding == ["error_rate"]
                && s.gates
                    .iter()
                    .any(|g| g.verdict.detail() == "80 of 100 requests")
        },
    )
    .await;
    assert_eq!(held.stored.seq, 1, "{held:#?}");
    // The third replica's 40: the sum passes and the plan promotes.
    send(2).await;
    let done = plan_until(
        &nodes[0].replica,
        Duration::from_secs(10),
        "promoted",
        finished,
    )
    .await;
    assert_eq!(done.stored.state, StoredPlanState::Promoted, "{done:#?}");
    let steps: Vec<String> = phases(&done).into_iter().map(|p| p.1).collect();
    assert_eq!(steps, ["canary 1/1 at 100%", "promoted", "completed"]);
    let passed = done
        .stored
        .timeline
        .iter()
        .filter(|t| t.what == "promoted")
        .count();
    assert_eq!(passed, 1);
    for n in &nodes {
        n.replica.applied(done_revision(&nodes[0])).await;
        assert_eq!(n.handle.active(), Color::Green);
    }
}

fn done_revision(n: &Node) -> u64 {
    n.replica.status().applied_revision
}

/// Runs a three-step plan, kills its driver in step 2, and returns the
/// survivors, the dead driver's id and the time the takeover took.
async fn kill_the_driver_mid_canary(
    store: &MemoryStore,
    doc: serde_json::Value,
) -> (Vec<Node>, String, Duration, Arc<AtomicBool>) {
    let mut nodes = fleet(store, 3).await;
    let stop = Arc::new(AtomicBool::new(false));
    let _clients = load(&nodes, &stop);
    nodes[0]
        .replica
        .start_plan(doc.to_string().as_bytes())
        .await
        .unwrap();
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_the_driver_dies_another_replica_goes_on_from_the_stored_phase() {
    let store = MemoryStore::new();
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
    let (nodes, dead, took, stop) = kill_the_driver_mid_canary(&store, doc).await;
    // Within the lease's time to live after the kill, plus one campaign.
    assert!(took < TTL + Duration::from_secs(1), "took {took:?}");
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_failover_a_failing_candidate_is_still_aborted_everywhere() {
    let store = MemoryStore::new();
    let doc = json!({
        "steps": [
            { "split": 0.3, "bake_seconds": 1 },
            { "split": 0.5, "bake_seconds": 60 },
        ],
        "interval_ms": 100,
        "gates": [{ "type": "error_rate", "max": 0.05, "min_sample": 30 }],
    });
    let (nodes, _, _, stop) = kill_the_driver_mid_canary(&store, doc).await;
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn while_the_store_is_away_the_plan_freezes_and_an_abort_is_written_later() {
    let store = MemoryStore::new();
    let nodes = fleet(&store, 3).await;
    let doc = json!({
        "steps": [
            { "split": 0.2, "bake_seconds": 1 },
            { "split": 0.4, "bake_seconds": 1 },
        ],
        "interval_ms": 100,
    });
    nodes[0]
        .replica
        .start_plan(doc.to_string().as_bytes())
        .await
        .unwrap();
    plan_until(&nodes[1].replica, Duration::from_secs(10), "driven", |s| {
        s.stored.driver.is_some()
    })
    .await;
    store.set_available(false);
    let frozen_at: Vec<u64> = nodes
        .iter()
        .map(|n| n.replica.status().applied_revision)
        .collect();
    // Three bake times pass: no step is taken while nobody can write.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let later: Vec<u64> = nodes
        .iter()
        .map(|n| n.replica.status().applied_revision)
        .collect();
    assert_eq!(frozen_at, later, "the plan moved while the store was away");
    let frozen = nodes[1].replica.plan_status().unwrap();
    assert!(frozen.frozen && frozen.stored.seq == 1, "{frozen:#?}");
    // An abort here: made at once on this replica, written later.
    let split_before = nodes[2].handle.status().split;
    assert!(split_before > 0.0);
    let aborted = nodes[1].replica.abort_plan("store away").await.unwrap();
    assert_eq!(aborted, PlanAbort::Pending);
    assert_eq!(nodes[1].handle.status().split, 0.0);
    assert!(nodes[1].replica.plan_status().unwrap().pending_abort);
    // The others still serve the stored canary (fail static).
    assert_eq!(nodes[2].handle.status().split, split_before);
    // Other writes are refused with the typed error.
    assert!(matches!(
        nodes[0].replica.set_split(0.9).await,
        Err(SyncError::Unavailable { .. })
    ));
    store.set_available(true);
    let done = plan_until(
        &nodes[2].replica,
        Duration::from_secs(10),
        "the abort written",
        finished,
    )
    .await;
    assert_eq!(done.stored.state, StoredPlanState::Aborted, "{done:#?}");
    assert_eq!(done.stored.reason.as_deref(), Some("by hand: store away"));
    for n in &nodes {
        n.replica.applied(done_revision(&nodes[2])).await;
        assert_eq!(n.handle.status().split, 0.0);
        assert_eq!(n.handle.active(), Color::Blue);
    }
    assert!(!nodes[1].replica.plan_status().unwrap().pending_abort);
    // Written once: one abort in the timeline, the canary's steps once.
    let aborts = done
        .stored
        .timeline
        .iter()
        .filter(|t| t.what.starts_with("aborted"))
        .count();
    assert_eq!(aborts, 1, "{:#?}", done.stored.timeline);
    let steps: Vec<String> = phases(&done).into_iter().map(|p| p.1).collect();
    assert_eq!(
        steps,
        ["canary 1/2 at 20%"],
        "no step while the store was away"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_promote_waits_until_every_live_replica_holds_the_candidate() {
    let store = MemoryStore::new();
    let nodes = fleet(&store, 2).await;
    // A third replica whose green holds another version than the state's.
    let (_router, other) = BlueGreenRouter::builder()
        .versions("v1", "v2-rc")
        .build(
            Answer::new(service_fn(|_: Request<String>| async {
                Ok::<_, Infallible>(Response::new("v1".to_owned()))
            })),
            Answer::new(service_fn(|_: Request<String>| async {
                Ok::<_, Infallible>(Response::new("v2-rc".to_owned()))
            })),
        )
        .unwrap();
    let odd = Replica::builder(&other, store.clone(), "iris")
        .id("odd")
        .report_ttl(TTL)
        .start()
        .await
        .unwrap();
    let doc = json!({
        "steps": [{ "split": 0.1, "bake_seconds": 1 }],
        "interval_ms": 100,
    });
    nodes[0]
        .replica
        .start_plan(doc.to_string().as_bytes())
        .await
        .unwrap();
    let held = plan_until(
        &nodes[0].replica,
        Duration::from_secs(15),
        "holding for the odd replica",
        |s| s.holding.iter().any(|h| h.contains("odd")),
    )
    .await;
    assert_eq!(held.stored.seq, 1);
    assert_eq!(nodes[1].handle.active(), Color::Blue);
    // It stops: once its lease expires, the promote goes on.
    drop(odd);
    let done = plan_until(
        &nodes[0].replica,
        TTL + Duration::from_secs(10),
        "promoted",
        finished,
    )
    .await;
    assert_eq!(done.stored.state, StoredPlanState::Promoted);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_control_call_by_hand_supersedes_the_plan_and_plan_calls_need_one() {
    let store = MemoryStore::new();
    let nodes = fleet(&store, 2).await;
    assert!(matches!(
        nodes[0].replica.pause_plan().await,
        Err(SyncError::NoPlan)
    ));
    let doc = json!({ "steps": [{ "split": 0.2, "bake_seconds": 60 }] });
    nodes[0]
        .replica
        .start_plan(doc.to_string().as_bytes())
        .await
        .unwrap();
    let again = nodes[1]
        .replica
        .start_plan(doc.to_string().as_bytes())
        .await;
    assert!(again.is_err(), "a second plan while one runs");
    let paused = nodes[1].replica.pause_plan().await.unwrap();
    assert!(paused.changed);
    assert_eq!(
        paused.state.plan.as_ref().unwrap().state,
        StoredPlanState::Paused
    );
    nodes[1].replica.resume_plan().await.unwrap();
    nodes[1].replica.set_split(0.5).await.unwrap();
    let done = plan_until(
        &nodes[0].replica,
        Duration::from_secs(5),
        "superseded",
        finished,
    )
    .await;
    assert_eq!(done.stored.state, StoredPlanState::Superseded);
    assert_eq!(nodes[0].handle.status().split, 0.5);
}

/// A replica's own way to the store, which can be cut (a partition of
/// that replica alone).
#[derive(Clone)]
struct Cut {
    store: MemoryStore,
    cut: Arc<AtomicBool>,
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

    fn list<'a>(&'a self, prefix: &'a str) -> StoreFuture<'a, Vec<(String, Entry)>> {
        Box::pin(async move {
            self.check()?;
            self.store.list(prefix).await
        })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_driver_cut_off_is_replaced_and_stands_down_when_it_is_back() {
    let store = MemoryStore::new();
    let cut = Arc::new(AtomicBool::new(false));
    let first = node(
        Cut {
            store: store.clone(),
            cut: cut.clone(),
        },
        "r0",
    )
    .await;
    let doc = json!({
        "steps": [
            { "split": 0.1, "bake_seconds": 1 },
            { "split": 0.3, "bake_seconds": 8 },
            { "split": 0.5, "bake_seconds": 1 }
        ],
        "interval_ms": 100,
    });
    first
        .replica
        .start_plan(doc.to_string().as_bytes())
        .await
        .unwrap();
    // r0 alone: it is elected.
    plan_until(&first.replica, Duration::from_secs(10), "r0 drives", |s| {
        s.driving_here
    })
    .await;
    let others = [
        node(store.clone(), "r1").await,
        node(store.clone(), "r2").await,
    ];
    plan_until(&first.replica, Duration::from_secs(10), "step 2", |s| {
        s.stored.seq == 2
    })
    .await;
    // r0 is cut off: it keeps serving step 2's split, writes nothing; once
    // its lease expires another replica drives on.
    cut.store(true, Ordering::SeqCst);
    let taken = plan_until(
        &others[0].replica,
        TTL + Duration::from_secs(5),
        "another driver",
        |s| s.stored.driver.as_deref().is_some_and(|d| d != "r0"),
    )
    .await;
    assert_eq!(taken.stored.seq, 2, "taken over in step 2: {taken:#?}");
    assert_eq!(first.handle.status().split, 0.3);
    // r0 is back: it finds the driver's key not its own and stands down.
    cut.store(false, Ordering::SeqCst);
    let done = plan_until(
        &others[0].replica,
        Duration::from_secs(30),
        "promoted",
        finished,
    )
    .await;
    assert_eq!(done.stored.state, StoredPlanState::Promoted, "{done:#?}");
    let names: Vec<String> = phases(&done).into_iter().map(|p| p.1).collect();
    assert_eq!(
        names,
        [
            "canary 1/3 at 10%",
            "canary 2/3 at 30%",
            "canary 3/3 at 50%",
            "promoted",
            "completed"
        ]
    );
    let after: Vec<&str> = done
        .stored
        .timeline
        .iter()
        .filter(|t| t.seq >= 3)
        .map(|t| t.by.as_str())
        .collect();
    assert!(!after.contains(&"r0"), "{:#?}", done.stored.timeline);
    first.replica.applied(done_revision(&others[0])).await;
    assert_eq!(first.handle.active(), Color::Green);
    assert!(!first.replica.plan_status().unwrap().driving_here);
}
