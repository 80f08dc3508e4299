use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use bytes::Bytes;
use http::{Request, Response};
use tower::BoxError;
use tower_service::Service;

use super::body::RolloutBody;
use super::config::{Builder, Config, Parts};
use super::future::{Extra, ResponseFuture};
use super::mode::{Copied, CopyLane, CopyTo, Mode, ModeFor, Plain};
use super::BlueGreenLayer;
use crate::control::{
    attach_prober, hit, Admission, Block, Cached, Control, Probe, Readiness, RolloutHandle, Slots,
    Tags, Word,
};
use crate::telemetry::{RequestTelemetry, RouterTelemetry};
use crate::Color;

/// Routes each request to one of two versions, blue or green, as steered by a
/// [`RolloutHandle`]. See the [module docs](crate::router).
pub struct BlueGreenRouter<SB, SG, M = Plain> {
    /// This clone's copies of the colors' services, filled from the slots on
    /// first use and dropped when a deploy replaces their version.
    blue: Option<Cached<SB>>,
    green: Option<Cached<SG>>,
    /// The slot epoch the copies come from.
    epoch: u32,
    flags: Flags,
    control: Arc<Control>,
    shared: Arc<Shared<SB, SG, M>>,
    /// Filled by `poll_ready` with the color polled ready, the word it was
    /// picked from and the request's admission; taken by `call`. Cleared by
    /// `Clone`.
    picked: Option<Pick>,
    /// Set while this clone is registered as waiting for a transition.
    parked: Option<u64>,
    /// The readiness last reported per color (version id, what was seen), so
    /// repeated sightings take no lock.
    seen: [Option<(u64, Readiness)>; 2],
}

/// What a router's clones share beyond the control state.
pub(crate) struct Shared<SB, SG, M> {
    pub(crate) config: Arc<Config>,
    pub(crate) mode: M,
    /// The slots, for a router built over two services; `None` for a layer's.
    pub(crate) slots: Option<Arc<Slots<SB, SG>>>,
    pub(crate) telemetry: Option<Arc<RouterTelemetry>>,
}

/// The configuration facts `call` branches on, copied into each clone.
#[derive(Debug, Clone, Copy)]
struct Flags {
    /// No override header and no tags: only a sticky key and measuring may
    /// add to the dispatch.
    plain: bool,
    /// `plain` and no sticky key: `call` only dispatches (unless measuring
    /// or mirroring).
    fast: bool,
    /// A sticky key: `poll_ready` polls the active color, `call` decides.
    sticky: bool,
    /// The version's tags are needed (served-by header, extension, telemetry).
    tags: bool,
}

impl Flags {
    fn of(config: &Config, telemetry: bool) -> Flags {
        let tags = config.served_by.is_some() || config.color_extension || telemetry;
        Flags {
            plain: !tags && config.override_header.is_none(),
            fast: !tags && config.override_header.is_none() && config.sticky.is_none(),
            sticky: config.sticky.is_some(),
            tags,
        }
    }
}

/// A request admitted by `poll_ready`.
struct Pick {
    color: Color,
    word: Word,
    guard: Admission,
}

/// The pick `call` serves, and whether an override header chose it.
struct Choice {
    pick: Pick,
    forced: bool,
}

/// What polling one color's service gave.
enum Polled<E> {
    Ready,
    Pending,
    Failed(E),
    /// The slots moved on since the word was read: read it again.
    Stale,
}

/// What `poll_ready` does when the color it picked is not ready.
enum NotReady<E> {
    Use(Color),
    Retry,
    Wait,
    Fail(E),
}

/// A version's service, as the router calls it and copies requests to it:
/// the bounds of the router's `Service` impl, in one place.
pub(crate) trait Inner<R>:
    Service<R, Future: Send + 'static> + Clone + Send + 'static
{
}

impl<T, R> Inner<R> for T where T: Service<R, Future: Send + 'static> + Clone + Send + 'static {}

/// A response body the router passes on (and a comparison may copy).
pub(crate) trait ResponseBody: http_body::Body<Data: Send> + Send + 'static {}

impl<T> ResponseBody for T where T: http_body::Body<Data: Send> + Send + 'static {}

/// A request body the router passes on (and a copy may tee).
pub(crate) trait RequestBody:
    http_body::Body<Data = Bytes, Error: Into<BoxError>> + Send + 'static
{
}

