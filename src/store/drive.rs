//! Fleet-wide plans: one replica, elected through a key under its lease
//! (`models/{model}/driver`), drives a plan stored in the state document;
//! every replica publishes its measurement window; the driver judges the
//! gates on their sums and writes each phase change as one compare-and-set
//! of the document.
//!
//! Fencing: every write of the driver is one transaction that holds only
//! while the state is at the revision it read *and* its election key is
//! still at its term (the revision at which it won the election): once
//! its lease expired and the key is gone, nothing it writes lands. The
//! document carries the term; a driver that finds a later one, or the key
//! not its own, stops; one that finds an earlier term writes its own first
//! (a takeover) and goes on from the stored phase.

use std::fmt;
use std::sync::Weak;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::watch;

use super::plan_state::{StoredPhase, StoredPlan, StoredPlanState};
use super::replica::{Inner, Replica};
use super::state::RolloutState;
use super::window::{self, Driving, PendingAbort, ReplicaWindow};
use super::write::{everywhere, read_state, unix_ms, write_fenced, write_state, Fence};
use super::{Committed, SyncError};
use crate::control::ControlError;
use crate::plan::document::plan_document;
use crate::plan::{
    evaluate, shadow_counts, CheckInput, GateStatus, GateVerdict, MirrorUntil, Phase,
    PlanDocumentError, PlanError, RolloutPlan,
};
use crate::Color;

/// How often a replica that does not drive looks whether the driver's key
/// is gone (its lease expired), at most.
const CAMPAIGN_EVERY: Duration = Duration::from_millis(500);

/// Why [`Replica::start_plan`] refused a plan. Nothing was written then.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum StartPlanError {
    /// The plan's document is wrong (the field is named).
    Document(PlanDocumentError),
    /// The plan cannot run on this router (it needs a comparison or a
    /// mirror the router lacks), or a fleet-wide plan is already running
    /// ([`PlanError::AlreadyRunning`]).
    Plan(PlanError),
    /// The store refused or could not take the write.
    Sync(SyncError),
    /// The store keeps no leased keys ([`StoreError::NoLeases`](super::StoreError::NoLeases)):
    /// no driver could be elected, nor windows published.
    NoLeases,
}

impl fmt::Display for StartPlanError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StartPlanError::Document(e) => write!(f, "the plan's document: {e}"),
            StartPlanError::Plan(e) => e.fmt(f),
            StartPlanError::Sync(e) => e.fmt(f),
            StartPlanError::NoLeases => f.write_str(
                "this store keeps no leased keys: a fleet-wide plan needs them (its driver's election, the windows)",
            ),
        }
    }
}

impl std::error::Error for StartPlanError {}

/// What [`Replica::abort_plan`] did.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum PlanAbort {
    /// Written to the store: every replica serves the stable color.
    Written(Box<Committed>),
    /// The store could not be reached: this replica serves the stable
    /// color now, and writes the abort when the store is back (the other
    /// replicas follow then).
    Pending,
}

/// A fleet-wide plan as one replica sees it (see
/// [`Replica::plan_status`]).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct FleetPlanStatus {
    /// The plan as stored (state, phase, driver, term, timeline).
    pub stored: StoredPlan,
    /// The phase, in the terms of a plan on one router.
    pub phase: Phase,
    /// Bake time in the phase.
    pub baked: Duration,
    /// The gates' verdicts at the driver's last evaluation (as its window
    /// says).
    pub gates: Vec<GateStatus>,
    /// The gates holding the plan (bake time over, not passing yet).
    pub holding: Vec<String>,
    /// The windows of the phase, one per replica that published one.
    pub windows: Vec<ReplicaWindow>,
    /// This replica drives the plan.
    pub driving_here: bool,
    /// An abort made here waits for the store.
    pub pending_abort: bool,
    /// This replica cannot reach the store: the plan is frozen for it (no
    /// step is taken while the driver cannot write).
    pub frozen: bool,
}

