//! The control calls of a [`Replica`]: each reads the stored state, changes
//! it as the same call on a [`RolloutHandle`](crate::RolloutHandle) would,
//! and writes it back with a compare-and-set on the revision it read.

use std::fmt;

use bytes::Bytes;

use super::api::StoreError;
use super::plan_state::{StoredPhase, StoredPlanState};
use super::replica::{Inner, Replica, Source};
use super::state::RolloutState;
use crate::control::{ControlError, Readiness, Target, VersionLabel};
use crate::error::check_fraction;

/// Why a replica's control call failed. Nothing was written then.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum SyncError {
    /// The call itself was refused: a bad fraction, an unknown version, a
    /// standby seen not ready, or [`ControlError::Conflict`] when the
    /// stored generation is not the one expected, or another replica wrote
    /// the state between this call's read and its write.
    Control(ControlError),
    /// The store could not be reached, or did not confirm the write in time
    /// (then it may or may not have been applied: read the state before
    /// retrying a call that is not conditional). The replica keeps serving
    /// the last state it applied (fail static). The admin answers 503.
    Unavailable {
        /// What failed.
        reason: String,
    },
    /// A promote to a version that not every live replica (every replica
    /// with a report under its lease) holds ready in that color; `force`
    /// promotes anyway.
    NotEverywhere {
        /// The color promoted.
        color: crate::Color,
        /// The version it should hold.
        version: String,
        /// The replicas that do not hold it ready.
        replicas: Vec<String>,
    },
    /// A plan call (pause, resume, abort, skip) without a fleet-wide plan
    /// running.
    NoPlan,
    /// A fleet-wide deploy ([`Replica::deploy`]) while the standby takes
    /// canary traffic: set the split to zero first (as a deploy on one
    /// router, [`DeployError::CanaryRunning`](crate::control::DeployError::CanaryRunning)).
    CanaryRunning {
        /// The stored split.
        split: f64,
    },
    /// A fleet-wide deploy while a fleet-wide plan runs (as a deploy on one
    /// router while its plan runs): abort it or let it finish first.
    PlanRunning,
    /// A fleet-wide deploy of the version the active color should hold.
    DuplicateVersion {
        /// The version.
        version: String,
    },
    /// The stored state does not parse: fix or delete it (the message names
    /// the field). Replicas keep serving the last good one.
    Corrupt {
        /// The revision of the bad document.
        revision: u64,
        /// What is wrong with it.
        reason: String,
    },
}

impl fmt::Display for SyncError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SyncError::Control(e) => e.fmt(f),
            SyncError::Unavailable { reason } => {
                write!(
                    f,
                    "the state store is unavailable ({reason}); the write is not confirmed"
                )
            }
            SyncError::NotEverywhere {
                color,
                version,
                replicas,
            } => write!(
                f,
                "{color} ({version}) is not loaded ready on every replica: not on {}",
                replicas.join(", ")
            ),
            SyncError::NoPlan => f.write_str("no fleet-wide plan is running"),
            SyncError::PlanRunning => {
                f.write_str("a fleet-wide plan is running: abort it or let it finish first")
            }
            SyncError::CanaryRunning { split } => write!(
                f,
                "the standby takes {split} of the traffic as a canary: set the split to 0 first"
            ),
            SyncError::DuplicateVersion { version } => {
                write!(f, "the active color should already hold version {version}")
            }
            SyncError::Corrupt { revision, reason } => {
                write!(
                    f,
                    "the stored state (revision {revision}) is unusable: {reason}"
                )
            }
        }
    }
}

impl std::error::Error for SyncError {}

impl From<ControlError> for SyncError {
    fn from(e: ControlError) -> Self {
        SyncError::Control(e)
    }
}

/// A write that went through (or changed nothing).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Committed {
    /// The state now stored.
    pub state: RolloutState,
    /// Its revision in the store.
    pub revision: u64,
    /// Whether this call changed it.
    pub changed: bool,
}

/// A control call with conditions, from [`Replica::call`].
#[derive(Debug, Clone, Copy)]
#[must_use = "a control call does nothing until one of its methods is awaited"]
pub struct SyncCall<'a> {
    replica: &'a Replica,
    expect: Option<u64>,
    force: bool,
}

