//! [`ConnectError`], and how a failed etcd call becomes
//! `StoreError::Unavailable` with a reason that names the endpoints and the
//! call.

use std::error::Error as StdError;
use std::fmt;
use std::time::Duration;

use tower_rollout::store::StoreError;

/// Why [`EtcdStore::connect`](crate::EtcdStore::connect) refused its
/// settings. `connect` does not reach etcd (the store connects on its first
/// call), so an etcd that is down is not a `ConnectError`: its calls fail
/// with `StoreError::Unavailable` until it is back.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConnectError {
    /// An [`EtcdOptions`](crate::EtcdOptions) setting is out of range.
    InvalidOption {
        /// Which setting.
        option: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// The endpoints cannot be used: none given, not a URL, `https://`
    /// without the `tls` feature, TLS options with an `http://` endpoint.
    InvalidEndpoint {
        /// The endpoints as given, comma-separated.
        endpoints: String,
        /// What etcd-client said about them.
        reason: String,
    },
}

impl fmt::Display for ConnectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConnectError::InvalidOption { option, reason } => {
                write!(f, "invalid etcd option {option}: {reason}")
            }
            ConnectError::InvalidEndpoint { endpoints, reason } => {
                write!(f, "invalid etcd endpoints [{endpoints}]: {reason}")
            }
        }
    }
}

impl StdError for ConnectError {}

/// The store call being made, for the reason of a failure.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Call<'a> {
    Get(&'a str),
    CompareAndSet(&'a str),
    Watch(&'a str),
    /// Reading the next change of an open watch.
    Watching(&'a str),
    Grant,
    Refresh(u64),
    PutLeased(&'a str),
    CreateLeased(&'a str),
    List(&'a str),
}

impl fmt::Display for Call<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Call::Get(key) => write!(f, "get {key}"),
            Call::CompareAndSet(key) => write!(f, "compare-and-set {key}"),
            Call::Watch(key) => write!(f, "open a watch of {key}"),
            Call::Watching(key) => write!(f, "the watch of {key}"),
            Call::Grant => f.write_str("grant a lease"),
            Call::Refresh(lease) => write!(f, "refresh lease {lease:x}"),
            Call::CreateLeased(key) => write!(f, "create {key} under a lease"),
            Call::PutLeased(key) => write!(f, "put {key} under a lease"),
            Call::List(prefix) => write!(f, "list {prefix}*"),
        }
    }
}

/// Where a call went: the reason of every failure starts with it.
#[derive(Debug, Clone)]
pub(crate) struct Endpoints(pub(crate) String);

impl Endpoints {
    /// etcd-client failed (or etcd answered with an error).
    pub(crate) fn failed(&self, call: Call<'_>, err: &etcd_client::Error) -> StoreError {
        self.unavailable(call, &chain(err))
    }

    /// etcd-client failed while the store was `doing` something for the call.
    pub(crate) fn failed_while(
        &self,
        call: Call<'_>,
        doing: &str,
        err: &etcd_client::Error,
    ) -> StoreError {
        self.unavailable(call, &format!("{doing}: {}", chain(err)))
    }

    /// The call took longer than the request timeout.
    pub(crate) fn timed_out(&self, call: Call<'_>, after: Duration) -> StoreError {
        self.unavailable(call, &format!("no answer within {after:?}"))
    }

    /// Anything else that failed, in words.
    pub(crate) fn unavailable(&self, call: Call<'_>, what: &str) -> StoreError {
        StoreError::Unavailable {
            reason: format!("etcd at {}: {call}: {what}", self.0),
        }
    }
}

/// Whether etcd gave no answer (a connection refused, broken, or timed out
/// on the client's side), rather than an answer that is an error (a
/// permission denied, a bad request): etcd's own statuses carry no source.
pub(crate) fn no_answer(err: &etcd_client::Error) -> bool {
    match err {
        etcd_client::Error::GRpcStatus(status) => status.source().is_some(),
        etcd_client::Error::TransportError(_) | etcd_client::Error::IoError(_) => true,
        _ => false,
    }
}

/// An error and its sources, as one line (the source is where "connection
/// refused" is).
fn chain(err: &dyn StdError) -> String {
    let mut line = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !line.contains(&text) {
            line.push_str(": ");
            line.push_str(&text);
        }
        source = cause.source();
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reason_names_the_endpoints_the_call_and_the_cause() {
        let endpoints = Endpoints("http://127.0.0.1:1".into());
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "connection refused");
        let err = endpoints.failed(Call::Get("/p/k"), &etcd_client::Error::IoError(io));
        let StoreError::Unavailable { reason } = err else {
            panic!("{err:?}");
        };
        assert_eq!(
            reason,
            "etcd at http://127.0.0.1:1: get /p/k: io error: connection refused"
        );
    }
}
