//! [`EtcdOptions`]: how an [`EtcdStore`](crate::EtcdStore) reaches etcd.

use std::fmt;
use std::time::Duration;

use etcd_client::ConnectOptions;

use crate::error::ConnectError;

/// The key prefix every key of the store is written under, unless
/// [`EtcdOptions::prefix`] says otherwise.
pub const DEFAULT_PREFIX: &str = "/tower-rollout/";

/// How to reach etcd: timeouts, keep-alive, credentials, TLS and the key
/// prefix. Checked by [`EtcdStore::connect`](crate::EtcdStore::connect)
/// (a zero duration is a [`ConnectError::InvalidOption`]), so the order of
/// the setters never matters.
///
/// ```
/// use std::time::Duration;
/// use tower_rollout_etcd::{ConnectError, EtcdOptions, EtcdStore};
///
/// let options = EtcdOptions::new()
///     .request_timeout(Duration::from_secs(2))
///     .user("rollout", "s3cret")
///     .prefix("/prod/rollout/");
/// assert!(!format!("{options:?}").contains("s3cret"), "never printed");
///
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// let zero = EtcdOptions::new().request_timeout(Duration::ZERO);
/// let err = EtcdStore::connect(["http://127.0.0.1:2379"], zero).await.unwrap_err();
/// assert!(matches!(err, ConnectError::InvalidOption { option: "request_timeout", .. }));
/// # });
/// ```
#[derive(Clone)]
pub struct EtcdOptions {
    connect_timeout: Duration,
    pub(crate) request_timeout: Duration,
    keep_alive: Option<KeepAlive>,
    user: Option<Credentials>,
    pub(crate) prefix: String,
    #[cfg(feature = "tls")]
    tls: Option<etcd_client::TlsOptions>,
}

/// HTTP/2 keep-alive pings: how a watch notices a connection that went
/// silent (a partition, a frozen server) rather than closed.
#[derive(Debug, Clone, Copy)]
struct KeepAlive {
    /// Time between pings.
    interval: Duration,
    /// How long a ping may go unanswered before the connection is dropped.
    timeout: Duration,
}

/// An etcd user and password (etcd's own authentication).
#[derive(Clone)]
struct Credentials {
    name: String,
    password: String,
}

impl EtcdOptions {
    /// The defaults: connect timeout 2 s, request timeout 5 s, keep-alive
    /// pings every 10 s answered within 5 s, no credentials, no TLS, prefix
    /// [`DEFAULT_PREFIX`].
    pub fn new() -> Self {
        EtcdOptions {
            connect_timeout: Duration::from_secs(2),
            request_timeout: Duration::from_secs(5),
            keep_alive: Some(KeepAlive {
                interval: Duration::from_secs(10),
                timeout: Duration::from_secs(5),
            }),
            user: None,
            prefix: DEFAULT_PREFIX.to_owned(),
            #[cfg(feature = "tls")]
            tls: None,
        }
    }

    /// How long opening a connection to an endpoint may take.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// The bound of every store call: a `get`, a `compare_and_set`, the
    /// opening of a watch (up to etcd's confirmation that it is created),
    /// and the first authentication with [`user`](Self::user). A call that
    /// takes longer fails with `StoreError::Unavailable`.
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// HTTP/2 keep-alive pings every `interval`, the connection dropped
    /// when one is not answered within `timeout` (open watches then end
    /// with `StoreError::Unavailable`). etcd refuses pings more frequent
    /// than its `--grpc-keepalive-min-time` (5 s by default) by closing
    /// the connection, so keep `interval` at or above it.
    pub fn keep_alive(mut self, interval: Duration, timeout: Duration) -> Self {
        self.keep_alive = Some(KeepAlive { interval, timeout });
        self
    }

    /// No keep-alive pings: a silent connection is only noticed by the
    /// request timeout of the next call (an open watch may then wait for
    /// ever).
    pub fn no_keep_alive(mut self) -> Self {
        self.keep_alive = None;
        self
    }

    /// Authenticate as this etcd user. The store authenticates on its
    /// first call (not in `connect`, so that a replica can start while
    /// etcd is down) and again whenever etcd says the token expired (as
    /// it does after a restart).
    pub fn user(mut self, name: impl Into<String>, password: impl Into<String>) -> Self {
        self.user = Some(Credentials {
            name: name.into(),
            password: password.into(),
        });
        self
    }

