//! Mirroring through real axum servers on 127.0.0.1:0, alone and through the
//! router's `mirror_standby`.

mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::{extract::State, routing::post, Router};
use bytes::Bytes;
use http::HeaderMap;
use http_body_util::Full;
use tokio::sync::Semaphore;
use tower_rollout::mirror::{MirrorLayer, MirrorStats};
use tower_rollout::{BlueGreenRouter, Color};

type Seen = Arc<Mutex<Vec<(HeaderMap, Bytes)>>>;

/// A version that records what it receives and answers with its name.
fn version(name: &'static str, seen: Seen) -> Router {
    Router::new()
        .route(
            "/predict",
            post(
                move |State(seen): State<Seen>, headers: HeaderMap, body: Bytes| async move {
                    let answer = format!("{name}:{}", body.len());
                    seen.lock().unwrap().push((headers, body));
                    answer
                },
            ),
        )
        .with_state(seen)
}

fn predict(addr: std::net::SocketAddr, body: &str) -> http::Request<Full<Bytes>> {
    http::Request::post(format!("http://{addr}/predict"))
        .header("authorization", "Bearer user-token")
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_owned())))
        .unwrap()
}

async fn settled(stats: impl Fn() -> MirrorStats) -> MirrorStats {
    // The copies run in the background; bounded wait, then assert.
    for _ in 0..2_000 {
        let s = stats();
        if s.in_flight == 0 && s.sampled == s.settled() {
            return s;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    stats()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn axum_router_layer_mirrors_every_request() {
    let primary_seen = Seen::default();
    let shadow_seen = Seen::default();
    let (layer, mirror) = MirrorLayer::builder(version("v2", shadow_seen.clone()))
        .build()
        .unwrap();
    let app = version("v1", primary_seen.clone()).layer(layer);
    let (addr, server) = support::serve(app).await;
    let client = support::client();

    let bodies: Vec<String> = (0..50)
        .map(|i| format!(r#"{{"features":[{i},{}]}}"#, i * 2))
        .collect();
    for body in &bodies {
        let a = support::send(&client, predict(addr, body), "x-none")
            .await
            .unwrap();
        assert_eq!(a.status, 200);
        assert_eq!(a.body, format!("v1:{}", body.len()), "users only see v1");
    }
    let stats = settled(|| mirror.stats()).await;
    assert_eq!((stats.sampled, stats.completed), (50, 50), "{stats:?}");

    let mut shadow: Vec<_> = shadow_seen.lock().unwrap().clone();
    shadow.sort_by(|a, b| a.1.cmp(&b.1));
    let mut sent: Vec<Bytes> = bodies.iter().map(|b| Bytes::from(b.clone())).collect();
    sent.sort();
    assert_eq!(shadow.iter().map(|s| s.1.clone()).collect::<Vec<_>>(), sent);
    for (headers, _) in &shadow {
        assert!(headers.get("authorization").is_none());
        assert_eq!(headers["x-rollout-mirror"], "1");
        assert_eq!(headers["content-type"], "application/json");
    }
    for (headers, _) in primary_seen.lock().unwrap().iter() {
        assert_eq!(headers["authorization"], "Bearer user-token");
        assert!(headers.get("x-rollout-mirror").is_none());
    }
    server.abort();
}

/// `mirror_standby` copies active traffic to the standby; after a promote the
/// old color is the standby and gets the copies; `drained` waits for copies
/// still running on a color.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mirror_standby_follows_the_standby_and_drain_waits_for_copies() {
    let blue_seen = Seen::default();
    let green_seen = Seen::default();
    // Green holds each mirrored request until a permit is released.
    let gate = Arc::new(Semaphore::new(0));
    let green = {
        let gate = gate.clone();
        version("v2", green_seen.clone()).layer(axum::middleware::from_fn(
            move |req: axum::extract::Request, next: axum::middleware::Next| {
                let gate = gate.clone();
                async move {
                    if req.headers().contains_key("x-rollout-mirror") {
                        gate.acquire().await.unwrap().forget();
                    }
                    next.run(req).await
                }
            },
        ))
    };
    let (layer, handle) = BlueGreenRouter::builder()
        .served_by_header("x-served-by")
        .versions("v1", "v2")
        .mirror(MirrorLayer::settings())
        .layer(green)
        .unwrap();
    let app = version("v1", blue_seen.clone()).layer(layer);
    let (addr, server) = support::serve(app).await;
    let client = support::client();

    handle.mirror_standby(1.0).unwrap();
    for i in 0..5 {
        let a = support::send(&client, predict(addr, &format!("b{i}")), "x-served-by")
            .await
            .unwrap();
        assert_eq!(
            (a.header.as_deref(), &a.body[..]),
            (Some("blue; version=v1"), &b"v1:2"[..])
        );
    }
    // Five copies are held on green: green is busy, blue is not.
    for _ in 0..2_000 {
        if handle.status().green.mirrored_in_flight == 5 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let status = handle.status();
    assert_eq!(status.green.mirrored_in_flight, 5);
    assert_eq!(
        (status.blue.served, status.green.served),
        (5, 0),
        "copies are not served requests"
    );
    let mut drained = tokio_test::task::spawn(handle.drained(Color::Green));
    assert!(drained.poll().is_pending(), "green still runs copies");
    gate.add_permits(5);
    tokio::time::timeout(Duration::from_secs(10), drained)
        .await
        .expect("green drains");
    assert_eq!(green_seen.lock().unwrap().len(), 5);

    // Promote: green serves, blue is the standby and receives the copies.
    handle.promote().unwrap();
    gate.add_permits(100);
    for i in 0..5 {
        let a = support::send(&client, predict(addr, &format!("g{i}")), "x-served-by")
            .await
            .unwrap();
        assert_eq!(
            (a.header.as_deref(), &a.body[..]),
            (Some("green; version=v2"), &b"v2:2"[..])
        );
    }
    let stats = settled(|| handle.mirror_stats()).await;
    assert_eq!((stats.sampled, stats.completed), (10, 10), "{stats:?}");
    let copies_on_blue: Vec<Bytes> = blue_seen
        .lock()
        .unwrap()
        .iter()
        .filter(|(h, _)| h.contains_key("x-rollout-mirror"))
        .map(|(_, b)| b.clone())
        .collect();
    assert_eq!(copies_on_blue.len(), 5);
    assert!(copies_on_blue.iter().all(|b| b.starts_with(b"g")));

    handle.mirror_standby(0.0).unwrap();
    assert!(handle.mirror_standby(f64::NAN).is_err());
    server.abort();
}
