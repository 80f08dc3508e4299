use std::fmt;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{Request, Response};
use tower::ServiceExt;
use tower_service::Service;

use super::config::{Builder, Config};
use super::future::ResponseFuture;
use super::BlueGreenLayer;
use crate::body::RolloutBody;
use crate::control::{hit, Control, Lane, Probe, RolloutHandle, Word};
use crate::mirror::{BoxError, CopyStart, MirrorBody};
use crate::shadow::PendingCapture;
use crate::Color;

/// Routes each request to one of two services, blue or green, as steered by a
/// [`RolloutHandle`]. See the [module docs](crate::router).
pub struct BlueGreenRouter<SB, SG> {
    blue: SB,
    green: SG,
    control: Arc<Control>,
    config: Arc<Config>,
    /// Filled by `poll_ready` with the color whose service was polled ready,
    /// the state word it was picked from, and whether a canary draw for the
    /// standby fell back to the active color; taken by `call`. Cleared by
    /// `Clone`.
    picked: Option<(Color, Word, bool)>,
}

impl BlueGreenRouter<(), ()> {
    /// A builder for sticky canaries, override and served-by headers.
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

impl<SB, SG> BlueGreenRouter<SB, SG> {
    /// A router with `blue` active and `green` on standby, and its handle.
    pub fn new(blue: SB, green: SG) -> (Self, RolloutHandle) {
        Builder::new()
            .build(blue, green)
            .expect("the default configuration is valid")
    }

    pub(crate) fn from_parts(
        blue: SB,
        green: SG,
        control: Arc<Control>,
        config: Arc<Config>,
    ) -> Self {
        BlueGreenRouter {
            blue,
            green,
            control,
            config,
            picked: None,
        }
    }

    /// A new handle on this router's state.
    pub fn handle(&self) -> RolloutHandle {
        RolloutHandle::new(self.control.clone())
    }

    /// The blue service.
    pub fn blue(&self) -> &SB {
        &self.blue
    }

    /// The green service.
    pub fn green(&self) -> &SG {
        &self.green
    }
}

impl<SB, SG> BlueGreenRouter<SB, SG> {
    #[inline]
    fn poll_color<R, E>(&mut self, color: Color, cx: &mut Context<'_>) -> Poll<Result<(), E>>
    where
        SB: Service<R, Error = E>,
        SG: Service<R, Error = E>,
    {
        match color {
            Color::Blue => self.blue.poll_ready(cx),
            Color::Green => self.green.poll_ready(cx),
        }
    }
}

impl<B, SB, SG, RB> Service<Request<B>> for BlueGreenRouter<SB, SG>
where
    SB: Service<Request<MirrorBody<B>>, Response = Response<RB>> + Clone + Send + 'static,
    SG: Service<Request<MirrorBody<B>>, Response = Response<RB>, Error = SB::Error>
        + Clone
        + Send
        + 'static,
    SB::Future: Send + 'static,
    SG::Future: Send + 'static,
    RB: http_body::Body + Send + 'static,
    RB::Data: Send,
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    type Response = Response<RolloutBody<RB>>;
    type Error = SB::Error;
    type Future = ResponseFuture<Request<MirrorBody<B>>, SB, SG>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        if let Some((color, _, _)) = self.picked {
            let res = self.poll_color(color, cx);
            if let Poll::Ready(Err(_)) = res {
                self.picked = None;
            }
            return res;
        }
        // A new pick from the current state. Each poll that is not ready picks
        // again, so a promote while we wait takes effect for this request too.
        let word = self.control.word();
        let active = word.active();
        // A random canary draw; with a sticky key configured, `call` overrides
        // it for requests that carry a key.
        let want = word.pick();
        let mut fell_back = false;
        if want != active {
            // The standby takes the request only if it is ready now: its
            // trouble must never delay or fail a request that the active
            // color can serve.
            match self.poll_color(want, cx) {
                Poll::Ready(Ok(())) => {
                    self.picked = Some((want, word, false));
                    return Poll::Ready(Ok(()));
                }
                Poll::Pending | Poll::Ready(Err(_)) => fell_back = true,
            }
        }
        let res = self.poll_color(active, cx);
        if let Poll::Ready(Ok(())) = res {
            self.picked = Some((active, word, fell_back));
        }
        res
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        let (polled, picked_from, fell_back) =
            self.picked.take().expect("poll_ready must be called first");
        // The state now: a control call since poll_ready (a promote, an
        // abort) applies to this request too.
        let word = self.control.word();
        let mut drawn = polled;
        if word != picked_from && drawn != word.active() && word.split() == 0 {
            // The standby was drawn but takes no requests any more.
            drawn = word.active();
        }
        // Per-request choices: an allowed override header first, then the
        // sticky key.
        let (color, forced) = match self.config.override_color(&req, &self.control) {
            Some(color) => (color, true),
            None => match self.config.sticky_bucket(&req) {
                Some(bucket) => (word.color_for(bucket), false),
                None => (drawn, false),
            },
        };
        if fell_back && color == polled {
            // Counted per request actually served by the active color instead.
            self.control.canary_fallback.fetch_add(1, Ordering::Relaxed);
        }
        if self.config.color_extension {
            req.extensions_mut().insert(color);
        }
        // Requests served by the active color are copied to the standby at
        // the mirrored fraction (never those forced by an override header).
        let mut pending = None;
        let req = if word.mirror() != 0 && !forced && color == word.active() {
            let (req, p) = self.mirror_to_standby(req, color.other(), word);
            pending = p;
            req
        } else {
            req.map(MirrorBody::new)
        };
        let guard = self.control.block.admit(color);
        let probe = if word.measure() {
            Some(Probe::start(self.control.clone(), color))
        } else {
            None
        };
        let served_by = self.config.served_by.clone();
        // Entered until the response future is made: the inner `call` runs in
        // the request's span.
        let telemetry = self.control.telemetry.admit(color);
        let extra = (guard, served_by, pending, probe, telemetry);
        match (color, polled) {
            (Color::Blue, Color::Blue) => ResponseFuture::blue(self.blue.call(req), extra),
            (Color::Green, Color::Green) => ResponseFuture::green(self.green.call(req), extra),
            // The other color: a clone of its service, driven to readiness on
            // its own, so the polled service keeps its reservation.
            (Color::Blue, Color::Green) => {
                ResponseFuture::blue_oneshot(self.blue.clone().oneshot(req), extra)
            }
            (Color::Green, Color::Blue) => {
                ResponseFuture::green_oneshot(self.green.clone().oneshot(req), extra)
            }
        }
    }
}

