//! Loading the version the state names into a color: the loader a user
//! gives ([`ReplicaBuilder::loader`](super::ReplicaBuilder::loader), a
//! version label to a future of a ready service), type-erased, and one task
//! per color that runs it and deploys what it returns.
//!
//! Per color, at most one load runs. The state applied last says what the
//! color should hold (`want`, a watch channel): a newer state naming another
//! version drops the pending load (the loader's future, or the deploy's
//! readiness wait) before it is installed, and loads the new one. A failure
//! is kept in the color's [`LoadStatus`] and tried again after a backoff
//! (1 s, doubling, at most [`MAX_RETRY`]) while the state still names it; a
//! state naming another version tries that one at once.

use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use futures_util::future::BoxFuture;
use tokio::sync::{watch, Notify};
use tower::BoxError;
use tower_service::Service;

use crate::control::{Deployer, VersionLabel};
use crate::{Color, RolloutHandle};

/// The first wait before a failed load is tried again.
const FIRST_RETRY: Duration = Duration::from_secs(1);

/// The longest wait before a failed load is tried again.
pub(super) const MAX_RETRY: Duration = Duration::from_secs(30);

/// A load that failed: the color keeps serving the version it holds.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct LoadError {
    /// The version the state names.
    pub version: VersionLabel,
    /// The color it should go into.
    pub color: Color,
    /// Which step failed.
    pub kind: LoadErrorKind,
    /// What went wrong (the loader's or the deploy's error, as text).
    pub reason: String,
}

/// The step of a load that failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum LoadErrorKind {
    /// The loader's future failed (for example, a label it does not know).
    Loader,
    /// The deploy of the loaded service failed or was refused (not ready in
    /// time, a canary split on the standby, a plan running, …).
    Deploy,
    /// The color is active on a replica already serving: a replica never
    /// replaces the version its users get. Promote a loaded standby
    /// instead. Not tried again until a state names another version.
    ActiveColor,
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let LoadError {
            version,
            color,
            kind,
            reason,
        } = self;
        let step = match kind {
            LoadErrorKind::Loader => "the loader failed",
            LoadErrorKind::Deploy => "the deploy failed",
            LoadErrorKind::ActiveColor => "not loaded",
        };
        write!(
            f,
            "loading {version} into {color}: {step}: {reason}; {color} serves what it holds"
        )
    }
}

impl std::error::Error for LoadError {}

/// Where a color's load stands on a replica with a loader.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum LoadStatus {
    /// Nothing to load: the color holds what the state names (or no loader
    /// is configured).
    #[default]
    Idle,
    /// The loader or the deploy of this version runs; the color serves
    /// what it holds meanwhile.
    Loading {
        /// The version being loaded.
        version: VersionLabel,
    },
    /// The last load failed; tried again after a backoff while the state
    /// names it (except [`LoadErrorKind::ActiveColor`]).
    Failed(LoadError),
}

/// What a load is asked to do.
pub(super) struct Job {
    color: Color,
    version: VersionLabel,
    /// The color is active and the replica not yet ready.
    unserved_active: bool,
}

/// The user's loader and deployer, erased: loads and deploys one version.
pub(super) type LoadFn = dyn Fn(Job) -> BoxFuture<'static, Result<(), LoadError>> + Send + Sync;

/// Erases a loader: the label to `load`, then its service deployed by
/// `deployer` into the job's color.
pub(super) fn erase<S, R, F, Fut, E>(deployer: Deployer<S, R>, load: F) -> Arc<LoadFn>
where
    S: Service<R> + Clone + Send + Sync + 'static,
    S::Error: Into<BoxError>,
    S::Future: Send,
    R: 'static,
    F: Fn(VersionLabel) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<S, E>> + Send + 'static,
    E: Into<BoxError>,
{
    Arc::new(
        move |job: Job| -> BoxFuture<'static, Result<(), LoadError>> {
            let loading = load(job.version.clone());
            let deployer = deployer.clone();
            Box::pin(async move {
                let failed = |kind, reason: String| LoadError {
                    version: job.version.clone(),
                    color: job.color,
                    kind,
                    reason,
                };
                let svc = match loading.await {
                    Ok(svc) => svc,
                    Err(e) => return Err(failed(LoadErrorKind::Loader, e.into().to_string())),
                };
                let mut deploy = deployer
                    .deploy(job.version.as_str(), svc)
                    .into_color(job.color);
                if job.unserved_active {
                    deploy = deploy.into_unserved_active();
                }
                match deploy.await {
                    Ok(_) => Ok(()),
                    Err(e) => Err(failed(LoadErrorKind::Deploy, e.to_string())),
                }
            })
        },
    )
}

/// A replica's loads: one lane per color.
pub(super) struct Loader {
    load: Arc<LoadFn>,
    handle: RolloutHandle,
    /// Told after every load, so the replica's report says it at once.
    loaded: Arc<Notify>,
    /// The active color held what the state names at least once: the
    /// replica serves, and never loads into its active color again.
    serving: AtomicBool,
    lanes: [Lane; 2],
}

struct Lane {
    /// The version the last applied state names for this color when the
    /// color holds another (`None`: nothing to load).
    want: watch::Sender<Option<VersionLabel>>,
    state: Mutex<LaneState>,
}

#[derive(Default)]
struct LaneState {
    /// A task drives this lane.
    running: bool,
    status: LoadStatus,
}

impl Loader {
    pub(super) fn new(load: Arc<LoadFn>, handle: RolloutHandle, loaded: Arc<Notify>) -> Self {
        let lane = || Lane {
            want: watch::channel(None).0,
            state: Mutex::new(LaneState::default()),
        };
        Loader {
            load,
            handle,
            loaded,
            serving: AtomicBool::new(false),
            lanes: [lane(), lane()],
        }
    }

