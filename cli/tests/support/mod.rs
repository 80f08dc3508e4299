//! A real admin on 127.0.0.1:0 (axum serving `tower_rollout::admin::Admin`
//! next to a `BlueGreenRouter`), and the built `rollout` binary run against
//! it.
#![allow(dead_code, unreachable_pub)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::time::Duration;

use axum::{routing::post, Router};
use tower_rollout::admin::Admin;
use tower_rollout::mirror::MirrorLayer;
use tower_rollout::{BlueGreenRouter, Fleet, RolloutHandle};

pub const TOKEN: &str = "cli-test-token-0123456789abcdef0123";

/// A server: the runtime it runs on (dropped with it), its address.
pub struct Server {
    pub addr: SocketAddr,
    /// `http://{addr}/admin`
    pub url: String,
    _runtime: tokio::runtime::Runtime,
}

fn version(name: &'static str) -> Router {
    Router::new().route("/predict", post(move || async move { name }))
}

/// One model's router (v1 blue live, v2 green; it can mirror), mounted at
/// `/{prefix}` (or at the root for `""`).
fn model_router(prefix: &str) -> (Router, RolloutHandle) {
    let (router, handle) = BlueGreenRouter::builder()
        .versions("v1", "v2")
        .served_by_header("x-served-by")
        .mirror(MirrorLayer::settings())
        .build(version("v1"), version("v2"))
        .expect("a valid router");
    let app = if prefix.is_empty() {
        Router::new().fallback_service(router)
    } else {
        Router::new().nest_service(&format!("/{prefix}"), router)
    };
    (app, handle)
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime")
}

fn start(app: Router) -> Server {
    start_on(runtime(), app)
}

fn start_on(runtime: tokio::runtime::Runtime, app: Router) -> Server {
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .expect("bind 127.0.0.1:0");
    let addr = listener.local_addr().unwrap();
    runtime.spawn(async move { axum::serve(listener, app).await.expect("serve") });
    Server {
        addr,
        url: format!("http://{addr}/admin"),
        _runtime: runtime,
    }
}

/// One model, its admin under `/admin`.
pub fn one_model() -> (Server, RolloutHandle) {
    let (app, handle) = model_router("");
    let admin = Admin::builder()
        .token(TOKEN)
        .handle(handle.clone())
        .build()
        .unwrap();
    (start(app.nest_service("/admin", admin)), handle)
}

/// One replica of the model `iris` on an in-memory store, with a loader
/// that knows v1, v2 and v3, its admin under `/admin`.
pub fn replica() -> (Server, RolloutHandle, tower_rollout::store::Replica) {
    use tower_rollout::control::VersionLabel;
    use tower_rollout::store::{MemoryStore, Replica};
    let (router, handle) = BlueGreenRouter::builder()
        .versions("v1", "v2")
        .served_by_header("x-served-by")
        .build(version("v1"), version("v2"))
        .expect("a valid router");
    let deployer = router.deployer::<axum::extract::Request>();
    let load = |v: VersionLabel| async move {
        match v.as_str() {
            "v1" => Ok(version("v1")),
            "v2" => Ok(version("v2")),
            "v3" => Ok(version("v3")),
            other => Err(format!("no model {other}")),
        }
    };
    let app = Router::new().fallback_service(router);
    let runtime = runtime();
    let replica = runtime.block_on(async {
        Replica::builder(&handle, MemoryStore::new(), "iris")
            .id("cli-replica")
            .loader(deployer, load)
            .start()
            .await
            .expect("a replica")
    });
    let admin = Admin::builder()
        .token(TOKEN)
        .replica(replica.clone())
        .build()
        .unwrap();
    let server = start_on(runtime, app.nest_service("/admin", admin));
    (server, handle, replica)
}

/// A fleet admin with the models `sentiment` and `vision` (served under
/// `/sentiment` and `/vision`).
pub fn fleet() -> (Server, RolloutHandle, RolloutHandle) {
    let (sentiment_app, sentiment) = model_router("sentiment");
    let (vision_app, vision) = model_router("vision");
    let fleet = Fleet::new();
    fleet.insert("sentiment", sentiment.clone()).unwrap();
    fleet.insert("vision", vision.clone()).unwrap();
    let admin = Admin::builder().token(TOKEN).fleet(fleet).build().unwrap();
    let app = sentiment_app
        .merge(vision_app)
        .nest_service("/admin", admin);
    (start(app), sentiment, vision)
}

/// `POST {path}` over a plain TCP connection: the answer's body.
pub fn predict(addr: SocketAddr, path: &str) -> String {
    let mut conn = TcpStream::connect(addr).expect("connect");
    conn.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(
        conn,
        "POST {path} HTTP/1.1\r\nhost: {addr}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
    )
    .unwrap();
    let mut answer = String::new();
    conn.read_to_string(&mut answer).expect("an answer");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    answer
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())
        .unwrap_or_default()
}

/// What a run of the binary gave.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

/// The `rollout` binary, with none of the caller's `ROLLOUT_*` or proxy
/// settings (so it talks to 127.0.0.1 directly).
pub fn command() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_rollout"));
    for var in [
        "ROLLOUT_ADMIN_URL",
        "ROLLOUT_ADMIN_TOKEN",
        "http_proxy",
        "HTTP_PROXY",
        "https_proxy",
        "HTTPS_PROXY",
        "all_proxy",
        "ALL_PROXY",
        "no_proxy",
        "NO_PROXY",
    ] {
        cmd.env_remove(var);
    }
    cmd.stdin(Stdio::null());
    cmd
}

/// Runs `rollout` with the URL and token in its environment.
pub fn rollout(server: &Server, args: &[&str]) -> Run {
    let mut cmd = command();
    cmd.env("ROLLOUT_ADMIN_URL", &server.url)
        .env("ROLLOUT_ADMIN_TOKEN", TOKEN)
        .args(args);
    run(cmd)
}

/// Runs a prepared command to its end (bounded by its own `--timeout`).
pub fn run(mut cmd: Command) -> Run {
    let out = cmd.output().expect("the rollout binary runs");
    Run {
        code: out.status.code().expect("exited, not killed"),
        stdout: String::from_utf8(out.stdout).expect("utf-8 output"),
        stderr: String::from_utf8(out.stderr).expect("utf-8 errors"),
    }
}

/// Cells of the table row whose first cells are `first` (e.g. `["green"]`
/// or `["vision", "blue"]`).
pub fn row(table: &str, first: &[&str]) -> Vec<String> {
    table
        .lines()
        .map(|l| l.split_whitespace().map(String::from).collect::<Vec<_>>())
        .find(|cells| cells.len() >= first.len() && cells[..first.len()] == *first)
        .unwrap_or_else(|| panic!("no row {first:?} in\n{table}"))
}
