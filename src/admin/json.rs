//! The JSON documents the admin service answers with.

use std::time::{Duration, SystemTime};

use serde_json::{json, Map, Value};

use crate::control::{ColorStatus, ColorVersion, RetiringStatus, Transition};
use crate::mirror::MirrorStats;
use crate::plan::document::GateSpec;
use crate::plan::{GateStatus, Phase, PlanEvent, PlanOutcome, PlanState, PlanStatus};
use crate::shadow::{Exemplar, ShadowReport};
use crate::{Percentiles, RolloutHandle};

/// What the admin adds to a handle's own figures in its status.
#[derive(Debug, Clone, Default)]
pub(crate) struct Extras {
    /// The running (or last) plan's gates as its document gave them, when
    /// the admin started it.
    pub(crate) gates: Option<Vec<GateSpec>>,
    /// When the plan started (wall clock), when the admin saw it run.
    pub(crate) plan_started_unix_ms: Option<u64>,
    /// How many of the comparison's latest mismatch exemplars to show
    /// (their diffs only); zero shows none.
    pub(crate) exemplars: usize,
}

/// The status of one handle: routing state, counters per color, the last
/// transitions, the mirror's counters and the comparison report.
///
/// The three parts are read one after the other, not as one atomic snapshot.
pub(crate) fn status_json(handle: &RolloutHandle, extras: &Extras) -> Value {
    let status = handle.status();
    let report = handle.shadow_report();
    json!({
        "active": status.active.as_str(),
        "active_version": status.active_version().as_str(),
        "standby": status.standby().as_str(),
        "standby_version": status.color(status.standby()).version.as_str(),
        "split": status.split,
        "mirror": status.mirror,
        "generation": status.generation,
        "colors": {
            "blue": color_json(&status.blue),
            "green": color_json(&status.green),
        },
        "retiring": status.retiring.iter().map(retiring_json).collect::<Vec<_>>(),
        "unknown_override": status.unknown_override,
        "fallbacks": status.fallbacks,
        "transitions": status.history.iter().map(transition_json).collect::<Vec<_>>(),
        "mirror_stats": mirror_json(&handle.mirror_stats()),
        "comparison": report_json(&report),
        "comparisons": handle.shadow_reports().iter().map(report_json).collect::<Vec<_>>(),
        "live_drift": live_drift_json(handle),
        "exemplars": exemplars_json(&report.exemplars, extras.exemplars),
        "measuring": status.measuring,
        "plan_running": status.plan_running,
        "plan": handle.plan_status().map(|p| plan_json(&p, extras)),
    })
}

/// A rollout plan's state, gates and timeline. A gate the admin knows the
/// document of carries its `type`, `threshold` and `min_sample`; the
/// timeline carries wall-clock times when the admin saw the plan start.
fn plan_json(p: &PlanStatus, extras: &Extras) -> Value {
    let specs = extras.gates.as_deref().unwrap_or_default();
    let gates: Vec<Value> = p.gates.iter().map(|g| gate_json(g, specs)).collect();
    let started = extras.plan_started_unix_ms;
    let history: Vec<Value> = p
        .history
        .iter()
        .map(|r| {
            json!({
                "at_ms": millis(r.at),
                "at_unix_ms": started.map(|s| s.saturating_add(millis(r.at))),
                "event": event_text(&r.event),
            })
        })
        .collect();
    let gate_specs = extras.gates.as_ref().map(|specs| {
        specs
            .iter()
            .map(|s| json!({ "gate": s.name, "type": s.kind, "threshold": s.threshold, "min_sample": s.min_sample }))
            .collect::<Vec<_>>()
    });
    json!({
        "started_unix_ms": started,
        "gate_specs": gate_specs,
        "state": state_text(p.state),
        "phase": phase_text(&p.phase),
        "stable": p.stable.as_str(),
        "candidate": p.candidate.as_str(),
        "elapsed_ms": millis(p.elapsed),
        "baked_ms": millis(p.baked),
        "gates": gates,
        "outcome": p.outcome.as_ref().map(|o| match o {
            PlanOutcome::Promoted => "promoted".to_string(),
            PlanOutcome::Aborted(why) => format!("aborted: {why}"),
            _ => "superseded".to_string(),
        }),
        "history": history,
    })
}

/// A gate's verdict, with what its document gave it when known.
fn gate_json(g: &GateStatus, specs: &[GateSpec]) -> Value {
    let spec = specs.iter().find(|s| s.name == g.gate);
    json!({
        "gate": g.gate,
        "verdict": g.verdict.as_str(),
        "detail": g.verdict.detail(),
        "type": spec.map(|s| s.kind),
        // The plan's own words, whoever started it (the document's, when
        // the admin started it, say the same in its terms).
        "threshold": g.threshold,
        "threshold_given": spec.map(|s| &s.threshold),
        "min_sample": g.min_sample,
    })
}

