//! Replicas kept on one state in a real etcd (the cases, in one
//! process; `examples/fleet.rs` runs them as separate processes): writes
//! from varying replicas converge everywhere, a restart while etcd is down
//! serves the snapshot, an outage keeps the last state and refuses writes,
//! a replica cut off through a compaction reads again, a hand-written bad
//! document is reported and the last good state kept, a deploy through one
//! replica is loaded by the others through their loaders.

mod support;

use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use etcd_client::CompactionOptions;
use futures_util::StreamExt;
use http::{Request, Response};
use tower::service_fn;
use tower_rollout::store::{
    Entry, Replica, Source, StateStore, StoreError, StoreFuture, SyncError, WatchStream,
};
use tower_rollout::{BlueGreenRouter, Color, RolloutHandle};
use tower_rollout_etcd::EtcdStore;

use support::{etcd, raw, store, PATIENCE};

fn handle() -> RolloutHandle {
    let svc = service_fn(|_: Request<String>| async {
        Ok::<_, Infallible>(Response::new(String::new()))
    });
    let (router, handle) = BlueGreenRouter::builder()
        .versions("v1", "v2")
        .build(svc, svc)
        .unwrap();
    // The router's state lives in its handle; requests are not needed here.
    drop(router);
    handle
}

async fn replica(store: impl StateStore, handle: &RolloutHandle) -> Replica {
    Replica::builder(handle, store, "iris")
        .timeout(Duration::from_millis(500))
        .start()
        .await
        .unwrap()
}

async fn converged(replicas: &[Replica], revision: u64) {
    for r in replicas {
        tokio::time::timeout(PATIENCE, r.applied(revision))
            .await
            .unwrap_or_else(|_| panic!("{r:?} did not apply revision {revision}"));
    }
}

