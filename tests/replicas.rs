//! Replicas sharing one state through a store, on the in-memory store (the
//! same checks on a real etcd are in the `tower-rollout-etcd` crate): every
//! replica converges on the last write, a restart starts from the snapshot,
//! an outage keeps the last state and refuses writes with a typed error, a
//! replica cut off through a compaction re-reads, and bad stored input is
//! reported without a panic or a reset.
#![cfg(feature = "store")]

use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use http::{Request, Response};
use tower::{service_fn, ServiceExt};
use tower_rollout::control::{ControlError, TransitionKind};
use tower_rollout::store::{
    Entry, MemoryStore, Replica, RolloutState, Source, StateStore, StoreError, StoreFuture,
    SyncError, WatchStream,
};
use tower_rollout::{BlueGreenRouter, Color, RolloutHandle};

type Answer = tower::util::BoxCloneSyncService<Request<String>, Response<String>, Infallible>;
type Router = tower_rollout::BlueGreenRouter<Answer, Answer>;

const WAIT: Duration = Duration::from_secs(5);

fn new_router() -> (Router, RolloutHandle) {
    let answer = |name: &'static str| {
        tower::util::BoxCloneSyncService::new(service_fn(move |_: Request<String>| async move {
            Ok::<_, Infallible>(Response::new(name.to_owned()))
        }))
    };
    BlueGreenRouter::builder()
        .versions("v1", "v2")
        .sticky_header("x-user")
        .build(answer("blue"), answer("green"))
        .unwrap()
}

async fn ask(router: &Router, user: u32) -> String {
    let req = Request::get("/")
        .header("x-user", format!("user-{user}"))
        .body(String::new())
        .unwrap();
    let body = router.clone().oneshot(req).await.unwrap().into_body();
    let bytes = http_body_util::BodyExt::collect(body)
        .await
        .unwrap()
        .to_bytes();
    String::from_utf8(bytes.to_vec()).unwrap()
}

