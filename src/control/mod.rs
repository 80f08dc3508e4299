//! Shared routing state and the [`RolloutHandle`] that steers it.
//!
//! A router and all its clones share one control state. The request path reads
//! it with a single atomic load (the active color and the split and mirror
//! thresholds are packed into one word); control calls take a mutex, bump the
//! generation, publish a new word and record the transition. Every request is
//! pinned to one color when it is admitted and counted as in flight on that
//! color until its response body ends or is dropped.
//!
//! ```
//! use std::convert::Infallible;
//! use http::{Request, Response};
//! use tower::{service_fn, ServiceExt};
//! use tower_rollout::{mirror::MirrorBody, BlueGreenRouter, Color};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! // Inner services receive the request body wrapped in a `MirrorBody`.
//! type Req = Request<MirrorBody<String>>;
//! let v1 = service_fn(|_: Req| async { Ok::<_, Infallible>(Response::new("v1".to_string())) });
//! let v2 = service_fn(|_: Req| async { Ok::<_, Infallible>(Response::new("v2".to_string())) });
//! let (router, handle) = BlueGreenRouter::new(v1, v2);
//!
//! let req = || Request::new(String::new());
//! let res = router.clone().oneshot(req()).await.unwrap();
//! assert_eq!(res.body().get_ref(), "v1");
//! assert_eq!(handle.in_flight(Color::Blue), 1, "the body has not ended yet");
//!
//! handle.promote();
//! assert_eq!(handle.active(), Color::Green);
//! let res2 = router.clone().oneshot(req()).await.unwrap();
//! assert_eq!(res2.body().get_ref(), "v2");
//!
//! // Blue still has one response alive; it drains when that body is dropped.
//! let drained = handle.drained(Color::Blue);
//! drop(res);
//! drained.await;
//!
//! let status = handle.status();
//! assert_eq!((status.blue.served, status.green.served), (1, 1));
//! assert_eq!(status.generation, 1);
//! handle.rollback();
//! assert_eq!(handle.active(), Color::Blue);
//! # }
//! ```

mod counters;
mod handle;
mod meter;
mod state;

pub(crate) use counters::{Block, InFlight, Lane};
pub use handle::{ColorStatus, Drained, RolloutHandle, RolloutStatus};
pub(crate) use meter::{default_classifier, Classifier, Meter, Probe};
pub use meter::{Finished, Measurement, Measurements, DEFAULT_GRPC_FAILURES};
#[cfg(feature = "tokio")]
pub(crate) use state::MeasureGuard;
pub(crate) use state::{hit, threshold as state_threshold, Control, Word};

/// The rollout plan attached to a router, if any.
#[cfg(feature = "tokio")]
pub(crate) type PlanSlot = std::sync::Arc<crate::plan::Shared>;
#[cfg(not(feature = "tokio"))]
pub(crate) type PlanSlot = std::convert::Infallible;
pub use state::{Transition, TransitionKind};
