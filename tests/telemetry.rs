//! What the `metrics` and `tracing` features emit: names, labels and values,
//! captured with a `metrics-util` debugging recorder and a `tracing-subscriber`
//! layer that keeps every event with its span chain.
//!
//! Each test installs both for its own thread only and runs a current-thread
//! runtime, so spawned shadow tasks run on that thread too and tests running
//! in parallel never see each other's metrics.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::{Request, Response, StatusCode};
use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};
use tower::util::BoxCloneSyncService;
use tower::{service_fn, Layer, ServiceExt};
use tower_rollout::mirror::{MirrorBody, MirrorLayer};
use tower_rollout::shadow::{
    Captured, Comparator, CompareSettings, FieldDiff, ShadowComparator, Verdict,
};
use tower_rollout::{BlueGreenRouter, ConfigError};
use tracing::field::{Field, Visit};
use tracing::{Level, Subscriber};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;

/// What the inner services of mirroring and comparing layers receive.
type Req = Request<MirrorBody<String>>;
type Svc<B = String> = BoxCloneSyncService<Request<B>, Response<String>, String>;

// === capture ===

/// One tracing event: its level, target, fields, and the spans it was in
/// (innermost first), each with its fields.
#[derive(Debug, Clone)]
struct Seen {
    level: Level,
    target: String,
    fields: BTreeMap<String, String>,
    spans: Vec<(String, BTreeMap<String, String>)>,
}

impl Seen {
    fn field(&self, name: &str) -> &str {
        self.fields
            .get(name)
            .map(String::as_str)
            .unwrap_or("<none>")
    }
}

#[derive(Default)]
struct Fields(BTreeMap<String, String>);

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().into(), value.into());
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.insert(field.name().into(), format!("{value:?}"));
    }
}

#[derive(Clone, Default)]
struct Events(Arc<Mutex<Vec<Seen>>>);

impl Events {
    fn all(&self) -> Vec<Seen> {
        self.0.lock().unwrap().clone()
    }

    fn with_message(&self, message: &str) -> Vec<Seen> {
        self.all()
            .into_iter()
            .filter(|e| e.field("message") == message)
            .collect()
    }
}

impl<S> tracing_subscriber::Layer<S> for Events
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(
        &self,
        attrs: &tracing::span::Attributes<'_>,
        id: &tracing::span::Id,
        ctx: Context<'_, S>,
    ) {
        let mut fields = Fields::default();
        attrs.record(&mut fields);
        ctx.span(id).unwrap().extensions_mut().insert(fields);
    }

    fn on_event(&self, event: &tracing::Event<'_>, ctx: Context<'_, S>) {
        let mut fields = Fields::default();
        event.record(&mut fields);
        let spans = ctx
            .event_scope(event)
            .map(|scope| {
                scope
                    .map(|span| {
                        let ext = span.extensions();
                        let fields = ext.get::<Fields>().map(|f| f.0.clone());
                        (span.name().to_owned(), fields.unwrap_or_default())
                    })
                    .collect()
            })
            .unwrap_or_default();
        self.0.lock().unwrap().push(Seen {
            level: *event.metadata().level(),
            target: event.metadata().target().to_owned(),
            fields: fields.0,
            spans,
        });
    }
}

/// Metrics read from the recorder, keyed `name{label=value,...}` with the
/// labels sorted. Each read consumes what it returns (counters restart from
/// zero, histograms are emptied), as the debugging recorder does.
struct Metrics(Snapshotter);

impl Metrics {
    fn read(&self) -> HashMap<String, DebugValue> {
        self.0
            .snapshot()
            .into_vec()
            .into_iter()
            .map(|(key, _, _, value)| {
                let key = key.key();
                let mut labels: Vec<String> = key
                    .labels()
                    .map(|l| format!("{}={}", l.key(), l.value()))
                    .collect();
                labels.sort();
                (format!("{}{{{}}}", key.name(), labels.join(",")), value)
            })
            .collect()
    }
}

fn counter(m: &HashMap<String, DebugValue>, key: &str) -> u64 {
    match m.get(key) {
        Some(DebugValue::Counter(n)) => *n,
        other => panic!("{key}: {other:?}\nall: {:#?}", sorted(m)),
    }
}

fn gauge(m: &HashMap<String, DebugValue>, key: &str) -> f64 {
    match m.get(key) {
        Some(DebugValue::Gauge(v)) => v.into_inner(),
        other => panic!("{key}: {other:?}\nall: {:#?}", sorted(m)),
    }
}