impl Replica {
    /// A control call, to add conditions to
    /// (`replica.call().expect_generation(7).promote().await`).
    pub fn call(&self) -> SyncCall<'_> {
        SyncCall {
            replica: self,
            expect: None,
            force: false,
        }
    }

    /// Makes the standby the active color fleet-wide; see
    /// [`RolloutHandle::promote`](crate::RolloutHandle::promote).
    ///
    /// # Errors
    /// [`SyncError`].
    pub async fn promote(&self) -> Result<Committed, SyncError> {
        self.call().promote().await
    }

    /// Makes `to` active fleet-wide unless it already is.
    ///
    /// # Errors
    /// [`SyncError`].
    pub async fn promote_to(&self, to: impl Into<Target>) -> Result<Committed, SyncError> {
        self.call().promote_to(to).await
    }

    /// Undoes the last promote fleet-wide (or sets the split to zero).
    ///
    /// # Errors
    /// [`SyncError`].
    pub async fn rollback(&self) -> Result<Committed, SyncError> {
        self.call().rollback().await
    }

    /// Sets the canary split fleet-wide.
    ///
    /// # Errors
    /// [`SyncError`].
    pub async fn set_split(&self, fraction: f64) -> Result<Committed, SyncError> {
        self.call().set_split(fraction).await
    }

    /// Sets the mirrored fraction fleet-wide.
    ///
    /// # Errors
    /// [`SyncError`].
    pub async fn mirror_standby(&self, fraction: f64) -> Result<Committed, SyncError> {
        self.call().mirror_standby(fraction).await
    }

    /// Names `version` as what the standby color should hold fleet-wide:
    /// every replica with a [loader](super::ReplicaBuilder::loader) loads
    /// it into its standby and reports it. A [`promote`](Self::promote) is
    /// refused with [`SyncError::NotEverywhere`] while a live replica has
    /// not loaded it ready (still loading, or failing to).
    ///
    /// # Errors
    /// [`SyncError`]: [`ControlError::Invalid`] for a bad label,
    /// [`SyncError::CanaryRunning`] while the standby takes canary traffic,
    /// [`SyncError::DuplicateVersion`] for the active color's version.
    pub async fn deploy(&self, version: &str) -> Result<Committed, SyncError> {
        self.call().deploy(version).await
    }
}

