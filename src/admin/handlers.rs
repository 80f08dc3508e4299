//! One handler per route, after the token was checked and the route found.

use std::sync::Arc;

use http::{HeaderMap, StatusCode};
use http_body::Body;
use serde_json::Value;
use tower::BoxError;

use super::events;
use super::json::{error_json, fleet_status_json, models_json};
use super::reply::{control_error, error, json, json_bytes, Reply};
use super::request::{read_args, read_within_deadline, Args};
use super::routes::{Action, Model, Route};
use super::shared::Shared;
use crate::control::{Change, ControlError};
use crate::plan::document::plan_document;

/// Hands `route` to its handler.
pub(crate) async fn handle<B>(
    shared: &Arc<Shared>,
    route: Route<'_>,
    headers: &HeaderMap,
    body: B,
) -> Reply
where
    B: Body,
    B::Error: Into<BoxError>,
{
    let (model, action) = match route {
        Route::Models(fleet) => return json(StatusCode::OK, &models_json(fleet.names())),
        Route::FleetStatus => return fleet_status(shared),
        Route::FleetEvents => return events::stream(shared, None),
        Route::FleetHistory => return history(shared),
        Route::Handle(model, action) => (model, action),
    };
    match action {
        Action::Status => json(StatusCode::OK, &shared.status(model.name, &model.handle)),
        Action::Events => events::stream(shared, Some(model)),
        Action::History => history(shared),
        Action::PlanStart => start_plan(shared, &model, headers, body).await,
        Action::Promote | Action::Rollback | Action::Split | Action::Mirror => {
            match read_args(action, headers, body).await {
                Ok(args) => steer(shared, &model, action, args).await,
                Err(refused) => refused,
            }
        }
        Action::Deploy => match read_args(action, headers, body).await {
            Ok(args) => deploy(shared, &model, args).await,
            Err(refused) => refused,
        },
        Action::PlanPause | Action::PlanResume | Action::PlanAbort | Action::PlanPromote => {
            match read_args(action, headers, body).await {
                Ok(_) => plan_call(shared, &model, action).await,
                Err(refused) => refused,
            }
        }
    }
}

/// `GET /status` of a fleet: every model's status, by name.
fn fleet_status(shared: &Shared) -> Reply {
    let statuses = shared.models().into_iter().map(|m| {
        let name = m.name.unwrap_or_default();
        let status = shared.status(Some(&name), &m.handle);
        (name, status)
    });
    json(StatusCode::OK, &fleet_status_json(statuses))
}

/// `GET /history`: the samples kept, oldest first (`{"samples": [...]}`).
fn history(shared: &Shared) -> Reply {
    let mut body = Vec::from(&b"{\"samples\":["[..]);
    for (i, sample) in shared.history.after(0).iter().enumerate() {
        if i > 0 {
            body.push(b',');
        }
        body.extend_from_slice(&sample.json);
    }
    body.extend_from_slice(b"]}");
    json_bytes(StatusCode::OK, body)
}

/// The status after a control route changed something (or found it done):
/// `changed` says which.
fn changed(shared: &Shared, model: &Model<'_>, changed: bool) -> Reply {
    let mut status = shared.status(model.name, &model.handle);
    if let Some(doc) = status.as_object_mut() {
        doc.insert("changed".into(), Value::Bool(changed));
    }
    json(StatusCode::OK, &status)
}

/// Promote, rollback, split, mirror: the handle's call, in its conditional
/// form when the body asked for one; for a replica, written to the store.
async fn steer(shared: &Shared, model: &Model<'_>, action: Action, args: Args) -> Reply {
    #[cfg(feature = "store")]
    if let Some(replica) = shared.replica() {
        return match super::synced::steer(replica, action, args).await {
            Ok(done) => changed(shared, model, done),
            Err(refused) => refused,
        };
    }
    let mut call = model.handle.call();
    if let Some(g) = args.expect {
        call = call.expect_generation(g);
    }
    if args.force {
        call = call.force();
    }
    let result: Result<Change, ControlError> = match action {
        Action::Promote => match args.to {
            Some(to) => call.promote_to(to),
            None => call.promote(),
        },
        Action::Rollback => call.rollback(),
        Action::Split => call.set_split(args.fraction.unwrap_or(f64::NAN)),
        _ => call.mirror_standby(args.fraction.unwrap_or(f64::NAN)),
    };
    match result {
        Ok(change) => changed(shared, model, change.is_applied()),
        Err(e) => control_error(&e),
    }
}

/// `POST /deploy`: for a replica, the next version named for the standby
/// fleet-wide (each replica's loader loads it); 409 for an admin of a
/// router alone, which cannot make a service from a label.
async fn deploy(shared: &Shared, model: &Model<'_>, args: Args) -> Reply {
    #[cfg(feature = "store")]
    if let Some(replica) = shared.replica() {
        return match super::synced::deploy(replica, args).await {
            Ok(done) => changed(shared, model, done),
            Err(refused) => refused,
        };
    }
    let _ = (shared, model, args);
    let msg = "a deploy through the admin names the next version for a replica's loader \
               (Admin::builder().replica(..)); this admin steers one router, which deploys \
               through its Deployer in code";
    error(StatusCode::CONFLICT, msg)
}

/// `POST /plan`: reads the plan document and starts the plan; 400 naming
/// the field that is wrong, 409 when a plan already runs (or the router
/// cannot run this one).
async fn start_plan<B>(shared: &Shared, model: &Model<'_>, headers: &HeaderMap, body: B) -> Reply
where
    B: Body,
    B::Error: Into<BoxError>,
{
    let bytes = match read_within_deadline(headers, body).await {
        Ok(b) => b,
        Err(res) => return res,
    };
    #[cfg(feature = "store")]
    if let Some(replica) = shared.replica() {
        return match super::synced::start_plan(replica, &bytes).await {
            Ok(()) => changed(shared, model, true),
            Err(refused) => refused,
        };
    }
    let (plan, gates) = match plan_document(&bytes) {
        Ok(parsed) => parsed,
        Err(e) => {
            let mut doc = error_json(&e.to_string());
            if let Some(obj) = doc.as_object_mut() {
                obj.insert("field".into(), Value::String(e.field));
            }
            return json(StatusCode::BAD_REQUEST, &doc);
        }
    };
    match plan.start(&model.handle) {
        Ok(run) => {
            shared.plan_started(model.name, run, gates);
            changed(shared, model, true)
        }
        Err(e) => error(StatusCode::CONFLICT, &e.to_string()),
    }
}

/// Pauses, resumes, aborts or promotes the running plan; 409 when there is
/// none or it cannot.
async fn plan_call(shared: &Shared, model: &Model<'_>, action: Action) -> Reply {
    #[cfg(feature = "store")]
    if let Some(replica) = shared.replica() {
        return match super::synced::plan_call(replica, action).await {
            Ok(done) => changed(shared, model, done),
            Err(refused) => refused,
        };
    }
    let Some(run) = model.handle.plan() else {
        let msg = "no rollout plan has run on this router";
        return error(StatusCode::CONFLICT, msg);
    };
    let done = match action {
        Action::PlanPause => run.pause(),
        Action::PlanResume => run.resume(),
        Action::PlanAbort => run.abort("through the admin endpoint"),
        _ => run.skip_to_promote(),
    };
    if done {
        return changed(shared, model, true);
    }
    let state = format!("{:?}", run.status().state).to_lowercase();
    let msg = format!("the rollout plan is {state}: nothing to do");
    error(StatusCode::CONFLICT, &msg)
}
