//! The store interface: a compare-and-set register per key, with a watch
//! that resumes from a revision. Implemented in memory here
//! ([`MemoryStore`](super::MemoryStore)) and on etcd by the
//! `tower-rollout-etcd` crate.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use bytes::Bytes;
use futures_util::stream::Stream;

/// A future returned by a [`StateStore`].
pub type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send + 'a>>;

/// The changes of one key, in revision order (see [`StateStore::watch`]).
pub type WatchStream = Pin<Box<dyn Stream<Item = Result<Entry, StoreError>> + Send>>;

/// One key's value at a revision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The value; `None` when the key was deleted at `revision`.
    pub value: Option<Bytes>,
    /// The store's revision of this value (etcd's `mod_revision`): it grows
    /// with every write to the store, so a later write has a larger one.
    pub revision: u64,
}

/// Why a store call failed.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum StoreError {
    /// A compare-and-set found the key at another revision: someone else
    /// wrote it first. Nothing was written.
    Conflict {
        /// The revision the caller expected (0: no key).
        expected: u64,
        /// The key's revision now (0: no key).
        current: u64,
    },
    /// The revision a watch was asked to start after is no longer in the
    /// store's history (compacted): read the key again, then watch from its
    /// revision.
    Compacted {
        /// The oldest revision still kept: a watch from it (or from any
        /// later revision) can be served.
        compacted: u64,
    },
    /// The store could not be reached or did not answer in time.
    Unavailable {
        /// What failed, for logs and status.
        reason: String,
    },
    /// The lease expired (or never existed): its keys are gone. Grant a
    /// new one.
    LeaseExpired {
        /// The lease.
        lease: u64,
    },
    /// This store does not keep leased keys (a [`StateStore`] that leaves
    /// out the lease methods): replicas then publish no reports.
    NoLeases,
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreError::Conflict { expected, current } => write!(
                f,
                "conflict: the state was expected at revision {expected} and is at {current}"
            ),
            StoreError::Compacted { compacted } => write!(
                f,
                "the store's history before revision {compacted} was compacted"
            ),
            StoreError::Unavailable { reason } => write!(f, "the store is unavailable: {reason}"),
            StoreError::LeaseExpired { lease } => write!(f, "lease {lease:x} expired"),
            StoreError::NoLeases => f.write_str("this store keeps no leased keys"),
        }
    }
}

impl std::error::Error for StoreError {}

/// Where replicas keep the state they share: a linearizable register per
/// key with compare-and-set on a revision, and a watch of its changes.
///
/// Implementations: [`MemoryStore`](super::MemoryStore) (one process:
/// tests, demos, several routers in one server) and the
/// `tower-rollout-etcd` crate's `EtcdStore`.
pub trait StateStore: Send + Sync + 'static {
    /// The key's current value, `None` when it does not exist.
    fn get<'a>(&'a self, key: &'a str) -> StoreFuture<'a, Option<Entry>>;

    /// Writes `value` when the key is still at revision `expected` (0: the
    /// key must not exist yet); returns the new revision. Otherwise
    /// [`StoreError::Conflict`], with nothing written.
    /// [`StoreError::Unavailable`] leaves the outcome unknown (on etcd, the
    /// write may have been applied before its answer was lost): read the
    /// key to know.
    fn compare_and_set<'a>(
        &'a self,
        key: &'a str,
        expected: u64,
        value: Bytes,
    ) -> StoreFuture<'a, u64>;

    /// Every change of the key with a revision above `after`, in order,
    /// including those made between this call and the stream's first poll.
    /// [`StoreError::Compacted`] (first call or later item) when that
    /// history is gone; an item [`StoreError::Unavailable`] when the
    /// connection broke (the stream then ends: watch again from the last
    /// revision seen).
    fn watch<'a>(&'a self, key: &'a str, after: u64) -> StoreFuture<'a, WatchStream>;

    /// A lease of `ttl` (whole seconds, at least one): keys written with
    /// [`put_leased`](Self::put_leased) under it are deleted once it
    /// expires, `ttl` after its last [`refresh`](Self::refresh). What a
    /// replica's report of itself lives under, so that a replica that dies
    /// leaves the fleet view by itself. Returns the lease's id.
    ///
    /// The default: [`StoreError::NoLeases`].
    fn grant(&self, ttl: Duration) -> StoreFuture<'_, u64> {
        let _ = ttl;
        Box::pin(async { Err(StoreError::NoLeases) })
    }

    /// Keeps `lease` alive for another `ttl`; [`StoreError::LeaseExpired`]
    /// once it has expired. The default: [`StoreError::NoLeases`].
    fn refresh(&self, lease: u64) -> StoreFuture<'_, ()> {
        let _ = lease;
        Box::pin(async { Err(StoreError::NoLeases) })
    }

    /// Writes `value` into `key`, whatever it held, under `lease`; returns
    /// the revision. The default: [`StoreError::NoLeases`].
    fn put_leased<'a>(&'a self, key: &'a str, value: Bytes, lease: u64) -> StoreFuture<'a, u64> {
        let _ = (key, value, lease);
        Box::pin(async { Err(StoreError::NoLeases) })
    }

    /// Writes `value` into `key` under `lease` only if the key does not
    /// exist; returns the revision. [`StoreError::Conflict`] (with the
    /// key's revision) when it exists, [`StoreError::LeaseExpired`] when
    /// the lease is gone. The election of a fleet plan's driver: the
    /// replica that created the key drives until its lease expires.
    /// The default: [`StoreError::NoLeases`].
    fn create_leased<'a>(&'a self, key: &'a str, value: Bytes, lease: u64) -> StoreFuture<'a, u64> {
        let _ = (key, value, lease);
        Box::pin(async { Err(StoreError::NoLeases) })
    }

    /// [`compare_and_set`](Self::compare_and_set), on the condition too that
    /// `guard` is still at revision `guard_revision` (its last write): in
    /// one transaction, so a write fenced by a key (a fleet-wide plan's
    /// driver writes only while its election key, won at that revision,
    /// still exists) never lands after the key is gone.
    /// [`StoreError::Conflict`] (with `key`'s revision) when either moved.
    /// A store that keeps leased keys implements this too: fleet-wide plans
    /// need both. The default: [`StoreError::NoLeases`].
    fn compare_and_set_guarded<'a>(
        &'a self,
        key: &'a str,
        expected: u64,
        value: Bytes,
        guard: &'a str,
        guard_revision: u64,
    ) -> StoreFuture<'a, u64> {
        let _ = (key, expected, value, guard, guard_revision);
        Box::pin(async { Err(StoreError::NoLeases) })
    }

    /// Every key under `prefix` that has a value, with it, in key order.
    /// The default: [`StoreError::NoLeases`] (only leased reports are
    /// listed).
    fn list<'a>(&'a self, prefix: &'a str) -> StoreFuture<'a, Vec<(String, Entry)>> {
        let _ = prefix;
        Box::pin(async { Err(StoreError::NoLeases) })
    }
}
