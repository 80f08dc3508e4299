//! Fleet-wide plans on a real etcd (the cases are shared with the main
//! crate's `tests/fleet_plan.rs`, on the memory store): three replicas,
//! each with its own connection, elect a driver through a key under a real
//! etcd lease; a candidate failing on one replica is aborted on all three;
//! when the driver dies mid-canary another goes on from the stored phase,
//! each step entered once; and a candidate that fails after the failover
//! is still aborted everywhere.

mod support;

#[path = "../../tests/fleet_cases/mod.rs"]
mod fleet_cases;

use tower_rollout_etcd::testing::EtcdServer;
use tower_rollout_etcd::EtcdStore;

/// One connection per replica, as separate processes would have.
async fn stores(server: &EtcdServer) -> Vec<EtcdStore> {
    let mut stores = Vec::new();
    for _ in 0..3 {
        stores.push(support::store(server).await);
    }
    stores
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_candidate_failing_on_one_replica_of_three_is_aborted_on_all_three() {
    let server = support::etcd();
    fleet_cases::failing_on_one_of_three(stores(&server).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_the_driver_dies_another_replica_goes_on_from_the_stored_phase() {
    let server = support::etcd();
    fleet_cases::driver_dies_mid_canary(stores(&server).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_failover_a_failing_candidate_is_still_aborted_everywhere() {
    let server = support::etcd();
    fleet_cases::failing_after_a_failover(stores(&server).await).await;
}