impl SyncCall<'_> {
    /// Also requires the stored state to be at `generation`.
    pub fn expect_generation(mut self, generation: u64) -> Self {
        self.expect = Some(generation);
        self
    }

    /// Also promotes a standby this replica saw not ready.
    pub fn force(mut self) -> Self {
        self.force = true;
        self
    }

    /// See [`Replica::promote`].
    ///
    /// # Errors
    /// [`SyncError`].
    pub async fn promote(self) -> Result<Committed, SyncError> {
        let force = self.force;
        let replica = self.replica;
        self.update(true, move |s| promote(replica, s, None, force))
            .await
    }

    /// See [`Replica::promote_to`].
    ///
    /// # Errors
    /// [`SyncError`].
    pub async fn promote_to(self, to: impl Into<Target>) -> Result<Committed, SyncError> {
        let (force, to) = (self.force, to.into());
        let replica = self.replica;
        self.update(true, move |s| promote(replica, s, Some(&to), force))
            .await
    }

    /// [`promote_to`](Self::promote_to) the color that should hold `label`.
    ///
    /// # Errors
    /// [`SyncError`].
    pub async fn promote_to_version(self, label: &str) -> Result<Committed, SyncError> {
        let label = VersionLabel::new(label).map_err(|_| ControlError::UnknownVersion {
            version: label.to_owned(),
        })?;
        self.promote_to(label).await
    }

    /// See [`Replica::rollback`].
    ///
    /// # Errors
    /// [`SyncError`].
    pub async fn rollback(self) -> Result<Committed, SyncError> {
        self.update(false, |s| {
            if let Some(back) = s.previous.take() {
                s.active = back;
            } else if s.split == 0.0 {
                return Ok(false);
            }
            s.split = 0.0;
            Ok(true)
        })
        .await
    }

    /// See [`Replica::set_split`].
    ///
    /// # Errors
    /// [`SyncError`].
    pub async fn set_split(self, fraction: f64) -> Result<Committed, SyncError> {
        let split = check_fraction("split", fraction).map_err(ControlError::Invalid)?;
        self.update(false, move |s| {
            Ok(std::mem::replace(&mut s.split, split) != split)
        })
        .await
    }

    /// See [`Replica::mirror_standby`].
    ///
    /// # Errors
    /// [`SyncError`].
    pub async fn mirror_standby(self, fraction: f64) -> Result<Committed, SyncError> {
        let mirror = check_fraction("mirror", fraction).map_err(ControlError::Invalid)?;
        if !self.replica.inner.handle.control.can_mirror() {
            return Err(ControlError::NoMirror.into());
        }
        self.update(false, move |s| {
            Ok(std::mem::replace(&mut s.mirror, mirror) != mirror)
        })
        .await
    }

    /// See [`Replica::deploy`].
    ///
    /// # Errors
    /// [`SyncError`].
    pub async fn deploy(self, version: &str) -> Result<Committed, SyncError> {
        let label = VersionLabel::new(version).map_err(ControlError::Invalid)?;
        let mut refused = None;
        let done = self
            .update(false, |s| match name_standby(s, label) {
                Ok(changed) => Ok(changed),
                Err(e) => {
                    // Nothing written: the refusal is returned below.
                    refused = Some(e);
                    Ok(false)
                }
            })
            .await?;
        refused.map_or(Ok(done), Err)
    }

    /// Reads the state, changes it with `change` (false: nothing to change),
    /// and writes it back if the store is still at the revision read. A
    /// promote (`promoting`) that changes the active color first checks
    /// that every live replica holds its version ready.
    async fn update(
        self,
        promoting: bool,
        change: impl FnOnce(&mut RolloutState) -> Result<bool, ControlError>,
    ) -> Result<Committed, SyncError> {
        let inner = &self.replica.inner;
        let (revision, current) = read_state(inner).await?;
        if let Some(expected) = self.expect {
            if expected != current.generation {
                return Err(ControlError::Conflict {
                    expected,
                    actual: current.generation,
                }
                .into());
            }
        }
        let mut next = current.clone();
        if !change(&mut next)? {
            return Ok(Committed {
                state: current,
                revision,
                changed: false,
            });
        }
        if promoting && !self.force && next.active != current.active {
            everywhere(inner, &next).await?;
        }
        // A change by hand supersedes a fleet-wide plan, as on one router.
        if let Some(plan) = next.plan.as_mut().filter(|p| p.is_active()) {
            plan.state = StoredPlanState::Superseded;
            plan.phase = StoredPhase::Done;
            plan.log("superseded by a control call".into(), &inner.id, unix_ms());
        }
        write_state(inner, revision, &current, next).await
    }
}

/// The stored state and its revision (0 and this router's state when the
/// model has none yet).
pub(super) async fn read_state(inner: &Inner) -> Result<(u64, RolloutState), SyncError> {
    let read = within(tokio::time::timeout(inner.timeout, inner.store.get(&inner.key)).await)?
        .map_err(unavailable)?;
    match read {
        None => Ok((0, inner.local_state())),
        Some(entry) => {
            let bytes = entry.value.as_deref().unwrap_or_default();
            let state = RolloutState::from_json(bytes).map_err(|e| SyncError::Corrupt {
                revision: entry.revision,
                reason: e.to_string(),
            })?;
            Ok((entry.revision, state))
        }
    }
}

/// Writes `next` (its generation one above `current`'s) if the store is
/// still at `revision`, and applies it here.
pub(super) async fn write_state(
    inner: &Inner,
    revision: u64,
    current: &RolloutState,
    next: RolloutState,
) -> Result<Committed, SyncError> {
    write_fenced(inner, revision, current, next, None).await
}

/// A key that must still be at a revision for a write to land: a
/// fleet-wide plan's driver writes only while its election key, won at its
/// term, exists.
#[derive(Debug, Clone, Copy)]
pub(super) struct Fence<'a> {
    pub(super) key: &'a str,
    pub(super) revision: u64,
}