impl Replica {
    /// Starts a rollout plan across the fleet, from its document (the
    /// admin's format, see [`plan_from_json`](crate::plan::plan_from_json);
    /// it is stored, so that any replica can drive it): the first phase's
    /// traffic is written with the plan. One replica is then elected to
    /// drive it (see the [module docs](super)).
    ///
    /// # Errors
    /// [`StartPlanError`].
    pub async fn start_plan(&self, document: &[u8]) -> Result<Committed, StartPlanError> {
        let (plan, _) = plan_document(document).map_err(StartPlanError::Document)?;
        plan.check_router(&self.inner.handle)
            .map_err(StartPlanError::Plan)?;
        let doc: serde_json::Value = serde_json::from_slice(document).map_err(|e| {
            StartPlanError::Document(PlanDocumentError {
                field: String::new(),
                message: e.to_string(),
            })
        })?;
        let inner = &self.inner;
        if inner.track().no_leases {
            return Err(StartPlanError::NoLeases);
        }
        let (revision, current) = read_state(inner).await.map_err(StartPlanError::Sync)?;
        if current.plan.as_ref().is_some_and(StoredPlan::is_active) {
            return Err(StartPlanError::Plan(PlanError::AlreadyRunning));
        }
        let mut next = current.clone();
        let now = unix_ms();
        next.plan = Some(StoredPlan {
            id: current.generation.saturating_add(1),
            document: doc,
            stable: current.active,
            candidate: current.active.other(),
            phase: StoredPhase::Done,
            seq: 0,
            entered_unix_ms: now,
            paused_baked_ms: None,
            state: StoredPlanState::Running,
            reason: None,
            driver: None,
            term: 0,
            started_unix_ms: now,
            baseline: None,
            timeline: Vec::new(),
        });
        let first = if plan.mirror_phase().is_some() {
            StoredPhase::Mirror
        } else if plan.steps().is_empty() {
            StoredPhase::Post
        } else {
            StoredPhase::Canary(0)
        };
        enter(&mut next, &plan, first, &inner.id, now);
        write_state(inner, revision, &current, next)
            .await
            .map_err(StartPlanError::Sync)
    }

    /// Pauses the fleet-wide plan: its bake time stands still (its gates
    /// are still judged).
    ///
    /// # Errors
    /// [`SyncError`]; [`SyncError::NoPlan`] without a running plan.
    pub async fn pause_plan(&self) -> Result<Committed, SyncError> {
        let by = self.inner.id.clone();
        self.change_plan(move |s, now| {
            let p = running(s)?;
            if p.state == StoredPlanState::Paused {
                return Ok(false);
            }
            p.paused_baked_ms = Some(baked_ms(p, now));
            p.state = StoredPlanState::Paused;
            p.log("paused".into(), &by, now);
            Ok(true)
        })
        .await
    }

    /// Resumes a paused fleet-wide plan.
    ///
    /// # Errors
    /// [`SyncError`]; [`SyncError::NoPlan`] without a running plan.
    pub async fn resume_plan(&self) -> Result<Committed, SyncError> {
        let by = self.inner.id.clone();
        self.change_plan(move |s, now| {
            let p = running(s)?;
            let Some(baked) = p.paused_baked_ms.take() else {
                return Ok(false);
            };
            p.entered_unix_ms = now.saturating_sub(baked);
            p.state = StoredPlanState::Running;
            p.log("resumed".into(), &by, now);
            Ok(true)
        })
        .await
    }

    /// Promotes now, skipping what is left of the mirror and canary
    /// phases; the post-promotion bake follows.
    ///
    /// # Errors
    /// [`SyncError`] ([`SyncError::NotEverywhere`] when a live replica does
    /// not hold the candidate ready); [`SyncError::NoPlan`] without a
    /// running plan.
    pub async fn skip_plan_to_promote(&self) -> Result<Committed, SyncError> {
        let inner = &self.inner;
        let (revision, current) = read_state(inner).await?;
        let mut next = current.clone();
        let p = running(&mut next)?;
        if matches!(p.phase, StoredPhase::Post | StoredPhase::Done) {
            return Ok(Committed {
                state: current,
                revision,
                changed: false,
            });
        }
        let plan = stored_plan(p).map_err(|e| SyncError::Corrupt {
            revision,
            reason: e.to_string(),
        })?;
        enter(&mut next, &plan, StoredPhase::Post, &inner.id, unix_ms());
        let fleet = inner.fleet_sum(&next);
        if let Some(p) = next.plan.as_mut() {
            p.baseline = Some(fleet.since_plan.color(p.stable).clone());
        }
        everywhere(inner, &next).await?;
        write_state(inner, revision, &current, next).await
    }

