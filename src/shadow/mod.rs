//! [`ShadowComparator`]: compare a new model's answers with production's, off
//! the request path.
//!
//! A sampled request goes to the primary and, through the
//! [mirror](crate::mirror) engine and all its bounds, to a shadow. The
//! primary's response is returned at once and its body streams to the client
//! unchanged, frame by frame, while a copy (up to a byte cap) is kept. The
//! shadow's response is collected under its own deadline and cap. When both
//! are complete, a [`Compare`] implementation judges them on the shadow's
//! spawned task, never on the request path.
//!
//! - **Comparators**: [`Comparator::status`], [`Comparator::bytes`],
//!   [`Comparator::grpc_status`], [`Comparator::decoded`] (decode, e.g. with
//!   prost, then compare), JSON with tolerances and ignored fields
//!   ([`JsonCompare`], feature `json`), or any closure
//!   `Fn(&Captured, &Captured) -> Verdict`.
//! - **Outcomes**: every sampled request ends in exactly one of match,
//!   mismatch, shadow error, shadow timeout, skipped (over the cap, primary
//!   failed, copy not started or abandoned) or comparator panicked (caught).
//! - **[`ShadowReport`]**: counts per outcome, agreement rate, primary and
//!   shadow latency side by side, mismatches per field, and a ring of the last
//!   mismatches ([`Exemplar`]: request, both answers, the diff); an
//!   `on_mismatch` hook publishes each one.
//!
//! # Example
//!
//! ```
//! use axum::{routing::post, Router};
//! use tower::ServiceExt;
//! use tower_rollout::shadow::{Comparator, ShadowComparator};
//! # use http::Request;
//! # use http_body_util::BodyExt;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let v1 = Router::new().route("/predict", post(|body: String| async move { format!("{body}:cat") }));
//! let v2 = Router::new().route("/predict", post(|body: String| async move {
//!     if body == "x" { format!("{body}:tiger") } else { format!("{body}:cat") }
//! }));
//!
//! let (layer, shadow) = ShadowComparator::new(v2, Comparator::bytes());
//! let app = v1.layer(layer);
//!
//! for input in ["a", "b", "x", "c"] {
//!     let req = Request::post("/predict").body(axum::body::Body::from(input)).unwrap();
//!     let res = app.clone().oneshot(req).await.unwrap();
//!     // Users only ever see the primary's answer.
//!     let body = res.into_body().collect().await.unwrap().to_bytes();
//!     assert_eq!(body, format!("{input}:cat"));
//! }
//! // Comparisons run in the background.
//! while shadow.report().total() < 4 {
//!     tokio::task::yield_now().await;
//! }
//! let report = shadow.report();
//! assert_eq!((report.matched, report.mismatched), (3, 1));
//! assert_eq!(report.agreement_rate(), Some(0.75));
//! assert_eq!(report.field_mismatches, vec![("body".to_string(), 1)]);
//! assert_eq!(report.exemplars[0].request, "x");
//! # }
//! ```

mod capture;
mod compare;
#[cfg(feature = "json")]
mod json;
mod layer;
mod mode;
mod outcome;
mod pairs;
mod report;
mod service;
mod telemetry;
mod versions;

pub use capture::CompareBody;
#[cfg(feature = "tokio")]
pub(crate) use capture::Judge;
#[doc(hidden)]
pub use capture::{Capture as PrimaryCapture, PendingCapture};
pub use compare::{Captured, Comparator, Compare, DiffKind, FieldDiff, Verdict};
#[cfg(feature = "json")]
pub use json::JsonCompare;
pub use layer::{CompareSettings, ShadowBuilder, ShadowComparator, ShadowHandle};
pub use mode::Comparing;
pub use report::{Exemplar, FieldNoise, NoiseReport, ShadowReport, StructureChange};
pub use service::{NoSecondary, ResponseFuture, Shadowed};
pub use versions::ComparedVersions;