/// A plan's state in lower case: `running`, `holding`, `paused`, …
pub(crate) fn state_text(s: PlanState) -> String {
    format!("{s:?}").to_lowercase()
}

pub(crate) fn phase_text(p: &Phase) -> String {
    match p {
        Phase::Mirror { fraction } => format!("mirror {fraction}"),
        Phase::Canary { step, steps, split } => format!("canary {step}/{steps} at {split}"),
        Phase::PostPromotion => "post-promotion".into(),
        _ => "done".into(),
    }
}

fn event_text(e: &PlanEvent) -> String {
    match e {
        PlanEvent::Started { stable, candidate } => {
            format!("started: {candidate} rolls out, {stable} is stable")
        }
        PlanEvent::Phase(p) => format!("phase: {}", phase_text(p)),
        PlanEvent::Gate { gate, verdict } => {
            format!("gate {gate}: {} ({})", verdict.as_str(), verdict.detail())
        }
        PlanEvent::Holding { gates } => format!("holding on {}", gates.join(", ")),
        PlanEvent::Paused => "paused".into(),
        PlanEvent::Resumed => "resumed".into(),
        PlanEvent::Promoted => "promoted".into(),
        PlanEvent::Aborted(why) => format!("aborted: {why}"),
        PlanEvent::Completed => "completed".into(),
        PlanEvent::Superseded { generation } => {
            format!("superseded by another control call (generation {generation})")
        }
    }
}

/// The last `keep` mismatch exemplars' diffs, newest first: when, the
/// request's method and path (no query, no body), both statuses, and what
/// differs.
fn exemplars_json(exemplars: &[Exemplar], keep: usize) -> Value {
    let shown = exemplars.iter().rev().take(keep).map(|e| {
        let diffs: Vec<Value> = e
            .diffs
            .iter()
            .map(|d| json!({ "path": d.path, "primary": d.primary, "shadow": d.shadow }))
            .collect();
        json!({
            "at_unix_ms": unix_ms(e.at),
            "method": e.method.as_str(),
            "path": e.uri.path(),
            "primary_status": e.primary.status.as_u16(),
            "shadow_status": e.shadow.status.as_u16(),
            "diffs": diffs,
        })
    });
    Value::Array(shown.collect())
}

pub(crate) fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Every model's status (from `statuses`), by name.
pub(crate) fn fleet_status_json(statuses: impl Iterator<Item = (String, Value)>) -> Value {
    let models: Map<String, Value> = statuses.collect();
    json!({ "models": models })
}

/// The model names, sorted.
pub(crate) fn models_json(names: Vec<String>) -> Value {
    json!({ "models": names })
}

/// An error document: `{"error": message}`.
pub(crate) fn error_json(message: &str) -> Value {
    json!({ "error": message })
}

fn color_json(c: &ColorStatus) -> Value {
    json!({
        "version": c.version.as_str(),
        "readiness": c.readiness.as_str(),
        "in_flight": c.in_flight,
        "mirrored_in_flight": c.mirrored_in_flight,
        "served": c.served,
        "finished": c.finished,
        "failures": c.failures,
        "latency": percentiles_json(&c.latency),
    })
}

fn retiring_json(r: &RetiringStatus) -> Value {
    json!({
        "version": r.version.as_str(),
        "color": r.color.as_str(),
        "in_flight": r.in_flight,
        "mirrored_in_flight": r.mirrored_in_flight,
        "holders": r.holders,
    })
}

fn transition_json(t: &Transition) -> Value {
    json!({
        "generation": t.generation,
        "at_unix_ms": unix_ms(t.at),
        "kind": t.kind.as_str(),
        "from": { "color": t.from.color.as_str(), "version": t.from.version.as_str() },
        "active": t.active.as_str(),
        "version": t.version.as_str(),
        "blue": t.blue.as_str(),
        "green": t.green.as_str(),
        "replaced": t.replaced.as_ref().map(|v| v.as_str()),
        "split": t.split,
        "mirror": t.mirror,
    })
}

fn mirror_json(s: &MirrorStats) -> Value {
    json!({
        "sampled": s.sampled,
        "in_flight": s.in_flight,
        "completed": s.completed,
        "errors": s.errors,
        "timeouts": s.timeouts,
        "panics": s.panics,
        "dropped": {
            "saturated": s.dropped_saturated,
            "over_budget": s.dropped_over_budget,
            "shadow_slow": s.dropped_shadow_slow,
            "primary_early": s.dropped_primary_early,
        },
        "skipped_no_executor": s.skipped_no_executor,
        "latency": percentiles_json(&s.latency),
    })
}

