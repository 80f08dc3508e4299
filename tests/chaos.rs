//! Chaos soak: a real axum server behind a `BlueGreenRouter` that mirrors half
//! of the live traffic to the standby and compares the answers, while the
//! colors flip without pause and the standby misbehaves on mirrored copies
//! (errors, panics, hangs, bodies that stall, huge answers).
//!
//! Users must never notice: every request is answered normally by the color
//! its served-by header names, the served counts reconcile exactly with what
//! the clients saw, and every copy and every comparison is accounted for
//! exactly once.
//!
//! Size: `ROLLOUT_CHAOS_REQUESTS` (default 100 000).

mod support;

use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::response::{IntoResponse, Response};
use axum::{routing::post, Router};
use bytes::Bytes;
use http::{HeaderMap, StatusCode};
use http_body_util::Full;
use tower_rollout::mirror::{MirrorLayer, DEFAULT_MARKER};
use tower_rollout::shadow::{Comparator, CompareSettings};
use tower_rollout::{BlueGreenRouter, Color};

const CLIENTS: usize = 8;
const SEED: u64 = 0x5eed_c4a0_5000_0001;
const PANIC_MESSAGE: &str = "chaos: deliberate shadow panic";

fn requests() -> u64 {
    std::env::var("ROLLOUT_CHAOS_REQUESTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000)
}

/// SplitMix64: a deterministic draw per request id and version.
fn draw(id: u64, salt: u64) -> u64 {
    let mut z = id ^ SEED ^ salt.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// What a version does with a mirrored copy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Chaos {
    Panic,
    ServerError,
    Hang,
    StallMidBody,
    Huge,
    /// Answers exactly as the other version would: the comparison matches.
    Mimic,
    Normal,
}

fn chaos(id: u64, version: &str) -> Chaos {
    let salt = if version == "v1" { 1 } else { 2 };
    match draw(id, salt) % 1000 {
        0..20 => Chaos::Panic,
        20..40 => Chaos::ServerError,
        40..50 => Chaos::Hang,
        50..60 => Chaos::StallMidBody,
        60..80 => Chaos::Huge,
        80..280 => Chaos::Mimic,
        _ => Chaos::Normal,
    }
}

fn answer(version: &str, id: u64, body: &[u8]) -> String {
    format!("{version}:{id}:{}", body.len())
}

fn huge() -> Bytes {
    static HUGE: OnceLock<Bytes> = OnceLock::new();
    HUGE.get_or_init(|| Bytes::from(vec![b'x'; 2 << 20]))
        .clone()
}

/// One model version. Real requests are always answered normally; mirrored
/// copies (marked with the mirror header) get the chaos drawn for their id.
fn version(name: &'static str, other: &'static str) -> Router {
    Router::new().route(
        "/predict",
        post(move |headers: HeaderMap, body: Bytes| async move {
            let id: u64 = headers["x-request-id"].to_str().unwrap().parse().unwrap();
            if !headers.contains_key(DEFAULT_MARKER) {
                return answer(name, id, &body).into_response();
            }
            match chaos(id, name) {
                Chaos::Panic => panic!("{PANIC_MESSAGE}"),
                Chaos::ServerError => (StatusCode::INTERNAL_SERVER_ERROR, "boom").into_response(),
                Chaos::Hang => std::future::pending::<Response>().await,
                Chaos::StallMidBody => {
                    use tokio_stream::StreamExt as _;
                    let first = tokio_stream::once(Ok::<_, Infallible>(Bytes::from(answer(
                        name, id, &body,
                    ))));
                    Body::from_stream(first.chain(tokio_stream::pending())).into_response()
                }
                Chaos::Huge => huge().into_response(),
                Chaos::Mimic => answer(other, id, &body).into_response(),
                Chaos::Normal => answer(name, id, &body).into_response(),
            }
        }),
    )
}

/// Hides the deliberate shadow panics (thousands of them); every other panic
/// is reported as usual.
fn quiet_deliberate_panics() {
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let payload = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied());
        if payload != Some(PANIC_MESSAGE) {
            previous(info);
        }
    }));
}

#[derive(Debug, Default, Clone, Copy)]
struct Seen {
    blue: u64,
    green: u64,
    failed: u64,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chaos_on_the_standby_never_reaches_users() {
    quiet_deliberate_panics();
    let started = Instant::now();
    let total = requests();

    let compare = CompareSettings::new(Comparator::bytes()).mirror(
        MirrorLayer::settings()
            .timeout(Duration::from_millis(200))
            .max_in_flight(16),
    );
    let (router, handle) = BlueGreenRouter::builder()
        .versions("v1", "v2")
        .served_by_header("x-served-by")
        .compare(compare)
        .build(version("v1", "v2"), version("v2", "v1"))
        .unwrap();
    handle.mirror_standby(0.5).unwrap();
    let (addr, server) = support::serve(Router::new().fallback_service(router)).await;

    let next_id = Arc::new(AtomicU64::new(0));
    let answered = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicBool::new(false));

