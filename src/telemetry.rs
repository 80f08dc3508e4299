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
//! [`ConfigError::InvalidName`]. Names are
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
//! | `rollout_requests_total` | counter | `name`, `color` | requests admitted by the router, per color that serves them (mirrored copies not included) |
//! | `rollout_responses_total` | counter | `name`, `color`, `class` | responses per color when their head is ready; `class` is `1xx`, `2xx`, `3xx`, `4xx`, `5xx`, `other` (a status above 599) or `error` (the inner service failed) |
//! | `rollout_transitions_total` | counter | `name`, `kind` | control calls: `kind` is `promote`, `rollback`, `split` or `mirror` |
//! | `rollout_active` | gauge | `name`, `color` | 1 for the active color, 0 for the standby |
//! | `rollout_split_ratio` | gauge | `name` | the fraction of requests sent to the standby |
//! | `rollout_mirror_ratio` | gauge | `name` | the fraction of the active color's requests copied to the standby |
//! | `rollout_generation` | gauge | `name` | the generation: rises by one with every control call |
//! | `rollout_mirror_sampled_total` | counter | `name`, `layer` | requests chosen for a copy |
//! | `rollout_mirror_copies_total` | counter | `name`, `layer`, `outcome`, `reason` | how each chosen copy ended, exactly once: `outcome` is `completed`, `error`, `timeout`, `panic`, `dropped` or `skipped`; only `dropped` and `skipped` carry a `reason`: `saturated`, `over_budget`, `shadow_slow`, `primary_early` (dropped) or `no_executor` (skipped) |
//! | `rollout_mirror_shadow_duration_seconds` | histogram | `name`, `layer` | shadow latency, from the copy's start to the end of its response body, for completed copies and errors |
//! | `rollout_compare_total` | counter | `name`, `layer`, `outcome` | how each sampled comparison ended: `matched`, `mismatched`, `shadow_error`, `shadow_timeout`, `skipped_over_cap`, `skipped_primary_failed`, `skipped_not_started`, `skipped_dropped` or `comparator_panic` |
//! | `rollout_compare_duration_seconds` | histogram | `name`, `layer`, `side` | latency of compared requests, `side` `primary` or `shadow` |
//! | `rollout_compare_field_mismatches_total` | counter | `name`, `layer`, `field` | differences per field (a JSON pointer, or `status`, `body`, …); at most 32 distinct fields per comparator, the rest counted under `field="(other)"` |
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
//! | span `rollout.request` | INFO | `tower_rollout::router` | `name`, `color` (the color that serves the request) |
//! | span `rollout.mirror` | INFO | `tower_rollout::mirror` | `name`, `layer` |
//! | event `rollout transition` | INFO | `tower_rollout::router` | `name`, `kind`, `from`, `to`, `split`, `mirror`, `generation` |
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
//!         // Inside the `rollout.request` span, whose `color` field is "green".
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
//!     BlueGreenRouter::builder().name("iris").build(v1, v2).unwrap()
//! });
//! let _subscriber = tracing::subscriber::set_default(tracing_subscriber::registry());
//!
//! handle.promote();
//! let req = Request::get("/predict").body(axum::body::Body::empty()).unwrap();
//! assert_eq!(router.oneshot(req).await.unwrap().status(), 200);
//!
//! let served_by_green = snapshotter.snapshot().into_vec().into_iter().find(|(key, ..)| {
//!     let key = key.key();
//!     let labels: Vec<_> = key.labels().map(|l| (l.key(), l.value())).collect();
//!     key.name() == "rollout_requests_total"
//!         && labels == [("name", "iris"), ("color", "green")]
//! });
//! assert_eq!(served_by_green.map(|(.., value)| value), Some(DebugValue::Counter(1)));
//! # }
//! ```

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use http::StatusCode;

use crate::control::Transition;
use crate::error::ConfigError;
use crate::mirror::{CopyOutcome, Engine};
use crate::shadow::{CompareOutcome, FieldDiff, Judge};
use crate::Color;

/// The name of a router or layer that was given none.
pub const DEFAULT_NAME: &str = "default";

/// The longest name accepted, in bytes.
const MAX_NAME: usize = 64;

/// A validated name for a router or layer.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Name(Arc<str>);

