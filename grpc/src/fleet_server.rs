//! The gRPC fleet kept up for outside clients (`grpc_fleet --serve ADDR`):
//! the iris models behind the rollout router as the `iris.v1.Iris` service,
//! beside tonic's gRPC server reflection (`grpc.reflection.v1` and
//! `v1alpha`), so `grpcurl` or a grpcio client can list, describe and call
//! it without the `.proto` files.
//!
//! The router is added to tonic's router as one named service
//! ([`IrisRollout`]) instead of being layered over the whole server as
//! [`fleet_demo`](crate::fleet::fleet_demo) does: reflection then answers the
//! same whichever color is live, and its calls are neither mirrored to the
//! standby nor compared.
//!
//! ```no_run
//! use tower_rollout_grpc::fleet_server::FleetServer;
//!
//! # async fn run() -> Result<(), tower_rollout_grpc::BoxError> {
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:50051").await?;
//! let mut server = FleetServer::start(listener, async {
//!     let _ = tokio::signal::ctrl_c().await;
//! })
//! .await?;
//! server.handle.mirror_standby(1.0)?;   // green answers copies, compared with blue's
//! server.wait().await?;                 // until Ctrl-C
//! # Ok(())
//! # }
//! ```

use std::future::Future;
use std::net::SocketAddr;
use std::task::{Context, Poll};

use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tonic::server::NamedService;
use tonic::transport::server::TcpIncoming;
use tonic::transport::Server;
use tower::{Layer, Service};
use tower_rollout::RolloutHandle;
use tower_rollout_models::Model;

use crate::fleet::{layer, pb, IrisServer};
use crate::BoxError;

/// The encoded `FileDescriptorSet` of `proto/iris.proto` (made by the
/// crate's build script), which the reflection service serves.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("iris_descriptor");

/// A service under the name `iris.v1.Iris` for tonic's router: here the
/// rollout router over the two iris models. Calls pass through unchanged.
#[derive(Debug, Clone)]
pub struct IrisRollout<S>(pub S);

impl<S> NamedService for IrisRollout<S> {
    const NAME: &'static str = <pb::iris_server::IrisServer<IrisServer> as NamedService>::NAME;
}

impl<S, R> Service<R> for IrisRollout<S>
where
    S: Service<R>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, req: R) -> S::Future {
        self.0.call(req)
    }
}

/// The fleet serving on a listener until its shutdown future resolves:
/// v1 (blue, live) and v2 (green) behind the router, green's mirrored
/// answers compared with blue's (sticky canary by the `x-user-id`
/// metadata, `x-served-by` in every answer), reflection beside it.
#[derive(Debug)]
#[non_exhaustive]
pub struct FleetServer {
    /// The address it listens on.
    pub addr: SocketAddr,
    /// The router's handle: promote, split, mirror, reports.
    pub handle: RolloutHandle,
    /// The model blue serves.
    pub v1: Model,
    /// The model green serves.
    pub v2: Model,
    task: JoinHandle<Result<(), tonic::transport::Error>>,
}

impl FleetServer {
    /// Trains the models and serves them on `listener` in a background task
    /// until `shutdown` resolves (or the server is dropped).
    ///
    /// # Errors
    /// When the models do not train or the reflection service cannot read
    /// the descriptor set.
    pub async fn start<F>(listener: TcpListener, shutdown: F) -> Result<FleetServer, BoxError>
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let (v1, v2) = Model::train_both()?;
        let (layer, handle) = layer(&v1, &v2)?;
        let iris = IrisRollout(layer.layer(IrisServer::new(v1.clone()).into_service()));
        let reflection_v1 = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(FILE_DESCRIPTOR_SET)
            .build_v1()?;
        let reflection_v1alpha = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(FILE_DESCRIPTOR_SET)
            .build_v1alpha()?;
        let addr = listener.local_addr()?;
        // TCP_NODELAY, as tonic's own `serve` sets it.
        let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
        let router = Server::builder()
            .add_service(iris)
            .add_service(reflection_v1)
            .add_service(reflection_v1alpha);
        let task = tokio::spawn(router.serve_with_incoming_shutdown(incoming, shutdown));
        Ok(FleetServer {
            addr,
            handle,
            v1,
            v2,
            task,
        })
    }

    /// Waits until the server stops (its shutdown future resolved).
    ///
    /// # Errors
    /// When serving failed, or the task panicked.
    pub async fn wait(&mut self) -> Result<(), BoxError> {
        (&mut self.task).await??;
        Ok(())
    }
}

impl Drop for FleetServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}
