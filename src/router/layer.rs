use std::fmt;
use std::sync::Arc;

use tower_layer::Layer;

use super::config::{Config, Parts};
use super::mode::{Mode, Plain};
use super::service::Shared;
use super::BlueGreenRouter;
use crate::control::{Control, RolloutHandle};
use crate::telemetry::RouterTelemetry;

/// Wraps the live service in a [`BlueGreenRouter`], with a standby given up
/// front. Made by [`BlueGreenRouter::layer`] or
/// [`Builder::layer`](super::Builder::layer). See the [module docs](crate::router).
///
/// Every service this layer wraps shares one control state, so one
/// [`RolloutHandle`] steers all the routes an axum `Router::layer` applies it
/// to. A layer's routers own their services (blue is the service each one
/// wraps), so versions cannot be deployed into them; build a router over two
/// services with [`Builder::build`](super::Builder::build) for that.
#[derive(Clone)]
pub struct BlueGreenLayer<G, M = Plain> {
    green: G,
    control: Arc<Control>,
    config: Arc<Config>,
    mode: M,
    telemetry: Option<Arc<RouterTelemetry>>,
}

impl<G, M> BlueGreenLayer<G, M> {
    pub(crate) fn new(green: G, parts: Parts<M>) -> Self {
        BlueGreenLayer {
            green,
            control: parts.control,
            config: parts.config,
            mode: parts.mode,
            telemetry: parts.telemetry,
        }
    }

    /// A new handle on the state this layer's routers share.
    pub fn handle(&self) -> RolloutHandle {
        RolloutHandle::new(self.control.clone())
    }
}

impl<S, G: Clone, M: Mode + Clone> Layer<S> for BlueGreenLayer<G, M> {
    type Service = BlueGreenRouter<S, G, M>;

    fn layer(&self, blue: S) -> Self::Service {
        let shared = Arc::new(Shared {
            config: self.config.clone(),
            mode: self.mode.clone(),
            slots: None,
            telemetry: self.telemetry.clone(),
        });
        BlueGreenRouter::fixed(blue, self.green.clone(), shared, self.control.clone())
    }
}

impl<G: fmt::Debug, M> fmt::Debug for BlueGreenLayer<G, M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BlueGreenLayer")
            .field("green", &self.green)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}
