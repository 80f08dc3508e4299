//! The dashboard's view of a replica (`Admin::builder().replica(..)`) in a
//! real headless Chromium, against a real axum server on 127.0.0.1:0 and
//! three replicas of one model on a shared `MemoryStore`: the page shows
//! this replica's sync and one row per live replica with its versions; a
//! promote through the JSON API moves every row's applied revision; a
//! report written into the store by anyone is shown as text (no markup
//! runs), and marked when it is behind or differs; a replica with another
//! version is marked; a replica that stops leaves the table once its
//! lease expires; a store outage shows on the page and clears. Nothing
//! throws. A screenshot is saved to `target/dashboard-replicas.png`.
//!
//! Needs Debian's `chromium` and `chromium-driver` (`scripts/test` installs
//! them); without them the test fails and says how to install them.
#![cfg(all(feature = "admin", feature = "store"))]

mod support;

use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::{routing::post, Router};
use bytes::Bytes;
use fantoccini::Client;
use http::Method;
use http_body_util::{BodyExt, Full};
use serde_json::{json, Value};
use tower_rollout::admin::Admin;
use tower_rollout::store::{MemoryStore, Replica, StateStore, StoredPlanState};
use tower_rollout::BlueGreenRouter;

use support::browser::{
    click_and_confirm, open, out_dir, profile, severe, sign_in, start_browser, start_driver, text,
    wait_text, DEADLINE,
};

const TOKEN: &str = "dashboard-replicas-token-0123456789abcdef";
/// The replicas' report TTL: reports are refreshed every second, and a
/// stopped replica's report is gone three seconds after its last refresh.
const TTL: Duration = Duration::from_secs(3);
const STATE_KEY: &str = "models/iris/state";

fn version(name: &'static str) -> Router {
    Router::new().route("/predict", post(move || async move { name }))
}

/// A replica `id` of the model `iris` on `store`, its router holding
/// `iris-v1` in blue and `green` in green; the router is returned too, so
/// a test can serve it.
async fn replica(store: &MemoryStore, id: &str, green: &'static str) -> (Router, Replica) {
    let (router, handle) = BlueGreenRouter::builder()
        .versions("iris-v1", green)
        .build(version("iris-v1"), version(green))
        .unwrap();
    let replica = Replica::builder(&handle, store.clone(), "iris")
        .id(id)
        .report_ttl(TTL)
        .timeout(Duration::from_millis(500))
        .start()
        .await
        .unwrap();
    (Router::new().fallback_service(router), replica)
}

