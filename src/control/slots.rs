//! Typed version slots: the service each color holds, handed over to router
//! clones without a lock.
//!
//! The slots publish an immutable [`Pair`] (blue's and green's occupant and
//! the slot epoch) through an `ArcSwap`. A deploy stores a new pair *before*
//! it publishes the routing word with the new epoch, so a router clone that
//! sees the new epoch in the word finds the new pair; a clone that still sees
//! the old epoch keeps serving the version its admission saw. Every pair
//! entry holds its version's block (the `Held` lane), and a router clone
//! copies a service out of a pair while it holds that pair, so a block is
//! never recycled under a clone that is about to count on it.

use std::any::Any;
use std::sync::{Arc, OnceLock, Weak};
use std::task::{Context, Poll, Waker};

use super::core::{Control, Prober};
use super::counters::{Block, InFlight, Lane};
use super::version::{Readiness, Tags};
use crate::Color;

/// Polls a service of type `S` for readiness with the request type erased:
/// made where the request type is known (the router's `Service` impl).
pub(crate) type ReadyFn<S> = fn(&mut S, &mut Context<'_>) -> Poll<Result<(), ()>>;

#[cfg(not(all(test, feature = "loom")))]
struct PairCell<P>(arc_swap::ArcSwap<P>);

#[cfg(not(all(test, feature = "loom")))]
impl<P> PairCell<P> {
    fn new(p: P) -> Self {
        PairCell(arc_swap::ArcSwap::from_pointee(p))
    }

    #[inline]
    fn load(&self) -> arc_swap::Guard<Arc<P>> {
        self.0.load()
    }

    fn store(&self, p: P) {
        self.0.store(Arc::new(p));
    }
}

#[cfg(all(test, feature = "loom"))]
struct PairCell<P>(super::sync::Mutex<Arc<P>>);

#[cfg(all(test, feature = "loom"))]
impl<P> PairCell<P> {
    fn new(p: P) -> Self {
        PairCell(super::sync::Mutex::new(Arc::new(p)))
    }

    fn load(&self) -> Arc<P> {
        super::sync::lock(&self.0).clone()
    }

    fn store(&self, p: P) {
        *super::sync::lock(&self.0) = Arc::new(p);
    }
}

/// A loaded pair, held while it is borrowed.
#[cfg(not(all(test, feature = "loom")))]
pub(crate) type PairRef<SB, SG> = arc_swap::Guard<Arc<Pair<SB, SG>>>;
#[cfg(all(test, feature = "loom"))]
pub(crate) type PairRef<SB, SG> = Arc<Pair<SB, SG>>;

/// The service each color holds, at one slot epoch.
pub(crate) struct Pair<SB, SG> {
    pub(crate) epoch: u32,
    pub(crate) blue: Entry<SB>,
    pub(crate) green: Entry<SG>,
}

/// One color's occupant in a pair, and the pair's hold on its block.
pub(crate) struct Entry<S> {
    occupant: Arc<Occupant<S>>,
    _hold: InFlight,
}

/// A loaded version's service value and identity.
pub(crate) struct Occupant<S> {
    svc: S,
    id: u64,
    block: &'static Block,
    tags: Arc<Tags>,
}

impl<S> Entry<S> {
    fn new(occupant: Arc<Occupant<S>>) -> Entry<S> {
        let hold = occupant.block.start(Lane::Held);
        Entry {
            occupant,
            _hold: hold,
        }
    }

    /// A router clone's copy of this entry's service.
    #[inline]
    pub(crate) fn cached(&self, tags: bool) -> Cached<S>
    where
        S: Clone,
    {
        let o = &self.occupant;
        Cached {
            svc: o.svc.clone(),
            id: o.id,
            block: o.block,
            tags: tags.then(|| o.tags.clone()),
            _hold: o.block.start(Lane::Held),
        }
    }

    pub(crate) fn id(&self) -> u64 {
        self.occupant.id
    }
}

/// A router clone's copy of a color's service, with the version it belongs to.
/// Holds the version (its `Held` lane) until dropped; the service is dropped
/// first.
pub(crate) struct Cached<S> {
    pub(crate) svc: S,
    pub(crate) id: u64,
    pub(crate) block: &'static Block,
    /// The version's tags, when the router uses them.
    pub(crate) tags: Option<Arc<Tags>>,
    _hold: InFlight,
}

impl<S> Cached<S> {
    /// A cache entry for a service the router owns itself (a layer's): the
    /// version is the core's current one for its color.
    pub(crate) fn owned(svc: S, id: u64, block: &'static Block, tags: Option<Arc<Tags>>) -> Self {
        Cached {
            svc,
            id,
            block,
            tags,
            _hold: block.start(Lane::Held),
        }
    }
}

impl<S: Clone> Clone for Cached<S> {
    fn clone(&self) -> Self {
        Cached {
            svc: self.svc.clone(),
            id: self.id,
            block: self.block,
            tags: self.tags.clone(),
            _hold: self.block.start(Lane::Held),
        }
    }
}

/// The typed slots of a router built over two services.
pub(crate) struct Slots<SB, SG> {
    cell: PairCell<Pair<SB, SG>>,
    ready_blue: OnceLock<ReadyFn<SB>>,
    ready_green: OnceLock<ReadyFn<SG>>,
}

impl<SB, SG> Slots<SB, SG> {
    /// Slots holding `blue` and `green` as the core's current versions.
    pub(crate) fn new(control: &Control, blue: SB, green: SG) -> Slots<SB, SG> {
        let st = control.state();
        let occupant = |color: Color| {
            let live = st.version(color);
            (live.id, live.block, live.tags.clone())
        };
        let (bid, bblock, btags) = occupant(Color::Blue);
        let (gid, gblock, gtags) = occupant(Color::Green);
        let pair = Pair {
            epoch: st.epoch,
            blue: Entry::new(Arc::new(Occupant {
                svc: blue,
                id: bid,
                block: bblock,
                tags: btags,
            })),
            green: Entry::new(Arc::new(Occupant {
                svc: green,
                id: gid,
                block: gblock,
                tags: gtags,
            })),
        };
        Slots {
            cell: PairCell::new(pair),
            ready_blue: OnceLock::new(),
            ready_green: OnceLock::new(),
        }
    }

    /// The current pair (held while it is borrowed).
    #[inline]
    pub(crate) fn load(&self) -> PairRef<SB, SG> {
        self.cell.load()
    }

    /// Remembers how to poll each color's service for readiness, for probes.
    #[inline]
    pub(crate) fn know_readiness(&self, blue: ReadyFn<SB>, green: ReadyFn<SG>) {
        if self.ready_green.get().is_none() {
            let _ = self.ready_blue.set(blue);
            let _ = self.ready_green.set(green);
        }
    }
}

impl<S: Send + Sync + 'static> Slots<S, S> {
    /// Installs `svc` as version `id` (counted in `block`) in `color`, at
    /// slot epoch `epoch`; returns the replaced occupant, to be dropped when
    /// its version is gone. Called by [`Control::commit_deploy`] under the
    /// state lock.
    pub(crate) fn swap(
        &self,
        color: Color,
        epoch: u32,
        svc: S,
        id: u64,
        block: &'static Block,
        tags: Arc<Tags>,
    ) -> Box<dyn Any + Send> {
        let old = self.cell.load();
        let new = Arc::new(Occupant {
            svc,
            id,
            block,
            tags,
        });
        let keep = |e: &Entry<S>| Entry::new(e.occupant.clone());
        let (pair, replaced) = match color {
            Color::Blue => (
                Pair {
                    epoch,
                    blue: Entry::new(new),
                    green: keep(&old.green),
                },
                old.blue.occupant.clone(),
            ),
            Color::Green => (
                Pair {
                    epoch,
                    blue: keep(&old.blue),
                    green: Entry::new(new),
                },
                old.green.occupant.clone(),
            ),
        };
        drop(old);
        self.cell.store(pair);
        Box::new(replaced)
    }
}

