//! Watches on a real etcd: every change after a revision, resuming,
//! deletes, compaction.

mod support;

use bytes::Bytes;
use etcd_client::CompactionOptions;
use tower_rollout::store::{Entry, StateStore, StoreError};

use support::{change, etcd, put, raw, store, watch_error};

#[tokio::test]
async fn a_watch_sees_every_change_after_its_revision_even_before_its_first_poll() {
    let etcd = etcd();
    let store = store(&etcd).await;
    let key = "models/iris/state";
    let r1 = store
        .compare_and_set(key, 0, Bytes::from("v1"))
        .await
        .unwrap();
    let r2 = store
        .compare_and_set(key, r1, Bytes::from("v2"))
        .await
        .unwrap();

    let mut changes = store.watch(key, r1).await.unwrap();
    // Written after the watch opened but before anything polled it.
    let r3 = store
        .compare_and_set(key, r2, Bytes::from("v3"))
        .await
        .unwrap();
    // Another key's writes are not this key's changes.
    store
        .compare_and_set("other", 0, Bytes::from("x"))
        .await
        .unwrap();
    let r4 = store
        .compare_and_set(key, r3, Bytes::from("v4"))
        .await
        .unwrap();

    assert_eq!(
        change(&mut changes).await,
        put("v2", r2),
        "the change after r1"
    );
    assert_eq!(change(&mut changes).await, put("v3", r3));
    assert_eq!(change(&mut changes).await, put("v4", r4));
}

#[tokio::test]
async fn a_watch_resumes_from_any_revision_and_from_nothing() {
    let etcd = etcd();
    let store = store(&etcd).await;
    let key = "models/iris/state";
    let mut revisions = Vec::new();
    let mut last = 0;
    for value in ["a", "b", "c", "d"] {
        last = store
            .compare_and_set(key, last, Bytes::from(value))
            .await
            .unwrap();
        revisions.push(last);
    }

    // From 0: the whole history, the create included.
    let mut all = store.watch(key, 0).await.unwrap();
    for (value, revision) in ["a", "b", "c", "d"].iter().zip(&revisions) {
        assert_eq!(change(&mut all).await, put(value, *revision));
    }
    // From the third write: only the fourth.
    let mut tail = store.watch(key, revisions[2]).await.unwrap();
    assert_eq!(change(&mut tail).await, put("d", revisions[3]));
    // From the last: nothing until the next write.
    let mut fresh = store.watch(key, last).await.unwrap();
    let next = store
        .compare_and_set(key, last, Bytes::from("e"))
        .await
        .unwrap();
    assert_eq!(change(&mut fresh).await, put("e", next));
    assert_eq!(change(&mut tail).await, put("e", next), "still open");
}

#[tokio::test]
async fn a_delete_is_a_change_without_a_value() {
    let etcd = etcd();
    let store = store(&etcd).await;
    let key = "models/iris/state";
    let created = store
        .compare_and_set(key, 0, Bytes::from("v1"))
        .await
        .unwrap();
    let mut changes = store.watch(key, created).await.unwrap();

    let mut kv = raw(&etcd).await.kv_client();
    let deleted = kv.delete(store.etcd_key(key), None).await.unwrap();
    let deleted_at = deleted.header().unwrap().revision() as u64;
    let again = store
        .compare_and_set(key, 0, Bytes::from("v2"))
        .await
        .unwrap();

    assert_eq!(
        change(&mut changes).await,
        Entry {
            value: None,
            revision: deleted_at
        }
    );
    assert_eq!(change(&mut changes).await, put("v2", again));
}

#[tokio::test]
async fn a_watch_from_compacted_history_is_told_so_and_get_still_works() {
    let etcd = etcd();
    let store = store(&etcd).await;
    let key = "models/iris/state";
    let mut last = 0;
    let mut revisions = Vec::new();
    for value in ["a", "b", "c"] {
        last = store
            .compare_and_set(key, last, Bytes::from(value))
            .await
            .unwrap();
        revisions.push(last);
    }
    let mut kv = raw(&etcd).await.kv_client();
    kv.compact(last as i64, Some(CompactionOptions::new().with_physical()))
        .await
        .unwrap();

    // Every revision before `last` is gone: a watch after the first write
    // cannot be served.
    assert_eq!(
        watch_error(&store, key, revisions[0]).await,
        StoreError::Compacted { compacted: last }
    );
    assert_eq!(
        watch_error(&store, key, 0).await,
        StoreError::Compacted { compacted: last }
    );
    // What a replica then does: read the key, watch from its revision.
    let entry = store.get(key).await.unwrap().unwrap();
    assert_eq!(entry, put("c", last));
    let mut changes = store.watch(key, entry.revision).await.unwrap();
    let next = store
        .compare_and_set(key, last, Bytes::from("d"))
        .await
        .unwrap();
    assert_eq!(change(&mut changes).await, put("d", next));
}

#[tokio::test]
async fn many_writes_arrive_in_order_without_gaps() {
    let etcd = etcd();
    let store = store(&etcd).await;
    let key = "models/iris/state";
    let start = store
        .compare_and_set(key, 0, Bytes::from("0"))
        .await
        .unwrap();
    let mut changes = store.watch(key, start).await.unwrap();
    let writer = store.clone();
    let written = tokio::spawn(async move {
        let mut last = start;
        let mut revisions = Vec::new();
        for i in 1..=200 {
            let value = Bytes::from(i.to_string());
            last = writer.compare_and_set(key, last, value).await.unwrap();
            revisions.push(last);
        }
        revisions
    });
    let mut seen = Vec::new();
    for i in 1..=200 {
        let entry = change(&mut changes).await;
        assert_eq!(entry.value, Some(Bytes::from(i.to_string())));
        seen.push(entry.revision);
    }
    assert_eq!(seen, written.await.unwrap());
}
