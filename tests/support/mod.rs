//! Shared helpers for the integration tests: real servers on 127.0.0.1:0.
#![allow(dead_code, unreachable_pub)]

pub mod browser;
pub mod model;

use std::net::SocketAddr;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;
use tokio::task::JoinHandle;

pub type HttpClient = Client<HttpConnector, Full<Bytes>>;

/// Serves an axum router on 127.0.0.1 with an OS-chosen port.
pub async fn serve(app: axum::Router) -> (SocketAddr, JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    (addr, task)
}

pub fn client() -> HttpClient {
    Client::builder(TokioExecutor::new()).build_http()
}

/// A response read whole: status, one header's value, body.
#[derive(Debug)]
pub struct Answer {
    pub status: http::StatusCode,
    pub header: Option<String>,
    pub body: Bytes,
}

/// Sends a request and reads the whole response.
pub async fn send(
    client: &HttpClient,
    req: http::Request<Full<Bytes>>,
    header: &str,
) -> Result<Answer, Box<dyn std::error::Error + Send + Sync>> {
    let res = client.request(req).await?;
    let status = res.status();
    let header = res
        .headers()
        .get(header)
        .map(|v| v.to_str().unwrap().to_owned());
    let body = res.into_body().collect().await?.to_bytes();
    Ok(Answer {
        status,
        header,
        body,
    })
}

/// An executor that accepts every task and drops it unrun, as a runtime
/// shutting down does.
pub struct DropTasks;

impl tower_rollout::mirror::Spawn for DropTasks {
    fn spawn(
        &self,
        task: tower_rollout::mirror::BoxTask,
    ) -> Result<(), tower_rollout::mirror::SpawnError> {
        drop(task);
        Ok(())
    }

    fn sleep(&self, _: std::time::Duration) -> tower_rollout::mirror::BoxTask {
        Box::pin(std::future::pending())
    }
}

/// The color and version a served-by header names (`green; version=v2`).
pub fn served_by(value: &str) -> (tower_rollout::Color, String) {
    let (color, version) = value
        .split_once(';')
        .unwrap_or_else(|| panic!("served-by header without a version: {value:?}"));
    let version = version
        .trim()
        .strip_prefix("version=")
        .unwrap_or_else(|| panic!("served-by header without version=: {value:?}"));
    (color.trim().parse().unwrap(), version.to_owned())
}
