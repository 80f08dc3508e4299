//! The synchronization primitives of the core, swapped for `loom`'s in the
//! crate's own model-checking tests (feature `loom`, unit tests only), so that
//! every interleaving of the lock-free parts can be explored.

#[cfg(not(all(test, feature = "loom")))]
pub(crate) use std::sync::atomic::{fence, AtomicU64, Ordering};
#[cfg(not(all(test, feature = "loom")))]
pub(crate) use std::sync::{Mutex, MutexGuard};

#[cfg(all(test, feature = "loom"))]
pub(crate) use loom::sync::atomic::{fence, AtomicU64, Ordering};
#[cfg(all(test, feature = "loom"))]
pub(crate) use loom::sync::{Mutex, MutexGuard};

/// Locks `m`; the data behind the core's mutexes stays consistent even if a
/// holder panicked, so a poisoned lock is used as it is.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// One turn of a wait for another thread's next store (a deploy between its
/// slot store and its word publish). Under loom, a yield, so the model lets
/// the other thread run instead of exploring the spin forever.
#[inline]
pub(crate) fn spin_wait() {
    #[cfg(not(all(test, feature = "loom")))]
    std::hint::spin_loop();
    #[cfg(all(test, feature = "loom"))]
    loom::thread::yield_now();
}
