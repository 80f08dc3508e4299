//! `loom` models of the lock-free core: every interleaving (up to a
//! preemption bound) of a deploy, a promote, an admission and a request's
//! end, run through the crate's own code with loom's atomics and mutexes
//! swapped in (see `control::sync`).
//!
//! Run with `cargo test --release -p tower-rollout --lib --features loom loom`.
//!
//! Modelled: the slot hand-over to router clones (a deploy's slot swap and
//! word publish against a clone's refresh, fill and admission), the recycled
//! counter blocks (retirement, the last end, reuse by a new version, the
//! watchers of the old one) and drain registration and wake-up (against the
//! admission's fence and re-check). The slots' `ArcSwap` is replaced by a
//! loom mutex in these models (arc-swap is not loom-aware); what is checked
//! is the protocol around it.

use std::convert::Infallible;
use std::future::{poll_fn, Future, Ready};
use std::pin::pin;
use std::sync::Mutex as StdMutex;
use std::task::{Context, Poll, Waker};

use http::{Request, Response};
use loom::sync::atomic::{AtomicBool, Ordering};
use loom::sync::Arc;
use loom::thread;
use tower_service::Service;

use crate::control::{Block, Lane};
use crate::{BlueGreenRouter, Color};

/// `default`, or `LOOM_BOUND` when set (to explore deeper by hand).
fn bound(default: usize) -> usize {
    std::env::var("LOOM_BOUND")
        .ok()
        .and_then(|b| b.parse().ok())
        .unwrap_or(default)
}

/// Explores every interleaving with at most `bound` preemptions.
fn model(bound: usize, f: impl Fn() + Sync + Send + 'static) {
    let mut builder = loom::model::Builder::new();
    builder.preemption_bound = Some(bound);
    // The router's setup (a builder, control calls) runs inside the model.
    builder.max_branches = 100_000;
    builder.check(f);
}

// === a version ===

/// The labels of the versions whose weights were dropped.
#[derive(Clone, Default)]
struct Drops(std::sync::Arc<StdMutex<Vec<&'static str>>>);

impl Drops {
    fn count(&self, label: &str) -> usize {
        let list = self.0.lock().unwrap();
        list.iter().filter(|l| **l == label).count()
    }
}

/// A model's memory: records its drop.
struct Weights {
    label: &'static str,
    drops: Drops,
}

impl Drop for Weights {
    fn drop(&mut self) {
        self.drops.0.lock().unwrap().push(self.label);
    }
}

/// A version: always ready, answers with its label at once.
#[derive(Clone)]
struct Version(std::sync::Arc<Weights>);

fn version(label: &'static str, drops: &Drops) -> Version {
    Version(std::sync::Arc::new(Weights {
        label,
        drops: drops.clone(),
    }))
}

impl Service<Request<String>> for Version {
    type Response = Response<String>;
    type Error = Infallible;
    type Future = Ready<Result<Response<String>, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: Request<String>) -> Self::Future {
        std::future::ready(Ok(Response::new(self.0.label.to_owned())))
    }
}

type Router = BlueGreenRouter<Version, Version>;
type Answer = Response<crate::router::RolloutBody<String>>;

/// One request through `router`, driven by hand (every step is ready at
/// once); the response, its body still in flight.
fn send(router: &mut Router) -> Answer {
    let mut cx = Context::from_waker(Waker::noop());
    match Service::<Request<String>>::poll_ready(router, &mut cx) {
        Poll::Ready(Ok(())) => {}
        _ => panic!("a ready version is ready"),
    }
    let fut = pin!(router.call(Request::new(String::new())));
    match fut.poll(&mut cx) {
        Poll::Ready(Ok(res)) => res,
        _ => panic!("answered at once"),
    }
}

fn label(res: &Answer) -> String {
    res.body().get_ref().clone()
}

fn poll_once<F: Future + Unpin>(fut: &mut F) -> Poll<F::Output> {
    std::pin::Pin::new(fut).poll(&mut Context::from_waker(Waker::noop()))
}

// === models ===