impl Name {
    pub(crate) fn new(name: impl Into<String>) -> Result<Name, ConfigError> {
        let name = name.into();
        let allowed =
            |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b':' | b'/');
        if name.is_empty() || name.len() > MAX_NAME || !name.bytes().all(allowed) {
            return Err(ConfigError::InvalidName { name });
        }
        Ok(Name(name.into()))
    }
}

impl Default for Name {
    fn default() -> Self {
        Name(Arc::from(DEFAULT_NAME))
    }
}

impl fmt::Debug for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

/// Which kind of layer owns a mirror engine or a comparator: the `layer` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(not(any(feature = "metrics", feature = "tracing")), allow(dead_code))]
pub(crate) enum Owner {
    Router,
    Mirror,
    Shadow,
}

impl Owner {
    #[cfg(any(feature = "metrics", feature = "tracing"))]
    fn as_str(self) -> &'static str {
        match self {
            Owner::Router => "router",
            Owner::Mirror => "mirror",
            Owner::Shadow => "shadow",
        }
    }
}

// === labels ===

#[cfg(any(feature = "metrics", feature = "tracing"))]
fn kind_label(kind: crate::control::TransitionKind) -> (usize, &'static str) {
    use crate::control::TransitionKind;
    match kind {
        TransitionKind::Promote => (0, "promote"),
        TransitionKind::Rollback => (1, "rollback"),
        TransitionKind::Split => (2, "split"),
        TransitionKind::Mirror => (3, "mirror"),
    }
}

#[cfg(feature = "metrics")]
const KINDS: [&str; 4] = ["promote", "rollback", "split", "mirror"];

#[cfg(feature = "metrics")]
const CLASSES: [&str; 7] = ["1xx", "2xx", "3xx", "4xx", "5xx", "other", "error"];

/// The index into [`CLASSES`] of a response's status; `None` is an error.
#[cfg(feature = "metrics")]
fn class(status: Option<StatusCode>) -> usize {
    match status.map(|s| s.as_u16() / 100) {
        Some(n @ 1..=5) => usize::from(n) - 1,
        Some(_) => 5,
        None => 6,
    }
}

#[cfg(feature = "metrics")]
const COPY_OUTCOMES: [CopyOutcome; 9] = [
    CopyOutcome::Saturated,
    CopyOutcome::OverBudget,
    CopyOutcome::ShadowSlow,
    CopyOutcome::PrimaryEarly,
    CopyOutcome::NoExecutor,
    CopyOutcome::Completed,
    CopyOutcome::Error,
    CopyOutcome::Timeout,
    CopyOutcome::Panic,
];

/// The `outcome` and `reason` labels of a copy's outcome, and its index.
#[cfg(any(feature = "metrics", feature = "tracing"))]
fn copy_labels(o: CopyOutcome) -> (usize, &'static str, Option<&'static str>) {
    match o {
        CopyOutcome::Saturated => (0, "dropped", Some("saturated")),
        CopyOutcome::OverBudget => (1, "dropped", Some("over_budget")),
        CopyOutcome::ShadowSlow => (2, "dropped", Some("shadow_slow")),
        CopyOutcome::PrimaryEarly => (3, "dropped", Some("primary_early")),
        CopyOutcome::NoExecutor => (4, "skipped", Some("no_executor")),
        CopyOutcome::Completed => (5, "completed", None),
        CopyOutcome::Error => (6, "error", None),
        CopyOutcome::Timeout => (7, "timeout", None),
        CopyOutcome::Panic => (8, "panic", None),
    }
}

#[cfg(feature = "metrics")]
const COMPARE_OUTCOMES: [CompareOutcome; 9] = [
    CompareOutcome::Match,
    CompareOutcome::Mismatch,
    CompareOutcome::ShadowError,
    CompareOutcome::ShadowTimeout,
    CompareOutcome::SkippedOverCap,
    CompareOutcome::SkippedPrimaryFailed,
    CompareOutcome::SkippedNotStarted,
    CompareOutcome::SkippedDropped,
    CompareOutcome::ComparatorPanic,
];