    /// The prefix put in front of every key: with the default
    /// [`DEFAULT_PREFIX`], the key `models/iris/state` is stored as
    /// `/tower-rollout/models/iris/state`. It is used as given (no `/` is
    /// added); an empty prefix stores the keys as they are.
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// TLS to etcd (feature `tls`: rustls, no system OpenSSL): the CA that
    /// signed etcd's certificate, and a client certificate when etcd asks
    /// for one (`--client-cert-auth`). Endpoints must then be `https://`
    /// (or have no scheme); an `http://` endpoint is a
    /// [`ConnectError::InvalidEndpoint`].
    #[cfg(feature = "tls")]
    #[cfg_attr(docsrs, doc(cfg(feature = "tls")))]
    pub fn tls(mut self, tls: etcd_client::TlsOptions) -> Self {
        self.tls = Some(tls);
        self
    }

    /// The credentials, for the store's first authentication.
    pub(crate) fn credentials(&self) -> Option<(String, String)> {
        self.user
            .as_ref()
            .map(|c| (c.name.clone(), c.password.clone()))
    }

    /// Checks the settings and turns them into etcd-client's options
    /// (without the credentials: the store authenticates itself, lazily).
    pub(crate) fn connect_options(&self) -> Result<ConnectOptions, ConnectError> {
        positive("connect_timeout", self.connect_timeout)?;
        positive("request_timeout", self.request_timeout)?;
        let mut options = ConnectOptions::new()
            .with_connect_timeout(self.connect_timeout)
            .with_timeout(self.request_timeout)
            // Re-authenticate when etcd refuses the token (it forgets its
            // simple tokens when it restarts). Only used with credentials.
            .with_auto_token_refresh(true);
        if let Some(keep_alive) = self.keep_alive {
            positive("keep_alive interval", keep_alive.interval)?;
            positive("keep_alive timeout", keep_alive.timeout)?;
            options = options
                .with_keep_alive(keep_alive.interval, keep_alive.timeout)
                .with_keep_alive_while_idle(true);
        }
        #[cfg(feature = "tls")]
        if let Some(tls) = &self.tls {
            options = options.with_tls(tls.clone());
        }
        Ok(options)
    }
}

fn positive(option: &'static str, value: Duration) -> Result<(), ConnectError> {
    if value.is_zero() {
        return Err(ConnectError::InvalidOption {
            option,
            reason: "must be longer than zero".into(),
        });
    }
    Ok(())
}

impl Default for EtcdOptions {
    fn default() -> Self {
        EtcdOptions::new()
    }
}

impl fmt::Debug for EtcdOptions {
    /// The password is never printed.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("EtcdOptions");
        d.field("connect_timeout", &self.connect_timeout)
            .field("request_timeout", &self.request_timeout)
            .field("keep_alive", &self.keep_alive)
            .field("user", &self.user.as_ref().map(|c| &c.name))
            .field("prefix", &self.prefix);
        #[cfg(feature = "tls")]
        d.field("tls", &self.tls.is_some());
        d.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_durations_are_refused_by_name() {
        let err = EtcdOptions::new()
            .request_timeout(Duration::ZERO)
            .connect_options()
            .unwrap_err();
        assert!(
            matches!(
                err,
                ConnectError::InvalidOption {
                    option: "request_timeout",
                    ..
                }
            ),
            "{err:?}"
        );
        let err = EtcdOptions::new()
            .keep_alive(Duration::from_secs(10), Duration::ZERO)
            .connect_options()
            .unwrap_err();
        assert!(
            matches!(
                err,
                ConnectError::InvalidOption {
                    option: "keep_alive timeout",
                    ..
                }
            ),
            "{err:?}"
        );
        assert!(EtcdOptions::new().no_keep_alive().connect_options().is_ok());
    }

    #[test]
    fn debug_never_shows_the_password() {
        let shown = format!("{:?}", EtcdOptions::new().user("rollout", "hunter2"));
        assert!(shown.contains("rollout"), "{shown}");
        assert!(!shown.contains("hunter2"), "{shown}");
    }
}
