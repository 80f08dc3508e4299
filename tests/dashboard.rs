//! The admin's dashboard in a real headless Chromium, driven over WebDriver
//! (chromedriver, through fantoccini) against real axum servers on
//! 127.0.0.1:0: the page loads without console errors, refuses a wrong
//! token, shows the live version, follows a promote made through the JSON
//! API within a second, promotes on a click (changing who answers
//! `/predict`), says so when it was stale, shows a running plan's step, and
//! lists a fleet's models with a filter. A screenshot is saved to
//! `target/dashboard-screenshot.png`.
//!
//! Needs Debian's `chromium` and `chromium-driver` (`scripts/test` installs
//! them); without them the test fails and says how to install them.

#[cfg(feature = "admin")]
mod support;

#[cfg(feature = "admin")]
mod browser {
    use std::net::SocketAddr;
    use std::path::Path;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Arc;
    use std::time::Duration;

    use axum::{routing::post, Router};
    use bytes::Bytes;
    use fantoccini::Locator;
    use http::Method;
    use http_body_util::{BodyExt, Full};
    use serde_json::{json, Value};
    use tower_rollout::admin::Admin;
    use tower_rollout::shadow::{CompareSettings, JsonCompare};
    use tower_rollout::{BlueGreenRouter, Color, Fleet, RolloutHandle};

    use super::support::browser::{
        click, click_and_confirm, out_dir, severe, sign_in, start_browser, start_driver, text,
        wait_text, DEADLINE,
    };
    use super::support::{self, HttpClient};

    const TOKEN: &str = "dashboard-test-token-0123456789abcdef";

    fn version(name: &'static str) -> Router {
        Router::new().route("/predict", post(move || async move { name }))
    }

    /// v1 and v2 of a classifier: v2 disagrees on the label of one request
    /// in ten (and scores within the comparison's tolerance).
    fn classifier(v2: bool) -> Router {
        let asked = Arc::new(AtomicU64::new(0));
        Router::new().route(
            "/predict",
            post(move || {
                let n = asked.fetch_add(1, Ordering::Relaxed);
                async move {
                    let label = if v2 && n % 10 == 9 { "tiger" } else { "cat" };
                    let score = if v2 { 0.93 } else { 0.91 };
                    axum::Json(json!({ "label": label, "score": score }))
                }
            }),
        )
    }

    // === the servers ===

    async fn admin_call(
        client: &HttpClient,
        addr: SocketAddr,
        path: &str,
        body: &str,
    ) -> (http::StatusCode, Value) {
        let req = http::Request::builder()
            .method(Method::POST)
            .uri(format!("http://{addr}/admin{path}"))
            .header("authorization", format!("Bearer {TOKEN}"))
            .body(Full::new(Bytes::from(body.to_owned())))
            .unwrap();
        let res = client.request(req).await.unwrap();
        let status = res.status();
        let bytes = res.into_body().collect().await.unwrap().to_bytes();
        (status, serde_json::from_slice(&bytes).unwrap())
    }

    /// Who answers `/predict`: the served-by header and the body.
    async fn who_answers(client: &HttpClient, addr: SocketAddr) -> (String, String) {
        let req = http::Request::post(format!("http://{addr}/predict"))
            .body(Full::new(Bytes::new()))
            .unwrap();
        let a = support::send(client, req, "x-served-by").await.unwrap();
        let body = String::from_utf8(a.body.to_vec()).unwrap();
        (a.header.unwrap_or_default(), body)
    }

    /// A request to `/predict` every 20 ms, so the charts have traffic.
    fn traffic(client: HttpClient, addr: SocketAddr) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            loop {
                let _ = who_answers(&client, addr).await;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    }

