//! [`PlanBuilder`]: the steps, phases and gates of a plan, checked in
//! [`build`](PlanBuilder::build).

use std::fmt;
use std::time::Duration;

use super::error::PlanError;
use super::gate::Gate;
#[cfg(feature = "drift")]
use super::gate::GateKind;
use super::{MirrorPhase, MirrorUntil, RolloutPlan};

/// Builds a [`RolloutPlan`]; invalid plans fail in [`build`](Self::build)
/// with a [`PlanError`].
#[derive(Clone)]
pub struct PlanBuilder {
    pub(super) plan: RolloutPlan,
    pub(super) all_at_once: bool,
    pub(super) linear: Option<(f64, Duration, f64)>,
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
    /// [`DEFAULT_INTERVAL`](super::DEFAULT_INTERVAL).
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
            // One family per kind of sample: mirrored pairs, live answers.
            let p_gates = |of_live: bool| {
                plan.gates
                    .iter()
                    .filter(|g| {
                        matches!(&g.kind, GateKind::Drift { statistic, live, .. }
                        if statistic.is_p_value() && *live == of_live)
                    })
                    .count()
            };
            let (mirrored, lived) = (p_gates(false), p_gates(true));
            for g in &mut plan.gates {
                if let GateKind::Drift { tests, live, .. } = &mut g.kind {
                    *tests = if *live { lived } else { mirrored }.max(1);
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

impl fmt::Debug for PlanBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PlanBuilder")
            .field("plan", &self.plan)
            .field("all_at_once", &self.all_at_once)
            .field("linear", &self.linear)
            .finish()
    }
}
