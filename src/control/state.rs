//! The rollout state behind the word, and control calls as pure changes of it.
//!
//! [`State::apply`] decides what a control call does (or why it cannot)
//! without touching anything shared; [`Control`](super::core::Control) runs
//! it under its mutex and publishes the result. The same function decides a
//! compare-and-set against a stored document elsewhere.

use std::collections::VecDeque;
use std::fmt;
use std::time::SystemTime;

use super::version::{ColorVersion, Live, Readiness, Retiring, VersionLabel};
use super::word::{threshold, Word};
use crate::error::ConfigError;
use crate::Color;

/// How many transitions [`RolloutStatus::history`](super::RolloutStatus::history) keeps.
pub(crate) const HISTORY: usize = 64;

/// What one control call changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum TransitionKind {
    /// The standby became active; the split went back to zero.
    Promote,
    /// The last promote was undone (or, with none to undo, the canary split was
    /// set back to zero).
    Rollback,
    /// The canary split was set.
    Split,
    /// The mirrored fraction was set.
    Mirror,
    /// A rollout plan aborted: the stable color is active again, split and
    /// mirror back to zero, in one step.
    Abort,
    /// A new version was loaded into the standby color.
    Deploy,
    /// The state written by a control call elsewhere (another replica,
    /// through a shared store) was applied here, in one step: active color,
    /// split and mirror together.
    Sync,
}

impl TransitionKind {
    /// `"promote"`, `"rollback"`, `"split"`, `"mirror"`, `"abort"`,
    /// `"deploy"` or `"sync"`.
    pub fn as_str(self) -> &'static str {
        match self {
            TransitionKind::Promote => "promote",
            TransitionKind::Rollback => "rollback",
            TransitionKind::Split => "split",
            TransitionKind::Mirror => "mirror",
            TransitionKind::Abort => "abort",
            TransitionKind::Sync => "sync",
            TransitionKind::Deploy => "deploy",
        }
    }
}

impl fmt::Display for TransitionKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One entry of the transition history: the state right after a control call.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Transition {
    /// The generation this call produced; rises by one with every call that
    /// changes something.
    pub generation: u64,
    /// When the call took effect.
    pub at: SystemTime,
    /// What the call was.
    pub kind: TransitionKind,
    /// The active color after the call.
    pub active: Color,
    /// The version the active color holds after the call.
    pub version: VersionLabel,
    /// The active color and version before the call.
    pub from: ColorVersion,
    /// The fraction of requests sent to the standby after the call.
    pub split: f64,
    /// The fraction of active traffic mirrored to the standby after the call.
    pub mirror: f64,
    /// The version blue holds after the call.
    pub blue: VersionLabel,
    /// The version green holds after the call.
    pub green: VersionLabel,
    /// For a deploy: the version that left the standby slot.
    pub replaced: Option<VersionLabel>,
}

impl Transition {
    /// The version `color` holds after the call.
    pub fn version_of(&self, color: Color) -> &VersionLabel {
        match color {
            Color::Blue => &self.blue,
            Color::Green => &self.green,
        }
    }
}

/// What a control call did.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    /// The state changed: the transition recorded for it.
    Applied(Transition),
    /// The state already was what the call asked for (a repeated promote
    /// *to* a version, a rollback with nothing to undo, a split set to its
    /// value): no generation bump, no transition.
    Unchanged {
        /// The current generation.
        generation: u64,
    },
}

impl Change {
    /// The transition, when the state changed.
    pub fn transition(&self) -> Option<&Transition> {
        match self {
            Change::Applied(t) => Some(t),
            Change::Unchanged { .. } => None,
        }
    }

    /// Whether the state changed.
    pub fn is_applied(&self) -> bool {
        matches!(self, Change::Applied(_))
    }

    /// The generation after the call.
    pub fn generation(&self) -> u64 {
        match self {
            Change::Applied(t) => t.generation,
            Change::Unchanged { generation } => *generation,
        }
    }
}

/// Where a promote goes: a color, or the color holding a version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// This color.
    Color(Color),
    /// The color holding this version.
    Version(VersionLabel),
}

impl From<Color> for Target {
    fn from(color: Color) -> Target {
        Target::Color(color)
    }
}

impl From<VersionLabel> for Target {
    fn from(label: VersionLabel) -> Target {
        Target::Version(label)
    }
}

impl From<&VersionLabel> for Target {
    fn from(label: &VersionLabel) -> Target {
        Target::Version(label.clone())
    }
}

