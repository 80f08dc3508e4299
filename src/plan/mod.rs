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

mod run;
mod status;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

pub use run::PlanRun;
pub use status::{
    AbortReason, GateStatus, Phase, PlanEvent, PlanOutcome, PlanRecord, PlanState, PlanStatus,
    Verdict,
};

use crate::control::Measurements;
use crate::{Color, RolloutHandle};

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
enum MirrorUntil {
    Elapsed(Duration),
    Compared(u64),
}

/// Builds a [`RolloutPlan`]; invalid plans fail in [`build`](Self::build)
/// with a [`PlanError`].
#[derive(Clone)]
pub struct PlanBuilder {
    plan: RolloutPlan,
    all_at_once: bool,
    linear: Option<(f64, Duration, f64)>,
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

    /// How many gates the plan has.
    pub fn gates(&self) -> usize {
        self.gates.len()
    }
}

impl PlanBuilder {
    /// Before any canary step, mirror `fraction` of the stable color's
    /// requests to the candidate for `duration` (and until the mirror gates
    /// pass).
    pub fn mirror_for(mut self, fraction: f64, duration: Duration) -> Self {
        self.plan.mirror = Some(MirrorPhase {
            fraction,
            until: MirrorUntil::Elapsed(duration),
        });
        self
    }

    /// Before any canary step, mirror `fraction` of the stable color's
    /// requests to the candidate until `compared` of them have been compared
    /// (and the mirror gates pass). Needs a router built with
    /// [`Builder::compare`](crate::router::Builder::compare).
    pub fn mirror_until_compared(mut self, fraction: f64, compared: u64) -> Self {
        self.plan.mirror = Some(MirrorPhase {
            fraction,
            until: MirrorUntil::Compared(compared),
        });
        self
    }

    /// Adds a canary step: `split` of the requests to the candidate for at
    /// least `bake` (more while a gate is inconclusive or the plan paused).
    pub fn step(mut self, split: f64, bake: Duration) -> Self {
        self.plan.steps.push((split, bake));
        self
    }

    /// After the promote, keep the stable color warm and the gates watching
    /// for `bake` before the plan completes. Default zero.
    pub fn post_promotion_bake(mut self, bake: Duration) -> Self {
        self.plan.post_bake = bake;
        self
    }

    /// Adds a guardrail.
    pub fn gate(mut self, gate: Gate) -> Self {
        self.plan.gates.push(gate);
        self
    }

    /// How often the gates are evaluated (and a bake time can end). Default
    /// [`DEFAULT_INTERVAL`].
    pub fn interval(mut self, every: Duration) -> Self {
        self.plan.interval = every;
        self
    }