fn histogram(m: &HashMap<String, DebugValue>, key: &str) -> Vec<f64> {
    match m.get(key) {
        Some(DebugValue::Histogram(v)) => v.iter().map(|x| x.into_inner()).collect(),
        other => panic!("{key}: {other:?}\nall: {:#?}", sorted(m)),
    }
}

fn sorted(m: &HashMap<String, DebugValue>) -> Vec<(&String, &DebugValue)> {
    let mut v: Vec<_> = m.iter().collect();
    v.sort_by(|a, b| a.0.cmp(b.0));
    v
}

/// Runs `test` on a current-thread runtime (with paused time if asked) with
/// a debugging recorder and a capturing subscriber installed for this thread.
fn capture<F, Fut>(paused: bool, test: F)
where
    F: FnOnce(Metrics, Events) -> Fut,
    Fut: Future<Output = ()>,
{
    let recorder = DebuggingRecorder::new();
    let metrics = Metrics(recorder.snapshotter());
    let events = Events::default();
    let subscriber = tracing_subscriber::registry().with(events.clone());
    let _metrics = metrics::set_default_local_recorder(&recorder);
    let _tracing = tracing::subscriber::set_default(subscriber);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(paused)
        .build()
        .unwrap();
    rt.block_on(test(metrics, events));
}

// === services ===

/// A model that answers `status` with its color's name, counts what it
/// received, and emits an event from inside its handler.
fn model<B: Send + 'static>(color: &'static str, status: u16, seen: Arc<AtomicU64>) -> Svc<B> {
    BoxCloneSyncService::new(service_fn(move |_req: Request<B>| {
        let seen = seen.clone();
        async move {
            seen.fetch_add(1, Ordering::Relaxed);
            tracing::info!(served = color, "handled");
            let mut res = Response::new(color.to_owned());
            *res.status_mut() = StatusCode::from_u16(status).unwrap();
            Ok(res)
        }
    }))
}

fn failing() -> Svc {
    BoxCloneSyncService::new(service_fn(|_req: Request<String>| async {
        Err::<Response<String>, _>("model crashed".to_owned())
    }))
}

fn get(path: &str) -> Request<String> {
    Request::get(path).body(String::new()).unwrap()
}

/// Sends one request through a clone of `svc` and returns the status, or
/// `None` when the service failed; the response body is dropped.
async fn send<S, B>(svc: &S, req: Request<String>) -> Option<StatusCode>
where
    S: tower::Service<Request<String>, Response = Response<B>> + Clone,
{
    svc.clone().oneshot(req).await.ok().map(|r| r.status())
}

// === router ===

#[test]
fn requests_and_responses_are_counted_per_serving_color() {
    capture(false, |metrics, _| async move {
        let (blue_seen, green_seen) = (Arc::default(), Arc::default());
        let (router, handle) = BlueGreenRouter::builder()
            .name("split")
            .build(
                model("blue", 200, Arc::clone(&blue_seen)),
                model("green", 503, Arc::clone(&green_seen)),
            )
            .unwrap();
        handle.set_split(0.3).unwrap();
        for _ in 0..200 {
            send(&router, get("/predict")).await;
        }
        let blue = blue_seen.load(Ordering::Relaxed);
        let green = green_seen.load(Ordering::Relaxed);
        assert_eq!(blue + green, 200);
        assert!(blue > 0 && green > 0, "blue {blue}, green {green}");

        let m = metrics.read();
        assert_eq!(
            counter(
                &m,
                "rollout_requests_total{color=blue,name=split,version=blue}"
            ),
            blue
        );
        assert_eq!(
            counter(
                &m,
                "rollout_requests_total{color=green,name=split,version=green}"
            ),
            green
        );
        assert_eq!(
            counter(
                &m,
                "rollout_responses_total{class=2xx,color=blue,name=split,version=blue}"
            ),
            blue
        );
        assert_eq!(
            counter(
                &m,
                "rollout_responses_total{class=5xx,color=green,name=split,version=green}"
            ),
            green
        );
        // Every other class is registered, at zero.
        for color in ["blue", "green"] {
            for class in ["1xx", "2xx", "3xx", "4xx", "5xx", "other", "error"] {
                let key =
                    format!("rollout_responses_total{{class={class},color={color},name=split,version={color}}}");
                let expected = match (color, class) {
                    ("blue", "2xx") => blue,
                    ("green", "5xx") => green,
                    _ => 0,
                };
                assert_eq!(counter(&m, &key), expected, "{key}");
            }
        }
    });
}