async fn replica(store: impl StateStore, handle: &RolloutHandle) -> Replica {
    Replica::builder(handle, store, "iris")
        .timeout(Duration::from_millis(500))
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

/// Waits (bounded) until every replica applied `revision`.
async fn converged(replicas: &[Replica], revision: u64) {
    for r in replicas {
        tokio::time::timeout(WAIT, r.applied(revision))
            .await
            .unwrap_or_else(|_| panic!("{r:?} did not apply revision {revision}"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_replica_converges_on_the_last_write() {
    let store = MemoryStore::new();
    let mut routers = Vec::new();
    let mut replicas = Vec::new();
    for _ in 0..3 {
        let (router, handle) = new_router();
        replicas.push(replica(store.clone(), &handle).await);
        routers.push((router, handle));
    }
    assert!(replicas.iter().all(|r| r.status().source == Source::Store));
    let mut last = None;
    for i in 0..300u32 {
        let r = &replicas[(i % 3) as usize];
        let done = match i % 4 {
            0 => r.promote().await,
            1 => r.set_split(f64::from(i % 10) / 10.0).await,
            2 => r.rollback().await,
            _ => r.set_split(0.5).await,
        }
        .unwrap();
        converged(&replicas, done.revision).await;
        last = Some(done);
    }
    let last = last.unwrap();
    for ((router, handle), r) in routers.iter().zip(&replicas) {
        assert_eq!(handle.active(), last.state.active);
        assert_eq!(handle.status().split, last.state.split);
        assert_eq!(r.status().applied_revision, last.revision);
        // The same users on the same colors on every replica.
        let mut colors = Vec::new();
        for user in 0..50 {
            colors.push(ask(router, user).await);
        }
        let (first, _) = &routers[0];
        for user in 0..50 {
            assert_eq!(colors[user as usize], ask(first, user).await);
        }
    }
    assert_eq!(last.state.generation, 300 - skipped(&replicas));
}

/// Writes that changed nothing (a split set to what it was) bump nothing.
fn skipped(replicas: &[Replica]) -> u64 {
    let _ = replicas;
    // Calls 1 and 3 of each cycle of 4 can set the split it already had:
    // counted by replaying the same sequence on a plain state.
    let mut s = (Color::Blue, 0.0f64, None::<Color>);
    let mut unchanged = 0;
    for i in 0..300u32 {
        match i % 4 {
            0 => {
                s = (s.0.other(), 0.0, Some(s.0));
            }
            1 | 3 => {
                let split = if i % 4 == 1 {
                    f64::from(i % 10) / 10.0
                } else {
                    0.5
                };
                if s.1 == split {
                    unchanged += 1;
                }
                s.1 = split;
            }
            _ => {
                if let Some(back) = s.2.take() {
                    s.0 = back;
                } else if s.1 == 0.0 {
                    unchanged += 1;
                }
                s.1 = 0.0;
            }
        }
    }
    unchanged
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_replica_serves_the_current_state_from_its_snapshot() {
    let dir = tempdir("restart");
    let store = MemoryStore::new();
    let (router, handle) = new_router();
    let first = Replica::builder(&handle, store.clone(), "iris")
        .snapshot_file(dir.join("iris.json"))
        .start()
        .await
        .unwrap();
    first.promote().await.unwrap();
    let done = first.set_split(0.3).await.unwrap();
    let expected: Vec<String> = {
        let mut v = Vec::new();
        for user in 0..40 {
            v.push(ask(&router, user).await);
        }
        v
    };
    // The process dies; the store is unreachable when it comes back.
    drop((first, router, handle));
    store.set_available(false);
    let (router, handle) = new_router();
    let again = Replica::builder(&handle, store.clone(), "iris")
        .snapshot_file(dir.join("iris.json"))
        .timeout(Duration::from_millis(200))
        .start()
        .await
        .unwrap();
    let status = again.status();
    assert_eq!(status.source, Source::Snapshot);
    assert!(status.ready && !status.connected);
    assert_eq!(status.applied_revision, done.revision);
    // Its first requests: the current version, the same users as before.
    for user in 0..40 {
        assert_eq!(ask(&router, user).await, expected[user as usize]);
    }
    // The store returns: the replica syncs with it, with no new write
    // needed (the store confirms the snapshot's revision).
    store.set_available(true);
    until("synced with the store again", || {
        !(again.status().source != Source::Store)
    })
    .await;
    let writer = replica(store.clone(), &router_handle()).await;
    let next = writer.rollback().await.unwrap();
    converged(std::slice::from_ref(&again), next.revision).await;
    assert_eq!(again.status().source, Source::Store);
    assert_eq!(handle.active(), Color::Blue);
    std::fs::remove_dir_all(dir).unwrap();
}

fn router_handle() -> RolloutHandle {
    let (router, handle) = new_router();
    // The router lives on in its handle's shared state.
    std::mem::forget(router);
    handle
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_neither_store_nor_snapshot_it_serves_the_default_not_ready() {
    let store = MemoryStore::new();
    store.set_available(false);
    let (router, handle) = new_router();
    let r = replica(store.clone(), &handle).await;
    let status = r.status();
    assert_eq!(status.source, Source::Default);
    assert!(!status.ready && !r.is_ready());
    assert!(status.last_error.unwrap().contains("unavailable"));
    assert_eq!(ask(&router, 1).await, "blue");
    // It keeps trying: once the store answers it is ready.
    store.set_available(true);
    until("ready once the store answers", || r.is_ready()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_keeps_the_last_state_and_refuses_writes() {
    let store = MemoryStore::new();
    let (router, handle) = new_router();
    let (_router2, handle2) = new_router();
    let a = replica(store.clone(), &handle).await;
    let b = replica(store.clone(), &handle2).await;
    let done = a.promote().await.unwrap();
    converged(&[a.clone(), b.clone()], done.revision).await;

    store.set_available(false);
    for _ in 0..20 {
        assert_eq!(ask(&router, 7).await, "green", "serving through the outage");
    }
    assert!(matches!(
        b.set_split(0.5).await,
        Err(SyncError::Unavailable { .. })
    ));
    assert_eq!(handle2.status().split, 0.0, "nothing applied");
    until("the replica notices the outage", || !a.status().connected).await;
    assert!(a.status().stale_for.is_some());

    store.set_available(true);
    let next = b.set_split(0.25).await.unwrap();
    converged(&[a.clone(), b.clone()], next.revision).await;
    assert_eq!(handle.status().split, 0.25);
    // Each state applied once: one sync transition per remote write.
    let syncs = |h: &RolloutHandle| {
        h.status()
            .history
            .iter()
            .filter(|t| t.kind == TransitionKind::Sync)
            .count()
    };
    assert_eq!(syncs(&handle), 2, "{:?}", handle.status().history);
    assert!(a.status().connected && a.status().stale_for.is_none());
}

/// A store one replica reaches through a switch (its own network).
#[derive(Clone)]
struct Switch {
    store: MemoryStore,
    on: Arc<AtomicBool>,
}

impl Switch {
    fn check(&self) -> Result<(), StoreError> {
        if self.on.load(Ordering::SeqCst) {
            Ok(())
        } else {
            Err(StoreError::Unavailable {
                reason: "cut off".into(),
            })
        }
    }
}

impl StateStore for Switch {
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
            let on = self.on.clone();
            let inner = self.store.watch(key, after).await?;
            // Cut off: the next change shows the connection lost.
            let cut = inner
                .map(move |item| match on.load(Ordering::SeqCst) {
                    true => item,
                    false => Err(StoreError::Unavailable {
                        reason: "cut off".into(),
                    }),
                })
                .take_while(|item| {
                    std::future::ready(!matches!(item, Err(StoreError::Unavailable { .. })))
                });
            Ok(Box::pin(cut) as WatchStream)
        })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_cut_off_through_a_compaction_reads_again() {
    let store = MemoryStore::new();
    let on = Arc::new(AtomicBool::new(true));
    let (_r1, h1) = new_router();
    let (_r2, h2) = new_router();
    let a = replica(store.clone(), &h1).await;
    let b = replica(
        Switch {
            store: store.clone(),
            on: on.clone(),
        },
        &h2,
    )
    .await;
    on.store(false, Ordering::SeqCst);
    let mut last = a.promote().await.unwrap();
    for split in [0.1, 0.2, 0.3] {
        last = a.set_split(split).await.unwrap();
    }
    store.compact();
    assert_eq!(h2.active(), Color::Blue, "cut off: still the old state");
    on.store(true, Ordering::SeqCst);
    converged(std::slice::from_ref(&b), last.revision).await;
    assert_eq!((h2.active(), h2.status().split), (Color::Green, 0.3));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_conditional_writes_one_wins_the_other_gets_a_conflict() {
    let store = MemoryStore::new();
    let (_r1, h1) = new_router();
    let (_r2, h2) = new_router();
    let a = replica(store.clone(), &h1).await;
    let b = replica(store.clone(), &h2).await;
    let generation = a.status().state.unwrap().generation;
    a.call()
        .expect_generation(generation)
        .promote()
        .await
        .unwrap();
    let err = b
        .call()
        .expect_generation(generation)
        .set_split(0.5)
        .await
        .unwrap_err();
    assert_eq!(
        err,
        SyncError::Control(ControlError::Conflict {
            expected: generation,
            actual: generation + 1
        })
    );
    assert_eq!(h2.status().split, 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_stored_input_is_reported_and_the_last_state_kept() {
    let store = MemoryStore::new();
    let (router, handle) = new_router();
    let r = replica(store.clone(), &handle).await;
    let done = r.promote().await.unwrap();
    // An operator writes something that does not parse.
    let bad = store.put(
        "models/iris/state",
        Some(Bytes::from_static(br#"{"active":"red"}"#)),
    );
    converged(std::slice::from_ref(&r), done.revision).await;
    until("the bad document reported", || {
        r.status().last_error.is_some()
    })
    .await;
    let status = r.status();
    let error = status.last_error.unwrap();
    assert!(
        error.contains(&format!("revision {bad}")) && error.contains("active"),
        "{error}"
    );
    assert_eq!(ask(&router, 3).await, "green", "still the last good state");
    match r.set_split(0.1).await {
        Err(SyncError::Corrupt { revision, reason }) => {
            assert_eq!(revision, bad);
            assert!(reason.contains("active"), "{reason}");
        }
        other => panic!("expected Corrupt, got {other:?}"),
    }
    // A version this replica does not hold: named, and the rest applied.
    let mut state = RolloutState::from_json(&done.state.to_json()).unwrap();
    state.versions[0] = Some(tower_rollout::control::VersionLabel::new("v9").unwrap());
    state.split = 0.2;
    let rev = store.put("models/iris/state", Some(Bytes::from(state.to_json())));
    converged(std::slice::from_ref(&r), rev).await;
    let error = r.status().last_error.unwrap();
    assert!(error.contains("blue should hold v9"), "{error}");
    assert_eq!(handle.status().split, 0.2);
    // A deleted state: kept, said.
    store.put("models/iris/state", None);
    until("the condition held", || {
        r.status().last_error.is_some_and(|e| e.contains("deleted"))
    })
    .await;
    assert_eq!(handle.active(), Color::Green);
}

#[tokio::test]
async fn bad_settings_fail_at_start() {
    let (_router, handle) = new_router();
    let err = Replica::builder(&handle, MemoryStore::new(), "a/b")
        .start()
        .await
        .unwrap_err();
    assert!(err.to_string().contains("a/b"), "{err}");
    let err = Replica::builder(&handle, MemoryStore::new(), "iris")
        .timeout(Duration::ZERO)
        .start()
        .await
        .unwrap_err();
    assert!(err.to_string().contains("timeout"), "{err}");
}

fn tempdir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "tower-rollout-{name}-{}-{:?}",
        std::process::id(),
        std::thread::current().id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A router whose green holds `green` (v2 on the others).
fn router_with(green: &'static str) -> (Router, RolloutHandle) {
    let answer = |name: &'static str| {
        tower::util::BoxCloneSyncService::new(service_fn(move |_: Request<String>| async move {
            Ok::<_, Infallible>(Response::new(name.to_owned()))
        }))
    };
    BlueGreenRouter::builder()
        .versions("v1", green)
        .build(answer("blue"), answer("green"))
        .unwrap()
}

async fn named(store: &MemoryStore, handle: &RolloutHandle, id: &str) -> Replica {
    Replica::builder(handle, store.clone(), "iris")
        .id(id)
        .report_ttl(Duration::from_secs(3))
        .timeout(Duration::from_millis(500))
        .start()
        .await
        .unwrap()
}

async fn fleet_is(r: &Replica, ids: &[&str]) {
    tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let mut seen: Vec<String> = r.fleet().into_iter().map(|f| f.id).collect();
            seen.sort();
            if seen == ids {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("the fleet view never became {ids:?}: {:?}", r.fleet()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reports_list_the_live_replicas_and_a_stopped_one_leaves() {
    let store = MemoryStore::new();
    let (_ra, ha) = new_router();
    let (_rb, hb) = new_router();
    let (_rc, hc) = new_router();
    let a = named(&store, &ha, "pod-a").await;
    let b = named(&store, &hb, "pod-b").await;
    let c = named(&store, &hc, "pod-c").await;
    fleet_is(&a, &["pod-a", "pod-b", "pod-c"]).await;
    let done = b.promote().await.unwrap();
    converged(&[a.clone(), b.clone(), c.clone()], done.revision).await;
    // The reports follow: every replica says it applied the promote.
    until("the reports show the applied revision", || {
        a.fleet()
            .iter()
            .all(|r| r.applied_revision == done.revision)
    })
    .await;
    let report = &a.fleet()[0];
    assert_eq!(report.version(Color::Green).version, "v2");
    assert!(report.ready && report.version(Color::Green).ready);
    // pod-c stops (its process dies): its report's lease runs out.
    drop(c);
    fleet_is(&a, &["pod-a", "pod-b"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_promote_to_a_version_one_replica_does_not_hold_is_refused() {
    let store = MemoryStore::new();
    let (_ra, ha) = router_with("v2");
    let (_rb, hb) = router_with("v3");
    let a = named(&store, &ha, "pod-a").await;
    let b = named(&store, &hb, "pod-b").await;
    fleet_is(&a, &["pod-a", "pod-b"]).await;
    match a.promote().await {
        Err(SyncError::NotEverywhere {
            color,
            version,
            replicas,
        }) => {
            assert_eq!((color, version.as_str()), (Color::Green, "v2"));
            assert_eq!(replicas, ["pod-b"]);
        }
        other => panic!("expected NotEverywhere, got {other:?}"),
    }
    assert_eq!(ha.active(), Color::Blue, "nothing written");
    // Forced, it goes through; pod-b says what it lacks.
    let done = a.call().force().promote().await.unwrap();
    converged(std::slice::from_ref(&b), done.revision).await;
    assert!(b
        .status()
        .last_error
        .is_some_and(|e| e.contains("green should hold v2, this replica holds v3")));
}

#[tokio::test]
async fn a_bad_replica_id_or_report_ttl_fails_at_start() {
    let (_r, h) = new_router();
    let err = Replica::builder(&h, MemoryStore::new(), "iris")
        .id("a b")
        .start()
        .await
        .unwrap_err();
    assert!(err.to_string().contains("a b"), "{err}");
    let err = Replica::builder(&h, MemoryStore::new(), "iris")
        .report_ttl(Duration::from_secs(1))
        .start()
        .await
        .unwrap_err();
    assert!(err.to_string().contains("report_ttl"), "{err}");
}

/// A store that counts the watches opened on it.
#[derive(Clone)]
struct Counting {
    store: MemoryStore,
    watches: Arc<std::sync::atomic::AtomicUsize>,
}

impl StateStore for Counting {
    fn get<'a>(&'a self, key: &'a str) -> StoreFuture<'a, Option<Entry>> {
        self.store.get(key)
    }

    fn compare_and_set<'a>(
        &'a self,
        key: &'a str,
        expected: u64,
        value: Bytes,
    ) -> StoreFuture<'a, u64> {
        self.store.compare_and_set(key, expected, value)
    }

    fn watch<'a>(&'a self, key: &'a str, after: u64) -> StoreFuture<'a, WatchStream> {
        self.watches.fetch_add(1, Ordering::SeqCst);
        self.store.watch(key, after)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_compaction_with_no_change_to_the_state_does_not_stall_a_replica() {
    let store = MemoryStore::new();
    let watches = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let (_r1, h1) = new_router();
    let (_r2, h2) = new_router();
    let a = replica(store.clone(), &h1).await;
    let b = replica(
        Counting {
            store: store.clone(),
            watches: watches.clone(),
        },
        &h2,
    )
    .await;
    let done = a.set_split(0.1).await.unwrap();
    converged(std::slice::from_ref(&b), done.revision).await;
    // The history is compacted while the state does not change; other keys
    // do (and wake the watches).
    store.compact();
    for i in 0..5 {
        store.put(&format!("other/{i}"), Some(Bytes::from_static(b"x")));
    }
    let opened = watches.load(Ordering::SeqCst);
    // Within 300 ms, b opens at most a couple of watches (one after the
    // compaction), not one per turn of a loop.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let more = watches.load(Ordering::SeqCst) - opened;
    assert!(more <= 2, "{more} watches opened after the compaction");
    // And it follows the next write.
    let done = a.set_split(0.4).await.unwrap();
    converged(std::slice::from_ref(&b), done.revision).await;
    assert_eq!(h2.status().split, 0.4);
    assert_eq!(b.status().last_error, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_router_that_cannot_mirror_takes_the_rest_of_the_state() {
    let store = MemoryStore::new();
    let answer = |name: &'static str| {
        tower::util::BoxCloneSyncService::new(service_fn(move |_: Request<String>| async move {
            Ok::<_, Infallible>(Response::new(name.to_owned()))
        }))
    };
    let (_mirroring, hm) = BlueGreenRouter::builder()
        .versions("v1", "v2")
        .mirror(tower_rollout::mirror::MirrorLayer::settings())
        .build(answer("blue"), answer("green"))
        .unwrap();
    let (_plain, hp) = new_router();
    let m = replica(store.clone(), &hm).await;
    let p = replica(store.clone(), &hp).await;
    m.mirror_standby(0.2).await.unwrap();
    let done = m.set_split(0.3).await.unwrap();
    converged(&[m.clone(), p.clone()], done.revision).await;
    assert_eq!((hp.status().split, hp.status().mirror), (0.3, 0.0));
    assert_eq!(hm.status().mirror, 0.2);
    let error = p.status().last_error.unwrap();
    assert!(error.contains("cannot mirror"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_in_one_process_get_distinct_default_ids() {
    let store = MemoryStore::new();
    let (_ra, ha) = new_router();
    let (_rb, hb) = new_router();
    let a = Replica::builder(&ha, store.clone(), "iris")
        .report_ttl(Duration::from_secs(3))
        .start()
        .await
        .unwrap();
    let b = Replica::builder(&hb, store.clone(), "iris")
        .report_ttl(Duration::from_secs(3))
        .start()
        .await
        .unwrap();
    let (ida, idb) = (a.status().id, b.status().id);
    assert_ne!(ida, idb);
    // Both report, under keys of their own.
    until("both in the fleet view", || {
        let mut ids: Vec<String> = a.fleet().into_iter().map(|r| r.id).collect();
        ids.sort();
        let mut want = vec![ida.clone(), idb.clone()];
        want.sort();
        ids == want
    })
    .await;
}
