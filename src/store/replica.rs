//! [`Replica`]: one process's router kept on the state in the store: read
//! at start-up (or the snapshot file, or the default), then every change
//! applied as it is watched; the last applied state kept when the store is
//! unreachable.

use std::future::Future;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::StreamExt;
use tokio::sync::{watch, Notify};
use tower::BoxError;
use tower_service::Service;

use super::api::{Entry, StateStore, StoreError};
use super::loader::{self, LoadFn, LoadStatus, Loader};
use super::report::ReplicaReport;
use super::snapshot::{self, Snapshot};
use super::state::RolloutState;
use super::window::PlanTrack;
use crate::control::{Deployer, VersionLabel};
use crate::{Color, RolloutHandle};

/// How long start-up waits for the store, and each read or write of a
/// control call, by default.
pub const DEFAULT_STORE_TIMEOUT: Duration = Duration::from_secs(2);

/// The longest wait between two attempts to reach the store again.
const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// The time to live of a replica's report by default: it leaves the fleet
/// view this long after the replica stops refreshing it.
pub const DEFAULT_REPORT_TTL: Duration = Duration::from_secs(6);

/// A router kept on the state its model has in a [`StateStore`]; cheap to
/// clone. See the [module docs](super).
///
/// Steer a synced router through the replica's calls
/// ([`call`](Self::call), [`promote_to`](Self::promote_to), …) or an admin
/// built with it: each is a compare-and-set write to the store, applied here
/// at once and by every other replica as it watches. A call on the router's
/// own [`RolloutHandle`] changes this process only, and the next state
/// written to the store replaces it.
#[derive(Clone)]
pub struct Replica {
    pub(super) inner: Arc<Inner>,
}

pub(super) struct Inner {
    pub(super) handle: RolloutHandle,
    pub(super) store: Arc<dyn StateStore>,
    pub(super) model: String,
    pub(super) key: String,
    /// This replica's id, and the prefix of every replica's report key.
    pub(super) id: String,
    pub(super) reports: String,
    pub(super) report_ttl: Duration,
    /// The reports last listed (this replica's included).
    pub(super) fleet: Mutex<Vec<ReplicaReport>>,
    pub(super) snapshot: Option<PathBuf>,
    pub(super) timeout: Duration,
    pub(super) sync: Mutex<SyncState>,
    /// The applied revision, for waiters.
    pub(super) applied: watch::Sender<u64>,
    /// The fleet-wide plan, as this replica follows it.
    pub(super) track: Mutex<PlanTrack>,
    /// Dropped with the last clone: the sync task stops.
    pub(super) _alive: watch::Sender<()>,
    /// Loads the versions the state names (see [`ReplicaBuilder::loader`]).
    pub(super) loader: Option<Arc<Loader>>,
    /// Wakes the report task early (after a load).
    pub(super) report_now: Arc<Notify>,
}

/// Where the state being served came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Source {
    /// The store.
    Store,
    /// The snapshot file: the store could not be read at start-up.
    Snapshot,
    /// Neither: the router's own state at start-up.
    Default,
}

/// What a replica knows about its sync with the store.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct ReplicaStatus {
    /// The model's name (its key in the store).
    pub model: String,
    /// This replica's id.
    pub id: String,
    /// Where the state served came from.
    pub source: Source,
    /// The state is the store's or the snapshot's (not the default): what
    /// a readiness probe asks.
    pub ready: bool,
    /// The replica reached the store at its last attempt.
    pub connected: bool,
    /// The store revision of the state applied (0: none).
    pub applied_revision: u64,
    /// The state applied, if any.
    pub state: Option<RolloutState>,
    /// How long the store has been unreachable (`None` while connected).
    pub stale_for: Option<Duration>,
    /// The last problem: the store unreachable, a stored state that does
    /// not parse, a version this replica does not hold (and has no loader
    /// for), else a failed load.
    pub last_error: Option<String>,
    /// Each color's load, blue first (always idle without a
    /// [loader](ReplicaBuilder::loader)).
    pub loads: [LoadStatus; 2],
}

pub(super) struct SyncState {
    pub(super) applied: Option<Snapshot>,
    /// Revisions up to here were seen (applied, or refused as bad).
    pub(super) seen: u64,
    pub(super) source: Source,
    pub(super) connected: bool,
    pub(super) since: Instant,
    pub(super) last_error: Option<String>,
}

