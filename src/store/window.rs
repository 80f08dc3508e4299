//! Measurement windows of a fleet-wide plan: what each replica measured in
//! the current phase, published under its lease key
//! (`models/{model}/windows/{id}`) and summed by the driver, so that a gate
//! judges the whole fleet's traffic.

use std::time::Duration;

use serde_json::{json, Value};

use super::plan_state::{measurement_from_value, measurement_to_value, StoredPlan};
use crate::control::{MeasureGuard, Measurement, Measurements, RolloutHandle};
use crate::plan::{shadow_counts, GateStatus, GateVerdict};
use crate::Color;

/// One replica's published window.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ReplicaWindow {
    /// The replica.
    pub id: String,
    /// The plan ([`StoredPlan::id`]) and phase ([`StoredPlan::seq`]) the
    /// window belongs to.
    pub plan: u64,
    /// See `plan`.
    pub seq: u64,
    /// The version in each color there, blue first.
    pub versions: [String; 2],
    /// Each color's outcomes since this replica applied the phase.
    pub phase: Measurements,
    /// Each color's outcomes since this replica applied the plan's first
    /// phase it saw (the stable color's latency baseline after a promote).
    pub since_plan: Measurements,
    /// Shadow comparisons since the phase was applied here.
    pub compared: Compared,
    /// Set in the driver's window: the gates' verdicts at its last
    /// evaluation.
    pub gates: Vec<GateStatus>,
    /// Set in the driver's window: the gates that hold the plan (bake time
    /// over, not yet passing).
    pub holding: Vec<String>,
}

/// Shadow comparison counts in a window.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Compared {
    /// Comparisons that matched.
    pub matched: u64,
    /// Comparisons that differed.
    pub mismatched: u64,
    /// Requests one side accepted and the other rejected.
    pub schema_breaks: u64,
    /// Comparisons answered in another structure.
    pub reshaped: u64,
}

impl Compared {
    fn add(&mut self, o: &Compared) {
        self.matched = self.matched.saturating_add(o.matched);
        self.mismatched = self.mismatched.saturating_add(o.mismatched);
        self.schema_breaks = self.schema_breaks.saturating_add(o.schema_breaks);
        self.reshaped = self.reshaped.saturating_add(o.reshaped);
    }

    fn since(&self, o: &Compared) -> Compared {
        Compared {
            matched: self.matched.saturating_sub(o.matched),
            mismatched: self.mismatched.saturating_sub(o.mismatched),
            schema_breaks: self.schema_breaks.saturating_sub(o.schema_breaks),
            reshaped: self.reshaped.saturating_sub(o.reshaped),
        }
    }
}

/// The fleet's sum of the windows of one phase.
#[derive(Debug, Clone, Default)]
pub(crate) struct FleetSum {
    pub(crate) phase: Measurements,
    pub(crate) since_plan: Measurements,
    pub(crate) compared: Compared,
    /// The replicas counted.
    pub(crate) replicas: Vec<String>,
}

/// The sum of the windows of plan `plan`'s phase `seq`; a replica that
/// holds another version than the one `want` names in a color is left out
/// of that color.
pub(crate) fn sum(windows: &[ReplicaWindow], plan: &StoredPlan, want: [&str; 2]) -> FleetSum {
    let mut total = FleetSum::default();
    for w in windows
        .iter()
        .filter(|w| w.plan == plan.id && w.seq == plan.seq)
    {
        for color in [Color::Blue, Color::Green] {
            let i = color as usize;
            if !want[i].is_empty() && w.versions[i] != want[i] {
                continue;
            }
            add(color_mut(&mut total.phase, color), w.phase.color(color));
            add(
                color_mut(&mut total.since_plan, color),
                w.since_plan.color(color),
            );
        }
        total.compared.add(&w.compared);
        total.replicas.push(w.id.clone());
    }
    total
}

fn color_mut(m: &mut Measurements, color: Color) -> &mut Measurement {
    match color {
        Color::Blue => &mut m.blue,
        Color::Green => &mut m.green,
    }
}

fn add(total: &mut Measurement, m: &Measurement) {
    total.finished = total.finished.saturating_add(m.finished);
    total.failures = total.failures.saturating_add(m.failures);
    total.abandoned = total.abandoned.saturating_add(m.abandoned);
    total.latency.add(&m.latency);
}

/// What a replica tracks of the fleet plan it applies: measuring kept on,
/// where its window starts, the windows last listed, its lease, and what
/// it does as the driver.
#[derive(Default)]
pub(crate) struct PlanTrack {
    /// Keeps the router measuring while a plan is active.
    measure: Option<MeasureGuard>,
    start: Option<WindowStart>,
    /// Every replica's window, as last listed.
    pub(crate) windows: Vec<ReplicaWindow>,
    /// This replica's lease (its report's), once granted.
    pub(crate) lease: Option<u64>,
    /// Set while this replica drives: its last verdicts.
    pub(crate) driving: Option<Driving>,
    /// An abort made here while the store was unreachable, written when it
    /// is back.
    pub(crate) pending_abort: Option<PendingAbort>,
    /// The store keeps no leased keys: no fleet-wide plan can run.
    pub(crate) no_leases: bool,
}

/// The driver's own view, published in its window.
#[derive(Debug, Clone, Default)]
pub(crate) struct Driving {
    pub(crate) term: u64,
    pub(crate) gates: Vec<GateStatus>,
    pub(crate) holding: Vec<String>,
}

/// An abort not yet written to the store.
#[derive(Debug, Clone)]
pub(crate) struct PendingAbort {
    /// The plan aborted.
    pub(crate) plan: u64,
    pub(crate) stable: Color,
    pub(crate) reason: String,
}