/// The `outcome` label of a comparison's outcome, and its index.
#[cfg(feature = "metrics")]
fn compare_label(o: CompareOutcome) -> (usize, &'static str) {
    match o {
        CompareOutcome::Match => (0, "matched"),
        CompareOutcome::Mismatch => (1, "mismatched"),
        CompareOutcome::ShadowError => (2, "shadow_error"),
        CompareOutcome::ShadowTimeout => (3, "shadow_timeout"),
        CompareOutcome::SkippedOverCap => (4, "skipped_over_cap"),
        CompareOutcome::SkippedPrimaryFailed => (5, "skipped_primary_failed"),
        CompareOutcome::SkippedNotStarted => (6, "skipped_not_started"),
        CompareOutcome::SkippedDropped => (7, "skipped_dropped"),
        CompareOutcome::ComparatorPanic => (8, "comparator_panic"),
    }
}

// === RouterTelemetry ===

/// What a router emits; lives in its control state.
pub(crate) struct RouterTelemetry {
    #[cfg(feature = "tracing")]
    name: Arc<str>,
    #[cfg(feature = "metrics")]
    metrics: Arc<m::Router>,
}

impl RouterTelemetry {
    /// Registers the router's metrics, and names its mirror engine and
    /// comparator (if any) after it.
    pub(crate) fn new(name: &Name, mirror: Option<&Engine>, judge: Option<&Judge>) -> Self {
        #[cfg(any(feature = "metrics", feature = "tracing"))]
        {
            if let Some(engine) = mirror {
                engine.stats.telemetry.attach(name, Owner::Router);
            }
            if let Some(judge) = judge {
                judge.report.telemetry.attach(name, Owner::Router);
            }
            RouterTelemetry {
                #[cfg(feature = "tracing")]
                name: name.0.clone(),
                #[cfg(feature = "metrics")]
                metrics: Arc::new(m::Router::new(&name.0)),
            }
        }
        #[cfg(not(any(feature = "metrics", feature = "tracing")))]
        {
            let _ = (name, mirror, judge);
            RouterTelemetry {}
        }
    }

    /// Counts a request admitted to `color` and makes its span, entered
    /// until the router's response future is made (so the inner service's
    /// `call` runs inside it).
    #[inline]
    pub(crate) fn admit(&self, color: Color) -> EnteredRequest {
        #[cfg(feature = "metrics")]
        self.metrics.requests[color.index()].increment(1);
        #[cfg(not(feature = "metrics"))]
        let _ = color;
        EnteredRequest {
            #[cfg(feature = "tracing")]
            span: tracing::info_span!(
                target: "tower_rollout::router",
                "rollout.request",
                name = &*self.name,
                color = color.as_str(),
            )
            .entered(),
            #[cfg(feature = "metrics")]
            responses: Some((self.metrics.clone(), color)),
        }
    }

    /// Called under the state lock right after each control call, so the
    /// gauges end at the last state.
    pub(crate) fn transition(&self, t: &Transition, from: Color) {
        #[cfg(feature = "metrics")]
        self.metrics.transition(t);
        #[cfg(feature = "tracing")]
        tracing::info!(
            target: "tower_rollout::router",
            name = &*self.name,
            kind = kind_label(t.kind).1,
            from = from.as_str(),
            to = t.active.as_str(),
            split = t.split,
            mirror = t.mirror,
            generation = t.generation,
            "rollout transition"
        );
        #[cfg(not(any(feature = "metrics", feature = "tracing")))]
        let _ = (t, from);
        #[cfg(all(feature = "metrics", not(feature = "tracing")))]
        let _ = from;
    }
}

impl fmt::Debug for RouterTelemetry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RouterTelemetry").finish_non_exhaustive()
    }
}

/// A routed request's span (entered) and response counter, between the
/// router's admission and its response future.
pub(crate) struct EnteredRequest {
    #[cfg(feature = "tracing")]
    span: tracing::span::EnteredSpan,
    #[cfg(feature = "metrics")]
    responses: Option<(Arc<m::Router>, Color)>,
}

impl EnteredRequest {
    /// Leaves the span; the response future enters it again at each poll.
    #[inline]
    pub(crate) fn exit(self) -> RequestTelemetry {
        RequestTelemetry {
            #[cfg(feature = "tracing")]
            span: self.span.exit(),
            #[cfg(feature = "metrics")]
            responses: self.responses,
        }
    }
}

/// A routed request's span and response counter, in its response future.
pub(crate) struct RequestTelemetry {
    #[cfg(feature = "tracing")]
    span: tracing::Span,
    #[cfg(feature = "metrics")]
    responses: Option<(Arc<m::Router>, Color)>,
}

