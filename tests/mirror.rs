//! MirrorLayer: a broken shadow never changes, delays or fails the primary,
//! and every copy is accounted for exactly once.

mod support;

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Request, Response};
use http_body::Frame;
use http_body_util::{combinators::BoxBody, BodyExt, Full, StreamBody};
use tokio::time::Instant;
use tower::BoxError;
use tower::{service_fn, Service, ServiceBuilder, ServiceExt};
use tower_rollout::mirror::{CopyAborted, MirrorBody, MirrorLayer, MirrorStats, Mirrored};

type TestBody = BoxBody<Bytes, Infallible>;
type Req = Request<MirrorBody<TestBody>>;

/// A request whose body arrives in the given frames, with optional trailers.
fn request(chunks: &[&[u8]], trailers: Option<HeaderMap>) -> Request<TestBody> {
    let mut frames: Vec<Result<Frame<Bytes>, Infallible>> = chunks
        .iter()
        .map(|c| Ok(Frame::data(Bytes::copy_from_slice(c))))
        .collect();
    if let Some(t) = trailers {
        frames.push(Ok(Frame::trailers(t)));
    }
    Request::post("http://model.local:8080/predict")
        .header("authorization", "Bearer secret")
        .header("cookie", "session=1")
        .header("proxy-authorization", "Basic x")
        .header("x-request-id", "42")
        .body(StreamBody::new(futures_util::stream::iter(frames)).boxed())
        .unwrap()
}

fn body_of(i: usize) -> Vec<Vec<u8>> {
    (0..3)
        .map(|k| format!("req{i}-part{k};").into_bytes())
        .collect()
}

/// The primary reads its whole body and answers with a digest of it.
fn primary() -> impl Service<Req, Response = Response<Full<Bytes>>, Error = BoxError, Future: Send>
       + Clone
       + Send
       + 'static {
    service_fn(|req: Req| async move {
        let body = req.into_body().collect().await?.to_bytes();
        Ok::<_, BoxError>(Response::new(Full::new(Bytes::from(format!(
            "primary saw {} bytes: {}",
            body.len(),
            String::from_utf8_lossy(&body)
        )))))
    })
}

#[derive(Clone, Copy, Debug)]
enum Behaviour {
    Healthy,
    Errors,
    Panics,
    Hangs,
    SlowReader,
    HugeAnswer,
}

/// What the shadow saw: calls started, live calls (max), bodies read.
#[derive(Default)]
struct Log {
    calls: AtomicUsize,
    live: AtomicUsize,
    max_live: AtomicUsize,
    bodies: Mutex<Vec<Result<Bytes, String>>>,
    heads: Mutex<Vec<(HeaderMap, bool, Option<String>)>>,
}

struct Live(Arc<Log>);
impl Live {
    fn new(log: &Arc<Log>) -> Live {
        log.calls.fetch_add(1, Ordering::SeqCst);
        let n = log.live.fetch_add(1, Ordering::SeqCst) + 1;
        log.max_live.fetch_max(n, Ordering::SeqCst);
        Live(log.clone())
    }
}
impl Drop for Live {
    fn drop(&mut self) {
        self.0.live.fetch_sub(1, Ordering::SeqCst);
    }
}

fn shadow(
    behaviour: Behaviour,
    log: Arc<Log>,
) -> impl Service<Req, Response = Response<Full<Bytes>>, Error = BoxError, Future: Send>
       + Clone
       + Send
       + 'static {
    service_fn(move |req: Req| {
        let log = log.clone();
        async move {
            let _live = Live::new(&log);
            log.heads.lock().unwrap().push((
                req.headers().clone(),
                req.extensions().get::<Mirrored>().is_some(),
                req.uri().authority().map(|a| a.to_string()),
            ));
            match behaviour {
                Behaviour::Errors => {
                    return Err::<Response<Full<Bytes>>, BoxError>("shadow failed".into())
                }
                Behaviour::Panics => panic!("shadow panicked"),
                Behaviour::Hangs => std::future::pending::<()>().await,
                _ => {}
            }
            let mut body = req.into_body();
            let mut seen = Vec::new();
            let result = loop {
                match body.frame().await {
                    None => break Ok(Bytes::from(seen)),
                    Some(Err(e)) => break Err(e.to_string()),
                    Some(Ok(f)) => {
                        if let Some(d) = f.data_ref() {
                            seen.extend_from_slice(d);
                        }
                        if let Behaviour::SlowReader = behaviour {
                            tokio::time::sleep(Duration::from_millis(100)).await;
                        }
                    }
                }
            };
            log.bodies.lock().unwrap().push(result);
            let answer = match behaviour {
                Behaviour::HugeAnswer => Bytes::from(vec![7u8; 10 * 1024 * 1024]),
                _ => Bytes::from_static(b"shadow"),
            };
            Ok(Response::new(Full::new(answer)))
        }
    })
}

