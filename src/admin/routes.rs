//! Routing: a request's method and path to a [`Route`], or the refusal
//! ([`NoRoute`]) that says why there is none. Nothing here reads a body or
//! checks the token.

use http::Method;

use crate::{Fleet, RolloutHandle};

/// What an admin serves: one handle, or a fleet of named ones.
#[derive(Clone)]
pub(crate) enum Target {
    Handle(RolloutHandle),
    Fleet(Fleet),
}

/// What a route does to a handle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Action {
    Status,
    Promote,
    Rollback,
    Split,
    Mirror,
    PlanPause,
    PlanResume,
    PlanAbort,
    PlanPromote,
    /// `POST /plan`: starts a rollout plan from its JSON document.
    PlanStart,
    /// `POST /deploy`: a replica's fleet-wide deploy of the next version.
    Deploy,
    /// `GET /events`: the server-sent event stream.
    Events,
    /// `GET /history`: the sampled counters of the last minutes.
    History,
}

impl Action {
    fn parse(segment: &str) -> Option<Action> {
        Some(match segment {
            "status" => Action::Status,
            "promote" => Action::Promote,
            "rollback" => Action::Rollback,
            "split" => Action::Split,
            "mirror" => Action::Mirror,
            "plan-pause" => Action::PlanPause,
            "plan-resume" => Action::PlanResume,
            "plan-abort" => Action::PlanAbort,
            "plan-promote" => Action::PlanPromote,
            "plan" => Action::PlanStart,
            "deploy" => Action::Deploy,
            "events" => Action::Events,
            "history" => Action::History,
            _ => return None,
        })
    }

    fn method(self) -> Method {
        match self {
            Action::Status | Action::Events | Action::History => Method::GET,
            _ => Method::POST,
        }
    }
}

/// One model's handle and, in a fleet, its name.
pub(crate) struct Model<'a> {
    /// `None` for the admin of one handle.
    pub(crate) name: Option<&'a str>,
    pub(crate) handle: RolloutHandle,
}

/// A request the admin serves.
pub(crate) enum Route<'a> {
    Handle(Model<'a>, Action),
    /// `GET /models`
    Models(&'a Fleet),
    /// `GET /status` of a fleet.
    FleetStatus,
    /// `GET /events` of a fleet: every model's samples, no model's status.
    FleetEvents,
    /// `GET /history` of a fleet.
    FleetHistory,
}

impl Route<'_> {
    /// The method the route answers (besides HEAD and OPTIONS).
    fn method(&self) -> Method {
        match self {
            Route::Handle(_, action) => action.method(),
            _ => Method::GET,
        }
    }
}

/// A route and whether the request is a HEAD (answer without the body).
pub(crate) struct Routed<'a> {
    pub(crate) route: Route<'a>,
    pub(crate) head: bool,
}

/// Why a request has no route.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum NoRoute {
    NotFound,
    UnknownModel(String),
    /// Another method than the route's: 405, `Allow` from this one.
    WrongMethod(Method),
    /// `OPTIONS`: 204 with `Allow`.
    Options(Method),
}

/// Routes a request (`method`, `path`) for `target`.
pub(crate) fn route<'a>(
    target: &'a Target,
    method: &Method,
    path: &'a str,
) -> Result<Routed<'a>, NoRoute> {
    let route = resolve(target, path)?;
    let allowed = route.method();
    match method {
        m if *m == allowed => Ok(Routed { route, head: false }),
        &Method::HEAD if allowed == Method::GET => Ok(Routed { route, head: true }),
        &Method::OPTIONS => Err(NoRoute::Options(allowed)),
        _ => Err(NoRoute::WrongMethod(allowed)),
    }
}

