//! The router and the shadow comparator mounted the ways axum offers:
//! `Router::route_layer`, `Router::nest_service` and `Router::layer`, through
//! real servers on 127.0.0.1:0. Each request must reach the color (or the
//! shadow) meant for it, and the counts the handles report must agree with
//! what the client saw. (`Router::layer` with a plain mirror, and with a
//! comparator over two models, is in `mirror_axum.rs` and `shadow_models.rs`;
//! `fallback_service` in `flip.rs`.)

mod support;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use axum::{routing::get, routing::post, Router};
use bytes::Bytes;
use http::StatusCode;
use http_body_util::Full;
use tower::Layer;
use tower_rollout::shadow::{Comparator, CompareSettings, ShadowComparator, ShadowReport};
use tower_rollout::{BlueGreenRouter, Color};

/// A version answering `"{name}:{body}"` on `POST /predict`.
fn version(name: &'static str) -> Router {
    Router::new().route(
        "/predict",
        post(move |body: String| async move { format!("{name}:{body}") }),
    )
}

fn request(addr: SocketAddr, path: &str, body: &str) -> http::Request<Full<Bytes>> {
    http::Request::post(format!("http://{addr}{path}"))
        .body(Full::new(Bytes::from(body.to_owned())))
        .unwrap()
}

/// Waits (bounded) until the comparator has settled `n` requests.
async fn report_of(n: u64, report: impl Fn() -> ShadowReport) -> ShadowReport {
    tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            let r = report();
            if r.total() >= n {
                return r;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("{n} comparisons settled: {:?}", report()))
}

/// `route_layer`: only the routes it wraps go through the router; a route
/// added after it, and paths that match no route, are not admitted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn router_as_route_layer_admits_only_the_routes_it_wraps() {
    let (layer, handle) = BlueGreenRouter::builder()
        .served_by_header("x-served-by")
        .layer(version("v2"))
        .unwrap();
    let app = version("v1")
        .route_layer(layer)
        .route("/health", get(|| async { "ok" }));
    let (addr, server) = support::serve(app).await;
    let client = support::client();

    handle.set_split(0.5).unwrap();
    let mut seen: HashMap<Color, u64> = HashMap::new();
    for i in 0..200 {
        let body = i.to_string();
        let a = support::send(&client, request(addr, "/predict", &body), "x-served-by")
            .await
            .unwrap();
        assert_eq!(a.status, StatusCode::OK);
        let (color, _) = support::served_by(a.header.as_deref().expect("served by a color"));
        let name = match color {
            Color::Blue => "v1",
            Color::Green => "v2",
        };
        assert_eq!(
            a.body,
            format!("{name}:{body}"),
            "the body of the color named"
        );
        *seen.entry(color).or_default() += 1;
    }
    for path in ["/health", "/missing"] {
        let req = http::Request::get(format!("http://{addr}{path}"))
            .body(Full::new(Bytes::new()))
            .unwrap();
        let a = support::send(&client, req, "x-served-by").await.unwrap();
        assert_eq!(a.header, None, "{path} bypasses the router");
        assert_eq!(a.status, if path == "/health" { 200 } else { 404 });
    }

    let status = handle.status();
    let (blue, green) = (seen[&Color::Blue], seen[&Color::Green]);
    assert!(
        blue > 0 && green > 0,
        "a 50% split over 200 requests: {blue}/{green}"
    );
    assert_eq!((status.blue.served, status.green.served), (blue, green));
    assert_eq!(status.blue.in_flight + status.green.in_flight, 0);
    server.abort();
}

/// `nest_service`: the router serves a prefix; both colors see the path with
/// the prefix stripped, sticky users stay on their color, and a promote moves
/// everyone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn router_under_nest_service_keeps_users_on_their_color() {
    let (router, handle) = BlueGreenRouter::builder()
        .sticky_header("x-user-id")
        .served_by_header("x-served-by")
        .build(version("v1"), version("v2"))
        .unwrap();
    let app = Router::new()
        .nest_service("/models/iris", router)
        .route("/health", get(|| async { "ok" }));
    let (addr, server) = support::serve(app).await;
    let client = support::client();

    handle.set_split(0.3).unwrap();
    let mut color_of: HashMap<String, Color> = HashMap::new();
    let mut served: HashMap<Color, u64> = HashMap::new();
    for round in 0..3 {
        for u in 0..40 {
            let user = format!("user-{u}");
            let mut req = request(addr, "/models/iris/predict", &user);
            req.headers_mut().insert("x-user-id", user.parse().unwrap());
            let a = support::send(&client, req, "x-served-by").await.unwrap();
            assert_eq!(
                a.status,
                StatusCode::OK,
                "the prefix is stripped for both colors"
            );
            let (color, _) = support::served_by(a.header.as_deref().unwrap());
            let name = if color == Color::Blue { "v1" } else { "v2" };
            assert_eq!(a.body, format!("{name}:{user}"));
            let first = *color_of.entry(user.clone()).or_insert(color);
            assert_eq!(first, color, "{user} moved in round {round}");
            *served.entry(color).or_default() += 1;
        }
    }
    let on_green = color_of.values().filter(|c| **c == Color::Green).count();
    assert!(
        on_green > 0 && on_green < 40,
        "a 30% canary over 40 users: {on_green}"
    );
    let status = handle.status();
    assert_eq!(
        (status.blue.served, status.green.served),
        (served[&Color::Blue], served[&Color::Green])
    );

    handle.promote().unwrap();
    for u in 0..40 {
        let mut req = request(addr, "/models/iris/predict", "x");
        req.headers_mut()
            .insert("x-user-id", format!("user-{u}").parse().unwrap());
        let a = support::send(&client, req, "x-served-by").await.unwrap();
        assert_eq!(
            (a.header.as_deref(), &a.body[..]),
            (Some("green; version=green"), &b"v2:x"[..])
        );
    }
    assert_eq!(handle.status().green.served, served[&Color::Green] + 40);
    let a = support::send(
        &client,
        request(addr, "/models/iris/nothing", ""),
        "x-served-by",
    )
    .await
    .unwrap();
    assert_eq!(
        (a.status, a.header.as_deref()),
        (StatusCode::NOT_FOUND, Some("green; version=green")),
        "a path under the prefix reaches the router, and the active version's 404"
    );
    server.abort();
}