/// A shadow whose `poll_ready` never completes.
#[derive(Clone)]
struct NeverReady;
impl Service<Req> for NeverReady {
    type Response = Response<Full<Bytes>>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, BoxError>> + Send>>;
    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Pending
    }
    fn call(&mut self, _: Req) -> Self::Future {
        unreachable!("never ready")
    }
}

/// Sends `n` requests one after the other through `svc`; returns the
/// primary's answers and how much (paused) time passed while they were served.
async fn drive<S>(svc: S, n: usize, frames: usize) -> (Vec<(u16, Bytes)>, Duration)
where
    S: Service<Request<TestBody>, Response = Response<Full<Bytes>>, Error = BoxError> + Clone,
{
    let start = Instant::now();
    let mut out = Vec::new();
    for i in 0..n {
        let chunks: Vec<Vec<u8>> = (0..frames)
            .map(|k| format!("r{i}f{k};").into_bytes())
            .collect();
        let chunks: Vec<&[u8]> = chunks.iter().map(Vec::as_slice).collect();
        let res = svc
            .clone()
            .oneshot(request(&chunks, None))
            .await
            .expect("primary never fails");
        let status = res.status().as_u16();
        out.push((status, res.into_body().collect().await.unwrap().to_bytes()));
    }
    (out, start.elapsed())
}

/// Lets background work run to its end: paused time jumps past the deadline.
async fn settle(handle: &tower_rollout::mirror::MirrorHandle) -> MirrorStats {
    tokio::time::sleep(Duration::from_secs(60)).await;
    let stats = handle.stats();
    assert_eq!(stats.in_flight, 0, "every copy settled: {stats:?}");
    assert_eq!(
        stats.sampled,
        stats.settled(),
        "each copy counted once: {stats:?}"
    );
    stats
}

async fn with_shadow<T>(shadow: T, frames: usize) -> (Vec<(u16, Bytes)>, Duration, MirrorStats)
where
    T: Service<Req, Response = Response<Full<Bytes>>, Error = BoxError> + Clone + Send + 'static,
    T::Future: Send + 'static,
{
    const N: usize = 20;
    let (layer, handle) = MirrorLayer::builder(shadow)
        .timeout(Duration::from_secs(5))
        .buffer_frames(8)
        .build()
        .unwrap();
    let svc = ServiceBuilder::new().layer(layer).service(primary());
    let (answers, elapsed) = drive(svc, N, 3.max(frames)).await;
    let stats = settle(&handle).await;
    assert_eq!(stats.sampled, N as u64);
    (answers, elapsed, stats)
}

async fn baseline(frames: usize) -> Vec<(u16, Bytes)> {
    let svc = ServiceBuilder::new()
        .map_request(|r: Request<TestBody>| r.map(MirrorBody::new))
        .service(primary());
    drive(svc, 20, 3.max(frames)).await.0
}

macro_rules! shadow_case {
    ($name:ident, $shadow:expr, $frames:expr, |$stats:ident, $log:ident| $check:block) => {
        #[tokio::test(start_paused = true)]
        async fn $name() {
            let $log = Arc::new(Log::default());
            #[allow(clippy::redundant_closure_call)]
            let shadow = ($shadow)($log.clone());
            let (answers, elapsed, $stats) = with_shadow(shadow, $frames).await;
            assert_eq!(
                answers,
                baseline($frames).await,
                "byte-identical to the run without mirror"
            );
            assert_eq!(
                elapsed,
                Duration::ZERO,
                "the primary never waited on the shadow"
            );
            $check
        }
    };
}

shadow_case!(
    healthy_shadow_completes_every_copy,
    |log| shadow(Behaviour::Healthy, log),
    3,
    |stats, log| {
        assert_eq!(stats.completed, 20);
        let bodies = log.bodies.lock().unwrap();
        assert_eq!(bodies.len(), 20);
        for (i, b) in bodies.iter().enumerate() {
            assert_eq!(
                b.as_ref().unwrap(),
                &Bytes::from(format!("r{i}f0;r{i}f1;r{i}f2;"))
            );
        }
        assert_eq!(stats.latency.count, 20);
    }
);

