//! Per-version counters that scale with cores, and the end of a version's life.
//!
//! Writing one shared cache line per request costs hundreds of nanoseconds once
//! several cores serve traffic, and so does cloning a shared `Arc` into every
//! response. Each loaded version therefore counts its requests in a [`Block`]
//! of cache-padded slots:
//!
//! - each thread owns one slot index (process-wide, handed back when the thread
//!   exits), so a start or an end is a plain load and store on a line no other
//!   thread writes;
//! - readers sum the slots: in flight = Σ started − Σ ended, per [`Lane`];
//! - a block counts three lanes: requests admitted to the version, mirrored
//!   copies running on it, and the *holders* of its service (the slot itself
//!   and every router clone that cached a clone of the service).
//!
//! Guards ([`InFlight`]) hold a `&'static Block` rather than an `Arc`: blocks
//! are allocated once and recycled through a process-wide pool. A version that
//! has been replaced is *retired* ([`Block::retire`]): once nothing holds its
//! service and nothing runs on it, the block drops the retired service value
//! it was given, wakes whoever waits for the retirement, and goes back to the
//! pool. An epoch in [`Block`]'s state word rises at every recycle, so nothing
//! that remembers an earlier owner can act on the block after that.
//!
//! # Why admissions fence
//!
//! `drained(color)` right after a promote must see every request admitted
//! under the old state. An admission stores its start, issues a `SeqCst`
//! fence and reads the routing word again (the router retries if the word
//! moved); a control call stores the word, and `drained` fences before it
//! reads the counters. Either the admission sees the new word, or `drained`
//! sees the admission: the store-buffering pattern, closed by the two fences.
//! The same pattern links a request's end with a drain waiter's registration.

use std::any::Any;
use std::task::Waker;

use std::sync::Arc;

use arc_swap::ArcSwapOption;

use super::meter::{Classifier, Meter, MEASURING, NO_CODE, UNMEASURED};
use super::sync::{fence, lock, AtomicU64, Mutex, Ordering};

/// Slots owned by one thread each. Threads beyond this share [`OVERFLOW`].
#[cfg(not(all(test, feature = "loom")))]
const SLOTS: usize = 64;
/// In the loom models: one owned slot (the first thread's) and the shared
/// one, so both paths are explored and the state space stays small.
#[cfg(all(test, feature = "loom"))]
const SLOTS: usize = 1;
/// The shared slot, written only with read-modify-write operations.
const OVERFLOW: usize = SLOTS;

/// [`Block::state`] holds, from the low bits up: the number of registered
/// `drained` waiters, the ORPHANED and CLAIMED flags, and the epoch.
const WAITING: u64 = (1 << 30) - 1;
/// Set when the version was retired: the block is recycled as soon as it is
/// idle and nothing holds it.
const ORPHANED: u64 = 1 << 30;
/// Set by whoever returns the block to the pool.
const CLAIMED: u64 = 1 << 31;
const EPOCH_SHIFT: u32 = 32;

/// Which counter pair a guard uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Lane {
    /// A request admitted to the version, until its response body ends.
    Admitted = 0,
    /// A mirrored copy running on the version.
    Mirrored = 1,
    /// A holder of the version's service: its slot, a router clone's cache.
    Held = 2,
}

const LANES: usize = 3;

#[repr(align(128))]
struct Slot {
    started: [AtomicU64; LANES],
    ended: [AtomicU64; LANES],
}

impl Slot {
    fn new() -> Slot {
        Slot {
            started: std::array::from_fn(|_| AtomicU64::new(0)),
            ended: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }
}

/// Wakers registered by one kind of waiter, and how often they were woken.
struct Waiters {
    wakers: Mutex<Vec<(u64, Waker)>>,
    /// Rises at every wake-up (never reset): a waiter that remembers the
    /// count at registration knows whether a wake-up happened since.
    events: AtomicU64,
}

impl Waiters {
    fn new() -> Waiters {
        Waiters {
            wakers: Mutex::new(Vec::new()),
            events: AtomicU64::new(0),
        }
    }