impl<T> RequestBody for T where
    T: http_body::Body<Data = Bytes, Error: Into<BoxError>> + Send + 'static
{
}

fn next_id() -> u64 {
    static IDS: AtomicU64 = AtomicU64::new(1);
    IDS.fetch_add(1, Ordering::Relaxed)
}

impl BlueGreenRouter<(), ()> {
    /// A builder for version labels, sticky canaries, override and served-by
    /// headers, mirroring and comparison.
    pub fn builder() -> Builder {
        Builder::new()
    }

    /// A [`Layer`](tower_layer::Layer) that puts a router in front of the
    /// service it wraps (blue, active), with `green` as the standby.
    pub fn layer<G>(green: G) -> (BlueGreenLayer<G>, RolloutHandle) {
        Builder::new()
            .layer(green)
            .expect("the default configuration is valid")
    }
}

impl<SB, SG> BlueGreenRouter<SB, SG>
where
    SB: Clone + Send + Sync + 'static,
    SG: Clone + Send + Sync + 'static,
{
    /// A router with `blue` active and `green` on standby, and its handle.
    pub fn new(blue: SB, green: SG) -> (Self, RolloutHandle) {
        Builder::new()
            .build(blue, green)
            .expect("the default configuration is valid")
    }
}

impl<SB, SG, M> BlueGreenRouter<SB, SG, M> {
    /// A router over two slots (built by [`Builder::build`]).
    pub(crate) fn slotted(blue: SB, green: SG, parts: Parts<M>) -> Self
    where
        SB: Clone + Send + Sync + 'static,
        SG: Clone + Send + Sync + 'static,
    {
        let slots = Arc::new(Slots::new(&parts.control, blue, green));
        attach_prober(&parts.control, &slots);
        let flags = Flags::of(&parts.config, parts.telemetry.is_some());
        BlueGreenRouter {
            blue: None,
            green: None,
            epoch: parts.control.word().epoch(),
            flags,
            shared: Arc::new(Shared {
                config: parts.config,
                mode: parts.mode,
                slots: Some(slots),
                telemetry: parts.telemetry,
            }),
            control: parts.control,
            picked: None,
            parked: None,
            seen: [None; 2],
        }
    }

    /// A router that owns its two services (made by a layer).
    pub(crate) fn fixed(
        blue: SB,
        green: SG,
        shared: Arc<Shared<SB, SG, M>>,
        control: Arc<Control>,
    ) -> Self {
        let flags = Flags::of(&shared.config, shared.telemetry.is_some());
        let (b, g) = {
            let st = control.state();
            let own = |color: Color| {
                let live = st.version(color);
                (live.id, live.block, flags.tags.then(|| live.tags.clone()))
            };
            (own(Color::Blue), own(Color::Green))
        };
        BlueGreenRouter {
            blue: Some(Cached::owned(blue, b.0, b.1, b.2)),
            green: Some(Cached::owned(green, g.0, g.1, g.2)),
            epoch: control.word().epoch(),
            flags,
            shared,
            control,
            picked: None,
            parked: None,
            seen: [None; 2],
        }
    }

    /// A new handle on this router's state.
    pub fn handle(&self) -> RolloutHandle {
        RolloutHandle::new(self.control.clone())
    }
}

#[cfg(feature = "tokio")]
impl<S, M> BlueGreenRouter<S, S, M> {
    /// A [`Deployer`](crate::control::Deployer) that loads new versions of
    /// type `S` into this router's standby color. `B` is the request body
    /// type the router serves (for example `axum::body::Body`); the new
    /// service is driven to readiness as the router's inner services are,
    /// with requests of `M::Body` (`B` itself, or a
    /// [`MirrorBody`](crate::mirror::MirrorBody) of it when the router
    /// mirrors or compares). A router made by a [`BlueGreenLayer`] has no
    /// slots: its deploys fail with
    /// [`DeployError::NotDeployable`](crate::control::DeployError::NotDeployable).
    pub fn deployer<B>(&self) -> crate::control::Deployer<S, Request<M::Body>>
    where
        M: ModeFor<B>,
    {
        crate::control::Deployer::new(self.control.clone(), self.shared.slots.clone())
    }
}

