//! Metrics and tracing: what the layers emit, under which names and labels.
//!
//! Both are optional and off by default. Without the features the layers emit
//! nothing and the request path does exactly what it did before: the types of
//! this module are then empty and their methods do nothing.
//!
//! - feature **`metrics`**: counters, gauges and histograms through the
//!   [`metrics`](https://docs.rs/metrics) facade (0.24). Install a recorder
//!   (for example `metrics-exporter-prometheus`) **before** building routers
//!   and layers: their counters are registered once, when they are built, and
//!   the request path then only increments them (no label is allocated per
//!   request). A layer built before the recorder was installed reports
//!   nothing. The one exception is `rollout_compare_field_mismatches_total`,
//!   whose `field` label is only known at the first mismatch of that field: it
//!   is registered then, with the recorder in effect on the comparison's task.
//! - feature **`tracing`**: a span per routed request and events at
//!   transitions, at every mirrored copy that did not complete, and at every
//!   comparison mismatch, through [`tracing`](https://docs.rs/tracing) 0.1.
//!
//! # Names
//!
//! Several routers and layers can run in one process (a server hosting
//! several models). Each has a name, given to its builder, that labels
//! everything it emits; the default is `"default"` ([`DEFAULT_NAME`]):
//!
//! - [`BlueGreenRouter::builder().name("iris")`](crate::router::Builder::name)
//! - [`MirrorLayer::builder(shadow).name("iris")`](crate::mirror::MirrorBuilder::name)
//! - [`ShadowComparator::builder(shadow, cmp).name("iris")`](crate::shadow::ShadowBuilder::name)
//!
//! A name is 1 to 64 ASCII letters, digits, `_`, `-`, `.`, `:` or `/`;
//! anything else fails at construction with
//! [`ConfigError::InvalidName`](crate::ConfigError::InvalidName). Names are
//! fixed at construction: a name made from request data would grow the number
//! of series without bound.
//!
//! Mirror and comparison metrics also carry a `layer` label saying which kind
//! of layer owns them: `router` (the copies of
//! [`mirror_standby`](crate::RolloutHandle::mirror_standby) and the router's
//! [`compare`](crate::router::Builder::compare)), `mirror` ([`MirrorLayer`](crate::MirrorLayer))
//! or `shadow` ([`ShadowComparator`](crate::shadow::ShadowComparator)). A
//! router's mirror and comparison metrics carry the router's name.
//!
//! # Metrics
//!
//! | name | kind | labels | what |
//! |---|---|---|---|
//! | `rollout_requests_total` | counter | `name`, `color`, `version` | requests admitted by the router, per color and version that serve them (mirrored copies not included) |
//! | `rollout_responses_total` | counter | `name`, `color`, `version`, `class` | responses per color and version when their head is ready; `class` is `1xx`, `2xx`, `3xx`, `4xx`, `5xx`, `other` (a status above 599) or `error` (the inner service failed) |
//! | `rollout_transitions_total` | counter | `name`, `kind` | control calls that changed the state: `kind` is `promote`, `rollback`, `split`, `mirror`, `abort` (a rollout plan aborting) or `deploy` (a new version loaded) |
//! | `rollout_version` | gauge | `name`, `color`, `version` | 1 while the version is loaded in the color, 0 once a deploy replaced it |
//! | `rollout_active` | gauge | `name`, `color` | 1 for the active color, 0 for the standby |
//! | `rollout_split_ratio` | gauge | `name` | the fraction of requests sent to the standby |
//! | `rollout_mirror_ratio` | gauge | `name` | the fraction of the active color's requests copied to the standby |
//! | `rollout_generation` | gauge | `name` | the generation: rises by one with every control call that changed the state |
//! | `rollout_mirror_sampled_total` | counter | `name`, `layer` | requests chosen for a copy |
//! | `rollout_mirror_copies_total` | counter | `name`, `layer`, `outcome`, `reason` | how each chosen copy ended, exactly once: `outcome` is `completed`, `error`, `timeout`, `panic`, `dropped` or `skipped`; only `dropped` and `skipped` carry a `reason`: `saturated`, `over_budget`, `shadow_slow`, `primary_early` (dropped) or `no_executor` (skipped) |
//! | `rollout_mirror_shadow_duration_seconds` | histogram | `name`, `layer` | shadow latency, from the copy's start to the end of its response body, for completed copies and errors |
//! | `rollout_drift` | gauge | `name`, `layer`, `field`, `statistic`, `primary_version`, `shadow_version` | with feature `drift` and [`CompareSettings::drift`](crate::shadow::CompareSettings::drift): each statistic of each field for the pair, updated every 100 compared answers (`psi`, `jensen_shannon`, `chi_square`, `chi_square_p`, `ks`, `ks_p`, `wasserstein`) |
//! | `rollout_compare_total` | counter | `name`, `layer`, `outcome` | how each sampled comparison ended: `matched`, `mismatched`, `shadow_error`, `shadow_timeout`, `skipped_over_cap`, `skipped_primary_failed`, `skipped_not_started`, `skipped_dropped`, `comparator_panic` or `schema_break` (one side answered 2xx, the other 4xx) |
//! | `rollout_compare_duration_seconds` | histogram | `name`, `layer`, `side` | latency of compared requests, `side` `primary` or `shadow` |
//! | `rollout_compare_field_mismatches_total` | counter | `name`, `layer`, `field` | differences per field (a JSON pointer, or `status`, `body`, …); at most 32 distinct fields per comparator, the rest counted under `field="(other)"` |
//! | `rollout_replica_applied_revision`, `rollout_replica_stale_seconds`, `rollout_replica_ready` | gauge | `model`, `replica` | with feature `store`, for each [`Replica`](crate::store::Replica): the store revision applied, how long the store has been unreachable (0 while connected; set at each contact, each failed attempt and each report), and 1 while ready |
//!
//! These are the same numbers the handles report as plain snapshots
//! ([`RolloutHandle::status`](crate::RolloutHandle::status),
//! [`MirrorStats`](crate::mirror::MirrorStats),
//! [`ShadowReport`](crate::shadow::ShadowReport)).
//!
//! # Tracing
//!
//! | what | level | target | fields |
//! |---|---|---|---|
//! | span `rollout.request` | INFO | `tower_rollout::router` | `name`, `color`, `version` (the color and version that serve the request) |
//! | span `rollout.mirror` | INFO | `tower_rollout::mirror` | `name`, `layer` |
//! | event `rollout transition` | INFO | `tower_rollout::router` | `name`, `kind`, `from`, `from_version`, `to`, `to_version` (the active color and version before and after), `replaced` (a deploy's version that left), `split`, `mirror`, `generation` |
//! | event `mirrored copy not completed` | DEBUG (WARN for `panic`) | `tower_rollout::mirror` | `name`, `layer`, `outcome`, `reason` (as in the metric) |
//! | event `shadow mismatch` | DEBUG | `tower_rollout::shadow` | `name`, `layer`, `diffs` (how many), `fields` (the first 8 distinct fields that differ) |
//! | event `comparator panicked` | WARN | `tower_rollout::shadow` | `name`, `layer` |
//!
//! The router's inner service is called, and its response future polled,
//! inside `rollout.request`, so the handler's own events carry the serving
//! color. The span ends when the response head is ready (the body streams
//! outside it). Each mirrored copy runs inside `rollout.mirror` on its own
//! task, so the shadow handler's events are told apart from the primary's.
//! Mismatch events name fields only, never values: responses hold user data
//! (read them from the report's exemplars).
//!
//! # Example
//!
//! Counting per color with `metrics-util`'s `DebuggingRecorder` (any recorder
//! works the same way), and the serving color in the handler's span:
//!
#![cfg_attr(all(feature = "metrics", feature = "tracing"), doc = "```")]
#![cfg_attr(not(all(feature = "metrics", feature = "tracing")), doc = "```ignore")]
//! use axum::{routing::get, Router};
//! use metrics_util::debugging::{DebugValue, DebuggingRecorder};
//! use tower::ServiceExt;
//! use tower_rollout::shadow::{Comparator, ShadowComparator};
//! use tower_rollout::{BlueGreenRouter, MirrorLayer};
//! # use http::Request;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let recorder = DebuggingRecorder::new();
//! let snapshotter = recorder.snapshotter();
//! // In a server: install the recorder once at start-up, before building.
//! let (router, handle) = metrics::with_local_recorder(&recorder, || {
//!     let v1 = Router::new().route("/predict", get(|| async { "v1" }));
//!     let v2 = Router::new().route("/predict", get(|| async {
//!         // Inside the `rollout.request` span, whose `color` field is "green"
//!         // and `version` field "iris-v2".
//!         assert_eq!(
//!             tracing::Span::current().metadata().map(|m| m.name()),
//!             Some("rollout.request")
//!         );
//!         "v2"
//!     }));
//!     // Layers are named the same way.
//!     let (_copies, _) = MirrorLayer::builder(v2.clone()).name("iris").build().unwrap();
//!     let (_compare, _) = ShadowComparator::builder(v2.clone(), Comparator::bytes())
//!         .name("iris")
//!         .build()
//!         .unwrap();
//!     BlueGreenRouter::builder()
//!         .name("iris")
//!         .versions("iris-v1", "iris-v2")
//!         .build(v1, v2)
//!         .unwrap()
//! });
//! let _subscriber = tracing::subscriber::set_default(tracing_subscriber::registry());
//!
//! handle.promote().unwrap();
//! let req = Request::get("/predict").body(axum::body::Body::empty()).unwrap();
//! assert_eq!(router.oneshot(req).await.unwrap().status(), 200);
//!
//! let served_by_green = snapshotter.snapshot().into_vec().into_iter().find(|(key, ..)| {
//!     let key = key.key();
//!     let labels: Vec<_> = key.labels().map(|l| (l.key(), l.value())).collect();
//!     key.name() == "rollout_requests_total"
//!         && labels == [("name", "iris"), ("color", "green"), ("version", "iris-v2")]
//! });
//! assert_eq!(served_by_green.map(|(.., value)| value), Some(DebugValue::Counter(1)));
//! # }
//! ```

#[cfg(feature = "metrics")]
pub(crate) mod handles;
mod labels;
mod name;
mod router;

pub use name::DEFAULT_NAME;
pub(crate) use name::{Name, Owner};
pub(crate) use router::{request, RequestTelemetry, RouterTelemetry};

#[cfg(test)]
mod tests {
    /// Without the features nothing is added to the request path: the
    /// router's future and the control state carry empty types.
    #[cfg(not(any(feature = "metrics", feature = "tracing")))]
    #[test]
    fn empty_without_the_features() {
        use super::router::{Entered, EnteredRequest};
        use super::*;
        use std::mem::size_of;
        assert_eq!(size_of::<RouterTelemetry>(), 0);
        assert_eq!(size_of::<EnteredRequest>(), 0);
        assert_eq!(size_of::<RequestTelemetry>(), 0);
        assert_eq!(size_of::<Entered<'_>>(), 0);
        assert!(RouterTelemetry::new(&Name::default()).is_none());
    }
}
