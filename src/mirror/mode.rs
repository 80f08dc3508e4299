//! The router's mirroring mode: copies of the active color's requests to the
//! standby, through the mirror engine.

use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode};
use http_body::Body;
use tower::BoxError;
use tower_service::Service;

use super::body::MirrorBody;
use super::engine::Engine;
use super::layer::MirrorBuilder;
use super::stats::MirrorStats;
use crate::control::RolloutHandle;
use crate::router::{self, sealed, Copied, CopyLane, CopyTo, Mode, ModeFor, NoCapture, Plain};
use crate::telemetry::Owner;

/// The [`Mode`] of a router built with
/// [`Builder::mirror`](crate::router::Builder::mirror): inner services receive
/// [`MirrorBody`] request bodies, and
/// [`RolloutHandle::mirror_standby`] copies a fraction of the active color's
/// requests to the standby.
#[derive(Clone, Debug)]
pub struct Mirroring {
    engine: Arc<Engine>,
}

impl sealed::Sealed for Mirroring {}

impl Mode for Mirroring {
    type Pending = ();
    type Capture = NoCapture;

    fn can_mirror(&self) -> bool {
        true
    }

    fn attachments(&self) -> Vec<Arc<dyn std::any::Any + Send + Sync>> {
        vec![self.engine.clone()]
    }

    fn begin(_: (), _: StatusCode, _: &HeaderMap) -> NoCapture {
        NoCapture
    }

    fn failed(_: ()) {}
}

impl<B> ModeFor<B> for Mirroring
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    type Body = MirrorBody<B>;

    #[inline]
    fn plain(req: Request<B>) -> Request<MirrorBody<B>> {
        req.map(MirrorBody::new)
    }
}

impl<B, S, TB> CopyTo<B, S> for Mirroring
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
    S: Service<Request<MirrorBody<B>>, Response = Response<TB>> + Send + 'static,
    S::Future: Send + 'static,
    TB: Body + Send + 'static,
    TB::Data: Send,
{
    fn copy(
        &self,
        req: Request<B>,
        standby: S,
        lane: CopyLane<'_>,
    ) -> Copied<Request<MirrorBody<B>>, ()> {
        // The state moved since the request was admitted: no copy.
        let Some(lane) = lane.start() else {
            return Copied::new(req.map(MirrorBody::new), ());
        };
        Copied::new(
            self.engine.copy_with(req, standby, Some(lane), None).req,
            (),
        )
    }
}

impl router::Builder<Plain> {
    /// Lets [`RolloutHandle::mirror_standby`] copy the active color's
    /// requests to the standby, with the bounds and header handling of
    /// `settings` (see [`MirrorBuilder`]; its `sample` is not used: the
    /// fraction is `mirror_standby`'s). Inner services then receive
    /// [`MirrorBody`] request bodies. To also compare the answers, use
    /// [`compare`](Self::compare) instead (it takes the mirror settings as
    /// part of its own).
    ///
    /// ```
    /// use std::convert::Infallible;
    /// use http::{Request, Response};
    /// use tower_rollout::mirror::{MirrorBody, MirrorLayer};
    /// use tower_rollout::BlueGreenRouter;
    ///
    /// // With mirroring on, the inner services take `MirrorBody` bodies.
    /// let svc = tower::service_fn(|_req: Request<MirrorBody<String>>| async {
    ///     Ok::<_, Infallible>(Response::new(String::new()))
    /// });
    /// let (router, handle) = BlueGreenRouter::builder()
    ///     .mirror(MirrorLayer::settings().max_in_flight(16))
    ///     .build(svc, svc)?;
    /// handle.mirror_standby(0.25)?;
    /// # drop(router);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn mirror(self, settings: MirrorBuilder<()>) -> router::Builder<Mirroring> {
        self.with_mode(move |name| {
            let (_, engine) = settings.engine()?;
            engine.stats.telemetry.attach(name, Owner::Router);
            Ok(Mirroring {
                engine: Arc::new(engine),
            })
        })
    }
}

impl RolloutHandle {
    /// The counters of the copies sent by
    /// [`mirror_standby`](Self::mirror_standby) (zeros for a router that
    /// does not mirror).
    pub fn mirror_stats(&self) -> MirrorStats {
        self.control
            .attached::<Engine>()
            .map(|e| e.stats())
            .unwrap_or_default()
    }
}