/// Polls `svc` for readiness with its error erased: kept by the slots to
/// probe a standby's readiness where the request type is unknown.
fn poll_erased<S: Service<R>, R>(svc: &mut S, cx: &mut Context<'_>) -> Poll<Result<(), ()>> {
    svc.poll_ready(cx).map_err(drop)
}

impl<B, SB, SG, M, RB> Service<Request<B>> for BlueGreenRouter<SB, SG, M>
where
    M: CopyTo<B, SB> + CopyTo<B, SG>,
    SB: Inner<Request<M::Body>, Response = Response<RB>>,
    SG: Inner<Request<M::Body>, Response = Response<RB>, Error = SB::Error>,
    RB: ResponseBody,
    B: RequestBody,
{
    type Response = Response<RolloutBody<RB, M::Capture>>;
    type Error = SB::Error;
    type Future = ResponseFuture<SB::Future, SG::Future, M>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        type Req<M, B> = Request<<M as ModeFor<B>>::Body>;
        if let Some(pick) = &self.picked {
            // Polled again before `call`: the same color, still admitted.
            match self.poll_color::<Req<M, B>>(pick.color, cx) {
                Polled::Ready => return Poll::Ready(Ok(())),
                Polled::Failed(e) => {
                    self.cancel_pick();
                    return Poll::Ready(Err(e));
                }
                Polled::Pending | Polled::Stale => self.cancel_pick(),
            }
        }
        loop {
            let word = self.control.word();
            if word.epoch() != self.epoch {
                self.refresh(word.epoch());
            }
            // With a sticky key, `call` decides the color of each request.
            let want = if self.flags.sticky {
                word.active()
            } else {
                word.pick()
            };
            let color = match self.poll_color::<Req<M, B>>(want, cx) {
                Polled::Ready => want,
                Polled::Stale => continue,
                other => match self.not_ready::<Req<M, B>>(want, word, other, cx) {
                    NotReady::Use(color) => color,
                    NotReady::Retry => continue,
                    NotReady::Wait => return Poll::Pending,
                    NotReady::Fail(e) => return Poll::Ready(Err(e)),
                },
            };
            // Counted from now on; valid if the state did not move meanwhile
            // (see `control::counters` for why this closes the race with
            // `drained`).
            let guard = self.block(color).admit_request();
            if self.control.word() != word {
                guard.cancel();
                continue;
            }
            if self.parked.is_some() {
                self.unpark();
            }
            self.picked = Some(Pick { color, word, guard });
            return Poll::Ready(Ok(()));
        }
    }

    #[inline(never)]
    fn call(&mut self, req: Request<B>) -> Self::Future {
        let pick = self
            .picked
            .as_ref()
            .expect("poll_ready must be called first");
        if !self.flags.fast || pick.word.extras() {
            return self.call_other(req);
        }
        // The plain path: the inner service is called before anything else
        // is written, so the request moves straight into it and its future
        // is made in place.
        match pick.color {
            Color::Blue => {
                let fut = match &mut self.blue {
                    Some(c) => c.svc.call(M::plain(req)),
                    None => unreachable!("a picked color has its service"),
                };
                ResponseFuture::blue(fut, self.admitted(), Extra::none())
            }
            Color::Green => {
                let fut = match &mut self.green {
                    Some(c) => c.svc.call(M::plain(req)),
                    None => unreachable!("a picked color has its service"),
                };
                ResponseFuture::green(fut, self.admitted(), Extra::none())
            }
        }
    }
}

impl<SB, SG, M: Mode> BlueGreenRouter<SB, SG, M> {
    /// Calls the picked color's service; nothing is written before the
    /// inner call, so the request moves straight into it.
    #[inline(always)]
    fn dispatch<B>(
        &mut self,
        req: Request<B>,
        probe: Option<Probe>,
    ) -> ResponseFuture<SB::Future, SG::Future, M>
    where
        M: ModeFor<B>,
        SB: Service<Request<M::Body>>,
        SG: Service<Request<M::Body>>,
    {
        match self.picked.as_ref().map(|p| p.color) {
            Some(Color::Blue) => {
                let fut = match &mut self.blue {
                    Some(c) => c.svc.call(M::plain(req)),
                    None => unreachable!("a picked color has its service"),
                };
                ResponseFuture::blue(fut, self.admitted(), Extra::probed(probe))
            }
            _ => {
                let fut = match &mut self.green {
                    Some(c) => c.svc.call(M::plain(req)),
                    None => unreachable!("a picked color has its service"),
                };
                ResponseFuture::green(fut, self.admitted(), Extra::probed(probe))
            }
        }
    }

