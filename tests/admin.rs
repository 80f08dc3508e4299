//! The admin service through real axum servers on 127.0.0.1:0, mounted with
//! `Router::nest_service("/admin", admin)` next to the app a
//! `BlueGreenRouter` serves.
//!
//! Needs the `admin` feature: `cargo test -p tower-rollout --features admin
//! --test admin` (CI runs it with `--all-features`). Without it, the one test
//! left says so, as an ignored test, rather than the file vanishing silently.

#[cfg(not(feature = "admin"))]
#[test]
#[ignore = "needs the `admin` feature: cargo test -p tower-rollout --features admin --test admin"]
fn admin_tests_need_the_admin_feature() {}

#[cfg(feature = "admin")]
mod support;

#[cfg(feature = "admin")]
mod live {
    use std::net::SocketAddr;
    use std::time::Duration;

    use axum::{routing::get, routing::post, Router};
    use bytes::Bytes;
    use http::{HeaderMap, Method, StatusCode};
    use http_body_util::{BodyExt, Full};
    use serde_json::{json, Value};
    use tower_rollout::admin::{Admin, MAX_BODY_BYTES};
    use tower_rollout::mirror::MirrorLayer;
    use tower_rollout::{BlueGreenRouter, Color, Fleet, RolloutHandle};

    use super::support::{self, HttpClient};

    const TOKEN: &str = "t0ken-for-tests-0123456789abcdef";

    fn version(name: &'static str) -> Router {
        Router::new().route("/predict", post(move || async move { name }))
    }

    /// One model served by a router (which can mirror), its admin under
    /// `/admin`.
    async fn one_model() -> (SocketAddr, RolloutHandle, tokio::task::JoinHandle<()>) {
        let (router, handle) = BlueGreenRouter::builder()
            .versions("v1", "v2")
            .served_by_header("x-served-by")
            .mirror(MirrorLayer::settings())
            .build(version("v1"), version("v2"))
            .unwrap();
        let admin = Admin::builder()
            .token(TOKEN)
            .handle(handle.clone())
            .build()
            .unwrap();
        let app = Router::new()
            .nest_service("/admin", admin)
            .fallback_service(router);
        let (addr, server) = support::serve(app).await;
        (addr, handle, server)
    }

    struct Reply {
        status: StatusCode,
        headers: HeaderMap,
        json: Value,
    }