/// `Router::layer` with the router's own comparator: what `mirror_standby`
/// copies to the standby is compared with the answers users got.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn router_layer_compares_the_standby_with_live_answers() {
    // v2 answers like v1 except for inputs containing "x".
    let v2 = Router::new().route(
        "/predict",
        post(|body: String| async move {
            if body.contains('x') {
                format!("v2 differs:{body}")
            } else {
                format!("v1:{body}")
            }
        }),
    );
    let (layer, handle) = BlueGreenRouter::builder()
        .compare(CompareSettings::new(Comparator::bytes()))
        .layer(v2)
        .unwrap();
    let app = version("v1").layer(layer);
    let (addr, server) = support::serve(app).await;
    let client = support::client();

    handle.mirror_standby(1.0).unwrap();
    let inputs: Vec<String> = (0..30)
        .map(|i| {
            if i % 5 == 0 {
                format!("x{i}")
            } else {
                format!("a{i}")
            }
        })
        .collect();
    for input in &inputs {
        let a = support::send(&client, request(addr, "/predict", input), "x-none")
            .await
            .unwrap();
        assert_eq!(a.body, format!("v1:{input}"), "users only see blue");
    }
    let differing = inputs.iter().filter(|i| i.contains('x')).count() as u64;
    let report = report_of(inputs.len() as u64, || handle.shadow_report()).await;
    assert_eq!(
        (report.matched, report.mismatched),
        (inputs.len() as u64 - differing, differing),
        "{report:?}"
    );
    assert_eq!(
        report.field_mismatches,
        vec![("body".to_string(), differing)]
    );
    assert_eq!(handle.mirror_stats().sampled, inputs.len() as u64);
    let status = handle.status();
    assert_eq!(
        (status.blue.served, status.green.served),
        (inputs.len() as u64, 0)
    );
    server.abort();
}

/// The comparator through `route_layer` (only `/predict` is compared, not
/// `/health`) and through `nest_service` (the shadow sees the path with the
/// prefix stripped, as the primary does).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shadow_comparator_as_route_layer_and_inside_nest_service() {
    // route_layer
    let (layer, shadow) = ShadowComparator::new(version("v1"), Comparator::bytes());
    let app = version("v1")
        .route_layer(layer)
        .route("/health", get(|| async { "ok" }));
    let (addr, server) = support::serve(app).await;
    let client = support::client();
    for i in 0..12 {
        let a = support::send(&client, request(addr, "/predict", &i.to_string()), "x")
            .await
            .unwrap();
        assert_eq!(a.body, format!("v1:{i}"));
        let req = http::Request::get(format!("http://{addr}/health"))
            .body(Full::new(Bytes::new()))
            .unwrap();
        assert_eq!(support::send(&client, req, "x").await.unwrap().body, "ok");
    }
    let report = report_of(12, || shadow.report()).await;
    // The same version behind both: every compared request matches.
    assert_eq!((report.matched, report.total()), (12, 12), "{report:?}");
    // Sampling is counted on the request path, so a /health copy would show here.
    assert_eq!(shadow.mirror_stats().sampled, 12, "/health is not compared");
    server.abort();

    // nest_service: the comparator wraps the nested service.
    let (layer, shadow) = ShadowComparator::new(version("v2"), Comparator::status());
    let app = Router::new().nest_service("/api", layer.layer(version("v1")));
    let (addr, server) = support::serve(app).await;
    for i in 0..10 {
        let a = support::send(&client, request(addr, "/api/predict", &i.to_string()), "x")
            .await
            .unwrap();
        assert_eq!(
            (a.status, a.body),
            (StatusCode::OK, Bytes::from(format!("v1:{i}")))
        );
    }
    let a = support::send(&client, request(addr, "/api/other", ""), "x")
        .await
        .unwrap();
    assert_eq!(a.status, StatusCode::NOT_FOUND);
    let report = report_of(11, || shadow.report()).await;
    // Had the shadow seen "/api/predict" it would have answered 404: a mismatch.
    assert_eq!((report.matched, report.mismatched), (11, 0), "{report:?}");
    server.abort();
}
