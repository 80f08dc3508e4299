//! Shared by the tests on a real etcd.
#![allow(dead_code, unreachable_pub)]

use std::time::Duration;

use futures_util::StreamExt;
use tower_rollout::store::{Entry, StateStore, StoreError, WatchStream};
use tower_rollout_etcd::testing::EtcdServer;
use tower_rollout_etcd::{EtcdOptions, EtcdStore};

/// The request timeout of the tests' stores.
pub const TIMEOUT: Duration = Duration::from_secs(1);
/// How long a test waits for something that should happen at once.
pub const PATIENCE: Duration = Duration::from_secs(10);

/// A real etcd, or a failure that says how to install it.
pub fn etcd() -> EtcdServer {
    EtcdServer::start().unwrap_or_else(|err| panic!("cannot start etcd: {err}"))
}

/// The tests' options: a short request timeout.
pub fn options() -> EtcdOptions {
    EtcdOptions::new()
        .request_timeout(TIMEOUT)
        .connect_timeout(TIMEOUT)
}

pub async fn store(etcd: &EtcdServer) -> EtcdStore {
    EtcdStore::connect([etcd.endpoint()], options())
        .await
        .expect("connect")
}

/// etcd-client itself, for what the store does not do (compaction, writes
/// by hand as an operator would).
pub async fn raw(etcd: &EtcdServer) -> etcd_client::Client {
    let options = etcd_client::ConnectOptions::new().with_timeout(PATIENCE);
    etcd_client::Client::connect([etcd.endpoint()], Some(options))
        .await
        .expect("etcd-client connect")
}

/// A watch's error, whether the call or the first item reports it (the
/// trait allows both).
pub async fn watch_error<S: StateStore>(store: &S, key: &str, after: u64) -> StoreError {
    match store.watch(key, after).await {
        Err(err) => err,
        Ok(mut stream) => match next(&mut stream).await {
            Some(Err(err)) => err,
            other => panic!("watch from {after} of {key}: expected an error, got {other:?}"),
        },
    }
}

/// The stream's next item, within [`PATIENCE`].
pub async fn next(stream: &mut WatchStream) -> Option<Result<Entry, StoreError>> {
    tokio::time::timeout(PATIENCE, stream.next())
        .await
        .unwrap_or_else(|_| panic!("no watch item within {PATIENCE:?}"))
}

/// The next item, which must be a change.
pub async fn change(stream: &mut WatchStream) -> Entry {
    match next(stream).await {
        Some(Ok(entry)) => entry,
        other => panic!("expected a change, got {other:?}"),
    }
}

/// An entry with a value.
pub fn put(value: &'static str, revision: u64) -> Entry {
    Entry {
        value: Some(bytes::Bytes::from_static(value.as_bytes())),
        revision,
    }
}

/// The reason of an `Unavailable`, or a failure naming what came instead.
pub fn unavailable<T: std::fmt::Debug>(result: Result<T, StoreError>) -> String {
    match result {
        Err(StoreError::Unavailable { reason }) => reason,
        other => panic!("expected Unavailable, got {other:?}"),
    }
}