    fn put(&self, id: u64, waker: &Waker) {
        let mut wakers = lock(&self.wakers);
        match wakers.iter_mut().find(|(i, _)| *i == id) {
            Some((_, w)) => w.clone_from(waker),
            None => wakers.push((id, waker.clone())),
        }
    }

    fn remove(&self, id: u64) {
        lock(&self.wakers).retain(|(i, _)| *i != id);
    }

    /// Counts a wake-up and wakes every registered waiter; with `clear`, also
    /// forgets them.
    fn wake(&self, clear: bool) {
        self.events.fetch_add(1, Ordering::SeqCst);
        let wakers: Vec<Waker> = {
            let mut guard = lock(&self.wakers);
            if clear {
                guard.drain(..).map(|(_, w)| w).collect()
            } else {
                guard.iter().map(|(_, w)| w.clone()).collect()
            }
        };
        for w in wakers {
            w.wake();
        }
    }
}

/// The counters of one loaded version. See the [module docs](self).
pub(crate) struct Block {
    slots: [Slot; SLOTS + 1],
    /// Drain waiters, flags and epoch; see [`WAITING`].
    state: AtomicU64,
    drain: Waiters,
    retire: Waiters,
    /// Outcome measurements of the version's requests.
    pub(crate) meter: Meter,
    /// The failure classifier of the router that loaded the version; `None`
    /// for the default one.
    pub(crate) classify: ArcSwapOption<Arc<Classifier>>,
    /// The retired service value, dropped when the block is recycled.
    payload: Mutex<Option<Box<dyn Any + Send>>>,
}

impl std::fmt::Debug for Block {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Block")
            .field("epoch", &self.epoch())
            .field("busy", &self.busy())
            .finish_non_exhaustive()
    }
}

// === the pool and the thread's slot index ===

#[cfg(not(all(test, feature = "loom")))]
mod statics {
    use super::Block;
    use std::sync::atomic::AtomicUsize;
    use std::sync::Mutex;

    pub(super) static POOL: Mutex<Vec<&'static Block>> = Mutex::new(Vec::new());
    pub(super) static NEXT_INDEX: AtomicUsize = AtomicUsize::new(0);
    pub(super) static FREE_INDICES: Mutex<Vec<usize>> = Mutex::new(Vec::new());

    thread_local! {
        pub(super) static INDEX: super::ThreadIndex = super::ThreadIndex::acquire();
    }
}

#[cfg(all(test, feature = "loom"))]
mod statics {
    use super::Block;
    use loom::sync::atomic::AtomicUsize;
    use loom::sync::Mutex;

    loom::lazy_static! {
        pub(super) static ref POOL: Mutex<Vec<&'static Block>> = Mutex::new(Vec::new());
        pub(super) static ref NEXT_INDEX: AtomicUsize = AtomicUsize::new(0);
        pub(super) static ref FREE_INDICES: Mutex<Vec<usize>> = Mutex::new(Vec::new());
    }

    loom::thread_local! {
        pub(super) static INDEX: super::ThreadIndex = super::ThreadIndex::acquire();
    }
}

use statics::{FREE_INDICES, INDEX, NEXT_INDEX, POOL};

struct ThreadIndex(usize);

impl ThreadIndex {
    fn acquire() -> ThreadIndex {
        if let Some(i) = lock(&FREE_INDICES).pop() {
            return ThreadIndex(i);
        }
        let i = NEXT_INDEX.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        ThreadIndex(if i < SLOTS { i } else { OVERFLOW })
    }
}

impl Drop for ThreadIndex {
    fn drop(&mut self) {
        // In the loom models a thread's index is not handed back: the main
        // thread's would be after the model's statics are gone.
        if self.0 < SLOTS && !cfg!(all(test, feature = "loom")) {
            lock(&FREE_INDICES).push(self.0);
        }
    }
}

