//! A small gRPC model server for exercising `tower-rollout` with tonic.
//!
//! [`pb`] holds the code generated from `proto/model.proto` (package
//! `model.v1`, service `Model` with a unary, a server-streaming and a
//! client-streaming RPC), compiled at build time with the `protoc` shipped in
//! the `protoc-bin-vendored` crate: no system `protoc` is needed.
//!
//! [`ModelServer`] implements that service in two deterministic versions, so a
//! client can tell which one answered: [`ModelServer::v1`] predicts the class
//! with the largest feature, [`ModelServer::v2`] the one with the smallest, and
//! every reply carries the version string. Each server records the calls it
//! received ([`ModelServer::received`]), so a test can check what a mirrored
//! shadow saw, and can hold its streamed replies back until released
//! ([`ModelServer::paced`]), so a test can look at a stream half-way through.
//!
//! [`fleet`] serves the real iris models of `tower-rollout-models` over gRPC
//! (`proto/iris.proto`) and runs the fleet story end to end
//! ([`fleet::fleet_demo`], `cargo run -p tower-rollout-grpc --example
//! grpc_fleet`). [`fleet_server`] keeps the fleet up for outside clients,
//! with gRPC server reflection (`grpc_fleet --serve ADDR`).
//!
//! [`serve`] runs a tonic [`Router`] on `127.0.0.1:0` and [`Running::client`]
//! connects a client to it:
//!
//! ```no_run
//! use tonic::transport::Server;
//! use tower_rollout::BlueGreenRouter;
//! use tower_rollout_grpc::{pb, serve, ModelServer};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let (layer, handle) = BlueGreenRouter::layer(ModelServer::v2().into_service());
//! let server = serve(Server::builder().layer(layer).add_service(ModelServer::v1().into_service()))
//!     .await?;
//! let mut client = server.client().await?;
//! let reply = client.predict(pb::PredictRequest { features: vec![0.1, 0.9] }).await?;
//! assert_eq!(reply.get_ref().version, "v1");
//! handle.promote()?;
//! # Ok(())
//! # }
//! ```
#![warn(missing_docs, missing_debug_implementations, rust_2018_idioms)]
#![forbid(unsafe_code)]

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use tokio::sync::Semaphore;
use tokio::task::JoinHandle;
use tokio_stream::{Stream, StreamExt};
use tonic::body::Body;
use tonic::transport::server::{Router, TcpIncoming};
use tonic::transport::Channel;
use tonic::{Request, Response, Status, Streaming};
use tower::{Layer, Service};

use pb::model_client::ModelClient;
use pb::{PredictReply, PredictRequest};

pub mod fleet;
pub mod fleet_server;

/// Code generated from `proto/model.proto`: messages, `model_server` and
/// `model_client`.
#[allow(missing_docs, missing_debug_implementations)]
pub mod pb {
    tonic::include_proto!("model.v1");
}

/// The error type tonic's server bounds use.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Which RPC a [`Received`] call came through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rpc {
    /// `Predict`, unary.
    Predict,
    /// `PredictStream`, server streaming.
    PredictStream,
    /// `PredictBatch`, client streaming.
    PredictBatch,
}

/// One call a [`ModelServer`] received.
#[derive(Debug, Clone, PartialEq)]
pub struct Received {
    /// The RPC called.
    pub rpc: Rpc,
    /// The features of each request message, in order.
    pub messages: Vec<Vec<f32>>,
    /// True when the request stream ended cleanly (always true for unary and
    /// server-streaming calls); false when it failed part-way.
    pub complete: bool,
    /// True when the request carried `tower-rollout`'s mirror marker header
    /// (`x-rollout-mirror: 1`): it was a shadow copy.
    pub mirrored: bool,
}

#[derive(Debug, Clone, Copy)]
enum Pick {
    Max,
    Min,
}

