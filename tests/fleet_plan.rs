//! Fleet-wide plans on the in-memory store (the same on a real etcd is in
//! the `tower-rollout-etcd` crate's `fleet_plan` test): gates judge the sum
//! of every replica's window, a candidate failing on one replica of three
//! is aborted on all three, the driver's death hands the plan to another
//! replica at the stored phase with no step run twice, a driver cut off
//! alone is replaced and stands down when it is back, and an abort made
//! while the store is away is written when it is back.
#![cfg(feature = "store")]
mod fleet_cases;

use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use http::{Request, Response};
use serde_json::json;
use tower::service_fn;
use tower_rollout::store::{MemoryStore, PlanAbort, Replica, StoredPlanState, SyncError};
use tower_rollout::{BlueGreenRouter, Color};

use fleet_cases::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_candidate_failing_on_one_replica_of_three_is_aborted_on_all_three() {
    failing_on_one_of_three(vec![MemoryStore::new(); 3]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_the_driver_dies_another_replica_goes_on_from_the_stored_phase() {
    driver_dies_mid_canary(vec![MemoryStore::new(); 3]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_failover_a_failing_candidate_is_still_aborted_everywhere() {
    failing_after_a_failover(vec![MemoryStore::new(); 3]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gate_reaches_its_minimum_sample_from_the_whole_fleet() {
    let store = MemoryStore::new();
    let nodes = fleet(vec![store.clone(); 3]).await;
    // A 100% step, so every request is the candidate's; 40 requests per
    // replica: none reaches the gate's 100 alone, the three together do.
    let doc = json!({
        "steps": [{ "split": 1.0, "bake_seconds": 1 }],
        "interval_ms": 100,
        "gates": [{ "type": "error_rate", "max": 0.05, "min_sample": 100 }],
    });
    start(&nodes[1].replica, &doc).await;
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn while_the_store_is_away_the_plan_freezes_and_an_abort_is_written_later() {
    let store = MemoryStore::new();
    let nodes = fleet(vec![store.clone(); 3]).await;
    let doc = json!({
        "steps": [
            { "split": 0.2, "bake_seconds": 1 },
            { "split": 0.4, "bake_seconds": 1 },
        ],
        "interval_ms": 100,
    });
    start(&nodes[0].replica, &doc).await;
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
    let nodes = fleet(vec![store.clone(); 2]).await;
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
    start(&nodes[0].replica, &doc).await;
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
    let nodes = fleet(vec![store.clone(); 2]).await;
    assert!(matches!(
        nodes[0].replica.pause_plan().await,
        Err(SyncError::NoPlan)
    ));
    let doc = json!({ "steps": [{ "split": 0.2, "bake_seconds": 60 }] });
    start(&nodes[0].replica, &doc).await;
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
    start(&first.replica, &doc).await;
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
