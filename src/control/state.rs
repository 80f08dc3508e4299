//! The routing state: one packed word read on the hot path, and the full state
//! (generation, history) behind a mutex that only control calls take.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
#[cfg(feature = "tokio")]
use std::sync::Weak;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use rand::RngExt;

use super::counters::Block;
use super::meter::Meter;
use super::PlanSlot;
use crate::mirror::Engine;
use crate::shadow::Judge;
use crate::telemetry::RouterTelemetry;
use crate::Color;

/// Fractions are stored as thresholds out of 2^20 (about one in a million).
pub(crate) const SCALE: u32 = 1 << 20;
const FIELD_BITS: u32 = 21;
const FIELD_MASK: u64 = (1 << FIELD_BITS) - 1;
const SPLIT_SHIFT: u32 = 1;
const MIRROR_SHIFT: u32 = SPLIT_SHIFT + FIELD_BITS;
const MEASURE_BIT: u64 = 1 << (MIRROR_SHIFT + FIELD_BITS);

/// How many transitions [`RolloutStatus::history`](crate::control::RolloutStatus::history) keeps.
pub(crate) const HISTORY: usize = 64;

/// Everything the request path needs, in one atomic word: the active color,
/// the split and mirror thresholds, and whether outcomes are measured. One `AtomicU64` load costs well under a
/// nanosecond and scales with cores; an `ArcSwap::load` costs ~20 ns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Word(u64);

impl Word {
    pub(crate) fn pack(active: Color, split: u32, mirror: u32) -> Word {
        debug_assert!(split <= SCALE && mirror <= SCALE);
        Word(
            active.index() as u64
                | (u64::from(split) << SPLIT_SHIFT)
                | (u64::from(mirror) << MIRROR_SHIFT),
        )
    }

    fn with_measure(self, on: bool) -> Word {
        if on {
            Word(self.0 | MEASURE_BIT)
        } else {
            Word(self.0 & !MEASURE_BIT)
        }
    }

    /// Whether requests' outcomes are measured (see `meter`).
    #[inline]
    pub(crate) fn measure(self) -> bool {
        self.0 & MEASURE_BIT != 0
    }

    #[inline]
    pub(crate) fn active(self) -> Color {
        Color::from_bit(self.0)
    }

    #[inline]
    pub(crate) fn split(self) -> u32 {
        ((self.0 >> SPLIT_SHIFT) & FIELD_MASK) as u32
    }

    #[inline]
    pub(crate) fn mirror(self) -> u32 {
        ((self.0 >> MIRROR_SHIFT) & FIELD_MASK) as u32
    }

    /// The color a request with bucket `bucket` (in `0..SCALE`) goes to.
    #[inline]
    pub(crate) fn color_for(self, bucket: u32) -> Color {
        if bucket < self.split() {
            self.active().other()
        } else {
            self.active()
        }
    }

    /// The color for a request without a sticky key: a random bucket, drawn only
    /// when a split is set.
    #[inline]
    pub(crate) fn pick(self) -> Color {
        if self.split() == 0 {
            self.active()
        } else {
            self.color_for(random_bucket())
        }
    }
}

/// A uniformly random bucket in `0..SCALE`.
#[inline]
pub(crate) fn random_bucket() -> u32 {
    rand::rng().random::<u32>() >> (32 - 20)
}

/// A draw against a threshold: never at 0, always at `SCALE`, random between.
#[inline]
pub(crate) fn hit(threshold: u32) -> bool {
    match threshold {
        0 => false,
        t if t >= SCALE => true,
        t => random_bucket() < t,
    }
}

/// The threshold for a fraction already checked to be within `0..=1`.
pub(crate) fn threshold(fraction: f64) -> u32 {
    (fraction * f64::from(SCALE))
        .round()
        .clamp(0.0, f64::from(SCALE)) as u32
}

/// What one control call changed.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub enum TransitionKind {
    /// The standby became active; the split went back to zero.
    Promote,
    /// The last promote was undone (or, with none to undo, the canary split was
    /// set back to zero).
    Rollback,
    /// The canary split was set.
    Split,
    /// The mirrored fraction was set.
    Mirror,
    /// A rollout plan aborted: the stable color is active again, split and
    /// mirror back to zero, in one step.
    Abort,
}

/// One entry of the transition history: the state right after a control call.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Transition {
    /// The generation this call produced; rises by one with every call.
    pub generation: u64,
    /// When the call took effect.
    pub at: SystemTime,
    /// What the call was.
    pub kind: TransitionKind,
    /// The active color after the call.
    pub active: Color,
    /// The fraction of requests sent to the standby after the call.
    pub split: f64,
    /// The fraction of active traffic mirrored to the standby after the call.
    pub mirror: f64,
}

pub(crate) struct State {
    pub(crate) active: Color,
    pub(crate) split: f64,
    pub(crate) mirror: f64,
    pub(crate) generation: u64,
    /// The color that was active before the last promote not yet rolled back.
    pub(crate) previous: Option<Color>,
    pub(crate) history: VecDeque<Transition>,
    /// Measuring is on while this is true or `measure_refs` is above zero.
    pub(crate) measure_always: bool,
    pub(crate) measure_refs: u32,
}

