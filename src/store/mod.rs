//! Rollout state shared by replicas through a store (feature `store`).
//!
//! A model served by many replicas keeps one [`RolloutState`] document in a
//! [`StateStore`]: the active color, the split, the mirror fraction, the
//! version each color should hold, and a generation. The store is a
//! compare-and-set register with a watch: [`MemoryStore`] in one process,
//! etcd through the `tower-rollout-etcd` crate.
//!
//! A [`Replica`] keeps one process's router on that document:
//!
//! - **Start-up**: it reads the state within a timeout; if the store cannot
//!   be reached it starts from its snapshot file (the last state it
//!   applied); with neither it serves the router's own state and is not
//!   ready ([`Replica::is_ready`], the admin's `/ready`). A model with no
//!   state yet gets this router's.
//! - **Sync**: every change is watched and applied in one step (a
//!   [`TransitionKind::Sync`](crate::control::TransitionKind::Sync)), so
//!   the same sticky user lands on the same color on every replica. A
//!   watch that breaks resumes from the last applied revision; one whose
//!   history was compacted meanwhile reads the state again.
//! - **Control calls** ([`Replica::promote`], [`Replica::call`] with
//!   `expect_generation`, …) read the state, change it and write it back
//!   with a compare-and-set: a concurrent write is a
//!   [`ControlError::Conflict`](crate::control::ControlError::Conflict),
//!   never a silent overwrite.
//! - **Fail static**: while the store is unreachable the replica serves the
//!   last state it applied, control calls fail with
//!   [`SyncError::Unavailable`], and [`ReplicaStatus::stale_for`] says for
//!   how long. A stored document that does not parse or a deleted key is
//!   reported in [`ReplicaStatus::last_error`], and the last good state
//!   stays. A version this replica does not hold in a color (and has no
//!   loader for) is reported there too; the rest of the state is applied,
//!   and that color serves the version this replica has. A mirror fraction
//!   on a router built without mirroring is reported, and nothing is
//!   mirrored there.
//! - **Loading versions**: with a [loader](ReplicaBuilder::loader) (a
//!   version label to a future of its service, deployed through the
//!   router's [`Deployer`](crate::control::Deployer)), a replica loads the
//!   version the state names for a color that holds another, in the
//!   background, one load at a time per color; a newer state naming
//!   another version drops a pending load. Meanwhile, and after a failure
//!   (a [`LoadError`], in [`ReplicaStatus::loads`], tried again after a
//!   backoff), the color serves what it holds. [`Replica::deploy`] names
//!   the standby's next version fleet-wide, so every replica loads it.
//!   With a loader, a replica is ready only once its active color holds
//!   the version the state names (a fresh replica loads it first); a
//!   serving replica never replaces its active version.
//!
//! ```
//! use std::convert::Infallible;
//! use http::{Request, Response};
//! use tower::service_fn;
//! use tower_rollout::store::{MemoryStore, Replica};
//! use tower_rollout::{BlueGreenRouter, Color};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let svc = service_fn(|_: Request<String>| async {
//!     Ok::<_, Infallible>(Response::new(String::new()))
//! });
//! let store = MemoryStore::new(); // or tower_rollout_etcd::EtcdStore
//! // Two replicas of the model "iris" (two processes, in real life).
//! let (_a, handle_a) = BlueGreenRouter::new(svc, svc);
//! let (_b, handle_b) = BlueGreenRouter::new(svc, svc);
//! let a = Replica::builder(&handle_a, store.clone(), "iris").start().await?;
//! let b = Replica::builder(&handle_b, store.clone(), "iris").start().await?;
//!
//! let done = a.promote().await?;  // a compare-and-set write to the store
//! b.applied(done.revision).await; // the other replica applies it
//! assert_eq!(handle_b.active(), Color::Green);
//! # Ok(())
//! # }
//! ```
//!
//! - **Reports**: each replica writes what it serves (applied revision,
//!   readiness, the version in each color) under a lease of its own
//!   (`models/{model}/replicas/{id}`), refreshed every third of its time to
//!   live: [`Replica::fleet`] lists the replicas alive, and a promote to a
//!   version that one of them does not hold ready is
//!   [`SyncError::NotEverywhere`] (unless forced).
//!
//! - **Fleet-wide plans** ([`Replica::start_plan`], from the plan's
//!   document, the admin's format): the plan and its phase are part of the
//!   stored document, and each phase change is one compare-and-set that
//!   carries the new traffic with the phase and a [`TimelineEntry`]. One
//!   replica drives: the one that created the key `models/{model}/driver`
//!   under its lease. Every replica keeps measuring while a plan is active
//!   and publishes its window of the phase under its lease
//!   (`models/{model}/windows/{id}`, at most once a second); the driver judges
//!   the gates on their sum (the shadow comparison's counts summed too;
//!   drift gates on the driver's own sample), so a 5% canary on ten
//!   replicas reaches a gate's minimum sample from all of them. The
//!   promote waits (holds) until every live replica holds the candidate
//!   ready. If the driver dies, its lease expires and another replica wins
//!   the key, writes its term and goes on from the stored phase: a phase is
//!   entered once, and a driver that finds a later term stops; each of its
//!   writes holds only while the state is at the revision it read and its
//!   election key still exists ([`StateStore::compare_and_set_guarded`]),
//!   so no two drive at once. While the store cannot be reached nothing is written, so
//!   the plan stands still; [`Replica::abort_plan`] then serves the stable
//!   color on this replica at once and writes the abort when the store is
//!   back ([`PlanAbort::Pending`]). A control call by hand supersedes the
//!   plan, as on one router. [`Replica::plan_status`] and the admin's
//!   `/status` show the plan, the driver's verdicts and each window.

mod api;
mod drive;
#[cfg(feature = "metrics")]
mod gauges;
mod loader;
mod memory;
mod plan_state;
mod replica;
mod report;
mod snapshot;
mod start;
mod state;
mod window;
mod write;

pub use api::{Entry, StateStore, StoreError, StoreFuture, WatchStream};
pub use drive::{FleetPlanStatus, PlanAbort, StartPlanError};
pub use loader::{LoadError, LoadErrorKind, LoadStatus};
pub use memory::MemoryStore;
pub use plan_state::{StoredPhase, StoredPlan, StoredPlanState, TimelineEntry};
pub use replica::{
    Replica, ReplicaBuilder, ReplicaStatus, Source, DEFAULT_REPORT_TTL, DEFAULT_STORE_TIMEOUT,
};
pub use report::{ReplicaReport, ReportedVersion};
pub use state::{RolloutState, StateError};
pub use window::{Compared, ReplicaWindow};
pub use write::{Committed, SyncCall, SyncError};

#[cfg(feature = "admin")]
pub(crate) use write::unix_ms;