    /// Aborts the fleet-wide plan: the stable color serves everyone. When
    /// the store cannot be reached, this replica serves the stable color at
    /// once and writes the abort when the store is back
    /// ([`PlanAbort::Pending`]).
    ///
    /// # Errors
    /// [`SyncError`]; [`SyncError::NoPlan`] without a running plan.
    pub async fn abort_plan(&self, why: impl Into<String>) -> Result<PlanAbort, SyncError> {
        let why = why.into();
        let by = self.inner.id.clone();
        let reason = format!("by hand: {why}");
        let written = self
            .change_plan({
                let reason = reason.clone();
                move |s, now| {
                    running(s)?;
                    abort(s, reason, &by, now);
                    Ok(true)
                }
            })
            .await;
        match written {
            Ok(done) => Ok(PlanAbort::Written(Box::new(done))),
            Err(SyncError::Unavailable { .. }) => {
                let applied = self.status().state;
                let Some(plan) = applied.and_then(|s| s.plan).filter(StoredPlan::is_active) else {
                    return Err(SyncError::NoPlan);
                };
                self.inner.abort_here(PendingAbort {
                    plan: plan.id,
                    stable: plan.stable,
                    reason,
                });
                Ok(PlanAbort::Pending)
            }
            Err(e) => Err(e),
        }
    }

    /// The fleet-wide plan in the state this replica applied (running or
    /// the last one), with the driver's verdicts and the windows.
    pub fn plan_status(&self) -> Option<FleetPlanStatus> {
        let status = self.status();
        let stored = status.state?.plan?;
        let now = unix_ms();
        let track = self.inner.track();
        let windows: Vec<ReplicaWindow> = track
            .windows
            .iter()
            .filter(|w| w.plan == stored.id && w.seq == stored.seq)
            .cloned()
            .collect();
        let driver = windows
            .iter()
            .find(|w| Some(&w.id) == stored.driver.as_ref());
        let plan = stored_plan(&stored).ok();
        Some(FleetPlanStatus {
            phase: plan.as_ref().map_or(Phase::Done, |p| phase_of(&stored, p)),
            baked: if stored.is_active() {
                Duration::from_millis(baked_ms(&stored, now))
            } else {
                Duration::ZERO
            },
            gates: driver.map(|w| w.gates.clone()).unwrap_or_default(),
            holding: driver.map(|w| w.holding.clone()).unwrap_or_default(),
            driving_here: track
                .driving
                .as_ref()
                .is_some_and(|d| d.term == stored.term),
            pending_abort: track.pending_abort.is_some(),
            frozen: !status.connected,
            windows,
            stored,
        })
    }

    /// Reads the state, changes its plan with `change` (false: nothing to
    /// change) and writes it back if the store is still at the revision
    /// read.
    async fn change_plan(
        &self,
        change: impl FnOnce(&mut RolloutState, u64) -> Result<bool, SyncError>,
    ) -> Result<Committed, SyncError> {
        let inner = &self.inner;
        let (revision, current) = read_state(inner).await?;
        let mut next = current.clone();
        if !change(&mut next, unix_ms())? {
            return Ok(Committed {
                state: current,
                revision,
                changed: false,
            });
        }
        write_state(inner, revision, &current, next).await
    }
}

/// The running plan of a state, or [`SyncError::NoPlan`].
fn running(s: &mut RolloutState) -> Result<&mut StoredPlan, SyncError> {
    s.plan
        .as_mut()
        .filter(|p| p.is_active())
        .ok_or(SyncError::NoPlan)
}

/// The plan a stored plan's document describes.
fn stored_plan(p: &StoredPlan) -> Result<RolloutPlan, PlanDocumentError> {
    let bytes = serde_json::to_vec(&p.document).unwrap_or_default();
    plan_document(&bytes).map(|(plan, _)| plan)
}

/// The bake time of the stored plan's phase at `now`.
fn baked_ms(p: &StoredPlan, now: u64) -> u64 {
    p.paused_baked_ms
        .unwrap_or_else(|| now.saturating_sub(p.entered_unix_ms))
}

/// The stored phase in a plan's terms.
fn phase_of(p: &StoredPlan, plan: &RolloutPlan) -> Phase {
    match p.phase {
        StoredPhase::Mirror => Phase::Mirror {
            fraction: plan.mirror_phase().map_or(0.0, |m| m.0),
        },
        StoredPhase::Canary(i) => Phase::Canary {
            step: i.saturating_add(1),
            steps: plan.steps().len(),
            split: plan.steps().get(i).map_or(0.0, |s| s.0),
        },
        StoredPhase::Post => Phase::PostPromotion,
        StoredPhase::Done => Phase::Done,
    }
}

