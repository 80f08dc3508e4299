//! Replicas of one model kept on one state in etcd: this program starts an
//! etcd (the Debian package `etcd-server`) on loopback, then several replica
//! processes of itself, each a router (v1 on blue, v2 on green) with its
//! admin, and steers them through different replicas while a client keeps
//! asking all of them.
//!
//! ```sh
//! cargo run -p tower-rollout-etcd --example fleet                  # the walkthrough, 3 replicas
//! cargo run -p tower-rollout-etcd --release --example fleet -- --bench 5 1000
//! ```
//!
//! The walkthrough: a promote through replica 0 served by all three, a
//! canary through replica 1 with each user on the same color everywhere, a
//! replica killed with SIGKILL and restarted (its first answer is the
//! current version's), etcd stopped (users still served, writes refused
//! with 503) and started again (the replicas converge), then a rollout plan
//! driven fleet-wide by an elected replica, whose driver is killed with
//! SIGKILL mid-canary: another replica goes on from the stored phase, and
//! the plan's timeline has each step once, and the next version (v3) put
//! into the idle slot through one replica, loaded by every replica's
//! loader, then promoted. `--bench N W`: N
//! replicas, W writes from replica to replica under client load, and the
//! time from each write's commit until every replica applied it.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use axum::routing::post;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;
use serde_json::{json, Value};
use tower_rollout::admin::Admin;
use tower_rollout::control::VersionLabel;
use tower_rollout::store::Replica;
use tower_rollout::BlueGreenRouter;
use tower_rollout_etcd::testing::EtcdServer;
use tower_rollout_etcd::{EtcdOptions, EtcdStore};

const TOKEN: &str = "fleet-demo-token-0123456789abcdef";
const SERVED_BY: &str = "x-served-by";

type Error = Box<dyn std::error::Error + Send + Sync>;
type HttpClient = Client<HttpConnector, Full<Bytes>>;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let result = match args.first().map(String::as_str) {
        Some("--replica") => runtime.block_on(replica(&args[1..])),
        Some("--bench") => {
            let n = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(5);
            let writes = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(1000);
            runtime.block_on(bench(n, writes))
        }
        None => runtime.block_on(walkthrough()),
        Some(other) => Err(format!(
            "unknown argument {other:?}; usage: fleet [--bench REPLICAS WRITES]"
        )
        .into()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("fleet: {e}");
            ExitCode::FAILURE
        }
    }
}

// === one replica (a child process) ===

/// `--replica ENDPOINT SNAPSHOT ID`: serves the router and its admin on
/// 127.0.0.1 (a port the OS picks), prints `READY addr`, then `APPLIED rev
/// unix_nanos` each time it applies a state; exits when stdin closes.
async fn replica(args: &[String]) -> Result<(), Error> {
    let [endpoint, snapshot, id] = args else {
        return Err("--replica ENDPOINT SNAPSHOT ID".into());
    };
    let (router, handle) = BlueGreenRouter::builder()
        .versions("v1", "v2")
        .sticky_header("x-user")
        .served_by_header(SERVED_BY)
        .build(model("v1"), model("v2"))?;
    // The loader: the versions this demo knows are v1, v2, v3, ...
    let load = |label: VersionLabel| async move {
        let known = label
            .as_str()
            .strip_prefix('v')
            .is_some_and(|n| n.parse::<u32>().is_ok());
        if known {
            Ok(model(label.as_str()))
        } else {
            Err(format!("no model {label}"))
        }
    };
    let deployer = router.deployer::<axum::extract::Request>();
    let options = EtcdOptions::new().request_timeout(Duration::from_millis(500));
    let store = EtcdStore::connect([endpoint.as_str()], options).await?;
    let replica = Replica::builder(&handle, store, "iris")
        .loader(deployer, load)
        .id(id)
        .report_ttl(Duration::from_secs(3))
        .snapshot_file(snapshot)
        .timeout(Duration::from_millis(500))
        .start()
        .await?;
    let admin = Admin::builder()
        .token(TOKEN)
        .replica(replica.clone())
        .build()?;
    let app = axum::Router::new()
        .nest_service("/admin", admin)
        .fallback_service(router);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    println!("READY {}", listener.local_addr()?);
    tokio::spawn(async move {
        let mut seen = replica.status().applied_revision;
        println!("APPLIED {seen} {}", unix_nanos());
        loop {
            replica.applied(seen + 1).await;
            seen = replica.status().applied_revision;
            println!("APPLIED {seen} {}", unix_nanos());
        }
    });
    // The parent holds our stdin: when it goes, so do we.
    tokio::task::spawn_blocking(|| {
        let mut sink = String::new();
        while std::io::stdin().read_line(&mut sink).is_ok_and(|n| n > 0) {}
        std::process::exit(0);
    });
    axum::serve(listener, app).await?;
    Ok(())
}

