//! [`Gate`]: the guardrails a plan evaluates, and what a custom check sees.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use super::error::PlanError;
use super::status::{GateVerdict, Phase};
use crate::control::Measurements;
use crate::Color;

pub(super) type CheckFn = dyn Fn(&CheckInput<'_>) -> GateVerdict + Send + Sync;

/// A guardrail evaluated while a plan runs. Every gate needs a
/// [`min_sample`](Gate::min_sample): until it has seen that many requests in
/// the current phase it is inconclusive.
#[derive(Clone)]
pub struct Gate {
    pub(super) name: String,
    pub(super) kind: GateKind,
    pub(super) min_sample: u64,
}

#[derive(Clone)]
pub(super) enum GateKind {
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
        /// Over the live answers of each color in the canary steps (a
        /// [`LiveDriftLayer`](crate::live::LiveDriftLayer)), not over
        /// mirrored pairs.
        live: bool,
    },
}

impl GateKind {
    pub(super) fn mirror_only(&self) -> bool {
        #[cfg(feature = "drift")]
        if let GateKind::Drift { live, .. } = self {
            return !live;
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
                live: false,
            },
        )
    }

    /// Like [`drift`](Self::drift), over the live answers of each color
    /// during the canary steps: the stable color's answers to its users
    /// against the candidate's to its users, sampled by a
    /// [`LiveDriftLayer`](crate::live::LiveDriftLayer) around the router
    /// (starting the plan without one is [`PlanError::NoLiveDrift`]). Each
    /// step starts no new sample: the pair of versions is the same through
    /// the canary. Bonferroni counts the live p-value gates apart from the
    /// mirrored ones (they judge other phases). Named
    /// `live_drift:{field}:{statistic}`.
    #[cfg(feature = "drift")]
    #[cfg_attr(docsrs, doc(cfg(feature = "drift")))]
    pub fn live_drift(field: &str, statistic: crate::drift::Statistic, limit: f64) -> Gate {
        Gate::new(
            format!("live_drift:{field}:{}", statistic.as_str()),
            GateKind::Drift {
                field: field.to_owned(),
                statistic,
                limit,
                tests: 1,
                live: true,
            },
        )
    }

    /// Fails when more than `max` requests in the mirror phase broke the
    /// schema: accepted (2xx) by one side and rejected (4xx) by the other
    /// (the candidate requires a field the stable version did not, or
    /// rejects a value it accepted; see
    /// [`ShadowReport::schema_breaks`](crate::shadow::ShadowReport::schema_breaks)),
    /// or answered in another structure: a response field on one side only
    /// (renamed, removed, added) or of another JSON type (see
    /// [`ShadowReport::reshaped`](crate::shadow::ShadowReport::reshaped);
    /// array lengths are not counted). The failing verdict names the
    /// fields and the last rejected request. Sample: requests both sides
    /// answered. Named `schema_compatible`.
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
        F: Fn(&CheckInput<'_>) -> GateVerdict + Send + Sync + 'static,
    {
        Gate::new(name, GateKind::Check(Arc::new(check)))
    }

    /// The sample the gate needs before it passes or fails. Required: a gate
    /// without one fails [`PlanBuilder::build`](super::PlanBuilder::build).
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

    pub(super) fn validate(&self) -> Result<(), PlanError> {
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

impl Gate {
    /// The sample it needs before it decides (its
    /// [`min_sample`](Self::min_sample)).
    pub fn sample_needed(&self) -> u64 {
        self.min_sample
    }

    /// The threshold in words, for status and events (`error rate at most
    /// 1.00%`).
    pub fn threshold(&self) -> String {
        match &self.kind {
            GateKind::ErrorRate { max } => format!("error rate at most {:.2}%", max * 100.0),
            GateKind::Latency {
                quantile,
                max_ratio,
                slack,
            } => format!(
                "p{} at most {max_ratio} x the stable color's{}",
                quantile * 100.0,
                if slack.is_zero() {
                    String::new()
                } else {
                    format!(" + {slack:?}")
                }
            ),
            GateKind::Agreement { min } => format!("agreement at least {:.2}%", min * 100.0),
            GateKind::Mismatches { max } => format!("at most {max} mismatches"),
            GateKind::SchemaBreaks { max } => {
                format!("at most {max} schema breaks or structure changes")
            }
            GateKind::Check(_) => "a custom check".to_owned(),
            #[cfg(feature = "drift")]
            GateKind::Drift {
                field,
                statistic,
                limit,
                tests,
                live,
            } => {
                let over = if *live {
                    "live answers"
                } else {
                    "mirrored pairs"
                };
                if statistic.is_p_value() {
                    format!(
                        "{field}: {} p-value at least {limit} / {tests} tests, over {over}",
                        statistic.as_str()
                    )
                } else {
                    format!(
                        "{field}: {} at most {limit}, over {over}",
                        statistic.as_str()
                    )
                }
            }
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
                live,
            } => d
                .field("field", field)
                .field("statistic", statistic)
                .field("limit", limit)
                .field("tests", tests)
                .field("live", live),
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
    /// Compared requests in the current phase answered in another structure
    /// (a field on one side only, or of another type; see
    /// [`ShadowReport::reshaped`](crate::shadow::ShadowReport::reshaped)).
    pub reshaped: u64,
    /// The structure changes of the pair compared now, most frequent first.
    pub structure: &'a [crate::shadow::StructureChange],
    /// Bake time so far in the phase.
    pub baked: Duration,
    /// The drift of the fields given to
    /// [`CompareSettings::drift`](crate::shadow::CompareSettings::drift),
    /// over the pair of versions compared now.
    #[cfg(feature = "drift")]
    #[cfg_attr(docsrs, doc(cfg(feature = "drift")))]
    pub drift: &'a [crate::drift::FieldDrift],
    /// The drift between the two colors' live answers (a
    /// [`LiveDriftLayer`](crate::live::LiveDriftLayer)), for the pair of
    /// versions in the colors now; empty without one.
    #[cfg(feature = "drift")]
    #[cfg_attr(docsrs, doc(cfg(feature = "drift")))]
    pub live_drift: &'a [crate::drift::FieldDrift],
}