    /// One classifier, v1 and v2 compared, its admin under `/admin`
    /// showing the last mismatches' diffs.
    async fn one_model() -> (SocketAddr, RolloutHandle) {
        let json = JsonCompare::new().abs_tolerance(0.05).build().unwrap();
        let (router, handle) = BlueGreenRouter::builder()
            .versions("v1", "v2")
            .served_by_header("x-served-by")
            .compare(CompareSettings::new(json).exemplars(8))
            .build(classifier(false), classifier(true))
            .unwrap();
        let admin = Admin::builder()
            .token(TOKEN)
            .handle(handle.clone())
            .exemplar_diffs(3)
            .build()
            .unwrap();
        let app = Router::new()
            .nest_service("/admin", admin)
            .fallback_service(router);
        let (addr, _server) = support::serve(app).await;
        (addr, handle)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_dashboard_in_headless_chromium() {
        let (addr, handle) = one_model().await;
        let client = support::client();
        let load = traffic(client.clone(), addr);
        let driver = start_driver().await;
        let profile = Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("chromium-profile-{}", std::process::id()));
        let browser = start_browser(&driver, &profile).await;

        // The page loads (without the token: it holds no data) and asks for it.
        browser
            .goto(&format!("http://{addr}/admin/"))
            .await
            .unwrap();
        browser
            .wait()
            .at_most(DEADLINE)
            .for_element(Locator::Id("token-input"))
            .await
            .unwrap();
        assert_eq!(severe(&browser).await, Vec::<String>::new(), "on load");

        // A wrong token is refused on the page, with a clear message.
        sign_in(&browser, "not-the-token").await;
        wait_text(&browser, "token-error", "a refusal", |t| {
            t.contains("refused this token") && t.contains("401")
        })
        .await;
        assert_eq!(text(&browser, "live-version").await, "", "no data shown");
        // Chromium reports the refused calls as failed loads; nothing else.
        for entry in severe(&browser).await {
            assert!(entry.contains("401"), "unexpected console error: {entry}");
        }

        // The right token: the live version.
        sign_in(&browser, TOKEN).await;
        wait_text(&browser, "live-version", "v1", |t| t == "v1").await;
        let stored =
            "return [localStorage.length, sessionStorage.length, document.cookie, location.href];";
        let kept = browser.execute(stored, vec![]).await.unwrap();
        assert_eq!(kept, json!([0, 0, "", format!("http://{addr}/admin/")]));
        // Not a replica's admin: no replica section, not even an empty one.
        let replica_view = "const c = document.getElementById('replica-card'); \
                            return [c.hidden, c.getBoundingClientRect().height];";
        let hidden = browser.execute(replica_view, vec![]).await.unwrap();
        assert_eq!(hidden, json!([true, 0]), "no replica view");

        // A promote through the JSON API shows within a second.
        let (code, _) = admin_call(&client, addr, "/promote", "").await;
        assert_eq!(code, 200);
        let took = wait_text(&browser, "live-version", "v2", |t| t == "v2").await;
        println!("the page showed the promote after {took:?}");
        assert!(took < Duration::from_secs(1), "took {took:?}");
        assert!(who_answers(&client, addr).await.0.starts_with("green"));

        // Promote on the page (to the standby, blue): blue answers.
        click_and_confirm(&browser, "act-promote").await;
        wait_text(&browser, "live-version", "v1", |t| t == "v1").await;
        assert_eq!(handle.active(), Color::Blue);
        let (served_by, body) = who_answers(&client, addr).await;
        assert_eq!(served_by, "blue; version=v1");
        assert!(body.contains("0.91"), "v1's score: {body}");
        wait_text(&browser, "message", "the result", |t| t.contains("done")).await;

        // A stale page: the dialog was opened at one generation, the router
        // moved on before the confirmation; the page says so, nothing changes.
        click(&browser, "act-rollback").await;
        let (code, moved) = admin_call(&client, addr, "/split", r#"{"fraction": 0.1}"#).await;
        assert_eq!(code, 200);
        click(&browser, "confirm-ok").await;
        wait_text(&browser, "message", "the conflict", |t| t.contains("stale")).await;
        assert_eq!(
            handle.active(),
            Color::Blue,
            "the stale rollback changed nothing"
        );
        assert_eq!(handle.generation(), moved["generation"].as_u64().unwrap());

        // A plan: a mirror phase, then canary steps; each step shows while
        // it runs.
        let (code, _) = admin_call(&client, addr, "/split", r#"{"fraction": 0}"#).await;
        assert_eq!(code, 200);
        let plan = r#"{
            "mirror": {"fraction": 1.0, "seconds": 3},
            "steps": [{"split": 0.2, "bake_seconds": 60}, {"split": 0.5, "bake_seconds": 60}],
            "gates": [
                {"type": "agreement", "min": 0.8, "min_sample": 20},
                {"type": "error_rate", "max": 0.05, "min_sample": 5}
            ],
            "interval_ms": 250
        }"#;
        let (code, started) = admin_call(&client, addr, "/plan", plan).await;
        assert_eq!(code, 200, "{started}");
        wait_text(&browser, "plan-phase", "the mirror phase", |t| {
            t == "mirror 1"
        })
        .await;
        wait_text(&browser, "mirror", "the plan's mirror", |t| t == "100%").await;
        wait_text(&browser, "plan-phase", "the first step", |t| {
            t == "canary 1/2 at 0.2"
        })
        .await;
        wait_text(&browser, "plan-timeline", "the step in the timeline", |t| {
            t.contains("phase: canary 1/2 at 0.2")
        })
        .await;
        wait_text(&browser, "gates-rows", "the gate's threshold", |t| {
            t.contains("error_rate") && t.contains("error rate ≤ 0.05")
        })
        .await;
        let plan = handle.plan_status().expect("a plan");
        assert!(!plan.state.is_finished(), "still running: {:?}", plan.state);
        wait_text(&browser, "split", "the plan's split", |t| t == "20%").await;

        // The comparison of the mirror phase: agreement, the field, a diff.
        wait_text(&browser, "fields-rows", "the label's mismatches", |t| {
            t.contains("/label")
        })
        .await;
        wait_text(&browser, "exemplar-list", "a diff", |t| {
            t.contains("tiger") && t.contains("cat")
        })
        .await;

        // A few seconds of the canary for the charts, then the screenshot.
        wait_text(&browser, "plan-baked", "some bake time", |t| {
            t.split(' ').next().and_then(|n| n.parse::<f64>().ok()) >= Some(4.0)
        })
        .await;
        click(&browser, "message-close").await;
        wait_text(&browser, "message", "no message", str::is_empty).await;
        let png = browser.screenshot().await.unwrap();
        let shot = out_dir().join("dashboard-screenshot.png");
        std::fs::write(&shot, &png).unwrap();
        println!("screenshot: {}", shot.display());

        // Nothing went wrong in the page but the refusals the test caused
        // (the wrong token's 401, the stale call's 409).
        for entry in severe(&browser).await {
            assert!(
                entry.contains("409") || entry.contains("401"),
                "unexpected console error: {entry}"
            );
        }

        // Pause the plan on the page.
        click_and_confirm(&browser, "act-plan-pause").await;
        wait_text(&browser, "plan-state", "paused", |t| t == "paused").await;
        handle.plan().unwrap().abort("test over");
        wait_text(&browser, "plan-state", "aborted", |t| t == "aborted").await;

        browser.close().await.unwrap();
        load.abort();
        let _ = std::fs::remove_dir_all(&profile);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_fleet_view_lists_models_with_a_filter() {
        let fleet = Fleet::new();
        let mut app = Router::new();
        for (name, v1, v2) in [
            ("sentiment", "s-v1", "s-v2"),
            ("vision", "vi-v1", "vi-v2"),
            ("ranking", "r-v1", "r-v2"),
        ] {
            let (router, handle) = BlueGreenRouter::builder()
                .versions(v1, v2)
                .build(version("a"), version("b"))
                .unwrap();
            fleet.insert(name, handle).unwrap();
            app = app.nest_service(&format!("/{name}"), router);
        }
        let admin = Admin::builder()
            .token(TOKEN)
            .fleet(fleet.clone())
            .build()
            .unwrap();
        let (addr, _server) = support::serve(app.nest_service("/admin", admin)).await;
        fleet.get("vision").unwrap().set_split(0.25).unwrap();

        let driver = start_driver().await;
        let profile = Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("chromium-profile-fleet-{}", std::process::id()));
        let browser = start_browser(&driver, &profile).await;
        browser.goto(&format!("http://{addr}/admin")).await.unwrap();
        browser
            .wait()
            .at_most(DEADLINE)
            .for_element(Locator::Id("token-input"))
            .await
            .unwrap();
        sign_in(&browser, TOKEN).await;

        // Every model is listed (from the samples, once a second); the
        // first is shown.
        wait_text(&browser, "fleet-rows", "three models", |t| {
            t.contains("ranking") && t.contains("sentiment") && t.contains("vision")
        })
        .await;
        wait_text(&browser, "model-title", "the first model", |t| {
            t == "ranking"
        })
        .await;
        wait_text(&browser, "live-version", "its version", |t| t == "r-v1").await;

        // The filter: only the model with a canary split.
        let filter = browser.find(Locator::Id("fleet-filter")).await.unwrap();
        filter.select_by_value("canary").await.unwrap();
        wait_text(&browser, "fleet-rows", "only vision", |t| {
            t.contains("vision") && !t.contains("ranking") && !t.contains("sentiment")
        })
        .await;

        // A click on a row shows that model; a promote there promotes it.
        let row = browser
            .find(Locator::Css("#fleet-rows tr[data-model='vision']"))
            .await
            .unwrap();
        row.click().await.unwrap();
        wait_text(&browser, "live-version", "vision's version", |t| {
            t == "vi-v1"
        })
        .await;
        click_and_confirm(&browser, "act-promote").await;
        wait_text(&browser, "live-version", "vision promoted", |t| {
            t == "vi-v2"
        })
        .await;
        assert_eq!(fleet.get("vision").unwrap().active(), Color::Green);
        // Its row follows at once; with no split left, the filter drops it.
        wait_text(&browser, "fleet-empty", "an empty filter", |t| {
            t == "No model matches."
        })
        .await;

        // The model shown leaves the fleet: the page says so, shows another.
        fleet.remove("vision").unwrap();
        wait_text(&browser, "message", "the removal", |t| {
            t.contains("vision is no longer in the fleet")
        })
        .await;
        wait_text(&browser, "model-title", "another model", |t| t == "ranking").await;
        wait_text(&browser, "live-version", "its version", |t| t == "r-v1").await;
        assert_eq!(fleet.get("ranking").unwrap().active(), Color::Blue);

        assert_eq!(severe(&browser).await, Vec::<String>::new());
        let shot = out_dir().join("dashboard-fleet-screenshot.png");
        std::fs::write(&shot, browser.screenshot().await.unwrap()).unwrap();
        println!("screenshot: {}", shot.display());
        browser.close().await.unwrap();
        let _ = std::fs::remove_dir_all(&profile);
    }

    /// The page against documents with most fields missing (an older or
    /// newer admin, a router without plan or comparison): it shows what is
    /// there, dashes for the rest, and throws nothing. The page itself is
    /// the real admin's; its data calls answer with the odd documents.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_page_copes_with_missing_fields() {
        use axum::response::IntoResponse;
        use tower::ServiceExt;

        let (_, handle) = BlueGreenRouter::new(version("a"), version("b"));
        let admin = Admin::builder()
            .token(TOKEN)
            .handle(handle)
            .build()
            .unwrap();
        let page = admin
            .oneshot(
                http::Request::get("/")
                    .body(Full::new(Bytes::new()))
                    .unwrap(),
            )
            .await
            .unwrap();
        let (parts, body) = page.into_parts();
        let html = body.collect().await.unwrap().to_bytes();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64;
        let frames = [
            ("hello", json!({})),
            (
                "status",
                json!({ "model": null, "status": { "generation": 3, "active": "green", "replica": "odd" } }),
            ),
            (
                "sample",
                json!({ "seq": 2, "at_unix_ms": now, "models": [{}, null] }),
            ),
            ("sample", json!({ "seq": 3, "models": "not a list" })),
            (
                "status",
                json!({ "status": {
                "generation": 4,
                "colors": { "blue": {}, "green": null },
                "plan": { "gates": [{}], "history": [{}], "gate_specs": [{}] },
                "comparison": { "total": 1, "versions": {} },
                "exemplars": [{}, { "diffs": [{}] }],
                "transitions": [{}],
                "replica": { "replicas": [null, 7, { "blue": null, "green": "x" }], "connected": false }
            } }),
            ),
        ];
        let stream: String = frames
            .iter()
            .map(|(name, data)| format!("event: {name}\ndata: {data}\n\n"))
            .collect();
        let app = Router::new()
            .route(
                "/admin/",
                axum::routing::get(move || async move { (parts, html).into_response() }),
            )
            .route(
                "/admin/history",
                axum::routing::get(move || async move {
                    axum::Json(json!({ "samples": [{ "seq": 1, "at_unix_ms": now, "models": [{ "model": null }] }] }))
                }),
            )
            .route(
                "/admin/events",
                axum::routing::get(move || async move {
                    let first = futures_util::stream::iter([Ok::<_, std::io::Error>(stream)]);
                    let body = axum::body::Body::from_stream(
                        futures_util::StreamExt::chain(first, futures_util::stream::pending()),
                    );
                    ([("content-type", "text/event-stream")], body)
                }),
            );
        let (addr, _server) = support::serve(app).await;

        let driver = start_driver().await;
        let profile = Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("chromium-profile-odd-{}", std::process::id()));
        let browser = start_browser(&driver, &profile).await;
        browser
            .goto(&format!("http://{addr}/admin/"))
            .await
            .unwrap();
        browser
            .wait()
            .at_most(DEADLINE)
            .for_element(Locator::Id("token-input"))
            .await
            .unwrap();
        sign_in(&browser, TOKEN).await;
        wait_text(&browser, "generation", "the last generation", |t| t == "4").await;
        assert_eq!(text(&browser, "live-version").await, "—");
        assert_eq!(text(&browser, "plan-state").await, "—");
        assert_eq!(text(&browser, "replica-id").await, "—");
        assert_eq!(
            text(&browser, "replica-connection").await,
            "unreachable for —"
        );
        let row = text(&browser, "replicas-rows").await;
        assert_eq!(
            row.split('\t').collect::<Vec<_>>(),
            ["—", "—", "—", "—", "—", "—"]
        );
        assert_eq!(severe(&browser).await, Vec::<String>::new());
        browser.close().await.unwrap();
        let _ = std::fs::remove_dir_all(&profile);
    }
}
