//! Start-up of a [`Replica`]: the builder's checks, the first read (or the
//! snapshot, or the default), and the replica's tasks: sync, report, plan.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{watch, Notify};

use super::loader::Loader;
use super::replica::{report, run, Inner, Replica, ReplicaBuilder, Source, SyncState};
use super::window::PlanTrack;
use crate::fleet::check_model_name;
use crate::ConfigError;

impl ReplicaBuilder {
    /// Reads the state (within the timeout; else the snapshot file; else
    /// the router's own state, not ready), applies it, and starts watching
    /// on the ambient tokio runtime. Writes the router's state to the store
    /// when the model has none yet.
    ///
    /// # Errors
    /// [`ConfigError::InvalidModelName`], [`ConfigError::MustBePositive`]
    /// for a zero timeout. The store being unreachable is not an error: the
    /// replica starts on the snapshot or the default and keeps trying.
    pub async fn start(self) -> Result<Replica, ConfigError> {
        check_model_name(&self.model)?;
        let id = self.id.unwrap_or_else(default_id);
        check_model_name(&id)?;
        if self.report_ttl < Duration::from_secs(3) {
            return Err(ConfigError::TooSmall {
                setting: "replica report_ttl (at least 3 s)",
            });
        }
        if self.report_ttl > Duration::from_secs(24 * 3600) {
            return Err(ConfigError::TooLarge {
                setting: "replica report_ttl (at most a day)",
            });
        }
        if self.timeout.is_zero() {
            return Err(ConfigError::MustBePositive {
                setting: "replica timeout",
            });
        }
        let (alive, stopped) = watch::channel(());
        let report_now = Arc::new(Notify::new());
        let loader = self
            .loader
            .map(|load| Arc::new(Loader::new(load, self.handle.clone(), report_now.clone())));
        let inner = Arc::new(Inner {
            key: format!("models/{}/state", self.model),
            reports: format!("models/{}/replicas/", self.model),
            id,
            report_ttl: self.report_ttl,
            fleet: Mutex::new(Vec::new()),
            handle: self.handle,
            store: self.store,
            model: self.model,
            snapshot: self.snapshot,
            timeout: self.timeout,
            sync: Mutex::new(SyncState {
                applied: None,
                seen: 0,
                source: Source::Default,
                connected: false,
                since: Instant::now(),
                last_error: None,
            }),
            applied: watch::channel(0).0,
            track: Mutex::new(PlanTrack::default()),
            _alive: alive,
            loader,
            report_now,
        });
        if !inner.read().await {
            inner.start_from_snapshot();
        }
        tokio::spawn(report(Arc::downgrade(&inner), stopped.clone()));
        tokio::spawn(super::drive::run(Arc::downgrade(&inner), stopped.clone()));
        tokio::spawn(run(Arc::downgrade(&inner), stopped));
        Ok(Replica { inner })
    }
}

/// The default id: the `HOSTNAME` (else `replica-{pid}`) for the first
/// replica started in this process, `{that}-2`, `{that}-3`, ... for the
/// next ones (replicas of one model in one process, as in tests, must not
/// share their report and window keys).
fn default_id() -> String {
    static STARTED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let host = std::env::var("HOSTNAME")
        .ok()
        .filter(|h| check_model_name(h).is_ok())
        .unwrap_or_else(|| format!("replica-{}", std::process::id()));
    match STARTED.fetch_add(1, std::sync::atomic::Ordering::Relaxed) {
        0 => host,
        n => format!("{host}-{}", n.saturating_add(1)),
    }
}
