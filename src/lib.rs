//! Safe model rollouts inside the server process.
//!
//! `tower-rollout` runs two versions of a service side by side, blue and green,
//! and moves traffic between them from application code: promote and roll back
//! in one atomic store, canary a fraction of users (sticky per user if wanted),
//! and know when the old version has drained so it can be unloaded. Every
//! layer is a plain [`tower`] middleware over `http::Request`/`http::Response`,
//! so it applies to axum (`Router::layer`, `route_layer`, `nest_service`) and
//! tonic (`Server::builder().layer(..)`) alike.
//!
//! ```
//! use axum::{routing::post, Router};
//! use tower::ServiceExt;
//! use tower_rollout::{BlueGreenRouter, Color};
//! # use http::Request;
//! # use http_body_util::BodyExt;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // Two complete versions of a model server: v1 (blue) live, v2 (green) standby.
//! let v1 = Router::new().route("/predict", post(|| async { "cat" }));
//! let v2 = Router::new().route("/predict", post(|| async { "tiger" }));
//! let (router, handle) = BlueGreenRouter::new(v1, v2);
//! let app = Router::new().fallback_service(router);
//! // axum::serve(listener, app) in a real server.
//! # let ask = |app: Router| async move {
//! #     let req = Request::post("/predict").body(axum::body::Body::empty()).unwrap();
//! #     let res = app.oneshot(req).await.unwrap();
//! #     res.into_body().collect().await.unwrap().to_bytes()
//! # };
//!
//! handle.set_split(0.05)?; // canary: 5% of requests served by green
//! handle.promote_to(Color::Green)?; // green is live, blue stays warm
//! handle.promote_to(Color::Green)?; // a retry changes nothing
//! assert_eq!(ask(app.clone()).await, "tiger");
//!
//! handle.drained(Color::Blue).await; // nothing runs on blue: v1 could be unloaded
//! handle.rollback()?; // one store back
//! assert_eq!(handle.active(), Color::Blue);
//! assert_eq!(ask(app).await, "cat");
//! # Ok(())
//! # }
//! ```
//!
//! Inner services receive the request as it came; a router built with
//! [`mirror`](router::Builder::mirror) or [`compare`](router::Builder::compare)
//! (and the [`MirrorLayer`] and
//! [`ShadowComparator`](shadow::ShadowComparator) layers) hand them a
//! [`mirror::MirrorBody`] instead, which axum's and tonic's routers accept like
//! any body. Later versions are loaded into the idle color while serving with
//! a [`Deployer`](control::Deployer) (see the [`control`] module).
//!
//! Modules: [`router`] ([`BlueGreenRouter`]), [`control`] ([`RolloutHandle`]
//! and the status it reports), [`mirror`] ([`MirrorLayer`]), [`shadow`]
//! ([`ShadowComparator`](shadow::ShadowComparator)), [`plan`] (automated
//! rollouts with guardrails, feature `tokio`), [`fleet`] ([`Fleet`]: many
//! models per process), [`telemetry`] (what the `metrics` and `tracing`
//! features emit), and with the feature `admin`, `admin` (an HTTP endpoint to
//! watch and steer rollouts).
#![cfg_attr(docsrs, feature(doc_cfg))]
// Without `tokio` the deploys and plans are compiled out, and the parts of
// the core only they use would warn.
#![cfg_attr(not(feature = "tokio"), allow(dead_code, unused_imports))]

#[cfg(feature = "admin")]
#[cfg_attr(docsrs, doc(cfg(feature = "admin")))]
pub mod admin;
mod color;
pub mod control;
#[cfg(feature = "drift")]
#[cfg_attr(docsrs, doc(cfg(feature = "drift")))]
pub mod drift;
mod error;
pub mod fleet;
mod head;
#[cfg(feature = "drift")]
#[cfg_attr(docsrs, doc(cfg(feature = "drift")))]
pub mod live;
#[cfg(all(test, feature = "loom"))]
mod loom_models;
pub mod mirror;
#[cfg(feature = "tokio")]
#[cfg_attr(docsrs, doc(cfg(feature = "tokio")))]
pub mod plan;
pub mod router;
pub mod shadow;
mod stats;
#[cfg(feature = "store")]
#[cfg_attr(docsrs, doc(cfg(feature = "store")))]
pub mod store;
pub mod telemetry;

pub use color::{Color, ParseColorError};
#[doc(inline)]
pub use control::RolloutHandle;
pub use error::ConfigError;
#[doc(inline)]
pub use fleet::Fleet;
pub use head::RequestHead;
#[doc(inline)]
pub use mirror::MirrorLayer;
#[doc(inline)]
pub use router::BlueGreenRouter;
pub use stats::{Latencies, Percentiles};
