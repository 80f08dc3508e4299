//! The admin of a replica kept in a store, through real axum servers and a
//! real HTTP client: a promote through one replica's admin is served by the
//! other, `/ready` answers a readiness probe, a store outage gives 503 on
//! writes and the state stays, a stale generation gives 409.
#![cfg(all(feature = "admin", feature = "store"))]

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use axum::{routing::post, Router};
use bytes::Bytes;
use http::{Method, StatusCode};
use http_body_util::{BodyExt, Full};
use serde_json::{json, Value};
use tower_rollout::admin::Admin;
use tower_rollout::store::{MemoryStore, Replica};
use tower_rollout::{BlueGreenRouter, Color, RolloutHandle};

const TOKEN: &str = "t0ken-for-tests-0123456789abcdef";

/// One replica: its router under `/`, its admin under `/admin`.
async fn replica(store: &MemoryStore) -> (SocketAddr, RolloutHandle, Replica) {
    let version =
        |name: &'static str| Router::new().route("/predict", post(move || async move { name }));
    let (router, handle) = BlueGreenRouter::builder()
        .versions("v1", "v2")
        .build(version("v1"), version("v2"))
        .unwrap();
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let id = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let replica = Replica::builder(&handle, store.clone(), "iris")
        .id(format!("replica-{id}"))
        .timeout(Duration::from_millis(300))
        .start()
        .await
        .unwrap();
    let admin = Admin::builder()
        .token(TOKEN)
        .replica(replica.clone())
        .build()
        .unwrap();
    let app = Router::new()
        .nest_service("/admin", admin)
        .fallback_service(router);
    let (addr, _server) = support::serve(app).await;
    (addr, handle, replica)
}

