//! A replica's sync as `metrics` gauges (features `store` and `metrics`),
//! labelled `model` and `replica`:
//!
//! - `rollout_replica_applied_revision`: the store revision of the state
//!   applied (0: none);
//! - `rollout_replica_stale_seconds`: how long the store has been
//!   unreachable (0 while connected); set at every contact, every failed
//!   attempt to reach the store (the sync task's retries, at most 2 s
//!   apart) and every report (a third of the report's time to live), so it
//!   rises in those steps during an outage;
//! - `rollout_replica_ready`: 1 when the replica serves a state from the
//!   store or its snapshot (with a loader: and its active color holds the
//!   version named), else 0.

use std::time::Duration;

const APPLIED: &str = "rollout_replica_applied_revision";
const STALE: &str = "rollout_replica_stale_seconds";
const READY: &str = "rollout_replica_ready";

/// What the gauges show of one replica.
pub(super) struct SyncGauges<'a> {
    pub(super) model: &'a str,
    pub(super) replica: &'a str,
    pub(super) applied_revision: u64,
    pub(super) stale_for: Option<Duration>,
    pub(super) ready: bool,
}

/// Sets the gauges to `g`.
pub(super) fn export(g: &SyncGauges<'_>) {
    let labels = [
        ("model", g.model.to_owned()),
        ("replica", g.replica.to_owned()),
    ];
    // A gauge is an f64: revisions are exact up to 2^53.
    #[allow(clippy::cast_precision_loss)]
    metrics::gauge!(APPLIED, &labels).set(g.applied_revision as f64);
    metrics::gauge!(STALE, &labels).set(g.stale_for.map_or(0.0, |d| d.as_secs_f64()));
    metrics::gauge!(READY, &labels).set(if g.ready { 1.0 } else { 0.0 });
}