fn report_json(r: &ShadowReport) -> Value {
    let fields: Vec<Value> = r
        .field_mismatches
        .iter()
        .map(|(field, count)| json!({ "field": field, "count": count }))
        .collect();
    let side =
        |c: &ColorVersion| json!({ "color": c.color.as_str(), "version": c.version.as_str() });
    json!({
        "versions": r.versions.as_ref().map(|v| json!({
            "primary": side(&v.primary),
            "shadow": side(&v.shadow),
        })),
        "total": r.total(),
        "matched": r.matched,
        "mismatched": r.mismatched,
        "agreement_rate": r.agreement_rate(),
        "shadow_errors": r.shadow_errors,
        "shadow_timeouts": r.shadow_timeouts,
        "skipped": {
            "over_cap": r.skipped_over_cap,
            "primary_failed": r.skipped_primary_failed,
            "not_started": r.skipped_not_started,
            "dropped": r.skipped_dropped,
        },
        "comparator_panics": r.comparator_panics,
        "schema_breaks": r.schema_breaks,
        "reshaped": r.reshaped,
        "structure_changes": r.structure_changes.iter().map(|c| json!({
            "field": c.pointer,
            "change": c.kind.as_str(),
            "count": c.count,
        })).collect::<Vec<_>>(),
        "primary_latency": percentiles_json(&r.primary_latency),
        "shadow_latency": percentiles_json(&r.shadow_latency),
        "field_mismatches": fields,
        "drift": drift_json(r),
    })
}

#[cfg(feature = "drift")]
fn drift_json(r: &ShadowReport) -> Value {
    fields_json(&r.drift)
}

/// The live drift of the pair in the colors now (a `LiveDriftLayer`).
#[cfg(feature = "drift")]
fn live_drift_json(handle: &RolloutHandle) -> Value {
    let side =
        |c: &ColorVersion| json!({ "color": c.color.as_str(), "version": c.version.as_str() });
    match handle.live_drift() {
        Some(r) => json!({
            "active": side(&r.active),
            "standby": side(&r.standby),
            "active_answers": r.active_answers,
            "standby_answers": r.standby_answers,
            "over_cap": r.over_cap,
            "fields": fields_json(&r.fields),
        }),
        None => Value::Null,
    }
}

#[cfg(not(feature = "drift"))]
fn live_drift_json(_: &RolloutHandle) -> Value {
    Value::Null
}

#[cfg(feature = "drift")]
fn fields_json(fields: &[crate::drift::FieldDrift]) -> Value {
    let stats = |d: &crate::drift::FieldDrift| {
        json!({
            "field": d.field,
            "kind": match d.kind {
                crate::drift::FieldKind::Categorical => "categorical",
                _ => "numeric",
            },
            "primary_n": d.primary_n,
            "shadow_n": d.shadow_n,
            "psi": d.psi,
            "jensen_shannon": d.jensen_shannon,
            "chi_square": d.chi_square.map(|c| json!({
                "statistic": c.statistic, "dof": c.dof, "p_value": c.p_value,
            })),
            "ks": d.ks.map(|k| json!({
                "statistic": k.statistic, "p_value": k.p_value, "exact": k.exact,
            })),
            "wasserstein": d.wasserstein,
            "categories": d.categories.iter().map(|c| json!({
                "name": c.name, "primary": c.primary, "shadow": c.shadow,
            })).collect::<Vec<_>>(),
            "problems": {
                "missing_primary": d.problems.missing_primary,
                "missing_shadow": d.problems.missing_shadow,
                "wrong_type": d.problems.wrong_type,
                "not_finite": d.problems.not_finite,
                "not_json": d.problems.not_json,
            },
        })
    };
    Value::Array(fields.iter().map(stats).collect())
}

/// Without the `drift` feature there is no drift to show.
#[cfg(not(feature = "drift"))]
fn drift_json(_: &ShadowReport) -> Value {
    Value::Array(Vec::new())
}

fn percentiles_json(p: &Percentiles) -> Value {
    json!({
        "count": p.count,
        "p50_us": p.p50.map(micros),
        "p90_us": p.p90.map(micros),
        "p99_us": p.p99.map(micros),
    })
}

pub(crate) fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