/// The phase after `at`.
fn next_phase(plan: &RolloutPlan, at: StoredPhase) -> StoredPhase {
    let steps = plan.steps().len();
    match at {
        StoredPhase::Mirror if steps > 0 => StoredPhase::Canary(0),
        StoredPhase::Canary(i) if i.saturating_add(1) < steps => StoredPhase::Canary(i + 1),
        StoredPhase::Mirror | StoredPhase::Canary(_) => StoredPhase::Post,
        StoredPhase::Post | StoredPhase::Done => StoredPhase::Done,
    }
}

/// Puts `at`'s traffic and the plan's new phase into `s` (one write).
fn enter(s: &mut RolloutState, plan: &RolloutPlan, at: StoredPhase, by: &str, now: u64) {
    let Some(stored) = s.plan.as_ref() else {
        return;
    };
    let candidate = stored.candidate;
    let what = match at {
        StoredPhase::Mirror => {
            let fraction = plan.mirror_phase().map_or(0.0, |m| m.0);
            s.mirror = fraction;
            s.split = 0.0;
            format!("mirror {:.0}%", fraction * 100.0)
        }
        StoredPhase::Canary(i) => {
            let split = plan.steps().get(i).map_or(0.0, |st| st.0);
            s.mirror = 0.0;
            s.split = split;
            format!(
                "canary {}/{} at {}%",
                i.saturating_add(1),
                plan.steps().len(),
                split * 100.0
            )
        }
        StoredPhase::Post => {
            s.mirror = 0.0;
            s.split = 0.0;
            if s.active != candidate {
                s.previous = Some(s.active);
                s.active = candidate;
            }
            "promoted".to_owned()
        }
        StoredPhase::Done => "completed".to_owned(),
    };
    let Some(p) = s.plan.as_mut() else { return };
    p.phase = at;
    p.seq = p.seq.saturating_add(1);
    p.entered_unix_ms = now;
    p.paused_baked_ms = None;
    if at == StoredPhase::Done {
        p.state = StoredPlanState::Promoted;
    } else if p.state == StoredPlanState::Paused {
        p.state = StoredPlanState::Running;
    }
    p.log(what, by, now);
    if at == StoredPhase::Post && plan.post_bake().is_zero() {
        enter(s, plan, StoredPhase::Done, by, now);
    }
}

/// Puts the stable color back for everyone and ends the plan in `s`.
fn abort(s: &mut RolloutState, reason: String, by: &str, now: u64) {
    let Some(p) = s.plan.as_mut() else { return };
    if s.active != p.stable {
        s.active = p.stable;
        s.previous = None;
    }
    s.split = 0.0;
    s.mirror = 0.0;
    p.state = StoredPlanState::Aborted;
    p.phase = StoredPhase::Done;
    p.log(format!("aborted: {reason}"), by, now);
    p.reason = Some(reason);
}

/// The plan task of a replica: publishes its window while a plan is
/// active, campaigns for the driver's key when nobody holds it, drives
/// when it won, and writes an abort made while the store was away.
pub(super) async fn run(inner: Weak<Inner>, mut stopped: watch::Receiver<()>) {
    let mut driver: Option<Driver> = None;
    let mut applied = match inner.upgrade() {
        Some(r) => r.applied_changes(),
        None => return,
    };
    let mut last_campaign = tokio::time::Instant::now() - CAMPAIGN_EVERY;
    let mut published = Published::default();
    loop {
        let Some(replica) = inner.upgrade() else {
            return;
        };
        replica.flush_abort().await;
        let plan = replica
            .status_state()
            .and_then(|s| s.plan)
            .filter(StoredPlan::is_active);
        let Some(plan) = plan else {
            driver = None;
            replica.track().driving = None;
            drop(replica);
            tokio::select! {
                _ = applied.changed() => {}
                () = tokio::time::sleep(Duration::from_secs(1)) => {}
                _ = stopped.changed() => return,
            }
            continue;
        };
        let parsed = stored_plan(&plan);
        let every = window::every(
            parsed
                .as_ref()
                .map_or(Duration::from_millis(250), |p| p.interval()),
        );
        replica
            .publish_window(&mut published, driver.is_some())
            .await;
        if driver.as_ref().is_some_and(|d| d.plan_id != plan.id) {
            driver = None;
        }
        if driver.is_none() && last_campaign.elapsed() >= CAMPAIGN_EVERY.min(every) {
            last_campaign = tokio::time::Instant::now();
            if let Some(term) = replica.campaign().await {
                driver = Some(Driver {
                    term,
                    plan_id: plan.id,
                    clock: None,
                });
            }
        }
        if let Some(d) = &mut driver {
            if !replica.drive(d).await {
                driver = None;
                replica.track().driving = None;
            }
        }
        drop(replica);
        tokio::select! {
            () = tokio::time::sleep(every) => {}
            _ = stopped.changed() => return,
        }
    }
}