async fn call(addr: SocketAddr, method: Method, path: &str, body: Value) -> (StatusCode, Value) {
    let req = http::Request::builder()
        .method(method)
        .uri(format!("http://{addr}{path}"))
        .header("authorization", format!("Bearer {TOKEN}"))
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap();
    let res = support::client().request(req).await.unwrap();
    let status = res.status();
    let bytes = res.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

/// `GET /admin/ready`, without the token: the status and the document.
async fn ready(addr: SocketAddr) -> (StatusCode, Value) {
    let req = http::Request::get(format!("http://{addr}/admin/ready"))
        .body(Full::new(Bytes::new()))
        .unwrap();
    let res = support::client().request(req).await.unwrap();
    let code = res.status();
    let bytes = res.into_body().collect().await.unwrap().to_bytes();
    (code, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

async fn predict(addr: SocketAddr) -> String {
    let req = http::Request::post(format!("http://{addr}/predict"))
        .body(Full::new(Bytes::new()))
        .unwrap();
    let res = support::client().request(req).await.unwrap();
    let bytes = res.into_body().collect().await.unwrap().to_bytes();
    String::from_utf8(bytes.to_vec()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_promote_through_one_replicas_admin_is_served_by_the_other() {
    let store = MemoryStore::new();
    let (a, handle_a, ra) = replica(&store).await;
    let (b, handle_b, rb) = replica(&store).await;

    let (code, status) = call(a, Method::GET, "/admin/status", Value::Null).await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(status["replica"]["source"], "store");
    let generation = status["generation"].as_u64().unwrap();

    let (code, after) = call(
        a,
        Method::POST,
        "/admin/promote",
        json!({ "expect_generation": generation }),
    )
    .await;
    assert_eq!(code, StatusCode::OK, "{after}");
    assert_eq!(after["changed"], true);
    rb.applied(ra.status().applied_revision).await;
    assert_eq!(handle_b.active(), Color::Green);
    assert_eq!(predict(b).await, "v2");

    // The same generation again, through the other replica: a conflict.
    let (code, refused) = call(
        b,
        Method::POST,
        "/admin/split",
        json!({ "fraction": 0.5, "expect_generation": generation }),
    )
    .await;
    assert_eq!(code, StatusCode::CONFLICT, "{refused}");
    assert_eq!(refused["reason"], "conflict");
    assert_eq!(refused["generation"], generation + 1);

    // Ready, without the token.
    let (code, doc) = ready(b).await;
    assert_eq!(code, StatusCode::OK, "{doc}");

    // A plan started through one replica's admin is stored and driven
    // fleet-wide: the other replica shows it and serves its split.
    let (code, started) = call(
        a,
        Method::POST,
        "/admin/plan",
        json!({ "steps": [{ "split": 0.25, "bake_seconds": 60 }] }),
    )
    .await;
    assert_eq!(code, StatusCode::OK, "{started}");
    let plan = &started["replica"]["plan"];
    assert_eq!(plan["state"], "running", "{started}");
    assert_eq!(plan["phase"], "canary 1/1 at 0.25", "{started}");
    // Also where a router's own plan is shown (the dashboard, the CLI).
    assert_eq!(started["plan"]["fleet"], true, "{started}");
    assert_eq!(started["plan"]["phase"], "canary 1/1 at 0.25");
    assert_eq!(started["plan"]["stable"], "green");
    rb.applied(ra.status().applied_revision).await;
    assert_eq!(handle_b.status().split, 0.25);
    let (code, doc) = call(b, Method::GET, "/admin/status", json!({})).await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(doc["replica"]["plan"]["id"], plan["id"], "{doc}");
    // A second plan is refused while it runs; a bad document names its field.
    let (code, _) = call(
        b,
        Method::POST,
        "/admin/plan",
        json!({ "steps": [{ "split": 0.1, "bake_seconds": 1 }] }),
    )
    .await;
    assert_eq!(code, StatusCode::CONFLICT);
    let (code, bad) = call(b, Method::POST, "/admin/plan", json!({ "steps": 3 })).await;
    assert_eq!(code, StatusCode::BAD_REQUEST, "{bad}");
    assert_eq!(bad["field"], "steps");
    // Aborted through the other replica's admin: both serve green to all
    // again (green was the active color when the plan started).
    let (code, aborted) = call(b, Method::POST, "/admin/plan-abort", json!({})).await;
    assert_eq!(code, StatusCode::OK, "{aborted}");
    assert_eq!(aborted["replica"]["plan"]["state"], "aborted", "{aborted}");
    ra.applied(rb.status().applied_revision).await;
    assert_eq!(handle_a.status().split, 0.0);
    let (code, _) = call(a, Method::POST, "/admin/plan-pause", json!({})).await;
    assert_eq!(code, StatusCode::CONFLICT, "no plan runs any more");

    // A deploy names the standby's next version on every replica; with no
    // loader here nobody holds it, so a promote to it is refused.
    let (code, bad) = call(a, Method::POST, "/admin/deploy", json!({ "to": "blue" })).await;
    assert_eq!(code, StatusCode::BAD_REQUEST, "{bad}");
    let (code, deployed) = call(a, Method::POST, "/admin/deploy", json!({ "version": "v3" })).await;
    assert_eq!(code, StatusCode::OK, "{deployed}");
    assert_eq!(deployed["changed"], true);
    let (code, refused) = call(b, Method::POST, "/admin/promote", json!({})).await;
    assert_eq!(code, StatusCode::CONFLICT, "{refused}");
    assert_eq!(refused["reason"], "not_everywhere", "{refused}");
    let (code, refused) = call(b, Method::POST, "/admin/deploy", json!({ "version": "v2" })).await;
    assert_eq!(
        code,
        StatusCode::CONFLICT,
        "the active color's version: {refused}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn while_the_store_is_down_writes_get_503_and_users_the_last_state() {
    let store = MemoryStore::new();
    let (a, _, ra) = replica(&store).await;
    let (code, _) = call(a, Method::POST, "/admin/promote", json!({})).await;
    assert_eq!(code, StatusCode::OK);
    store.set_available(false);
    let (code, refused) = call(a, Method::POST, "/admin/rollback", json!({})).await;
    assert_eq!(code, StatusCode::SERVICE_UNAVAILABLE, "{refused}");
    assert_eq!(refused["reason"], "store_unavailable");
    let plan = json!({ "steps": [{ "split": 0.1, "bake_seconds": 1 }] });
    let (code, refused) = call(a, Method::POST, "/admin/plan", plan).await;
    assert_eq!(code, StatusCode::SERVICE_UNAVAILABLE, "{refused}");
    for _ in 0..10 {
        assert_eq!(predict(a).await, "v2");
    }
    // Still ready: it serves the last state it applied (fail static).
    let (code, doc) = ready(a).await;
    assert_eq!(code, StatusCode::OK, "{doc}");
    assert!(ra.status().applied_revision > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_that_never_reached_the_store_is_not_ready() {
    let store = MemoryStore::new();
    store.set_available(false);
    let (a, _, _) = replica(&store).await;
    let (code, doc) = ready(a).await;
    assert_eq!(code, StatusCode::SERVICE_UNAVAILABLE, "{doc}");
    assert_eq!(doc["source"], "default");
    assert_eq!(predict(a).await, "v1", "serving its own default");
}