/// Why a control call changed nothing.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum ControlError {
    /// A bad argument (a fraction that is NaN or outside `0..=1`).
    Invalid(ConfigError),
    /// The call expected another generation: the state moved since the
    /// caller looked (see [`RolloutHandle::expect_generation`](super::RolloutHandle::expect_generation)).
    Conflict {
        /// The generation the caller saw.
        expected: u64,
        /// The current one.
        actual: u64,
    },
    /// The color to promote is not ready: its version was seen pending or
    /// failing. [`RolloutHandle::force`](super::RolloutHandle::force) promotes anyway.
    NotReady {
        /// The color.
        color: Color,
        /// Its version.
        version: VersionLabel,
        /// What was seen.
        readiness: Readiness,
    },
    /// No color holds this version.
    UnknownVersion {
        /// The version asked for.
        version: String,
    },
    /// The router was built without mirroring (see
    /// [`Builder::mirror`](crate::router::Builder::mirror) and
    /// [`Builder::compare`](crate::router::Builder::compare)).
    NoMirror,
}

impl fmt::Display for ControlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ControlError::Invalid(e) => e.fmt(f),
            ControlError::Conflict { expected, actual } => write!(
                f,
                "conflict: expected generation {expected}, the state is at {actual}"
            ),
            ControlError::NotReady {
                color,
                version,
                readiness,
            } => write!(
                f,
                "{color} ({version}) is not ready ({readiness}): deploy a ready version or force the promote"
            ),
            ControlError::UnknownVersion { version } => {
                write!(f, "no color holds version {version:?}")
            }
            ControlError::NoMirror => f.write_str(
                "the router was built without mirroring: use Builder::mirror or Builder::compare",
            ),
        }
    }
}

impl std::error::Error for ControlError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ControlError::Invalid(e) => Some(e),
            _ => None,
        }
    }
}

impl From<ConfigError> for ControlError {
    fn from(e: ConfigError) -> Self {
        ControlError::Invalid(e)
    }
}

/// A control call, as data.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Op {
    /// Promote: to the standby (`None`), or to a target (a no-op when it is
    /// already live).
    Promote {
        to: Option<Target>,
        force: bool,
    },
    Rollback,
    Split(f64),
    Mirror(f64),
    /// A plan's abort back to `stable`.
    Abort {
        stable: Color,
    },
    /// A state from a shared store: all three at once.
    #[cfg_attr(not(feature = "store"), allow(dead_code))]
    Assign {
        active: Color,
        split: f64,
        mirror: f64,
    },
}

impl Op {
    pub(crate) fn kind(&self) -> TransitionKind {
        match self {
            Op::Promote { .. } => TransitionKind::Promote,
            Op::Rollback => TransitionKind::Rollback,
            Op::Split(_) => TransitionKind::Split,
            Op::Mirror(_) => TransitionKind::Mirror,
            Op::Abort { .. } => TransitionKind::Abort,
            Op::Assign { .. } => TransitionKind::Sync,
        }
    }
}

/// The color that was active before the last promote not yet rolled back,
/// and which version it held then.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Previous {
    pub(crate) color: Color,
    pub(crate) id: u64,
}

pub(crate) struct State {
    pub(crate) active: Color,
    pub(crate) split: f64,
    pub(crate) mirror: f64,
    pub(crate) generation: u64,
    /// Counts deploys (the word keeps its low 20 bits).
    pub(crate) epoch: u32,
    pub(crate) previous: Option<Previous>,
    /// The version each color holds, blue first.
    pub(crate) versions: [Live; 2],
    /// Replaced versions not gone yet.
    pub(crate) retiring: Vec<Retiring>,
    pub(crate) history: VecDeque<Transition>,
    /// Measuring is on while this is true or `measure_refs` is above zero.
    pub(crate) measure_always: bool,
    pub(crate) measure_refs: u32,
    /// The rollout plan driving this router, if one runs.
    pub(crate) plan: Option<u64>,
    /// Whether the router can mirror to the standby.
    pub(crate) can_mirror: bool,
}

/// What [`State::apply`] decided.
pub(crate) enum Decision {
    Unchanged,
    Apply,
}

impl State {
    pub(crate) fn word(&self) -> Word {
        Word::pack(
            self.active,
            threshold(self.split),
            threshold(self.mirror),
            self.measure_always || self.measure_refs > 0,
            self.epoch,
        )
    }

    pub(crate) fn version(&self, color: Color) -> &Live {
        &self.versions[color.index()]
    }

    pub(crate) fn version_mut(&mut self, color: Color) -> &mut Live {
        &mut self.versions[color.index()]
    }

    /// The color holding `label`.
    pub(crate) fn color_of(&self, label: &str) -> Option<Color> {
        Color::ALL
            .into_iter()
            .find(|&c| self.version(c).label.as_str() == label)
    }

