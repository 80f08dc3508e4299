//! What the router benches share: the inner service, the requests and the
//! loop that sends one, so the criterion medians and the instruction counts
//! measure exactly the same code.
#![allow(dead_code, unreachable_pub)]

use std::convert::Infallible;
use std::fmt::Debug;
use std::future::{ready, Future, Ready};
use std::hint::black_box;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use bytes::Bytes;
use http::header::HeaderName;
use http::{HeaderMap, HeaderValue, Request, Response, Uri};
use http_body_util::{Empty, Full};
use tower::Service;

/// The sticky key header, sent by every variant so that all of them receive
/// the same requests.
pub const USER_HEADER: &str = "x-user-id";
/// Distinct user ids cycled through by each variant (a power of two, so the
/// ring index wraps with a mask rather than a division).
pub const USERS: usize = 1024;

/// The request type of every variant: a body that implements `http_body::Body`
/// and costs nothing to make or drop.
pub type Req = Request<Empty<Bytes>>;

/// The inner service: ready at once, answers with a non-empty static body
/// (so the router's in-flight guard lives in the response body until it is
/// dropped) and hands the request's headers back in the response.
///
/// Echoing the headers lets the bench reuse them for a later request, so
/// nothing is allocated or freed per request; the rest of the request (method,
/// static URI, no extensions) frees nothing either.
#[derive(Clone, Copy, Debug)]
pub struct Echo;

impl<B> Service<Request<B>> for Echo {
    type Response = Response<Full<Bytes>>;
    type Error = Infallible;
    type Future = Ready<Result<Self::Response, Infallible>>;

    #[inline]
    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    #[inline]
    fn call(&mut self, req: Request<B>) -> Self::Future {
        let mut res = Response::new(Full::new(Bytes::from_static(b"ok")));
        *res.headers_mut() = req.into_parts().0.headers;
        ready(Ok(res))
    }
}

/// A response body newtype, for the `wrap_body_only` floor.
pub struct Wrapped(#[allow(dead_code)] pub Full<Bytes>);

/// Unwraps a poll that must be ready with a success.
fn ready_ok<T, E: Debug>(poll: Poll<Result<T, E>>) -> T {
    match poll {
        Poll::Ready(Ok(v)) => v,
        Poll::Ready(Err(e)) => panic!("service failed: {e:?}"),
        Poll::Pending => panic!("service not ready at once"),
    }
}

/// The requests every variant sends, one at a time.
///
/// Each is a clone of a template request (method, static URI, empty header
/// map: no allocation and no URI parsing, which `Request::new` would do) that
/// takes the next user's header map out of a ring, leaving an empty
/// unallocated map behind; the map comes back in the echoed response and is
/// put back. So a request allocates and frees nothing of its own, and its
/// construction is the same code, the same request type and the same
/// sequence of user ids for every variant, bare included: the differences
/// between variants are the router alone.
pub struct Requests {
    template: Req,
    ring: Vec<HeaderMap>,
    next: usize,
}

impl Requests {
    /// One header map per user id, each holding only its `x-user-id`.
    pub fn new() -> Requests {
        let name = HeaderName::from_static(USER_HEADER);
        let ring = (0..USERS)
            .map(|i| {
                let mut headers = HeaderMap::new();
                let value = HeaderValue::try_from(format!("user-{i}")).expect("valid header value");
                headers.insert(name.clone(), value);
                headers
            })
            .collect();
        let mut template: Req = Request::new(Empty::new());
        *template.uri_mut() = Uri::from_static("/predict");
        Requests {
            template,
            ring,
            next: 0,
        }
    }

    /// Sends one request through `svc`: `poll_ready`, `call`, one poll of
    /// the response future (which must be ready at once; no runtime is
    /// involved) and the drop of the response body, which is where the
    /// router stops counting the request as in flight.
    #[inline(always)]
    pub fn one<S, RB>(&mut self, svc: &mut S)
    where
        S: Service<Req, Response = Response<RB>>,
        S::Error: Debug,
    {
        let i = self.next;
        self.next = (self.next + 1) % USERS; // a mask: USERS is a power of two
        let slot = &mut self.ring[i];
        let mut req = self.template.clone();
        *req.headers_mut() = std::mem::take(slot);

        let mut cx = Context::from_waker(Waker::noop());
        ready_ok(svc.poll_ready(&mut cx));
        let fut = pin!(svc.call(black_box(req)));
        let res = ready_ok(fut.poll(&mut cx));
        let (parts, body) = res.into_parts();
        drop(black_box(body));
        *slot = parts.headers;
    }
}
