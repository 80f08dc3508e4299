//! One set of checks, through the `StateStore` trait only, run against the
//! reference `MemoryStore` and against `EtcdStore` on a real etcd: what a
//! replica can tell about its store is the same for both.

mod support;

use bytes::Bytes;
use etcd_client::CompactionOptions;
use tower_rollout::store::{Entry, MemoryStore, StateStore, StoreError};
use tower_rollout_etcd::testing::EtcdServer;
use tower_rollout_etcd::EtcdStore;

use support::{change, next, put, unavailable, watch_error};

/// What the checks need beyond the trait: what an operator or an outage
/// does to a store.
trait Harness {
    type Store: StateStore;
    fn store(&self) -> &Self::Store;
    /// Deletes the key by hand; returns the revision of the delete.
    async fn delete(&mut self, key: &str) -> u64;
    /// Forgets the history up to the current revision.
    async fn compact(&mut self);
    /// Cuts the store off.
    async fn go_down(&mut self);
    /// Brings it back, with its contents.
    async fn come_back(&mut self);
}

struct Memory(MemoryStore);

impl Harness for Memory {
    type Store = MemoryStore;
    fn store(&self) -> &MemoryStore {
        &self.0
    }
    async fn delete(&mut self, key: &str) -> u64 {
        self.0.put(key, None)
    }
    async fn compact(&mut self) {
        self.0.compact();
    }
    async fn go_down(&mut self) {
        self.0.set_available(false);
    }
    async fn come_back(&mut self) {
        self.0.set_available(true);
    }
}

struct Etcd {
    server: EtcdServer,
    store: EtcdStore,
    raw: etcd_client::Client,
}

impl Harness for Etcd {
    type Store = EtcdStore;
    fn store(&self) -> &EtcdStore {
        &self.store
    }
    async fn delete(&mut self, key: &str) -> u64 {
        let key = self.store.etcd_key(key);
        let deleted = self.raw.delete(key, None).await.unwrap();
        deleted.header().unwrap().revision() as u64
    }
    async fn compact(&mut self) {
        let now = self.raw.get("/", None).await.unwrap();
        let revision = now.header().unwrap().revision();
        let physical = Some(CompactionOptions::new().with_physical());
        self.raw.compact(revision, physical).await.unwrap();
    }
    async fn go_down(&mut self) {
        self.server.stop().unwrap();
    }
    async fn come_back(&mut self) {
        self.server.restart().unwrap();
    }
}

#[tokio::test]
async fn the_memory_store_keeps_the_contract() {
    semantics(&mut Memory(MemoryStore::new())).await;
}

#[tokio::test]
async fn the_etcd_store_keeps_the_same_contract() {
    let server = support::etcd();
    let store = support::store(&server).await;
    let raw = support::raw(&server).await;
    semantics(&mut Etcd { server, store, raw }).await;
}

/// Everything a replica relies on, in the order a replica meets it.
async fn semantics<H: Harness>(h: &mut H) {
    let key = "models/iris/state";
    let other = "models/other/state";

    // Compare-and-set: create, update, typed conflicts with nothing
    // written.
    assert_eq!(h.store().get(key).await, Ok(None));
    let r1 = h
        .store()
        .compare_and_set(key, 0, Bytes::from("v1"))
        .await
        .unwrap();
    assert!(r1 > 0);
    assert_eq!(h.store().get(key).await, Ok(Some(put("v1", r1))));
    assert_eq!(
        h.store().compare_and_set(key, 0, Bytes::from("x")).await,
        Err(StoreError::Conflict {
            expected: 0,
            current: r1
        })
    );
    let r2 = h
        .store()
        .compare_and_set(key, r1, Bytes::from("v2"))
        .await
        .unwrap();
    assert!(r2 > r1);
    assert_eq!(
        h.store().compare_and_set(key, r1, Bytes::from("x")).await,
        Err(StoreError::Conflict {
            expected: r1,
            current: r2
        })
    );
    assert_eq!(h.store().get(key).await, Ok(Some(put("v2", r2))));

    // One revision counter for the whole store.
    let o1 = h
        .store()
        .compare_and_set(other, 0, Bytes::from("o"))
        .await
        .unwrap();
    assert!(o1 > r2);

    // A watch: every change of its key after the revision, in order, those
    // written before its first poll included; not the other key's.
    let mut changes = h.store().watch(key, r1).await.unwrap();
    let r3 = h
        .store()
        .compare_and_set(key, r2, Bytes::from("v3"))
        .await
        .unwrap();
    h.store()
        .compare_and_set(other, o1, Bytes::from("p"))
        .await
        .unwrap();
    assert!(r3 > o1);
    assert_eq!(change(&mut changes).await, put("v2", r2));
    assert_eq!(change(&mut changes).await, put("v3", r3));

    // A delete by hand: a change without a value, then no key.
    let deleted = h.delete(key).await;
    assert_eq!(
        change(&mut changes).await,
        Entry {
            value: None,
            revision: deleted
        }
    );
    assert_eq!(h.store().get(key).await, Ok(None));
    assert_eq!(
        h.store().compare_and_set(key, r3, Bytes::from("x")).await,
        Err(StoreError::Conflict {
            expected: r3,
            current: 0
        })
    );
    let r4 = h
        .store()
        .compare_and_set(key, 0, Bytes::from("v4"))
        .await
        .unwrap();
    assert_eq!(change(&mut changes).await, put("v4", r4));
    drop(changes);

    // Compaction: a watch from before it is told so; get still works, and
    // a watch from the key's revision carries on.
    h.compact().await;
    let compacted = match watch_error(h.store(), key, r1).await {
        StoreError::Compacted { compacted } => compacted,
        other => panic!("expected Compacted, got {other:?}"),
    };
    assert!(compacted >= r4, "{compacted} < {r4}");
    let entry = h.store().get(key).await.unwrap().unwrap();
    assert_eq!(entry, put("v4", r4));
    let mut changes = h.store().watch(key, entry.revision).await.unwrap();
    let mut from_compacted = h.store().watch(key, compacted).await.unwrap();
    let r5 = h
        .store()
        .compare_and_set(key, r4, Bytes::from("v5"))
        .await
        .unwrap();
    assert_eq!(change(&mut changes).await, put("v5", r5));
    assert_eq!(change(&mut from_compacted).await, put("v5", r5));
    drop(from_compacted);

    // An outage: the open watch says so once and ends; calls fail; nothing
    // is lost, and a watch from the last revision seen carries on after.
    h.go_down().await;
    unavailable(next(&mut changes).await.expect("an item"));
    assert!(next(&mut changes).await.is_none(), "the stream ends");
    unavailable(h.store().get(key).await);
    unavailable(h.store().compare_and_set(key, r5, Bytes::from("x")).await);
    unavailable(h.store().watch(key, r5).await.map(|_| ()));
    h.come_back().await;
    assert_eq!(h.store().get(key).await, Ok(Some(put("v5", r5))));
    let r6 = h
        .store()
        .compare_and_set(key, r5, Bytes::from("v6"))
        .await
        .unwrap();
    let mut resumed = h.store().watch(key, r5).await.unwrap();
    assert_eq!(change(&mut resumed).await, put("v6", r6));
}

