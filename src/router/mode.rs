//! What the router does to a request body: nothing ([`Plain`]), or tee it to
//! the standby (the mirror's and the comparison's modes). A type-level choice
//! of the builder, so a plain router's inner services receive `Request<B>`
//! exactly as it came.

use bytes::Buf;
use http::{HeaderMap, Request, StatusCode};
use http_body::Frame;

use crate::control::{Block, Control, InFlight, Lane, Word};

pub(crate) mod sealed {
    /// Keeps [`Mode`](super::Mode) implemented only by this crate.
    pub trait Sealed {}
}

/// How a [`BlueGreenRouter`](super::BlueGreenRouter) treats request bodies.
///
/// [`Plain`] (the default) passes them through; the modes behind
/// [`Builder::mirror`](super::Builder::mirror) and
/// [`Builder::compare`](super::Builder::compare) wrap them in
/// [`MirrorBody`](crate::mirror::MirrorBody) so that copies can be sent to
/// the standby ([`ModeFor::Body`] says which). Implemented by this crate only.
pub trait Mode: sealed::Sealed + Send + Sync + 'static {
    /// The comparison's state from the call to the response head.
    #[doc(hidden)]
    type Pending: Default + Send + 'static;
    /// The comparison's state in the response body.
    #[doc(hidden)]
    type Capture: Capture + Default;

    /// Whether the mode compares answers (then every response may carry a
    /// capture).
    #[doc(hidden)]
    const COMPARES: bool = false;

    /// Whether copies to the standby can be made at all.
    #[doc(hidden)]
    fn can_mirror(&self) -> bool;

    /// What the mode attaches to the router's control state (its mirror
    /// engine, its comparison), each under its own type.
    #[doc(hidden)]
    fn attachments(&self) -> Vec<std::sync::Arc<dyn std::any::Any + Send + Sync>> {
        Vec::new()
    }

    /// The response head arrived: the capture its body carries.
    #[doc(hidden)]
    fn begin(pending: Self::Pending, status: StatusCode, headers: &HeaderMap) -> Self::Capture;

    /// The service failed: nothing to compare.
    #[doc(hidden)]
    fn failed(pending: Self::Pending);
}

/// What a [`Mode`] hands inner services for a request whose body is `B`.
pub trait ModeFor<B>: Mode {
    /// The request body inner services receive: `B` itself for [`Plain`].
    type Body;

    /// A request that is not copied.
    #[doc(hidden)]
    fn plain(req: Request<B>) -> Request<Self::Body>;
}

/// A [`Mode`] that can copy requests with body `B` to a standby service of
/// type `S` (for [`Plain`], any: it never copies).
pub trait CopyTo<B, S>: ModeFor<B> {
    /// Copies `req` to `standby` (a clone of its service) if the mode's
    /// bounds allow it now; `lane` counts the copy on the standby's version.
    #[doc(hidden)]
    fn copy(
        &self,
        req: Request<B>,
        standby: S,
        lane: CopyLane<'_>,
    ) -> Copied<Request<Self::Body>, Self::Pending>;
}

/// The primary's request after [`CopyTo::copy`], and what waits for the
/// copy's outcome.
#[doc(hidden)]
#[derive(Debug)]
pub struct Copied<R, P> {
    /// The request to send to the primary.
    pub req: R,
    /// What the response future keeps for the copy (a capture, or nothing).
    pub pending: P,
}

impl<R, P> Copied<R, P> {
    /// Both parts.
    #[inline]
    pub fn new(req: R, pending: P) -> Self {
        Copied { req, pending }
    }
}

/// The comparison's copy of a response body, frame by frame.
#[doc(hidden)]
pub trait Capture: Send + 'static {
    /// Whether anything is being captured (checked before the other calls).
    fn active(&self) -> bool;
    /// A frame went to the client.
    fn frame<D: Buf>(&mut self, frame: &Frame<D>);
    /// The body ended.
    fn end(&mut self);
    /// The body failed.
    fn fail(&mut self);
}

/// The default mode: request bodies pass through unchanged, nothing is copied.
#[derive(Debug, Clone, Copy, Default)]
#[non_exhaustive]
pub struct Plain;

impl sealed::Sealed for Plain {}

impl Mode for Plain {
    type Pending = ();
    type Capture = NoCapture;

    fn can_mirror(&self) -> bool {
        false
    }

    #[inline]
    fn begin(_: (), _: StatusCode, _: &HeaderMap) -> NoCapture {
        NoCapture
    }

    #[inline]
    fn failed(_: ()) {}
}

impl<B> ModeFor<B> for Plain {
    type Body = B;

    #[inline(always)]
    fn plain(req: Request<B>) -> Request<B> {
        req
    }
}

impl<B, S> CopyTo<B, S> for Plain {
    #[inline]
    fn copy(&self, req: Request<B>, _: S, _: CopyLane<'_>) -> Copied<Request<B>, ()> {
        Copied::new(req, ())
    }
}

/// The capture of a response that is not compared.
#[doc(hidden)]
#[derive(Debug, Clone, Copy, Default)]
pub struct NoCapture;

impl Capture for NoCapture {
    #[inline]
    fn active(&self) -> bool {
        false
    }

    #[inline]
    fn frame<D: Buf>(&mut self, _: &Frame<D>) {}

    #[inline]
    fn end(&mut self) {}

    #[inline]
    fn fail(&mut self) {}
}

/// Where a mirrored copy is counted: the standby's version, as long as the
/// routing state is still the one the request was admitted under.
#[doc(hidden)]
#[derive(Debug)]
pub struct CopyLane<'a> {
    pub(crate) block: &'static Block,
    pub(crate) control: &'a Control,
    pub(crate) word: Word,
}

impl CopyLane<'_> {
    /// Counts the copy on the standby's version; `None` when the state moved
    /// since the request was admitted (mirroring may have been turned off and
    /// the standby drained): then no copy is made.
    pub(crate) fn start(self) -> Option<InFlight> {
        let guard = self.block.admit(Lane::Mirrored);
        (self.control.word() == self.word).then_some(guard)
    }
}