    /// Calls the picked service with a plain body, the request already
    /// prepared (a mirrored copy started, an extension inserted).
    #[inline(always)]
    fn dispatch_prepared<R>(
        &mut self,
        pick: Pick,
        req: R,
        extra: Extra<M>,
    ) -> ResponseFuture<SB::Future, SG::Future, M>
    where
        SB: Service<R>,
        SG: Service<R>,
    {
        match pick.color {
            Color::Blue => match &mut self.blue {
                Some(c) => ResponseFuture::blue(c.svc.call(req), pick.guard, extra),
                None => unreachable!("a picked color has its service"),
            },
            Color::Green => match &mut self.green {
                Some(c) => ResponseFuture::green(c.svc.call(req), pick.guard, extra),
                None => unreachable!("a picked color has its service"),
            },
        }
    }

    /// Every request but the plain ones, out of line so the plain path stays
    /// small: a sticky key or measuring only, or the full set of options.
    #[inline(never)]
    fn call_other<B, RB>(&mut self, req: Request<B>) -> ResponseFuture<SB::Future, SG::Future, M>
    where
        M: CopyTo<B, SB> + CopyTo<B, SG>,
        SB: Inner<Request<M::Body>, Response = Response<RB>>,
        SG: Inner<Request<M::Body>, Response = Response<RB>, Error = SB::Error>,
        RB: ResponseBody,
        B: RequestBody,
    {
        let pick = self
            .picked
            .as_ref()
            .expect("poll_ready must be called first");
        if self.flags.plain && pick.word.mirror() == 0 {
            return self.call_keyed(req);
        }
        let pick = self.picked.take().expect("checked above");
        self.call_with_extras(pick, req)
    }

    /// A request with a sticky key, or while measuring: the key's color (if
    /// ready) and the probe.
    #[inline(always)]
    fn call_keyed<B>(&mut self, req: Request<B>) -> ResponseFuture<SB::Future, SG::Future, M>
    where
        M: ModeFor<B>,
        SB: Service<Request<M::Body>> + Clone,
        SG: Service<Request<M::Body>, Error = SB::Error> + Clone,
    {
        if self.flags.sticky {
            self.stick::<B>(&req);
        }
        let measure = self.picked.as_ref().is_some_and(|p| p.word.measure());
        self.dispatch(req, measure.then(Probe::start))
    }

    /// A request with per-request options, or while mirroring or measuring:
    /// out of line, so the plain path stays small.
    #[inline(always)]
    fn call_with_extras<B, RB>(
        &mut self,
        pick: Pick,
        mut req: Request<B>,
    ) -> ResponseFuture<SB::Future, SG::Future, M>
    where
        M: CopyTo<B, SB> + CopyTo<B, SG>,
        SB: Inner<Request<M::Body>, Response = Response<RB>>,
        SG: Inner<Request<M::Body>, Response = Response<RB>, Error = SB::Error>,
        RB: ResponseBody,
        B: RequestBody,
    {
        let Choice { pick, forced } = self.choose::<B, Request<M::Body>>(pick, &req);
        let tags = self.tags(pick.color);
        if self.shared.config.color_extension {
            if let Some(tags) = &tags {
                req.extensions_mut().insert(tags.served.clone());
            }
        }
        // Requests served by the active color are copied to the standby at
        // the mirrored fraction (never those an override header chose).
        let mirrored = pick.word.mirror() != 0
            && !forced
            && pick.color == pick.word.active()
            && hit(pick.word.mirror());
        let Copied { req, pending } = if mirrored {
            self.copy(req, &pick)
        } else {
            Copied::new(M::plain(req), M::Pending::default())
        };
        // Entered until the response future is made: the inner `call` runs
        // in the request's span.
        let entered = crate::telemetry::request(tags.as_deref());
        let served_by = if self.shared.config.served_by.is_some() {
            tags
        } else {
            None
        };
        let extra = Extra {
            probe: pick.word.measure().then(Probe::start),
            served_by,
            pending,
            telemetry: RequestTelemetry::none(),
        };
        self.dispatch_prepared(pick, req, extra)
            .with_telemetry(entered.exit())
    }