    fn lane(&self, color: Color) -> &Lane {
        &self.lanes[color as usize]
    }

    /// Whether the active color held the version the state names at least
    /// once (readiness, with a loader).
    pub(super) fn serving(&self) -> bool {
        self.serving.load(Ordering::Acquire)
    }

    /// Each color's load.
    pub(super) fn statuses(&self) -> [LoadStatus; 2] {
        [Color::Blue, Color::Green].map(|c| lock(self.lane(c)).status.clone())
    }

    /// The first failed load, for `last_error`.
    pub(super) fn failure(&self) -> Option<String> {
        self.statuses().into_iter().find_map(|s| match s {
            LoadStatus::Failed(e) => Some(e.to_string()),
            _ => None,
        })
    }

    /// A state was applied (its active color already on the router):
    /// `color` should hold `named` (`None`: whatever it has). Starts or
    /// redirects the color's load; true when the loader takes it (a load
    /// runs or is planned), false when the color holds it already or it is
    /// the active color of a serving replica (then the caller reports it).
    pub(super) fn want(self: &Arc<Self>, color: Color, named: Option<&VersionLabel>) -> bool {
        let active = self.handle.active();
        let missing = named.filter(|&v| *v != self.handle.version(color));
        if color == active && missing.is_none() {
            self.serving.store(true, Ordering::Release);
        }
        let refused = missing.is_some() && color == active && self.serving();
        let lane = self.lane(color);
        let mut st = lock(lane);
        let next = missing.filter(|_| !refused).cloned();
        lane.want.send_if_modified(|w| {
            let changed = *w != next;
            w.clone_from(&next);
            changed
        });
        if let (true, Some(version)) = (refused, missing) {
            st.status = LoadStatus::Failed(LoadError {
                version: version.clone(),
                color,
                kind: LoadErrorKind::ActiveColor,
                reason: format!("{color} is active on this serving replica"),
            });
            return false;
        }
        if next.is_none() {
            if !st.running {
                st.status = LoadStatus::Idle;
            }
            return false;
        }
        if !st.running {
            st.running = true;
            let rx = lane.want.subscribe();
            tokio::spawn(drive(Arc::downgrade(self), color, rx));
        }
        true
    }

    /// The lane's task ends when nothing is wanted any more; false when
    /// something is (the task goes on).
    fn finish(&self, color: Color) -> bool {
        let lane = self.lane(color);
        let mut st = lock(lane);
        if lane.want.borrow().is_some() {
            return false;
        }
        st.running = false;
        // A refusal of the active color, said since, stays.
        if !matches!(&st.status, LoadStatus::Failed(e) if e.kind == LoadErrorKind::ActiveColor) {
            st.status = LoadStatus::Idle;
        }
        true
    }

    fn set(&self, color: Color, status: LoadStatus) {
        lock(self.lane(color)).status = status;
    }

    /// `color` holds `version` now: nothing more to load for it (unless a
    /// newer state names another); readiness and the report follow.
    fn done(&self, color: Color, version: &VersionLabel) {
        let lane = self.lane(color);
        lane.want.send_if_modified(|w| {
            let done = w.as_ref() == Some(version);
            if done {
                *w = None;
            }
            done
        });
        if color == self.handle.active() {
            self.serving.store(true, Ordering::Release);
        }
        self.loaded.notify_one();
    }
}

fn lock(lane: &Lane) -> MutexGuard<'_, LaneState> {
    lane.state.lock().unwrap_or_else(|e| e.into_inner())
}

/// One color's task: loads what the lane wants, one load at a time, until
/// nothing is wanted; stops when the replica is gone.
async fn drive(
    loader: Weak<Loader>,
    color: Color,
    mut want: watch::Receiver<Option<VersionLabel>>,
) {
    let mut backoff = FIRST_RETRY;
    let mut failed: Option<VersionLabel> = None;
    loop {
        let wanted = want.borrow_and_update().clone();
        let Some(l) = loader.upgrade() else { return };
        let Some(version) = wanted else {
            if l.finish(color) {
                return;
            }
            continue;
        };
        if failed.as_ref() != Some(&version) {
            // Another version than the one that failed: no wait.
            backoff = FIRST_RETRY;
        }
        if l.handle.version(color) == version {
            // Deployed (by this task, or by hand): nothing to load.
            l.done(color, &version);
            continue;
        }
        let unserved_active = color == l.handle.active() && !l.serving();
        l.set(
            color,
            LoadStatus::Loading {
                version: version.clone(),
            },
        );
        let job = (l.load)(Job {
            color,
            version: version.clone(),
            unserved_active,
        });
        drop(l);
        let outcome = tokio::select! {
            // A newer state names another version: this load is dropped
            // before it is installed.
            biased;
            changed = want.changed() => match changed {
                Ok(()) => continue,
                Err(_) => return,
            },
            outcome = job => outcome,
        };
        let Some(l) = loader.upgrade() else { return };
        match outcome {
            Ok(()) => {
                failed = None;
                l.done(color, &version);
            }
            Err(e) => {
                failed = Some(version);
                l.set(color, LoadStatus::Failed(e));
                l.loaded.notify_one();
                drop(l);
                tokio::select! {
                    () = tokio::time::sleep(backoff) => {}
                    changed = want.changed() => if changed.is_err() { return },
                }
                backoff = (backoff * 2).min(MAX_RETRY);
            }
        }
    }
}

impl fmt::Debug for Loader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Loader")
            .field("serving", &self.serving())
            .field("loads", &self.statuses())
            .finish_non_exhaustive()
    }
}
