//! [`EtcdStore`]: the [`StateStore`] on etcd.

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use etcd_client::{Client, Compare, CompareOp, KvClient, Txn, TxnOp, TxnOpResponse, WatchClient};
use etcd_client::{GetOptions, GetResponse, PutOptions, TxnResponse, WatchOptions, WatchResponse};
use tokio::sync::OnceCell;
use tower_rollout::store::{Entry, StateStore, StoreError, StoreFuture, WatchStream};

use crate::error::{no_answer, Call, ConnectError, Endpoints};
use crate::options::EtcdOptions;
use crate::watch::{self, Response};

/// A [`StateStore`] on etcd: compare-and-set by transaction on a key's
/// `mod_revision`, watches that resume from a revision. Cheap to clone
/// (clones share one connection).
///
/// Every call is bounded by the request timeout of its [`EtcdOptions`]
/// and fails with [`StoreError::Unavailable`], naming the endpoints and the
/// call, when etcd cannot be reached, refuses it, or does not answer in
/// time. The connection is re-established by the next call after an
/// outage. See the [crate docs](crate) for an example.
#[derive(Clone)]
pub struct EtcdStore {
    inner: Arc<Inner>,
}

struct Inner {
    /// Kept for authenticating (etcd-client's clients share its token).
    client: Client,
    kv: KvClient,
    watch: WatchClient,
    endpoints: Endpoints,
    prefix: String,
    timeout: Duration,
    credentials: Option<(String, String)>,
    /// Set once the credentials were accepted; etcd-client refreshes the
    /// token itself after that.
    authenticated: OnceCell<()>,
}

impl EtcdStore {
    /// A store on the etcd cluster at `endpoints` (`http://host:2379`,
    /// `https://…` with the `tls` feature). Checks the options and the
    /// endpoints but does not reach etcd: a replica can start while etcd
    /// is down, and its calls fail with [`StoreError::Unavailable`] until
    /// etcd answers. Must be called inside a tokio runtime.
    pub async fn connect<E: AsRef<str>>(
        endpoints: impl IntoIterator<Item = E>,
        options: EtcdOptions,
    ) -> Result<EtcdStore, ConnectError> {
        let endpoints: Vec<String> = endpoints
            .into_iter()
            .map(|e| e.as_ref().to_owned())
            .collect();
        let connect_options = options.connect_options()?;
        let client = Client::connect(&endpoints, Some(connect_options))
            .await
            .map_err(|err| ConnectError::InvalidEndpoint {
                endpoints: endpoints.join(","),
                reason: err.to_string(),
            })?;
        Ok(EtcdStore {
            inner: Arc::new(Inner {
                kv: client.kv_client(),
                watch: client.watch_client(),
                client,
                endpoints: Endpoints(endpoints.join(",")),
                prefix: options.prefix.clone(),
                timeout: options.request_timeout,
                credentials: options.credentials(),
                authenticated: OnceCell::new(),
            }),
        })
    }

    /// The etcd key of a store key: the prefix, then the key.
    pub fn etcd_key(&self, key: &str) -> String {
        format!("{}{key}", self.inner.prefix)
    }

    /// Runs `call` after the first authentication, within the request
    /// timeout.
    async fn bounded<T>(
        &self,
        call: Call<'_>,
        work: impl Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        let inner = &self.inner;
        let authenticated_work = async {
            self.authenticate(call).await?;
            work.await
        };
        match tokio::time::timeout(inner.timeout, authenticated_work).await {
            Ok(result) => result,
            Err(_elapsed) => Err(inner.endpoints.timed_out(call, inner.timeout)),
        }
    }

    async fn authenticate(&self, call: Call<'_>) -> Result<(), StoreError> {
        let inner = &self.inner;
        let Some(credentials) = &inner.credentials else {
            return Ok(());
        };
        inner
            .authenticated
            .get_or_try_init(|| async {
                let sign_in = || {
                    let mut client = inner.client.clone();
                    let credentials = credentials.clone();
                    async move { client.update_user(Some(credentials)).await }
                };
                again_if_no_answer(sign_in).await.map_err(|err| {
                    let doing = format!("authenticating as {}", credentials.0);
                    inner.endpoints.failed_while(call, &doing, &err)
                })
            })
            .await?;
        Ok(())
    }
    async fn read(&self, key: &str) -> Result<GetResponse, etcd_client::Error> {
        self.inner.kv.clone().get(key, None).await
    }

