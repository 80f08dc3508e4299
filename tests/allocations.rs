//! No heap allocation per request on the router's active-only, canary split
//! and sticky paths: 10 000 requests through each, counted by dhat's global
//! allocator in testing mode. The requests are the benches' own
//! (`benches/support`), which allocate nothing themselves (the `bare`
//! variant checks that).

use tower_rollout::BlueGreenRouter;

#[path = "../benches/support/mod.rs"]
mod support;
use support::{Echo, Requests, USER_HEADER};

#[global_allocator]
static ALLOC: dhat::Alloc = dhat::Alloc;

const REQUESTS: u64 = 10_000;

/// Heap blocks allocated while `n` requests go through `svc` (after a warm-up
/// that fills the router clone's caches and the thread's counter slot).
fn allocations<S, RB>(svc: &mut S, requests: &mut Requests) -> u64
where
    S: tower::Service<support::Req, Response = http::Response<RB>>,
    S::Error: std::fmt::Debug,
{
    for _ in 0..100 {
        requests.one(svc);
    }
    let before = dhat::HeapStats::get().total_blocks;
    for _ in 0..REQUESTS {
        requests.one(svc);
    }
    dhat::HeapStats::get().total_blocks - before
}

#[test]
fn no_allocation_per_request_on_the_active_split_and_sticky_paths() {
    let _profiler = dhat::Profiler::builder().testing().build();
    let mut requests = Requests::new();

    assert_eq!(allocations(&mut Echo, &mut requests), 0, "bare");

    let (mut active, _active) = BlueGreenRouter::new(Echo, Echo);
    assert_eq!(allocations(&mut active, &mut requests), 0, "active only");

    let (mut split, split_handle) = BlueGreenRouter::new(Echo, Echo);
    split_handle.set_split(0.1).unwrap();
    assert_eq!(allocations(&mut split, &mut requests), 0, "split 10%");

    let (mut sticky, sticky_handle) = BlueGreenRouter::builder()
        .sticky_header(USER_HEADER)
        .build(Echo, Echo)
        .unwrap();
    sticky_handle.set_split(0.1).unwrap();
    assert_eq!(
        allocations(&mut sticky, &mut requests),
        0,
        "sticky, split 10%"
    );

    // The canary really ran: both colors served, and users stuck.
    for handle in [&split_handle, &sticky_handle] {
        let s = handle.status();
        assert!(s.blue.served > 0 && s.green.served > 0, "{s:?}");
        assert_eq!((s.blue.in_flight, s.green.in_flight), (0, 0));
    }
}