/// A model version: answers `/predict` with its label.
fn model(label: &str) -> axum::Router {
    let label = label.to_owned();
    axum::Router::new().route(
        "/predict",
        post(move || {
            let label = label.clone();
            async move { label }
        }),
    )
}

fn unix_nanos() -> u128 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0)
}

// === the parent: replicas, a client, the steps ===

/// A replica process and what it reported.
struct Proc {
    child: Child,
    addr: SocketAddr,
    /// Revision → when this replica applied it (unix ns, its own clock).
    applied: Arc<Mutex<HashMap<u64, u128>>>,
}

/// Starts replica `i` and waits for its address.
fn spawn(i: usize, endpoint: &str, dir: &std::path::Path) -> Result<Proc, Error> {
    let mut child = Command::new(std::env::current_exe()?)
        .args(["--replica", endpoint])
        .arg(dir.join(format!("replica-{i}.json")))
        .arg(format!("replica-{i}"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()?;
    let stdout = child.stdout.take().ok_or("no stdout")?;
    let mut lines = BufReader::new(stdout).lines();
    let addr = loop {
        let line = lines
            .next()
            .ok_or("the replica exited before it was ready")??;
        if let Some(addr) = line.strip_prefix("READY ") {
            break addr.parse()?;
        }
    };
    let applied = Arc::new(Mutex::new(HashMap::new()));
    let log = applied.clone();
    std::thread::spawn(move || {
        for line in lines.map_while(Result::ok) {
            let mut parts = line.split(' ');
            if let (Some("APPLIED"), Some(rev), Some(at)) =
                (parts.next(), parts.next(), parts.next())
            {
                if let (Ok(rev), Ok(at)) = (rev.parse(), at.parse()) {
                    log.lock().unwrap().insert(rev, at);
                }
            }
        }
    });
    Ok(Proc {
        child,
        addr,
        applied,
    })
}

/// Starts etcd, or says how to install it.
fn etcd() -> Result<EtcdServer, Error> {
    EtcdServer::start().map_err(|e| {
        format!("could not start etcd ({e}); install it with `sudo apt-get install etcd-server`")
            .into()
    })
}

fn client() -> HttpClient {
    Client::builder(TokioExecutor::new()).build_http()
}

/// `POST /admin/{action}` on a replica: the status code and the document.
async fn steer(c: &HttpClient, p: &Proc, action: &str, body: Value) -> Result<(u16, Value), Error> {
    let req = http::Request::post(format!("http://{}/admin/{action}", p.addr))
        .header("authorization", format!("Bearer {TOKEN}"))
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_string())))?;
    let res = c.request(req).await?;
    let code = res.status().as_u16();
    let bytes = res.into_body().collect().await?.to_bytes();
    Ok((code, serde_json::from_slice(&bytes).unwrap_or(Value::Null)))
}

