//! The admin of a [`Replica`](crate::store::Replica) (feature `store`):
//! control calls written to the store, `GET /ready`, and the replica's
//! sync in the status.

use http::{Method, StatusCode};
use serde_json::{json, Value};

use super::json::error_json;
use super::reply::{control_error, error, json, Reply};
use super::request::Args;
use super::routes::Action;
use crate::store::{LoadStatus, Replica, ReplicaReport, ReplicaStatus, Source, SyncError};

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
    match result {
        Ok(done) => Ok(done.changed),
        Err(SyncError::Control(e)) => Err(control_error(&e)),
        Err(e @ SyncError::Unavailable { .. }) => {
            let mut doc = error_json(&e.to_string());
            if let Some(obj) = doc.as_object_mut() {
                obj.insert("reason".into(), Value::from("store_unavailable"));
            }
            Err(json(StatusCode::SERVICE_UNAVAILABLE, &doc))
        }
        Err(e @ SyncError::NotEverywhere { .. }) => {
            let mut doc = error_json(&e.to_string());
            if let (Some(obj), SyncError::NotEverywhere { replicas, .. }) =
                (doc.as_object_mut(), &e)
            {
                obj.insert("reason".into(), Value::from("not_everywhere"));
                obj.insert("replicas".into(), Value::from(replicas.clone()));
            }
            Err(json(StatusCode::CONFLICT, &doc))
        }
        Err(e) => Err(error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string())),
    }
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
pub(crate) fn replica_json(s: &ReplicaStatus, fleet: &[ReplicaReport]) -> Value {
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