pub(crate) fn unix_ms(at: SystemTime) -> u64 {
    at.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Color;

    fn handle() -> RolloutHandle {
        let svc = tower::service_fn(|_: http::Request<String>| async {
            Ok::<_, std::convert::Infallible>(http::Response::new(String::new()))
        });
        crate::BlueGreenRouter::new(svc, svc).1
    }

    #[test]
    fn status_follows_the_handle() {
        let h = handle();
        let v = status_json(&h, &Extras::default());
        assert_eq!(v["active"], "blue");
        assert_eq!(v["standby"], "green");
        assert_eq!(v["generation"], 0);
        assert_eq!(v["transitions"], json!([]));
        assert_eq!(v["comparison"]["agreement_rate"], Value::Null);
        assert_eq!(v["comparison"]["primary_latency"]["p50_us"], Value::Null);
        assert_eq!(v["colors"]["blue"]["served"], 0);

        h.set_split(0.25).unwrap();
        assert!(
            h.mirror_standby(0.5).is_err(),
            "a plain router does not mirror"
        );
        h.promote().unwrap();
        let v = status_json(&h, &Extras::default());
        assert_eq!(
            (v["active"].as_str(), v["standby"].as_str()),
            (Some("green"), Some("blue"))
        );
        assert_eq!(v["split"], 0.0, "a promote resets the split");
        assert_eq!(v["active_version"], "green");
        assert_eq!(v["colors"]["blue"]["version"], "blue");
        assert_eq!(v["generation"], 2);
        let kinds: Vec<&str> = v["transitions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["kind"].as_str().unwrap())
            .collect();
        assert_eq!(kinds, ["split", "promote"]);
        let last = &v["transitions"][1];
        assert_eq!(last["active"], "green");
        assert_eq!(last["from"], json!({ "color": "blue", "version": "blue" }));
        assert_eq!(last["generation"], 2);
        let at = h.status().history[1].at;
        assert_eq!(last["at_unix_ms"], unix_ms(at));
        assert!(last["at_unix_ms"].as_u64().unwrap() > 1_600_000_000_000);
        assert_eq!(h.active(), Color::Green);
    }

    #[test]
    #[cfg(feature = "drift")]
    fn drift_figures_and_problems_are_shown() {
        use crate::drift::{Drift, DriftField, DriftSettings};
        let settings = DriftSettings::new([DriftField::categorical("/label").unwrap()]);
        let mut drift = Drift::new(&settings);
        drift.observe(br#"{"label":"a"}"#, br#"{"label":"b"}"#);
        drift.observe(br#"{"label":"a"}"#, br#"{"label":"a"}"#);
        drift.observe(br#"{"label":"b"}"#, b"oops");
        let report = ShadowReport {
            drift: drift.report(),
            ..Default::default()
        };
        let v = report_json(&report);
        let d = &v["drift"][0];
        assert_eq!(d["field"], "/label");
        assert_eq!(d["kind"], "categorical");
        assert_eq!(
            (d["primary_n"].as_u64(), d["shadow_n"].as_u64()),
            (Some(3), Some(2))
        );
        assert_eq!(d["problems"]["not_json"], 1);
        assert_eq!(
            d["categories"],
            json!([{ "name": "a", "primary": 2, "shadow": 1 }, { "name": "b", "primary": 1, "shadow": 1 }])
        );
        assert!(d["psi"].as_f64().unwrap() > 0.0);
        assert!(d["chi_square"]["p_value"].as_f64().is_some());
        assert!(d["ks"].is_null(), "categorical: no KS");
    }

    #[test]
    fn report_fields_and_percentiles() {
        let report = ShadowReport {
            matched: 3,
            mismatched: 1,
            skipped_not_started: 2,
            field_mismatches: vec![("/label".into(), 1)],
            versions: Some(crate::shadow::ComparedVersions::new(
                ColorVersion {
                    color: crate::Color::Green,
                    version: crate::control::VersionLabel::new("iris-v3").unwrap(),
                },
                ColorVersion {
                    color: crate::Color::Blue,
                    version: crate::control::VersionLabel::new("iris-v2").unwrap(),
                },
            )),
            primary_latency: Percentiles {
                count: 4,
                p50: Some(Duration::from_micros(120)),
                p90: Some(Duration::from_millis(2)),
                p99: Some(Duration::from_secs(1)),
            },
            ..Default::default()
        };
        let v = report_json(&report);
        assert_eq!(
            v["versions"],
            json!({
                "primary": { "color": "green", "version": "iris-v3" },
                "shadow": { "color": "blue", "version": "iris-v2" },
            })
        );
        assert_eq!(v["total"], 6);
        assert_eq!(v["agreement_rate"], 0.75);
        assert_eq!(v["skipped"]["not_started"], 2);
        assert_eq!(
            v["field_mismatches"],
            json!([{ "field": "/label", "count": 1 }])
        );
        assert_eq!(
            v["primary_latency"],
            json!({ "count": 4, "p50_us": 120, "p90_us": 2000, "p99_us": 1_000_000 })
        );
    }
}
