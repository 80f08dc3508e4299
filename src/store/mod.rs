//! Rollout state shared by replicas through a store (feature `store`).
//!
//! A model served by many replicas keeps one [`RolloutState`] document in a
//! [`StateStore`]: the active color, the split, the mirror fraction, the
//! version each color should hold, and a generation. The store is a
//! compare-and-set register with a watch: [`MemoryStore`] in one process,
//! etcd through the `tower-rollout-etcd` crate.

mod api;
mod memory;
mod state;

pub use api::{Entry, StateStore, StoreError, StoreFuture, WatchStream};
pub use memory::MemoryStore;
pub use state::{RolloutState, StateError};