impl State {
    fn word(&self) -> Word {
        Word::pack(self.active, threshold(self.split), threshold(self.mirror))
            .with_measure(self.measure_always || self.measure_refs > 0)
    }
}

/// The routing state shared by a router, its clones and its handles.
pub(crate) struct Control {
    word: AtomicU64,
    pub(crate) block: &'static Block,
    state: Mutex<State>,
    pub(crate) unknown_override: AtomicU64,
    pub(crate) canary_fallback: AtomicU64,
    /// Copies requests to the standby at the word's mirror fraction. `None`
    /// only without an executor (no `tokio` feature and no spawner set).
    pub(crate) mirror: Option<Arc<Engine>>,
    /// Compares mirrored copies with the active color's answers, if set.
    pub(crate) judge: Option<Arc<Judge>>,
    /// Per-color outcomes, recorded while measuring is on.
    pub(crate) meter: Meter,
    /// The rollout plan running against this router, if any.
    #[cfg_attr(not(feature = "tokio"), allow(dead_code))]
    pub(crate) plan: Mutex<Option<PlanSlot>>,
    /// Metrics and tracing (empty without those features).
    pub(crate) telemetry: RouterTelemetry,
}

impl Control {
    pub(crate) fn new(
        mirror: Option<Arc<Engine>>,
        judge: Option<Arc<Judge>>,
        meter: Meter,
        measure_always: bool,
        telemetry: RouterTelemetry,
    ) -> Control {
        Control {
            word: AtomicU64::new(Word::pack(Color::Blue, 0, 0).with_measure(measure_always).0),
            block: Block::acquire(),
            state: Mutex::new(State {
                active: Color::Blue,
                split: 0.0,
                mirror: 0.0,
                generation: 0,
                previous: None,
                history: VecDeque::with_capacity(HISTORY),
                measure_always,
                measure_refs: 0,
            }),
            unknown_override: AtomicU64::new(0),
            canary_fallback: AtomicU64::new(0),
            mirror,
            judge,
            meter,
            plan: Mutex::new(None),
            telemetry,
        }
    }

    #[inline]
    pub(crate) fn word(&self) -> Word {
        Word(self.word.load(Ordering::Acquire))
    }

    pub(crate) fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Applies `change` under the lock, bumps the generation, publishes the
    /// word and records the transition.
    pub(crate) fn transition(
        &self,
        kind: TransitionKind,
        change: impl FnOnce(&mut State),
    ) -> Transition {
        let mut st = self.state();
        let from = st.active;
        change(&mut st);
        st.generation += 1;
        self.word.store(st.word().0, Ordering::Release);
        let t = Transition {
            generation: st.generation,
            at: SystemTime::now(),
            kind,
            active: st.active,
            split: st.split,
            mirror: st.mirror,
        };
        if st.history.len() == HISTORY {
            st.history.pop_front();
        }
        st.history.push_back(t);
        self.telemetry.transition(&t, from);
        t
    }
}

#[cfg(feature = "tokio")]
impl Control {
    /// Turns measuring on until the returned guard is dropped.
    pub(crate) fn measuring(self: &Arc<Self>) -> MeasureGuard {
        let mut st = self.state();
        st.measure_refs += 1;
        self.word.store(st.word().0, Ordering::Release);
        MeasureGuard {
            control: Arc::downgrade(self),
        }
    }
}

/// Keeps measuring on; see [`Control::measuring`]. Does not keep the router
/// alive.
#[cfg(feature = "tokio")]
pub(crate) struct MeasureGuard {
    control: Weak<Control>,
}

#[cfg(feature = "tokio")]
impl Drop for MeasureGuard {
    fn drop(&mut self) {
        if let Some(control) = self.control.upgrade() {
            let mut st = control.state();
            st.measure_refs -= 1;
            control.word.store(st.word().0, Ordering::Release);
        }
    }
}

#[cfg(feature = "tokio")]
impl std::fmt::Debug for MeasureGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MeasureGuard").finish_non_exhaustive()
    }
}

impl Drop for Control {
    fn drop(&mut self) {
        self.block.release();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn word_round_trips() {
        for active in Color::ALL {
            for split in [0, 1, SCALE / 3, SCALE - 1, SCALE] {
                for mirror in [0, 7, SCALE] {
                    for measure in [false, true] {
                        let w = Word::pack(active, split, mirror).with_measure(measure);
                        assert_eq!(
                            (w.active(), w.split(), w.mirror(), w.measure()),
                            (active, split, mirror, measure)
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn thresholds_cover_the_ends() {
        assert_eq!(threshold(0.0), 0);
        assert_eq!(threshold(1.0), SCALE);
        let w = Word::pack(Color::Blue, threshold(1.0), 0);
        assert_eq!(w.color_for(SCALE - 1), Color::Green);
        assert!((0..1000).all(|_| w.pick() == Color::Green));
        let w = Word::pack(Color::Green, 0, 0);
        assert!((0..1000).all(|_| w.pick() == Color::Green));
        assert!((0..1000).all(|_| random_bucket() < SCALE));
    }
}