impl RequestTelemetry {
    /// Enters the request's span until the guard is dropped.
    #[inline]
    pub(crate) fn enter(&self) -> Entered<'_> {
        Entered {
            #[cfg(feature = "tracing")]
            _guard: self.span.enter(),
            _span: std::marker::PhantomData,
        }
    }

    /// Counts the response by class: its status, or `None` when the inner
    /// service failed.
    #[inline]
    pub(crate) fn respond(&self, status: Option<StatusCode>) {
        #[cfg(feature = "metrics")]
        if let Some((metrics, color)) = &self.responses {
            metrics.responses[color.index()][class(status)].increment(1);
        }
        #[cfg(not(feature = "metrics"))]
        let _ = status;
    }
}

impl fmt::Debug for RequestTelemetry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RequestTelemetry").finish_non_exhaustive()
    }
}

/// Returned by [`RequestTelemetry::enter`]: the span is left when dropped.
pub(crate) struct Entered<'a> {
    #[cfg(feature = "tracing")]
    _guard: tracing::span::Entered<'a>,
    _span: std::marker::PhantomData<&'a ()>,
}

// === MirrorTelemetry ===

/// What a mirror engine emits: set once by the layer or router that owns it.
#[derive(Default)]
pub(crate) struct MirrorTelemetry {
    #[cfg(any(feature = "metrics", feature = "tracing"))]
    inner: std::sync::OnceLock<MirrorInner>,
}

#[cfg(any(feature = "metrics", feature = "tracing"))]
struct MirrorInner {
    #[cfg(feature = "tracing")]
    name: Arc<str>,
    #[cfg(feature = "tracing")]
    owner: Owner,
    #[cfg(feature = "metrics")]
    metrics: m::Mirror,
}

/// A shadow task, inside its `rollout.mirror` span with the `tracing` feature.
#[cfg(feature = "tracing")]
pub(crate) type Instrumented<F> = tracing::instrument::Instrumented<F>;
/// A shadow task, inside its `rollout.mirror` span with the `tracing` feature.
#[cfg(not(feature = "tracing"))]
pub(crate) type Instrumented<F> = F;

impl MirrorTelemetry {
    /// Names the engine; the first call wins.
    pub(crate) fn attach(&self, name: &Name, owner: Owner) {
        #[cfg(any(feature = "metrics", feature = "tracing"))]
        self.inner.get_or_init(|| MirrorInner {
            #[cfg(feature = "tracing")]
            name: name.0.clone(),
            #[cfg(feature = "tracing")]
            owner,
            #[cfg(feature = "metrics")]
            metrics: m::Mirror::new(&name.0, owner),
        });
        #[cfg(not(any(feature = "metrics", feature = "tracing")))]
        let _ = (name, owner);
    }

    #[inline]
    pub(crate) fn sampled(&self) {
        #[cfg(feature = "metrics")]
        if let Some(inner) = self.inner.get() {
            inner.metrics.sampled.increment(1);
        }
    }

    /// Counts how a copy ended (called exactly once per copy).
    #[inline]
    pub(crate) fn outcome(&self, outcome: CopyOutcome) {
        #[cfg(any(feature = "metrics", feature = "tracing"))]
        if let Some(inner) = self.inner.get() {
            inner.outcome(outcome);
        }
        #[cfg(not(any(feature = "metrics", feature = "tracing")))]
        let _ = outcome;
    }

    pub(crate) fn latency(&self, d: Duration) {
        #[cfg(feature = "metrics")]
        if let Some(inner) = self.inner.get() {
            inner.metrics.latency.record(d.as_secs_f64());
        }
        #[cfg(not(feature = "metrics"))]
        let _ = d;
    }

    /// Runs a shadow task inside a `rollout.mirror` span.
    #[inline]
    pub(crate) fn instrument<F>(&self, task: F) -> Instrumented<F> {
        #[cfg(feature = "tracing")]
        {
            use tracing::Instrument;
            let span = match self.inner.get() {
                Some(inner) => tracing::info_span!(
                    target: "tower_rollout::mirror",
                    "rollout.mirror",
                    name = &*inner.name,
                    layer = inner.owner.as_str(),
                ),
                None => tracing::Span::none(),
            };
            task.instrument(span)
        }
        #[cfg(not(feature = "tracing"))]
        task
    }
}