#[test]
fn a_failing_inner_service_counts_as_error() {
    capture(false, |metrics, _| async move {
        let (router, handle) = BlueGreenRouter::builder()
            .name("failing")
            .build(model("blue", 404, Arc::default()), failing())
            .unwrap();
        assert_eq!(send(&router, get("/")).await, Some(StatusCode::NOT_FOUND));
        handle.promote().unwrap();
        assert_eq!(send(&router, get("/")).await, None);
        assert_eq!(send(&router, get("/")).await, None);

        let m = metrics.read();
        let key = |color, class| {
            format!("rollout_responses_total{{class={class},color={color},name=failing,version={color}}}")
        };
        assert_eq!(counter(&m, &key("blue", "4xx")), 1);
        assert_eq!(counter(&m, &key("green", "error")), 2);
        assert_eq!(
            counter(
                &m,
                "rollout_requests_total{color=green,name=failing,version=green}"
            ),
            2
        );
    });
}

#[test]
fn routers_in_one_process_are_told_apart_by_name() {
    capture(false, |metrics, _| async move {
        let (iris, _) = BlueGreenRouter::builder()
            .name("iris")
            .build(
                model("blue", 200, Arc::default()),
                model("green", 200, Arc::default()),
            )
            .unwrap();
        let (resnet, resnet_handle) = BlueGreenRouter::builder()
            .name("fleet/resnet-50")
            .build(
                model("blue", 200, Arc::default()),
                model("green", 200, Arc::default()),
            )
            .unwrap();
        // An unnamed router is "default".
        let (plain, _) = BlueGreenRouter::new(
            model("blue", 200, Arc::default()),
            model("green", 200, Arc::default()),
        );
        resnet_handle.promote().unwrap();
        for _ in 0..3 {
            send(&iris, get("/")).await;
        }
        for _ in 0..5 {
            send(&resnet, get("/")).await;
        }
        send(&plain, get("/")).await;

        let m = metrics.read();
        assert_eq!(
            counter(
                &m,
                "rollout_requests_total{color=blue,name=iris,version=blue}"
            ),
            3
        );
        assert_eq!(
            counter(
                &m,
                "rollout_requests_total{color=green,name=iris,version=green}"
            ),
            0
        );
        assert_eq!(
            counter(
                &m,
                "rollout_requests_total{color=green,name=fleet/resnet-50,version=green}"
            ),
            5
        );
        assert_eq!(
            counter(
                &m,
                "rollout_requests_total{color=blue,name=fleet/resnet-50,version=blue}"
            ),
            0
        );
        assert_eq!(
            counter(
                &m,
                "rollout_requests_total{color=blue,name=default,version=blue}"
            ),
            1
        );
        assert_eq!(
            counter(&m, "rollout_transitions_total{kind=promote,name=iris}"),
            0
        );
        assert_eq!(
            counter(
                &m,
                "rollout_transitions_total{kind=promote,name=fleet/resnet-50}"
            ),
            1
        );
    });
}

