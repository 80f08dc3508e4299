//! Versions of an axum app behind one `BlueGreenRouter`, flipped while a
//! client sends requests, and a third version deployed into the idle color
//! without a restart; prints which color and version answered each request.
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
    // Versions of a "model": v1 answers 'cat', v2 'tiger', v3 'lion'.
    let version =
        |answer: &'static str| Router::new().route("/predict", get(move || async move { answer }));

    let (router, handle) = BlueGreenRouter::builder()
        .versions("v1", "v2")
        .served_by_header("x-served-by")
        .sticky_header("x-user-id")
        .build(version("v1: cat"), version("v2: tiger"))?;
    let deployer = router.deployer::<axum::body::Body>();

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
            // `blue; version=v1`
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
                println!("  {user:<6} -> {color:<18} {body}");
            }
            println!();
            Ok::<_, Box<dyn std::error::Error + Send + Sync>>(())
        }
    };

    round("1. blue (v1) is live").await?;

    handle.set_split(0.5)?;
    round("2. canary: 50% of users on green (v2), sticky per user").await?;

    handle.promote()?;
    round("3. promoted: green (v2) is live, blue (v1) stays warm").await?;
    tokio::time::timeout(Duration::from_secs(5), handle.drained(Color::Blue)).await?;
    println!("   blue has nothing in flight\n");

    let rolled = handle.rollback()?;
    let back = rolled.transition().map(|t| t.version.to_string());
    round("4. rolled back: blue (v1) is live again").await?;
    println!("   rollback returned to {}\n", back.unwrap_or_default());

    // v3 goes into the idle color (green, holding v2), made ready first.
    let deployed = deployer.deploy("v3", version("v3: lion")).await?;
    println!(
        "5. deployed v3 into {} (replacing {}), no restart",
        deployed.color,
        deployed.replaced()
    );
    let replaced = tokio::time::timeout(Duration::from_secs(5), deployed.retired()).await?;
    println!("   {replaced} dropped everywhere: its memory is released\n");
    handle.promote_to_version("v3")?;
    handle.promote_to_version("v3")?; // a retry changes nothing
    round("6. promoted to v3 (green)").await?;

    let status = handle.status();
    println!(
        "served: blue {}, green {}; generation {}; transitions: {}",
        status.blue.served,
        status.green.served,
        status.generation,
        status
            .history
            .iter()
            .map(|t| format!("{}", t.kind))
            .collect::<Vec<_>>()
            .join(" -> ")
    );
    server.abort();
    Ok(())
}
