//! The router's comparing mode: copies of the active color's requests to the
//! standby, whose answers are compared with the active color's.

use std::sync::Arc;

use bytes::{Buf, Bytes};
use http::{HeaderMap, Request, Response, StatusCode};
use http_body::{Body, Frame};
use tower::BoxError;
use tower_service::Service;

use super::capture::{Capture, Judge, PendingCapture};
use super::layer::CompareSettings;
use super::report::ShadowReport;
use crate::control::RolloutHandle;
use crate::mirror::{CopyStart, Engine, MirrorBody};
use crate::router::{self, sealed, Copied, CopyLane, CopyTo, Mode, ModeFor, Plain};
use crate::telemetry::Owner;

/// The [`Mode`] of a router built with
/// [`Builder::compare`](crate::router::Builder::compare): what
/// [`RolloutHandle::mirror_standby`] copies to the standby is compared with
/// the active color's answers; [`RolloutHandle::shadow_report`] reads the
/// results. Inner services receive [`MirrorBody`] request bodies.
#[derive(Clone, Debug)]
pub struct Comparing {
    engine: Arc<Engine>,
    judge: Arc<Judge>,
}

impl sealed::Sealed for Comparing {}

impl Mode for Comparing {
    type Pending = Option<Box<PendingCapture>>;
    type Capture = Option<Box<Capture>>;
    const COMPARES: bool = true;

    fn can_mirror(&self) -> bool {
        true
    }

    fn attachments(&self) -> Vec<Arc<dyn std::any::Any + Send + Sync>> {
        vec![self.engine.clone(), self.judge.clone()]
    }

    fn begin(pending: Self::Pending, status: StatusCode, headers: &HeaderMap) -> Self::Capture {
        pending.map(|p| p.begin(status, headers))
    }

    fn failed(pending: Self::Pending) {
        if let Some(p) = pending {
            p.failed();
        }
    }
}

impl<B> ModeFor<B> for Comparing
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

impl<B, S, TB> CopyTo<B, S> for Comparing
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
    ) -> Copied<Request<MirrorBody<B>>, Self::Pending> {
        // The state moved since the request was admitted: no copy (and no
        // comparison counted).
        let (word, control) = (lane.word, lane.control);
        let Some(lane) = lane.start() else {
            return Copied::new(req.map(MirrorBody::new), None);
        };
        // No noise floor through the router: it has no secondary.
        let pair = self.judge.pairs.routed(word, control);
        let started = self.judge.start(req.method(), req.uri(), pair);
        let teed = self
            .engine
            .copy_with(req, standby, Some(lane), Some(started.shadow));
        match teed.start {
            CopyStart::Started => Copied::new(teed.req, Some(started.capture)),
            // Counted by the dropped follow-up (skipped_not_started).
            CopyStart::NotChosen | CopyStart::NotStarted => Copied::new(teed.req, None),
        }
    }
}

impl router::Capture for Option<Box<Capture>> {
    #[inline]
    fn active(&self) -> bool {
        self.is_some()
    }

    fn frame<D: Buf>(&mut self, frame: &Frame<D>) {
        if let Some(c) = self {
            c.frame(frame);
        }
    }

    fn end(&mut self) {
        if let Some(c) = self {
            c.end();
        }
    }

    fn fail(&mut self) {
        if let Some(c) = self {
            c.fail();
        }
    }
}

impl router::Builder<Plain> {
    /// Compares what [`RolloutHandle::mirror_standby`] copies to the standby
    /// with the active color's answers; read the results with
    /// [`RolloutHandle::shadow_report`]. The copies' bounds come from
    /// [`CompareSettings::mirror`]. Inner services then receive
    /// [`MirrorBody`] request bodies.
    pub fn compare(self, settings: CompareSettings) -> router::Builder<Comparing> {
        self.with_mode(move |name| {
            let shared = settings.build(None)?;
            shared.engine.stats.telemetry.attach(name, Owner::Router);
            shared.judge.pairs.telemetry.attach(name, Owner::Router);
            Ok(Comparing {
                engine: Arc::new(shared.engine),
                judge: shared.judge,
            })
        })
    }
}

impl RolloutHandle {
    /// The results of comparing mirrored copies of the active color's
    /// requests with its answers, for the pair of versions the router
    /// compares now (the active version against the standby's), when the
    /// router was built with
    /// [`Builder::compare`](crate::router::Builder::compare).
    ///
    /// A promote (the sides swap) or a deploy (a side is replaced) starts a
    /// new pair with an empty report, so an agreement rate never blends two
    /// pairs; a rollback returns to the earlier pair's report. The report's
    /// [`versions`](ShadowReport::versions) names both sides. Empty (and
    /// without versions) before the current pair's first comparison, or
    /// without `compare`.
    pub fn shadow_report(&self) -> ShadowReport {
        let Some(judge) = self.control.attached::<Judge>() else {
            return ShadowReport::default();
        };
        match judge.pairs.current(self.control.word()) {
            Some(pair) => pair.report.snapshot(),
            None => ShadowReport::default(),
        }
    }

    /// The reports of the last pairs of versions compared (at most
    /// eight), oldest first, each naming its versions; see
    /// [`shadow_report`](Self::shadow_report).
    pub fn shadow_reports(&self) -> Vec<ShadowReport> {
        self.control
            .attached::<Judge>()
            .map(|j| j.pairs.all().iter().map(|p| p.report.snapshot()).collect())
            .unwrap_or_default()
    }
}