/// Builds and starts a [`Replica`].
pub struct ReplicaBuilder {
    pub(super) handle: RolloutHandle,
    pub(super) store: Arc<dyn StateStore>,
    pub(super) model: String,
    pub(super) id: Option<String>,
    pub(super) report_ttl: Duration,
    pub(super) snapshot: Option<PathBuf>,
    pub(super) timeout: Duration,
    pub(super) loader: Option<Arc<LoadFn>>,
}

impl Replica {
    /// A replica of `model` (its key in the store is
    /// `models/{model}/state`) for the router steered by `handle`.
    pub fn builder(
        handle: &RolloutHandle,
        store: impl StateStore,
        model: impl Into<String>,
    ) -> ReplicaBuilder {
        ReplicaBuilder {
            handle: handle.clone(),
            store: Arc::new(store),
            model: model.into(),
            id: None,
            report_ttl: DEFAULT_REPORT_TTL,
            snapshot: None,
            timeout: DEFAULT_STORE_TIMEOUT,
            loader: None,
        }
    }
}

impl ReplicaBuilder {
    /// Keeps the last applied state in this file, and starts from it when
    /// the store cannot be read at start-up.
    pub fn snapshot_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.snapshot = Some(path.into());
        self
    }

    /// This replica's id in the fleet view: its report's key is
    /// `models/{model}/replicas/{id}`. Default: the `HOSTNAME` variable (a
    /// Kubernetes pod's name), else `replica-{pid}`, for the first replica
    /// started in the process; `{that}-2`, `{that}-3`, ... for the next
    /// ones, so that replicas in one process never share a key. The same
    /// rules as a model's name.
    pub fn id(mut self, id: impl Into<String>) -> Self {
        self.id = Some(id.into());
        self
    }

    /// How long the replica's report stays after its last refresh (it is
    /// refreshed every third of that): [`DEFAULT_REPORT_TTL`] by default,
    /// whole seconds, at least 3.
    pub fn report_ttl(mut self, ttl: Duration) -> Self {
        self.report_ttl = ttl;
        self
    }

    /// How long start-up waits for the store, and each read or write of a
    /// control call ([`DEFAULT_STORE_TIMEOUT`] by default).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Loads the version the state names for a color that holds another:
    /// `load` makes the service of a version label, which `deployer` (the
    /// router's, [`BlueGreenRouter::deployer`](crate::BlueGreenRouter::deployer))
    /// deploys into that color. A load runs in the background, one at a
    /// time per color; the color serves what it holds meanwhile, and a
    /// newer state naming another version drops a pending load. A failure
    /// (the loader's error, say for a label it does not know, or the
    /// deploy's) is a [`LoadError`](super::LoadError) in
    /// [`ReplicaStatus::loads`], tried again after a backoff (1 s doubling
    /// up to 30 s) while the state names that version.
    ///
    /// With a loader the replica is ready only once its active color holds
    /// the version the state names: until then a load may go into the
    /// active color (no user is sent to a replica that is not ready).
    /// Once ready, the active color is never replaced: a state naming
    /// another version for it is reported
    /// ([`LoadErrorKind::ActiveColor`](super::LoadErrorKind::ActiveColor)).
    ///
    /// ```
    /// use std::convert::Infallible;
    /// use http::{Request, Response};
    /// use tower::{service_fn, util::BoxCloneSyncService};
    /// use tower_rollout::control::VersionLabel;
    /// use tower_rollout::store::{MemoryStore, Replica};
    /// use tower_rollout::{BlueGreenRouter, Color};
    ///
    /// type Model = BoxCloneSyncService<Request<String>, Response<String>, Infallible>;
    /// fn model(label: &str) -> Model {
    ///     let label = label.to_owned();
    ///     BoxCloneSyncService::new(service_fn(move |_: Request<String>| {
    ///         let answer = Response::new(label.clone());
    ///         async move { Ok::<_, Infallible>(answer) }
    ///     }))
    /// }
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let (router, handle) = BlueGreenRouter::builder()
    ///     .versions("v1", "v2")
    ///     .build(model("v1"), model("v2"))?;
    /// // A real loader fetches the weights of the version named.
    /// let load = |version: VersionLabel| async move {
    ///     match version.as_str() {
    ///         "v1" | "v2" | "v3" => Ok(model(version.as_str())),
    ///         other => Err(format!("no model {other}")),
    ///     }
    /// };
    /// let replica = Replica::builder(&handle, MemoryStore::new(), "iris")
    ///     .loader(router.deployer::<String>(), load)
    ///     .start()
    ///     .await?;
    /// replica.deploy("v3").await?; // green should hold v3, fleet-wide
    /// # tokio::time::timeout(std::time::Duration::from_secs(5), async {
    /// #     while handle.version(Color::Green).as_str() != "v3" {
    /// #         tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    /// #     }
    /// # }).await?;
    /// assert_eq!(handle.version(Color::Green).as_str(), "v3"); // loaded here
    /// # Ok(())
    /// # }
    /// ```
    pub fn loader<S, R, F, Fut, E>(mut self, deployer: Deployer<S, R>, load: F) -> Self
    where
        S: Service<R> + Clone + Send + Sync + 'static,
        S::Error: Into<BoxError>,
        S::Future: Send,
        R: 'static,
        F: Fn(VersionLabel) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<S, E>> + Send + 'static,
        E: Into<BoxError>,
    {
        self.loader = Some(loader::erase(deployer, load));
        self
    }
}

