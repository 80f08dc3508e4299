//! Comparison reports kept per pair of versions.
//!
//! Through a router, what is compared is the active color's version (the
//! primary) against the standby's (the shadow). A promote swaps the sides and
//! a deploy replaces one: each starts a new pair, so an agreement rate never
//! blends v1-vs-v2 with v2-vs-v1. A rollback returns to a pair that is still
//! kept and goes on counting there. The last [`MAX_PAIRS`] pairs are kept.
//!
//! A pair is keyed by what the routing word says (the active color and the
//! slot epoch, which rises with every deploy), so finding a request's pair
//! reads no label; the labels are read once, when the pair is first seen.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwapOption;

use super::report::{OnMismatch, Report};
use super::telemetry::CompareTelemetry;
use super::versions::ComparedVersions;
use crate::control::{ColorVersion, Control, Word, EPOCH_MASK};
use crate::Color;

/// Pairs kept; the oldest is dropped when a new one starts.
pub(crate) const MAX_PAIRS: usize = 8;

/// Which pair a routed request belongs to, as the routing word says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PairKey {
    active: Color,
    epoch: u32,
}

impl PairKey {
    pub(crate) fn of(word: Word) -> Self {
        PairKey {
            active: word.active(),
            epoch: word.epoch(),
        }
    }
}

/// One pair's report.
pub(crate) struct Pair {
    /// `None` for a standalone comparator (one pair, no colors).
    key: Option<PairKey>,
    pub(crate) report: Report,
}

/// The reports of one comparator, per pair.
pub(crate) struct Pairs {
    /// Oldest first; the most recent at the back.
    pairs: Mutex<VecDeque<Arc<Pair>>>,
    /// The pair compared last: found without the lock while the state does
    /// not move (every compared request looks its pair up).
    last: ArcSwapOption<Pair>,
    max_exemplars: usize,
    on_mismatch: Option<Arc<OnMismatch>>,
    #[cfg(feature = "drift")]
    drift: Option<Arc<crate::drift::DriftSettings>>,
    /// Metrics and events, shared by every pair.
    pub(crate) telemetry: Arc<CompareTelemetry>,
}

impl Pairs {
    pub(crate) fn new(
        max_exemplars: usize,
        on_mismatch: Option<Arc<OnMismatch>>,
        #[cfg(feature = "drift")] drift: Option<Arc<crate::drift::DriftSettings>>,
    ) -> Self {
        Pairs {
            pairs: Mutex::new(VecDeque::with_capacity(MAX_PAIRS)),
            last: ArcSwapOption::empty(),
            max_exemplars,
            on_mismatch,
            #[cfg(feature = "drift")]
            drift,
            telemetry: Arc::new(CompareTelemetry::default()),
        }
    }

    /// The report of a standalone comparator (a single pair, no versions).
    pub(crate) fn single(&self) -> Arc<Pair> {
        self.find_or_start(None, || None)
    }

    /// The report of the pair `word` routes to, started (with the versions
    /// `control` holds) when it is new.
    pub(crate) fn routed(&self, word: Word, control: &Control) -> Arc<Pair> {
        let key = PairKey::of(word);
        self.find_or_start(Some(key), || {
            let st = control.state();
            let side = |color: Color| ColorVersion {
                color,
                version: st.version(color).label.clone(),
            };
            // The copy was counted on the standby only if the word had not
            // moved, so the state holds the versions of this epoch unless a
            // deploy ran in the few instructions since: then the pair is
            // left without names rather than named wrongly.
            (st.epoch & EPOCH_MASK == key.epoch)
                .then(|| ComparedVersions::new(side(key.active), side(key.active.other())))
        })
    }

    /// The pair keyed `key`: the last one compared (no lock), a kept one,
    /// or a new one named by `versions`.
    fn find_or_start(
        &self,
        key: Option<PairKey>,
        versions: impl FnOnce() -> Option<ComparedVersions>,
    ) -> Arc<Pair> {
        if let Some(last) = self.last.load_full().filter(|p| p.key == key) {
            return last;
        }
        let mut pairs = lock(&self.pairs);
        let pair = match pairs.iter().rev().find(|p| p.key == key) {
            Some(p) => p.clone(),
            None => {
                if pairs.len() == MAX_PAIRS {
                    pairs.pop_front();
                }
                let pair = Arc::new(self.pair(key, versions()));
                pairs.push_back(pair.clone());
                pair
            }
        };
        self.last.store(Some(pair.clone()));
        pair
    }

    fn pair(&self, key: Option<PairKey>, versions: Option<ComparedVersions>) -> Pair {
        Pair {
            key,
            report: Report::new(
                self.max_exemplars,
                self.on_mismatch.clone(),
                self.telemetry.clone(),
                versions,
                #[cfg(feature = "drift")]
                self.drift.as_deref(),
            ),
        }
    }

    /// The report of the pair the router compares now (`word`), if it has
    /// started.
    pub(crate) fn current(&self, word: Word) -> Option<Arc<Pair>> {
        let key = PairKey::of(word);
        lock(&self.pairs)
            .iter()
            .rev()
            .find(|p| p.key == Some(key))
            .cloned()
    }

    /// Every pair kept, oldest first.
    pub(crate) fn all(&self) -> Vec<Arc<Pair>> {
        lock(&self.pairs).iter().cloned().collect()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
