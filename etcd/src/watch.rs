//! etcd's watch responses as the store's stream of [`Entry`]s.
//!
//! What etcd sends on a watch (as the tests see it with etcd 3.4), and what
//! becomes of it:
//! - a first response with `created` set (awaited by
//!   [`EtcdStore::watch`](crate::EtcdStore) before it returns);
//! - responses with events: a put is an entry with its value, a delete an
//!   entry with `None`, each at its `mod_revision`;
//! - when the start revision is compacted: a response with
//!   `compact_revision` set and `canceled`, right after the created one →
//!   [`StoreError::Compacted`], and the stream ends;
//! - other cancellations (`cancel_reason`, e.g. a permission revoked) →
//!   [`StoreError::Unavailable`], and the stream ends;
//! - the connection breaking (etcd stopped, a keep-alive ping unanswered):
//!   the gRPC stream yields an error status or ends → one
//!   [`StoreError::Unavailable`], and the stream ends.
//!
//! Progress notifications (no events) are skipped.

use std::collections::VecDeque;

use bytes::Bytes;
use etcd_client::{EventType, KeyValue, WatchResponse};
use futures_util::stream;
use tower_rollout::store::{Entry, StoreError, WatchStream};

use crate::error::{Call, Endpoints};

/// A key's value as an [`Entry`] at its `mod_revision`.
pub(crate) fn entry(kv: KeyValue) -> Entry {
    let revision = revision(kv.mod_revision());
    let (_key, value) = kv.into_key_value();
    Entry {
        value: Some(Bytes::from(value)),
        revision,
    }
}

/// etcd's revisions are positive `i64`s.
pub(crate) fn revision(revision: i64) -> u64 {
    u64::try_from(revision).unwrap_or(0)
}

/// What one watch response means for the stream.
#[derive(Debug)]
pub(crate) enum Response {
    /// Changes (none for a progress notification or the created response).
    Changes(Vec<Entry>),
    /// The watch ended with this error.
    Ended(StoreError),
}

/// Reads one watch response.
pub(crate) fn read(response: &WatchResponse, endpoints: &Endpoints, key: &str) -> Response {
    if response.compact_revision() > 0 {
        return Response::Ended(StoreError::Compacted {
            compacted: revision(response.compact_revision()),
        });
    }
    if response.canceled() {
        let reason = match response.cancel_reason() {
            "" => "canceled by etcd".to_owned(),
            why => format!("canceled by etcd: {why}"),
        };
        return Response::Ended(endpoints.unavailable(Call::Watching(key), &reason));
    }
    let changes = response
        .events()
        .iter()
        .filter_map(|event| {
            let kv = event.kv()?.clone();
            Some(match event.event_type() {
                EventType::Put => entry(kv),
                EventType::Delete => Entry {
                    value: None,
                    revision: revision(kv.mod_revision()),
                },
            })
        })
        .collect();
    Response::Changes(changes)
}

/// An open watch: etcd's stream, the changes of the last response not yet
/// handed out, and whether it ended.
struct Watching {
    stream: etcd_client::WatchStream,
    pending: VecDeque<Entry>,
    endpoints: Endpoints,
    key: String,
    ended: bool,
}

/// The store's stream over an etcd watch whose created response was read;
/// `pending` holds changes already received with it.
pub(crate) fn changes(
    stream: etcd_client::WatchStream,
    pending: Vec<Entry>,
    endpoints: Endpoints,
    key: String,
) -> WatchStream {
    let watching = Watching {
        stream,
        pending: pending.into(),
        endpoints,
        key,
        ended: false,
    };
    Box::pin(stream::unfold(watching, |mut w| async move {
        let item = w.next().await?;
        Some((item, w))
    }))
}

impl Watching {
    async fn next(&mut self) -> Option<Result<Entry, StoreError>> {
        loop {
            if let Some(entry) = self.pending.pop_front() {
                return Some(Ok(entry));
            }
            if self.ended {
                return None;
            }
            let call = Call::Watching(&self.key);
            let response = match self.stream.message().await {
                Ok(Some(response)) => response,
                Ok(None) => {
                    self.ended = true;
                    let why = "the connection closed";
                    return Some(Err(self.endpoints.unavailable(call, why)));
                }
                Err(err) => {
                    self.ended = true;
                    return Some(Err(self.endpoints.failed(call, &err)));
                }
            };
            match read(&response, &self.endpoints, &self.key) {
                Response::Changes(changes) => self.pending.extend(changes),
                Response::Ended(err) => {
                    self.ended = true;
                    return Some(Err(err));
                }
            }
        }
    }
}