#[cfg(any(feature = "metrics", feature = "tracing"))]
impl MirrorInner {
    #[cold]
    fn outcome_event(&self, outcome: &'static str, reason: Option<&'static str>) {
        #[cfg(feature = "tracing")]
        {
            let (name, layer) = (&*self.name, self.owner.as_str());
            let reason = reason.unwrap_or("");
            if outcome == "panic" {
                tracing::warn!(
                    target: "tower_rollout::mirror",
                    name, layer, outcome, reason,
                    "mirrored copy not completed"
                );
            } else {
                tracing::debug!(
                    target: "tower_rollout::mirror",
                    name, layer, outcome, reason,
                    "mirrored copy not completed"
                );
            }
        }
        #[cfg(not(feature = "tracing"))]
        let _ = (outcome, reason);
    }

    #[inline]
    fn outcome(&self, o: CopyOutcome) {
        let (index, outcome, reason) = copy_labels(o);
        #[cfg(feature = "metrics")]
        self.metrics.outcomes[index].increment(1);
        #[cfg(not(feature = "metrics"))]
        let _ = index;
        if o != CopyOutcome::Completed {
            self.outcome_event(outcome, reason);
        }
    }
}

impl fmt::Debug for MirrorTelemetry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MirrorTelemetry").finish_non_exhaustive()
    }
}

// === CompareTelemetry ===

/// What a comparator emits: set once by the layer or router that owns it.
#[derive(Default)]
pub(crate) struct CompareTelemetry {
    #[cfg(any(feature = "metrics", feature = "tracing"))]
    inner: std::sync::OnceLock<CompareInner>,
}

#[cfg(any(feature = "metrics", feature = "tracing"))]
struct CompareInner {
    #[cfg(feature = "tracing")]
    name: Arc<str>,
    #[cfg(feature = "tracing")]
    owner: Owner,
    #[cfg(feature = "metrics")]
    metrics: m::Compare,
}

/// Distinct fields named in a mismatch event.
#[cfg(feature = "tracing")]
const EVENT_FIELDS: usize = 8;

impl CompareTelemetry {
    /// Names the comparator; the first call wins.
    pub(crate) fn attach(&self, name: &Name, owner: Owner) {
        #[cfg(any(feature = "metrics", feature = "tracing"))]
        self.inner.get_or_init(|| CompareInner {
            #[cfg(feature = "tracing")]
            name: name.0.clone(),
            #[cfg(feature = "tracing")]
            owner,
            #[cfg(feature = "metrics")]
            metrics: m::Compare::new(&name.0, owner),
        });
        #[cfg(not(any(feature = "metrics", feature = "tracing")))]
        let _ = (name, owner);
    }

    /// Counts how a comparison ended (exactly once per comparison).
    pub(crate) fn outcome(&self, outcome: CompareOutcome) {
        #[cfg(any(feature = "metrics", feature = "tracing"))]
        if let Some(inner) = self.inner.get() {
            #[cfg(feature = "metrics")]
            inner.metrics.outcomes[compare_label(outcome).0].increment(1);
            #[cfg(feature = "tracing")]
            if outcome == CompareOutcome::ComparatorPanic {
                tracing::warn!(
                    target: "tower_rollout::shadow",
                    name = &*inner.name,
                    layer = inner.owner.as_str(),
                    "comparator panicked"
                );
            }
            #[cfg(not(feature = "tracing"))]
            let _ = inner;
        }
        #[cfg(not(any(feature = "metrics", feature = "tracing")))]
        let _ = outcome;
    }

    pub(crate) fn latencies(&self, primary: Duration, shadow: Duration) {
        #[cfg(feature = "metrics")]
        if let Some(inner) = self.inner.get() {
            inner.metrics.primary.record(primary.as_secs_f64());
            inner.metrics.shadow.record(shadow.as_secs_f64());
        }
        #[cfg(not(feature = "metrics"))]
        let _ = (primary, shadow);
    }

