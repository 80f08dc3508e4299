//! The routing core: the state word, version slots, counters, transitions,
//! and the [`RolloutHandle`] that steers them.
//!
//! A router and all its clones share one control state. Each color holds a
//! *version*: a label (`"iris-v3"`) and a service value. The request path
//! reads one atomic word (the active color, the split and mirror thresholds,
//! whether outcomes are measured, and the slot epoch that rises with every
//! deploy) and counts each request in per-thread slots of its version's
//! counters; control calls take a mutex, publish a new word and record the
//! transition. Every request is pinned to one version when it is admitted and
//! counted as in flight there until its response body ends or is dropped.
//!
//! This module imports nothing from the mirror, the comparison, the plans or
//! the telemetry: they attach to the core through small internal traits.
//!
//! # Deploying versions one after another
//!
//! A router built over two services of the same type has a [`Deployer`]
//! (feature `tokio`, on by default): it loads the next version into the
//! standby color while the process serves, after driving it to readiness.
//! Router clones (one per connection) pick it up on their next request, with
//! no lock and no per-request `Arc` clone; the replaced version is dropped
//! once its last request and mirrored copy ended, which
//! [`Deployed::retired`] reports.
//!
//! ```
//! use std::convert::Infallible;
//! use http::{Request, Response};
//! use tower::{service_fn, util::BoxCloneSyncService, ServiceExt};
//! use tower_rollout::{BlueGreenRouter, Color};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! type Req = Request<String>;
//! type Svc = BoxCloneSyncService<Req, Response<String>, Infallible>;
//! let version = |answer: &'static str| -> Svc {
//!     BoxCloneSyncService::new(service_fn(move |_: Req| async move {
//!         Ok::<_, Infallible>(Response::new(answer.to_string()))
//!     }))
//! };
//! let (router, handle) = BlueGreenRouter::builder()
//!     .versions("v1", "v2")
//!     .build(version("v1"), version("v2"))?;
//! let deployer = router.deployer::<String>(); // the request body type
//! let ask = |router: BlueGreenRouter<Svc, Svc>| async move {
//!     let res = router.oneshot(Request::new(String::new())).await.unwrap();
//!     res.into_body().into_inner()
//! };
//! assert_eq!(ask(router.clone()).await, "v1");
//!
//! handle.promote_to_version("v2")?;        // v2 live, v1 warm on blue
//! handle.promote_to_version("v2")?;        // a retry changes nothing
//! assert_eq!(handle.generation(), 1);
//! assert_eq!(ask(router.clone()).await, "v2");
//!
//! // Load v3 into the idle color (blue, holding v1) while serving.
//! let deployed = deployer.deploy("v3", version("v3")).await?;
//! assert_eq!((deployed.color, deployed.replaced().as_str()), (Color::Blue, "v1"));
//! deployed.retired().await;                // v1 dropped everywhere
//!
//! handle.promote_to_version("v3")?;
//! assert_eq!(ask(router.clone()).await, "v3");
//! handle.rollback()?;                      // back to v2, still loaded in green
//! assert_eq!(ask(router).await, "v2");
//! # Ok(())
//! # }
//! ```

mod core;
mod counters;
#[cfg(feature = "tokio")]
mod deploy;
mod drain;
mod handle;
mod meter;
mod probe;
mod slots;
mod state;
mod sync;
mod version;
mod word;

#[cfg(feature = "tokio")]
pub(crate) use self::core::MeasureGuard;
pub(crate) use self::core::{Control, Initial, Observer};
pub(crate) use counters::{Admission, Block, InFlight, Lane};
#[cfg(feature = "tokio")]
pub use deploy::{Deploy, DeployError, Deployed, Deployer, DEFAULT_DEPLOY_TIMEOUT};
pub use drain::{Drained, Retired};
pub use handle::{ColorStatus, ControlCall, RetiringStatus, RolloutHandle, RolloutStatus};
pub(crate) use meter::Classifier;
pub use meter::{Finished, Measurement, Measurements, DEFAULT_GRPC_FAILURES};
pub(crate) use probe::{end as end_measured, Probe};
pub(crate) use slots::{attach_prober, Cached, Slots};
pub use state::{Change, ControlError, Target, Transition, TransitionKind};
pub(crate) use sync::spin_wait;
pub(crate) use version::Tags;
pub use version::{ColorVersion, ParseServedByError, Readiness, VersionLabel};
pub(crate) use word::{hit, threshold, Word, EPOCH_MASK};