#[test]
fn transitions_are_counted_and_gauges_follow_the_state() {
    capture(false, |metrics, events| async move {
        let (_router, handle) = BlueGreenRouter::builder()
            .name("steer")
            .mirror(MirrorLayer::settings())
            .build(
                model::<Req>("blue", 200, Arc::default()),
                model::<Req>("green", 200, Arc::default()),
            )
            .unwrap();
        // Gauges of a new router: blue active, nothing split or mirrored.
        let state = |m: &HashMap<String, DebugValue>| {
            (
                gauge(m, "rollout_active{color=blue,name=steer}"),
                gauge(m, "rollout_active{color=green,name=steer}"),
                gauge(m, "rollout_split_ratio{name=steer}"),
                gauge(m, "rollout_mirror_ratio{name=steer}"),
                gauge(m, "rollout_generation{name=steer}"),
            )
        };
        let transitions = |m: &HashMap<String, DebugValue>| {
            ["promote", "rollback", "split", "mirror"].map(|k| {
                counter(
                    m,
                    &format!("rollout_transitions_total{{kind={k},name=steer}}"),
                )
            })
        };
        let m = metrics.read();
        assert_eq!(state(&m), (1.0, 0.0, 0.0, 0.0, 0.0));
        assert_eq!(transitions(&m), [0, 0, 0, 0]);

        handle.set_split(0.25).unwrap();
        let m = metrics.read();
        assert_eq!(state(&m), (1.0, 0.0, 0.25, 0.0, 1.0));
        assert_eq!(transitions(&m), [0, 0, 1, 0]);

        handle.promote().unwrap();
        let m = metrics.read();
        assert_eq!(state(&m), (0.0, 1.0, 0.0, 0.0, 2.0));
        assert_eq!(transitions(&m), [1, 0, 0, 0]);

        handle.mirror_standby(0.5).unwrap();
        handle.rollback().unwrap();
        let m = metrics.read();
        assert_eq!(state(&m), (1.0, 0.0, 0.0, 0.5, 4.0));
        assert_eq!(transitions(&m), [0, 1, 0, 1]);

        // A rejected call changes nothing and is not a transition.
        assert!(handle.set_split(2.0).is_err());
        assert_eq!(transitions(&metrics.read()), [0, 0, 0, 0]);

        let seen: Vec<_> = events
            .with_message("rollout transition")
            .into_iter()
            .map(|e| {
                assert_eq!(e.level, Level::INFO);
                assert_eq!(e.target, "tower_rollout::router");
                assert_eq!(e.field("name"), "steer");
                ["kind", "from", "to", "split", "mirror", "generation"]
                    .map(|f| e.field(f).to_owned())
            })
            .collect();
        let want = [
            ["split", "blue", "blue", "0.25", "0.0", "1"],
            ["promote", "blue", "green", "0.0", "0.0", "2"],
            ["mirror", "green", "green", "0.0", "0.5", "3"],
            ["rollback", "green", "blue", "0.0", "0.5", "4"],
        ]
        .map(|row| row.map(String::from));
        assert_eq!(seen, want);
    });
}

#[test]
fn spans_carry_the_color_that_served() {
    capture(false, |_, events| async move {
        let (router, handle) = BlueGreenRouter::builder()
            .name("spans")
            .sticky_header("x-user")
            .build(
                model("blue", 200, Arc::default()),
                model("green", 200, Arc::default()),
            )
            .unwrap();
        handle.set_split(0.5).unwrap();
        // Half the requests carry a sticky key, so `call` often overrides
        // the color picked in `poll_ready` and serves a clone of the other
        // color's service.
        for i in 0..60 {
            let mut req = get("/");
            if i % 2 == 0 {
                req.headers_mut()
                    .insert("x-user", format!("user-{i}").parse().unwrap());
            }
            if i == 40 {
                handle.promote().unwrap();
            }
            send(&router, req).await;
        }
        let handled = events.with_message("handled");
        assert_eq!(handled.len(), 60);
        let mut served = HashMap::<String, usize>::new();
        for e in &handled {
            let color = e.field("served");
            let (span, fields) = e.spans.first().expect("inside a span");
            assert_eq!(span, "rollout.request");
            assert_eq!(fields["color"], color, "{e:?}");
            assert_eq!(fields["name"], "spans");
            assert_eq!(e.spans.len(), 1);
            *served.entry(color.to_owned()).or_default() += 1;
        }
        assert!(served.len() == 2, "both colors served: {served:?}");
    });
}

#[test]
fn a_deploy_labels_the_new_versions_series_and_marks_the_old_one_replaced() {
    capture(false, |metrics, events| async move {
        let (router, handle) = BlueGreenRouter::builder()
            .name("deploys")
            .versions("v1", "v2")
            .build(
                model::<String>("v1", 200, Arc::default()),
                model::<String>("v2", 200, Arc::default()),
            )
            .unwrap();
        let info = |m: &HashMap<String, DebugValue>, color: &str, version: &str| {
            gauge(
                m,
                &format!("rollout_version{{color={color},name=deploys,version={version}}}"),
            )
        };
        let m = metrics.read();
        assert_eq!(
            (info(&m, "blue", "v1"), info(&m, "green", "v2")),
            (1.0, 1.0)
        );

        // v3 replaces v2 in the standby (green), then goes live.
        let deployed = router
            .deployer::<String>()
            .deploy("v3", model("v3", 200, Arc::default()))
            .await
            .unwrap();
        assert_eq!(deployed.retired().await, "v2");
        handle.promote_to_version("v3").unwrap();
        for _ in 0..3 {
            send(&router, get("/")).await;
        }

        let m = metrics.read();
        assert_eq!(info(&m, "green", "v2"), 0.0, "replaced");
        assert_eq!(info(&m, "green", "v3"), 1.0);
        assert_eq!(
            counter(&m, "rollout_transitions_total{kind=deploy,name=deploys}"),
            1
        );
        assert_eq!(
            counter(
                &m,
                "rollout_requests_total{color=green,name=deploys,version=v3}"
            ),
            3
        );
        assert_eq!(
            counter(
                &m,
                "rollout_responses_total{class=2xx,color=green,name=deploys,version=v3}"
            ),
            3
        );

        let seen: Vec<_> = events
            .with_message("rollout transition")
            .into_iter()
            .map(|e| {
                [
                    "kind",
                    "from",
                    "from_version",
                    "to",
                    "to_version",
                    "replaced",
                ]
                .map(|f| e.field(f).to_owned())
            })
            .collect();
        // A deploy leaves blue (v1) live and names the version that left.
        let want = [
            ["deploy", "blue", "v1", "blue", "v1", "v2"],
            ["promote", "blue", "v1", "green", "v3", "<none>"],
        ]
        .map(|row| row.map(String::from));
        assert_eq!(seen, want);
        for e in events.with_message("handled") {
            let (span, fields) = e.spans.first().expect("inside a span");
            assert_eq!(span, "rollout.request");
            assert_eq!(
                (fields["color"].as_str(), fields["version"].as_str()),
                ("green", "v3")
            );
        }
    });
}

