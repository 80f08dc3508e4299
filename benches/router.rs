//! Per-request cost of [`BlueGreenRouter`] against a direct call of the inner
//! service and against tower's own [`Steer`], in one criterion group so the
//! numbers come out side by side in one run. `benches/instructions.rs` counts
//! the instructions of the same requests.
//!
//! Every variant times the same thing: `poll_ready`, `call`, one poll of the
//! response future (which must be ready at once; no runtime is involved) and
//! the drop of the response body, which is where the router stops counting the
//! request as in flight.
//!
//! Run with `cargo bench --bench router -- --quick --noplot`.

use std::fmt::Debug;
use std::time::Duration;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Bencher, Criterion};
use http::Response;
use http_body_util::Full;
use tower::steer::Steer;
use tower::Service;
use tower_rollout::BlueGreenRouter;

mod support;
use support::{Echo, Req, Requests, Wrapped, USER_HEADER};

/// Times one request through `svc` per iteration ([`Requests::one`]).
///
/// Plain `iter`, with the request built from prebuilt parts (see
/// [`Requests`]). (`iter_batched` would keep the request's construction
/// outside the clock, but it streams batches of ~250-byte requests through
/// memory and then drops the outputs; on the 2-core test box its baseline
/// varied by 2x between runs, more than the differences being measured.)
/// The response body is dropped inside the timed part.
fn bench_service<S, RB>(b: &mut Bencher<'_>, svc: &mut S, requests: &mut Requests)
where
    S: Service<Req, Response = Response<RB>>,
    S::Error: Debug,
{
    b.iter(|| requests.one(svc));
}

fn router(c: &mut Criterion) {
    let mut ring = Requests::new();
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
