//! The admin of a [`Replica`](crate::store::Replica) (feature `store`):
//! control calls and fleet-wide plans written to the store, `GET /ready`,
//! and the replica's sync and plan in the status.

use http::{Method, StatusCode};
use serde_json::{json, Value};

use super::json::error_json;
use super::reply::{control_error, error, json, Reply};
use super::request::Args;
use super::routes::Action;
use crate::plan::PlanError;
use crate::store::{
    FleetPlanStatus, LoadStatus, PlanAbort, Replica, ReplicaReport, ReplicaStatus, ReplicaWindow,
    Source, StartPlanError, StoredPlanState, SyncError,
};

/// Promote, rollback, split, mirror through the store: `Ok(changed)`, or
/// the refusal (409 for a conflict, 503 while the store is unreachable,
/// 500 for a stored state that does not parse).
pub(crate) async fn steer(replica: &Replica, action: Action, args: Args) -> Result<bool, Reply> {
    let mut call = replica.call();
    if let Some(g) = args.expect {
        call = call.expect_generation(g);
    }
    if args.force {
        call = call.force();
    }
    let result = match action {
        Action::Promote => match args.to {
            Some(to) => call.promote_to(to).await,
            None => call.promote().await,
        },
        Action::Rollback => call.rollback().await,
        Action::Split => call.set_split(args.fraction.unwrap_or(f64::NAN)).await,
        _ => call.mirror_standby(args.fraction.unwrap_or(f64::NAN)).await,
    };
    result.map(|done| done.changed).map_err(refused)
}