// === mirror ===

#[test]
fn mirror_outcomes_are_counted_with_reasons() {
    capture(true, |metrics, events| async move {
        let shadow = BoxCloneSyncService::new(service_fn(|req: Req| async move {
            tracing::info!(path = req.uri().path(), "shadow handled");
            match req.uri().path() {
                "/fail" => Err("shadow failed".to_owned()),
                "/hang" => std::future::pending().await,
                _ => Ok(Response::new(String::from("ok"))),
            }
        }));
        let (layer, mirror) = MirrorLayer::builder(shadow)
            .name("copies")
            .max_in_flight(2)
            .timeout(Duration::from_secs(1))
            .build()
            .unwrap();
        let app = layer.layer(model("primary", 200, Arc::default()));
        let settle = || async {
            while mirror.stats().in_flight > 0 {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        };
        // Two hanging copies fill `max_in_flight`; the third is dropped.
        for path in ["/hang", "/hang", "/ok"] {
            assert_eq!(send(&app, get(path)).await, Some(StatusCode::OK));
        }
        settle().await; // the hanging ones time out after 1 s (paused clock)
        for path in ["/fail", "/ok"] {
            assert_eq!(send(&app, get(path)).await, Some(StatusCode::OK));
            settle().await;
        }
        let stats = mirror.stats();
        assert_eq!(
            (
                stats.sampled,
                stats.timeouts,
                stats.dropped_saturated,
                stats.errors,
                stats.completed
            ),
            (5, 2, 1, 1, 1)
        );

        let m = metrics.read();
        let copies = |labels: &str| {
            counter(
                &m,
                &format!("rollout_mirror_copies_total{{layer=mirror,name=copies,{labels}}}"),
            )
        };
        assert_eq!(
            counter(&m, "rollout_mirror_sampled_total{layer=mirror,name=copies}"),
            5
        );
        assert_eq!(copies("outcome=timeout"), 2);
        assert_eq!(copies("outcome=dropped,reason=saturated"), 1);
        assert_eq!(copies("outcome=error"), 1);
        assert_eq!(copies("outcome=completed"), 1);
        assert_eq!(copies("outcome=panic"), 0);
        for reason in ["over_budget", "shadow_slow", "primary_early"] {
            assert_eq!(copies(&format!("outcome=dropped,reason={reason}")), 0);
        }
        assert_eq!(copies("outcome=skipped,reason=no_executor"), 0);
        // Latency of the completed copy and the error, in seconds.
        let latency = histogram(
            &m,
            "rollout_mirror_shadow_duration_seconds{layer=mirror,name=copies}",
        );
        assert_eq!(latency.len(), 2, "{latency:?}");
        assert!(latency.iter().all(|s| s.is_finite() && *s >= 0.0));

        let mut outcomes: Vec<_> = events
            .with_message("mirrored copy not completed")
            .into_iter()
            .map(|e| {
                assert_eq!(e.level, Level::DEBUG);
                assert_eq!(e.target, "tower_rollout::mirror");
                assert_eq!((e.field("name"), e.field("layer")), ("copies", "mirror"));
                format!("{}/{}", e.field("outcome"), e.field("reason"))
            })
            .collect();
        outcomes.sort();
        assert_eq!(
            outcomes,
            ["dropped/saturated", "error/", "timeout/", "timeout/"]
        );

        // The shadow's handler ran inside `rollout.mirror`, never inside the
        // primary's request.
        let shadow_events = events.with_message("shadow handled");
        assert_eq!(shadow_events.len(), 4, "the dropped copy never ran");
        for e in shadow_events {
            let (span, fields) = e.spans.first().expect("inside a span");
            assert_eq!(span, "rollout.mirror");
            assert_eq!(
                (fields["name"].as_str(), fields["layer"].as_str()),
                ("copies", "mirror")
            );
        }
    });
}

#[test]
fn a_panicking_shadow_is_counted_and_warned() {
    capture(false, |metrics, events| async move {
        let shadow = BoxCloneSyncService::new(service_fn(|_req: Req| async move {
            if true {
                panic!("shadow bug");
            }
            Ok::<_, String>(Response::new(String::new()))
        }));
        let (layer, mirror) = MirrorLayer::builder(shadow).name("panics").build().unwrap();
        let app = layer.layer(model("primary", 200, Arc::default()));
        assert_eq!(send(&app, get("/")).await, Some(StatusCode::OK));
        while mirror.stats().panics == 0 {
            tokio::task::yield_now().await;
        }
        let m = metrics.read();
        assert_eq!(
            counter(
                &m,
                "rollout_mirror_copies_total{layer=mirror,name=panics,outcome=panic}"
            ),
            1
        );
        let warned = events.with_message("mirrored copy not completed");
        assert_eq!(warned.len(), 1);
        assert_eq!(warned[0].level, Level::WARN);
        assert_eq!(warned[0].field("outcome"), "panic");
    });
}

// === comparisons ===

/// Equal bodies match; a shadow answering `many` differs in 40 fields; any
/// other body differs at `body`.
fn comparator() -> Comparator {
    Comparator::new(|p: &Captured, s: &Captured| {
        if p.body == s.body {
            Verdict::Match
        } else if s.body == "many" {
            Verdict::Mismatch(
                (0..40)
                    .map(|i| FieldDiff::new(format!("/f{i}"), 1, 2))
                    .collect(),
            )
        } else {
            Verdict::Mismatch(vec![FieldDiff::new("body", "cat", "tiger")])
        }
    })
}

#[test]
fn comparisons_are_counted_by_outcome_and_field() {
    capture(false, |metrics, events| async move {
        let primary = BoxCloneSyncService::new(service_fn(|_req: Req| async {
            Ok::<_, String>(Response::new(String::from("cat")))
        }));
        let shadow = BoxCloneSyncService::new(service_fn(|req: Req| async move {
            let body = match req.uri().path() {
                "/same" => "cat",
                "/many" => "many",
                _ => "tiger",
            };
            Ok::<_, String>(Response::new(body.to_owned()))
        }));
        let (layer, judge) = ShadowComparator::builder(shadow, comparator())
            .name("judge")
            .build()
            .unwrap();
        let app = layer.layer(primary);
        for (i, path) in ["/same", "/other", "/many"].into_iter().enumerate() {
            let res = app.clone().oneshot(get(path)).await.unwrap();
            // The comparison waits for the primary's whole body.
            let body = http_body_util::BodyExt::collect(res.into_body())
                .await
                .unwrap();
            assert_eq!(body.to_bytes(), "cat");
            while judge.report().total() < i as u64 + 1 {
                tokio::task::yield_now().await;
            }
        }
        let report = judge.report();
        assert_eq!((report.matched, report.mismatched), (1, 2));

        let m = metrics.read();
        let compared = |outcome: &str| {
            counter(
                &m,
                &format!("rollout_compare_total{{layer=shadow,name=judge,outcome={outcome}}}"),
            )
        };
        assert_eq!(compared("matched"), 1);
        assert_eq!(compared("mismatched"), 2);
        for other in [
            "shadow_error",
            "shadow_timeout",
            "skipped_over_cap",
            "skipped_primary_failed",
            "skipped_not_started",
            "skipped_dropped",
            "comparator_panic",
        ] {
            assert_eq!(compared(other), 0, "{other}");
        }
        for side in ["primary", "shadow"] {
            let key =
                format!("rollout_compare_duration_seconds{{layer=shadow,name=judge,side={side}}}");
            assert_eq!(histogram(&m, &key).len(), 3, "{key}");
        }
        // The copies behind the comparisons carry the comparator's name.
        assert_eq!(
            counter(
                &m,
                "rollout_mirror_copies_total{layer=shadow,name=judge,outcome=completed}"
            ),
            3
        );
        // Fields: `body`, then 31 of the 40 before the bound; the other 9 are
        // counted together.
        let fields: HashMap<&str, u64> = m
            .iter()
            .filter_map(|(k, v)| {
                let field = k
                    .strip_prefix("rollout_compare_field_mismatches_total{field=")?
                    .strip_suffix(",layer=shadow,name=judge}")?;
                match v {
                    DebugValue::Counter(n) => Some((field, *n)),
                    _ => None,
                }
            })
            .collect();
        assert_eq!(fields.len(), 33, "{fields:?}");
        assert_eq!(fields["body"], 1);
        assert_eq!(fields["/f0"], 1);
        assert_eq!(fields["/f30"], 1);
        assert!(!fields.contains_key("/f31"));
        assert_eq!(fields["(other)"], 9);

        let mismatches: Vec<_> = events
            .with_message("shadow mismatch")
            .into_iter()
            .map(|e| {
                assert_eq!(e.level, Level::DEBUG);
                assert_eq!(e.target, "tower_rollout::shadow");
                assert_eq!((e.field("name"), e.field("layer")), ("judge", "shadow"));
                (e.field("diffs").to_owned(), e.field("fields").to_owned())
            })
            .collect();
        assert_eq!(
            mismatches,
            [
                ("1".to_owned(), "body".to_owned()),
                (
                    "40".to_owned(),
                    "/f0, /f1, /f2, /f3, /f4, /f5, /f6, /f7, …".to_owned()
                ),
            ]
        );
    });
}

#[test]
fn the_routers_copies_and_comparisons_carry_its_name() {
    capture(false, |metrics, _| async move {
        let (blue_seen, green_seen) = (Arc::default(), Arc::default());
        let (router, handle) = BlueGreenRouter::builder()
            .name("canary")
            .compare(CompareSettings::new(Comparator::bytes()))
            .build(
                model("blue", 200, Arc::clone(&blue_seen)),
                model("green", 200, Arc::clone(&green_seen)),
            )
            .unwrap();
        handle.mirror_standby(1.0).unwrap();
        for i in 0..4u64 {
            let res = router.clone().oneshot(get("/")).await.unwrap();
            http_body_util::BodyExt::collect(res.into_body())
                .await
                .unwrap();
            while handle.shadow_report().total() < i + 1 {
                tokio::task::yield_now().await;
            }
        }
        assert_eq!(
            green_seen.load(Ordering::Relaxed),
            4,
            "every request copied"
        );
        let m = metrics.read();
        assert_eq!(
            counter(
                &m,
                "rollout_requests_total{color=blue,name=canary,version=blue}"
            ),
            4
        );
        assert_eq!(
            counter(
                &m,
                "rollout_requests_total{color=green,name=canary,version=green}"
            ),
            0,
            "copies are not requests"
        );
        assert_eq!(
            counter(&m, "rollout_mirror_sampled_total{layer=router,name=canary}"),
            4
        );
        assert_eq!(
            counter(
                &m,
                "rollout_mirror_copies_total{layer=router,name=canary,outcome=completed}"
            ),
            4
        );
        // blue and green answer with their own names: every comparison differs.
        assert_eq!(
            counter(
                &m,
                "rollout_compare_total{layer=router,name=canary,outcome=mismatched}"
            ),
            4
        );
        assert_eq!(
            counter(
                &m,
                "rollout_compare_field_mismatches_total{field=body,layer=router,name=canary}"
            ),
            4
        );
    });
}

// === names ===

#[test]
fn invalid_names_fail_at_construction() {
    let svc = || model::<Req>("blue", 200, Arc::default());
    let bad = "model name with spaces";
    let expected = ConfigError::InvalidName { name: bad.into() };
    assert_eq!(
        BlueGreenRouter::builder()
            .name(bad)
            .build(svc(), svc())
            .unwrap_err(),
        expected
    );
    assert_eq!(
        BlueGreenRouter::builder()
            .name("")
            .layer(svc())
            .unwrap_err(),
        ConfigError::InvalidName {
            name: String::new()
        }
    );
    assert_eq!(
        MirrorLayer::builder(svc()).name(bad).build().unwrap_err(),
        expected
    );
    assert_eq!(
        ShadowComparator::builder(svc(), Comparator::bytes())
            .name(bad)
            .build()
            .unwrap_err(),
        expected
    );
}

/// With drift measured, each statistic of each field is a gauge labelled
/// with the pair's versions, and its value is the report's.
#[test]
fn drift_is_a_gauge_per_field_and_statistic_of_the_pair() {
    use tower_rollout::drift::{DriftField, DriftSettings};
    capture(false, |metrics, _| async move {
        let answer = |labels: &'static [&'static str]| {
            let n = Arc::new(AtomicU64::new(0));
            BoxCloneSyncService::new(service_fn(move |_req: Req| {
                let i = n.fetch_add(1, Ordering::SeqCst) as usize;
                async move {
                    Ok::<_, String>(Response::new(format!(
                        r#"{{"label": "{}"}}"#,
                        labels[i % labels.len()]
                    )))
                }
            }))
        };
        let settings = DriftSettings::new([DriftField::categorical("/label").unwrap()]);
        let (router, handle) = BlueGreenRouter::builder()
            .name("iris")
            .versions("v1", "v2")
            .compare(CompareSettings::new(Comparator::bytes()).drift(settings))
            .build(answer(&["a", "a", "b"]), answer(&["a", "b", "b"]))
            .unwrap();
        handle.mirror_standby(1.0).unwrap();
        // One at a time, so that no copy is dropped by the mirror's bound.
        for i in 1..=100 {
            let res = router.clone().oneshot(get("/")).await.unwrap();
            http_body_util::BodyExt::collect(res.into_body())
                .await
                .unwrap();
            while handle.shadow_report().total() < i {
                tokio::task::yield_now().await;
            }
        }
        let report = handle.shadow_report();
        let d = &report.drift[0];
        assert_eq!((d.primary_n, d.shadow_n), (100, 100), "{d:?}");
        let m = metrics.read();
        let key = |stat: &str| {
            format!(
                "rollout_drift{{field=/label,layer=router,name=iris,primary_version=v1,shadow_version=v2,statistic={stat}}}"
            )
        };
        assert_eq!(gauge(&m, &key("psi")), d.psi.unwrap());
        assert_eq!(gauge(&m, &key("jensen_shannon")), d.jensen_shannon.unwrap());
        assert_eq!(
            gauge(&m, &key("chi_square_p")),
            d.chi_square.unwrap().p_value
        );
        assert!(d.psi.unwrap() > 0.0);
        assert!(!m.contains_key(&key("ks")), "no KS for a categorical field");
    });
}

