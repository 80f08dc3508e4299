//! [`Admin`]: an HTTP endpoint and a dashboard to watch and steer rollouts
//! (feature `admin`).
//!
//! A tower service over `http::Request<B>` for any body `B`, answering JSON
//! (and one HTML page). Mount it next to the app, for example with axum's
//! `Router::nest_service("/admin", admin)`. Every request but the
//! dashboard's page must carry `Authorization: Bearer <token>`; the token is
//! required to build the service and compared in constant time.
//!
//! # The dashboard
//!
//! `GET /` (`/admin/` when nested as above) serves one HTML page whose
//! styles and scripts are built into the binary (no CDN, no build step). It
//! holds no data, so it is served without the token: it asks for the token
//! once, keeps it in the page's memory only (never in the URL, storage or a
//! cookie) and sends it with each call; a wrong token is refused on the page.
//! It follows `GET /events` and shows per model the version of each color,
//! which is live, the split and mirror, per-color counters, error rate and
//! latency, the shadow comparison, the rollout plan (phase, gates, timeline),
//! and charts of the last minutes with transitions and plan steps marked; a
//! fleet's page lists every model with a status filter. Its actions
//! (promote, rollback, split, mirror, and the plan's pause, resume, abort and
//! skip to promote) ask for confirmation; the first four are sent with the
//! `expect_generation` the page showed, so a stale page gets a 409 and says so.
//!
//! # Routes
//!
//! For one [`RolloutHandle`](crate::RolloutHandle)
//! ([`AdminBuilder::handle`]):
//!
//! | route | effect |
//! |---|---|
//! | `GET /`, `GET /index.html` | the dashboard (no token needed) |
//! | `GET /status` | the status document (below) |
//! | `GET /events` | server-sent events (`text/event-stream`): `hello` once; `status` (`{"model", "status"}`, the status document) at once when the routing state, a version, a readiness or the plan changed, else at most once a second when anything in it changed; `sample` once a second (below). A client that falls 64 events behind is dropped; [`Admin::close_streams`] ends them all |
//! | `GET /history` | `{"samples": [...]}`: the samples of the last ten minutes (at most 8 MiB), oldest first |
//! | `POST /promote` | [`promote`](crate::RolloutHandle::promote) |
//! | `POST /rollback` | [`rollback`](crate::RolloutHandle::rollback) |
//! | `POST /split` with `{"fraction": 0.1}` | [`set_split`](crate::RolloutHandle::set_split) |
//! | `POST /mirror` with `{"fraction": 0.1}` | [`mirror_standby`](crate::RolloutHandle::mirror_standby) |
//! | `POST /plan` | starts a [rollout plan](crate::plan) from its JSON document (see [`plan_from_json`] for the format); 400 with `"field"` naming what is wrong, 409 when a plan already runs |
//! | `POST /deploy` with `{"version": "iris-v4"}` | for an admin of a [replica](crate::store::Replica) ([`AdminBuilder::replica`]): [`deploy`](crate::store::Replica::deploy), the version the standby should hold on every replica (their loaders load it); 409 while the standby takes canary traffic, a plan runs, or for the active color's version, and for an admin of one router |
//! | `POST /plan-pause`, `/plan-resume`, `/plan-abort`, `/plan-promote` | the running [rollout plan](crate::plan)'s [`pause`](crate::plan::PlanRun::pause), [`resume`](crate::plan::PlanRun::resume), [`abort`](crate::plan::PlanRun::abort), [`skip_to_promote`](crate::plan::PlanRun::skip_to_promote); 409 when no plan has run or it cannot (already finished, not paused) |
//!
//! Every `POST` answers with the new status document. For a
//! [`Fleet`](crate::Fleet) ([`AdminBuilder::fleet`]): `GET /models` (`{"models":
//! [names]}`), `GET /status` (`{"models": {name: status}}`), `GET /events`
//! (every model's samples, no status), `GET /history`, and the routes above
//! under `/models/{name}/`, e.g. `POST /models/vision/promote` or
//! `GET /models/vision/events` (every model's samples and vision's status).
//!
//! A sample (`seq`, `at_unix_ms`, `interval_ms`, `models`) holds per model
//! `model` (`null` for one handle), `generation`, `active`, `split`,
//! `mirror`, `plan` (state) and `phase`, per color (`colors.blue`,
//! `colors.green`) `version`, `in_flight`, `served`, `rps`, and over the
//! interval `finished`, `error_rate` and `p99_us` (while the router measures
//! outcomes), and the comparison's `compared` and `agreement` over the
//! interval. The admin samples every model once a second from a task it
//! starts on the tokio runtime it is built (or first called) in.
//!
//! Errors are JSON too, `{"error": "..."}`: 401 without the token or with a
//! wrong one (with `WWW-Authenticate: Bearer`), checked before anything else;
//! 404 for an unknown path or model; 405 for a wrong method (with `Allow`);
//! 400 for a body that is not the route's JSON object (unknown or duplicate
//! keys included) or a fraction outside `0..=1` (the handle's
//! [`ConfigError`](crate::ConfigError) message); 413 for a body over
//! [`MAX_BODY_BYTES`] on any route; 408 for a body that has not arrived
//! within [`BODY_DEADLINE`]; 409 when the router cannot mirror (no
//! executor), or on a stale `expect_generation`. `HEAD` works wherever
//! `GET` does, and `OPTIONS` answers 204 with `Allow`. A refused request
//! changes nothing. The service never panics on a request and never fails (its
//! error type is `Infallible`).
//!
//! # The status document
//!
//! `active`, `standby`, `split`, `mirror`, `generation`; `colors.blue` and
//! `colors.green` with `in_flight`, `mirrored_in_flight`, `served`;
//! `unknown_override`, `canary_fallback`; `transitions` (oldest first, at most
//! 64: `generation`, `at_unix_ms`, `kind`, `active`, `split`, `mirror`);
//! `mirror_stats` (the counters of [`MirrorStats`](crate::mirror::MirrorStats),
//! with `dropped` split by cause); `comparison` (the counts of
//! [`ShadowReport`](crate::shadow::ShadowReport), `agreement_rate` or `null`,
//! `primary_latency` and `shadow_latency` as `count`, `p50_us`, `p90_us`,
//! `p99_us`, and `field_mismatches` as `[{"field", "count"}]`); `exemplars`:
//! empty unless [`AdminBuilder::exemplar_diffs`] asks for the last mismatches'
//! diffs (never their bodies: they hold users' requests and answers). Also
//! `measuring`, the per-color `finished`, `failures` and `latency` (see
//! [`RolloutHandle::measurements`](crate::RolloutHandle::measurements)), and
//! `plan`: `null`, or the running (or last) rollout plan's `state`, `phase`,
//! `stable`, `candidate`, `elapsed_ms`, `baked_ms`, `gates` (`gate`,
//! `verdict`, `detail`, and for a plan started through `POST /plan` its
//! `type`, `threshold` and `min_sample`), `gate_specs` (every gate of such a
//! plan's document, or `null`), `started_unix_ms` (when the admin saw it
//! start, or `null`), `outcome` and `history` (`at_ms`, `at_unix_ms`,
//! `event`). The routing
//! state, the mirror counters and the report are read one after the other,
//! not as one atomic snapshot.
//!
//! # Security
//!
//! Serve it only where the token cannot be sniffed (TLS, or a private
//! interface). The service does not limit attempts: use a long random token
//! (32 bytes or more), and a rate limit in front if the endpoint is reachable
//! by untrusted clients. Answers carry `Cache-Control: no-store`.
//!
//! # Example
//!
//! ```
//! use axum::{routing::post, Router};
//! use http::{Request, StatusCode};
//! use tower::ServiceExt;
//! use tower_rollout::{admin::Admin, BlueGreenRouter, Color};
//! # use http_body_util::BodyExt;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let v1 = Router::new().route("/predict", post(|| async { "cat" }));
//! let v2 = Router::new().route("/predict", post(|| async { "tiger" }));
//! let (router, handle) = BlueGreenRouter::new(v1, v2);
//!
//! let admin = Admin::builder()
//!     .token("0123456789abcdef0123456789abcdef") // from a secret store in real life
//!     .handle(handle.clone())
//!     .build()?;
//! let app = Router::new()
//!     .nest_service("/admin", admin)
//!     .fallback_service(router);
//! # let call = |req: Request<axum::body::Body>| {
//! #     let app = app.clone();
//! #     async move {
//! #         let res = app.oneshot(req).await.unwrap();
//! #         let status = res.status();
//! #         let body = res.into_body().collect().await.unwrap().to_bytes();
//! #         (status, body)
//! #     }
//! # };
//! # let empty = axum::body::Body::empty;
//!
//! // Without the token: 401.
//! let req = Request::post("/admin/promote").body(empty())?;
//! assert_eq!(call(req).await.0, StatusCode::UNAUTHORIZED);
//! assert_eq!(handle.active(), Color::Blue);
//!
//! // With it: promoted, and the answer is the new status.
//! let req = Request::post("/admin/promote")
//!     .header("authorization", "Bearer 0123456789abcdef0123456789abcdef")
//!     .body(empty())?;
//! let (code, body) = call(req).await;
//! assert_eq!(code, StatusCode::OK);
//! let status: serde_json::Value = serde_json::from_slice(&body)?;
//! assert_eq!(status["active"], "green");
//! assert_eq!(call(Request::post("/predict").body(empty())?).await.1, "tiger");
//!
//! // A canary of 150% is refused with the handle's message.
//! let req = Request::post("/admin/split")
//!     .header("authorization", "Bearer 0123456789abcdef0123456789abcdef")
//!     .body(r#"{"fraction": 1.5}"#.into())?;
//! let (code, body) = call(req).await;
//! assert_eq!(code, StatusCode::BAD_REQUEST);
//! let error: serde_json::Value = serde_json::from_slice(&body)?;
//! assert_eq!(error["error"], "invalid split: 1.5 is not a fraction between 0 and 1");
//!
//! // Building without a token is an error, never an open endpoint.
//! assert!(Admin::builder().handle(handle).build().is_err());
//! # Ok(())
//! # }
//! ```
//!
//! For many models, build it from a [`Fleet`](crate::Fleet):
//!
//! ```
//! # use tower_rollout::{admin::Admin, BlueGreenRouter, Fleet};
//! # let svc = tower::service_fn(|_req: http::Request<tower_rollout::mirror::MirrorBody<String>>| async {
//! #     Ok::<_, std::convert::Infallible>(http::Response::new(String::new()))
//! # });
//! # let (_, sentiment) = BlueGreenRouter::new(svc.clone(), svc.clone());
//! # let (_, vision) = BlueGreenRouter::new(svc.clone(), svc);
//! let fleet = Fleet::new();
//! fleet.insert("sentiment", sentiment)?;
//! fleet.insert("vision", vision)?;
//! // GET /models, GET /status, POST /models/vision/promote, ...
//! let admin = Admin::builder().token("0123456789abcdef0123456789abcdef").fleet(fleet).build()?;
//! # drop(admin);
//! # Ok::<(), tower_rollout::ConfigError>(())
//! ```

mod assets;
mod auth;
mod events;
mod handlers;
mod history;
mod json;
mod reply;
mod request;
mod routes;
mod service;
mod shared;
#[cfg(feature = "store")]
mod synced;

pub use crate::plan::{plan_from_json, PlanDocumentError};
pub use reply::AdminBody;
pub use request::{BODY_DEADLINE, MAX_BODY_BYTES};
pub use service::{Admin, AdminBuilder, ResponseFuture};
