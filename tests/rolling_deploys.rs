//! Ten versions deployed and promoted one after another into a real axum
//! server on 127.0.0.1:0 while eight HTTP clients send requests all along:
//! no request fails, every answer comes from a version the state allowed
//! while the request ran, and each replaced version is dropped exactly once.

mod support;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::routing::post;
use bytes::Bytes;
use http_body_util::Full;
use tower_rollout::{BlueGreenRouter, Color, RolloutHandle};

const CLIENTS: usize = 8;
/// Versions deployed (v3 to v12), each then promoted.
const DEPLOYS: usize = 10;
/// Answers the clients must have received between two control steps, so
/// every step happens under load.
const BETWEEN_STEPS: u64 = 40;
const DEADLINE: Duration = Duration::from_secs(60);

/// Labels of the versions whose model was dropped, in order.
type Drops = Arc<Mutex<Vec<String>>>;

/// A version's model memory: records its drop.
struct Weights {
    label: String,
    drops: Drops,
}

impl Drop for Weights {
    fn drop(&mut self) {
        self.drops.lock().unwrap().push(self.label.clone());
    }
}

/// Version `n`: `POST /predict` answers `v{n}:{body}`.
fn version(n: usize, drops: &Drops) -> axum::Router {
    let weights = Arc::new(Weights {
        label: format!("v{n}"),
        drops: drops.clone(),
    });
    axum::Router::new()
        .route(
            "/predict",
            post(|State(w): State<Arc<Weights>>, body: Bytes| async move {
                format!("{}:{}", w.label, String::from_utf8_lossy(&body))
            }),
        )
        .with_state(weights)
}

/// One answer: the generations seen before the request was sent and after
/// its answer was read, and what answered.
struct Seen {
    before: u64,
    after: u64,
    version: String,
}

/// A client sending requests one after another until `stop`; each failure
/// (transport error, status, a body not from the version named) is a
/// message.
async fn client(
    id: usize,
    addr: std::net::SocketAddr,
    handle: RolloutHandle,
    stop: Arc<AtomicBool>,
    answered: Arc<AtomicU64>,
) -> (Vec<Seen>, Vec<String>) {
    let http = support::client();
    let (mut seen, mut failures) = (Vec::new(), Vec::new());
    let mut i = 0u64;
    while !stop.load(Ordering::SeqCst) {
        i += 1;
        let payload = format!("c{id}-{i}");
        let req = http::Request::post(format!("http://{addr}/predict"))
            .body(Full::new(Bytes::from(payload.clone())))
            .unwrap();
        let before = handle.generation();
        let result = tokio::time::timeout(
            Duration::from_secs(10),
            support::send(&http, req, "x-served-by"),
        )
        .await;
        let after = handle.generation();
        let answer = match result {
            Ok(Ok(a)) => a,
            Ok(Err(e)) => {
                failures.push(format!("{payload}: {e}"));
                continue;
            }
            Err(_) => {
                failures.push(format!("{payload}: no answer in 10 s"));
                continue;
            }
        };
        let served = answer.header.as_deref().map(support::served_by);
        match served {
            Some((_, v)) if answer.status == 200 && answer.body == format!("{v}:{payload}") => {
                seen.push(Seen {
                    before,
                    after,
                    version: v,
                });
                answered.fetch_add(1, Ordering::SeqCst);
            }
            _ => failures.push(format!(
                "{payload}: status {}, served by {:?}, body {:?}",
                answer.status, answer.header, answer.body
            )),
        }
    }
    (seen, failures)
}