async fn until(what: &str, mut done: impl FnMut() -> bool) {
    tokio::time::timeout(PATIENCE, async {
        while !done() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("{what} within {PATIENCE:?}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_from_varying_replicas_converge_everywhere() {
    let server = etcd();
    let handles: Vec<RolloutHandle> = (0..3).map(|_| handle()).collect();
    let mut replicas = Vec::new();
    for h in &handles {
        replicas.push(replica(store(&server).await, h).await);
    }
    let mut last = None;
    for i in 0..60usize {
        let r = &replicas[i % 3];
        let done = match i % 3 {
            0 => r.promote().await,
            1 => r.set_split(0.1 * (1 + i % 5) as f64).await,
            _ => r.rollback().await,
        }
        .unwrap();
        assert!(done.changed);
        converged(&replicas, done.revision).await;
        last = Some(done);
    }
    let last = last.unwrap();
    for h in &handles {
        assert_eq!(
            (h.active(), h.status().split),
            (last.state.active, last.state.split)
        );
    }
    assert_eq!(last.state.generation, 60);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_while_etcd_is_down_serves_the_snapshot_then_syncs() {
    let mut server = etcd();
    let dir = tempfile::tempdir().unwrap();
    let snapshot = dir.path().join("iris.json");
    let h = handle();
    let first = Replica::builder(&h, store(&server).await, "iris")
        .snapshot_file(&snapshot)
        .start()
        .await
        .unwrap();
    let done = first.promote().await.unwrap();
    drop((first, h));
    server.stop().unwrap();

    let h = handle();
    let again = Replica::builder(&h, store(&server).await, "iris")
        .snapshot_file(&snapshot)
        .timeout(Duration::from_millis(300))
        .start()
        .await
        .unwrap();
    let status = again.status();
    assert_eq!((status.source, status.ready), (Source::Snapshot, true));
    assert_eq!(status.applied_revision, done.revision);
    assert_eq!(h.active(), Color::Green, "the current version, not blue's");

    server.restart().unwrap();
    until("synced with etcd again", || {
        again.status().source == Source::Store
    })
    .await;
    let other = replica(store(&server).await, &handle()).await;
    let next = other.rollback().await.unwrap();
    converged(std::slice::from_ref(&again), next.revision).await;
    assert_eq!(h.active(), Color::Blue);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_keeps_the_state_refuses_writes_and_nothing_is_applied_twice() {
    let mut server = etcd();
    let (ha, hb) = (handle(), handle());
    let a = replica(store(&server).await, &ha).await;
    let b = replica(store(&server).await, &hb).await;
    let done = a.promote().await.unwrap();
    converged(&[a.clone(), b.clone()], done.revision).await;

    server.stop().unwrap();
    let refused = b.set_split(0.5).await.unwrap_err();
    assert!(
        matches!(refused, SyncError::Unavailable { .. }),
        "{refused:?}"
    );
    assert_eq!((hb.active(), hb.status().split), (Color::Green, 0.0));
    until("the outage noticed", || !a.status().connected).await;
    assert!(a.status().stale_for.is_some());

    server.restart().unwrap();
    let next = tokio::time::timeout(PATIENCE, async {
        loop {
            match b.set_split(0.25).await {
                Ok(done) => break done,
                Err(SyncError::Unavailable { .. }) => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(e) => panic!("{e}"),
            }
        }
    })
    .await
    .expect("writes accepted once etcd is back");
    converged(&[a.clone(), b.clone()], next.revision).await;
    assert_eq!(ha.status().split, 0.25);
    let syncs = ha
        .status()
        .history
        .iter()
        .filter(|t| t.kind == tower_rollout::control::TransitionKind::Sync)
        .count();
    // Replica a applied its own promote (1) and b's split (1), once each.
    assert_eq!(syncs, 2, "{:?}", ha.status().history);
}

/// A store one replica reaches through a switch (its own network).
#[derive(Clone)]
struct Switch {
    store: EtcdStore,
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
            let cut = inner
                .map(move |item| {
                    if on.load(Ordering::SeqCst) {
                        item
                    } else {
                        Err(StoreError::Unavailable {
                            reason: "cut off".into(),
                        })
                    }
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
    let server = etcd();
    let on = Arc::new(AtomicBool::new(true));
    let (ha, hb) = (handle(), handle());
    let a = replica(store(&server).await, &ha).await;
    let b = replica(
        Switch {
            store: store(&server).await,
            on: on.clone(),
        },
        &hb,
    )
    .await;
    on.store(false, Ordering::SeqCst);
    let mut last = a.promote().await.unwrap();
    for split in [0.1, 0.2, 0.3] {
        last = a.set_split(split).await.unwrap();
    }
    let mut client = raw(&server).await;
    let revision = client
        .get("/", None)
        .await
        .unwrap()
        .header()
        .unwrap()
        .revision();
    client
        .compact(revision, Some(CompactionOptions::new().with_physical()))
        .await
        .unwrap();
    assert_eq!(hb.active(), Color::Blue, "cut off: the old state");
    on.store(true, Ordering::SeqCst);
    converged(std::slice::from_ref(&b), last.revision).await;
    assert_eq!((hb.active(), hb.status().split), (Color::Green, 0.3));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_document_written_by_hand_is_reported_and_the_last_state_kept() {
    let server = etcd();
    let h = handle();
    let etcd_store = store(&server).await;
    let key = etcd_store.etcd_key("models/iris/state");
    let r = replica(etcd_store, &h).await;
    r.promote().await.unwrap();
    let mut client = raw(&server).await;
    client.put(key, "{not json", None).await.unwrap();
    until("the bad document reported", || {
        r.status()
            .last_error
            .is_some_and(|e| e.contains("not JSON"))
    })
    .await;
    assert_eq!(h.active(), Color::Green);
    assert!(matches!(
        r.set_split(0.1).await,
        Err(SyncError::Corrupt { .. })
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_endpoint_starts_on_the_default_not_ready() {
    // A port nothing listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let options = support::options();
    let s = EtcdStore::connect([format!("http://127.0.0.1:{port}")], options)
        .await
        .unwrap();
    let h = handle();
    let r = Replica::builder(&h, s, "iris")
        .timeout(Duration::from_millis(300))
        .start()
        .await
        .unwrap();
    let status = r.status();
    assert_eq!((status.source, status.ready), (Source::Default, false));
    assert!(status.last_error.unwrap().contains("127.0.0.1"));
    assert!(matches!(
        r.promote().await,
        Err(SyncError::Unavailable { .. })
    ));
}

fn handle_with(green: &'static str) -> RolloutHandle {
    let svc = service_fn(|_: Request<String>| async {
        Ok::<_, Infallible>(Response::new(String::new()))
    });
    let (router, handle) = BlueGreenRouter::builder()
        .versions("v1", green)
        .build(svc, svc)
        .unwrap();
    drop(router);
    handle
}

async fn named(
    server: &tower_rollout_etcd::testing::EtcdServer,
    h: &RolloutHandle,
    id: &str,
) -> Replica {
    Replica::builder(h, store(server).await, "iris")
        .id(id)
        .report_ttl(Duration::from_secs(3))
        .timeout(Duration::from_millis(500))
        .start()
        .await
        .unwrap()
}

fn ids(r: &Replica) -> Vec<String> {
    let mut ids: Vec<String> = r.fleet().into_iter().map(|f| f.id).collect();
    ids.sort();
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replica_reports_live_under_leases_and_gate_a_promote() {
    let server = etcd();
    let (ha, hb) = (handle_with("v2"), handle_with("v3"));
    let a = named(&server, &ha, "pod-a").await;
    let b = named(&server, &hb, "pod-b").await;
    until("both replicas reported", || ids(&a) == ["pod-a", "pod-b"]).await;
    // pod-b holds v3 where the state says v2: a promote is refused.
    match a.promote().await {
        Err(SyncError::NotEverywhere { replicas, .. }) => assert_eq!(replicas, ["pod-b"]),
        other => panic!("expected NotEverywhere, got {other:?}"),
    }
    // pod-b stops: its lease expires in etcd, and the promote goes through.
    drop(b);
    until("pod-b's report gone with its lease", || {
        ids(&a) == ["pod-a"]
    })
    .await;
    let done = a.promote().await.unwrap();
    assert!(done.changed);
    assert_eq!(ha.active(), Color::Green);
}

type Answer = tower::util::BoxCloneSyncService<Request<String>, Response<String>, Infallible>;

/// A version of a toy model: answers with its label.
fn answer(label: &str) -> Answer {
    let label = label.to_owned();
    tower::util::BoxCloneSyncService::new(service_fn(move |_: Request<String>| {
        let label = label.clone();
        async move { Ok::<_, Infallible>(Response::new(label)) }
    }))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deploy_through_one_replica_is_loaded_by_the_others() {
    use tower::ServiceExt;
    use tower_rollout::control::VersionLabel;

    let server = etcd();
    let mut fleet = Vec::new();
    for id in ["pod-a", "pod-b", "pod-c"] {
        let (router, handle) = BlueGreenRouter::builder()
            .versions("v1", "v2")
            .override_header("x-color", |_| true)
            .build(answer("v1"), answer("v2"))
            .unwrap();
        // The loader knows v1 to v3 (a real one would fetch weights).
        let load = |label: VersionLabel| async move {
            match label.as_str() {
                "v1" | "v2" | "v3" => Ok(answer(label.as_str())),
                other => Err(format!("no model named {other}")),
            }
        };
        let r = Replica::builder(&handle, store(&server).await, "iris")
            .id(id)
            .report_ttl(Duration::from_secs(3))
            .timeout(Duration::from_millis(500))
            .loader(router.deployer::<String>(), load)
            .start()
            .await
            .unwrap();
        fleet.push((router, handle, r));
    }
    let a = fleet[0].2.clone();
    let done = a.deploy("v3").await.unwrap();
    assert!(done.changed);
    for (router, handle, _) in &fleet {
        until("green loaded v3", || {
            handle.version(Color::Green).as_str() == "v3"
        })
        .await;
        let req = Request::get("/")
            .header("x-color", "green")
            .body(String::new())
            .unwrap();
        let body = router.clone().oneshot(req).await.unwrap().into_body();
        let body = http_body_util::BodyExt::collect(body).await.unwrap();
        assert_eq!(body.to_bytes(), "v3", "the loaded service answers");
    }
    until("every replica reports green v3 ready", || {
        let fleet = a.fleet();
        fleet.len() == 3
            && fleet.iter().all(|f| {
                let v = f.version(Color::Green);
                v.version == "v3" && v.ready
            })
    })
    .await;
    let promoted = a.promote().await.unwrap();
    converged(
        &fleet.iter().map(|(_, _, r)| r.clone()).collect::<Vec<_>>(),
        promoted.revision,
    )
    .await;
    for (_, handle, _) in &fleet {
        assert_eq!(handle.active(), Color::Green);
    }
}