    async fn open(&self, key: &str, start: i64) -> Result<Opened, etcd_client::Error> {
        let options = WatchOptions::new().with_start_revision(start);
        let mut stream = self.inner.watch.clone().watch(key, Some(options)).await?;
        // Wait for etcd to confirm the watch, so that a watch that cannot
        // be created fails in `watch`, within the timeout.
        let first = stream.message().await?;
        Ok(Opened { stream, first })
    }
}

/// The key's revision in a get's answer, 0 when it does not exist.
fn revision_in(response: &GetResponse) -> u64 {
    response
        .kvs()
        .first()
        .map_or(0, |kv| watch::revision(kv.mod_revision()))
}

/// The condition that `key` is still at `revision` (0: absent, version 0).
fn unchanged(key: &str, revision: i64) -> Compare {
    match revision {
        0 => Compare::version(key, CompareOp::Equal, 0),
        _ => Compare::mod_revision(key, CompareOp::Equal, revision),
    }
}

/// The transaction of every conditional write: put `value` (under
/// `lease`, if given) when all of `when` hold, else read the key.
fn cas_txn(key: &str, when: Vec<Compare>, value: Bytes, lease: Option<i64>) -> Txn {
    let options = lease.map(|id| PutOptions::new().with_lease(id));
    Txn::new()
        .when(when)
        .and_then([TxnOp::put(key, Vec::from(value), options)])
        .or_else([TxnOp::get(key, None)])
}

/// A key that must still be at a revision for a write to land.
#[derive(Clone, Copy)]
struct Guard<'a> {
    key: &'a str,
    revision: u64,
}

/// etcd's answer to a compare-and-set's transaction.
struct CasAnswer {
    response: TxnResponse,
    expected: u64,
    /// The answer is to a second attempt, after the first got none.
    retried: bool,
}

impl CasAnswer {
    fn outcome(self, endpoints: &Endpoints, call: Call<'_>) -> Result<u64, StoreError> {
        let CasAnswer {
            response,
            expected,
            retried,
        } = self;
        if response.succeeded() {
            // The put is the transaction's only write: its revision is the
            // store's revision after it.
            return match response.header() {
                Some(header) => Ok(watch::revision(header.revision())),
                None => Err(endpoints.unavailable(call, "no header in etcd's answer")),
            };
        }
        let current = match response.op_responses().first() {
            Some(TxnOpResponse::Get(got)) => revision_in(got),
            _ => return Err(endpoints.unavailable(call, "no read in etcd's answer")),
        };
        if retried {
            // The conflict may be with the first attempt's own write:
            // whether this write was applied is unknown.
            let why = format!(
                "the connection broke during the write and the key is now at revision \
                 {current}: read it to know whether this write was applied"
            );
            return Err(endpoints.unavailable(call, &why));
        }
        Err(StoreError::Conflict { expected, current })
    }
}

/// Runs `attempt` once more when etcd gave no answer: the connection was
/// found broken, as on the first call after etcd restarted.
async fn again_if_no_answer<T, F>(mut attempt: impl FnMut() -> F) -> Result<T, etcd_client::Error>
where
    F: Future<Output = Result<T, etcd_client::Error>>,
{
    match attempt().await {
        Err(err) if no_answer(&err) => attempt().await,
        answered => answered,
    }
}

/// A watch as etcd confirmed it: its stream, and the first response.
struct Opened {
    stream: etcd_client::WatchStream,
    first: Option<WatchResponse>,
}