/// `POST /deploy` for a replica: the version for the standby, fleet-wide.
pub(crate) async fn deploy(replica: &Replica, args: Args) -> Result<bool, Reply> {
    let mut call = replica.call();
    if let Some(g) = args.expect {
        call = call.expect_generation(g);
    }
    let label = match &args.to {
        Some(crate::control::Target::Version(v)) => v.to_string(),
        _ => return Err(error(StatusCode::BAD_REQUEST, r#"missing field "version""#)),
    };
    call.deploy(&label)
        .await
        .map(|done| done.changed)
        .map_err(refused)
}

/// `POST /plan` for a replica: the plan is stored and driven fleet-wide.
/// 400 naming the document's field, 409 when a plan runs (or the router
/// cannot run this one), else as [`refused`].
pub(crate) async fn start_plan(replica: &Replica, document: &[u8]) -> Result<(), Reply> {
    match replica.start_plan(document).await {
        Ok(_) => Ok(()),
        Err(StartPlanError::Document(e)) => {
            let mut doc = error_json(&e.to_string());
            if let Some(obj) = doc.as_object_mut() {
                obj.insert("field".into(), Value::String(e.field));
            }
            Err(json(StatusCode::BAD_REQUEST, &doc))
        }
        Err(StartPlanError::Plan(e @ PlanError::AlreadyRunning)) => {
            Err(error(StatusCode::CONFLICT, &format!("{e} (fleet-wide)")))
        }
        Err(StartPlanError::Plan(e)) => Err(error(StatusCode::CONFLICT, &e.to_string())),
        Err(StartPlanError::Sync(e)) => Err(refused(e)),
        Err(e) => Err(error(StatusCode::CONFLICT, &e.to_string())),
    }
}

/// Pause, resume, abort, skip to the promote of the fleet-wide plan. An
/// abort while the store is unreachable is made here at once and written
/// later (200, `"pending": true` in the plan's status).
pub(crate) async fn plan_call(replica: &Replica, action: Action) -> Result<bool, Reply> {
    let result = match action {
        Action::PlanPause => replica.pause_plan().await,
        Action::PlanResume => replica.resume_plan().await,
        Action::PlanAbort => {
            return match replica.abort_plan("through the admin endpoint").await {
                Ok(PlanAbort::Written(done)) => Ok(done.changed),
                Ok(_) => Ok(true),
                Err(e) => Err(refused(e)),
            }
        }
        _ => replica.skip_plan_to_promote().await,
    };
    result.map(|done| done.changed).map_err(refused)
}

/// A refused call: 409 for a conflict, a missing plan or a version not
/// everywhere, 503 while the store is unreachable, 500 for a stored state
/// that does not parse.
fn refused(e: SyncError) -> Reply {
    match e {
        SyncError::Control(e) => control_error(&e),
        e @ SyncError::Unavailable { .. } => {
            let mut doc = error_json(&e.to_string());
            if let Some(obj) = doc.as_object_mut() {
                obj.insert("reason".into(), Value::from("store_unavailable"));
            }
            json(StatusCode::SERVICE_UNAVAILABLE, &doc)
        }
        e @ SyncError::NotEverywhere { .. } => {
            let mut doc = error_json(&e.to_string());
            if let (Some(obj), SyncError::NotEverywhere { replicas, .. }) =
                (doc.as_object_mut(), &e)
            {
                obj.insert("reason".into(), Value::from("not_everywhere"));
                obj.insert("replicas".into(), Value::from(replicas.clone()));
            }
            json(StatusCode::CONFLICT, &doc)
        }
        e @ (SyncError::NoPlan
        | SyncError::PlanRunning
        | SyncError::CanaryRunning { .. }
        | SyncError::DuplicateVersion { .. }) => error(StatusCode::CONFLICT, &e.to_string()),
        e => error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    }
}

/// The fleet-wide plan in the shape of a router's own plan (`"plan"` of
/// the status document), with `"fleet": true` and its driver.
pub(crate) fn plan_compat(p: &FleetPlanStatus) -> Value {
    let s = &p.stored;
    let started = s.started_unix_ms;
    let now = crate::store::unix_ms();
    let state = match s.state {
        StoredPlanState::Running if !p.holding.is_empty() => "holding",
        other => other.as_str(),
    };
    let outcome = match s.state {
        StoredPlanState::Promoted => Some("promoted".to_owned()),
        StoredPlanState::Aborted => Some(format!(
            "aborted: {}",
            s.reason.as_deref().unwrap_or("no reason given")
        )),
        StoredPlanState::Superseded => Some("superseded".to_owned()),
        _ => None,
    };
    let last = s.timeline.last().map(|t| t.at_unix_ms);
    let elapsed = match (outcome.is_some(), last) {
        (true, Some(end)) => end.saturating_sub(started),
        _ => now.saturating_sub(started),
    };
    json!({
        "fleet": true,
        "driver": s.driver,
        "started_unix_ms": started,
        "state": state,
        "phase": super::json::phase_text(&p.phase),
        "stable": s.stable.as_str(),
        "candidate": s.candidate.as_str(),
        "elapsed_ms": elapsed,
        "baked_ms": u64::try_from(p.baked.as_millis()).unwrap_or(u64::MAX),
        "gates": p.gates.iter().map(|g| json!({
            "gate": g.gate,
            "verdict": g.verdict.as_str(),
            "detail": g.verdict.detail(),
            "threshold": g.threshold,
            "min_sample": g.min_sample,
        })).collect::<Vec<_>>(),
        "outcome": outcome,
        "history": s.timeline.iter().map(|t| json!({
            "at_ms": t.at_unix_ms.saturating_sub(started),
            "at_unix_ms": t.at_unix_ms,
            "event": format!("{} (by {})", t.what, t.by),
        })).collect::<Vec<_>>(),
    })
}

/// The fleet-wide plan, for the status document.
pub(crate) fn plan_json(p: &FleetPlanStatus) -> Value {
    let s = &p.stored;
    let window = |w: &ReplicaWindow| {
        let side = |m: &crate::control::Measurement| json!({ "requests": m.finished, "failures": m.failures });
        json!({
            "id": w.id,
            "blue": side(&w.phase.blue),
            "green": side(&w.phase.green),
            "compared": w.compared.matched.saturating_add(w.compared.mismatched),
        })
    };
    json!({
        "id": s.id,
        "state": s.state.as_str(),
        "phase": super::json::phase_text(&p.phase),
        "seq": s.seq,
        "stable": s.stable.as_str(),
        "candidate": s.candidate.as_str(),
        "baked_ms": u64::try_from(p.baked.as_millis()).unwrap_or(u64::MAX),
        "driver": s.driver,
        "term": s.term,
        "driving_here": p.driving_here,
        "frozen": p.frozen,
        "pending_abort": p.pending_abort,
        "reason": s.reason,
        "gates": p.gates.iter().map(|g| json!({
            "gate": g.gate,
            "threshold": g.threshold,
            "min_sample": g.min_sample,
            "verdict": g.verdict.as_str(),
            "detail": g.verdict.detail(),
        })).collect::<Vec<_>>(),
        "holding": p.holding,
        "windows": p.windows.iter().map(window).collect::<Vec<_>>(),
        "timeline": s.timeline.iter().map(|t| json!({
            "seq": t.seq, "what": t.what, "by": t.by, "at_unix_ms": t.at_unix_ms,
        })).collect::<Vec<_>>(),
    })
}

/// `GET /ready`, for a readiness probe, without the token (it says only
/// whether the replica serves a state from the store or its snapshot, and
/// with a loader whether its active color holds the version that state
/// names): 200 when ready, 503 when it serves its default state or still
/// loads its active version.
pub(crate) fn ready(replica: Option<&Replica>, method: &Method) -> Reply {
    if method != Method::GET && method != Method::HEAD {
        return error(StatusCode::METHOD_NOT_ALLOWED, "GET or HEAD");
    }
    let (code, doc) = match replica.map(Replica::status) {
        None => (StatusCode::OK, json!({ "ready": true, "source": "local" })),
        Some(s) => (
            if s.ready {
                StatusCode::OK
            } else {
                StatusCode::SERVICE_UNAVAILABLE
            },
            json!({
                "ready": s.ready,
                "source": source_text(s.source),
                "connected": s.connected,
                "applied_revision": s.applied_revision,
            }),
        ),
    };
    json(code, &doc)
}

/// The replica's sync, for the status document.
pub(crate) fn replica_json(
    s: &ReplicaStatus,
    fleet: &[ReplicaReport],
    plan: Option<&FleetPlanStatus>,
) -> Value {
    let report = |r: &ReplicaReport| {
        let side =
            |v: &crate::store::ReportedVersion| json!({ "version": v.version, "ready": v.ready });
        let seen =
            r.at.elapsed()
                .ok()
                .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        json!({
            "id": r.id,
            "applied_revision": r.applied_revision,
            "ready": r.ready,
            "blue": side(&r.versions[0]),
            "green": side(&r.versions[1]),
            "last_seen_ms_ago": seen,
        })
    };
    json!({
        "id": s.id,
        "replicas": fleet.iter().map(report).collect::<Vec<_>>(),
        "model": s.model,
        "source": source_text(s.source),
        "ready": s.ready,
        "connected": s.connected,
        "applied_revision": s.applied_revision,
        "generation": s.state.as_ref().map(|st| st.generation),
        "stale_ms": s.stale_for.map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
        "last_error": s.last_error,
        "plan": plan.map(plan_json),
        "loads": { "blue": load_json(&s.loads[0]), "green": load_json(&s.loads[1]) },
    })
}

/// A color's load (a replica with a loader): `{"state": "idle"}`,
/// `{"state": "loading", "version": ...}`, or `{"state": "failed",
/// "version": ..., "error": ...}`.
fn load_json(load: &LoadStatus) -> Value {
    match load {
        LoadStatus::Loading { version } => {
            json!({ "state": "loading", "version": version.as_str() })
        }
        LoadStatus::Failed(e) => json!({
            "state": "failed",
            "version": e.version.as_str(),
            "error": e.to_string(),
        }),
        _ => json!({ "state": "idle" }),
    }
}

fn source_text(s: Source) -> &'static str {
    match s {
        Source::Store => "store",
        Source::Snapshot => "snapshot",
        _ => "default",
    }
}
