//! [`BlueGreenRouter`]: blue/green switching and canary splits over two version slots.
//!
//! The router holds two slots, blue and green, each with a version: a label
//! (`"iris-v2"`, see [`Builder::versions`]) and a complete service. A shared
//! control state is steered through a [`RolloutHandle`](crate::RolloutHandle).
//! One color is active and serves every request, except the fraction that the
//! canary split sends to the standby.
//! [`promote`](crate::RolloutHandle::promote) and
//! [`rollback`](crate::RolloutHandle::rollback) swap the colors in one atomic
//! store; requests already admitted finish on their version, streamed bodies
//! included. A [`Deployer`](crate::control::Deployer) (from
//! [`BlueGreenRouter::deployer`]) loads the next version into the standby
//! slot while the router serves.
//!
//! Inner services receive the request unchanged (`Request<B>`) and their
//! response body is wrapped in a [`RolloutBody`] that counts the request in
//! flight until it ends. Only a router built with
//! [`Builder::mirror`] or [`Builder::compare`] changes the request body type
//! (to [`MirrorBody`](crate::mirror::MirrorBody)), since it may tee the body
//! to the standby.
//!
//! # Readiness
//!
//! `poll_ready` picks the color from the current state and polls only that
//! color's service, so a standby that is not ready, or whose `poll_ready`
//! fails, never delays or fails requests bound for the active color (unlike
//! `tower::steer::Steer`, which polls every service). A request whose color
//! (a random canary draw, a sticky key, an override header) is not ready at
//! that moment is served by the other color when that one is ready, and
//! counted in [`RolloutStatus::fallbacks`](crate::control::RolloutStatus::fallbacks).
//! A request waiting in `poll_ready` picks again when the state changes, so a
//! rollback rescues requests waiting on a standby that never became ready.
//! A request counts as in flight from the moment `poll_ready` admits it, so
//! [`drained`](crate::RolloutHandle::drained) right after a promote waits for
//! it.
//!
//! # Per-request choices
//!
//! - A sticky key ([`Builder::sticky_header`], [`Builder::sticky_key`]) keeps a
//!   user on one color for a given split.
//! - An override header ([`Builder::override_header`]), off by default and
//!   honoured only when a predicate allows it, forces a color.
//! - [`Builder::served_by_header`] names the serving color and version in the
//!   response (`green; version=iris-v2`, read back with
//!   [`ColorVersion::from_served_by`](crate::control::ColorVersion::from_served_by));
//!   [`Builder::color_extension`] puts them in the request's extensions.
//!
//! # Example
//!
//! As a layer over an axum app, with the new version as the standby:
//!
//! ```
//! use axum::{routing::get, Router};
//! use tower::ServiceExt;
//! use tower_rollout::{BlueGreenRouter, Color};
//! # use http::Request;
//! # use http_body_util::BodyExt;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let v1 = Router::new().route("/predict", get(|| async { "v1" }));
//! let v2 = Router::new().route("/predict", get(|| async { "v2" }));
//!
//! let (layer, handle) = BlueGreenRouter::builder()
//!     .versions("v1", "v2")
//!     .served_by_header("x-served-by")
//!     .layer(v2)
//!     .unwrap();
//! let app = v1.layer(layer);
//!
//! let get = |app: Router| async move {
//!     let res = app.oneshot(Request::get("/predict").body(axum::body::Body::empty()).unwrap());
//!     let res = res.await.unwrap();
//!     let served_by = res.headers()["x-served-by"].to_str().unwrap().to_owned();
//!     let body = res.into_body().collect().await.unwrap().to_bytes();
//!     (served_by, body)
//! };
//! assert_eq!(get(app.clone()).await, ("blue; version=v1".into(), "v1".into()));
//! handle.promote().unwrap();
//! assert_eq!(get(app.clone()).await, ("green; version=v2".into(), "v2".into()));
//! handle.rollback().unwrap();
//! assert_eq!(handle.active(), Color::Blue);
//! # }
//! ```

mod body;
mod config;
mod future;
mod layer;
mod mode;
mod service;

pub use body::RolloutBody;
pub use config::{sticky_hash, Builder};
pub use future::ResponseFuture;
pub use layer::BlueGreenLayer;
pub(crate) use mode::sealed;
#[doc(hidden)]
pub use mode::{Capture, CopyLane, NoCapture};
pub use mode::{Copied, CopyTo, Mode, ModeFor, Plain};
pub use service::BlueGreenRouter;
