//! etcd's own authentication and RBAC: a user with read-write on the
//! prefix works (and keeps working after etcd restarts and forgets its
//! tokens); a wrong password, no user, or a key outside the user's
//! permission are `Unavailable` with a reason.

mod support;

use bytes::Bytes;
use etcd_client::Permission;
use tower_rollout::store::StateStore;
use tower_rollout_etcd::testing::EtcdServer;
use tower_rollout_etcd::EtcdStore;

use support::{change, etcd, options, put, raw, unavailable};

/// Turns etcd's authentication on, with a `rollout` user (password
/// `rollout-pw`) allowed to read and write `/tower-rollout/` only.
async fn with_auth(etcd: &EtcdServer) {
    let mut client = raw(etcd).await;
    client.user_add("root", "root-pw", None).await.unwrap();
    client.user_grant_role("root", "root").await.unwrap();
    client.role_add("rollout").await.unwrap();
    let prefix = Permission::read_write("/tower-rollout/").with_prefix();
    client
        .role_grant_permission("rollout", prefix)
        .await
        .unwrap();
    client
        .user_add("rollout", "rollout-pw", None)
        .await
        .unwrap();
    client.user_grant_role("rollout", "rollout").await.unwrap();
    client.auth_enable().await.unwrap();
}

async fn as_user(etcd: &EtcdServer, password: &str, prefix: &str) -> EtcdStore {
    let options = options().user("rollout", password).prefix(prefix);
    EtcdStore::connect([etcd.endpoint()], options)
        .await
        .unwrap()
}

#[tokio::test]
async fn a_user_with_read_write_on_the_prefix_works_also_after_a_restart() {
    let mut etcd = etcd();
    with_auth(&etcd).await;
    let store = as_user(&etcd, "rollout-pw", "/tower-rollout/").await;
    let key = "models/iris/state";
    let r1 = store
        .compare_and_set(key, 0, Bytes::from("v1"))
        .await
        .unwrap();
    let mut changes = store.watch(key, r1).await.unwrap();
    let r2 = store
        .compare_and_set(key, r1, Bytes::from("v2"))
        .await
        .unwrap();
    assert_eq!(change(&mut changes).await, put("v2", r2));

    // etcd's simple tokens do not survive a restart: the store
    // authenticates again by itself.
    etcd.restart().unwrap();
    assert_eq!(store.get(key).await, Ok(Some(put("v2", r2))));
    let r3 = store
        .compare_and_set(key, r2, Bytes::from("v3"))
        .await
        .unwrap();
    let mut resumed = store.watch(key, r2).await.unwrap();
    assert_eq!(change(&mut resumed).await, put("v3", r3));
}

#[tokio::test]
async fn wrong_credentials_no_credentials_and_keys_beyond_the_permission_are_refused() {
    let etcd = etcd();
    with_auth(&etcd).await;
    let key = "models/iris/state";

    let wrong = as_user(&etcd, "not-the-password", "/tower-rollout/").await;
    let reason = unavailable(wrong.get(key).await);
    assert!(reason.contains("authenticating as rollout"), "{reason}");
    assert!(reason.contains("authentication failed"), "{reason}");
    let reason = unavailable(wrong.compare_and_set(key, 0, Bytes::from("x")).await);
    assert!(reason.contains("authenticating as rollout"), "{reason}");

    let anonymous = support::store(&etcd).await;
    unavailable(anonymous.get(key).await);
    unavailable(anonymous.compare_and_set(key, 0, Bytes::from("x")).await);

    let elsewhere = as_user(&etcd, "rollout-pw", "/other/").await;
    let reason = unavailable(elsewhere.compare_and_set(key, 0, Bytes::from("x")).await);
    assert!(reason.contains("permission denied"), "{reason}");
    let reason = unavailable(elsewhere.get(key).await);
    assert!(reason.contains("permission denied"), "{reason}");
    let refused = match elsewhere.watch(key, 0).await {
        Err(err) => Err::<(), _>(err),
        Ok(mut stream) => Err(support::next(&mut stream).await.unwrap().unwrap_err()),
    };
    let reason = unavailable(refused);
    assert!(reason.contains("permission denied"), "{reason}");

    // Nothing was written by any of them.
    let good = as_user(&etcd, "rollout-pw", "/tower-rollout/").await;
    assert_eq!(good.get(key).await, Ok(None));
}