    /// Checks the plan.
    ///
    /// # Errors
    /// A split outside `0 < s ≤ 1` or decreasing between steps, a zero bake
    /// time on a step or the mirror phase, a plan with nothing to do, a gate
    /// without a minimum sample or with a threshold out of range, two gates
    /// with the same name, a mirror gate without a mirror phase, or a zero
    /// interval.
    pub fn build(self) -> Result<RolloutPlan, PlanError> {
        let mut plan = self.plan;
        if let Some((step, bake, until)) = self.linear {
            check_split(step)?;
            check_split(until)?;
            if step > until {
                return Err(PlanError::InvalidSplit { value: step });
            }
            let n = (until / step - 1e-9).ceil().max(1.0) as usize;
            for i in 1..=n {
                plan.steps.push(((step * i as f64).min(until), bake));
            }
        }
        if plan.steps.is_empty() && plan.mirror.is_none() && !self.all_at_once {
            return Err(PlanError::EmptyPlan);
        }
        if self.all_at_once && !plan.steps.is_empty() {
            return Err(PlanError::StepsWithAllAtOnce);
        }
        if plan.interval.is_zero() {
            return Err(PlanError::ZeroDuration { what: "interval" });
        }
        let mut last = 0.0;
        for &(split, bake) in &plan.steps {
            check_split(split)?;
            if split < last {
                return Err(PlanError::DecreasingSplit {
                    value: split,
                    after: last,
                });
            }
            last = split;
            if bake.is_zero() {
                return Err(PlanError::ZeroDuration {
                    what: "canary step bake",
                });
            }
        }
        if let Some(m) = plan.mirror {
            check_split(m.fraction).map_err(|_| PlanError::InvalidSplit { value: m.fraction })?;
            match m.until {
                MirrorUntil::Elapsed(d) if d.is_zero() => {
                    return Err(PlanError::ZeroDuration {
                        what: "mirror phase",
                    })
                }
                MirrorUntil::Compared(0) => {
                    return Err(PlanError::ZeroDuration {
                        what: "mirror phase (compared requests)",
                    })
                }
                _ => {}
            }
        }
        #[cfg(feature = "drift")]
        {
            let p_gates = plan
                .gates
                .iter()
                .filter(|g| matches!(&g.kind, GateKind::Drift { statistic, .. } if statistic.is_p_value()))
                .count();
            for g in &mut plan.gates {
                if let GateKind::Drift { tests, .. } = &mut g.kind {
                    *tests = p_gates.max(1);
                }
            }
        }
        for (i, gate) in plan.gates.iter().enumerate() {
            gate.validate()?;
            if plan.gates[..i].iter().any(|g| g.name == gate.name) {
                return Err(PlanError::DuplicateGate {
                    gate: gate.name.clone(),
                });
            }
            if gate.kind.mirror_only() && plan.mirror.is_none() {
                return Err(PlanError::GateNeedsMirror {
                    gate: gate.name.clone(),
                });
            }
        }
        Ok(plan)
    }
}

fn check_split(value: f64) -> Result<(), PlanError> {
    if value.is_finite() && value > 0.0 && value <= 1.0 {
        Ok(())
    } else {
        Err(PlanError::InvalidSplit { value })
    }
}