    /// Calls the admin with `token` (none: no `Authorization` header).
    async fn call_admin(
        client: &HttpClient,
        addr: SocketAddr,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: impl Into<Bytes>,
    ) -> Reply {
        let mut req = http::Request::builder()
            .method(method)
            .uri(format!("http://{addr}/admin{path}"));
        if let Some(token) = token {
            req = req.header("authorization", format!("Bearer {token}"));
        }
        let res = client
            .request(req.body(Full::new(body.into())).unwrap())
            .await
            .unwrap();
        let (parts, body) = res.into_parts();
        let bytes = body.collect().await.unwrap().to_bytes();
        assert_eq!(parts.headers["content-type"], "application/json");
        assert_eq!(parts.headers["cache-control"], "no-store");
        let json =
            serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("not JSON ({e}): {bytes:?}"));
        Reply {
            status: parts.status,
            headers: parts.headers,
            json,
        }
    }

    async fn admin_get(client: &HttpClient, addr: SocketAddr, path: &str) -> Reply {
        call_admin(client, addr, Method::GET, path, Some(TOKEN), "").await
    }

    async fn admin_post(client: &HttpClient, addr: SocketAddr, path: &str, body: &str) -> Reply {
        call_admin(
            client,
            addr,
            Method::POST,
            path,
            Some(TOKEN),
            body.to_owned(),
        )
        .await
    }

    /// `POST path` on the app; the body and the served-by header.
    async fn predict(
        client: &HttpClient,
        addr: SocketAddr,
        path: &str,
    ) -> (String, Option<String>) {
        let req = http::Request::post(format!("http://{addr}{path}"))
            .body(Full::new(Bytes::new()))
            .unwrap();
        let a = support::send(client, req, "x-served-by").await.unwrap();
        assert_eq!(a.status, StatusCode::OK);
        (String::from_utf8(a.body.to_vec()).unwrap(), a.header)
    }

    #[tokio::test]
    async fn a_deploy_through_the_admin_of_one_router_is_refused() {
        let (addr, handle, server) = one_model().await;
        let client = support::client();
        let before = handle.generation();
        let refused = admin_post(&client, addr, "/deploy", r#"{"version": "v3"}"#).await;
        assert_eq!(refused.status, StatusCode::CONFLICT, "{}", refused.json);
        assert!(refused.json["error"].as_str().unwrap().contains("replica"));
        assert_eq!(handle.generation(), before);
        drop(server);
    }

    #[tokio::test]
    async fn requests_without_the_right_token_are_refused_and_change_nothing() {
        let (addr, handle, server) = one_model().await;
        let client = support::client();

        let wrong_same_length: String = TOKEN
            .chars()
            .map(|c| if c == '0' { '1' } else { c })
            .collect();
        assert_eq!(wrong_same_length.len(), TOKEN.len());
        let cases: [(Option<&str>, &str); 5] = [
            (None, "missing bearer token"),
            (Some("nope"), "invalid bearer token"),
            (Some(&wrong_same_length), "invalid bearer token"),
            (Some(&TOKEN[..TOKEN.len() - 1]), "invalid bearer token"),
            (Some(""), "missing bearer token"), // `Bearer` alone: the server trims the space
        ];
        for (token, message) in cases {
            for (method, path) in [
                (Method::GET, "/status"),
                (Method::POST, "/promote"),
                (Method::POST, "/split"),
                (Method::GET, "/no-such-route"),
                (Method::GET, "/events"),
                (Method::GET, "/history"),
            ] {
                let r = call_admin(&client, addr, method, path, token, r#"{"fraction": 1}"#).await;
                assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{token:?} {path}");
                assert_eq!(r.json, json!({ "error": message }));
                let challenge = r.headers["www-authenticate"].to_str().unwrap();
                assert!(challenge.starts_with("Bearer"), "{challenge}");
            }
        }
        // Another scheme is no bearer token.
        let req = http::Request::post(format!("http://{addr}/admin/promote"))
            .header("authorization", format!("Basic {TOKEN}"))
            .body(Full::new(Bytes::new()))
            .unwrap();
        let a = support::send(&client, req, "www-authenticate")
            .await
            .unwrap();
        assert_eq!(
            (a.status, a.header.as_deref()),
            (StatusCode::UNAUTHORIZED, Some("Bearer"))
        );

        let status = handle.status();
        assert_eq!(
            (status.active, status.split, status.generation),
            (Color::Blue, 0.0, 0)
        );
        assert_eq!(predict(&client, addr, "/predict").await.0, "v1");
        server.abort();
    }

    #[tokio::test]
    async fn promote_and_rollback_show_in_status_and_change_who_answers() {
        let (addr, handle, server) = one_model().await;
        let client = support::client();

        for _ in 0..3 {
            assert_eq!(
                predict(&client, addr, "/predict").await,
                ("v1".into(), Some("blue; version=v1".into()))
            );
        }
        let s = admin_get(&client, addr, "/status").await;
        assert_eq!(s.status, StatusCode::OK);
        assert_eq!(
            (&s.json["active"], &s.json["standby"]),
            (&json!("blue"), &json!("green"))
        );
        assert_eq!(
            (&s.json["active_version"], &s.json["standby_version"]),
            (&json!("v1"), &json!("v2"))
        );
        assert_eq!(s.json["colors"]["green"]["version"], "v2");
        assert_eq!(s.json["generation"], 0);
        let blue = &s.json["colors"]["blue"];
        assert_eq!(
            (
                &blue["in_flight"],
                &blue["mirrored_in_flight"],
                &blue["served"]
            ),
            (&json!(0), &json!(0), &json!(3))
        );
        // Not measuring (no plan runs, Builder::measure not set).
        assert_eq!(
            (&blue["finished"], &s.json["measuring"]),
            (&json!(0), &json!(false))
        );
        assert_eq!(s.json["plan"], Value::Null);
        assert_eq!(s.json["colors"]["green"]["served"], 0);

        let p = admin_post(&client, addr, "/promote", "").await;
        assert_eq!(p.status, StatusCode::OK);
        assert_eq!(
            (&p.json["active"], &p.json["generation"], &p.json["changed"]),
            (&json!("green"), &json!(1), &json!(true))
        );
        assert_eq!(p.json["transitions"][0]["kind"], "promote");
        assert_eq!(
            p.json["transitions"][0]["from"],
            json!({ "color": "blue", "version": "v1" })
        );
        assert_eq!(p.json["transitions"][0]["version"], "v2");
        assert_eq!(handle.active(), Color::Green);
        assert_eq!(
            predict(&client, addr, "/predict").await,
            ("v2".into(), Some("green; version=v2".into()))
        );
        let s = admin_get(&client, addr, "/status").await;
        assert_eq!(s.json["colors"]["green"]["served"], 1);
        assert_eq!(s.json["colors"]["blue"]["served"], 3);

        let r = admin_post(&client, addr, "/rollback", "").await;
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(
            (&r.json["active"], &r.json["generation"]),
            (&json!("blue"), &json!(2))
        );
        let kinds: Vec<&str> = r.json["transitions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["kind"].as_str().unwrap())
            .collect();
        assert_eq!(kinds, ["promote", "rollback"]);
        assert_eq!(predict(&client, addr, "/predict").await.0, "v1");
        server.abort();
    }

    #[tokio::test]
    async fn split_and_mirror_take_a_fraction_and_report_the_copies() {
        let (addr, handle, server) = one_model().await;
        let client = support::client();

        let s = admin_post(&client, addr, "/split", r#"{"fraction": 1.0}"#).await;
        assert_eq!((s.status, &s.json["split"]), (StatusCode::OK, &json!(1.0)));
        assert_eq!(handle.status().split, 1.0);
        assert_eq!(
            predict(&client, addr, "/predict").await.0,
            "v2",
            "the canary takes all"
        );
        let s = admin_post(&client, addr, "/split", r#"{"fraction": 0}"#).await;
        assert_eq!(s.json["split"], 0.0);
        assert_eq!(predict(&client, addr, "/predict").await.0, "v1");

        let m = admin_post(&client, addr, "/mirror", r#"{"fraction": 1}"#).await;
        assert_eq!((m.status, &m.json["mirror"]), (StatusCode::OK, &json!(1.0)));
        for _ in 0..4 {
            assert_eq!(
                predict(&client, addr, "/predict").await.0,
                "v1",
                "users see blue"
            );
        }
        // The copies run in the background: wait (bounded) until they are done.
        let stats = tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                let s = admin_get(&client, addr, "/status").await.json;
                if s["mirror_stats"]["completed"] == 4 && s["mirror_stats"]["in_flight"] == 0 {
                    return s["mirror_stats"].clone();
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await
        .expect("four copies complete");
        assert_eq!(stats["sampled"], 4);
        assert_eq!(stats["latency"]["count"], 4);
        assert!(stats["latency"]["p50_us"].is_u64());
        assert_eq!(handle.mirror_stats().completed, 4);
        let s = admin_get(&client, addr, "/status").await.json;
        assert_eq!(
            (
                &s["colors"]["blue"]["served"],
                &s["colors"]["green"]["served"]
            ),
            (&json!(5), &json!(1))
        );
        assert_eq!(s["comparison"]["total"], 0, "no comparator configured");
        server.abort();
    }

    #[tokio::test]
    async fn bad_bodies_are_400_or_413_and_change_nothing() {
        let (addr, handle, server) = one_model().await;
        let client = support::client();

        for (path, body, says) in [
            ("/split", "{", "invalid JSON"),
            ("/split", "", r#"missing field "fraction""#),
            ("/split", r#"{"fraction": NaN}"#, "invalid JSON"),
            ("/split", "{}", r#"missing field "fraction""#),
            (
                "/split",
                r#"{"fracton": 0.1}"#,
                r#"unknown field "fracton""#,
            ),
            ("/split", r#"{"fraction": "0.1"}"#, "must be a number"),
            ("/mirror", "[0.5]", "expected a JSON object"),
        ] {
            let r = admin_post(&client, addr, path, body).await;
            assert_eq!(r.status, StatusCode::BAD_REQUEST, "{body}");
            let message = r.json["error"].as_str().unwrap();
            assert!(message.contains(says), "{body}: {message}");
        }
        for (path, fraction) in [("/split", 1.5), ("/split", -0.1), ("/mirror", 2.0)] {
            let r = admin_post(
                &client,
                addr,
                path,
                &format!(r#"{{"fraction": {fraction}}}"#),
            )
            .await;
            assert_eq!(r.status, StatusCode::BAD_REQUEST);
            // The handle's own message for the same value.
            let expected = if path == "/split" {
                handle.set_split(fraction).unwrap_err()
            } else {
                handle.mirror_standby(fraction).unwrap_err()
            };
            assert_eq!(
                r.json,
                json!({ "error": expected.to_string(), "reason": "invalid" })
            );
        }
        let big = format!(
            r#"{{"fraction": 0.1, "pad": "{}"}}"#,
            "x".repeat(MAX_BODY_BYTES)
        );
        let r = admin_post(&client, addr, "/split", &big).await;
        assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE);
        assert!(r.json["error"].as_str().unwrap().contains("larger than"));

        let status = handle.status();
        assert_eq!(
            (status.split, status.mirror, status.generation),
            (0.0, 0.0, 0)
        );
        server.abort();
    }

    #[tokio::test]
    async fn a_retried_promote_does_not_flip_back_and_a_stale_one_is_a_conflict() {
        let (addr, handle, server) = one_model().await;
        let client = support::client();

        // Promote *to* a color: the first call promotes, retries change
        // nothing (the flaky network's duplicate request is harmless).
        for attempt in 0..3 {
            let r = admin_post(&client, addr, "/promote", r#"{"to": "green"}"#).await;
            assert_eq!(r.status, StatusCode::OK, "attempt {attempt}");
            assert_eq!(r.json["active"], "green");
            assert_eq!(r.json["generation"], 1);
            assert_eq!(r.json["changed"], attempt == 0);
        }
        assert_eq!(predict(&client, addr, "/predict").await.0, "v2");
        // The same by version.
        let r = admin_post(&client, addr, "/promote", r#"{"version": "v2"}"#).await;
        assert_eq!(
            (r.status, &r.json["changed"]),
            (StatusCode::OK, &json!(false))
        );
        let r = admin_post(&client, addr, "/promote", r#"{"version": "v1"}"#).await;
        assert_eq!(
            (r.status, &r.json["active"]),
            (StatusCode::OK, &json!("blue"))
        );
        assert_eq!(r.json["generation"], 2);
        let r = admin_post(&client, addr, "/promote", r#"{"version": "v9"}"#).await;
        assert_eq!(
            (r.status, &r.json["reason"]),
            (StatusCode::CONFLICT, &json!("unknown_version"))
        );

        // Compare-and-set: the generation the caller saw.
        let r = admin_post(&client, addr, "/promote", r#"{"expect_generation": 1}"#).await;
        assert_eq!(r.status, StatusCode::CONFLICT);
        assert_eq!(
            (
                &r.json["reason"],
                &r.json["expected_generation"],
                &r.json["generation"]
            ),
            (&json!("conflict"), &json!(1), &json!(2))
        );
        assert_eq!(handle.active(), Color::Blue, "the conflict changed nothing");
        let r = admin_post(
            &client,
            addr,
            "/split",
            r#"{"fraction": 0.5, "expect_generation": 2}"#,
        )
        .await;
        assert_eq!((r.status, &r.json["split"]), (StatusCode::OK, &json!(0.5)));
        let r = admin_post(&client, addr, "/rollback", r#"{"expect_generation": 2}"#).await;
        assert_eq!(r.status, StatusCode::CONFLICT);
        let r = admin_post(&client, addr, "/rollback", r#"{"expect_generation": 3}"#).await;
        assert_eq!((r.status, &r.json["split"]), (StatusCode::OK, &json!(0.0)));

        // A rollback with nothing to undo changes nothing.
        let generation = handle.generation();
        let r = admin_post(&client, addr, "/rollback", "").await;
        assert_eq!(
            (r.status, &r.json["changed"]),
            (StatusCode::OK, &json!(false))
        );
        assert_eq!(handle.generation(), generation);

        // Bad conditions are 400 with the field named.
        for (body, says) in [
            (r#"{"to": "purple"}"#, "\"to\""),
            (r#"{"to": "green", "version": "v2"}"#, "not both"),
            (r#"{"expect_generation": "3"}"#, "expect_generation"),
            (r#"{"force": 1}"#, "force"),
            (r#"{"fraction": 0.1}"#, "unknown field"),
        ] {
            let r = admin_post(&client, addr, "/promote", body).await;
            assert_eq!(r.status, StatusCode::BAD_REQUEST, "{body}");
            let message = r.json["error"].as_str().unwrap();
            assert!(message.contains(says), "{body}: {message}");
        }
        assert_eq!(handle.generation(), generation);
        server.abort();
    }

    #[tokio::test]
    async fn unknown_paths_are_404_and_wrong_methods_405() {
        let (addr, _handle, server) = one_model().await;
        let client = support::client();
        for path in [
            "/nope",
            "/status/",
            "/Status",
            "/models",
            "/models/x/status",
        ] {
            let r = admin_get(&client, addr, path).await;
            assert_eq!(
                (r.status, &r.json),
                (StatusCode::NOT_FOUND, &json!({ "error": "not found" })),
                "{path}"
            );
        }
        for (method, path, allow) in [
            (Method::GET, "/promote", "POST, OPTIONS"),
            (Method::GET, "/split", "POST, OPTIONS"),
            (Method::PUT, "/rollback", "POST, OPTIONS"),
            (Method::POST, "/status", "GET, HEAD, OPTIONS"),
            (Method::DELETE, "/status", "GET, HEAD, OPTIONS"),
        ] {
            let r = call_admin(&client, addr, method.clone(), path, Some(TOKEN), "").await;
            assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED, "{method} {path}");
            assert_eq!(r.headers["allow"], allow);
        }
        server.abort();
    }

    #[tokio::test]
    async fn fleet_routes_promote_models_independently() {
        let (sentiment, sentiment_handle) =
            BlueGreenRouter::new(version("sentiment-v1"), version("sentiment-v2"));
        let (vision, vision_handle) =
            BlueGreenRouter::new(version("vision-v1"), version("vision-v2"));
        let fleet = Fleet::new();
        fleet.insert("sentiment", sentiment_handle).unwrap();
        fleet.insert("vision", vision_handle.clone()).unwrap();
        let admin = Admin::builder()
            .token(TOKEN)
            .fleet(fleet.clone())
            .build()
            .unwrap();
        let app = Router::new()
            .route("/health", get(|| async { "ok" }))
            .nest_service("/sentiment", sentiment)
            .nest_service("/vision", vision)
            .nest_service("/admin", admin);
        let (addr, server) = support::serve(app).await;
        let client = support::client();

        let m = admin_get(&client, addr, "/models").await;
        assert_eq!(
            (m.status, &m.json),
            (
                StatusCode::OK,
                &json!({ "models": ["sentiment", "vision"] })
            )
        );

        let p = admin_post(&client, addr, "/models/vision/promote", "").await;
        assert_eq!(
            (p.status, &p.json["active"]),
            (StatusCode::OK, &json!("green"))
        );
        assert_eq!(vision_handle.active(), Color::Green);
        assert_eq!(
            predict(&client, addr, "/vision/predict").await.0,
            "vision-v2"
        );
        assert_eq!(
            predict(&client, addr, "/sentiment/predict").await.0,
            "sentiment-v1"
        );

        let s = admin_get(&client, addr, "/models/sentiment/status").await;
        assert_eq!(
            (&s.json["active"], &s.json["generation"]),
            (&json!("blue"), &json!(0))
        );
        assert_eq!(s.json["colors"]["blue"]["served"], 1);

        let s = admin_post(
            &client,
            addr,
            "/models/sentiment/split",
            r#"{"fraction": 1}"#,
        )
        .await;
        assert_eq!(s.json["split"], 1.0);
        assert_eq!(
            predict(&client, addr, "/sentiment/predict").await.0,
            "sentiment-v2"
        );
        let all = admin_get(&client, addr, "/status").await.json;
        assert_eq!(all["models"]["sentiment"]["active"], "blue");
        assert_eq!(all["models"]["sentiment"]["split"], 1.0);
        assert_eq!(all["models"]["vision"]["active"], "green");
        assert_eq!(all["models"]["vision"]["split"], 0.0);

        // Rolling back vision leaves sentiment's canary alone.
        admin_post(&client, addr, "/models/vision/rollback", "").await;
        assert_eq!(
            predict(&client, addr, "/vision/predict").await.0,
            "vision-v1"
        );
        assert_eq!(
            predict(&client, addr, "/sentiment/predict").await.0,
            "sentiment-v2"
        );

        let r = admin_post(&client, addr, "/models/speech/promote", "").await;
        assert_eq!(
            (r.status, &r.json),
            (
                StatusCode::NOT_FOUND,
                &json!({ "error": "unknown model \"speech\"" })
            )
        );
        let r = admin_get(&client, addr, "/models/vision").await;
        assert_eq!(r.status, StatusCode::NOT_FOUND);
        let r = admin_post(&client, addr, "/models", "").await;
        assert_eq!(
            (r.status, &r.headers["allow"]),
            (
                StatusCode::METHOD_NOT_ALLOWED,
                &"GET, HEAD, OPTIONS".parse::<http::HeaderValue>().unwrap()
            )
        );
        let r = admin_post(&client, addr, "/models/vision/split", r#"{"fraction": 3}"#).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST);
        let r = call_admin(&client, addr, Method::GET, "/models", Some("wrong"), "").await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);

        // A model added after the admin was built is served too.
        let (_, speech) = BlueGreenRouter::new(version("a"), version("b"));
        fleet.insert("speech", speech.clone()).unwrap();
        assert_eq!(
            admin_get(&client, addr, "/models").await.json["models"],
            json!(["sentiment", "speech", "vision"])
        );
        assert_eq!(
            admin_post(&client, addr, "/models/speech/promote", "")
                .await
                .status,
            StatusCode::OK
        );
        assert_eq!(speech.active(), Color::Green);
        server.abort();
    }

    #[tokio::test]
    async fn the_rollout_plan_shows_in_status_and_is_steered_from_it() {
        use tower_rollout::plan::{AbortReason, Gate, PlanOutcome, PlanState, RolloutPlan};
        let (addr, handle, server) = one_model().await;
        let client = support::client();

        // No plan yet: the plan routes have nothing to steer.
        let r = admin_post(&client, addr, "/plan-pause", "").await;
        assert_eq!(r.status, StatusCode::CONFLICT);
        assert!(r.json["error"]
            .as_str()
            .unwrap()
            .contains("no rollout plan"));

        let run = RolloutPlan::linear(0.25, Duration::from_secs(600), 1.0)
            .gate(Gate::error_rate(0.05).min_sample(1000))
            .build()
            .unwrap()
            .start(&handle)
            .unwrap();
        let s = admin_get(&client, addr, "/status").await;
        assert_eq!(s.json["measuring"], json!(true));
        let plan = &s.json["plan"];
        assert_eq!(
            (&plan["state"], &plan["phase"], &plan["candidate"]),
            (
                &json!("running"),
                &json!("canary 1/4 at 0.25"),
                &json!("green")
            )
        );
        assert_eq!(s.json["split"], json!(0.25));
        let events: Vec<&str> = plan["history"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["event"].as_str().unwrap())
            .collect();
        assert_eq!(events[0], "started: green rolls out, blue is stable");

        let r = admin_post(&client, addr, "/plan-pause", "").await;
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(r.json["plan"]["state"], json!("paused"));
        assert_eq!(run.status().state, PlanState::Paused);
        let r = admin_post(&client, addr, "/plan-pause", "").await;
        assert_eq!(r.status, StatusCode::CONFLICT, "already paused");
        let r = admin_post(&client, addr, "/plan-resume", "").await;
        assert_eq!(r.json["plan"]["state"], json!("running"));

        let r = admin_post(&client, addr, "/plan-abort", "").await;
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(
            (&r.json["active"], &r.json["split"]),
            (&json!("blue"), &json!(0.0))
        );
        assert_eq!(r.json["plan"]["state"], json!("aborted"));
        assert!(matches!(
            run.finished().await,
            PlanOutcome::Aborted(AbortReason::Manual(_))
        ));
        let r = admin_post(&client, addr, "/plan-promote", "").await;
        assert_eq!(r.status, StatusCode::CONFLICT, "the plan has finished");
        assert_eq!(predict(&client, addr, "/predict").await.0, "v1");
        server.abort();
    }

    /// Reads server-sent events from `body` until `want` has seen one it
    /// accepts (or the deadline passes): each as (event name, data).
    async fn next_event(
        body: &mut hyper::body::Incoming,
        buffer: &mut String,
        mut want: impl FnMut(&str, &Value) -> bool,
    ) -> (String, Value) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        loop {
            while let Some(cut) = buffer.find("\n\n") {
                let frame: String = buffer.drain(..cut + 2).collect();
                let mut name = String::new();
                let mut data = Value::Null;
                for line in frame.lines() {
                    if let Some(n) = line.strip_prefix("event: ") {
                        name = n.to_owned();
                    } else if let Some(d) = line.strip_prefix("data: ") {
                        data = serde_json::from_str(d).unwrap();
                    }
                }
                if want(&name, &data) {
                    return (name, data);
                }
            }
            let frame = tokio::time::timeout_at(deadline, body.frame())
                .await
                .expect("no such event within 5 s")
                .expect("the stream ended")
                .unwrap();
            if let Ok(data) = frame.into_data() {
                buffer.push_str(std::str::from_utf8(&data).unwrap());
            }
        }
    }

    async fn open_events(
        client: &HttpClient,
        addr: SocketAddr,
        path: &str,
    ) -> http::Response<hyper::body::Incoming> {
        let req = http::Request::get(format!("http://{addr}/admin{path}"))
            .header("authorization", format!("Bearer {TOKEN}"))
            .body(Full::new(Bytes::new()))
            .unwrap();
        client.request(req).await.unwrap()
    }

    #[tokio::test]
    async fn the_dashboard_page_needs_no_token_and_holds_no_data() {
        let (addr, handle, server) = one_model().await;
        let client = support::client();
        let page = |path: &'static str| {
            let client = client.clone();
            async move {
                let req = http::Request::get(format!("http://{addr}{path}"))
                    .body(Full::new(Bytes::new()))
                    .unwrap();
                let res = client.request(req).await.unwrap();
                let (parts, body) = res.into_parts();
                let text =
                    String::from_utf8(body.collect().await.unwrap().to_bytes().to_vec()).unwrap();
                (parts, text)
            }
        };
        let (parts, before) = page("/admin/").await;
        assert_eq!(parts.status, StatusCode::OK);
        assert_eq!(parts.headers["content-type"], "text/html; charset=utf-8");
        let policy = parts.headers["content-security-policy"].to_str().unwrap();
        assert!(
            policy.contains("default-src 'none'") && policy.contains("connect-src 'self'"),
            "{policy}"
        );
        assert!(before.starts_with("<!doctype html>") && before.contains("id=\"token-form\""));
        assert!(!before.contains(TOKEN));
        // The same page whatever the state: it holds no data (only its
        // nonce differs from one answer to the next).
        handle.promote().unwrap();
        let (_, after) = page("/admin/index.html").await;
        let no_nonce = |page: &str| {
            page.split("nonce=\"")
                .enumerate()
                .map(|(i, part)| if i == 0 { part } else { &part[32..] })
                .collect::<String>()
        };
        assert_eq!(no_nonce(&before), no_nonce(&after));
        let (parts, _) = page("/admin").await;
        assert_eq!(parts.status, StatusCode::OK, "without the slash too");
        server.abort();
    }

    #[tokio::test]
    async fn the_event_stream_pushes_changes_and_samples() {
        let (addr, handle, server) = one_model().await;
        let client = support::client();
        let res = open_events(&client, addr, "/events").await;
        assert_eq!(res.status(), StatusCode::OK);
        assert_eq!(res.headers()["content-type"], "text/event-stream");
        let mut body = res.into_body();
        let mut buffer = String::new();

        let (_, hello) = next_event(&mut body, &mut buffer, |n, _| n == "hello").await;
        assert_eq!(
            (&hello["mode"], &hello["models"]),
            (&json!("handle"), &json!([null]))
        );
        let (_, first) = next_event(&mut body, &mut buffer, |n, _| n == "status").await;
        assert_eq!(first["status"]["generation"], 0);

        // A promote shows as a status event within a second.
        let promoted = std::time::Instant::now();
        handle.promote().unwrap();
        let (_, event) = next_event(&mut body, &mut buffer, |n, d| {
            n == "status" && d["status"]["generation"] == 1
        })
        .await;
        assert!(
            promoted.elapsed() < Duration::from_secs(1),
            "{:?}",
            promoted.elapsed()
        );
        assert_eq!(event["status"]["active"], "green");

        // Samples of the counters, once a second; the history keeps them.
        predict(&client, addr, "/predict").await;
        let (_, sample) = next_event(&mut body, &mut buffer, |n, d| {
            n == "sample" && d["models"][0]["colors"]["green"]["served"] == 1
        })
        .await;
        assert_eq!(sample["models"][0]["active"], "green");
        let history = admin_get(&client, addr, "/history").await;
        let seqs: Vec<u64> = history.json["samples"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["seq"].as_u64().unwrap())
            .collect();
        assert!(seqs.contains(&sample["seq"].as_u64().unwrap()), "{seqs:?}");
        assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
        server.abort();
    }

    #[tokio::test]
    async fn a_fleet_streams_every_model_and_one_model_s_status() {
        let fleet = Fleet::new();
        let (_, a) = BlueGreenRouter::new(version("a1"), version("a2"));
        let (_, b) = BlueGreenRouter::new(version("b1"), version("b2"));
        fleet.insert("a", a).unwrap();
        fleet.insert("b", b.clone()).unwrap();
        let admin = Admin::builder().token(TOKEN).fleet(fleet).build().unwrap();
        let (addr, server) =
            support::serve(Router::new().nest_service("/admin", admin.clone())).await;
        let client = support::client();

        let mut all = open_events(&client, addr, "/events").await.into_body();
        let mut buffer = String::new();
        let (_, hello) = next_event(&mut all, &mut buffer, |n, _| n == "hello").await;
        assert_eq!(hello["models"], json!(["a", "b"]));
        let (_, sample) = next_event(&mut all, &mut buffer, |n, _| n == "sample").await;
        let names: Vec<&Value> = sample["models"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| &m["model"])
            .collect();
        assert_eq!(names, [&json!("a"), &json!("b")]);

        let mut one = open_events(&client, addr, "/models/b/events")
            .await
            .into_body();
        let mut buffer = String::new();
        b.set_split(0.5).unwrap();
        let (_, status) = next_event(&mut one, &mut buffer, |n, d| {
            n == "status" && d["status"]["split"] == 0.5
        })
        .await;
        assert_eq!(status["model"], "b");
        let r = call_admin(
            &client,
            addr,
            Method::GET,
            "/models/c/events",
            Some(TOKEN),
            "",
        )
        .await;
        assert_eq!(r.status, StatusCode::NOT_FOUND);

        // Closing the streams ends them (a graceful shutdown need not wait
        // for dashboards) and refuses new ones.
        admin.close_streams();
        let ended = tokio::time::timeout(Duration::from_secs(2), async {
            while let Some(frame) = one.frame().await {
                frame.unwrap();
            }
        })
        .await;
        assert!(ended.is_ok(), "the stream did not end");
        let r = call_admin(&client, addr, Method::GET, "/events", Some(TOKEN), "").await;
        assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
        server.abort();
    }
}