/// This thread's slot; the shared one while thread-locals are torn down.
#[inline]
fn slot_index() -> usize {
    INDEX.try_with(|i| i.0).unwrap_or(OVERFLOW)
}

// === impl Block ===

impl Block {
    /// Takes a zeroed block from the pool, or allocates one.
    pub(crate) fn acquire() -> &'static Block {
        if let Some(block) = lock(&POOL).pop() {
            return block;
        }
        Box::leak(Box::new(Block {
            slots: std::array::from_fn(|_| Slot::new()),
            state: AtomicU64::new(0),
            drain: Waiters::new(),
            retire: Waiters::new(),
            meter: Meter::new(),
            classify: ArcSwapOption::empty(),
            payload: Mutex::new(None),
        }))
    }

    /// Counts one start on `lane` and returns the guard that ends it. No
    /// fence: for holders, whose start is covered by the holder they were
    /// copied from.
    #[inline]
    pub(crate) fn start(&'static self, lane: Lane) -> InFlight {
        bump(&self.slots, |s| &s.started[lane as usize]);
        InFlight { block: self, lane }
    }

    /// [`start`](Self::start), then a `SeqCst` fence: the caller reads the
    /// routing word after it and retries if the word moved (see the module
    /// docs).
    #[inline]
    pub(crate) fn admit(&'static self, lane: Lane) -> InFlight {
        let guard = self.start(lane);
        fence(Ordering::SeqCst);
        guard
    }

    /// Counts one request admitted to the version (a start on the
    /// `Admitted` lane and the fence, see [`admit`](Self::admit)).
    #[inline]
    pub(crate) fn admit_request(&'static self) -> Admission {
        bump(&self.slots, |s| &s.started[Lane::Admitted as usize]);
        fence(Ordering::SeqCst);
        Admission {
            block: self,
            status: 0,
            code: NO_CODE,
            state: UNMEASURED,
        }
    }

    #[inline]
    pub(crate) fn end(&'static self, lane: Lane) {
        bump(&self.slots, |s| &s.ended[lane as usize]);
        fence(Ordering::SeqCst);
        let state = self.state.load(Ordering::Relaxed);
        if state & (WAITING | ORPHANED) != 0 {
            self.end_watched(lane, state);
        }
    }

    #[cold]
    fn end_watched(&'static self, lane: Lane, state: u64) {
        if state & WAITING != 0 && lane != Lane::Held && self.busy() == 0 {
            self.drain.wake(false);
        }
        if state & ORPHANED != 0 {
            self.try_recycle(state);
        }
    }

    /// Started and not yet ended on `lane`.
    pub(crate) fn in_flight(&self, lane: Lane) -> u64 {
        let c = lane as usize;
        // Ends first, then starts: any end seen has its start visible too.
        let ended = sum(&self.slots, |s| &s.ended[c]);
        let started = sum(&self.slots, |s| &s.started[c]);
        started.wrapping_sub(ended)
    }

    /// Requests and mirrored copies in flight.
    pub(crate) fn busy(&self) -> u64 {
        self.in_flight(Lane::Admitted) + self.in_flight(Lane::Mirrored)
    }

    /// Requests admitted since the block was acquired.
    pub(crate) fn served(&self) -> u64 {
        sum(&self.slots, |s| &s.started[Lane::Admitted as usize])
    }

    /// How often the block has been recycled: a value remembered now tells
    /// later whether the block still belongs to the same version.
    pub(crate) fn epoch(&self) -> u64 {
        self.state.load(Ordering::SeqCst) >> EPOCH_SHIFT
    }

    // === drain waiters ===

    /// Registers a drain waker under `id` and tells whether the version has
    /// been seen with nothing in flight since the first registration (then
    /// nothing stays registered), or belongs to another owner than at
    /// `epoch`. `registered` holds the wake-up count read at the first
    /// registration.
    pub(crate) fn watch_drain(
        &self,
        epoch: u64,
        id: u64,
        waker: &Waker,
        registered: &mut Option<u64>,
    ) -> bool {
        self.drain.put(id, waker);
        let since = match *registered {
            Some(since) => since,
            None => {
                // The count before announcing the waiter: any idle moment an
                // ender reports from now on is ours.
                let since = self.drain.events.load(Ordering::SeqCst);
                if !self.add_waiter(epoch) {
                    self.drain.remove(id);
                    return true; // recycled: nothing of that version runs
                }
                *registered = Some(since);
                since
            }
        };
        fence(Ordering::SeqCst);
        let idle_seen = self.drain.events.load(Ordering::SeqCst) != since;
        if idle_seen || self.busy() == 0 || self.epoch() != epoch {
            self.unwatch_drain(epoch, id, registered);
            true
        } else {
            false
        }
    }

    pub(crate) fn unwatch_drain(&self, epoch: u64, id: u64, registered: &mut Option<u64>) {
        if registered.take().is_some() {
            self.drain.remove(id);
            self.remove_waiter(epoch);
        }
    }

    /// Counts one drain waiter if the block is still in `epoch`.
    fn add_waiter(&self, epoch: u64) -> bool {
        let mut current = self.state.load(Ordering::SeqCst);
        loop {
            if current >> EPOCH_SHIFT != epoch {
                return false;
            }
            match self.state.compare_exchange(
                current,
                current + 1,
                Ordering::SeqCst,
                Ordering::SeqCst,
            ) {
                Ok(_) => return true,
                Err(now) => current = now,
            }
        }
    }

    fn remove_waiter(&self, epoch: u64) {
        let mut current = self.state.load(Ordering::SeqCst);
        loop {
            // A recycle reset the count: nothing of ours is left to remove.
            if current >> EPOCH_SHIFT != epoch || current & WAITING == 0 {
                return;
            }
            match self.state.compare_exchange(
                current,
                current - 1,
                Ordering::SeqCst,
                Ordering::SeqCst,
            ) {
                Ok(_) => return,
                Err(now) => current = now,
            }
        }
    }

    // === retirement ===

    /// Retires the version: `payload` (the retired service value) is kept
    /// until the block is idle and nothing holds it, then dropped, and the
    /// block recycled. Called once per version, by whoever replaced it.
    pub(crate) fn retire(&'static self, payload: Option<Box<dyn Any + Send>>) {
        *lock(&self.payload) = payload;
        let seen = self.state.fetch_or(ORPHANED, Ordering::SeqCst) | ORPHANED;
        // The store-buffering pattern again, with the last end: either that
        // end sees ORPHANED (and recycles), or the reads below see the end.
        // Without the fence both could miss each other (found by loom).
        fence(Ordering::SeqCst);
        self.try_recycle(seen);
    }

    /// Registers a retirement waker under `id`; true once the block has left
    /// `epoch` (the version is gone: its service value dropped, nothing of it
    /// running).
    pub(crate) fn watch_retire(&self, epoch: u64, id: u64, waker: &Waker) -> bool {
        if self.epoch() != epoch {
            return true;
        }
        self.retire.put(id, waker);
        if self.epoch() != epoch {
            self.retire.remove(id);
            return true;
        }
        false
    }

    pub(crate) fn unwatch_retire(&self, id: u64) {
        self.retire.remove(id);
    }

    /// Returns the block to the pool if it is still orphaned in the epoch of
    /// `seen`, nothing holds it, nothing is in flight, and nobody else
    /// claimed it.
    fn try_recycle(&'static self, seen: u64) {
        // Holders first: with none left nobody can start anything on this
        // block again, and every start made before the last holder went is
        // visible to the reads after it.
        if self.in_flight(Lane::Held) != 0 || self.busy() != 0 {
            return; // the last end will try again
        }
        let epoch = seen >> EPOCH_SHIFT;
        let mut current = self.state.load(Ordering::SeqCst);
        loop {
            let same_owner = current >> EPOCH_SHIFT == epoch;
            if !same_owner || current & ORPHANED == 0 || current & CLAIMED != 0 {
                return;
            }
            match self.state.compare_exchange(
                current,
                current | CLAIMED,
                Ordering::SeqCst,
                Ordering::SeqCst,
            ) {
                Ok(_) => break,
                Err(now) => current = now,
            }
        }
        // The retired service value goes first: the version is gone only
        // once its memory is. A panicking `Drop` must not take a request
        // down with it.
        let payload = lock(&self.payload).take();
        if let Some(payload) = payload {
            let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| drop(payload)));
        }
        for slot in &self.slots {
            for c in 0..LANES {
                slot.started[c].store(0, Ordering::Relaxed);
                slot.ended[c].store(0, Ordering::Relaxed);
            }
        }
        self.meter.reset();
        self.classify.store(None);
        // A read-modify-write, not a store: it orders after a waiter's
        // concurrent count change (which then fails its epoch check). loom
        // needs it too: it can let a plain store slip before another
        // thread's earlier RMW (tokio-rs/loom#389).
        self.state
            .swap((epoch + 1) << EPOCH_SHIFT, Ordering::SeqCst);
        // Waiters of the old owner resolve: nothing of that version is left.
        self.drain.wake(true);
        self.retire.wake(true);
        lock(&POOL).push(self);
    }
}