/// What this replica last published of its window, and when.
#[derive(Default)]
struct Published {
    bytes: Vec<u8>,
    at: Option<tokio::time::Instant>,
}

/// This replica's hold on the driving of one plan.
struct Driver {
    term: u64,
    plan_id: u64,
    /// The bake of the phase, on this process's monotonic clock from the
    /// moment it first saw the phase (the stored wall-clock start read
    /// once): a jump of the wall clock does not shorten or stall a bake.
    clock: Option<PhaseClock>,
}

/// Where [`Driver::baked`] counts from.
struct PhaseClock {
    seq: u64,
    entered_unix_ms: u64,
    at: tokio::time::Instant,
    baked: Duration,
}

impl Driver {
    /// The bake time of the stored plan's phase.
    fn baked(&mut self, stored: &StoredPlan, now: u64) -> Duration {
        if let Some(paused) = stored.paused_baked_ms {
            self.clock = None;
            return Duration::from_millis(paused);
        }
        match &self.clock {
            Some(c) if c.seq == stored.seq && c.entered_unix_ms == stored.entered_unix_ms => {
                c.baked + c.at.elapsed()
            }
            _ => {
                let baked = Duration::from_millis(baked_ms(stored, now));
                self.clock = Some(PhaseClock {
                    seq: stored.seq,
                    entered_unix_ms: stored.entered_unix_ms,
                    at: tokio::time::Instant::now(),
                    baked,
                });
                baked
            }
        }
    }
}

impl Inner {
    fn driver_key(&self) -> String {
        format!("models/{}/driver", self.model)
    }

    fn windows_prefix(&self) -> String {
        format!("models/{}/windows/", self.model)
    }

    /// Publishes this replica's window under its lease when it changed (at
    /// most every [`window::PUBLISH_EVERY`]), and lists everyone's then; the
    /// driver (`driving`) lists them at every evaluation.
    async fn publish_window(&self, last: &mut Published, driving: bool) {
        let due = last
            .at
            .is_none_or(|at| at.elapsed() >= window::PUBLISH_EVERY);
        if !due && !driving {
            return;
        }
        if due {
            last.at = Some(tokio::time::Instant::now());
            let (window, lease) = {
                let track = self.track();
                (track.window(&self.id, &self.handle), track.lease)
            };
            if let (Some(window), Some(lease)) = (window, lease) {
                let bytes = window.to_json();
                if bytes != last.bytes {
                    let key = format!("{}{}", self.windows_prefix(), self.id);
                    let put = self
                        .store
                        .put_leased(&key, Bytes::from(bytes.clone()), lease);
                    // A failed write is tried again next time; the driver
                    // judges what it can read.
                    if let Ok(Ok(_)) = tokio::time::timeout(self.timeout, put).await {
                        last.bytes = bytes;
                    }
                }
            }
        }
        let prefix = self.windows_prefix();
        let listed = tokio::time::timeout(self.timeout, self.store.list(&prefix)).await;
        if let Ok(Ok(listed)) = listed {
            self.track().windows = listed
                .into_iter()
                .filter_map(|(_, e)| ReplicaWindow::from_json(e.value.as_deref()?))
                .collect();
        }
    }

    /// Tries to become the driver: the term when this replica holds the
    /// driver's key (created now or before), else `None`.
    async fn campaign(&self) -> Option<u64> {
        let key = self.driver_key();
        let lease = self.track().lease?;
        // The id and the lease: two processes given the same id never
        // both take the key for theirs.
        let mine = format!("{} {lease:x}", self.id);
        let held = tokio::time::timeout(self.timeout, self.store.get(&key)).await;
        match held {
            Ok(Ok(Some(e))) => {
                return (e.value.as_deref() == Some(mine.as_bytes())).then_some(e.revision);
            }
            Ok(Ok(None)) => {}
            _ => return None,
        }
        let create = self.store.create_leased(&key, Bytes::from(mine), lease);
        match tokio::time::timeout(self.timeout, create).await {
            Ok(Ok(term)) => Some(term),
            _ => None,
        }
    }