/// A toy classifier implementing the generated [`pb::model_server::Model`]
/// trait. Cheap to clone; clones share the record of received calls.
#[derive(Debug, Clone)]
pub struct ModelServer {
    /// The version string every reply carries.
    pub version: &'static str,
    pick: Pick,
    received: Arc<Mutex<Vec<Received>>>,
    pace: Option<Arc<Semaphore>>,
}

impl ModelServer {
    /// Version `"v1"`: predicts the class with the largest feature, with
    /// probabilities `softmax(features)`.
    pub fn v1() -> Self {
        Self::new("v1", Pick::Max)
    }

    /// Version `"v2"`: predicts the class with the smallest feature, with
    /// probabilities `softmax(-features)`.
    pub fn v2() -> Self {
        Self::new("v2", Pick::Min)
    }

    fn new(version: &'static str, pick: Pick) -> Self {
        ModelServer {
            version,
            pick,
            received: Arc::default(),
            pace: None,
        }
    }

    /// Makes `PredictStream` wait for one permit of `gate` before sending each
    /// reply, so a test decides how far a stream may go (permits are consumed).
    pub fn paced(mut self, gate: Arc<Semaphore>) -> Self {
        self.pace = Some(gate);
        self
    }

    /// The calls received so far, oldest first (recorded when a call's
    /// request stream has been read, before its reply is returned).
    pub fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }

    /// The generated tonic service over this model; `Clone`, as tonic's
    /// `add_service` and `tower-rollout`'s layers need.
    pub fn into_service(self) -> pb::model_server::ModelServer<Self> {
        pb::model_server::ModelServer::new(self)
    }

    /// The probabilities and the predicted class of one feature vector.
    /// Deterministic; ties go to the lowest index.
    pub fn classify(&self, features: &[f32]) -> Result<PredictReply, Status> {
        if features.is_empty() {
            return Err(Status::invalid_argument("no features"));
        }
        let scores: Vec<f32> = match self.pick {
            Pick::Max => features.to_vec(),
            Pick::Min => features.iter().map(|f| -f).collect(),
        };
        let top = scores
            .iter()
            .enumerate()
            .fold(0, |best, (i, s)| if *s > scores[best] { i } else { best });
        Ok(PredictReply {
            label: label(top),
            probabilities: softmax(&scores),
            version: self.version.to_owned(),
        })
    }

    /// The replies `PredictStream` sends for `features`: one per class, most
    /// likely first, each with that class's label and probability.
    pub fn stream_replies(&self, features: &[f32]) -> Result<Vec<PredictReply>, Status> {
        let probabilities = self.classify(features)?.probabilities;
        let mut order: Vec<usize> = (0..probabilities.len()).collect();
        // Stable: equal probabilities keep their class order.
        order.sort_by(|a, b| probabilities[*b].total_cmp(&probabilities[*a]));
        Ok(order
            .into_iter()
            .map(|i| PredictReply {
                label: label(i),
                probabilities: vec![probabilities[i]],
                version: self.version.to_owned(),
            })
            .collect())
    }

    fn record<T>(&self, req: &Request<T>, rpc: Rpc, messages: Vec<Vec<f32>>, complete: bool) {
        let mirrored = req
            .metadata()
            .get(tower_rollout::mirror::DEFAULT_MARKER)
            .is_some_and(|v| v == "1");
        self.received.lock().unwrap().push(Received {
            rpc,
            messages,
            complete,
            mirrored,
        });
    }
}

fn label(class: usize) -> String {
    format!("class-{class}")
}

fn softmax(scores: &[f32]) -> Vec<f32> {
    let max = scores.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let exp: Vec<f32> = scores.iter().map(|s| (s - max).exp()).collect();
    let sum: f32 = exp.iter().sum();
    exp.into_iter().map(|e| e / sum).collect()
}

type ReplyStream = Pin<Box<dyn Stream<Item = Result<PredictReply, Status>> + Send>>;