type CheckFn = dyn Fn(&CheckInput<'_>) -> Verdict + Send + Sync;

/// A guardrail evaluated while a plan runs. Every gate needs a
/// [`min_sample`](Gate::min_sample): until it has seen that many requests in
/// the current phase it is inconclusive.
#[derive(Clone)]
pub struct Gate {
    name: String,
    kind: GateKind,
    min_sample: u64,
}

#[derive(Clone)]
enum GateKind {
    ErrorRate {
        max: f64,
    },
    Latency {
        quantile: f64,
        max_ratio: f64,
        slack: Duration,
    },
    Agreement {
        min: f64,
    },
    Mismatches {
        max: u64,
    },
    SchemaBreaks {
        max: u64,
    },
    Check(Arc<CheckFn>),
    #[cfg(feature = "drift")]
    Drift {
        field: String,
        statistic: crate::drift::Statistic,
        limit: f64,
        /// The p-value gates in the plan (Bonferroni), set by `build`.
        tests: usize,
    },
}

impl GateKind {
    fn mirror_only(&self) -> bool {
        #[cfg(feature = "drift")]
        if matches!(self, GateKind::Drift { .. }) {
            return true;
        }
        matches!(
            self,
            GateKind::Agreement { .. }
                | GateKind::Mismatches { .. }
                | GateKind::SchemaBreaks { .. }
        )
    }
}

impl Gate {
    fn new(name: impl Into<String>, kind: GateKind) -> Gate {
        Gate {
            name: name.into(),
            kind,
            min_sample: 0,
        }
    }

    /// Fails when more than `max` (a fraction in `0..=1`) of the candidate's
    /// requests in the phase failed, as the router's failure classifier
    /// decides (5xx, service errors, server-fault gRPC statuses by default;
    /// see [`Builder::failure_classifier`](crate::router::Builder::failure_classifier)).
    /// Sample: the candidate's finished requests. Named `error_rate`.
    pub fn error_rate(max: f64) -> Gate {
        Gate::new("error_rate", GateKind::ErrorRate { max })
    }

    /// Fails when the candidate's `quantile` latency (time to the response
    /// head) is above `max_ratio` times the stable color's over the same
    /// phase (plus [`slack`](Gate::slack)). When the stable color served
    /// fewer than the minimum sample in the phase (a 100% step, or after the
    /// promote), its latency since the plan started (up to the promote) is
    /// the baseline. Sample: the candidate's requests in the phase and the
    /// stable color's in its baseline. Named `latency`.
    pub fn latency(quantile: f64, max_ratio: f64) -> Gate {
        Gate::new(
            "latency",
            GateKind::Latency {
                quantile,
                max_ratio,
                slack: Duration::ZERO,
            },
        )
    }

    /// Fails when the shadow comparison's agreement rate in the mirror phase
    /// is below `min`. Sample: compared requests. Named `agreement`. Needs a
    /// mirror phase and a router built with
    /// [`Builder::compare`](crate::router::Builder::compare).
    pub fn agreement(min: f64) -> Gate {
        Gate::new("agreement", GateKind::Agreement { min })
    }

    /// Fails when the drift of `field` (a pointer given to
    /// [`CompareSettings::drift`](crate::shadow::CompareSettings::drift))
    /// between the stable version's and the candidate's answers in the
    /// mirror phase passes `limit`: above it for a distance (PSI,
    /// Jensen–Shannon, chi-square, KS, Wasserstein), below `limit / k` for a
    /// p-value, where `k` is the number of p-value drift gates in the plan
    /// (Bonferroni). Usual limits: [`crate::drift::limits`]. Inconclusive
    /// while the field has not appeared on both sides `min_sample` times,
    /// and when it never appeared: never a pass on no data. Sample: the
    /// fewer of the two sides' values. Named `drift:{field}:{statistic}`.
    #[cfg(feature = "drift")]
    #[cfg_attr(docsrs, doc(cfg(feature = "drift")))]
    pub fn drift(field: &str, statistic: crate::drift::Statistic, limit: f64) -> Gate {
        Gate::new(
            format!("drift:{field}:{}", statistic.as_str()),
            GateKind::Drift {
                field: field.to_owned(),
                statistic,
                limit,
                tests: 1,
            },
        )
    }

    /// Fails when more than `max` requests in the mirror phase were
    /// accepted (2xx) by one side and rejected (4xx) by the other: the
    /// candidate requires a field the stable version did not, or rejects a
    /// value it accepted (see [`ShadowReport::schema_breaks`](crate::shadow::ShadowReport::schema_breaks)).
    /// The verdict names the request of the last break. Sample: requests
    /// both sides answered. Named `schema_compatible`.
    pub fn schema_compatible(max_breaks: u64) -> Gate {
        Gate::new(
            "schema_compatible",
            GateKind::SchemaBreaks { max: max_breaks },
        )
    }

    /// Fails when more than `max` compared requests in the mirror phase
    /// disagreed. Sample: compared requests. Named `mismatches`.
    pub fn max_mismatches(max: u64) -> Gate {
        Gate::new("mismatches", GateKind::Mismatches { max })
    }

    /// A user check, like an Argo Rollouts analysis: `check` returns pass,
    /// fail or inconclusive from what the plan measured in the current phase.
    /// It runs in every phase. Sample: compared requests in the mirror phase,
    /// the candidate's finished requests otherwise.
    pub fn check<F>(name: impl Into<String>, check: F) -> Gate
    where
        F: Fn(&CheckInput<'_>) -> Verdict + Send + Sync + 'static,
    {
        Gate::new(name, GateKind::Check(Arc::new(check)))
    }

    /// The sample the gate needs before it passes or fails. Required: a gate
    /// without one fails [`PlanBuilder::build`].
    pub fn min_sample(mut self, n: u64) -> Gate {
        self.min_sample = n;
        self
    }

    /// Latency allowed above `max_ratio ×` the stable color's, for fast
    /// services where a ratio alone is noise. Default zero. Only for
    /// [`Gate::latency`]; ignored by the others.
    pub fn slack(mut self, slack: Duration) -> Gate {
        if let GateKind::Latency { slack: s, .. } = &mut self.kind {
            *s = slack;
        }
        self
    }

    /// Renames the gate (names appear in verdicts, events and abort reasons
    /// and must be unique within a plan).
    pub fn named(mut self, name: impl Into<String>) -> Gate {
        self.name = name.into();
        self
    }

    /// The gate's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    fn validate(&self) -> Result<(), PlanError> {
        let bad = |what: &'static str, value: f64| PlanError::InvalidThreshold {
            gate: self.name.clone(),
            what,
            value,
        };
        if self.name.is_empty() {
            return Err(PlanError::EmptyGateName);
        }
        if self.min_sample == 0 {
            return Err(PlanError::MissingMinSample {
                gate: self.name.clone(),
            });
        }
        match self.kind {
            GateKind::ErrorRate { max } if !(0.0..=1.0).contains(&max) || max.is_nan() => {
                Err(bad("max error rate", max))
            }
            GateKind::Latency { quantile, .. } if !(quantile > 0.0 && quantile <= 1.0) => {
                Err(bad("quantile", quantile))
            }
            GateKind::Latency { max_ratio, .. } if !(max_ratio.is_finite() && max_ratio > 0.0) => {
                Err(bad("max ratio", max_ratio))
            }
            GateKind::Agreement { min } if !(0.0..=1.0).contains(&min) || min.is_nan() => {
                Err(bad("min agreement", min))
            }
            #[cfg(feature = "drift")]
            GateKind::Drift {
                statistic, limit, ..
            } if !(limit.is_finite() && limit >= 0.0)
                || (statistic.is_p_value() && limit > 1.0) =>
            {
                Err(bad("drift limit", limit))
            }
            _ => Ok(()),
        }
    }
}