    /// One evaluation as the driver; false when this replica no longer
    /// drives the plan (its key is gone, a later term wrote, or the plan
    /// ended). A store that cannot be reached freezes the plan: true,
    /// nothing written.
    async fn drive(&self, d: &mut Driver) -> bool {
        if self.track().pending_abort.is_some() {
            // This replica's own abort goes first.
            return true;
        }
        let held = tokio::time::timeout(self.timeout, self.store.get(&self.driver_key())).await;
        match held {
            Ok(Ok(Some(e))) if e.revision == d.term => {}
            Ok(Ok(_)) => return false,
            _ => return true,
        }
        let Ok((revision, current)) = read_state(self).await else {
            return true;
        };
        let key = self.driver_key();
        let fence = Some(Fence {
            key: &key,
            revision: d.term,
        });
        let Some(stored) = current
            .plan
            .clone()
            .filter(|p| p.is_active() && p.id == d.plan_id)
        else {
            return false;
        };
        if stored.term > d.term {
            return false;
        }
        let now = unix_ms();
        if stored.term < d.term || stored.driver.as_deref() != Some(self.id.as_str()) {
            // Take over from the stored phase: the next evaluation goes on
            // from there.
            let mut next = current.clone();
            if let Some(p) = next.plan.as_mut() {
                p.term = d.term;
                p.driver = Some(self.id.clone());
                p.log(
                    format!("driven by {} (term {})", self.id, d.term),
                    &self.id,
                    now,
                );
            }
            let _ = write_fenced(self, revision, &current, next, fence).await;
            return true;
        }
        let plan = match stored_plan(&stored) {
            Ok(plan) => plan,
            Err(e) => {
                let mut next = current.clone();
                abort(
                    &mut next,
                    format!("the stored plan's document: {e}"),
                    &self.id,
                    now,
                );
                let _ = write_fenced(self, revision, &current, next, fence).await;
                return false;
            }
        };
        let beyond = match stored.phase {
            StoredPhase::Canary(i) => i >= plan.steps().len(),
            StoredPhase::Mirror => plan.mirror_phase().is_none(),
            _ => false,
        };
        if beyond {
            let mut next = current.clone();
            let why = "the stored phase is not one of the plan's".to_owned();
            abort(&mut next, why, &self.id, now);
            let _ = write_fenced(self, revision, &current, next, fence).await;
            return false;
        }
        let fleet = self.fleet_sum(&current);
        let baked = d.baked(&stored, now);
        let verdicts = self.judge(&stored, &plan, &fleet, baked);
        let failed = verdicts.iter().find_map(|g| match &g.verdict {
            GateVerdict::Fail(detail) => Some(format!("gate {}: {detail}", g.gate)),
            _ => None,
        });
        let mut holding: Vec<String> = Vec::new();
        let mut next = current.clone();
        let wrote = if let Some(reason) = failed {
            abort(&mut next, reason, &self.id, now);
            true
        } else if stored.state == StoredPlanState::Paused
            || !phase_over(&stored, &plan, &self.track().windows, baked)
        {
            false
        } else {
            holding = verdicts
                .iter()
                .filter(|g| !g.verdict.is_pass())
                .map(|g| g.gate.clone())
                .collect();
            if holding.is_empty() {
                enter(
                    &mut next,
                    &plan,
                    next_phase(&plan, stored.phase),
                    &self.id,
                    now,
                );
                if next.active != current.active {
                    if let Err(e) = everywhere(self, &next).await {
                        holding.push(format!("candidate ready on every replica ({e})"));
                    }
                }
            }
            holding.is_empty()
        };
        self.track().driving = Some(Driving {
            term: d.term,
            gates: verdicts,
            holding,
        });
        if wrote {
            let _ = write_fenced(self, revision, &current, next, fence).await;
        }
        true
    }