#[tonic::async_trait]
impl pb::model_server::Model for ModelServer {
    async fn predict(
        &self,
        request: Request<PredictRequest>,
    ) -> Result<Response<PredictReply>, Status> {
        self.record(
            &request,
            Rpc::Predict,
            vec![request.get_ref().features.clone()],
            true,
        );
        self.classify(&request.get_ref().features)
            .map(Response::new)
    }

    type PredictStreamStream = ReplyStream;

    async fn predict_stream(
        &self,
        request: Request<PredictRequest>,
    ) -> Result<Response<ReplyStream>, Status> {
        self.record(
            &request,
            Rpc::PredictStream,
            vec![request.get_ref().features.clone()],
            true,
        );
        let replies = self.stream_replies(&request.get_ref().features)?;
        let pace = self.pace.clone();
        let stream = tokio_stream::iter(replies).then(move |reply| {
            let pace = pace.clone();
            async move {
                if let Some(gate) = pace {
                    let permit = gate
                        .acquire()
                        .await
                        .map_err(|_| Status::unavailable("pace gate closed"))?;
                    permit.forget();
                }
                Ok(reply)
            }
        });
        Ok(Response::new(Box::pin(stream)))
    }

    async fn predict_batch(
        &self,
        request: Request<Streaming<PredictRequest>>,
    ) -> Result<Response<PredictReply>, Status> {
        let mut messages = Vec::new();
        let mut failed = None;
        let (meta, ext, mut stream) = request.into_parts();
        loop {
            match stream.message().await {
                Ok(Some(m)) => messages.push(m.features),
                Ok(None) => break,
                Err(status) => {
                    failed = Some(status);
                    break;
                }
            }
        }
        let head = Request::from_parts(meta, ext, ());
        self.record(&head, Rpc::PredictBatch, messages.clone(), failed.is_none());
        if let Some(status) = failed {
            return Err(status);
        }
        // The batch's features, summed class by class.
        let width = messages.iter().map(Vec::len).max().unwrap_or(0);
        let mut sum = vec![0.0f32; width];
        for m in &messages {
            for (s, f) in sum.iter_mut().zip(m) {
                *s += f;
            }
        }
        self.classify(&sum).map(Response::new)
    }
}

/// A tonic server running in a background task; stopped when dropped.
#[derive(Debug)]
pub struct Running {
    /// The address it listens on.
    pub addr: SocketAddr,
    task: JoinHandle<Result<(), tonic::transport::Error>>,
}

impl Running {
    /// A new client connected to this server (its own HTTP/2 connection).
    ///
    /// # Errors
    /// When the connection cannot be made.
    pub async fn client(&self) -> Result<ModelClient<Channel>, tonic::transport::Error> {
        ModelClient::connect(format!("http://{}", self.addr)).await
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Serves `router` (a `Server::builder().layer(..).add_service(..)`) on
/// `127.0.0.1` with a port chosen by the OS, in a background task.
///
/// The bounds are those of tonic's `Router::serve_with_incoming`.
///
/// # Errors
/// When the listener cannot be bound.
pub async fn serve<L, ResBody>(router: Router<L>) -> std::io::Result<Running>
where
    L: Layer<tonic::service::Routes> + Send + 'static,
    L::Service:
        Service<http::Request<Body>, Response = http::Response<ResBody>> + Clone + Send + 'static,
    <L::Service as Service<http::Request<Body>>>::Future: Send,
    <L::Service as Service<http::Request<Body>>>::Error: Into<BoxError> + Send,
    ResBody: http_body::Body<Data = bytes::Bytes> + Send + 'static,
    ResBody::Error: Into<BoxError>,
{
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    // TCP_NODELAY, as tonic's own `serve` sets it: without it each small
    // reply can wait for the client's delayed ACK (milliseconds per call).
    let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
    let task = tokio::spawn(router.serve_with_incoming(incoming));
    Ok(Running { addr, task })
}
