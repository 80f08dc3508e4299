//! [`MemoryStore`]: the store in one process's memory.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::stream;
use tokio::sync::watch;

use super::api::{Entry, StateStore, StoreError, StoreFuture, WatchStream};

/// Writes kept for watches to resume from; older ones are compacted.
const HISTORY: usize = 4096;

/// A [`StateStore`] in memory: what one process shares between routers (and
/// what tests and demos use in place of etcd). Clones share the same store.
///
/// It behaves like etcd where replicas can tell: one revision counter for
/// the whole store, compare-and-set on a key's revision, watches that
/// resume from a revision and report [`StoreError::Compacted`] when that
/// history is gone. [`set_available`](Self::set_available),
/// [`compact`](Self::compact) and [`put`](Self::put) let a test cut it off,
/// compact it, or write anything into a key.
#[derive(Clone)]
pub struct MemoryStore {
    inner: Arc<Inner>,
}

struct Inner {
    mem: Mutex<Mem>,
    /// The store's revision, for watches to wait on.
    revision: watch::Sender<u64>,
}

struct Mem {
    revision: u64,
    /// The oldest revision watches can resume after.
    compacted: u64,
    keys: HashMap<String, Entry>,
    history: VecDeque<(String, Entry)>,
    available: bool,
    /// Bumped when the store goes down: open watches end.
    outage: u64,
    /// Leases: their time to live and when they expire.
    leases: HashMap<u64, Lease>,
    next_lease: u64,
    /// The lease each leased key is under.
    leased: HashMap<String, u64>,
}

struct Lease {
    ttl: Duration,
    expires: Instant,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        MemoryStore {
            inner: Arc::new(Inner {
                mem: Mutex::new(Mem {
                    revision: 0,
                    compacted: 0,
                    keys: HashMap::new(),
                    history: VecDeque::new(),
                    available: true,
                    outage: 0,
                    leases: HashMap::new(),
                    next_lease: 1,
                    leased: HashMap::new(),
                }),
                revision: watch::channel(0).0,
            }),
        }
    }

    /// The state, with expired leases' keys deleted first (expiry is
    /// applied at the next call on the store).
    fn lock(&self) -> MutexGuard<'_, Mem> {
        let mut mem = self.inner.mem.lock().unwrap_or_else(|e| e.into_inner());
        if mem.expire(Instant::now()) {
            let revision = mem.revision;
            self.inner.revision.send_replace(revision);
        }
        mem
    }

    /// Cuts the store off (`false`): every call fails with
    /// [`StoreError::Unavailable`] and open watches end with it; `true`
    /// brings it back, with its contents.
    pub fn set_available(&self, available: bool) {
        let mut mem = self.lock();
        if mem.available && !available {
            mem.outage += 1;
        }
        mem.available = available;
        drop(mem);
        // Wake watches so that they see the outage.
        self.inner.revision.send_modify(|_| {});
    }

    /// Forgets the history up to the current revision: a watch asked to
    /// resume from before it gets [`StoreError::Compacted`].
    pub fn compact(&self) {
        let mut mem = self.lock();
        mem.compacted = mem.revision;
        mem.history.clear();
    }

    /// Writes `value` into `key` unconditionally (or deletes it, `None`),
    /// as an operator with `etcdctl put` would; returns the revision.
    pub fn put(&self, key: &str, value: Option<Bytes>) -> u64 {
        let mut mem = self.lock();
        let revision = mem.write(key, value);
        drop(mem);
        self.inner.revision.send_replace(revision);
        revision
    }
}

/// `now + ttl`, or a year on for a TTL beyond what `Instant` holds.
fn far(now: Instant, ttl: Duration) -> Instant {
    now.checked_add(ttl)
        .or_else(|| now.checked_add(Duration::from_secs(365 * 24 * 3600)))
        .unwrap_or(now)
}

impl Default for MemoryStore {
    fn default() -> Self {
        MemoryStore::new()
    }
}

impl Mem {
    fn check(&self) -> Result<(), StoreError> {
        if self.available {
            Ok(())
        } else {
            Err(StoreError::Unavailable {
                reason: "the memory store is set unavailable".into(),
            })
        }
    }