    /// Counts the fields of one mismatch (its outcome is counted apart).
    pub(crate) fn mismatch(&self, diffs: &[FieldDiff]) {
        #[cfg(any(feature = "metrics", feature = "tracing"))]
        if let Some(inner) = self.inner.get() {
            #[cfg(feature = "metrics")]
            inner.metrics.fields(diffs);
            #[cfg(feature = "tracing")]
            tracing::debug!(
                target: "tower_rollout::shadow",
                name = &*inner.name,
                layer = inner.owner.as_str(),
                diffs = diffs.len(),
                fields = %FieldList(diffs),
                "shadow mismatch"
            );
        }
        #[cfg(not(any(feature = "metrics", feature = "tracing")))]
        let _ = diffs;
    }
}

impl fmt::Debug for CompareTelemetry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CompareTelemetry").finish_non_exhaustive()
    }
}

/// The first [`EVENT_FIELDS`] distinct fields of a mismatch, comma separated,
/// then `…` if there are more.
#[cfg(feature = "tracing")]
struct FieldList<'a>(&'a [FieldDiff]);

#[cfg(feature = "tracing")]
impl fmt::Display for FieldList<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut shown: Vec<&str> = Vec::with_capacity(EVENT_FIELDS);
        for d in self.0 {
            if shown.contains(&d.path.as_str()) {
                continue;
            }
            if shown.len() == EVENT_FIELDS {
                return f.write_str(", …");
            }
            if !shown.is_empty() {
                f.write_str(", ")?;
            }
            f.write_str(&d.path)?;
            shown.push(&d.path);
        }
        Ok(())
    }
}

// === metric handles ===

#[cfg(feature = "metrics")]
mod m {
    use std::collections::HashMap;
    use std::sync::{Arc, Mutex};

    use metrics::{Counter, Gauge, Histogram, Label, Unit};

    use super::{Owner, CLASSES, COMPARE_OUTCOMES, COPY_OUTCOMES, KINDS};
    use crate::control::Transition;
    use crate::shadow::FieldDiff;
    use crate::Color;

    const REQUESTS: &str = "rollout_requests_total";
    const RESPONSES: &str = "rollout_responses_total";
    const TRANSITIONS: &str = "rollout_transitions_total";
    const ACTIVE: &str = "rollout_active";
    const SPLIT: &str = "rollout_split_ratio";
    const MIRROR: &str = "rollout_mirror_ratio";
    const GENERATION: &str = "rollout_generation";
    const SAMPLED: &str = "rollout_mirror_sampled_total";
    const COPIES: &str = "rollout_mirror_copies_total";
    const SHADOW_DURATION: &str = "rollout_mirror_shadow_duration_seconds";
    const COMPARED: &str = "rollout_compare_total";
    const COMPARE_DURATION: &str = "rollout_compare_duration_seconds";
    const FIELDS: &str = "rollout_compare_field_mismatches_total";

    /// Distinct `field` labels per comparator; the rest go to [`OTHER_FIELD`].
    const MAX_FIELDS: usize = 32;
    const OTHER_FIELD: &str = "(other)";

    /// `name` (shared, not copied) and then static labels.
    fn labels(name: &Arc<str>, more: &[(&'static str, &'static str)]) -> Vec<Label> {
        let mut v = Vec::with_capacity(1 + more.len());
        v.push(Label::new("name", name.clone()));
        v.extend(
            more.iter()
                .map(|&(k, val)| Label::from_static_parts(k, val)),
        );
        v
    }

    fn counter(key: &'static str, labels: Vec<Label>) -> Counter {
        metrics::counter!(key, labels)
    }

    fn gauge(key: &'static str, labels: Vec<Label>) -> Gauge {
        metrics::gauge!(key, labels)
    }

    fn histogram(key: &'static str, labels: Vec<Label>) -> Histogram {
        metrics::histogram!(key, labels)
    }

    pub(super) struct Router {
        pub(super) requests: [Counter; 2],
        pub(super) responses: [[Counter; CLASSES.len()]; 2],
        transitions: [Counter; KINDS.len()],
        active: [Gauge; 2],
        split: Gauge,
        mirror: Gauge,
        generation: Gauge,
    }

