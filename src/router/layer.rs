use std::fmt;
use std::sync::Arc;

use tower_layer::Layer;

use super::config::Config;
use super::BlueGreenRouter;
use crate::control::{Control, RolloutHandle};

/// Wraps the live service in a [`BlueGreenRouter`], with a standby given up
/// front. Made by [`BlueGreenRouter::layer`] or
/// [`Builder::layer`](super::Builder::layer). See the [module docs](crate::router).
///
/// Every service this layer wraps shares one control state, so one
/// [`RolloutHandle`] steers all the routes an axum `Router::layer` applies it to.
#[derive(Clone)]
pub struct BlueGreenLayer<G> {
    green: G,
    control: Arc<Control>,
    config: Arc<Config>,
}

impl<G> BlueGreenLayer<G> {
    pub(crate) fn new(green: G, control: Arc<Control>, config: Arc<Config>) -> Self {
        BlueGreenLayer {
            green,
            control,
            config,
        }
    }

    /// A new handle on the state this layer's routers share.
    pub fn handle(&self) -> RolloutHandle {
        RolloutHandle::new(self.control.clone())
    }
}

impl<S, G: Clone> Layer<S> for BlueGreenLayer<G> {
    type Service = BlueGreenRouter<S, G>;

    fn layer(&self, blue: S) -> Self::Service {
        BlueGreenRouter::from_parts(
            blue,
            self.green.clone(),
            self.control.clone(),
            self.config.clone(),
        )
    }
}

impl<G: fmt::Debug> fmt::Debug for BlueGreenLayer<G> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BlueGreenLayer")
            .field("green", &self.green)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}