    /// Deletes the keys of expired leases; true when it deleted any.
    fn expire(&mut self, now: Instant) -> bool {
        let expired: Vec<u64> = self
            .leases
            .iter()
            .filter(|(_, l)| l.expires <= now)
            .map(|(id, _)| *id)
            .collect();
        let mut deleted = false;
        for id in expired {
            self.leases.remove(&id);
            let keys: Vec<String> = self
                .leased
                .iter()
                .filter(|(_, l)| **l == id)
                .map(|(k, _)| k.clone())
                .collect();
            for key in keys {
                self.leased.remove(&key);
                self.write(&key, None);
                deleted = true;
            }
        }
        deleted
    }

    fn write(&mut self, key: &str, value: Option<Bytes>) -> u64 {
        // A plain write takes the key out of its lease.
        self.leased.remove(key);
        self.revision += 1;
        let entry = Entry {
            value,
            revision: self.revision,
        };
        self.keys.insert(key.to_owned(), entry.clone());
        if self.history.len() == HISTORY {
            if let Some((_, old)) = self.history.pop_front() {
                self.compacted = old.revision;
            }
        }
        self.history.push_back((key.to_owned(), entry));
        self.revision
    }

    /// The key's revision, 0 when absent or deleted.
    fn revision_of(&self, key: &str) -> u64 {
        match self.keys.get(key) {
            Some(Entry {
                value: Some(_),
                revision,
            }) => *revision,
            _ => 0,
        }
    }

    /// The first change of `key` after `after`.
    fn next_change(&self, key: &str, after: u64) -> Result<Option<Entry>, StoreError> {
        if after < self.compacted {
            return Err(StoreError::Compacted {
                compacted: self.compacted,
            });
        }
        Ok(self
            .history
            .iter()
            .find(|(k, e)| k == key && e.revision > after)
            .map(|(_, e)| e.clone()))
    }
}

impl MemoryStore {
    /// A compare-and-set of `key` at `expected`, on the condition too that
    /// the guard key is at its revision, when given.
    fn cas(
        &self,
        key: &str,
        expected: u64,
        value: Bytes,
        guard: Option<(&str, u64)>,
    ) -> Result<u64, StoreError> {
        let mut mem = self.lock();
        mem.check()?;
        let current = mem.revision_of(key);
        let guarded = guard.is_none_or(|(g, at)| mem.revision_of(g) == at);
        if current != expected || !guarded {
            return Err(StoreError::Conflict { expected, current });
        }
        let revision = mem.write(key, Some(value));
        drop(mem);
        self.inner.revision.send_replace(revision);
        Ok(revision)
    }
}

impl StateStore for MemoryStore {
    fn get<'a>(&'a self, key: &'a str) -> StoreFuture<'a, Option<Entry>> {
        Box::pin(async move {
            let mem = self.lock();
            mem.check()?;
            Ok(mem.keys.get(key).filter(|e| e.value.is_some()).cloned())
        })
    }