    impl Router {
        pub(super) fn new(name: &Arc<str>) -> Router {
            metrics::describe_counter!(
                REQUESTS,
                Unit::Count,
                "Requests admitted by the router, per serving color."
            );
            metrics::describe_counter!(
                RESPONSES,
                Unit::Count,
                "Responses per serving color and status class (error: the service failed)."
            );
            metrics::describe_counter!(
                TRANSITIONS,
                Unit::Count,
                "Control calls: promote, rollback, split, mirror."
            );
            metrics::describe_gauge!(ACTIVE, "1 for the active color, 0 for the standby.");
            metrics::describe_gauge!(SPLIT, "Fraction of requests sent to the standby (canary).");
            metrics::describe_gauge!(
                MIRROR,
                "Fraction of the active color's requests copied to the standby."
            );
            metrics::describe_gauge!(GENERATION, "Rises by one with every control call.");
            let color = |c: Color| ("color", c.as_str());
            let router = Router {
                requests: Color::ALL.map(|c| counter(REQUESTS, labels(name, &[color(c)]))),
                responses: Color::ALL.map(|c| {
                    CLASSES.map(|class| {
                        counter(RESPONSES, labels(name, &[color(c), ("class", class)]))
                    })
                }),
                transitions: KINDS.map(|k| counter(TRANSITIONS, labels(name, &[("kind", k)]))),
                active: Color::ALL.map(|c| gauge(ACTIVE, labels(name, &[color(c)]))),
                split: gauge(SPLIT, labels(name, &[])),
                mirror: gauge(MIRROR, labels(name, &[])),
                generation: gauge(GENERATION, labels(name, &[])),
            };
            // A new router: blue active, no split, no mirror, generation 0.
            router.state(Color::Blue, 0.0, 0.0, 0);
            router
        }

        fn state(&self, active: Color, split: f64, mirror: f64, generation: u64) {
            for c in Color::ALL {
                self.active[c.index()].set(if c == active { 1.0 } else { 0.0 });
            }
            self.split.set(split);
            self.mirror.set(mirror);
            self.generation.set(generation as f64);
        }

        pub(super) fn transition(&self, t: &Transition) {
            self.transitions[super::kind_label(t.kind).0].increment(1);
            self.state(t.active, t.split, t.mirror, t.generation);
        }
    }

    pub(super) struct Mirror {
        pub(super) sampled: Counter,
        pub(super) outcomes: [Counter; COPY_OUTCOMES.len()],
        pub(super) latency: Histogram,
    }

    impl Mirror {
        pub(super) fn new(name: &Arc<str>, owner: Owner) -> Mirror {
            metrics::describe_counter!(SAMPLED, Unit::Count, "Requests chosen for a copy.");
            metrics::describe_counter!(
                COPIES,
                Unit::Count,
                "How each chosen copy ended, by outcome and reason."
            );
            metrics::describe_histogram!(
                SHADOW_DURATION,
                Unit::Seconds,
                "Shadow latency, from the copy's start to the end of its response body."
            );
            let layer = ("layer", owner.as_str());
            Mirror {
                sampled: counter(SAMPLED, labels(name, &[layer])),
                outcomes: COPY_OUTCOMES.map(|o| {
                    let (_, outcome, reason) = super::copy_labels(o);
                    let mut l = labels(name, &[layer, ("outcome", outcome)]);
                    if let Some(reason) = reason {
                        l.push(Label::from_static_parts("reason", reason));
                    }
                    counter(COPIES, l)
                }),
                latency: histogram(SHADOW_DURATION, labels(name, &[layer])),
            }
        }
    }

    pub(super) struct Compare {
        name: Arc<str>,
        layer: &'static str,
        pub(super) outcomes: [Counter; COMPARE_OUTCOMES.len()],
        pub(super) primary: Histogram,
        pub(super) shadow: Histogram,
        /// Registered at the first mismatch of each field, at most
        /// `MAX_FIELDS` of them plus the `(other)` one.
        fields: Mutex<HashMap<String, Counter>>,
    }

    impl Compare {
        pub(super) fn new(name: &Arc<str>, owner: Owner) -> Compare {
            metrics::describe_counter!(COMPARED, Unit::Count, "How each sampled comparison ended.");
            metrics::describe_histogram!(
                COMPARE_DURATION,
                Unit::Seconds,
                "Latency of compared requests, primary and shadow side."
            );
            metrics::describe_counter!(
                FIELDS,
                Unit::Count,
                "Differences per field (at most 32 fields, the rest as \"(other)\")."
            );
            let layer = ("layer", owner.as_str());
            let side = |s| histogram(COMPARE_DURATION, labels(name, &[layer, ("side", s)]));
            Compare {
                name: name.clone(),
                layer: owner.as_str(),
                outcomes: COMPARE_OUTCOMES.map(|o| {
                    let outcome = super::compare_label(o).1;
                    counter(COMPARED, labels(name, &[layer, ("outcome", outcome)]))
                }),
                primary: side("primary"),
                shadow: side("shadow"),
                fields: Mutex::new(HashMap::new()),
            }
        }

