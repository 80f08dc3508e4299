//! Automated rollouts with guardrails: a [`RolloutPlan`] walks a
//! [`RolloutHandle`] through a mirror phase, canary steps with a bake time
//! each, a promote and a post-promotion bake, and aborts back to the stable
//! color as soon as a [`Gate`] fails.
//!
//! The gates read what the router measures itself (see
//! [`RolloutHandle::measurements`]): each color's failure rate and latency,
//! over the current phase only, and the shadow comparison's agreement while
//! mirroring. Every gate has a minimum sample: until it is reached the gate is
//! inconclusive, and a plan whose bake time is over *holds* rather than
//! passing an inconclusive gate. A failing gate aborts at the evaluation that
//! sees it (every [`interval`](PlanBuilder::interval), 250 ms by default): one
//! transition puts the stable color back, split and mirror at zero, so no
//! request admitted after it reaches the candidate.
//!
//! | phase | traffic | gates evaluated |
//! |---|---|---|
//! | mirror (optional) | a fraction copied to the candidate, users see stable | [`Gate::agreement`], [`Gate::max_mismatches`], checks |
//! | canary step *i* | split *sᵢ* to the candidate | [`Gate::error_rate`], [`Gate::latency`], checks |
//! | post-promotion bake | all to the candidate, stable warm | [`Gate::error_rate`], [`Gate::latency`] (against stable's latency before the promote), checks |
//!
//! Manual control at every point: [`PlanRun::pause`], [`resume`](PlanRun::resume),
//! [`abort`](PlanRun::abort), [`skip_to_promote`](PlanRun::skip_to_promote).
//! Every step, gate verdict change and abort is an [event](PlanRun::subscribe)
//! and is kept in [`PlanStatus::history`], which
//! [`RolloutHandle::status`](crate::RolloutHandle::status) also shows. If
//! anyone else changes the rollout state while a plan runs (a promote,
//! rollback, split or mirror call), the plan stops, [`PlanState::Superseded`],
//! leaving traffic as that call set it.
//!
//! ```
//! use std::time::Duration;
//! use tower_rollout::plan::{Gate, PlanOutcome, RolloutPlan};
//! # use std::convert::Infallible;
//! # use http::{Request, Response};
//! # use tower::service_fn;
//! # use tower_rollout::{mirror::MirrorBody, BlueGreenRouter};
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let svc = service_fn(|_: Request<MirrorBody<String>>| async {
//! #     Ok::<_, Infallible>(Response::new(String::new()))
//! # });
//! let (router, handle) = BlueGreenRouter::new(svc.clone(), svc);
//!
//! // 10%, 20%, ... 50% of users, 30 s each, then promote and bake 60 s.
//! let plan = RolloutPlan::linear(0.10, Duration::from_secs(30), 0.50)
//!     .gate(Gate::error_rate(0.01).min_sample(200))
//!     .gate(Gate::latency(0.99, 1.5).min_sample(200))
//!     .post_promotion_bake(Duration::from_secs(60))
//!     .build()?;
//! let run = plan.start(&handle)?;
//! let mut events = run.subscribe();
//! # run.abort("doc example");
//! // ... serve traffic through `router`; the plan steps by itself.
//! match run.finished().await {
//!     PlanOutcome::Promoted => println!("rolled out"),
//!     PlanOutcome::Aborted(why) => println!("rolled back: {why}"),
//!     _ => {}
//! }
//! # drop((router, events.try_recv()));
//! # Ok(())
//! # }
//! ```

mod builder;
#[cfg(any(feature = "admin", feature = "store"))]
pub(crate) mod document;
mod error;
mod gate;
mod run;
mod status;

use std::fmt;
use std::time::Duration;

pub use builder::PlanBuilder;
#[cfg(any(feature = "admin", feature = "store"))]
#[cfg_attr(docsrs, doc(cfg(any(feature = "admin", feature = "store"))))]
pub use document::{plan_from_json, PlanDocumentError};
pub use error::PlanError;
pub use gate::{CheckInput, Gate};
pub use run::PlanRun;
#[cfg(feature = "store")]
pub(crate) use run::{evaluate, shadow_counts};
pub use status::{
    AbortReason, GateStatus, GateVerdict, Phase, PlanEvent, PlanOutcome, PlanRecord, PlanState,
    PlanStatus,
};

use crate::RolloutHandle;

/// The default evaluation interval.
pub const DEFAULT_INTERVAL: Duration = Duration::from_millis(250);

/// A rollout plan: build it with [`RolloutPlan::builder`] or a preset, then
/// [`start`](RolloutPlan::start) it against a [`RolloutHandle`]. See the
/// [module docs](self).
#[derive(Clone)]
pub struct RolloutPlan {
    mirror: Option<MirrorPhase>,
    steps: Vec<(f64, Duration)>,
    post_bake: Duration,
    gates: Vec<Gate>,
    interval: Duration,
}

#[derive(Debug, Clone, Copy)]
struct MirrorPhase {
    fraction: f64,
    until: MirrorUntil,
}

#[derive(Debug, Clone, Copy)]
pub(crate) enum MirrorUntil {
    Elapsed(Duration),
    Compared(u64),
}

impl RolloutPlan {
    /// An empty builder: add a mirror phase or canary steps.
    pub fn builder() -> PlanBuilder {
        PlanBuilder {
            plan: RolloutPlan {
                mirror: None,
                steps: Vec::new(),
                post_bake: Duration::ZERO,
                gates: Vec::new(),
                interval: DEFAULT_INTERVAL,
            },
            all_at_once: false,
            linear: None,
        }
    }

    /// Promote at once (after the mirror phase, if one is added), then the
    /// post-promotion bake. SageMaker's ALL_AT_ONCE.
    pub fn all_at_once() -> PlanBuilder {
        let mut b = Self::builder();
        b.all_at_once = true;
        b
    }

    /// One canary step of `size` for `bake`, then promote. SageMaker's CANARY.
    pub fn canary(size: f64, bake: Duration) -> PlanBuilder {
        Self::builder().step(size, bake)
    }

    /// Steps of `step`, `2·step`, ... up to `until` (inclusive, the last step
    /// is `until` itself), each baked for `bake`, then promote. SageMaker's
    /// LINEAR, Flagger's stepWeight / maxWeight.
    pub fn linear(step: f64, bake: Duration, until: f64) -> PlanBuilder {
        let mut b = Self::builder();
        b.linear = Some((step, bake, until));
        b
    }

    /// The canary steps: (split, bake time).
    pub fn steps(&self) -> &[(f64, Duration)] {
        &self.steps
    }

    /// Starts the plan on `handle`'s router, on the ambient tokio runtime.
    /// The standby is the candidate, the active color the stable one. The
    /// first phase's traffic change is made before this returns.
    ///
    /// # Errors
    /// [`PlanError::AlreadyRunning`] when another plan runs on this router,
    /// [`PlanError::NoRuntime`] outside a tokio runtime,
    /// [`PlanError::NoComparison`] when a gate needs the shadow comparison
    /// and the router was built without
    /// [`Builder::compare`](crate::router::Builder::compare),
    /// [`PlanError::NoMirror`] when the plan mirrors and the router cannot.
    pub fn start(self, handle: &RolloutHandle) -> Result<PlanRun, PlanError> {
        run::start(self, handle)
    }

    /// The mirror phase's fraction and end, if the plan has one.
    #[cfg(feature = "store")]
    pub(crate) fn mirror_phase(&self) -> Option<(f64, MirrorUntil)> {
        self.mirror.map(|m| (m.fraction, m.until))
    }

    /// The bake after the promote.
    #[cfg(feature = "store")]
    pub(crate) fn post_bake(&self) -> Duration {
        self.post_bake
    }

    /// How often the gates are evaluated.
    #[cfg(feature = "store")]
    pub(crate) fn interval(&self) -> Duration {
        self.interval
    }

    /// Checks that `handle`'s router can run this plan (what
    /// [`start`](Self::start) checks before it takes the router).
    #[cfg(feature = "store")]
    pub(crate) fn check_router(&self, handle: &RolloutHandle) -> Result<(), PlanError> {
        run::check_router(self, &handle.control)
    }

    /// The plan's gates, in the order they were given (to show them, with
    /// [`Gate::name`], [`Gate::threshold`] and [`Gate::sample_needed`],
    /// before the plan starts).
    pub fn gates(&self) -> &[Gate] {
        &self.gates
    }
}

impl fmt::Debug for RolloutPlan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RolloutPlan")
            .field("mirror", &self.mirror)
            .field("steps", &self.steps)
            .field("post_bake", &self.post_bake)
            .field("gates", &self.gates)
            .field("interval", &self.interval)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    #[test]
    fn presets_expand() {
        let p = RolloutPlan::linear(0.1, S, 0.35).build().unwrap();
        let splits: Vec<f64> = p.steps().iter().map(|s| s.0).collect();
        assert_eq!(splits.len(), 4);
        assert!((splits[0] - 0.1).abs() < 1e-12 && (splits[2] - 0.3).abs() < 1e-12);
        assert_eq!(splits[3], 0.35);
        let p = RolloutPlan::linear(0.25, S, 1.0).build().unwrap();
        assert_eq!(p.steps().len(), 4);
        assert_eq!(p.steps()[3].0, 1.0);
        assert_eq!(
            RolloutPlan::canary(0.05, S).build().unwrap().steps().len(),
            1
        );
        assert!(RolloutPlan::all_at_once()
            .build()
            .unwrap()
            .steps()
            .is_empty());
    }

    #[test]
    fn bad_plans_fail_at_construction() {
        let err = |b: PlanBuilder| b.build().unwrap_err();
        assert_eq!(err(RolloutPlan::builder()), PlanError::EmptyPlan);
        assert_eq!(
            err(RolloutPlan::canary(1.5, S)),
            PlanError::InvalidSplit { value: 1.5 }
        );
        assert!(matches!(
            err(RolloutPlan::canary(f64::NAN, S)),
            PlanError::InvalidSplit { .. }
        ));
        assert_eq!(
            err(RolloutPlan::canary(0.0, S)),
            PlanError::InvalidSplit { value: 0.0 }
        );
        assert_eq!(
            err(RolloutPlan::canary(0.1, Duration::ZERO)),
            PlanError::ZeroDuration {
                what: "canary step bake"
            }
        );
        assert!(matches!(
            err(RolloutPlan::canary(0.5, S).step(0.2, S)),
            PlanError::DecreasingSplit { .. }
        ));
        assert_eq!(
            err(RolloutPlan::canary(0.1, S).gate(Gate::error_rate(0.01))),
            PlanError::MissingMinSample {
                gate: "error_rate".into()
            }
        );
        assert!(matches!(
            err(RolloutPlan::canary(0.1, S).gate(Gate::error_rate(2.0).min_sample(5))),
            PlanError::InvalidThreshold { .. }
        ));
        assert!(matches!(
            err(RolloutPlan::canary(0.1, S).gate(Gate::latency(0.0, 1.2).min_sample(5))),
            PlanError::InvalidThreshold { .. }
        ));
        assert_eq!(
            err(RolloutPlan::canary(0.1, S).gate(Gate::agreement(0.9).min_sample(5))),
            PlanError::GateNeedsMirror {
                gate: "agreement".into()
            }
        );
        assert!(matches!(
            err(RolloutPlan::canary(0.1, S)
                .gate(Gate::error_rate(0.1).min_sample(5))
                .gate(Gate::error_rate(0.2).min_sample(5))),
            PlanError::DuplicateGate { .. }
        ));
        assert_eq!(
            err(RolloutPlan::canary(0.1, S).interval(Duration::ZERO)),
            PlanError::ZeroDuration { what: "interval" }
        );
        assert_eq!(
            err(RolloutPlan::builder().mirror_for(0.5, Duration::ZERO)),
            PlanError::ZeroDuration {
                what: "mirror phase"
            }
        );
        assert_eq!(
            err(RolloutPlan::all_at_once().step(0.1, S)),
            PlanError::StepsWithAllAtOnce
        );
        assert!(matches!(
            err(RolloutPlan::linear(0.5, S, 0.2)),
            PlanError::InvalidSplit { .. }
        ));
        // Every error explains itself.
        assert!(PlanError::EmptyPlan.to_string().contains("mirror phase"));
    }
}
