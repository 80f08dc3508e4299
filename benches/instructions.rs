//! Instructions per request on the router's hot path, counted by callgrind
//! through gungraun (repeatable on a noisy machine, unlike wall time).
//!
//! Each variant sends `n` requests ([`Requests::one`], the same code the
//! criterion bench `benches/router.rs` times) through a service built in the
//! setup, which is not counted. Every variant runs with 10 000 and with
//! 20 000 requests; the instructions per request are
//! `(Ir(20k) − Ir(10k)) / 10k`, which cancels whatever is paid once (the
//! first request of a router clone fills its caches). The figures to compare
//! are each variant's per request count minus `bare`'s.
//!
//! Needs valgrind and the runner: `cargo install --locked gungraun-runner
//! --version 0.20.0`, then `cargo bench --bench instructions`.

// The benchmark macros generate undocumented items.
#![allow(missing_docs)]

use std::hint::black_box;

use gungraun::{library_benchmark, library_benchmark_group, main};
use tower::steer::Steer;
use tower_rollout::{BlueGreenRouter, RolloutHandle};

mod support;
use support::{Echo, Req, Requests, USER_HEADER};

type Router = BlueGreenRouter<Echo, Echo>;

/// A service ready to be sent `n` requests, with what keeps it steered.
struct Setup<S> {
    svc: S,
    requests: Requests,
    n: usize,
    _handle: Option<RolloutHandle>,
}

fn setup<S>(svc: S, handle: Option<RolloutHandle>, n: usize) -> Setup<S> {
    Setup {
        svc,
        requests: Requests::new(),
        n,
        _handle: handle,
    }
}

fn bare(n: usize) -> Setup<Echo> {
    setup(Echo, None, n)
}

fn active(n: usize) -> Setup<Router> {
    let (router, handle) = BlueGreenRouter::new(Echo, Echo);
    setup(router, Some(handle), n)
}

fn split(n: usize) -> Setup<Router> {
    let (router, handle) = BlueGreenRouter::new(Echo, Echo);
    handle.set_split(0.1).expect("valid split");
    setup(router, Some(handle), n)
}

fn sticky(n: usize) -> Setup<Router> {
    let (router, handle) = BlueGreenRouter::builder()
        .sticky_header(USER_HEADER)
        .build(Echo, Echo)
        .expect("valid configuration");
    handle.set_split(0.1).expect("valid split");
    setup(router, Some(handle), n)
}

fn measuring(n: usize) -> Setup<Router> {
    let (router, handle) = BlueGreenRouter::builder()
        .measure(true)
        .build(Echo, Echo)
        .expect("valid configuration");
    handle.set_split(0.1).expect("valid split");
    setup(router, Some(handle), n)
}

type Steered = Steer<Echo, fn(&Req, &[Echo]) -> usize, Req>;

fn steer(n: usize) -> Setup<Steered> {
    let pick: fn(&Req, &[Echo]) -> usize = |_, _| 0;
    setup(Steer::new(vec![Echo, Echo], pick), None, n)
}

fn run<S, RB>(mut s: Setup<S>) -> Setup<S>
where
    S: tower::Service<Req, Response = http::Response<RB>>,
    S::Error: std::fmt::Debug,
{
    for _ in 0..s.n {
        s.requests.one(&mut s.svc);
    }
    black_box(s)
}

#[library_benchmark]
#[benches::requests(args = [10_000, 20_000], setup = bare)]
fn bare_service(s: Setup<Echo>) -> Setup<Echo> {
    run(s)
}

#[library_benchmark]
#[benches::requests(args = [10_000, 20_000], setup = active)]
fn router_active(s: Setup<Router>) -> Setup<Router> {
    run(s)
}

#[library_benchmark]
#[benches::requests(args = [10_000, 20_000], setup = split)]
fn router_split_10(s: Setup<Router>) -> Setup<Router> {
    run(s)
}

#[library_benchmark]
#[benches::requests(args = [10_000, 20_000], setup = sticky)]
fn router_sticky(s: Setup<Router>) -> Setup<Router> {
    run(s)
}

#[library_benchmark]
#[benches::requests(args = [10_000, 20_000], setup = measuring)]
fn router_measuring(s: Setup<Router>) -> Setup<Router> {
    run(s)
}

#[library_benchmark]
#[benches::requests(args = [10_000, 20_000], setup = steer)]
fn tower_steer(s: Setup<Steered>) -> Setup<Steered> {
    run(s)
}

library_benchmark_group!(
    name = hot_path;
    benchmarks = bare_service, router_active, router_split_10, router_sticky, router_measuring, tower_steer
);

main!(library_benchmark_groups = hot_path);
