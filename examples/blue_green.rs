//! Two versions of an axum app behind one `BlueGreenRouter`, flipped while a
//! client sends requests; prints which version answered each one.
//!
//! ```text
//! cargo run --example blue_green
//! ```
//!
//! The server listens on 127.0.0.1 with a port chosen by the OS, the client
//! sends a bounded number of requests, and the program exits on its own.

use std::time::Duration;

use axum::{routing::get, Router};
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tower_rollout::{BlueGreenRouter, Color};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    // Two versions of a "model": v1 answers 'cat', v2 answers 'tiger'.
    let v1 = Router::new().route("/predict", get(|| async { "v1: cat" }));
    let v2 = Router::new().route("/predict", get(|| async { "v2: tiger" }));

    let (router, handle) = BlueGreenRouter::builder()
        .served_by_header("x-served-by")
        .sticky_header("x-user-id")
        .build(v1, v2)?;

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    // axum::serve wants axum's own response type: mount the router as the
    // fallback of an empty axum Router (or use `BlueGreenRouter::layer`).
    let app = Router::new().fallback_service(router);
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    println!("serving on http://{addr}/predict\n");

    let client = Client::builder(TokioExecutor::new()).build_http::<Empty<bytes::Bytes>>();
    let ask = |user: &'static str| {
        let client = client.clone();
        async move {
            let req = http::Request::get(format!("http://{addr}/predict"))
                .header("x-user-id", user)
                .body(Empty::new())?;
            let res = client.request(req).await?;
            let color = res.headers()["x-served-by"].to_str()?.to_owned();
            let body = res.into_body().collect().await?.to_bytes();
            Ok::<_, Box<dyn std::error::Error + Send + Sync>>((
                color,
                String::from_utf8_lossy(&body).into_owned(),
            ))
        }
    };
    let users = ["alice", "bob", "carol", "dave", "erin", "frank"];
    let round = |title: &'static str| {
        let ask = &ask;
        async move {
            println!("{title}");
            for user in users {
                let (color, body) = ask(user).await?;
                println!("  {user:<6} -> {color:<5} {body}");
            }
            println!();
            Ok::<_, Box<dyn std::error::Error + Send + Sync>>(())
        }
    };

    round("1. blue (v1) is live").await?;

    handle.set_split(0.5)?;
    round("2. canary: 50% of users on green (v2), sticky per user").await?;

    handle.promote();
    round("3. promoted: green (v2) is live, blue stays warm").await?;
    tokio::time::timeout(Duration::from_secs(5), handle.drained(Color::Blue)).await?;
    println!("   blue has nothing in flight: safe to unload v1\n");

    handle.rollback();
    round("4. rolled back: blue (v1) is live again").await?;

    let status = handle.status();
    println!(
        "served: blue {}, green {}; generation {}; transitions: {}",
        status.blue.served,
        status.green.served,
        status.generation,
        status
            .history
            .iter()
            .map(|t| format!("{:?}", t.kind))
            .collect::<Vec<_>>()
            .join(" -> ")
    );
    server.abort();
    Ok(())
}