/// Where this replica's window of the current phase starts.
struct WindowStart {
    plan: u64,
    seq: u64,
    phase: Measurements,
    compared: Compared,
    plan_start: Measurements,
}

fn compared_now(handle: &RolloutHandle) -> Compared {
    let c = shadow_counts(&handle.control);
    Compared {
        matched: c.matched,
        mismatched: c.mismatched,
        schema_breaks: c.schema_breaks,
        reshaped: c.reshaped,
    }
}

impl PlanTrack {
    /// Follows an applied state's plan: measuring on while it is active,
    /// a new window at each phase it enters.
    pub(crate) fn applied(&mut self, plan: Option<&StoredPlan>, handle: &RolloutHandle) {
        let Some(plan) = plan.filter(|p| p.is_active()) else {
            self.measure = None;
            self.start = None;
            self.driving = None;
            return;
        };
        if self.measure.is_none() {
            self.measure = Some(handle.control.measuring());
        }
        let same_plan = self.start.as_ref().filter(|s| s.plan == plan.id);
        if same_plan.is_some_and(|s| s.seq == plan.seq) {
            return;
        }
        let now = handle.measurements();
        let plan_start = same_plan.map_or_else(|| now.clone(), |s| s.plan_start.clone());
        self.start = Some(WindowStart {
            plan: plan.id,
            seq: plan.seq,
            phase: now,
            compared: compared_now(handle),
            plan_start,
        });
    }

    /// This replica's window now, with `id`; `None` without an active plan.
    pub(crate) fn window(&self, id: &str, handle: &RolloutHandle) -> Option<ReplicaWindow> {
        let start = self.start.as_ref()?;
        let now = handle.measurements();
        let driving = self.driving.clone().unwrap_or_default();
        Some(ReplicaWindow {
            id: id.to_owned(),
            plan: start.plan,
            seq: start.seq,
            versions: [
                handle.version(Color::Blue).to_string(),
                handle.version(Color::Green).to_string(),
            ],
            phase: now.since(&start.phase),
            since_plan: now.since(&start.plan_start),
            compared: compared_now(handle).since(&start.compared),
            gates: driving.gates,
            holding: driving.holding,
        })
    }
}

impl ReplicaWindow {
    pub(crate) fn to_json(&self) -> Vec<u8> {
        let m = measurement_to_value;
        let both = |ms: &Measurements| json!({"blue": m(&ms.blue), "green": m(&ms.green)});
        let gates: Vec<Value> = self
            .gates
            .iter()
            .map(|g| {
                json!({
                    "gate": g.gate, "threshold": g.threshold, "min_sample": g.min_sample,
                    "verdict": g.verdict.as_str(), "detail": g.verdict.detail(),
                })
            })
            .collect();
        let c = &self.compared;
        serde_json::to_vec(&json!({
            "id": self.id,
            "plan": self.plan,
            "seq": self.seq,
            "versions": {"blue": self.versions[0], "green": self.versions[1]},
            "phase": both(&self.phase),
            "since_plan": both(&self.since_plan),
            "compared": {"matched": c.matched, "mismatched": c.mismatched, "schema_breaks": c.schema_breaks, "reshaped": c.reshaped},
            "gates": gates,
            "holding": self.holding,
        }))
        .unwrap_or_default()
    }

    /// Reads a published window; `None` for one that does not parse (it
    /// is left out of the sums).
    pub(crate) fn from_json(bytes: &[u8]) -> Option<ReplicaWindow> {
        let v: Value = serde_json::from_slice(bytes).ok()?;
        let m = measurement_from_value;
        let both = |v: &Value| {
            Some(Measurements {
                blue: m(&v["blue"])?,
                green: m(&v["green"])?,
            })
        };
        let gates = v["gates"]
            .as_array()?
            .iter()
            .map(|g| {
                let detail = g["detail"].as_str()?.to_owned();
                Some(GateStatus {
                    gate: g["gate"].as_str()?.to_owned(),
                    threshold: g["threshold"].as_str()?.to_owned(),
                    min_sample: g["min_sample"].as_u64()?,
                    verdict: match g["verdict"].as_str()? {
                        "pass" => GateVerdict::Pass(detail),
                        "fail" => GateVerdict::Fail(detail),
                        _ => GateVerdict::Inconclusive(detail),
                    },
                })
            })
            .collect::<Option<Vec<_>>>()?;
        let c = &v["compared"];
        Some(ReplicaWindow {
            id: v["id"].as_str()?.to_owned(),
            plan: v["plan"].as_u64()?,
            seq: v["seq"].as_u64()?,
            versions: [
                v["versions"]["blue"].as_str()?.to_owned(),
                v["versions"]["green"].as_str()?.to_owned(),
            ],
            phase: both(&v["phase"])?,
            since_plan: both(&v["since_plan"])?,
            compared: Compared {
                matched: c["matched"].as_u64()?,
                mismatched: c["mismatched"].as_u64()?,
                schema_breaks: c["schema_breaks"].as_u64()?,
                reshaped: c["reshaped"].as_u64()?,
            },
            gates,
            holding: v["holding"]
                .as_array()?
                .iter()
                .map(|h| h.as_str().map(str::to_owned))
                .collect::<Option<_>>()?,
        })
    }
}

/// How often a replica publishes its window at most (only when it changed):
/// the driver judges windows up to this old, and the store takes one write
/// per replica per second at most while a plan runs.
pub(crate) const PUBLISH_EVERY: Duration = Duration::from_secs(1);

/// How often a driver evaluates: the plan's interval, at least 100 ms.
pub(crate) fn every(interval: Duration) -> Duration {
    interval.max(Duration::from_millis(100))
}