/// `GET /admin/status` of a replica.
async fn status(c: &HttpClient, p: &Proc) -> Result<Value, Error> {
    let req = http::Request::get(format!("http://{}/admin/status", p.addr))
        .header("authorization", format!("Bearer {TOKEN}"))
        .body(Full::new(Bytes::new()))?;
    let res = c.request(req).await?;
    let bytes = res.into_body().collect().await?.to_bytes();
    Ok(serde_json::from_slice(&bytes)?)
}

/// Waits (at most `within`) until the fleet-wide plan, as `p` shows it,
/// satisfies `done`; the plan's document then.
async fn plan_until(
    c: &HttpClient,
    p: &Proc,
    within: Duration,
    done: impl Fn(&Value) -> bool,
) -> Result<Value, Error> {
    let start = Instant::now();
    loop {
        let plan = status(c, p).await?["replica"]["plan"].clone();
        if done(&plan) {
            return Ok(plan);
        }
        if start.elapsed() > within {
            return Err(format!("the plan did not get there within {within:?}: {plan}").into());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Who answers `user` on a replica: `blue; version=v1`.
async fn served(c: &HttpClient, addr: SocketAddr, user: u32) -> Result<String, Error> {
    let req = http::Request::post(format!("http://{addr}/predict"))
        .header("x-user", format!("user-{user}"))
        .body(Full::new(Bytes::new()))?;
    let res = c.request(req).await?;
    if !res.status().is_success() {
        return Err(format!("status {}", res.status()).into());
    }
    let by = res
        .headers()
        .get(SERVED_BY)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("?")
        .to_owned();
    res.into_body().collect().await?;
    Ok(by)
}

/// A client asking every replica in turn until stopped: sent and failed.
struct Load {
    stop: Arc<AtomicBool>,
    sent: Arc<AtomicU64>,
    failed: Arc<AtomicU64>,
    /// Failures per replica address.
    failed_on: Arc<Mutex<HashMap<SocketAddr, u64>>>,
    addrs: Arc<Mutex<Vec<SocketAddr>>>,
}

impl Load {
    fn start(addrs: Vec<SocketAddr>) -> Load {
        let load = Load {
            stop: Arc::new(AtomicBool::new(false)),
            sent: Arc::new(AtomicU64::new(0)),
            failed: Arc::new(AtomicU64::new(0)),
            failed_on: Arc::new(Mutex::new(HashMap::new())),
            addrs: Arc::new(Mutex::new(addrs)),
        };
        let (stop, sent, failed, failed_on, addrs) = (
            load.stop.clone(),
            load.sent.clone(),
            load.failed.clone(),
            load.failed_on.clone(),
            load.addrs.clone(),
        );
        tokio::spawn(async move {
            let c = client();
            let mut i = 0u32;
            while !stop.load(Ordering::Relaxed) {
                let now: Vec<SocketAddr> = addrs.lock().unwrap().clone();
                for addr in now {
                    sent.fetch_add(1, Ordering::Relaxed);
                    if served(&c, addr, i % 500).await.is_err() {
                        failed.fetch_add(1, Ordering::Relaxed);
                        *failed_on.lock().unwrap().entry(addr).or_default() += 1;
                    }
                    i = i.wrapping_add(1);
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        });
        load
    }
}

/// Waits (at most 10 s) until every replica answers `user` like `want`.
async fn until_all(c: &HttpClient, procs: &[Proc], want: &str) -> Result<Duration, Error> {
    let start = Instant::now();
    loop {
        let mut all = true;
        for p in procs {
            if served(c, p.addr, 1).await.ok().as_deref() != Some(want) {
                all = false;
            }
        }
        if all {
            return Ok(start.elapsed());
        }
        if start.elapsed() > Duration::from_secs(10) {
            return Err(format!("the replicas did not all serve {want:?} within 10 s").into());
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

async fn walkthrough() -> Result<(), Error> {
    let mut server = etcd()?;
    let endpoint = server.endpoint();
    let dir = tempfile_dir()?;
    println!(
        "etcd on {endpoint}; starting 3 replicas of the model \"iris\" (v1 on blue, v2 on green)"
    );
    let mut procs = Vec::new();
    for i in 0..3 {
        let p = spawn(i, &endpoint, &dir)?;
        println!(
            "  replica {i}: http://{}/predict, admin http://{}/admin/ (token {TOKEN})",
            p.addr, p.addr
        );
        procs.push(p);
    }
    let load = Load::start(procs.iter().map(|p| p.addr).collect());
    let c = client();
    // The replicas killed on purpose (requests to them fail).
    let mut killed: Vec<SocketAddr> = Vec::new();

    println!("\n1. promote through replica 0");
    let (code, _) = steer(&c, &procs[0], "promote", json!({})).await?;
    let took = until_all(&c, &procs, "green; version=v2").await?;
    println!("   {code}; every replica serves green (v2) after {took:?}");

    println!("\n2. a 30% canary back to blue (v1) through replica 1: each user on the same color everywhere");
    steer(&c, &procs[1], "split", json!({ "fraction": 0.3 })).await?;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut same = 0;
    for user in 0..100 {
        let mut seen = Vec::new();
        for p in &procs {
            seen.push(served(&c, p.addr, user).await?);
        }
        if seen.iter().all(|s| *s == seen[0]) {
            same += 1;
        }
    }
    println!("   {same} of 100 users see the same version on all three replicas");
    if same != 100 {
        return Err("users saw different versions on different replicas".into());
    }

    println!("\n3. kill -9 replica 2 and start it again");
    procs[2].child.kill()?;
    procs[2].child.wait()?;
    let old = procs[2].addr;
    killed.push(old);
    let again = spawn(2, &endpoint, &dir)?;
    let first = served(&c, again.addr, 1).await?;
    let peer = served(&c, procs[0].addr, 1).await?;
    println!(
        "   restarted on {}; its first answer for user-1: {first} (replica 0 says {peer})",
        again.addr
    );
    for user in 0..50 {
        if served(&c, again.addr, user).await? != served(&c, procs[0].addr, user).await? {
            return Err(format!("the restarted replica put user-{user} on another version").into());
        }
    }
    println!("   users 0..49: the same version on the restarted replica as on replica 0");
    procs[2] = again;
    {
        let mut addrs = load.addrs.lock().unwrap();
        addrs.retain(|a| *a != old);
        addrs.push(procs[2].addr);
    }

    println!("\n4. etcd stops");
    let live: Vec<SocketAddr> = procs.iter().map(|p| p.addr).collect();
    let failed_on_live = |load: &Load| -> u64 {
        let failed = load.failed_on.lock().unwrap();
        live.iter()
            .map(|a| failed.get(a).copied().unwrap_or(0))
            .sum()
    };
    let failed_before = failed_on_live(&load);
    server.stop()?;
    let (code, refused) = steer(&c, &procs[0], "rollback", json!({})).await?;
    println!(
        "   rollback through replica 0: {code} ({})",
        refused["error"].as_str().unwrap_or("")
    );
    if code != 503 {
        // The replicas exit when this process (their stdin) goes.
        return Err("a write during the outage was not refused with 503".into());
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let failed = failed_on_live(&load) - failed_before;
    println!("   users meanwhile: {failed} failed requests (every replica serves its last state)");
    if failed > 0 {
        return Err("user requests failed while etcd was down".into());
    }
    server.restart()?;
    println!("   etcd is back");
    let took = {
        let start = Instant::now();
        loop {
            if steer(&c, &procs[1], "rollback", json!({})).await?.0 == 200 {
                break;
            }
            if start.elapsed() > Duration::from_secs(10) {
                return Err("writes still refused 10 s after etcd came back".into());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        until_all(&c, &procs, "blue; version=v1").await?
    };
    println!("   rollback through replica 1: every replica serves blue (v1) after {took:?}");

    println!("\n5. a rollout plan of green (v2), started through replica 1, driven by one elected replica");
    let plan = json!({
        "steps": [
            { "split": 0.1, "bake_seconds": 2 },
            { "split": 0.3, "bake_seconds": 4 },
            { "split": 0.5, "bake_seconds": 2 }
        ],
        "post_promotion_bake_seconds": 1,
        "interval_ms": 200,
        "gates": [{ "type": "error_rate", "max": 0.05, "min_sample": 20 }]
    });
    let (plan_code, started) = steer(&c, &procs[1], "plan", plan).await?;
    if plan_code != 200 {
        return Err(format!("the plan was refused: {plan_code} {started}").into());
    }
    let in_step_2 = plan_until(&c, &procs[0], Duration::from_secs(20), |p| {
        p["seq"] == 2 && p["driver"].is_string()
    })
    .await?;
    let driver = in_step_2["driver"].as_str().unwrap_or_default().to_owned();
    let d: usize = driver
        .strip_prefix("replica-")
        .and_then(|i| i.parse().ok())
        .ok_or("no driver")?;
    println!(
        "   in {}: driven by {driver}; kill -9 it",
        in_step_2["phase"]
    );
    procs[d].child.kill()?;
    procs[d].child.wait()?;
    killed.push(procs[d].addr);
    let killed_at = Instant::now();
    let survivor = (d + 1) % procs.len();
    let taken = plan_until(&c, &procs[survivor], Duration::from_secs(10), |p| {
        p["driver"].as_str().is_some_and(|x| x != driver)
    })
    .await?;
    println!(
        "   {} took over after {:?} (the lease's time to live is 3 s), in {}",
        taken["driver"],
        killed_at.elapsed(),
        taken["phase"]
    );
    let restarted = spawn(d, &endpoint, &dir)?;
    {
        let mut addrs = load.addrs.lock().unwrap();
        addrs.retain(|a| *a != procs[d].addr);
        addrs.push(restarted.addr);
    }
    procs[d] = restarted;
    let done = plan_until(&c, &procs[survivor], Duration::from_secs(30), |p| {
        p["state"] != "running" && p["state"] != "paused"
    })
    .await?;
    println!("   the plan {}; its timeline:", done["state"]);
    let timeline = done["timeline"].as_array().cloned().unwrap_or_default();
    for t in &timeline {
        println!(
            "     seq {:<2} {:<24} by {}",
            t["seq"],
            t["what"].as_str().unwrap_or(""),
            t["by"].as_str().unwrap_or("")
        );
    }
    let steps: Vec<&str> = timeline
        .iter()
        .filter_map(|t| t["what"].as_str())
        .filter(|w| w.starts_with("canary") || *w == "promoted" || *w == "completed")
        .collect();
    let once = [
        "canary 1/3 at 10%",
        "canary 2/3 at 30%",
        "canary 3/3 at 50%",
        "promoted",
        "completed",
    ];
    if done["state"] != "promoted" || steps != once {
        return Err(format!("the plan's steps: {steps:?}").into());
    }
    let took = until_all(&c, &procs, "green; version=v2").await?;
    println!("   each step once; every replica serves green (v2), checked after {took:?}");

    println!("\n6. the next version: v3 into the idle slot (blue) through replica 2; each replica's loader loads it");
    let (deploy_code, done) = steer(&c, &procs[2], "deploy", json!({ "version": "v3" })).await?;
    if deploy_code != 200 {
        return Err(format!("the deploy was refused: {deploy_code} {done}").into());
    }
    let start = Instant::now();
    for p in &procs {
        while status(&c, p).await?["colors"]["blue"]["version"] != "v3" {
            if start.elapsed() > Duration::from_secs(20) {
                return Err("v3 was not loaded everywhere within 20 s".into());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    println!("   loaded on all three after {:?}", start.elapsed());
    let start = Instant::now();
    let refused = loop {
        // Refused (409) until every replica's report says v3 is ready.
        match steer(&c, &procs[0], "promote", json!({})).await? {
            (200, _) => break None,
            (409, _) if start.elapsed() < Duration::from_secs(10) => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            (code, doc) => break Some(format!("{code} {doc}")),
        }
    };
    if let Some(why) = refused {
        return Err(format!("the promote of v3 was refused: {why}").into());
    }
    let took = until_all(&c, &procs, "blue; version=v3").await?;
    println!(
        "   promoted through replica 0: every replica serves blue (v3), checked after {took:?}"
    );

    load.stop.store(true, Ordering::Relaxed);
    let (sent, failed) = (
        load.sent.load(Ordering::Relaxed),
        load.failed.load(Ordering::Relaxed),
    );
    println!(
        "\nclient: {sent} requests, {failed} failed, all of them sent to the killed replicas \
         ({} sent to the live ones failed)",
        failed
            - killed
                .iter()
                .map(|a| load.failed_on.lock().unwrap().get(a).copied().unwrap_or(0))
                .sum::<u64>()
    );
    for mut p in procs {
        let _ = p.child.kill();
        let _ = p.child.wait();
    }
    let _ = std::fs::remove_dir_all(dir);
    Ok(())
}

async fn bench(n: usize, writes: usize) -> Result<(), Error> {
    let server = etcd()?;
    let endpoint = server.endpoint();
    let dir = tempfile_dir()?;
    let mut procs = Vec::new();
    for i in 0..n {
        procs.push(spawn(i, &endpoint, &dir)?);
    }
    let load = Load::start(procs.iter().map(|p| p.addr).collect());
    let c = client();
    let mut lags: Vec<Duration> = Vec::with_capacity(writes);
    for w in 0..writes {
        let p = &procs[w % n];
        let (action, body) = match w % 3 {
            0 => ("promote", json!({})),
            1 => ("split", json!({ "fraction": 0.1 + (w % 7) as f64 / 10.0 })),
            _ => ("rollback", json!({})),
        };
        let (code, doc) = steer(&c, p, action, body).await?;
        if code != 200 {
            return Err(format!("write {w} ({action}) refused: {code} {doc}").into());
        }
        let rev = doc["replica"]["applied_revision"]
            .as_u64()
            .ok_or("no revision")?;
        // Commit: when the writing replica applied its own write (just
        // after the compare-and-set); converged: the last replica's apply.
        let deadline = Instant::now() + Duration::from_secs(10);
        let times = loop {
            let times: Vec<Option<u128>> = procs
                .iter()
                .map(|p| p.applied.lock().unwrap().get(&rev).copied())
                .collect();
            if times.iter().all(Option::is_some) {
                break times;
            }
            if Instant::now() > deadline {
                return Err(format!("write {w}: not every replica applied revision {rev}").into());
            }
            tokio::time::sleep(Duration::from_micros(200)).await;
        };
        let commit = times[w % n].unwrap_or(0);
        let last = times.iter().flatten().max().copied().unwrap_or(commit);
        lags.push(Duration::from_nanos(last.saturating_sub(commit) as u64));
    }
    load.stop.store(true, Ordering::Relaxed);
    lags.sort();
    let q = |p: f64| lags[((lags.len() as f64 * p).ceil() as usize).clamp(1, lags.len()) - 1];
    println!(
        "{n} replicas, {writes} writes from replica to replica under client load: \
         commit -> every replica applied: p50 {:?}, p99 {:?}, max {:?}; \
         client: {} requests, {} failed",
        q(0.50),
        q(0.99),
        lags[lags.len() - 1],
        load.sent.load(Ordering::Relaxed),
        load.failed.load(Ordering::Relaxed),
    );
    for mut p in procs {
        let _ = p.child.kill();
        let _ = p.child.wait();
    }
    let _ = std::fs::remove_dir_all(dir);
    drop(server);
    Ok(())
}

fn tempfile_dir() -> Result<std::path::PathBuf, Error> {
    let dir = std::env::temp_dir().join(format!("tower-rollout-fleet-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}