/// A deploy replaces v2 with v3 and promotes it while a router clone serves
/// a request on another thread (its slot load, cache fill and admission
/// against the deploy's slot swap and word publish). The clone serves only
/// versions the state allowed (v1, or v3 once promoted; never the replaced
/// v2, at split 0), and v2 is dropped exactly once, before `retired`
/// resolves.
#[test]
fn loom_deploy_hands_the_new_version_to_a_serving_clone_and_drops_the_old_once() {
    model(bound(2), || {
        let drops = Drops::default();
        let (router, handle) = BlueGreenRouter::builder()
            .versions("v1", "v2")
            .build(version("v1", &drops), version("v2", &drops))
            .unwrap();
        let deployer = router.deployer::<String>();
        let mut clone = router.clone();
        let client = thread::spawn(move || {
            let served = label(&send(&mut clone));
            drop(clone);
            served
        });
        let deployed = deployer
            .install_ready(Color::Green, "v3", version("v3", &drops))
            .unwrap();
        handle.promote_to(Color::Green).unwrap();
        let gone = loom::future::block_on(deployed.retired());
        assert_eq!(gone, "v2");
        assert_eq!(
            drops.count("v2"),
            1,
            "dropped once, before retired resolved"
        );

        let served = client.join().unwrap();
        assert!(served == "v1" || served == "v3", "served by {served}");
        drop((router, handle, deployer));
        assert_eq!(drops.count("v2"), 1);
    });
}

/// A request admitted on blue while a promote runs: if its admission stands
/// (it is served by blue), `drained(Blue)` cannot resolve while its body is
/// alive, whatever the order; and once the body ends, the drain waiter is
/// woken (a lost wake-up would leave `block_on` blocked, which loom reports).
#[test]
fn loom_drained_after_a_promote_waits_for_every_request_admitted_before_it() {
    model(bound(3), || {
        let drops = Drops::default();
        let (router, handle) = BlueGreenRouter::new(version("v1", &drops), version("v2", &drops));
        let mut clone = router.clone();
        let on_blue = Arc::new(AtomicBool::new(false));
        let resolved = Arc::new(AtomicBool::new(false));
        let release = Arc::new(AtomicBool::new(false));

        let client = {
            let (on_blue, resolved, release) = (on_blue.clone(), resolved.clone(), release.clone());
            thread::spawn(move || {
                let res = send(&mut clone);
                if label(&res) == "v1" {
                    on_blue.store(true, Ordering::SeqCst);
                    assert!(
                        !resolved.load(Ordering::SeqCst),
                        "drained(Blue) resolved under a request admitted on blue"
                    );
                }
                // Until told (a spin loop loom explores: yield_now).
                while !release.load(Ordering::SeqCst) {
                    thread::yield_now();
                }
                drop(res);
            })
        };
        handle.promote().unwrap();
        let mut drained = handle.drained(Color::Blue);
        let early = poll_once(&mut drained).is_ready();
        if early {
            resolved.store(true, Ordering::SeqCst);
            assert!(
                !on_blue.load(Ordering::SeqCst),
                "drained(Blue) resolved while a request admitted on blue is in flight"
            );
        }
        release.store(true, Ordering::SeqCst);
        if !early {
            loom::future::block_on(drained);
        }
        client.join().unwrap();
        drop(router);
    });
}

/// A retired version's block: its last request ends on one thread while the
/// version is retired on another and watchers of the old version (a drain
/// and a retirement) wait on a third. Whichever thread sees the block idle
/// last recycles it, once: the payload is dropped once, the watchers resolve
/// and never wait forever, and the block's next owner counts from zero.
#[test]
fn loom_a_retired_block_is_recycled_once_and_its_old_watchers_resolve() {
    model(bound(1), || {
        let drops = Drops::default();
        let block = Block::acquire();
        let epoch = block.epoch();
        let request = block.admit_request();
        let holder = block.start(Lane::Held);

        let ender = thread::spawn(move || drop(request));
        let retirer = {
            let drops = drops.clone();
            thread::spawn(move || {
                block.retire(Some(Box::new(version("old", &drops))));
                drop(holder);
            })
        };
        let mut registered = None;
        loom::future::block_on(poll_fn(|cx| {
            if block.watch_drain(epoch, 1, cx.waker(), &mut registered) {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        }));

        loom::future::block_on(poll_fn(|cx| {
            if block.watch_retire(epoch, 2, cx.waker()) {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        }));
        assert_eq!(
            drops.count("old"),
            1,
            "the payload is dropped when the block leaves its epoch"
        );
        ender.join().unwrap();
        retirer.join().unwrap();
        assert_eq!(drops.count("old"), 1, "dropped once");
        assert_ne!(block.epoch(), epoch, "recycled");
        // A new version's block is this one, recycled, and counts from zero.
        let next = Block::acquire();
        assert!(std::ptr::eq(next, block), "the recycled block is reused");
        let admitted = next.admit_request();
        assert_eq!(next.in_flight(Lane::Admitted), 1, "counts start from zero");
        assert_eq!(next.in_flight(Lane::Held), 0);
        drop(admitted);
        next.retire(None);
    });
}