    // Flips promote / rollback / split without pause, paced by the traffic:
    // at least two answers between control calls, no sleeps.
    let flipper = {
        let handle = handle.clone();
        let (answered, done) = (answered.clone(), done.clone());
        tokio::spawn(async move {
            let mut calls = 0u64;
            // Calls that changed the state (a split set to its value, a
            // rollback with nothing to undo change nothing).
            let mut applied = 0u64;
            while !done.load(Ordering::SeqCst) {
                let seen = answered.load(Ordering::SeqCst);
                while answered.load(Ordering::SeqCst) < seen + 2 && !done.load(Ordering::SeqCst) {
                    tokio::task::yield_now().await;
                }
                let r = draw(calls, 7);
                let change = match calls % 4 {
                    0 | 2 => handle.set_split((r % 1001) as f64 / 1000.0).unwrap(),
                    1 => handle.promote().unwrap(),
                    _ => handle.rollback().unwrap(),
                };
                calls += 1;
                applied += u64::from(change.is_applied());
            }
            applied
        })
    };

    let mut clients = Vec::new();
    for _ in 0..CLIENTS {
        let (next_id, answered) = (next_id.clone(), answered.clone());
        clients.push(tokio::spawn(async move {
            let client = support::client();
            let mut seen = Seen::default();
            loop {
                let id = next_id.fetch_add(1, Ordering::SeqCst);
                if id >= total {
                    break;
                }
                let payload = Bytes::from(vec![b'p'; (id % 97) as usize]);
                let req = http::Request::post(format!("http://{addr}/predict"))
                    .header("x-request-id", id.to_string())
                    .body(Full::new(payload.clone()))
                    .unwrap();
                // A user request that hangs is a failure, not a hung test.
                let sent = tokio::time::timeout(
                    Duration::from_secs(10),
                    support::send(&client, req, "x-served-by"),
                );
                match sent
                    .await
                    .unwrap_or_else(|_| Err("no answer within 10 s".into()))
                {
                    Ok(a) if a.status == StatusCode::OK => {
                        let (color, version) =
                            support::served_by(a.header.as_deref().expect("served-by header"));
                        let version = version.as_str();
                        assert_eq!(
                            a.body,
                            answer(version, id, &payload),
                            "request {id}: the body comes from the color named"
                        );
                        match color {
                            Color::Blue => seen.blue += 1,
                            Color::Green => seen.green += 1,
                        }
                    }
                    Ok(a) => {
                        eprintln!("request {id}: {} {:?}", a.status, a.body);
                        seen.failed += 1;
                    }
                    Err(e) => {
                        eprintln!("request {id}: {e}");
                        seen.failed += 1;
                    }
                }
                answered.fetch_add(1, Ordering::SeqCst);
            }
            seen
        }));
    }

    let mut seen = Seen::default();
    for c in clients {
        let s = c.await.unwrap();
        seen.blue += s.blue;
        seen.green += s.green;
        seen.failed += s.failed;
    }
    done.store(true, Ordering::SeqCst);
    let flips = flipper.await.unwrap();
    let traffic_time = started.elapsed();

    // Users noticed nothing.
    assert_eq!(seen.failed, 0, "user-facing failures");
    assert_eq!(seen.blue + seen.green, total);
    assert!(
        seen.blue > 0 && seen.green > 0,
        "both colors served: {seen:?}"
    );
    let status = handle.status();
    assert_eq!(status.blue.served, seen.blue, "blue count reconciles");
    assert_eq!(status.green.served, seen.green, "green count reconciles");
    assert_eq!(status.generation, flips + 1, "every control call counted");
    assert_eq!(status.blue.in_flight + status.green.in_flight, 0);

