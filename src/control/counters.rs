//! Per-color in-flight and served counts that scale with cores.
//!
//! Writing one shared cache line per request costs hundreds of nanoseconds once
//! several cores serve traffic (see DESIGN.md, "Measured costs"), and so does
//! cloning a shared `Arc` into every response. The counts therefore live in a
//! [`Block`] of cache-padded slots:
//!
//! - each thread owns one slot index (a process-wide index, handed back when the
//!   thread exits), so an admission is a plain load and store on a line that no
//!   other thread writes;
//! - a request's end is counted on the slot of the thread that ends it with one
//!   sequentially consistent `fetch_add`, which is also the barrier the drain
//!   notification needs;
//! - readers sum the slots: in flight = Σ started − Σ ended.
//!
//! Response bodies hold a `&'static Block` rather than an `Arc`: blocks are
//! allocated once and recycled through a process-wide pool when their router is
//! gone and nothing is in flight. A block whose router is dropped while responses
//! are still streaming is recycled by the last of those responses.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::task::Waker;

use crate::Color;

/// Slots owned by one thread each. Threads beyond this share [`OVERFLOW`].
const SLOTS: usize = 64;
/// The shared slot, written only with read-modify-write operations.
const OVERFLOW: usize = SLOTS;

/// [`Block::watchers`] holds, from the low bits up: the number of pending
/// `drained` registrations, the ORPHANED and CLAIMED flags, and an epoch that
/// rises each time the block goes back to the pool. The epoch makes a stale
/// recycle attempt (one that saw the flags of an earlier owner) fail.
const WAITING: u64 = (1 << 30) - 1;
/// Set once the owning router and handles are gone.
const ORPHANED: u64 = 1 << 30;
/// Set by whoever returns the block to the pool.
const CLAIMED: u64 = 1 << 31;
const EPOCH_SHIFT: u32 = 32;

/// Lanes 0 and 1 count requests admitted to blue and green; lanes 2 and 3 the
/// mirrored copies running on blue and green.
const LANES: usize = 4;

#[repr(align(128))]
#[derive(Default)]
struct Slot {
    started: [AtomicU64; LANES],
    ended: [AtomicU64; LANES],
}

/// Which counter pair a guard uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Lane {
    Admitted(Color),
    Mirrored(Color),
}

impl Lane {
    #[inline]
    fn index(self) -> usize {
        match self {
            Lane::Admitted(c) => c.index(),
            Lane::Mirrored(c) => 2 + c.index(),
        }
    }

    #[inline]
    fn color(self) -> Color {
        match self {
            Lane::Admitted(c) | Lane::Mirrored(c) => c,
        }
    }
}

pub(crate) struct Block {
    slots: [Slot; SLOTS + 1],
    /// Number of pending `drained` registrations, plus the two flag bits.
    /// Read after every request end; written only by waiters and at teardown.
    watchers: AtomicU64,
    wakers: [Mutex<Vec<(u64, Waker)>>; 2],
    /// How often this block went back to the pool (never reset).
    recycled: AtomicU64,
    /// Idle moments reported to drain waiters, per color (never reset).
    drain_events: [AtomicU64; 2],
}

static POOL: Mutex<Vec<&'static Block>> = Mutex::new(Vec::new());

// === thread slot index ===

static NEXT_INDEX: AtomicUsize = AtomicUsize::new(0);
static FREE_INDICES: Mutex<Vec<usize>> = Mutex::new(Vec::new());

struct ThreadIndex(usize);

impl ThreadIndex {
    fn acquire() -> ThreadIndex {
        if let Some(i) = lock(&FREE_INDICES).pop() {
            return ThreadIndex(i);
        }
        let i = NEXT_INDEX.fetch_add(1, Ordering::Relaxed);
        ThreadIndex(if i < SLOTS { i } else { OVERFLOW })
    }
}

impl Drop for ThreadIndex {
    fn drop(&mut self) {
        if self.0 < SLOTS {
            lock(&FREE_INDICES).push(self.0);
        }
    }
}

thread_local! {
    static INDEX: ThreadIndex = ThreadIndex::acquire();
}