shadow_case!(
    erroring_shadow_is_counted_not_felt,
    |log| shadow(Behaviour::Errors, log),
    3,
    |stats, _log| {
        assert_eq!(stats.errors, 20);
    }
);

shadow_case!(
    panicking_shadow_is_caught_and_counted,
    |log| shadow(Behaviour::Panics, log),
    3,
    |stats, _log| {
        assert_eq!(stats.panics, 20);
    }
);

shadow_case!(
    hanging_shadow_times_out,
    |log| shadow(Behaviour::Hangs, log),
    3,
    |stats, log| {
        assert_eq!(stats.timeouts, 20);
        assert_eq!(
            log.live.load(Ordering::SeqCst),
            0,
            "timed-out shadows were dropped"
        );
    }
);

shadow_case!(
    never_ready_shadow_times_out,
    |_log| NeverReady,
    3,
    |stats, _log| {
        assert_eq!(stats.timeouts, 20);
    }
);

// 40 frames, 8 buffered: the slow reader falls behind and its copies are
// abandoned; the shadow sees an error, never a shortened body.
shadow_case!(
    slow_reading_shadow_is_dropped,
    |log| shadow(Behaviour::SlowReader, log),
    40,
    |stats, log| {
        assert_eq!(stats.dropped_shadow_slow, 20);
        let bodies = log.bodies.lock().unwrap();
        assert_eq!(bodies.len(), 20);
        assert!(
            bodies
                .iter()
                .all(|b| b.as_ref().unwrap_err().contains("abandoned")),
            "{bodies:?}"
        );
    }
);

shadow_case!(
    huge_shadow_answer_is_drained,
    |log| shadow(Behaviour::HugeAnswer, log),
    3,
    |stats, _log| {
        assert_eq!(stats.completed, 20);
    }
);

/// With a hanging shadow, at most `max_in_flight` shadow tasks ever exist; the
/// rest are dropped and counted, and permits come back after the deadline.
#[tokio::test(start_paused = true)]
async fn hanging_shadow_holds_at_most_max_in_flight_tasks() {
    const N: usize = 3;
    let log = Arc::new(Log::default());
    let (layer, handle) = MirrorLayer::builder(shadow(Behaviour::Hangs, log.clone()))
        .max_in_flight(N)
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let svc = ServiceBuilder::new().layer(layer).service(primary());
    let metrics = tokio::runtime::Handle::current().metrics();
    let mut max_tasks = 0;
    for i in 0..50 {
        let chunks = body_of(i);
        let chunks: Vec<&[u8]> = chunks.iter().map(Vec::as_slice).collect();
        svc.clone().oneshot(request(&chunks, None)).await.unwrap();
        tokio::task::yield_now().await; // let the spawned shadows start
        max_tasks = max_tasks.max(metrics.num_alive_tasks());
    }
    assert!(max_tasks <= N, "{max_tasks} tasks alive");
    assert_eq!(log.max_live.load(Ordering::SeqCst), N);
    let s = handle.stats();
    assert_eq!((s.sampled, s.dropped_saturated, s.in_flight), (50, 47, 3));

    let s = settle(&handle).await;
    assert_eq!(s.timeouts, 3);
    assert_eq!(metrics.num_alive_tasks(), 0);

    // The permits are back: the next copy runs.
    svc.clone().oneshot(request(&[b"x"], None)).await.unwrap();
    tokio::task::yield_now().await;
    assert_eq!(log.calls.load(Ordering::SeqCst), 4);
}

#[tokio::test]
async fn credentials_are_stripped_unless_kept() {
    for keep in [false, true] {
        let log = Arc::new(Log::default());
        let (layer, handle) = MirrorLayer::builder(shadow(Behaviour::Healthy, log.clone()))
            .keep_credentials(keep)
            .marker_header("x-shadow")
            .authority_suffix("-shadow")
            .build()
            .unwrap();
        // The primary must still see everything.
        let primary = service_fn(|req: Req| async move {
            assert_eq!(req.headers()["authorization"], "Bearer secret");
            assert!(req.headers().get("x-shadow").is_none());
            assert!(req.extensions().get::<Mirrored>().is_none());
            assert_eq!(req.uri().authority().unwrap(), "model.local:8080");
            req.into_body().collect().await?;
            Ok::<_, BoxError>(Response::new(Full::new(Bytes::new())))
        });
        let svc = ServiceBuilder::new().layer(layer).service(primary);
        svc.oneshot(request(&[b"a"], None)).await.unwrap();
        while handle.stats().in_flight > 0 {
            tokio::task::yield_now().await;
        }
        let heads = log.heads.lock().unwrap();
        let (headers, marked, authority) = &heads[0];
        for h in ["authorization", "cookie", "proxy-authorization"] {
            assert_eq!(headers.contains_key(h), keep, "{h} with keep={keep}");
        }
        assert_eq!(headers["x-request-id"], "42", "other headers are copied");
        assert_eq!(headers["x-shadow"], "1");
        assert!(*marked, "Mirrored extension");
        assert_eq!(authority.as_deref(), Some("model.local-shadow:8080"));
    }
}

