//! [`MirrorLayer`]: fire-and-forget traffic mirroring that cannot slow or break
//! the primary.
//!
//! Sampled requests are copied to a shadow service while the primary serves
//! them as if the layer were not there: the primary's response is returned
//! untouched, and its request body reaches it frame by frame as it arrives.
//!
//! - **Streaming tee.** Each body frame goes to the primary as it arrives; a
//!   refcounted clone of its bytes (no copy) is offered to the shadow with
//!   `try_send` on a bounded channel. If the shadow falls behind, the copy
//!   exceeds the byte budget, or the primary stops reading early, the copy is
//!   abandoned: the shadow's body ends with [`CopyAborted`], never as a shorter
//!   body that looks complete. Trailers are copied.
//! - **Bounds.** At most `max_in_flight` shadow requests exist at once (a
//!   semaphore, `try_acquire`: a copy that finds it full is dropped, never
//!   queued), each under its own deadline and byte budget, so memory held for
//!   shadows is at most `max_in_flight × max_body_bytes`.
//! - **Isolation.** `poll_ready` polls only the primary. The shadow runs in a
//!   spawned task (tokio by default, any executor through [`Spawn`]); its
//!   errors, panics and hangs are caught, timed out and counted; its response
//!   body is read to the end and dropped. With no executor the copy is skipped
//!   and counted.
//! - **Side-effect safety.** `authorization`, `cookie` and `proxy-authorization`
//!   are stripped from copies unless you opt in; every copy carries a marker
//!   header (`x-rollout-mirror: 1` by default) and the [`Mirrored`] extension;
//!   a predicate chooses which requests may be copied at all.
//! - **Counters.** [`MirrorStats`] accounts for every sampled copy exactly once.
//!
//! Services behind the layer receive [`MirrorBody<B>`] as their request body
//! (axum's and tonic's routers accept any body). The same engine copies a
//! router's traffic to its standby when the router is built with
//! [`Builder::mirror`](crate::router::Builder::mirror).
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//! use axum::{routing::post, Router};
//! use tower::ServiceExt;
//! use tower_rollout::mirror::{MirrorLayer, Mirrored};
//! # use http::Request;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! // The copy's body is fed as the primary reads its own: a primary that never
//! // reads the body leaves the copy incomplete (counted as `dropped_primary_early`).
//! let v1 = Router::new().route("/predict", post(|body: String| async move {
//!     assert_eq!(body, "features");
//!     "v1"
//! }));
//! // The shadow sees the marker and must not write anything.
//! let v2 = Router::new().route(
//!     "/predict",
//!     post(|mirrored: Option<axum::Extension<Mirrored>>, headers: http::HeaderMap, body: String| async move {
//!         assert!(mirrored.is_some());
//!         assert!(headers.get("authorization").is_none());
//!         assert_eq!(body, "features");
//!         "v2"
//!     }),
//! );
//!
//! let (layer, mirror) = MirrorLayer::builder(v2)
//!     .sample(1.0)
//!     .max_in_flight(16)
//!     .timeout(Duration::from_secs(1))
//!     .build()
//!     .unwrap();
//! let app = v1.layer(layer);
//!
//! let req = Request::post("/predict")
//!     .header("authorization", "Bearer secret")
//!     .body(axum::body::Body::from("features"))
//!     .unwrap();
//! let res = app.oneshot(req).await.unwrap();
//! assert_eq!(res.status(), 200);
//! # use http_body_util::BodyExt;
//! # assert_eq!(res.into_body().collect().await.unwrap().to_bytes(), "v1");
//!
//! // The copy runs in the background; wait until its outcome is known.
//! while mirror.stats().in_flight > 0 {
//!     tokio::task::yield_now().await;
//! }
//! let stats = mirror.stats();
//! assert_eq!((stats.sampled, stats.completed), (1, 1), "{stats:?}");
//! # }
//! ```

mod body;
pub(crate) mod captured;
mod engine;
mod layer;
mod mode;
mod outcome;
mod service;
mod spawn;
mod stats;
mod telemetry;

pub(crate) use body::RequestSample;
pub use body::{CopyAborted, MirrorBody};
pub use engine::Mirrored;
pub(crate) use engine::{CopyStart, Engine, Followup, Second, ShadowResult};
pub use layer::{MirrorBuilder, MirrorHandle, MirrorLayer, DEFAULT_MARKER};
pub use mode::Mirroring;
pub use service::Mirror;
#[cfg(feature = "idle")]
pub use spawn::IdleSpawner;
#[cfg(feature = "tokio")]
pub use spawn::TokioSpawner;
pub use spawn::{BoxTask, Spawn, SpawnError};
pub use stats::MirrorStats;
