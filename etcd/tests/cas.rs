//! compare-and-set and get on a real etcd.

mod support;

use bytes::Bytes;
use tower_rollout::store::{StateStore, StoreError};
use tower_rollout_etcd::EtcdStore;

use support::{etcd, options, put, raw, store};

#[tokio::test]
async fn create_update_and_conflict_are_typed_and_a_loser_writes_nothing() {
    let etcd = etcd();
    let store = store(&etcd).await;
    let key = "models/iris/state";

    assert_eq!(store.get(key).await, Ok(None), "nothing there yet");
    let created = store
        .compare_and_set(key, 0, Bytes::from("v1"))
        .await
        .unwrap();
    assert!(created > 0);
    assert_eq!(store.get(key).await, Ok(Some(put("v1", created))));

    // Creating again is a conflict: the key exists at `created`.
    assert_eq!(
        store.compare_and_set(key, 0, Bytes::from("again")).await,
        Err(StoreError::Conflict {
            expected: 0,
            current: created
        })
    );

    let updated = store
        .compare_and_set(key, created, Bytes::from("v2"))
        .await
        .unwrap();
    assert!(updated > created);

    // A writer still at `created` (or at a revision never seen) loses.
    for stale in [created, updated + 100, u64::MAX] {
        assert_eq!(
            store.compare_and_set(key, stale, Bytes::from("late")).await,
            Err(StoreError::Conflict {
                expected: stale,
                current: updated
            })
        );
    }
    assert_eq!(
        store.get(key).await,
        Ok(Some(put("v2", updated))),
        "nothing written"
    );

    // And etcd holds what the store said, under the default prefix.
    let mut kv = raw(&etcd).await.kv_client();
    let got = kv
        .get("/tower-rollout/models/iris/state", None)
        .await
        .unwrap();
    let kv = &got.kvs()[0];
    assert_eq!(
        (kv.value(), kv.mod_revision()),
        (&b"v2"[..], updated as i64)
    );
    assert_eq!(kv.version(), 2, "two writes: the create and the update");
}

#[tokio::test]
async fn two_racing_writers_from_one_revision_one_wins() {
    let etcd = etcd();
    let a = store(&etcd).await;
    let b = store(&etcd).await;
    let key = "models/iris/state";
    let start = a.compare_and_set(key, 0, Bytes::from("v0")).await.unwrap();

    let (ra, rb) = tokio::join!(
        a.compare_and_set(key, start, Bytes::from("a")),
        b.compare_and_set(key, start, Bytes::from("b")),
    );
    let (winner, loser, value) = match (ra, rb) {
        (Ok(rev), Err(err)) => (rev, err, "a"),
        (Err(err), Ok(rev)) => (rev, err, "b"),
        other => panic!("exactly one writer must win: {other:?}"),
    };
    assert_eq!(
        loser,
        StoreError::Conflict {
            expected: start,
            current: winner
        }
    );
    assert_eq!(a.get(key).await, Ok(Some(put(value, winner))));
}

#[tokio::test]
async fn a_deleted_key_is_absent_and_can_be_created_again() {
    let etcd = etcd();
    let store = store(&etcd).await;
    let key = "models/iris/state";
    let created = store
        .compare_and_set(key, 0, Bytes::from("v1"))
        .await
        .unwrap();
    let mut kv = raw(&etcd).await.kv_client();
    kv.delete(store.etcd_key(key), None).await.unwrap();

    assert_eq!(store.get(key).await, Ok(None));
    assert_eq!(
        store.compare_and_set(key, created, Bytes::from("v2")).await,
        Err(StoreError::Conflict {
            expected: created,
            current: 0
        }),
        "the revision it had is gone"
    );
    let again = store
        .compare_and_set(key, 0, Bytes::from("v2"))
        .await
        .unwrap();
    assert_eq!(store.get(key).await, Ok(Some(put("v2", again))));
}

#[tokio::test]
async fn the_prefix_is_put_in_front_of_every_key_and_separates_stores() {
    let etcd = etcd();
    let prod = EtcdStore::connect([etcd.endpoint()], options().prefix("/prod/"))
        .await
        .unwrap();
    let default = store(&etcd).await;
    assert_eq!(
        prod.etcd_key("models/iris/state"),
        "/prod/models/iris/state"
    );
    assert_eq!(
        default.etcd_key("models/iris/state"),
        "/tower-rollout/models/iris/state"
    );

    let rev = prod
        .compare_and_set("models/iris/state", 0, Bytes::from("prod"))
        .await
        .unwrap();
    assert_eq!(default.get("models/iris/state").await, Ok(None));

    let mut kv = raw(&etcd).await.kv_client();
    let got = kv.get("/prod/models/iris/state", None).await.unwrap();
    assert_eq!(got.kvs()[0].value(), b"prod");
    assert_eq!(got.kvs()[0].mod_revision(), rev as i64);
}

#[tokio::test]
async fn values_are_bytes_as_given() {
    let etcd = etcd();
    let store = store(&etcd).await;
    let binary = Bytes::from(vec![0u8, 255, 10, 0, 13]);
    let rev = store
        .compare_and_set("bin", 0, binary.clone())
        .await
        .unwrap();
    let empty = store
        .compare_and_set("empty", 0, Bytes::new())
        .await
        .unwrap();
    let got = store.get("bin").await.unwrap().unwrap();
    assert_eq!((got.value, got.revision), (Some(binary), rev));
    let got = store.get("empty").await.unwrap().unwrap();
    assert_eq!(
        (got.value, got.revision),
        (Some(Bytes::new()), empty),
        "an empty value is a value, not an absent key"
    );
}