impl<SB, SG> Prober for Slots<SB, SG>
where
    SB: Clone + Send + Sync + 'static,
    SG: Clone + Send + Sync + 'static,
{
    fn probe(&self, color: Color, id: u64) -> Option<Readiness> {
        let pair = self.cell.load();
        let res = match color {
            Color::Blue => {
                let ready = *self.ready_blue.get()?;
                (pair.blue.id() == id).then(|| poll_once(pair.blue.occupant.svc.clone(), ready))?
            }
            Color::Green => {
                let ready = *self.ready_green.get()?;
                (pair.green.id() == id)
                    .then(|| poll_once(pair.green.occupant.svc.clone(), ready))?
            }
        };
        Some(res)
    }
}

/// Polls `svc` for readiness once, with a waker that does nothing.
fn poll_once<S>(mut svc: S, ready: ReadyFn<S>) -> Readiness {
    let mut cx = Context::from_waker(Waker::noop());
    match ready(&mut svc, &mut cx) {
        Poll::Ready(Ok(())) => Readiness::Ready,
        Poll::Ready(Err(())) => Readiness::Failed,
        Poll::Pending => Readiness::NotReady,
    }
}

/// Attaches `slots` to `control` as its prober.
pub(crate) fn attach_prober<SB, SG>(control: &Control, slots: &Arc<Slots<SB, SG>>)
where
    SB: Clone + Send + Sync + 'static,
    SG: Clone + Send + Sync + 'static,
{
    let weak: Weak<Slots<SB, SG>> = Arc::downgrade(slots);
    control.set_prober(weak);
}