#[tokio::test]
async fn leases_behave_the_same_in_memory_and_in_etcd() {
    leases(&MemoryStore::new()).await;
    let server = support::etcd();
    leases(&support::store(&server).await).await;
}

/// Leased keys: listed while the lease is refreshed, gone once it expires,
/// a put under an expired lease refused.
async fn leases<S: StateStore>(store: &S) {
    use std::time::{Duration, Instant};
    let ttl = Duration::from_secs(2);
    let kept = store.grant(ttl).await.unwrap();
    let dropped = store.grant(ttl).await.unwrap();
    store
        .put_leased("models/iris/replicas/a", Bytes::from("a"), kept)
        .await
        .unwrap();
    store
        .put_leased("models/iris/replicas/b", Bytes::from("b"), dropped)
        .await
        .unwrap();
    store
        .compare_and_set("models/iris/state", 0, Bytes::from("s"))
        .await
        .unwrap();
    let keys = |listed: Vec<(String, Entry)>| -> Vec<String> {
        listed.into_iter().map(|(k, _)| k).collect()
    };
    let listed = keys(store.list("models/iris/replicas/").await.unwrap());
    assert_eq!(listed, ["models/iris/replicas/a", "models/iris/replicas/b"]);
    // Refresh one lease until the other has expired (etcd expires leases
    // on its own schedule: up to a second or so past the TTL).
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        store.refresh(kept).await.unwrap();
        let listed = keys(store.list("models/iris/replicas/").await.unwrap());
        if listed == ["models/iris/replicas/a"] {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "b's lease never expired: {listed:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(
        store.refresh(dropped).await,
        Err(StoreError::LeaseExpired { lease: dropped })
    );
    assert_eq!(
        store
            .put_leased("models/iris/replicas/b", Bytes::from("b"), dropped)
            .await,
        Err(StoreError::LeaseExpired { lease: dropped })
    );
    // The state key, not leased, stays.
    assert!(store.get("models/iris/state").await.unwrap().is_some());
}

#[tokio::test]
async fn an_election_behaves_the_same_in_memory_and_in_etcd() {
    election(&MemoryStore::new()).await;
    let server = support::etcd();
    election(&support::store(&server).await).await;
}

/// `create_leased`: the first writer wins, the second gets a conflict with
/// the key's revision, an expired lease is refused, and once the winner's
/// lease expires the key is free for the next.
async fn election<S: StateStore>(store: &S) {
    use std::time::{Duration, Instant};
    let ttl = Duration::from_secs(2);
    let a = store.grant(ttl).await.unwrap();
    let b = store.grant(Duration::from_secs(30)).await.unwrap();
    let key = "models/iris/driver";
    let won = store.create_leased(key, Bytes::from("a"), a).await.unwrap();
    assert_eq!(
        store.create_leased(key, Bytes::from("b"), b).await,
        Err(StoreError::Conflict {
            expected: 0,
            current: won
        })
    );
    let held = store.get(key).await.unwrap().unwrap();
    assert_eq!(
        (held.value.as_deref(), held.revision),
        (Some(&b"a"[..]), won)
    );
    // a stops refreshing: its key goes with its lease, and b wins.
    let deadline = Instant::now() + Duration::from_secs(10);
    let term = loop {
        match store.create_leased(key, Bytes::from("b"), b).await {
            Ok(term) => break term,
            Err(StoreError::Conflict { .. }) => {}
            Err(e) => panic!("{e}"),
        }
        assert!(Instant::now() < deadline, "a's lease never expired");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(term > won);
    assert_eq!(
        store
            .create_leased("models/iris/other", Bytes::from("a"), a)
            .await,
        Err(StoreError::LeaseExpired { lease: a })
    );
}