impl fmt::Debug for Gate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Gate");
        d.field("name", &self.name);
        match &self.kind {
            GateKind::ErrorRate { max } => d.field("max_error_rate", max),
            GateKind::Latency {
                quantile,
                max_ratio,
                slack,
            } => d
                .field("quantile", quantile)
                .field("max_ratio", max_ratio)
                .field("slack", slack),
            GateKind::Agreement { min } => d.field("min_agreement", min),
            GateKind::Mismatches { max } => d.field("max_mismatches", max),
            GateKind::SchemaBreaks { max } => d.field("max_schema_breaks", max),
            GateKind::Check(_) => d.field("check", &"<fn>"),
            #[cfg(feature = "drift")]
            GateKind::Drift {
                field,
                statistic,
                limit,
                tests,
            } => d
                .field("field", field)
                .field("statistic", statistic)
                .field("limit", limit)
                .field("tests", tests),
        };
        d.field("min_sample", &self.min_sample).finish()
    }
}

/// What a [`Gate::check`] sees: the current phase's measurements.
#[derive(Debug)]
#[non_exhaustive]
pub struct CheckInput<'a> {
    /// The current phase.
    pub phase: &'a Phase,
    /// The color being rolled out.
    pub candidate: Color,
    /// The color that was serving when the plan started.
    pub stable: Color,
    /// Both colors' outcomes in the current phase.
    pub window: &'a Measurements,
    /// Shadow comparisons in the current phase that matched.
    pub matched: u64,
    /// Shadow comparisons in the current phase that differed.
    pub mismatched: u64,
    /// Requests in the current phase one side accepted and the other
    /// rejected (see [`Gate::schema_compatible`]).
    pub schema_breaks: u64,
    /// Bake time so far in the phase.
    pub baked: Duration,
    /// The drift of the fields given to
    /// [`CompareSettings::drift`](crate::shadow::CompareSettings::drift),
    /// over the pair of versions compared now.
    #[cfg(feature = "drift")]
    #[cfg_attr(docsrs, doc(cfg(feature = "drift")))]
    pub drift: &'a [crate::drift::FieldDrift],
}