    fn compare_and_set<'a>(
        &'a self,
        key: &'a str,
        expected: u64,
        value: Bytes,
    ) -> StoreFuture<'a, u64> {
        Box::pin(async move { self.cas(key, expected, value, None) })
    }

    fn grant(&self, ttl: Duration) -> StoreFuture<'_, u64> {
        Box::pin(async move {
            let mut mem = self.lock();
            mem.check()?;
            let ttl = ttl.max(Duration::from_secs(1));
            let id = mem.next_lease;
            mem.next_lease += 1;
            let expires = far(Instant::now(), ttl);
            mem.leases.insert(id, Lease { ttl, expires });
            Ok(id)
        })
    }

    fn refresh(&self, lease: u64) -> StoreFuture<'_, ()> {
        Box::pin(async move {
            let mut mem = self.lock();
            mem.check()?;
            match mem.leases.get_mut(&lease) {
                Some(l) => {
                    l.expires = far(Instant::now(), l.ttl);
                    Ok(())
                }
                None => Err(StoreError::LeaseExpired { lease }),
            }
        })
    }

    fn put_leased<'a>(&'a self, key: &'a str, value: Bytes, lease: u64) -> StoreFuture<'a, u64> {
        Box::pin(async move {
            let mut mem = self.lock();
            mem.check()?;
            if !mem.leases.contains_key(&lease) {
                return Err(StoreError::LeaseExpired { lease });
            }
            let revision = mem.write(key, Some(value));
            mem.leased.insert(key.to_owned(), lease);
            drop(mem);
            self.inner.revision.send_replace(revision);
            Ok(revision)
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
        Box::pin(async move { self.cas(key, expected, value, Some((guard, guard_revision))) })
    }

    fn create_leased<'a>(&'a self, key: &'a str, value: Bytes, lease: u64) -> StoreFuture<'a, u64> {
        Box::pin(async move {
            let mut mem = self.lock();
            mem.check()?;
            if !mem.leases.contains_key(&lease) {
                return Err(StoreError::LeaseExpired { lease });
            }
            let current = mem.revision_of(key);
            if current != 0 {
                return Err(StoreError::Conflict {
                    expected: 0,
                    current,
                });
            }
            let revision = mem.write(key, Some(value));
            mem.leased.insert(key.to_owned(), lease);
            drop(mem);
            self.inner.revision.send_replace(revision);
            Ok(revision)
        })
    }

    fn list<'a>(&'a self, prefix: &'a str) -> StoreFuture<'a, Vec<(String, Entry)>> {
        Box::pin(async move {
            let mem = self.lock();
            mem.check()?;
            let found: BTreeMap<&String, &Entry> = mem
                .keys
                .iter()
                .filter(|(k, e)| k.starts_with(prefix) && e.value.is_some())
                .collect();
            Ok(found
                .into_iter()
                .map(|(k, e)| (k.clone(), e.clone()))
                .collect())
        })
    }

    fn watch<'a>(&'a self, key: &'a str, after: u64) -> StoreFuture<'a, WatchStream> {
        Box::pin(async move {
            let outage = {
                let mem = self.lock();
                mem.check()?;
                mem.next_change(key, after)?;
                mem.outage
            };
            let state = Watching {
                store: self.clone(),
                key: key.to_owned(),
                after,
                outage,
                rx: self.inner.revision.subscribe(),
                done: false,
            };
            let changes = stream::unfold(state, |mut w| async move {
                let item = w.next().await?;
                Some((item, w))
            });
            Ok(Box::pin(changes) as WatchStream)
        })
    }
}

/// One open watch.
struct Watching {
    store: MemoryStore,
    key: String,
    after: u64,
    /// The outage count when the watch opened: a later outage ends it.
    outage: u64,
    rx: watch::Receiver<u64>,
    done: bool,
}

impl Watching {
    async fn next(&mut self) -> Option<Result<Entry, StoreError>> {
        if self.done {
            return None;
        }
        loop {
            // Marked seen before looking, so that no write is missed.
            self.rx.borrow_and_update();
            {
                let mem = self.store.lock();
                if !mem.available || mem.outage != self.outage {
                    self.done = true;
                    return Some(Err(StoreError::Unavailable {
                        reason: "the watch's connection was lost".into(),
                    }));
                }
                match mem.next_change(&self.key, self.after) {
                    Ok(Some(entry)) => {
                        self.after = entry.revision;
                        return Some(Ok(entry));
                    }
                    // Caught up: nothing of this key before the store's
                    // revision is left to send, so a later compaction of
                    // that history does not concern this watch (as etcd
                    // keeps a synced watch open).
                    Ok(None) => self.after = self.after.max(mem.revision),
                    Err(e) => {
                        self.done = true;
                        return Some(Err(e));
                    }
                }
            }
            if self.rx.changed().await.is_err() {
                return None;
            }
        }
    }
}

impl std::fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mem = self.lock();
        f.debug_struct("MemoryStore")
            .field("revision", &mem.revision)
            .field("keys", &mem.keys.len())
            .field("available", &mem.available)
            .finish()
    }
}
