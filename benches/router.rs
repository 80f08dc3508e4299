//! Per-request cost of [`BlueGreenRouter`] against a direct call of the inner
//! service and against tower's own [`Steer`], in one criterion group so the
//! numbers come out side by side in one run (DESIGN.md, "What is measured").
//!
//! Every variant times the same thing: `poll_ready`, `call`, one poll of the
//! response future (which must be ready at once; no runtime is involved) and
//! the drop of the response body, which is where the router stops counting the
//! request as in flight.
//!
//! Run with `cargo bench --bench router -- --quick --noplot`.

use std::convert::Infallible;
use std::fmt::Debug;
use std::future::{ready, Future, Ready};
use std::hint::black_box;
use std::pin::pin;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Bencher, Criterion};
use http::header::HeaderName;
use http::{HeaderMap, HeaderValue, Request, Response, Uri};
use http_body_util::{Empty, Full};
use tower::steer::Steer;
use tower::Service;
use tower_rollout::BlueGreenRouter;

/// The sticky key header, sent by every variant so that all of them receive
/// the same requests.
const USER_HEADER: &str = "x-user-id";
/// Distinct user ids cycled through by each variant (a power of two, so the
/// ring index wraps with a mask rather than a division).
const USERS: usize = 1024;

/// The request type of every variant: a body that implements `http_body::Body`
/// and costs nothing to make or drop.
type Req = Request<Empty<Bytes>>;

/// The inner service: ready at once, answers with a non-empty static body
/// (so the router's in-flight guard lives in the response body until it is
/// dropped) and hands the request's headers back in the response.
///
/// Echoing the headers lets the bench reuse them for a later request, so
/// nothing is allocated or freed per request; the rest of the request (method,
/// static URI, no extensions) frees nothing either.
#[derive(Clone, Copy, Debug)]
struct Echo;

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
struct Wrapped(#[allow(dead_code)] Full<Bytes>);

/// One header map per user id, each holding only its `x-user-id`.
fn user_headers() -> Vec<HeaderMap> {
    let name = HeaderName::from_static(USER_HEADER);
    (0..USERS)
        .map(|i| {
            let mut headers = HeaderMap::new();
            let value = HeaderValue::try_from(format!("user-{i}")).expect("valid header value");
            headers.insert(name.clone(), value);
            headers
        })
        .collect()
}

/// Unwraps a poll that must be ready with a success.
fn ready_ok<T, E: Debug>(poll: Poll<Result<T, E>>) -> T {
    match poll {
        Poll::Ready(Ok(v)) => v,
        Poll::Ready(Err(e)) => panic!("service failed: {e:?}"),
        Poll::Pending => panic!("service not ready at once"),
    }
}

/// Times one request through `svc` per iteration.
///
/// Plain `iter`, with the request built from prebuilt parts: a clone of a
/// template request (method, static URI, empty header map: no allocation and
/// no URI parsing, which `Request::new` would do) that takes the next user's
/// header map out of a ring, leaving an empty unallocated map behind; the map
/// comes back in the echoed response and is put back. So the timed part
/// allocates and frees nothing of the request, and its construction is the
/// same code, the same request type and the same sequence of user ids for
/// every variant, bare included: the differences between variants are the
/// router alone. (`iter_batched` would keep the clone outside the clock, but it
/// streams batches of ~250-byte requests through memory and then drops the
/// outputs; on the 2-core test box its baseline varied by 2x between runs,
/// more than the differences being measured.) The response body is dropped
/// inside the timed part.
fn bench_service<S, RB>(b: &mut Bencher<'_>, svc: &mut S, ring: &mut [HeaderMap])
where
    S: Service<Req, Response = Response<RB>>,
    S::Error: Debug,
{
    let mut template: Req = Request::new(Empty::new());
    *template.uri_mut() = Uri::from_static("/predict");
    let waker = Waker::noop();
    let mut next = 0;
    b.iter(|| {
        let i = next;
        next = (next + 1) % USERS; // a mask: USERS is a power of two
        let slot = &mut ring[i];
        let mut req = template.clone();
        *req.headers_mut() = std::mem::take(slot);

        let mut cx = Context::from_waker(waker);
        ready_ok(svc.poll_ready(&mut cx));
        let fut = pin!(svc.call(black_box(req)));
        let res = ready_ok(fut.poll(&mut cx));
        let (parts, body) = res.into_parts();
        drop(black_box(body));
        *slot = parts.headers;
    });
}

fn router(c: &mut Criterion) {
    let mut ring = user_headers();
    let mut group = c.benchmark_group("router");

    let mut bare = Echo;
    group.bench_function("bare", |b| bench_service(b, &mut bare, &mut ring));

    let (mut active, active_handle) = BlueGreenRouter::new(Echo, Echo);
    group.bench_function("router_active", |b| {
        bench_service(b, &mut active, &mut ring)
    });

    let (mut split, split_handle) = BlueGreenRouter::new(Echo, Echo);
    split_handle.set_split(0.1).expect("valid split");
    group.bench_function("router_split_10", |b| {
        bench_service(b, &mut split, &mut ring)
    });

    let (mut sticky, sticky_handle) = BlueGreenRouter::builder()
        .sticky_header(USER_HEADER)
        .build(Echo, Echo)
        .expect("valid configuration");
    sticky_handle.set_split(0.1).expect("valid split");
    group.bench_function("router_sticky", |b| {
        bench_service(b, &mut sticky, &mut ring)
    });

    // Measuring on (what a running rollout plan turns on): a clock read at
    // call and at the response head, a boxed probe, the classification at the
    // end of the body.
    let (mut measured, measured_handle) = BlueGreenRouter::builder()
        .measure(true)
        .build(Echo, Echo)
        .expect("valid configuration");
    measured_handle.set_split(0.1).expect("valid split");
    group.bench_function("router_split_10_measured", |b| {
        bench_service(b, &mut measured, &mut ring)
    });

    // The floor for any layer that wraps the response body (as the router must,
    // to count a request in flight until its body ends): tower's MapResponse
    // putting the body in a newtype, nothing else.
    let mut wrap_only = tower::ServiceBuilder::new()
        .map_response(|res: Response<Full<Bytes>>| res.map(Wrapped))
        .service(Echo);
    group.bench_function("wrap_body_only", |b| {
        bench_service(b, &mut wrap_only, &mut ring)
    });

    let mut steer = Steer::new(vec![Echo, Echo], |_: &Req, _: &[Echo]| 0);
    group.bench_function("steer", |b| bench_service(b, &mut steer, &mut ring));

    group.finish();

    // Every response body was dropped: nothing may be left in flight.
    // Measured: every request classified or counted abandoned, once.
    let m = measured_handle.measurements();
    let status = measured_handle.status();
    assert_eq!(
        m.blue.finished + m.blue.abandoned + m.green.finished + m.green.abandoned,
        status.blue.served + status.green.served
    );
    for handle in [
        &active_handle,
        &split_handle,
        &sticky_handle,
        &measured_handle,
    ] {
        let status = handle.status();
        assert_eq!(
            (status.blue.in_flight, status.green.in_flight),
            (0, 0),
            "{status:?}"
        );
    }
}

/// A short group: `--quick` stops each variant within `measurement_time`.
fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
}

criterion_group! {
    name = benches;
    config = config();
    targets = router
}
criterion_main!(benches);