/// Why a plan could not be built or started.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum PlanError {
    /// A split or mirror fraction outside `0 < s ≤ 1` (or NaN).
    InvalidSplit {
        /// The rejected value.
        value: f64,
    },
    /// A canary step lower than the one before it.
    DecreasingSplit {
        /// The rejected value.
        value: f64,
        /// The step before it.
        after: f64,
    },
    /// A plan with no mirror phase, no canary step and no
    /// [`all_at_once`](RolloutPlan::all_at_once).
    EmptyPlan,
    /// Canary steps added to an all-at-once plan.
    StepsWithAllAtOnce,
    /// A bake time, mirror phase or interval of zero.
    ZeroDuration {
        /// Which one.
        what: &'static str,
    },
    /// A gate without a minimum sample (see [`Gate::min_sample`]).
    MissingMinSample {
        /// The gate.
        gate: String,
    },
    /// A gate threshold out of range.
    InvalidThreshold {
        /// The gate.
        gate: String,
        /// Which threshold.
        what: &'static str,
        /// The rejected value.
        value: f64,
    },
    /// A gate with an empty name.
    EmptyGateName,
    /// Two gates with the same name.
    DuplicateGate {
        /// The name.
        gate: String,
    },
    /// A shadow-comparison gate in a plan without a mirror phase.
    GateNeedsMirror {
        /// The gate.
        gate: String,
    },
    /// Another plan runs on this router.
    AlreadyRunning,
    /// [`RolloutPlan::start`] was called outside a tokio runtime.
    NoRuntime,
    /// The plan compares (a comparison gate, or a mirror phase counted in
    /// compared requests) and the router was built without
    /// [`Builder::compare`](crate::router::Builder::compare).
    NoComparison,
    /// The plan mirrors and the router has no executor for shadow work.
    NoMirror,
}

impl fmt::Display for PlanError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PlanError::InvalidSplit { value } => {
                write!(f, "a split must be above 0 and at most 1, got {value}")
            }
            PlanError::DecreasingSplit { value, after } => {
                write!(
                    f,
                    "canary step {value} is lower than the step before it ({after})"
                )
            }
            PlanError::EmptyPlan => f.write_str(
                "the plan does nothing: add a mirror phase or a canary step, or use all_at_once",
            ),
            PlanError::StepsWithAllAtOnce => f.write_str("an all-at-once plan has no canary steps"),
            PlanError::ZeroDuration { what } => write!(f, "{what} must be above zero"),
            PlanError::MissingMinSample { gate } => {
                write!(f, "gate {gate} needs a minimum sample above zero")
            }
            PlanError::InvalidThreshold { gate, what, value } => {
                write!(f, "gate {gate}: {what} {value} is out of range")
            }
            PlanError::EmptyGateName => f.write_str("a gate name must not be empty"),
            PlanError::DuplicateGate { gate } => write!(f, "two gates are named {gate}"),
            PlanError::GateNeedsMirror { gate } => {
                write!(
                    f,
                    "gate {gate} reads the shadow comparison: add a mirror phase"
                )
            }
            PlanError::AlreadyRunning => f.write_str("another plan runs on this router"),
            PlanError::NoRuntime => f.write_str("a plan runs on a tokio runtime; none is running"),
            PlanError::NoComparison => f.write_str(
                "the plan reads the shadow comparison: build the router with Builder::compare",
            ),
            PlanError::NoMirror => {
                f.write_str("the plan mirrors and the router has no executor for shadow work")
            }
        }
    }
}

impl std::error::Error for PlanError {}

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

impl fmt::Debug for PlanBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PlanBuilder")
            .field("plan", &self.plan)
            .field("all_at_once", &self.all_at_once)
            .field("linear", &self.linear)
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