/// Waits until the clients have `n` more answers than `from`.
async fn load(answered: &AtomicU64, from: u64, n: u64) {
    let wait = async {
        while answered.load(Ordering::SeqCst) < from + n {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    };
    tokio::time::timeout(DEADLINE, wait)
        .await
        .expect("the clients keep getting answers");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_versions_deployed_and_promoted_under_load() {
    let drops = Drops::default();
    let (router, handle) = BlueGreenRouter::builder()
        .versions("v1", "v2")
        .served_by_header("x-served-by")
        .build(version(1, &drops), version(2, &drops))
        .unwrap();
    let deployer = router.deployer::<axum::body::Body>();
    let (addr, server) = support::serve(axum::Router::new().fallback_service(router)).await;

    let stop = Arc::new(AtomicBool::new(false));
    let answered = Arc::new(AtomicU64::new(0));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|id| {
            tokio::spawn(client(
                id,
                addr,
                handle.clone(),
                stop.clone(),
                answered.clone(),
            ))
        })
        .collect();

    // The live version at each generation (control calls that change
    // nothing do not bump it).
    let mut live = BTreeMap::from([(0u64, "v1".to_owned())]);
    let step = |live: &mut BTreeMap<u64, String>| {
        let s = handle.status();
        live.insert(s.generation, s.active_version().to_string());
    };

    let mut mark = answered.load(Ordering::SeqCst);
    load(&answered, mark, BETWEEN_STEPS).await;
    // v2 goes live; then each round deploys the next version into the idle
    // color (replacing the version live two promotes ago) and promotes it.
    handle.promote_to_version("v2").unwrap();
    step(&mut live);
    let mut retired = Vec::new();
    for n in 3..3 + DEPLOYS {
        mark = answered.load(Ordering::SeqCst);
        load(&answered, mark, BETWEEN_STEPS).await;
        let label = format!("v{n}");
        let deployed = deployer
            .deploy(label.clone(), version(n, &drops))
            .warm_up(|svc: axum::Router| async move {
                use tower::ServiceExt;
                let req =
                    http::Request::post("/predict").body(axum::body::Body::from("warm-up"))?;
                let res = svc.oneshot(req).await?;
                assert_eq!(res.status(), 200);
                Ok::<(), tower::BoxError>(())
            })
            .await
            .unwrap();
        assert_eq!(deployed.replaced().as_str(), format!("v{}", n - 2));
        assert_eq!(deployed.color, handle.standby());
        step(&mut live);
        let replaced = tokio::time::timeout(DEADLINE, deployed.retired())
            .await
            .expect("the replaced version is retired under load");
        retired.push(replaced.to_string());

        mark = answered.load(Ordering::SeqCst);
        load(&answered, mark, BETWEEN_STEPS).await;
        let change = handle.promote_to_version(&label).unwrap();
        assert!(change.is_applied());
        step(&mut live);
    }
    mark = answered.load(Ordering::SeqCst);
    load(&answered, mark, BETWEEN_STEPS).await;
    stop.store(true, Ordering::SeqCst);

    let mut seen = Vec::new();
    let mut failures = Vec::new();
    for c in clients {
        let (s, f) = c.await.unwrap();
        seen.extend(s);
        failures.extend(f);
    }
    server.abort();

    assert_eq!(failures, Vec::<String>::new(), "0 failed requests");
    // Every answer came from a version live at some generation between the
    // request's send and its answer.
    let mut per_version = BTreeMap::<String, u64>::new();
    for s in &seen {
        let allowed: Vec<&String> = live
            .range(..=s.before)
            .next_back()
            .into_iter()
            .chain(live.range(s.before + 1..s.after + 1))
            .map(|(_, v)| v)
            .collect();
        assert!(
            allowed.contains(&&s.version),
            "{} served a request sent at generation {} and answered by {}: allowed {allowed:?}",
            s.version,
            s.before,
            s.after
        );
        *per_version.entry(s.version.clone()).or_default() += 1;
    }
    assert!(seen.len() as u64 >= (2 * DEPLOYS as u64 + 2) * BETWEEN_STEPS);
    // Every version took traffic while it was live.
    for n in 1..=2 + DEPLOYS {
        assert!(
            per_version.contains_key(&format!("v{n}")),
            "v{n}: {per_version:?}"
        );
    }

    // Each replaced version (v1 to v10) was retired, and its model dropped
    // exactly once; the last two are still loaded.
    let expected: Vec<String> = (1..=DEPLOYS).map(|n| format!("v{n}")).collect();
    assert_eq!(retired, expected);
    assert_eq!(*drops.lock().unwrap(), expected);
    let s = handle.status();
    assert_eq!(
        (s.active, s.active_version().as_str()),
        (Color::Green, format!("v{}", 2 + DEPLOYS).as_str())
    );
    assert!(s.retiring.is_empty());
}