/// Adds one to this thread's counter chosen by `counter`.
#[inline]
fn bump(slots: &[Slot; SLOTS + 1], counter: impl Fn(&Slot) -> &AtomicU64) {
    let i = slot_index();
    let c = counter(&slots[i]);
    if i == OVERFLOW {
        c.fetch_add(1, Ordering::Release);
    } else {
        // Single writer: only this thread holds index `i`.
        let n = c.load(Ordering::Relaxed);
        c.store(n.wrapping_add(1), Ordering::Release);
    }
}

fn sum(slots: &[Slot; SLOTS + 1], counter: impl Fn(&Slot) -> &AtomicU64) -> u64 {
    slots.iter().fold(0u64, |acc, s| {
        acc.wrapping_add(counter(s).load(Ordering::Acquire))
    })
}

/// Counts one admitted request on its version until dropped, and carries what
/// measuring needs at the end of the response (in the same 16 bytes): its
/// status, its gRPC status, whether it is gRPC. Lives in the router's pick,
/// the response future and the response body. A measured response dropped
/// before it was classified counts as abandoned.
pub(crate) struct Admission {
    block: &'static Block,
    pub(crate) status: u16,
    pub(crate) state: u8,
    pub(crate) code: i32,
}

impl Admission {
    /// The block this admission counts on.
    #[inline]
    pub(crate) fn block(&self) -> &'static Block {
        self.block
    }

    /// Whether the outcome is still to be classified.
    #[inline]
    pub(crate) fn measuring(&self) -> bool {
        self.state & 3 == MEASURING
    }

    /// Takes the admission back, as if the request had never been admitted
    /// (the router picked again, or the pick was never called): the start is
    /// removed rather than matched by an end, so the served count stays the
    /// number of requests dispatched. Called on the thread that admitted.
    #[cold]
    pub(crate) fn cancel(self) {
        let block = self.block;
        std::mem::forget(self);
        let i = slot_index();
        let c = &block.slots[i].started[Lane::Admitted as usize];
        if i == OVERFLOW {
            c.fetch_sub(1, Ordering::Release);
        } else {
            let n = c.load(Ordering::Relaxed);
            c.store(n.wrapping_sub(1), Ordering::Release);
        }
        fence(Ordering::SeqCst);
        let state = block.state.load(Ordering::Relaxed);
        if state & (WAITING | ORPHANED) != 0 {
            block.end_watched(Lane::Admitted, state);
        }
    }
}