impl EtcdStore {
    /// A compare-and-set of `key` at `expected`, on `guard`'s revision too
    /// when given: one transaction.
    async fn cas(
        &self,
        key: &str,
        expected: u64,
        value: Bytes,
        guard: Option<Guard<'_>>,
    ) -> Result<u64, StoreError> {
        let key = self.etcd_key(key);
        let call = Call::CompareAndSet(&key);
        let endpoints = &self.inner.endpoints;
        self.bounded(call, async {
            let failed = |err| endpoints.failed(call, &err);
            let guard = guard.map(|g| (self.etcd_key(g.key), i64::try_from(g.revision)));
            let (Ok(expected_revision), None | Some((_, Ok(_)))) =
                (i64::try_from(expected), &guard)
            else {
                // No etcd revision is that large: a conflict, whatever
                // the key holds.
                let current = revision_in(&self.read(&key).await.map_err(failed)?);
                return Err(StoreError::Conflict { expected, current });
            };
            let mut when = vec![unchanged(&key, expected_revision)];
            if let Some((guard, Ok(revision))) = &guard {
                when.push(Compare::mod_revision(
                    guard.as_str(),
                    CompareOp::Equal,
                    *revision,
                ));
            }
            let txn = cas_txn(&key, when, value, None);
            self.run_cas(call, txn, expected, None).await
        })
        .await
    }

    /// Runs a conditional write's transaction, once more when etcd gave no
    /// answer (safe: it is conditional, and its success proves the first
    /// did not apply). Under `lease`, etcd's refusal of an unknown lease is
    /// [`StoreError::LeaseExpired`].
    async fn run_cas(
        &self,
        call: Call<'_>,
        txn: Txn,
        expected: u64,
        lease: Option<u64>,
    ) -> Result<u64, StoreError> {
        let endpoints = &self.inner.endpoints;
        let failed = |err: etcd_client::Error| match lease {
            Some(lease) if err.to_string().contains("requested lease not found") => {
                StoreError::LeaseExpired { lease }
            }
            _ => endpoints.failed(call, &err),
        };
        let mut kv = self.inner.kv.clone();
        let (response, retried) = match kv.txn(txn.clone()).await {
            Err(err) if no_answer(&err) => (kv.txn(txn).await.map_err(failed)?, true),
            answered => (answered.map_err(failed)?, false),
        };
        let answer = CasAnswer {
            response,
            expected,
            retried,
        };
        answer.outcome(endpoints, call)
    }
}

impl StateStore for EtcdStore {
    fn get<'a>(&'a self, key: &'a str) -> StoreFuture<'a, Option<Entry>> {
        Box::pin(async move {
            let key = self.etcd_key(key);
            let call = Call::Get(&key);
            self.bounded(call, async {
                let mut response = again_if_no_answer(|| self.read(&key))
                    .await
                    .map_err(|err| self.inner.endpoints.failed(call, &err))?;
                Ok(response.take_kvs().into_iter().next().map(watch::entry))
            })
            .await
        })
    }