#[tokio::test]
async fn predicate_and_sample_choose_what_is_copied() {
    let log = Arc::new(Log::default());
    let (layer, handle) = MirrorLayer::builder(shadow(Behaviour::Healthy, log.clone()))
        .predicate(|head| {
            head.headers()
                .get("x-request-id")
                .is_some_and(|v| v != "skip")
        })
        .build()
        .unwrap();
    let svc = ServiceBuilder::new().layer(layer).service(primary());
    let mut skip = request(&[b"a"], None);
    skip.headers_mut()
        .insert("x-request-id", "skip".parse().unwrap());
    svc.clone().oneshot(skip).await.unwrap();
    svc.clone().oneshot(request(&[b"a"], None)).await.unwrap();
    handle.set_sample(0.0).unwrap();
    svc.clone().oneshot(request(&[b"a"], None)).await.unwrap();
    while handle.stats().in_flight > 0 {
        tokio::task::yield_now().await;
    }
    assert_eq!(handle.stats().sampled, 1);
    assert_eq!(log.calls.load(Ordering::SeqCst), 1);
    assert!(handle.set_sample(1.5).is_err());
    assert!(handle.set_sample(f64::NAN).is_err());
}

#[tokio::test]
async fn body_over_budget_is_not_copied_whole() {
    let log = Arc::new(Log::default());
    let (layer, handle) = MirrorLayer::builder(shadow(Behaviour::Healthy, log.clone()))
        .max_body_bytes(8)
        .build()
        .unwrap();
    let svc = ServiceBuilder::new().layer(layer).service(primary());
    // Size unknown up front: abandoned while streaming.
    let res = svc
        .clone()
        .oneshot(request(&[b"12345", b"67890"], None))
        .await
        .unwrap();
    assert_eq!(
        res.into_body().collect().await.unwrap().to_bytes(),
        "primary saw 10 bytes: 1234567890"
    );
    // Size known up front: never started.
    let known = Request::post("/")
        .body(
            Full::new(Bytes::from_static(b"0123456789"))
                .map_err(|e| match e {})
                .boxed(),
        )
        .unwrap();
    svc.clone().oneshot(known).await.unwrap();
    while handle.stats().in_flight > 0 {
        tokio::task::yield_now().await;
    }
    let s = handle.stats();
    assert_eq!((s.sampled, s.dropped_over_budget, s.settled()), (2, 2, 2));
    let bodies = log.bodies.lock().unwrap();
    assert_eq!(bodies.len(), 1, "only the streamed one reached the shadow");
    assert!(
        bodies[0].is_err(),
        "and it ended with an error, not a short body"
    );
}

#[test]
fn without_a_runtime_the_copy_is_skipped_and_counted() {
    let log = Arc::new(Log::default());
    let (layer, handle) = MirrorLayer::new(shadow(Behaviour::Healthy, log.clone()));
    let svc = ServiceBuilder::new().layer(layer).service(primary());
    let res = futures_executor::block_on(svc.oneshot(request(&[b"abc"], None))).unwrap();
    let body = futures_executor::block_on(res.into_body().collect())
        .unwrap()
        .to_bytes();
    assert_eq!(body, "primary saw 3 bytes: abc");
    let s = handle.stats();
    assert_eq!((s.sampled, s.skipped_no_executor, s.settled()), (1, 1, 1));
    assert_eq!(log.calls.load(Ordering::SeqCst), 0);
}

