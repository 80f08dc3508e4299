//! The rollout state of `tower-rollout` replicas in etcd.
//!
//! [`EtcdStore`] implements [`tower_rollout::store::StateStore`] over
//! [etcd-client](https://docs.rs/etcd-client) (etcd's v3 API on tonic):
//!
//! - [`get`](StateStore::get) reads a key linearizably; its
//!   [`Entry::revision`] is etcd's `mod_revision`.
//! - [`compare_and_set`](StateStore::compare_and_set) is one etcd
//!   transaction: if the key's `mod_revision` is still the expected one
//!   (expected 0: the key does not exist), put the value; otherwise read the
//!   key and return [`StoreError::Conflict`] with its current revision,
//!   nothing written.
//! - [`watch`](StateStore::watch) is an etcd watch from the revision after
//!   the one given: every change since, puts and deletes, in order;
//!   [`StoreError::Compacted`] when etcd compacted that history,
//!   [`StoreError::Unavailable`] (then the end of the stream) when the
//!   connection breaks.
//!
//! Keys are stored under a prefix ([`DEFAULT_PREFIX`], `/tower-rollout/`):
//! the key `models/iris/state` is the etcd key
//! `/tower-rollout/models/iris/state`. Every call is bounded by the request
//! timeout of [`EtcdOptions`] and never panics: etcd down, slow, refusing
//! the credentials or a permission are all [`StoreError::Unavailable`] with
//! a reason naming the endpoints and the call. [`EtcdStore::connect`] does
//! not reach etcd, so a replica starts while etcd is down and its calls
//! succeed once etcd is back.
//!
//! ```
//! use bytes::Bytes;
//! use futures_util::StreamExt;
//! use tower_rollout::store::{StateStore, StoreError};
//! use tower_rollout_etcd::{EtcdOptions, EtcdStore};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! # let etcd = tower_rollout_etcd::testing::EtcdServer::start().expect("etcd");
//! # let endpoint = etcd.endpoint();
//! let store = EtcdStore::connect([endpoint], EtcdOptions::new()).await.unwrap();
//! let key = "models/iris/state";
//!
//! // Create (expected revision 0: the key must not exist), then update.
//! let created = store.compare_and_set(key, 0, Bytes::from("v1")).await.unwrap();
//! let updated = store.compare_and_set(key, created, Bytes::from("v2")).await.unwrap();
//!
//! // A writer that still expects `created` loses, and nothing is written.
//! let late = store.compare_and_set(key, created, Bytes::from("v3")).await;
//! assert_eq!(late, Err(StoreError::Conflict { expected: created, current: updated }));
//! let entry = store.get(key).await.unwrap().unwrap();
//! assert_eq!((entry.value.as_deref(), entry.revision), (Some(&b"v2"[..]), updated));
//!
//! // A watch from `created` sees the update, then what comes next.
//! let mut changes = store.watch(key, created).await.unwrap();
//! let first = changes.next().await.unwrap().unwrap();
//! assert_eq!((first.value.as_deref(), first.revision), (Some(&b"v2"[..]), updated));
//! let next = store.compare_and_set(key, updated, Bytes::from("v4")).await.unwrap();
//! assert_eq!(changes.next().await.unwrap().unwrap().revision, next);
//! # }
//! ```
//!
//! # Features
//!
//! - `tls`: `https://` endpoints and `EtcdOptions::tls` (etcd-client's
//!   rustls with ring; no system OpenSSL).
//! - `testing`: `testing::EtcdServer`, a throw-away etcd on loopback for
//!   tests, plain or with TLS (needs the `etcd` binary: `apt-get install
//!   etcd-server`).
//!
//! Building needs `protoc` (etcd-client compiles etcd's protos): Debian's
//! `protobuf-compiler`, or `PROTOC=/path/to/protoc`.

#![cfg_attr(docsrs, feature(doc_cfg))]

mod error;
mod options;
mod store;
#[cfg(feature = "testing")]
#[cfg_attr(docsrs, doc(cfg(feature = "testing")))]
pub mod testing;
mod watch;

pub use error::ConnectError;
pub use options::{EtcdOptions, DEFAULT_PREFIX};
pub use store::EtcdStore;

/// etcd-client's TLS settings, for [`EtcdOptions::tls`].
#[cfg(feature = "tls")]
#[cfg_attr(docsrs, doc(cfg(feature = "tls")))]
pub use etcd_client::{Certificate, Identity, TlsOptions};

#[cfg(doc)]
use tower_rollout::store::{Entry, StateStore, StoreError};
