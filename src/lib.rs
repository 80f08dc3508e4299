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
//! use std::convert::Infallible;
//! use http::{Request, Response};
//! use tower::{service_fn, ServiceExt};
//! use tower_rollout::{BlueGreenRouter, Color};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let v1 = service_fn(|_: Request<()>| async { Ok::<_, Infallible>(Response::new("v1".to_string())) });
//! let v2 = service_fn(|_: Request<()>| async { Ok::<_, Infallible>(Response::new("v2".to_string())) });
//! let (router, handle) = BlueGreenRouter::new(v1, v2);
//! // axum::serve(listener, tower::make::Shared::new(router)) in a real server.
//!
//! handle.set_split(0.05)?; // canary: 5% of requests to green
//! handle.promote(); // green is live, blue stays warm
//! let res = router.clone().oneshot(Request::new(())).await?;
//! assert_eq!(res.body().get_ref(), "v2");
//! drop(res);
//!
//! handle.drained(Color::Blue).await; // nothing left on blue: safe to unload it
//! handle.rollback(); // one store back
//! assert_eq!(handle.active(), Color::Blue);
//! # Ok(())
//! # }
//! ```
//!
//! Modules: [`router`] ([`BlueGreenRouter`]), [`control`] ([`RolloutHandle`]
//! and the status it reports).
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod body;
mod color;
pub mod control;
mod error;
mod head;
pub mod router;

pub use color::{Color, ParseColorError};
#[doc(inline)]
pub use control::RolloutHandle;
pub use error::ConfigError;
pub use head::RequestHead;
#[doc(inline)]
pub use router::BlueGreenRouter;