#[test]
fn bad_settings_fail_at_construction() {
    let log = Arc::new(Log::default());
    let s = || MirrorLayer::builder(shadow(Behaviour::Healthy, log.clone()));
    use tower_rollout::ConfigError as E;
    assert!(matches!(
        s().sample(f64::NAN).build(),
        Err(E::InvalidFraction { .. })
    ));
    assert!(matches!(
        s().sample(-0.1).build(),
        Err(E::InvalidFraction { .. })
    ));
    assert!(matches!(
        s().max_in_flight(0).build(),
        Err(E::MustBePositive {
            setting: "max_in_flight"
        })
    ));
    assert!(matches!(
        s().max_body_bytes(0).build(),
        Err(E::MustBePositive { .. })
    ));
    assert!(matches!(
        s().timeout(Duration::ZERO).build(),
        Err(E::MustBePositive { .. })
    ));
    assert!(matches!(
        s().buffer_frames(0).build(),
        Err(E::MustBePositive { .. })
    ));
    assert!(matches!(
        s().marker_header("bad header").build(),
        Err(E::InvalidHeaderName { .. })
    ));
    assert!(matches!(
        s().strip_header("").build(),
        Err(E::InvalidHeaderName { .. })
    ));
    assert!(matches!(
        s().authority_suffix("/x").build(),
        Err(E::InvalidAuthoritySuffix { .. })
    ));
    assert!(s().build().is_ok());
}

#[test]
fn aborted_copy_error_is_typed() {
    let e: BoxError = CopyAborted.into();
    assert!(e.downcast_ref::<CopyAborted>().is_some());
}

/// The idle-priority spawner runs copies on its own thread.
#[cfg(feature = "idle")]
#[tokio::test]
async fn idle_spawner_runs_copies_on_its_own_thread() {
    let spawner = tower_rollout::mirror::IdleSpawner::new().unwrap();
    #[cfg(target_os = "linux")]
    assert!(
        spawner.is_idle_priority(),
        "SCHED_IDLE needs no privilege on Linux"
    );
    let log = Arc::new(Log::default());
    let (layer, handle) = MirrorLayer::builder(shadow(Behaviour::Healthy, log.clone()))
        .spawner(spawner)
        .build()
        .unwrap();
    let svc = ServiceBuilder::new().layer(layer).service(primary());
    for i in 0..10 {
        let chunks = body_of(i);
        let chunks: Vec<&[u8]> = chunks.iter().map(Vec::as_slice).collect();
        svc.clone().oneshot(request(&chunks, None)).await.unwrap();
    }
    for _ in 0..10_000 {
        if handle.stats().settled() == 10 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    assert_eq!(handle.stats().completed, 10, "{:?}", handle.stats());
}

/// An executor that accepts tasks and drops them unrun (a runtime shutting
/// down does the same): the copies are still counted, once.
#[tokio::test]
async fn copies_dropped_by_the_executor_are_counted() {
    let log = Arc::new(Log::default());
    let (layer, handle) = MirrorLayer::builder(shadow(Behaviour::Healthy, log.clone()))
        .spawner(support::DropTasks)
        .build()
        .unwrap();
    let svc = ServiceBuilder::new().layer(layer).service(primary());
    let res = svc.oneshot(request(&[b"abc"], None)).await.unwrap();
    assert_eq!(
        res.into_body().collect().await.unwrap().to_bytes(),
        "primary saw 3 bytes: abc"
    );
    let s = handle.stats();
    assert_eq!(
        (s.sampled, s.skipped_no_executor, s.settled(), s.in_flight),
        (1, 1, 1, 0)
    );
    assert_eq!(log.calls.load(Ordering::SeqCst), 0);
}

/// A request with more header values than a copy's `HeaderMap` can hold is
/// served normally and not mirrored (a `reserve` panic here once failed the
/// primary).
#[tokio::test]
async fn a_request_whose_headers_cannot_be_copied_is_not_mirrored() {
    let log = Arc::new(Log::default());
    let (layer, handle) = MirrorLayer::new(shadow(Behaviour::Healthy, log.clone()));
    let svc = ServiceBuilder::new().layer(layer).service(primary());
    let mut req = request(&[b"abc"], None);
    for _ in 0..30_000 {
        req.headers_mut()
            .append("a", http::HeaderValue::from_static("b"));
    }
    let res = svc.oneshot(req).await.unwrap();
    assert_eq!(
        res.into_body().collect().await.unwrap().to_bytes(),
        "primary saw 3 bytes: abc"
    );
    let s = handle.stats();
    assert_eq!((s.sampled, s.dropped_over_budget, s.settled()), (1, 1, 1));
}

#[test]
fn too_many_buffered_frames_fail_at_construction() {
    let log = Arc::new(Log::default());
    let res = MirrorLayer::builder(shadow(Behaviour::Healthy, log))
        .buffer_frames(usize::MAX)
        .build();
    assert!(matches!(
        res,
        Err(tower_rollout::ConfigError::TooLarge {
            setting: "buffer_frames"
        })
    ));
}