async fn admin_call(addr: SocketAddr, path: &str, body: Value) -> (http::StatusCode, Value) {
    let req = http::Request::builder()
        .method(Method::POST)
        .uri(format!("http://{addr}/admin{path}"))
        .header("authorization", format!("Bearer {TOKEN}"))
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap();
    let res = support::client().request(req).await.unwrap();
    let code = res.status();
    let bytes = res.into_body().collect().await.unwrap().to_bytes();
    (code, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

/// The store's revision of the model's state.
async fn stored_revision(store: &MemoryStore) -> u64 {
    StateStore::get(store, STATE_KEY)
        .await
        .unwrap()
        .expect("a stored state")
        .revision
}

/// A report as a replica writes it (`ReplicaReport`'s JSON), for a key
/// written by hand, as anyone with access to the store could.
fn report(id: &str, revision: u64, blue: &str, green: &str) -> Bytes {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    let doc = json!({
        "id": id,
        "applied_revision": revision,
        "ready": true,
        "blue": { "version": blue, "ready": true },
        "green": { "version": green, "ready": false },
        "at_unix_ms": now.as_millis() as u64,
    });
    Bytes::from(doc.to_string())
}

// === the table on the page ===

/// One row of the replicas' table as the page shows it.
#[derive(Debug)]
struct Row {
    id: String,
    classes: String,
    cells: Vec<String>,
}

impl Row {
    /// The applied revision the row shows (its cell's first word).
    fn revision(&self) -> Option<u64> {
        self.cells.get(1)?.split_whitespace().next()?.parse().ok()
    }

    fn has(&self, class: &str) -> bool {
        self.classes.split_whitespace().any(|c| c == class)
    }
}

/// The rows shown (none while the section is hidden).
async fn rows(browser: &Client) -> Vec<Row> {
    let script = "const card = document.getElementById('replica-card'); \
        if (!card || card.hidden) return []; \
        return [...document.querySelectorAll('#replicas-rows tr')] \
          .filter((tr) => tr.dataset.replica !== undefined) \
          .map((tr) => ({ id: tr.dataset.replica, classes: tr.className, \
                          cells: [...tr.cells].map((td) => td.innerText.trim()) }));";
    let v = browser.execute(script, vec![]).await.unwrap();
    v.as_array()
        .into_iter()
        .flatten()
        .map(|r| Row {
            id: r["id"].as_str().unwrap_or_default().to_owned(),
            classes: r["classes"].as_str().unwrap_or_default().to_owned(),
            cells: r["cells"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|c| c.as_str().unwrap_or_default().to_owned())
                .collect(),
        })
        .collect()
}

/// Waits until `check` holds on the rows shown; returns them.
async fn wait_rows(browser: &Client, what: &str, check: impl Fn(&[Row]) -> bool) -> Vec<Row> {
    let started = Instant::now();
    loop {
        let shown = rows(browser).await;
        if check(&shown) {
            return shown;
        }
        assert!(
            started.elapsed() < DEADLINE,
            "the replicas' table never showed {what}; it shows {shown:#?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn ids(rows: &[Row]) -> Vec<&str> {
    rows.iter().map(|r| r.id.as_str()).collect()
}

/// Waits until every replica has applied `revision`.
async fn all_applied(replicas: &[&Replica], revision: u64) {
    for r in replicas {
        tokio::time::timeout(DEADLINE, r.applied(revision))
            .await
            .unwrap_or_else(|_| panic!("{} never applied revision {revision}", r.status().id));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_replica_view_in_headless_chromium() {
    let store = MemoryStore::new();
    let (app, a) = replica(&store, "r-a", "iris-v2").await;
    let (_, b) = replica(&store, "r-b", "iris-v2").await;
    let (_, c) = replica(&store, "r-c", "iris-v2").await;
    let admin = Admin::builder()
        .token(TOKEN)
        .replica(a.clone())
        .build()
        .unwrap();
    let (addr, _server) = support::serve(app.nest_service("/admin", admin)).await;

    let driver = start_driver().await;
    let profile = profile("replicas");
    let browser = start_browser(&driver, &profile).await;
    open(&browser, &format!("http://{addr}/admin/")).await;
    sign_in(&browser, TOKEN).await;

    // This replica's sync, and every replica with its versions.
    let before = stored_revision(&store).await;
    all_applied(&[&a, &b, &c], before).await;
    wait_text(&browser, "replica-id", "this replica's id", |t| t == "r-a").await;
    assert_eq!(text(&browser, "replica-source").await, "store");
    assert_eq!(text(&browser, "replica-ready").await, "yes");
    assert_eq!(text(&browser, "replica-connection").await, "connected");
    assert_eq!(text(&browser, "replica-error").await, "", "no error shown");
    wait_text(&browser, "replica-revision", "the applied revision", |t| {
        t == before.to_string()
    })
    .await;
    let shown = wait_rows(&browser, "the three replicas", |rows| {
        ids(rows) == ["r-a", "r-b", "r-c"]
    })
    .await;
    for row in &shown {
        assert_eq!(row.cells[2], "iris-v1 ✓", "{row:?}");
        assert_eq!(row.cells[3], "iris-v2 ✓", "{row:?}");
        assert_eq!(row.cells[4], "stored state", "{row:?}");
        let seen: f64 = row.cells[5]
            .strip_suffix(" s ago")
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("last seen: {row:?}"));
        assert!(seen < 10.0, "{row:?}");
        assert!(!row.has("differs"), "{row:?}");
    }
    assert!(shown[0].cells[0].contains("this replica"));
    assert!(!shown[1].cells[0].contains("this replica"));

    // A promote through the JSON API: every row's revision moves to the
    // stored one, and the live version follows.
    let (code, done) = admin_call(addr, "/promote", json!({})).await;
    assert_eq!(code, 200, "{done}");
    let after = stored_revision(&store).await;
    assert!(after > before, "{after} > {before}");
    all_applied(&[&a, &b, &c], after).await;
    wait_text(&browser, "live-version", "the promoted version", |t| {
        t == "iris-v2"
    })
    .await;
    wait_text(&browser, "replica-revision", "the new revision", |t| {
        t == after.to_string()
    })
    .await;
    let shown = wait_rows(&browser, "every replica at the new revision", |rows| {
        rows.len() == 3 && rows.iter().all(|r| r.revision() == Some(after))
    })
    .await;
    assert!(shown.iter().all(|r| !r.has("behind")), "{shown:#?}");

    // A report written into the store by hand, with markup in its id and
    // version: shown as text, marked behind and differing; no element of
    // it is made.
    let evil = "<img src=x id=pwned>";
    let key = "models/iris/replicas/evil";
    store.put(
        key,
        Some(report(evil, before, "<b id=bold>v9</b>", "iris-v2")),
    );
    let shown = wait_rows(&browser, "the written report", |rows| rows.len() == 4).await;
    let row = shown
        .iter()
        .find(|r| r.id == evil)
        .expect("the report's row");
    assert_eq!(row.cells[0], evil);
    assert!(row.cells[1].starts_with(&format!("{before} ")) && row.cells[1].ends_with("behind"));
    assert_eq!(row.cells[2], "<b id=bold>v9</b> ✓");
    assert_eq!(row.cells[3], "iris-v2 ✗ not ready");
    assert!(row.has("behind") && row.has("differs"), "{row:?}");
    let made = "return [document.getElementById('pwned'), document.getElementById('bold'), \
                document.querySelector('#replica-card img, #replica-card b')];";
    let made = browser.execute(made, vec![]).await.unwrap();
    assert_eq!(
        made,
        json!([null, null, null]),
        "no markup of the store runs"
    );
    assert!(
        shown
            .iter()
            .filter(|r| r.id != evil)
            .all(|r| !r.has("differs")),
        "{shown:#?}"
    );
    store.put(key, None);
    wait_rows(&browser, "the report removed", |rows| {
        ids(rows) == ["r-a", "r-b", "r-c"]
    })
    .await;

    // A replica holding another version in green: its row is marked. And a
    // report left behind at the old revision (as a replica that stopped
    // applying states would leave it until its lease ends): marked behind.
    let (_, d) = replica(&store, "r-d", "iris-v3").await;
    all_applied(&[&d], after).await;
    let stuck = "models/iris/replicas/r-e";
    store.put(stuck, Some(report("r-e", before, "iris-v1", "iris-v2")));
    let shown = wait_rows(&browser, "r-d and r-e", |rows| {
        ids(rows) == ["r-a", "r-b", "r-c", "r-d", "r-e"]
    })
    .await;
    let by_id = |id: &str| shown.iter().find(|r| r.id == id).unwrap();
    assert!(by_id("r-d").has("differs") && !by_id("r-d").has("behind"));
    assert_eq!(by_id("r-d").cells[3], "iris-v3 ✓");
    assert!(by_id("r-e").has("behind") && !by_id("r-e").has("differs"));
    assert!(!by_id("r-b").has("behind") && !by_id("r-b").has("differs"));
    assert_eq!(severe(&browser).await, Vec::<String>::new());
    wait_text(&browser, "model-title", "the replica in the title", |t| {
        t == "iris · replica r-a"
    })
    .await;
    // The screenshot of the replica view: the top of the page.
    browser.set_window_size(1280, 760).await.unwrap();
    let png = browser.screenshot().await.unwrap();
    let shot = out_dir().join("dashboard-replicas.png");
    std::fs::write(&shot, &png).unwrap();
    println!("screenshot: {}", shot.display());
    store.put(stuck, None);

    // A replica that stops leaves the table once its lease expired.
    let stopped = Instant::now();
    drop(c);
    drop(d);
    wait_rows(&browser, "r-c and r-d gone", |rows| {
        ids(rows) == ["r-a", "r-b"]
    })
    .await;
    println!(
        "the stopped replicas left the table after {:?}",
        stopped.elapsed()
    );

    // A store outage: the page says since when, and the error; both clear
    // when the store is back.
    store.set_available(false);
    wait_text(&browser, "replica-connection", "the outage", |t| {
        t.starts_with("unreachable for ")
    })
    .await;
    wait_text(&browser, "replica-error", "the store's error", |t| {
        // The label is shown in capitals (CSS), which innerText keeps.
        t.to_lowercase().starts_with("last error") && t.contains("store")
    })
    .await;
    store.set_available(true);
    wait_text(&browser, "replica-connection", "connected again", |t| {
        t == "connected"
    })
    .await;
    wait_text(&browser, "replica-error", "no error", str::is_empty).await;

    // A fleet-wide plan started through the JSON API: the page shows its
    // step and timeline, and its Pause and Abort buttons steer it through
    // the store (the other replica follows).
    let plan = json!({
        "steps": [{ "split": 0.2, "bake_seconds": 600 }],
        "gates": [{ "type": "error_rate", "max": 0.05, "min_sample": 1000 }],
    });
    let (code, started) = admin_call(addr, "/plan", plan).await;
    assert_eq!(code, 200, "{started}");
    wait_text(&browser, "plan-phase", "the fleet plan's step", |t| {
        t == "canary 1/1 at 0.2"
    })
    .await;
    wait_text(&browser, "plan-timeline", "the step in the timeline", |t| {
        t.contains("canary 1/1 at 20% (by r-a)")
    })
    .await;
    click_and_confirm(&browser, "act-plan-pause").await;
    wait_text(&browser, "plan-state", "paused", |t| t == "paused").await;
    b.applied(a.status().applied_revision).await;
    let seen_by_b = b.plan_status().expect("the plan, on the other replica");
    assert_eq!(seen_by_b.stored.state, StoredPlanState::Paused);
    click_and_confirm(&browser, "act-plan-abort").await;
    wait_text(&browser, "plan-state", "aborted", |t| t == "aborted").await;
    b.applied(a.status().applied_revision).await;
    assert_eq!(b.handle().status().split, 0.0);

    assert_eq!(severe(&browser).await, Vec::<String>::new());
    browser.close().await.unwrap();
    drop(b);
    let _ = std::fs::remove_dir_all(&profile);
}