    /// Moves the pick to the color of the request's sticky key (or of a
    /// canary draw for a request without one) when that color is ready.
    #[inline]
    fn stick<B>(&mut self, req: &Request<B>)
    where
        M: ModeFor<B>,
        SB: Service<Request<M::Body>> + Clone,
        SG: Service<Request<M::Body>, Error = SB::Error> + Clone,
    {
        let Some(pick) = self.picked.as_ref() else {
            return;
        };
        let want = match self.shared.config.sticky_bucket(req) {
            Some(bucket) => pick.word.color_for(bucket),
            None => pick.word.pick(),
        };
        if want != pick.color {
            let pick = self.picked.take().expect("checked above");
            self.picked = Some(self.reroute::<Request<M::Body>>(pick, want));
        }
    }

    /// The color this request goes to: the pick, unless its override header
    /// or sticky key says otherwise and that color is ready now.
    fn choose<B, R>(&mut self, pick: Pick, req: &Request<B>) -> Choice
    where
        SB: Service<R> + Clone,
        SG: Service<R, Error = SB::Error> + Clone,
    {
        let config = &self.shared.config;
        if let Some(color) = config.override_color(req, &self.control) {
            return Choice {
                pick: self.reroute::<R>(pick, color),
                forced: true,
            };
        }
        let want = match config.sticky_bucket(req) {
            Some(bucket) => pick.word.color_for(bucket),
            // Without a key under a sticky configuration the canary draw is
            // made here (`poll_ready` polled the active color).
            None if self.flags.sticky => pick.word.pick(),
            None => pick.color,
        };
        Choice {
            pick: self.reroute::<R>(pick, want),
            forced: false,
        }
    }

    /// Moves the request to `want` if that color is ready now and the state
    /// has not moved since it was admitted; otherwise it stays on the color
    /// polled ready (a fallback).
    fn reroute<R>(&mut self, pick: Pick, want: Color) -> Pick
    where
        SB: Service<R> + Clone,
        SG: Service<R, Error = SB::Error> + Clone,
    {
        if want == pick.color {
            return pick;
        }
        if self.try_ready::<R>(want) {
            let guard = self.block(want).admit_request();
            if self.control.word() == pick.word {
                pick.guard.cancel();
                return Pick {
                    color: want,
                    word: pick.word,
                    guard,
                };
            }
            guard.cancel();
        }
        self.control.fallbacks.fetch_add(1, Ordering::Relaxed);
        pick
    }

    /// Polls `color`'s service once without registering for a wake-up.
    fn try_ready<R>(&mut self, color: Color) -> bool
    where
        SB: Service<R> + Clone,
        SG: Service<R, Error = SB::Error> + Clone,
    {
        let mut cx = Context::from_waker(Waker::noop());
        match self.poll_color::<R>(color, &mut cx) {
            Polled::Ready => {
                self.report(color, Readiness::Ready);
                true
            }
            Polled::Pending => {
                self.report(color, Readiness::NotReady);
                false
            }
            Polled::Failed(_) => {
                self.failed(color);
                false
            }
            Polled::Stale => false,
        }
    }

    /// Starts a copy of `req` to the standby (the copy is counted on the
    /// standby's version only if the state has not moved since admission).
    #[cold]
    fn copy<B, RB>(&mut self, req: Request<B>, pick: &Pick) -> Copied<Request<M::Body>, M::Pending>
    where
        M: CopyTo<B, SB> + CopyTo<B, SG>,
        SB: Inner<Request<M::Body>, Response = Response<RB>>,
        SG: Inner<Request<M::Body>, Response = Response<RB>>,
        RB: ResponseBody,
        B: RequestBody,
    {
        let standby = pick.color.other();
        if !self.ensure::<Request<M::Body>>(standby) {
            return Copied::new(M::plain(req), M::Pending::default());
        }
        let control = &*self.control;
        let mode = &self.shared.mode;
        match standby {
            Color::Blue => {
                let c = self.blue.as_ref().expect("ensured");
                let lane = CopyLane {
                    block: c.block,
                    control,
                    word: pick.word,
                };
                CopyTo::<B, SB>::copy(mode, req, c.svc.clone(), lane)
            }
            Color::Green => {
                let c = self.green.as_ref().expect("ensured");
                let lane = CopyLane {
                    block: c.block,
                    control,
                    word: pick.word,
                };
                CopyTo::<B, SG>::copy(mode, req, c.svc.clone(), lane)
            }
        }
    }