    pub(crate) fn served(&self, color: Color) -> ColorVersion {
        ColorVersion {
            color,
            version: self.version(color).label.clone(),
        }
    }

    /// The previous color, if it still holds the version it held then.
    fn previous_loaded(&self) -> Option<Color> {
        self.previous
            .filter(|p| p.color != self.active && self.version(p.color).id == p.id)
            .map(|p| p.color)
    }

    /// Decides `op` on this state and, when it changes something, makes the
    /// change (the caller bumps the generation and records the transition).
    /// `expect` is the generation the caller saw, if it gave one. A call
    /// whose target is already reached is unchanged whatever the generation:
    /// repeating it is safe.
    pub(crate) fn apply(&mut self, op: &Op, expect: Option<u64>) -> Result<Decision, ControlError> {
        let check = |st: &State| match expect {
            Some(expected) if expected != st.generation => Err(ControlError::Conflict {
                expected,
                actual: st.generation,
            }),
            _ => Ok(()),
        };
        match op {
            Op::Promote { to, force } => {
                let target = match to {
                    None => self.active.other(),
                    Some(Target::Color(c)) => *c,
                    Some(Target::Version(label)) => {
                        self.color_of(label.as_str()).ok_or_else(|| {
                            ControlError::UnknownVersion {
                                version: label.to_string(),
                            }
                        })?
                    }
                };
                if target == self.active {
                    // Promoting to what is live: a no-op (a plain promote
                    // always targets the standby, so it never gets here).
                    return Ok(Decision::Unchanged);
                }
                check(self)?;
                let live = self.version(target);
                if !force && matches!(live.readiness, Readiness::NotReady | Readiness::Failed) {
                    return Err(ControlError::NotReady {
                        color: target,
                        version: live.label.clone(),
                        readiness: live.readiness,
                    });
                }
                self.previous = Some(Previous {
                    color: self.active,
                    id: self.version(self.active).id,
                });
                self.active = target;
                self.split = 0.0;
            }
            Op::Rollback => {
                let back = self.previous_loaded();
                if back.is_none() && self.split == 0.0 {
                    return Ok(Decision::Unchanged);
                }
                check(self)?;
                if let Some(color) = back {
                    self.active = color;
                    self.previous = None;
                }
                self.split = 0.0;
            }
            Op::Split(fraction) => {
                if *fraction == self.split {
                    return Ok(Decision::Unchanged);
                }
                check(self)?;
                self.split = *fraction;
            }
            Op::Mirror(fraction) => {
                if !self.can_mirror {
                    return Err(ControlError::NoMirror);
                }
                if *fraction == self.mirror {
                    return Ok(Decision::Unchanged);
                }
                check(self)?;
                self.mirror = *fraction;
            }
            Op::Abort { stable } => {
                if self.active == *stable && self.split == 0.0 && self.mirror == 0.0 {
                    return Ok(Decision::Unchanged);
                }
                check(self)?;
                if self.active != *stable {
                    self.previous = None;
                    self.active = *stable;
                }
                self.split = 0.0;
                self.mirror = 0.0;
            }
            Op::Assign {
                active,
                split,
                mirror,
            } => {
                if *mirror > 0.0 && !self.can_mirror {
                    return Err(ControlError::NoMirror);
                }
                if self.active == *active && self.split == *split && self.mirror == *mirror {
                    return Ok(Decision::Unchanged);
                }
                check(self)?;
                if self.active != *active {
                    self.previous = Some(Previous {
                        color: self.active,
                        id: self.version(self.active).id,
                    });
                    self.active = *active;
                }
                self.split = *split;
                self.mirror = *mirror;
            }
        }
        Ok(Decision::Apply)
    }

    /// Bumps the generation and records a transition of `kind` from `from`.
    pub(crate) fn record(
        &mut self,
        kind: TransitionKind,
        from: ColorVersion,
        replaced: Option<VersionLabel>,
    ) -> Transition {
        self.generation += 1;
        let t = Transition {
            generation: self.generation,
            at: SystemTime::now(),
            kind,
            active: self.active,
            version: self.version(self.active).label.clone(),
            from,
            split: self.split,
            mirror: self.mirror,
            blue: self.version(Color::Blue).label.clone(),
            green: self.version(Color::Green).label.clone(),
            replaced,
        };
        if self.history.len() == HISTORY {
            self.history.pop_front();
        }
        self.history.push_back(t.clone());
        t
    }
}

/// A fraction checked to be within `0..=1`, with `-0.0` stored as `0.0`.
pub(crate) fn fraction(setting: &'static str, value: f64) -> Result<f64, ControlError> {
    let value = crate::error::check_fraction(setting, value)?;
    Ok(if value == 0.0 { 0.0 } else { value })
}