impl Drop for Admission {
    #[inline]
    fn drop(&mut self) {
        if self.state & 3 == MEASURING {
            self.block.meter.abandoned();
        }
        self.block.end(Lane::Admitted);
    }
}

impl std::fmt::Debug for Admission {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Admission")
            .field("status", &self.status)
            .finish_non_exhaustive()
    }
}

/// Counts one request (or copy, or holder) on its version until dropped.
///
/// Lives in the router's pick, then the response future, then the response
/// body, so a streamed response stays in flight until its last frame or until
/// it is dropped.
pub(crate) struct InFlight {
    block: &'static Block,
    lane: Lane,
}

impl Drop for InFlight {
    #[inline]
    fn drop(&mut self) {
        self.block.end(self.lane);
    }
}

impl std::fmt::Debug for InFlight {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InFlight")
            .field("lane", &self.lane)
            .finish_non_exhaustive()
    }
}

#[cfg(all(test, not(feature = "loom")))]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize as StdCount;
    use std::sync::Arc;

    #[test]
    fn counts_across_threads() {
        let block = Block::acquire();
        let guards: Vec<_> = (0..100).map(|_| block.admit_request()).collect();
        let mirrored = block.start(Lane::Mirrored);
        assert_eq!(block.in_flight(Lane::Admitted), 100);
        assert_eq!(block.busy(), 101);
        std::thread::scope(|s| {
            let mut guards = guards;
            let half = guards.split_off(50);
            s.spawn(move || drop(half));
            s.spawn(move || drop(guards));
        });
        assert_eq!(block.busy(), 1, "the mirrored copy");
        drop(mirrored);
        assert_eq!(block.busy(), 0);
        assert_eq!(block.served(), 100);
    }

    struct DropCount(Arc<StdCount>);
    impl Drop for DropCount {
        fn drop(&mut self) {
            self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
    }

    #[test]
    fn retired_block_drops_its_payload_after_the_last_holder_and_request() {
        let block = Block::acquire();
        let epoch = block.epoch();
        let drops = Arc::new(StdCount::new(0));
        let holder = block.start(Lane::Held);
        let request = block.admit_request();
        block.retire(Some(Box::new(DropCount(drops.clone()))));
        assert_eq!(block.epoch(), epoch, "held: not recycled");
        drop(holder);
        assert_eq!(block.epoch(), epoch, "a request in flight: not recycled");
        assert_eq!(drops.load(std::sync::atomic::Ordering::SeqCst), 0);
        drop(request);
        assert_ne!(block.epoch(), epoch, "recycled by the last end");
        assert_eq!(drops.load(std::sync::atomic::Ordering::SeqCst), 1);
    }

    /// A request that ended while its version was being retired may try to
    /// recycle the block after the retirement already did. That stale try
    /// must not put the block in the pool twice.
    #[test]
    fn stale_recycle_attempt_is_ignored() {
        let block = Block::acquire();
        let epoch = block.epoch();
        let stale = (epoch << EPOCH_SHIFT) | ORPHANED;
        block.retire(None); // nothing in flight: recycled now
        block.try_recycle(stale);
        let pool = lock(&POOL);
        let copies = pool.iter().filter(|b| std::ptr::eq(**b, block)).count();
        assert!(copies <= 1, "block pooled {copies} times");
    }

    #[test]
    fn many_threads_share_the_overflow_slot_correctly() {
        let block = Block::acquire();
        std::thread::scope(|s| {
            for _ in 0..(SLOTS + 8) {
                s.spawn(|| {
                    let gs: Vec<_> = (0..50).map(|_| block.admit_request()).collect();
                    drop(gs);
                });
            }
        });
        assert_eq!(block.served(), 50 * (SLOTS as u64 + 8));
        assert_eq!(block.busy(), 0);
    }
}
