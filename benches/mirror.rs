//! Cost of [`MirrorLayer`] on the primary's path, against the bare service, in
//! one criterion group: sampling at 0%, 10% and 100%.
//!
//! Every variant times `poll_ready`, `call` (in which the primary reads its
//! whole request body, so the tee does its work) and one poll of the response
//! future. Shadow work runs on a one-thread tokio runtime beside the bench
//! thread, as it would on a server; the copies it could not take in time are
//! dropped by the mirror's bounds, never queued (the counts are printed).
//!
//! Run with `cargo bench --bench mirror -- --quick --noplot`.

use std::convert::Infallible;
use std::fmt::Debug;
use std::future::{ready, Future, Ready};
use std::hint::black_box;
use std::pin::{pin, Pin};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Bencher, Criterion};
use http::{Request, Response};
use http_body::Body;
use http_body_util::Full;
use tower::{Layer, Service};
use tower_rollout::mirror::MirrorLayer;

/// A request body of 256 bytes in one frame.
const PAYLOAD: &[u8] = &[b'x'; 256];

/// Reads its whole request body (which must be ready at once) and answers.
#[derive(Clone, Copy, Debug)]
struct Reader;

impl<B> Service<Request<B>> for Reader
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Debug,
{
    type Response = Response<Full<Bytes>>;
    type Error = Infallible;
    type Future = Ready<Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let mut body = req.into_body();
        let mut cx = Context::from_waker(Waker::noop());
        let mut n = 0;
        while let Poll::Ready(Some(frame)) = Pin::new(&mut body).poll_frame(&mut cx) {
            n += frame.expect("body").data_ref().map_or(0, Bytes::len);
        }
        ready(Ok(Response::new(Full::new(Bytes::from(n.to_string())))))
    }
}

fn ready_ok<T, E: Debug>(poll: Poll<Result<T, E>>) -> T {
    match poll {
        Poll::Ready(Ok(v)) => v,
        Poll::Ready(Err(e)) => panic!("service failed: {e:?}"),
        Poll::Pending => panic!("service not ready at once"),
    }
}

fn bench_service<S>(b: &mut Bencher<'_>, svc: &mut S)
where
    S: Service<Request<Full<Bytes>>, Response = Response<Full<Bytes>>>,
    S::Error: Debug,
{
    let body = Bytes::from_static(PAYLOAD);
    b.iter(|| {
        let req = Request::post("/predict")
            .body(Full::new(body.clone()))
            .expect("valid request");
        let mut cx = Context::from_waker(Waker::noop());
        ready_ok(svc.poll_ready(&mut cx));
        let fut = pin!(svc.call(black_box(req)));
        let res = ready_ok(fut.poll(&mut cx));
        drop(black_box(res));
    });
}

fn mirror(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let _enter = rt.enter(); // the mirror spawns its shadows here
    let mut group = c.benchmark_group("mirror");

    let mut bare = Reader;
    group.bench_function("bare", |b| bench_service(b, &mut bare));

    let mut handles = Vec::new();
    for (name, sample) in [("mirror_0", 0.0), ("mirror_10", 0.1), ("mirror_100", 1.0)] {
        let (layer, handle) = MirrorLayer::builder(Reader)
            .sample(sample)
            .build()
            .expect("valid settings");
        let mut svc = layer.layer(Reader);
        group.bench_function(name, |b| bench_service(b, &mut svc));
        handles.push((name, handle));
    }
    group.finish();

    // Let the last copies finish, then say what happened to them.
    rt.block_on(tokio::time::sleep(Duration::from_millis(200)));
    for (name, handle) in handles {
        let s = handle.stats();
        assert_eq!(s.sampled, s.settled() + s.in_flight, "{name}: {s:?}");
        println!(
            "{name}: sampled {}, completed {}, dropped (saturated) {}, other {}",
            s.sampled,
            s.completed,
            s.dropped_saturated,
            s.settled() - s.completed - s.dropped_saturated
        );
    }
}

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
}

criterion_group! {
    name = benches;
    config = config();
    targets = mirror
}
criterion_main!(benches);