impl<SB, SG> BlueGreenRouter<SB, SG> {
    /// The mirrored path, out of line: most requests never take it, and
    /// inlining it into `call` slows every request down.
    #[inline(never)]
    fn mirror_to_standby<B, RB>(
        &mut self,
        req: Request<B>,
        standby: Color,
        word: Word,
    ) -> (Request<MirrorBody<B>>, Option<Box<PendingCapture>>)
    where
        SB: Service<Request<MirrorBody<B>>, Response = Response<RB>> + Clone + Send + 'static,
        SG: Service<Request<MirrorBody<B>>, Response = Response<RB>> + Clone + Send + 'static,
        SB::Future: Send + 'static,
        SG::Future: Send + 'static,
        RB: http_body::Body + Send + 'static,
        RB::Data: Send,
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        let Some(engine) = self.control.mirror.as_ref().filter(|_| hit(word.mirror())) else {
            return (req.map(MirrorBody::new), None);
        };
        let lane = Some((self.control.block, Lane::Mirrored(standby)));
        let (followup, pending) = match &self.control.judge {
            Some(judge) => {
                // No noise floor through the router: it has no secondary.
                let (f, p, _) = judge.start(req.method(), req.uri());
                (Some(f), Some(p))
            }
            None => (None, None),
        };
        let (req, started) = match standby {
            Color::Blue => engine.copy_with(req, self.blue.clone(), lane, followup),
            Color::Green => engine.copy_with(req, self.green.clone(), lane, followup),
        };
        match started {
            CopyStart::Started => (req, pending),
            CopyStart::NotChosen => (req, None),
            // Counted by the dropped follow-up (skipped_not_started).
            CopyStart::NotStarted => (req, None),
        }
    }
}

impl<SB: Clone, SG: Clone> Clone for BlueGreenRouter<SB, SG> {
    fn clone(&self) -> Self {
        BlueGreenRouter {
            blue: self.blue.clone(),
            green: self.green.clone(),
            control: self.control.clone(),
            config: self.config.clone(),
            // The clone has not been polled: it must pick for itself.
            picked: None,
        }
    }
}

impl<SB: fmt::Debug, SG: fmt::Debug> fmt::Debug for BlueGreenRouter<SB, SG> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BlueGreenRouter")
            .field("blue", &self.blue)
            .field("green", &self.green)
            .field("active", &self.control.word().active())
            .field("config", &self.config)
            .field("picked", &self.picked.map(|(c, _, _)| c))
            .finish()
    }
}