impl Replica {
    /// The model's name.
    pub fn model(&self) -> &str {
        &self.inner.model
    }

    /// The router's handle (its local state and counters).
    pub fn handle(&self) -> &RolloutHandle {
        &self.inner.handle
    }

    /// A snapshot of the sync.
    pub fn status(&self) -> ReplicaStatus {
        let s = self.inner.lock();
        ReplicaStatus {
            model: self.inner.model.clone(),
            id: self.inner.id.clone(),
            source: s.source,
            ready: self.inner.ready(&s),
            connected: s.connected,
            applied_revision: s.applied.as_ref().map_or(0, |a| a.revision),
            state: s.applied.as_ref().map(|a| a.state.clone()),
            stale_for: (!s.connected).then(|| s.since.elapsed()),
            last_error: (s.last_error.clone())
                .or_else(|| self.inner.loader.as_ref().and_then(|l| l.failure())),
            loads: (self.inner.loader.as_ref()).map_or_else(Default::default, |l| l.statuses()),
        }
    }

    /// The replicas of the model as their reports said at the last look
    /// (every third of the report's time to live), this one included;
    /// a replica that stopped is gone once its report's lease expired.
    pub fn fleet(&self) -> Vec<ReplicaReport> {
        self.inner
            .fleet
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Whether the replica serves a state from the store or its snapshot
    /// (with a [loader](ReplicaBuilder::loader): and its active color held
    /// the version that state names).
    pub fn is_ready(&self) -> bool {
        self.inner.ready(&self.inner.lock())
    }

    /// Resolves once a state at `revision` or later has been applied.
    pub async fn applied(&self, revision: u64) {
        let mut rx = self.inner.applied.subscribe();
        // The sender lives as long as `self`.
        let _ = rx.wait_for(|&r| r >= revision).await;
    }
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, SyncState> {
        self.sync.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// What this replica follows of the fleet-wide plan.
    pub(super) fn track(&self) -> MutexGuard<'_, PlanTrack> {
        self.track.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The state applied, if any.
    pub(super) fn status_state(&self) -> Option<RolloutState> {
        self.lock().applied.as_ref().map(|a| a.state.clone())
    }

    /// A receiver told of every applied revision.
    pub(super) fn applied_changes(&self) -> watch::Receiver<u64> {
        self.applied.subscribe()
    }

    /// Puts the applied state on the router again (after a pending abort
    /// was written or dropped).
    pub(super) fn reapply(&self) {
        let applied = self.lock().applied.clone();
        if let Some(snap) = applied {
            self.put_on_router(snap.revision, &snap.state);
        }
    }

    /// Readiness: a state from the store or the snapshot, and, with a
    /// loader, the active color loaded once.
    fn ready(&self, s: &SyncState) -> bool {
        s.source != Source::Default && self.loader.as_ref().is_none_or(|l| l.serving())
    }

    /// Reads the state from the store and applies it (writing the router's
    /// own when there is none); false when the store could not be read.
    pub(super) async fn read(&self) -> bool {
        match tokio::time::timeout(self.timeout, self.store.get(&self.key)).await {
            Ok(Ok(Some(entry))) => {
                self.contact();
                self.apply(entry);
                true
            }
            Ok(Ok(None)) => {
                self.contact();
                self.create().await
            }
            Ok(Err(e)) => {
                self.lost(&e.to_string());
                false
            }
            Err(_) => {
                self.lost("no answer within the timeout");
                false
            }
        }
    }

    /// The model has no state yet: this router's becomes it.
    async fn create(&self) -> bool {
        let state = self.local_state();
        let put = self
            .store
            .compare_and_set(&self.key, 0, Bytes::from(state.to_json()));
        match tokio::time::timeout(self.timeout, put).await {
            Ok(Ok(revision)) => {
                self.applied_state(revision, state, Source::Store);
                true
            }
            // Another replica created it first: read theirs.
            Ok(Err(StoreError::Conflict { .. })) => Box::pin(self.read()).await,
            Ok(Err(e)) => {
                self.lost(&e.to_string());
                false
            }
            Err(_) => {
                self.lost("no answer within the timeout");
                false
            }
        }
    }

    /// The router's state as a document.
    pub(super) fn local_state(&self) -> RolloutState {
        let status = self.handle.status();
        let mut state = RolloutState::new([
            Some(status.blue.version.clone()),
            Some(status.green.version.clone()),
        ]);
        state.active = status.active;
        state.split = status.split;
        state.mirror = status.mirror;
        state
    }

    pub(super) fn start_from_snapshot(&self) {
        let Some(path) = &self.snapshot else { return };
        match snapshot::read(path) {
            Ok(Some(snap)) => self.applied_state(snap.revision, snap.state, Source::Snapshot),
            Ok(None) => {}
            Err(e) => self.lock().last_error = Some(e),
        }
    }

    fn contact(&self) {
        let mut s = self.lock();
        if !s.connected {
            s.connected = true;
            s.since = Instant::now();
        }
        if s.last_error
            .as_deref()
            .is_some_and(|e| e.starts_with("store:"))
        {
            s.last_error = None;
        }
        drop(s);
        self.export_gauges();
    }

    /// After a compaction at `compacted`: reads the state again and, once
    /// read, watches from the compaction on (everything before it is in
    /// what was just read).
    async fn reread_after(&self, compacted: u64) {
        if self.read().await {
            let mut s = self.lock();
            s.seen = s.seen.max(compacted);
        }
    }

    fn lost(&self, reason: &str) {
        let mut s = self.lock();
        if s.connected {
            s.connected = false;
            s.since = Instant::now();
        }
        s.last_error = Some(format!("store: {reason}"));
        drop(s);
        self.export_gauges();
    }

    /// The sync as `metrics` gauges (see `gauges.rs`); nothing without the
    /// `metrics` feature.
    pub(super) fn export_gauges(&self) {
        #[cfg(feature = "metrics")]
        {
            let s = self.lock();
            let gauges = super::gauges::SyncGauges {
                model: &self.model,
                replica: &self.id,
                applied_revision: s.applied.as_ref().map_or(0, |a| a.revision),
                stale_for: (!s.connected).then(|| s.since.elapsed()),
                ready: self.ready(&s),
            };
            super::gauges::export(&gauges);
        }
    }

    /// Applies a watched or read entry, unless already seen.
    pub(super) fn apply(&self, entry: Entry) {
        {
            // Seen already, unless only the snapshot had it: then the store
            // confirms it, and becomes the source.
            let s = self.lock();
            if entry.revision <= s.seen && s.source == Source::Store {
                return;
            }
        }
        let refused = |s: &mut SyncState, why: String| {
            s.seen = s.seen.max(entry.revision);
            s.last_error = Some(format!(
                "revision {}: {why}; the last good state is kept",
                entry.revision
            ));
        };
        match entry.value.as_deref().map(RolloutState::from_json) {
            None => refused(&mut self.lock(), "the state was deleted".into()),
            Some(Err(e)) => refused(&mut self.lock(), e.to_string()),
            Some(Ok(state)) => self.applied_state(entry.revision, state, Source::Store),
        }
    }

    /// Puts `state`'s traffic on the router; a problem in words. An abort
    /// made here while the store was away keeps the stable color for
    /// everyone until it is written.
    fn put_on_router(&self, revision: u64, state: &RolloutState) -> Option<String> {
        let (active, split, mirror) = {
            let mut track = self.track();
            track.applied(state.plan.as_ref(), &self.handle);
            match (&track.pending_abort, &state.plan) {
                (Some(abort), Some(plan)) if plan.id == abort.plan && plan.abortable() => {
                    (abort.stable, 0.0, 0.0)
                }
                _ => (state.active, state.split, state.mirror),
            }
        };
        // A router built without mirroring takes the rest of the state and
        // mirrors nothing (said in `last_error`).
        let can_mirror = self.handle.control.can_mirror();
        let asked = mirror;
        let mirror = if can_mirror { asked } else { 0.0 };
        let mut problem = match self.handle.assign(active, split, mirror) {
            Ok(_) if asked > 0.0 && !can_mirror => Some(format!(
                "revision {revision}: mirror {asked} asked, and this router cannot mirror: it mirrors nothing"
            )),
            Ok(_) => None,
            Err(e) => Some(format!("revision {revision}: {e}")),
        };
        for color in [Color::Blue, Color::Green] {
            let named = state.version(color);
            // With a loader, a version this replica lacks is loaded.
            let loading = (self.loader.as_ref()).is_some_and(|l| l.want(color, named));
            if let Some(want) = named {
                let have = self.handle.version(color);
                if *want != have && !loading {
                    problem = Some(format!(
                        "revision {revision}: {color} should hold {want}, this replica holds {have}"
                    ));
                }
            }
        }
        problem
    }

    /// Puts `state` on the router and records it.
    pub(super) fn applied_state(&self, revision: u64, state: RolloutState, source: Source) {
        let mut s = self.lock();
        if revision <= s.seen && source == Source::Store && s.source == Source::Store {
            return;
        }
        let mut problem = self.put_on_router(revision, &state);
        let snap = Snapshot { revision, state };
        if source == Source::Store {
            if let Some(path) = &self.snapshot {
                if let Err(e) = snapshot::write(path, &snap) {
                    problem = Some(format!("snapshot {}: {e}", path.display()));
                }
            }
        }
        s.seen = s.seen.max(revision);
        // A fresh state from the store replaces the snapshot as the source;
        // the snapshot never replaces the store.
        if source == Source::Store || s.source == Source::Default {
            s.source = source;
        }
        s.applied = Some(snap);
        s.last_error = problem;
        drop(s);
        self.export_gauges();
        self.applied.send_replace(revision);
    }
}

/// The sync task: watches from the applied revision, re-reads after a
/// compaction or while only the snapshot or the default is served, and
/// reconnects with a backoff; stops when the last [`Replica`] is dropped.
pub(super) async fn run(inner: Weak<Inner>, mut stopped: watch::Receiver<()>) {
    let mut backoff = Duration::from_millis(50);
    loop {
        let Some(replica) = inner.upgrade() else {
            return;
        };
        let from_store = replica.lock().source == Source::Store;
        if !from_store && !replica.read().await {
            drop(replica);
            if pause(&mut stopped, &mut backoff).await {
                return;
            }
            continue;
        }
        let after = replica.lock().seen;
        let opened =
            tokio::time::timeout(replica.timeout, replica.store.watch(&replica.key, after))
                .await
                .unwrap_or_else(|_| {
                    Err(StoreError::Unavailable {
                        reason: "opening the watch: no answer within the timeout".into(),
                    })
                });
        let mut changes = match opened {
            Ok(changes) => changes,
            Err(StoreError::Compacted { compacted }) => {
                replica.reread_after(compacted).await;
                drop(replica);
                if pause(&mut stopped, &mut backoff).await {
                    return;
                }
                continue;
            }
            Err(e) => {
                replica.lost(&e.to_string());
                drop(replica);
                if pause(&mut stopped, &mut backoff).await {
                    return;
                }
                continue;
            }
        };
        replica.contact();
        backoff = Duration::from_millis(50);
        drop(replica);
        loop {
            let item = tokio::select! {
                item = changes.next() => item,
                _ = stopped.changed() => return,
            };
            let Some(replica) = inner.upgrade() else {
                return;
            };
            match item {
                Some(Ok(entry)) => {
                    replica.contact();
                    replica.apply(entry);
                }
                Some(Err(StoreError::Compacted { compacted })) => {
                    // The history is gone: read the state again, watch on.
                    replica.reread_after(compacted).await;
                    break;
                }
                Some(Err(e)) => {
                    replica.lost(&e.to_string());
                    break;
                }
                None => {
                    replica.lost("the watch ended");
                    break;
                }
            }
        }
        if pause(&mut stopped, &mut backoff).await {
            return;
        }
    }
}

impl Inner {
    /// This replica's report now.
    fn own_report(&self) -> ReplicaReport {
        let (revision, ready) = {
            let s = self.lock();
            (s.applied.as_ref().map_or(0, |a| a.revision), self.ready(&s))
        };
        ReplicaReport::of(&self.id, revision, ready, &self.handle)
    }

    /// Every replica's report, read now.
    pub(super) async fn list_reports(&self) -> Result<Vec<ReplicaReport>, StoreError> {
        let listed = self.store.list(&self.reports);
        let listed = tokio::time::timeout(self.timeout, listed)
            .await
            .map_err(|_| StoreError::Unavailable {
                reason: "no answer within the timeout".into(),
            })??;
        Ok(listed
            .into_iter()
            .filter_map(|(_, e)| ReplicaReport::from_json(e.value.as_deref()?))
            .collect())
    }

    /// Writes this replica's report under its lease (a new one when it
    /// expired); returns the lease.
    async fn publish(&self, lease: Option<u64>) -> Result<u64, StoreError> {
        let lease = match lease {
            Some(id) => match self.store.refresh(id).await {
                Ok(()) => id,
                Err(StoreError::LeaseExpired { .. }) => self.store.grant(self.report_ttl).await?,
                Err(e) => return Err(e),
            },
            None => self.store.grant(self.report_ttl).await?,
        };
        let key = format!("{}{}", self.reports, self.id);
        let report = Bytes::from(self.own_report().to_json());
        self.store.put_leased(&key, report, lease).await?;
        Ok(lease)
    }
}

/// The report task: every third of the report's time to live, refreshes
/// the lease, writes this replica's report, and reads everyone's.
pub(super) async fn report(inner: Weak<Inner>, mut stopped: watch::Receiver<()>) {
    let mut lease = None;
    loop {
        let Some(replica) = inner.upgrade() else {
            return;
        };
        let every = replica.report_ttl / 3;
        let published = tokio::time::timeout(replica.timeout, replica.publish(lease)).await;
        match published {
            Ok(Ok(id)) => lease = Some(id),
            // A store without leases: no reports, nothing to retry.
            Ok(Err(StoreError::NoLeases)) => {
                replica.track().no_leases = true;
                return;
            }
            Ok(Err(StoreError::LeaseExpired { .. })) => lease = None,
            Ok(Err(_)) | Err(_) => {}
        }
        // The plan task publishes windows and campaigns under it.
        replica.track().lease = lease;
        replica.export_gauges();
        if let Ok(reports) = replica.list_reports().await {
            *replica.fleet.lock().unwrap_or_else(|e| e.into_inner()) = reports;
        }
        let now = replica.report_now.clone();
        drop(replica);
        tokio::select! {
            () = tokio::time::sleep(every) => {}
            () = now.notified() => {}
            _ = stopped.changed() => return,
        }
    }
}

/// Waits `backoff` (doubling it, up to [`MAX_BACKOFF`]); true when the
/// replica was dropped meanwhile.
async fn pause(stopped: &mut watch::Receiver<()>, backoff: &mut Duration) -> bool {
    let wait = *backoff;
    *backoff = (*backoff * 2).min(MAX_BACKOFF);
    tokio::select! {
        () = tokio::time::sleep(wait) => false,
        _ = stopped.changed() => true,
    }
}

impl std::fmt::Debug for Replica {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Replica")
            .field("model", &self.inner.model)
            .field("status", &self.status())
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for ReplicaBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReplicaBuilder")
            .field("model", &self.model)
            .field("snapshot", &self.snapshot)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}