/// This thread's slot; the shared one while thread-locals are being torn down.
#[inline]
fn slot_index() -> usize {
    INDEX.try_with(|i| i.0).unwrap_or(OVERFLOW)
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // The data behind these mutexes stays consistent even if a holder panicked.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

// === impl Block ===

impl Block {
    /// Takes a zeroed block from the pool, or allocates one.
    pub(crate) fn acquire() -> &'static Block {
        if let Some(block) = lock(&POOL).pop() {
            return block;
        }
        Box::leak(Box::new(Block {
            slots: std::array::from_fn(|_| Slot::default()),
            watchers: AtomicU64::new(0),
            wakers: [Mutex::new(Vec::new()), Mutex::new(Vec::new())],
            recycled: AtomicU64::new(0),
            drain_events: Default::default(),
        }))
    }

    /// Counts one admission of `color` and returns the guard that ends it.
    #[inline]
    pub(crate) fn admit(&'static self, color: Color) -> InFlight {
        self.start(Lane::Admitted(color))
    }

    /// Counts one request on `lane` and returns the guard that ends it.
    #[inline]
    pub(crate) fn start(&'static self, lane: Lane) -> InFlight {
        let i = slot_index();
        let counter = &self.slots[i].started[lane.index()];
        if i == OVERFLOW {
            counter.fetch_add(1, Ordering::Release);
        } else {
            // Single writer: only this thread holds index `i`.
            let n = counter.load(Ordering::Relaxed);
            counter.store(n.wrapping_add(1), Ordering::Release);
        }
        InFlight { block: self, lane }
    }

    #[inline]
    fn end(&'static self, lane: Lane) {
        let i = slot_index();
        self.slots[i].ended[lane.index()].fetch_add(1, Ordering::SeqCst);
        let watchers = self.watchers.load(Ordering::SeqCst);
        if watchers & (WAITING | ORPHANED) != 0 {
            self.end_watched(lane.color(), watchers);
        }
    }

    #[cold]
    fn end_watched(&'static self, color: Color, watchers: u64) {
        if watchers & ORPHANED != 0 {
            self.try_recycle(watchers);
        } else if self.busy(color) == 0 {
            self.wake(color);
        }
    }

    /// Requests admitted to `color` or mirrored to it, not yet ended.
    pub(crate) fn busy(&self, color: Color) -> u64 {
        self.in_flight(Lane::Admitted(color)) + self.in_flight(Lane::Mirrored(color))
    }

    /// Requests started on `lane` and not yet ended.
    pub(crate) fn in_flight(&self, lane: Lane) -> u64 {
        let c = lane.index();
        // Ends first, then starts: any end we see has its start visible too, so
        // a zero here means nothing was in flight at the time of the first read.
        let ended = self.slots.iter().fold(0u64, |acc, s| {
            acc.wrapping_add(s.ended[c].load(Ordering::SeqCst))
        });
        let started = self.started(lane);
        started.wrapping_sub(ended)
    }

    /// Requests admitted to `color` since the block was acquired.
    pub(crate) fn served(&self, color: Color) -> u64 {
        self.started(Lane::Admitted(color))
    }

    fn started(&self, lane: Lane) -> u64 {
        let c = lane.index();
        self.slots.iter().fold(0u64, |acc, s| {
            acc.wrapping_add(s.started[c].load(Ordering::SeqCst))
        })
    }

    /// Registers a drain waker under `id` and tells whether `color` has been
    /// seen with nothing in flight since the first registration (then nothing
    /// stays registered). `registered` holds the drain-event count read at
    /// the first registration.
    pub(crate) fn register(
        &self,
        color: Color,
        id: u64,
        waker: &Waker,
        registered: &mut Option<u64>,
    ) -> bool {
        {
            let mut wakers = lock(&self.wakers[color.index()]);
            match wakers.iter_mut().find(|(i, _)| *i == id) {
                Some((_, w)) => w.clone_from(waker),
                None => wakers.push((id, waker.clone())),
            }
        }
        let since = match *registered {
            Some(since) => since,
            None => {
                // Read the event count before announcing the watcher: any
                // idle moment an ender reports from now on is ours.
                let since = self.drain_events[color.index()].load(Ordering::SeqCst);
                *registered = Some(since);
                self.watchers.fetch_add(1, Ordering::SeqCst);
                since
            }
        };
        let idle_seen = self.drain_events[color.index()].load(Ordering::SeqCst) != since;
        if idle_seen || self.busy(color) == 0 {
            self.deregister(color, id, registered);
            true
        } else {
            false
        }
    }

    pub(crate) fn deregister(&self, color: Color, id: u64, registered: &mut Option<u64>) {
        if registered.take().is_some() {
            lock(&self.wakers[color.index()]).retain(|(i, _)| *i != id);
            self.watchers.fetch_sub(1, Ordering::SeqCst);
        }
    }

    fn wake(&self, color: Color) {
        // Remembered, so a waiter polled after a new request arrived still
        // resolves: it asked for the first idle moment, and this was one.
        self.drain_events[color.index()].fetch_add(1, Ordering::SeqCst);
        let wakers: Vec<_> = lock(&self.wakers[color.index()])
            .iter()
            .map(|(_, w)| w.clone())
            .collect();
        for w in wakers {
            w.wake();
        }
    }

    /// Called once when the router and all handles are gone.
    pub(crate) fn release(&'static self) {
        let seen = self.watchers.fetch_or(ORPHANED, Ordering::SeqCst) | ORPHANED;
        self.try_recycle(seen);
    }

    /// Returns the block to the pool if it is still orphaned in the epoch of
    /// `seen`, nothing is in flight, and nobody else claimed it.
    fn try_recycle(&'static self, seen: u64) {
        // Orphaned: no new admissions in this epoch, so a zero read after
        // seeing the flag stays zero.
        if Color::ALL.iter().any(|&c| self.busy(c) != 0) {
            return; // the last request to end will try again
        }
        let epoch = seen >> EPOCH_SHIFT;
        let mut current = self.watchers.load(Ordering::SeqCst);
        loop {
            let same_owner = current >> EPOCH_SHIFT == epoch;
            if !same_owner || current & ORPHANED == 0 || current & CLAIMED != 0 {
                return;
            }
            match self.watchers.compare_exchange(
                current,
                current | CLAIMED,
                Ordering::SeqCst,
                Ordering::SeqCst,
            ) {
                Ok(_) => break,
                Err(now) => current = now,
            }
        }
        for slot in &self.slots {
            for c in 0..LANES {
                slot.started[c].store(0, Ordering::Relaxed);
                slot.ended[c].store(0, Ordering::Relaxed);
            }
        }
        for w in &self.wakers {
            lock(w).clear();
        }
        self.watchers
            .store((epoch + 1) << EPOCH_SHIFT, Ordering::SeqCst);
        self.recycled.fetch_add(1, Ordering::Relaxed);
        lock(&POOL).push(self);
    }
}