    /// Polls `color`'s service, filling this clone's copy of it first.
    #[inline]
    fn poll_color<R>(&mut self, color: Color, cx: &mut Context<'_>) -> Polled<SB::Error>
    where
        SB: Service<R> + Clone,
        SG: Service<R, Error = SB::Error> + Clone,
    {
        let polled = match color {
            Color::Blue => self.blue.as_mut().map(|c| c.svc.poll_ready(cx)),
            Color::Green => self.green.as_mut().map(|c| c.svc.poll_ready(cx)),
        };
        match polled {
            Some(Poll::Ready(Ok(()))) => Polled::Ready,
            Some(Poll::Ready(Err(e))) => Polled::Failed(e),
            Some(Poll::Pending) => Polled::Pending,
            None if self.fill::<R>(color) => self.poll_color::<R>(color, cx),
            None => Polled::Stale,
        }
    }

    /// Fills this clone's copy of `color`'s service; false when the slots'
    /// epoch is not the one the caches are at (the word must be read again).
    #[cold]
    fn fill<R>(&mut self, color: Color) -> bool
    where
        SB: Service<R> + Clone,
        SG: Service<R> + Clone,
    {
        let Some(slots) = &self.shared.slots else {
            return false; // a layer's router owns its services: never empty
        };
        let pair = slots.load();
        if pair.epoch != self.epoch {
            // A deploy stored its slots and has not published its word yet:
            // the caller reads the word again (a deploy publishes at once).
            crate::control::spin_wait();
            return false;
        }
        slots.know_readiness(poll_erased::<SB, R>, poll_erased::<SG, R>);
        let tags = self.flags.tags;
        match color {
            Color::Blue => self.blue = Some(pair.blue.cached(tags)),
            Color::Green => self.green = Some(pair.green.cached(tags)),
        }
        true
    }

    /// Whether `color`'s service is in this clone (filling it if need be).
    fn ensure<R>(&mut self, color: Color) -> bool
    where
        SB: Service<R> + Clone,
        SG: Service<R> + Clone,
    {
        let has = match color {
            Color::Blue => self.blue.is_some(),
            Color::Green => self.green.is_some(),
        };
        has || self.fill::<R>(color)
    }

    /// The picked color is not ready: a canary draw falls back to the active
    /// color, a pending active color waits (woken by its service or by the
    /// next transition), a failing one passes its error on.
    #[cold]
    fn not_ready<R>(
        &mut self,
        want: Color,
        word: Word,
        polled: Polled<SB::Error>,
        cx: &mut Context<'_>,
    ) -> NotReady<SB::Error>
    where
        SB: Service<R> + Clone,
        SG: Service<R, Error = SB::Error> + Clone,
    {
        let polled = match polled {
            Polled::Pending => {
                self.report(want, Readiness::NotReady);
                Polled::Pending
            }
            Polled::Failed(e) => {
                self.failed(want);
                Polled::Failed(e)
            }
            other => other,
        };
        let active = word.active();
        if want != active {
            // The standby's trouble never delays or fails a request the
            // active color can serve.
            return match self.poll_color::<R>(active, cx) {
                Polled::Ready => {
                    self.control.fallbacks.fetch_add(1, Ordering::Relaxed);
                    NotReady::Use(active)
                }
                Polled::Stale => NotReady::Retry,
                Polled::Pending => {
                    self.report(active, Readiness::NotReady);
                    self.wait(word, cx)
                }
                Polled::Failed(e) => {
                    self.failed(active);
                    NotReady::Fail(e)
                }
            };
        }
        match polled {
            Polled::Failed(e) => NotReady::Fail(e),
            Polled::Stale | Polled::Ready => NotReady::Retry,
            Polled::Pending => self.wait(word, cx),
        }
    }

    /// Registers for a wake-up at the next transition, so a waiting request
    /// picks again (a rollback rescues it); retries at once if the state
    /// moved before the registration.
    fn wait<E>(&mut self, word: Word, cx: &mut Context<'_>) -> NotReady<E> {
        let id = *self.parked.get_or_insert_with(next_id);
        self.control.park(id, cx.waker());
        if self.control.word() != word {
            NotReady::Retry
        } else {
            NotReady::Wait
        }
    }
}

impl<SB, SG, M> BlueGreenRouter<SB, SG, M> {
    /// The admission `poll_ready` made, taken by `call`.
    #[inline(always)]
    fn admitted(&mut self) -> Admission {
        match self.picked.take() {
            Some(pick) => pick.guard,
            None => unreachable!("checked by call"),
        }
    }

