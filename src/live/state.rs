//! The live samples: one [`Drift`] per pair of versions (the active color's
//! and the standby's), the last few pairs kept.

use std::collections::VecDeque;
use std::sync::Mutex;

use crate::control::ColorVersion;
use crate::drift::{Drift, DriftSettings, FieldDrift};

/// Pairs of versions kept (the current one and the ones before it).
pub(super) const MAX_PAIRS: usize = 8;

/// The drift between the live answers of the two colors, for one pair of
/// versions: the active color's answers on the primary side, the standby's
/// (a canary's) on the shadow side.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct LiveDriftReport {
    /// The active (stable) color and its version: the primary side.
    pub active: ColorVersion,
    /// The other color and its version (the canary): the shadow side.
    pub standby: ColorVersion,
    /// Sampled answers of the active color counted.
    pub active_answers: u64,
    /// Sampled answers of the standby color counted.
    pub standby_answers: u64,
    /// Sampled answers left out: a body over the capture cap.
    pub over_cap: u64,
    /// Each configured field's drift between the two colors' answers.
    pub fields: Vec<FieldDrift>,
}

struct Pair {
    active: ColorVersion,
    standby: ColorVersion,
    drift: Drift,
    active_answers: u64,
    standby_answers: u64,
    over_cap: u64,
}

impl Pair {
    fn report(&self) -> LiveDriftReport {
        LiveDriftReport {
            active: self.active.clone(),
            standby: self.standby.clone(),
            active_answers: self.active_answers,
            standby_answers: self.standby_answers,
            over_cap: self.over_cap,
            fields: self.drift.report(),
        }
    }
}

/// One sampled answer, as it ended.
pub(super) enum Answer<'a> {
    /// The whole body, within the cap.
    Body(&'a [u8]),
    /// Over the cap: not parsed.
    OverCap,
}

/// Shared by the layer's services and attached to the router's control.
pub(crate) struct LiveState {
    settings: DriftSettings,
    pairs: Mutex<VecDeque<Pair>>,
}

impl LiveState {
    pub(super) fn new(settings: DriftSettings) -> Self {
        LiveState {
            settings,
            pairs: Mutex::new(VecDeque::new()),
        }
    }

    /// Counts an answer `served` gave, when `active`/`standby` are the
    /// versions in the colors now (an answer of a version no longer in its
    /// color is left out).
    pub(super) fn observe(
        &self,
        served: &ColorVersion,
        active: ColorVersion,
        standby: ColorVersion,
        answer: Answer<'_>,
    ) {
        let on_active = *served == active;
        if !on_active && *served != standby {
            return;
        }
        let mut pairs = self.pairs.lock().unwrap_or_else(|e| e.into_inner());
        let current = pairs
            .iter()
            .position(|p| p.active == active && p.standby == standby);
        let pair = match current {
            Some(i) => &mut pairs[i],
            None => {
                if pairs.len() == MAX_PAIRS {
                    pairs.pop_front();
                }
                pairs.push_back(Pair {
                    active,
                    standby,
                    drift: Drift::new(&self.settings),
                    active_answers: 0,
                    standby_answers: 0,
                    over_cap: 0,
                });
                pairs.back_mut().expect("just pushed")
            }
        };
        match answer {
            Answer::OverCap => pair.over_cap += 1,
            Answer::Body(body) if on_active => {
                pair.active_answers += 1;
                pair.drift.observe_primary(body);
            }
            Answer::Body(body) => {
                pair.standby_answers += 1;
                pair.drift.observe_shadow(body);
            }
        }
    }

    /// The report of the pair `active`/`standby`, if it has answers.
    pub(crate) fn report(
        &self,
        active: &ColorVersion,
        standby: &ColorVersion,
    ) -> Option<LiveDriftReport> {
        let pairs = self.pairs.lock().unwrap_or_else(|e| e.into_inner());
        pairs
            .iter()
            .find(|p| p.active == *active && p.standby == *standby)
            .map(Pair::report)
    }

    /// Every kept pair, oldest first.
    pub(super) fn reports(&self) -> Vec<LiveDriftReport> {
        let pairs = self.pairs.lock().unwrap_or_else(|e| e.into_inner());
        pairs.iter().map(Pair::report).collect()
    }
}