        pub(super) fn fields(&self, diffs: &[FieldDiff]) {
            let mut fields = self.fields.lock().unwrap_or_else(|e| e.into_inner());
            for d in diffs {
                if let Some(c) = fields.get(&d.path) {
                    c.increment(1);
                    continue;
                }
                let key = if fields.len() < MAX_FIELDS {
                    d.path.clone()
                } else {
                    OTHER_FIELD.to_owned()
                };
                let name = &self.name;
                let layer = self.layer;
                fields
                    .entry(key)
                    .or_insert_with_key(|field| {
                        let mut l = labels(name, &[("layer", layer)]);
                        l.push(Label::new("field", field.clone()));
                        counter(FIELDS, l)
                    })
                    .increment(1);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked() {
        for good in ["default", "iris", "iris-v2.1", "fleet/resnet_50:prod", "a"] {
            assert!(Name::new(good).is_ok(), "{good}");
        }
        let long = "x".repeat(MAX_NAME + 1);
        for bad in [
            "",
            "has space",
            "ünï",
            "quote\"",
            "new\nline",
            long.as_str(),
        ] {
            assert_eq!(
                Name::new(bad),
                Err(ConfigError::InvalidName { name: bad.into() }),
                "{bad:?}"
            );
        }
        assert!(Name::new("x".repeat(MAX_NAME)).is_ok());
        assert_eq!(Name::default().0.as_ref(), DEFAULT_NAME);
    }

    /// Without the features nothing is added to the request path: the
    /// router's future and the control state carry empty types.
    #[cfg(not(any(feature = "metrics", feature = "tracing")))]
    #[test]
    fn empty_without_the_features() {
        use std::mem::size_of;
        assert_eq!(size_of::<RouterTelemetry>(), 0);
        assert_eq!(size_of::<EnteredRequest>(), 0);
        assert_eq!(size_of::<RequestTelemetry>(), 0);
        assert_eq!(size_of::<Entered<'_>>(), 0);
        assert_eq!(size_of::<MirrorTelemetry>(), 0);
        assert_eq!(size_of::<CompareTelemetry>(), 0);
    }

    #[cfg(feature = "metrics")]
    #[test]
    fn status_classes() {
        let class_of = |s: u16| CLASSES[class(Some(StatusCode::from_u16(s).unwrap()))];
        assert_eq!(class_of(100), "1xx");
        assert_eq!(class_of(200), "2xx");
        assert_eq!(class_of(308), "3xx");
        assert_eq!(class_of(404), "4xx");
        assert_eq!(class_of(599), "5xx");
        assert_eq!(class_of(600), "other");
        assert_eq!(CLASSES[class(None)], "error");
    }

    #[cfg(feature = "metrics")]
    #[test]
    fn every_copy_outcome_has_its_own_index() {
        for (i, o) in COPY_OUTCOMES.into_iter().enumerate() {
            assert_eq!(copy_labels(o).0, i);
        }
    }

    #[cfg(feature = "metrics")]
    #[test]
    fn every_compare_outcome_has_its_own_index() {
        for (i, o) in COMPARE_OUTCOMES.into_iter().enumerate() {
            assert_eq!(compare_label(o).0, i);
        }
    }

    #[cfg(feature = "tracing")]
    #[test]
    fn field_list_is_bounded_and_distinct() {
        let d = |p: &str| FieldDiff::new(p, 1, 2);
        let diffs: Vec<_> = ["/a", "/a", "/b"].map(d).into();
        assert_eq!(FieldList(&diffs).to_string(), "/a, /b");
        let many: Vec<_> = (0..20).map(|i| d(&format!("/f{i}"))).collect();
        assert_eq!(
            FieldList(&many).to_string(),
            "/f0, /f1, /f2, /f3, /f4, /f5, /f6, /f7, …"
        );
        assert_eq!(FieldList(&[]).to_string(), "");
    }
}