    /// The counters of the version this clone serves `color` with.
    #[inline]
    fn block(&self, color: Color) -> &'static Block {
        let block = match color {
            Color::Blue => self.blue.as_ref().map(|c| c.block),
            Color::Green => self.green.as_ref().map(|c| c.block),
        };
        block.expect("a polled color has its service")
    }

    fn cached_id(&self, color: Color) -> Option<u64> {
        match color {
            Color::Blue => self.blue.as_ref().map(|c| c.id),
            Color::Green => self.green.as_ref().map(|c| c.id),
        }
    }

    fn tags(&self, color: Color) -> Option<Arc<Tags>> {
        match color {
            Color::Blue => self.blue.as_ref().and_then(|c| c.tags.clone()),
            Color::Green => self.green.as_ref().and_then(|c| c.tags.clone()),
        }
    }

    /// Drops the copies whose version a deploy replaced.
    #[cold]
    fn refresh(&mut self, epoch: u32) {
        self.epoch = epoch;
        let Some(slots) = &self.shared.slots else {
            return;
        };
        let pair = slots.load();
        if self.blue.as_ref().is_some_and(|c| c.id != pair.blue.id()) {
            self.blue = None;
        }
        if self.green.as_ref().is_some_and(|c| c.id != pair.green.id()) {
            self.green = None;
        }
    }

    /// Tells the core what this clone saw of `color`'s version, once per
    /// change.
    fn report(&mut self, color: Color, readiness: Readiness) {
        let Some(id) = self.cached_id(color) else {
            return;
        };
        let seen = &mut self.seen[color.index()];
        if *seen != Some((id, readiness)) {
            *seen = Some((id, readiness));
            self.control.observe(color, id, readiness);
        }
    }

    /// `color`'s service failed its `poll_ready`: reported, and this clone's
    /// copy dropped (a fresh one is taken from the slot next time).
    fn failed(&mut self, color: Color) {
        self.report(color, Readiness::Failed);
        if self.shared.slots.is_some() {
            match color {
                Color::Blue => self.blue = None,
                Color::Green => self.green = None,
            }
        }
    }

    /// Takes back an admission that will not be called.
    fn cancel_pick(&mut self) {
        if let Some(pick) = self.picked.take() {
            pick.guard.cancel();
        }
    }

    fn unpark(&mut self) {
        if let Some(id) = self.parked.take() {
            self.control.unpark(id);
        }
    }
}

impl<SB: Clone, SG: Clone, M> Clone for BlueGreenRouter<SB, SG, M> {
    fn clone(&self) -> Self {
        // Copies from a clone that is behind a deploy would be dropped at the
        // first request: a clone made then takes fresh ones from the slots.
        let fresh = self.shared.slots.is_none() || self.control.word().epoch() == self.epoch;
        BlueGreenRouter {
            blue: if fresh { self.blue.clone() } else { None },
            green: if fresh { self.green.clone() } else { None },
            epoch: if fresh {
                self.epoch
            } else {
                self.control.word().epoch()
            },
            flags: self.flags,
            control: self.control.clone(),
            shared: self.shared.clone(),
            // The clone has not been polled: it must pick for itself.
            picked: None,
            parked: None,
            seen: self.seen,
        }
    }
}

impl<SB, SG, M> Drop for BlueGreenRouter<SB, SG, M> {
    fn drop(&mut self) {
        // Polled ready and never called: no request was served.
        self.cancel_pick();
        self.unpark();
    }
}

impl<SB, SG, M> fmt::Debug for BlueGreenRouter<SB, SG, M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BlueGreenRouter")
            .field("active", &self.control.word().active())
            .field("config", &self.shared.config)
            .field("picked", &self.picked.as_ref().map(|p| p.color))
            .finish_non_exhaustive()
    }
}