    /// The sum of the windows of `state`'s plan phase, as last listed.
    fn fleet_sum(&self, state: &RolloutState) -> window::FleetSum {
        let Some(stored) = &state.plan else {
            return window::FleetSum::default();
        };
        let want = [Color::Blue, Color::Green].map(|c| state.version(c).map_or("", |v| v.as_str()));
        window::sum(&self.track().windows, stored, want)
    }

    /// The gates' verdicts on the fleet's windows.
    fn judge(
        &self,
        stored: &StoredPlan,
        plan: &RolloutPlan,
        fleet: &window::FleetSum,
        baked: Duration,
    ) -> Vec<GateStatus> {
        let local = shadow_counts(&self.handle.control);
        #[cfg(feature = "drift")]
        let live_drift = self
            .handle
            .control
            .attached::<crate::live::LiveState>()
            .and_then(|live| crate::live::current(&self.handle, &live))
            .map(|report| report.fields)
            .unwrap_or_default();
        let phase = phase_of(stored, plan);
        let input = CheckInput {
            phase: &phase,
            candidate: stored.candidate,
            stable: stored.stable,
            window: &fleet.phase,
            matched: fleet.compared.matched,
            mismatched: fleet.compared.mismatched,
            schema_breaks: fleet.compared.schema_breaks,
            reshaped: fleet.compared.reshaped,
            structure: &local.structure,
            baked,
            #[cfg(feature = "drift")]
            drift: &local.drift,
            #[cfg(feature = "drift")]
            live_drift: &live_drift,
        };
        // After the promote: the stable color's outcomes up to it, as the
        // promote's write froze them.
        let baseline = match (&stored.baseline, stored.phase) {
            (Some(frozen), StoredPhase::Post) => frozen.clone(),
            _ => fleet.since_plan.color(stored.stable).clone(),
        };
        plan.gates()
            .iter()
            .filter_map(|g| {
                evaluate(g, &input, &baseline, local.last_break.as_deref()).map(|verdict| {
                    GateStatus {
                        gate: g.name().to_owned(),
                        threshold: g.threshold(),
                        min_sample: g.sample_needed(),
                        verdict,
                    }
                })
            })
            .collect()
    }

    /// Serves the stable color here at once, and keeps the abort to write.
    fn abort_here(&self, pending: PendingAbort) {
        let stable = pending.stable;
        // Kept first, so that a state the sync task applies meanwhile keeps
        // the stable color too.
        self.track().pending_abort = Some(pending);
        let _ = self.handle.abort_to(stable);
    }

    /// Writes an abort made while the store was away, once it is back:
    /// also when the plan promoted meanwhile (the abort puts the stable
    /// color back); dropped when the plan was aborted or superseded since,
    /// or another plan started.
    async fn flush_abort(&self) {
        let Some(pending) = self.track().pending_abort.clone() else {
            return;
        };
        for _ in 0..5 {
            let Ok((revision, current)) = read_state(self).await else {
                return;
            };
            let Some(plan) = current
                .plan
                .as_ref()
                .filter(|p| p.id == pending.plan && p.abortable())
            else {
                break;
            };
            let mut reason = pending.reason.clone();
            if plan.state == StoredPlanState::Promoted {
                reason.push_str(" (written after the plan had promoted)");
            }
            let mut next = current.clone();
            abort(&mut next, reason, &self.id, unix_ms());
            match write_state(self, revision, &current, next).await {
                Ok(_) => break,
                // Another write came first: read it and try again.
                Err(SyncError::Control(ControlError::Conflict { .. })) => {}
                Err(_) => return,
            }
        }
        self.track().pending_abort = None;
        // Whatever the store says now is served.
        self.reapply();
    }
}

/// Whether the phase's bake (or the mirror's count) is done.
fn phase_over(
    stored: &StoredPlan,
    plan: &RolloutPlan,
    windows: &[ReplicaWindow],
    baked: Duration,
) -> bool {
    match stored.phase {
        StoredPhase::Mirror => match plan.mirror_phase().map(|m| m.1) {
            Some(MirrorUntil::Elapsed(d)) => baked >= d,
            Some(MirrorUntil::Compared(n)) => {
                let c = window::sum(windows, stored, ["", ""]).compared;
                c.matched.saturating_add(c.mismatched) >= n
            }
            None => true,
        },
        StoredPhase::Canary(i) => plan.steps().get(i).is_none_or(|s| baked >= s.1),
        StoredPhase::Post => baked >= plan.post_bake(),
        StoredPhase::Done => false,
    }
}
