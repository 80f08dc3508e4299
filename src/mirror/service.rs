use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{Request, Response};
use http_body::Body;
use tower_service::Service;

use tower::BoxError;

use super::body::MirrorBody;
use super::engine::Engine;

/// Sends the primary's requests on unchanged and copies sampled ones to a
/// shadow in the background. Made by [`MirrorLayer`](super::MirrorLayer); see
/// the [module docs](super).
#[derive(Clone)]
pub struct Mirror<S, T> {
    primary: S,
    shadow: T,
    engine: Arc<Engine>,
}

impl<S, T> Mirror<S, T> {
    pub(crate) fn from_parts(primary: S, shadow: T, engine: Arc<Engine>) -> Self {
        Mirror {
            primary,
            shadow,
            engine,
        }
    }

    /// The primary service.
    pub fn get_ref(&self) -> &S {
        &self.primary
    }
}

impl<B, S, T, TB> Service<Request<B>> for Mirror<S, T>
where
    S: Service<Request<MirrorBody<B>>>,
    T: Service<Request<MirrorBody<B>>, Response = Response<TB>> + Clone + Send + 'static,
    T::Future: Send + 'static,
    TB: Body + Send + 'static,
    TB::Data: Send,
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    /// Only the primary is polled: the shadow's readiness is its own task's
    /// business.
    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.primary.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> S::Future {
        let req = if self.engine.sample_hit() {
            self.engine.copy(req, self.shadow.clone(), None)
        } else {
            req.map(MirrorBody::new)
        };
        self.primary.call(req)
    }
}

impl<S: fmt::Debug, T: fmt::Debug> fmt::Debug for Mirror<S, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Mirror")
            .field("primary", &self.primary)
            .field("shadow", &self.shadow)
            .finish_non_exhaustive()
    }
}