/// Counts one request as in flight on its color until dropped.
///
/// Lives in the response future and then in the response body, so a streamed
/// response stays in flight until its last frame or until it is dropped.
pub(crate) struct InFlight {
    block: &'static Block,
    lane: Lane,
}

impl InFlight {
    pub(crate) fn color(&self) -> Color {
        self.lane.color()
    }
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
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_across_threads_and_recycles() {
        let block = Block::acquire();
        let guards: Vec<_> = (0..100)
            .map(|i| {
                block.admit(if i % 4 == 0 {
                    Color::Green
                } else {
                    Color::Blue
                })
            })
            .collect();
        let mirrored = block.start(Lane::Mirrored(Color::Green));
        assert_eq!(block.in_flight(Lane::Admitted(Color::Blue)), 75);
        assert_eq!(block.in_flight(Lane::Admitted(Color::Green)), 25);
        assert_eq!(block.busy(Color::Green), 26);
        // End them on other threads, as responses often are.
        std::thread::scope(|s| {
            let mut guards = guards;
            let half = guards.split_off(50);
            s.spawn(move || drop(half));
            s.spawn(move || drop(guards));
        });
        assert_eq!(block.busy(Color::Blue), 0);
        assert_eq!(block.busy(Color::Green), 1, "the mirrored copy");
        drop(mirrored);
        assert_eq!(block.busy(Color::Green), 0);
        assert_eq!(block.served(Color::Blue), 75);
        assert_eq!(block.served(Color::Green), 25);

        let recycled = block.recycled.load(Ordering::Relaxed);
        let late = block.admit(Color::Blue);
        block.release();
        assert_eq!(
            block.served(Color::Blue),
            76,
            "not recycled while in flight"
        );
        assert_eq!(block.recycled.load(Ordering::Relaxed), recycled);
        drop(late);
        // Other tests may take the block from the pool at once, so only the
        // recycle count is checked after this point.
        assert!(
            block.recycled.load(Ordering::Relaxed) > recycled,
            "recycled by the last end"
        );
    }

    /// A request that ended while its router was being dropped may try to
    /// recycle the block after the router's drop already did. That stale try
    /// must not put the block in the pool twice (two routers would then share
    /// counters).
    #[test]
    fn stale_recycle_attempt_is_ignored() {
        let block = Block::acquire();
        let epoch = block.watchers.load(Ordering::SeqCst) >> EPOCH_SHIFT;
        let stale = (epoch << EPOCH_SHIFT) | ORPHANED; // what the request saw
        block.release(); // nothing in flight: recycled now, epoch + 1
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
                    let gs: Vec<_> = (0..50).map(|_| block.admit(Color::Green)).collect();
                    drop(gs);
                });
            }
        });
        assert_eq!(block.served(Color::Green), 50 * (SLOTS as u64 + 8));
        assert_eq!(block.busy(Color::Green), 0);
        block.release();
    }
}