    fn compare_and_set<'a>(
        &'a self,
        key: &'a str,
        expected: u64,
        value: Bytes,
    ) -> StoreFuture<'a, u64> {
        Box::pin(self.cas(key, expected, value, None))
    }

    fn watch<'a>(&'a self, key: &'a str, after: u64) -> StoreFuture<'a, WatchStream> {
        Box::pin(async move {
            let key = self.etcd_key(key);
            let call = Call::Watch(&key);
            let endpoints = &self.inner.endpoints;
            // Revisions after `after`; a start beyond any real revision
            // waits for writes that will never come, as it should.
            let start = i64::try_from(after.saturating_add(1)).unwrap_or(i64::MAX);
            let opened = self.bounded(call, async {
                let opened = again_if_no_answer(|| self.open(&key, start))
                    .await
                    .map_err(|err| endpoints.failed(call, &err))?;
                let Some(created) = opened.first else {
                    return Err(endpoints.unavailable(call, "the connection closed"));
                };
                match watch::read(&created, endpoints, &key) {
                    Response::Changes(pending) => Ok((opened.stream, pending)),
                    Response::Ended(err) => Err(err),
                }
            });
            let (stream, pending) = opened.await?;
            Ok(watch::changes(stream, pending, endpoints.clone(), key))
        })
    }

    fn grant(&self, ttl: Duration) -> StoreFuture<'_, u64> {
        Box::pin(async move {
            let call = Call::Grant;
            let seconds = i64::try_from(ttl.as_secs().max(1)).unwrap_or(i64::MAX);
            self.bounded(call, async {
                let grant = || {
                    let mut lease = self.inner.client.lease_client();
                    async move { lease.grant(seconds, None).await }
                };
                let granted = again_if_no_answer(grant)
                    .await
                    .map_err(|err| self.inner.endpoints.failed(call, &err))?;
                Ok(watch::revision(granted.id()))
            })
            .await
        })
    }

    fn refresh(&self, lease: u64) -> StoreFuture<'_, ()> {
        Box::pin(async move {
            let call = Call::Refresh(lease);
            let endpoints = &self.inner.endpoints;
            let id = i64::try_from(lease).unwrap_or(i64::MAX);
            self.bounded(call, async {
                // etcd-client's `keep_alive` sends one keep-alive and reads
                // its answer: a lease etcd no longer has answers TTL 0,
                // which it reports as "lease not found".
                let mut client = self.inner.client.lease_client();
                match client.keep_alive(id).await {
                    Ok(_) => Ok(()),
                    Err(etcd_client::Error::LeaseKeepAliveError(why))
                        if why.contains("not found") =>
                    {
                        Err(StoreError::LeaseExpired { lease })
                    }
                    Err(err) => Err(endpoints.failed(call, &err)),
                }
            })
            .await
        })
    }

    fn put_leased<'a>(&'a self, key: &'a str, value: Bytes, lease: u64) -> StoreFuture<'a, u64> {
        Box::pin(async move {
            let key = self.etcd_key(key);
            let call = Call::PutLeased(&key);
            let endpoints = &self.inner.endpoints;
            let id = i64::try_from(lease).unwrap_or(i64::MAX);
            self.bounded(call, async {
                let put = || {
                    let mut kv = self.inner.kv.clone();
                    let (key, value) = (key.clone(), Vec::from(value.clone()));
                    async move {
                        kv.put(key, value, Some(PutOptions::new().with_lease(id)))
                            .await
                    }
                };
                match again_if_no_answer(put).await {
                    Ok(done) => Ok(done.header().map_or(0, |h| watch::revision(h.revision()))),
                    // etcd refuses a put under a lease it does not have.
                    Err(err) if err.to_string().contains("requested lease not found") => {
                        Err(StoreError::LeaseExpired { lease })
                    }
                    Err(err) => Err(endpoints.failed(call, &err)),
                }
            })
            .await
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
        let guard = Guard {
            key: guard,
            revision: guard_revision,
        };
        Box::pin(self.cas(key, expected, value, Some(guard)))
    }

    fn create_leased<'a>(&'a self, key: &'a str, value: Bytes, lease: u64) -> StoreFuture<'a, u64> {
        Box::pin(async move {
            let key = self.etcd_key(key);
            let call = Call::CreateLeased(&key);
            let id = i64::try_from(lease).unwrap_or(i64::MAX);
            let txn = cas_txn(&key, vec![unchanged(&key, 0)], value, Some(id));
            self.bounded(call, self.run_cas(call, txn, 0, Some(lease)))
                .await
        })
    }

    fn list<'a>(&'a self, prefix: &'a str) -> StoreFuture<'a, Vec<(String, Entry)>> {
        Box::pin(async move {
            let full = self.etcd_key(prefix);
            let call = Call::List(&full);
            self.bounded(call, async {
                let read = || {
                    let mut kv = self.inner.kv.clone();
                    let full = full.clone();
                    async move { kv.get(full, Some(GetOptions::new().with_prefix())).await }
                };
                let mut found = again_if_no_answer(read)
                    .await
                    .map_err(|err| self.inner.endpoints.failed(call, &err))?;
                let strip = self.inner.prefix.len();
                Ok(found
                    .take_kvs()
                    .into_iter()
                    .map(|kv| {
                        let key = String::from_utf8_lossy(kv.key())
                            .get(strip..)
                            .unwrap_or_default()
                            .to_owned();
                        (key, watch::entry(kv))
                    })
                    .collect())
            })
            .await
        })
    }
}

impl fmt::Debug for EtcdStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EtcdStore")
            .field("endpoints", &self.inner.endpoints.0)
            .field("prefix", &self.inner.prefix)
            .field("timeout", &self.inner.timeout)
            .field("user", &self.inner.credentials.as_ref().map(|c| &c.0))
            .finish()
    }
}
