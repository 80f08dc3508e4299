//! [`BlueGreenRouter`]: blue/green switching and canary splits over two services.
//!
//! The router holds two complete services, blue and green, and a shared control
//! state steered through a [`RolloutHandle`](crate::RolloutHandle). One color is active and serves
//! every request, except the fraction that the canary split sends to the
//! standby. [`promote`](crate::RolloutHandle::promote) and
//! [`rollback`](crate::RolloutHandle::rollback) swap the colors in one atomic store;
//! requests already admitted finish on their color, streamed bodies included.
//!
//! # Readiness
//!
//! `poll_ready` picks the color from the current state and polls only that
//! color's service, so a standby that is not ready, or whose `poll_ready`
//! fails, never delays or fails requests bound for the active color (unlike
//! `tower::steer::Steer`, which polls every service). A random canary pick goes
//! to the standby only when it is ready at that moment; otherwise the request is
//! served by the active color and counted in
//! [`RolloutStatus::canary_fallback`](crate::control::RolloutStatus::canary_fallback).
//! `call` uses the color polled ready even if a promote happened in between.
//! A request whose own key or override header picks the other color goes to a
//! clone of that color's service, driven to readiness on its own.
//!
//! # Per-request choices
//!
//! - A sticky key ([`Builder::sticky_header`], [`Builder::sticky_key`]) keeps a
//!   user on one color for a given split.
//! - An override header ([`Builder::override_header`]), off by default and
//!   honoured only when a predicate allows it, forces a color.
//! - [`Builder::served_by_header`] names the serving color in the response;
//!   [`Builder::color_extension`] puts it in the request's extensions.
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
//!     .served_by_header("x-served-by")
//!     .layer(v2)
//!     .unwrap();
//! let app = v1.layer(layer);
//!
//! let get = |app: Router| async move {
//!     let res = app.oneshot(Request::get("/predict").body(axum::body::Body::empty()).unwrap());
//!     let res = res.await.unwrap();
//!     let color = res.headers()["x-served-by"].to_str().unwrap().to_owned();
//!     let body = res.into_body().collect().await.unwrap().to_bytes();
//!     (color, body)
//! };
//! assert_eq!(get(app.clone()).await, ("blue".into(), "v1".into()));
//! handle.promote();
//! assert_eq!(get(app.clone()).await, ("green".into(), "v2".into()));
//! handle.rollback();
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
#[doc(hidden)]
pub use mode::{Capture, CopyLane, NoCapture};
pub(crate) use mode::sealed;
pub use mode::{CopyTo, Mode, ModeFor, Plain};
pub use service::BlueGreenRouter;