/// [`write_state`], fenced by `fence` when given (one transaction).
pub(super) async fn write_fenced(
    inner: &Inner,
    revision: u64,
    current: &RolloutState,
    mut next: RolloutState,
    fence: Option<Fence<'_>>,
) -> Result<Committed, SyncError> {
    next.generation = current
        .generation
        .checked_add(1)
        .ok_or_else(|| SyncError::Corrupt {
            revision,
            reason: "the generation is at its largest value".into(),
        })?;
    let value = Bytes::from(next.to_json());
    let write = match fence {
        None => inner.store.compare_and_set(&inner.key, revision, value),
        Some(f) => inner
            .store
            .compare_and_set_guarded(&inner.key, revision, value, f.key, f.revision),
    };
    match within(tokio::time::timeout(inner.timeout, write).await)? {
        Ok(new) => {
            inner.applied_state(new, next.clone(), Source::Store);
            Ok(Committed {
                state: next,
                revision: new,
                changed: true,
            })
        }
        Err(StoreError::Conflict { .. }) => {
            // Someone wrote first: say which generation it is at now.
            let read = tokio::time::timeout(inner.timeout, inner.store.get(&inner.key)).await;
            let now = read.ok().and_then(Result::ok).flatten();
            let actual = now
                .and_then(|e| RolloutState::from_json(e.value.as_deref()?).ok())
                .map_or(current.generation.saturating_add(1), |s| s.generation);
            Err(ControlError::Conflict {
                expected: current.generation,
                actual,
            }
            .into())
        }
        Err(e) => Err(unavailable(e)),
    }
}

/// Now, in milliseconds since the Unix epoch (what stored plans keep).
pub(crate) fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// A timed-out store call is [`SyncError::Unavailable`].
fn within<T>(r: Result<T, tokio::time::error::Elapsed>) -> Result<T, SyncError> {
    r.map_err(|_| SyncError::Unavailable {
        reason: "no answer within the timeout".into(),
    })
}

/// Whether every replica with a live report holds the version `next`
/// makes active, ready; a store without leases has no reports to check.
pub(super) async fn everywhere(inner: &Inner, next: &RolloutState) -> Result<(), SyncError> {
    let color = next.active;
    let want = next.version(color).map_or_else(
        || inner.handle.version(color).to_string(),
        |v| v.to_string(),
    );
    let reports = match inner.list_reports().await {
        Ok(reports) => reports,
        Err(StoreError::NoLeases) => return Ok(()),
        Err(e) => return Err(unavailable(e)),
    };
    let replicas: Vec<String> = reports
        .iter()
        .filter(|r| {
            let v = r.version(color);
            v.version != want || !v.ready
        })
        .map(|r| r.id.clone())
        .collect();
    if replicas.is_empty() {
        Ok(())
    } else {
        Err(SyncError::NotEverywhere {
            color,
            version: want,
            replicas,
        })
    }
}

pub(super) fn unavailable(e: StoreError) -> SyncError {
    SyncError::Unavailable {
        reason: e.to_string(),
    }
}

/// A promote on a stored state: to the standby (`to: None`) or a target.
fn promote(
    replica: &Replica,
    s: &mut RolloutState,
    to: Option<&Target>,
    force: bool,
) -> Result<bool, ControlError> {
    let handle = &replica.inner.handle;
    let target = match to {
        None => s.active.other(),
        Some(Target::Color(c)) => *c,
        Some(Target::Version(label)) => [crate::Color::Blue, crate::Color::Green]
            .into_iter()
            .find(|&c| {
                s.version(c)
                    .map_or(handle.version(c) == *label, |v| v == label)
            })
            .ok_or_else(|| ControlError::UnknownVersion {
                version: label.to_string(),
            })?,
    };
    if target == s.active {
        return Ok(false);
    }
    let status = handle.status();
    let local = status.color(target);
    if !force && matches!(local.readiness, Readiness::NotReady | Readiness::Failed) {
        return Err(ControlError::NotReady {
            color: target,
            version: local.version.clone(),
            readiness: local.readiness,
        });
    }
    s.previous = Some(s.active);
    s.active = target;
    s.split = 0.0;
    Ok(true)
}

/// A fleet-wide deploy on a stored state: `label` for the standby, refused
/// as a deploy on one router is (canary traffic on the standby, the active
/// color's version).
fn name_standby(s: &mut RolloutState, label: VersionLabel) -> Result<bool, SyncError> {
    let standby = s.active.other();
    if s.version(standby) == Some(&label) {
        return Ok(false);
    }
    if s.plan.as_ref().is_some_and(|p| p.is_active()) {
        return Err(SyncError::PlanRunning);
    }
    if s.split > 0.0 {
        return Err(SyncError::CanaryRunning { split: s.split });
    }
    if s.version(s.active) == Some(&label) {
        return Err(SyncError::DuplicateVersion {
            version: label.to_string(),
        });
    }
    s.versions[standby as usize] = Some(label);
    Ok(true)
}
