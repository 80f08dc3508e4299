//! Real axum servers behind a real hyper server while the colors flip.

mod support;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use axum::{routing::post, Router};
use bytes::Bytes;
use http_body_util::Full;
use tower_rollout::{BlueGreenRouter, Color};

fn version(name: &'static str) -> Router {
    Router::new().route(
        "/predict",
        post(move |body: Bytes| async move { format!("{name}:{}", body.len()) }),
    )
}

/// Clients send requests without pause while another task promotes and rolls
/// back about a thousand times. No request may fail, every answer must come
/// from the version its served-by header names, and the router's served counts
/// must equal what the clients saw.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flipping_a_thousand_times_loses_no_request() {
    let (router, handle) = BlueGreenRouter::builder()
        .versions("v1", "v2")
        .served_by_header("x-served-by")
        .build(version("v1"), version("v2"))
        .unwrap();
    let (addr, server) = support::serve(Router::new().fallback_service(router)).await;

    let done = Arc::new(AtomicBool::new(false));
    let answered = Arc::new(AtomicUsize::new(0));
    const FLIPS: usize = 1_000;
    const CLIENTS: usize = 4;
    const MIN_REQUESTS: usize = 500; // per client, keeps going until the flips end

    let flipper = {
        let handle = handle.clone();
        let done = done.clone();
        let answered = answered.clone();
        tokio::spawn(async move {
            for i in 0..FLIPS {
                // Pace the flips by the traffic: at least two answers between
                // flips, so requests really are admitted around every switch.
                let seen = answered.load(Ordering::SeqCst);
                while answered.load(Ordering::SeqCst) < seen + 2 {
                    tokio::task::yield_now().await;
                }
                if i % 2 == 0 {
                    handle.promote().unwrap();
                } else {
                    handle.rollback().unwrap();
                }
            }
            done.store(true, Ordering::SeqCst);
        })
    };

    let mut clients = Vec::new();
    for c in 0..CLIENTS {
        let done = done.clone();
        let answered = answered.clone();
        clients.push(tokio::spawn(async move {
            let client = support::client();
            let (mut blue, mut green, mut failed) = (0u64, 0u64, 0u64);
            let mut n = 0usize;
            // Bounded: at most 20 000 requests per client.
            while (n < MIN_REQUESTS || !done.load(Ordering::SeqCst)) && n < 20_000 {
                let payload = vec![b'x'; (c * 7 + n) % 64];
                let req = http::Request::post(format!("http://{addr}/predict"))
                    .body(Full::new(Bytes::from(payload.clone())))
                    .unwrap();
                match support::send(&client, req, "x-served-by").await {
                    Ok(a) if a.status.is_success() => {
                        let (color, version) = support::served_by(a.header.as_deref().unwrap());
                        let expect = match color {
                            Color::Blue => format!("v1:{}", payload.len()),
                            Color::Green => format!("v2:{}", payload.len()),
                        };
                        assert_eq!(a.body, expect, "body from the color the header names");
                        assert_eq!(
                            a.body.split(|&b| b == b':').next().unwrap(),
                            version.as_bytes()
                        );
                        match color {
                            Color::Blue => blue += 1,
                            Color::Green => green += 1,
                        }
                    }
                    _ => failed += 1,
                }
                n += 1;
                answered.fetch_add(1, Ordering::SeqCst);
            }
            (blue, green, failed)
        }));
    }

    flipper.await.unwrap();
    let (mut blue, mut green, mut failed) = (0, 0, 0);
    for c in clients {
        let (b, g, f) = c.await.unwrap();
        blue += b;
        green += g;
        failed += f;
    }
    assert_eq!(failed, 0, "failed requests");
    assert!(blue > 0 && green > 0, "both colors served: {blue} {green}");

    let status = handle.status();
    assert_eq!(status.generation, FLIPS as u64);
    assert_eq!(status.blue.served, blue, "blue count reconciles");
    assert_eq!(status.green.served, green, "green count reconciles");
    assert_eq!(status.blue.in_flight + status.green.in_flight, 0);
    server.abort();
}