// === a replica's sync ===

#[test]
fn a_replicas_sync_is_exported_as_gauges() {
    use tower_rollout::store::{MemoryStore, Replica};
    capture(false, |metrics, _| async move {
        let seen = Arc::new(AtomicU64::new(0));
        let (_router, handle) = BlueGreenRouter::builder()
            .build(
                model::<String>("blue", 200, Arc::clone(&seen)),
                model::<String>("green", 200, Arc::clone(&seen)),
            )
            .unwrap();
        let store = MemoryStore::new();
        let replica = Replica::builder(&handle, store.clone(), "iris")
            .id("r1")
            .report_ttl(Duration::from_secs(3))
            .start()
            .await
            .unwrap();
        // Each read of the recorder takes what changed since the last one:
        // read once per look.
        let look = || {
            let m = metrics.read();
            let g = |name: &str| {
                m.get(&format!("{name}{{model=iris,replica=r1}}"))
                    .map(|v| match v {
                        DebugValue::Gauge(g) => g.into_inner(),
                        other => panic!("{name}: {other:?}"),
                    })
            };
            (
                g("rollout_replica_applied_revision"),
                g("rollout_replica_stale_seconds"),
                g("rollout_replica_ready"),
            )
        };
        let done = replica.promote().await.unwrap();
        let (applied, stale, ready) = look();
        assert_eq!(applied, Some(done.revision as f64));
        assert_eq!((stale, ready), (Some(0.0), Some(1.0)));
        // The store goes away: the staleness rises (set at every report,
        // a third of the time to live), the state applied stays, ready.
        store.set_available(false);
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let (applied, stale, ready) = look();
            if stale.is_some_and(|s| s >= 0.5) {
                assert_eq!(applied, Some(done.revision as f64));
                assert_eq!(ready, Some(1.0));
                break;
            }
            assert!(std::time::Instant::now() < deadline, "never stale");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        store.set_available(true);
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while look().1 != Some(0.0) {
            assert!(std::time::Instant::now() < deadline, "still stale");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
}