    // Background work settles: copies end at their deadline at the latest.
    let settle = async {
        for _ in 0..2_000 {
            if handle.mirror_stats().in_flight == 0 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(30), settle)
        .await
        .expect("safety net: background work settles");
    let stats = handle.mirror_stats();
    // The flips alternate between two pairs of versions (blue against green
    // and back): every comparison is counted in one of them.
    let reports = handle.shadow_reports();
    assert!(
        (1..=2).contains(&reports.len()),
        "two colors, one epoch: at most two pairs, {reports:?}"
    );
    let report = sum(&reports);
    let status = handle.status();
    eprintln!(
        "chaos: {total} requests ({seen:?}), {flips} control calls, traffic {traffic_time:?}, \
         total {:?}\n{stats:#?}\nreport: matched {} mismatched {} shadow_errors {} timeouts {} \
         over_cap {} primary_failed {} not_started {} dropped {} comparator_panics {}",
        started.elapsed(),
        report.matched,
        report.mismatched,
        report.shadow_errors,
        report.shadow_timeouts,
        report.skipped_over_cap,
        report.skipped_primary_failed,
        report.skipped_not_started,
        report.skipped_dropped,
        report.comparator_panics,
    );
    assert_eq!(stats.in_flight, 0, "{stats:?}");
    assert_eq!(
        status.blue.mirrored_in_flight + status.green.mirrored_in_flight,
        0
    );

    // Every copy ended exactly once: completed, dropped, errored, timed out
    // or panicked.
    assert_eq!(stats.sampled, stats.settled(), "{stats:?}");
    assert!(stats.sampled > 0);
    // Every sampled request ends in exactly one report counter: a copy that
    // never started is `skipped_not_started`; a started copy reaches the
    // comparison once, whatever happened to it.
    assert_eq!(report.total(), stats.sampled, "{report:?}\n{stats:?}");
    // Copies not started (saturated, over budget up front, no executor) and
    // copies abandoned while streaming are the report's two skips.
    assert_eq!(
        report.skipped_not_started + report.skipped_dropped,
        stats.dropped() + stats.skipped_no_executor,
        "{report:?}\n{stats:?}"
    );
    assert_eq!(report.shadow_timeouts, stats.timeouts, "hangs and stalls");
    assert_eq!(
        report.shadow_errors,
        stats.errors + stats.panics,
        "errors and panics"
    );
    assert_eq!(
        report.matched
            + report.mismatched
            + report.skipped_over_cap
            + report.skipped_primary_failed
            + report.comparator_panics,
        stats.completed,
        "answered copies are compared (or over the cap)"
    );
    // Every kind of chaos happened, and was contained.
    assert!(stats.panics > 0, "{stats:?}");
    assert!(stats.timeouts > 0, "{stats:?}");
    assert!(report.skipped_over_cap > 0, "huge answers: {report:?}");
    assert!(report.matched > 0 && report.mismatched > 0, "{report:?}");
    assert_eq!(
        report.skipped_primary_failed, 0,
        "every primary answered whole"
    );
    assert_eq!(report.comparator_panics, 0);
    assert_eq!(
        stats.errors, 0,
        "axum answers errors as responses: {stats:?}"
    );
    server.abort();
}

/// The reconciliation above, made deterministic for the case that broke it:
/// a copy that cannot start (the mirror is saturated) ends in exactly one
/// report counter, `skipped_not_started`, not also in `skipped_dropped`.
#[tokio::test]
async fn a_saturated_copy_is_counted_once_in_the_report() {
    use tower::ServiceExt;

    let hang = Router::new().route("/predict", post(std::future::pending::<&'static str>));
    let ok = Router::new().route("/predict", post(|| async { "v1" }));
    let compare = CompareSettings::new(Comparator::bytes()).mirror(
        MirrorLayer::settings()
            .timeout(Duration::from_millis(50))
            .max_in_flight(1),
    );
    let (router, handle) = BlueGreenRouter::builder()
        .compare(compare)
        .build(ok, hang)
        .unwrap();
    handle.mirror_standby(1.0).unwrap();
    for _ in 0..2 {
        let req = http::Request::post("/predict").body(Body::empty()).unwrap();
        let res = router.clone().oneshot(req).await.unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        let body = http_body_util::BodyExt::collect(res.into_body()).await;
        assert_eq!(body.unwrap().to_bytes(), "v1");
    }
    tokio::time::timeout(Duration::from_secs(10), async {
        while handle.mirror_stats().in_flight > 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("the hanging copy times out");
    let stats = handle.mirror_stats();
    let report = handle.shadow_report();
    assert_eq!(
        (stats.sampled, stats.dropped_saturated, stats.timeouts),
        (2, 1, 1),
        "{stats:?}"
    );
    assert_eq!(
        (
            report.skipped_not_started,
            report.shadow_timeouts,
            report.skipped_dropped
        ),
        (1, 1, 0),
        "{report:?}"
    );
    assert_eq!(report.total(), stats.sampled);
}

/// The counters of every pair's report, added up.
fn sum(reports: &[tower_rollout::shadow::ShadowReport]) -> tower_rollout::shadow::ShadowReport {
    let mut all = tower_rollout::shadow::ShadowReport::default();
    for r in reports {
        all.matched += r.matched;
        all.mismatched += r.mismatched;
        all.shadow_errors += r.shadow_errors;
        all.shadow_timeouts += r.shadow_timeouts;
        all.skipped_over_cap += r.skipped_over_cap;
        all.skipped_primary_failed += r.skipped_primary_failed;
        all.skipped_not_started += r.skipped_not_started;
        all.skipped_dropped += r.skipped_dropped;
        all.comparator_panics += r.comparator_panics;
    }
    all
}