/// The route for `path`, whatever the method.
fn resolve<'a>(target: &'a Target, path: &'a str) -> Result<Route<'a>, NoRoute> {
    let mut segments = path.strip_prefix('/').ok_or(NoRoute::NotFound)?.split('/');
    let first = segments.next().ok_or(NoRoute::NotFound)?;
    let (second, third) = (segments.next(), segments.next());
    if segments.next().is_some() {
        return Err(NoRoute::NotFound);
    }
    let action = |s: &str| Action::parse(s).ok_or(NoRoute::NotFound);
    match target {
        Target::Handle(h) if second.is_none() => {
            let model = Model {
                name: None,
                handle: h.clone(),
            };
            Ok(Route::Handle(model, action(first)?))
        }
        Target::Handle(_) => Err(NoRoute::NotFound),
        Target::Fleet(fleet) => match (first, second, third) {
            ("models", None, None) => Ok(Route::Models(fleet)),
            ("status", None, None) => Ok(Route::FleetStatus),
            ("events", None, None) => Ok(Route::FleetEvents),
            ("history", None, None) => Ok(Route::FleetHistory),
            ("models", Some(name), Some(segment)) => {
                let action = action(segment)?;
                let handle = fleet
                    .get(name)
                    .ok_or_else(|| NoRoute::UnknownModel(name.to_owned()))?;
                let name = Some(name);
                Ok(Route::Handle(Model { name, handle }, action))
            }
            _ => Err(NoRoute::NotFound),
        },
    }
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;

    use super::*;

    fn handle() -> RolloutHandle {
        let svc = tower::service_fn(|_: http::Request<String>| async {
            Ok::<_, Infallible>(http::Response::new(String::new()))
        });
        crate::BlueGreenRouter::new(svc, svc).1
    }

    fn action(r: Result<Routed<'_>, NoRoute>) -> Option<(Option<String>, Action)> {
        match r {
            Ok(Routed {
                route: Route::Handle(m, a),
                ..
            }) => Some((m.name.map(String::from), a)),
            _ => None,
        }
    }

    #[test]
    fn routes_for_a_handle_and_a_fleet() {
        let h = handle();
        let one = Target::Handle(h.clone());
        let get = Method::GET;
        assert_eq!(
            action(route(&one, &get, "/status")),
            Some((None, Action::Status))
        );
        assert_eq!(
            action(route(&one, &get, "/events")),
            Some((None, Action::Events))
        );
        assert_eq!(
            action(route(&one, &Method::POST, "/split")),
            Some((None, Action::Split))
        );
        for unknown in ["", "/", "/status/", "/Status", "//status", "/models"] {
            assert_eq!(
                route(&one, &get, unknown).err(),
                Some(NoRoute::NotFound),
                "{unknown:?}"
            );
        }

        let fleet = Fleet::new();
        fleet.insert("m1", h).unwrap();
        let many = Target::Fleet(fleet);
        let is = |path, want: fn(&Route<'_>) -> bool| match route(&many, &get, path) {
            Ok(r) => want(&r.route),
            Err(_) => false,
        };
        assert!(is("/models", |r| matches!(r, Route::Models(_))));
        assert!(is("/status", |r| matches!(r, Route::FleetStatus)));
        assert!(is("/events", |r| matches!(r, Route::FleetEvents)));
        assert!(is("/history", |r| matches!(r, Route::FleetHistory)));
        assert_eq!(
            action(route(&many, &Method::POST, "/models/m1/promote")),
            Some((Some("m1".into()), Action::Promote))
        );
        assert_eq!(
            route(&many, &Method::POST, "/models/m2/promote").err(),
            Some(NoRoute::UnknownModel("m2".into()))
        );
        for unknown in [
            "/promote",
            "/models/m1",
            "/models/m1/",
            "/models/m1/x",
            "/models/m1/status/x",
        ] {
            assert_eq!(
                route(&many, &get, unknown).err(),
                Some(NoRoute::NotFound),
                "{unknown:?}"
            );
        }
    }

    #[test]
    fn methods_head_and_options() {
        let one = Target::Handle(handle());
        let head = route(&one, &Method::HEAD, "/status").ok().unwrap();
        assert!(head.head);
        assert_eq!(
            route(&one, &Method::HEAD, "/promote").err(),
            Some(NoRoute::WrongMethod(Method::POST))
        );
        assert_eq!(
            route(&one, &Method::OPTIONS, "/promote").err(),
            Some(NoRoute::Options(Method::POST))
        );
        assert_eq!(
            route(&one, &Method::POST, "/events").err(),
            Some(NoRoute::WrongMethod(Method::GET))
        );
    }
}
