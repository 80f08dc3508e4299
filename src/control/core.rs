//! [`Control`]: the routing word, the state behind it, and what attaches to it.

use std::any::Any;
use std::collections::VecDeque;
use std::sync::{Arc, OnceLock, Weak};
use std::task::Waker;

use super::counters::Block;
use super::meter::Classifier;
use super::probe::set_classifier;
use super::state::{Decision, Op, State, Target, Transition, TransitionKind, HISTORY};
use super::sync::{fence, lock, AtomicU64, Mutex, MutexGuard, Ordering};
use super::version::{next_version_id, Live, Readiness, Tags, VersionLabel};
use super::word::Word;
use super::{Change, ControlError};
use crate::Color;

/// Told of every transition, under the state lock (so what it publishes ends
/// at the last state). Telemetry attaches through it.
pub(crate) trait Observer: Send + Sync {
    fn transition(&self, t: &Transition);
    /// A version was loaded into `color` (at build or by a deploy); returns
    /// what to keep for it in its [`Tags`] (metric handles).
    fn loaded(
        &self,
        color: Color,
        version: &VersionLabel,
        replaced: Option<&VersionLabel>,
    ) -> Option<Arc<dyn Any + Send + Sync>> {
        let _ = (color, version, replaced);
        None
    }
}

/// Checks, off the request path, whether a color's current version is ready:
/// the typed slots attach through it.
pub(crate) trait Prober: Send + Sync {
    /// Polls a clone of the service of version `id` in `color` once; `None`
    /// when that cannot be done (no request type known yet, or the slot holds
    /// another version now).
    fn probe(&self, color: Color, id: u64) -> Option<Readiness>;
}

/// The routing state shared by a router, its clones and its handles.
pub(crate) struct Control {
    word: AtomicU64,
    state: Mutex<State>,
    /// Router clones whose `poll_ready` is pending: woken by every
    /// transition, so a waiting request picks again.
    parked: Mutex<Vec<(u64, Waker)>>,
    pub(crate) unknown_override: std::sync::atomic::AtomicU64,
    pub(crate) fallbacks: std::sync::atomic::AtomicU64,
    observer: OnceLock<Arc<dyn Observer>>,
    prober: OnceLock<Weak<dyn Prober>>,
    /// Optional concerns (the mirror engine, the comparison, the plan), each
    /// under its type; see [`Control::attach`].
    attachments: std::sync::Mutex<Vec<Arc<dyn Any + Send + Sync>>>,
    /// The router's failure classifier, installed in every version it loads.
    classify: Option<Arc<Classifier>>,
    served_by: Option<http::HeaderName>,
}

/// What a new router's state starts from.
pub(crate) struct Initial {
    pub(crate) observer: Option<Arc<dyn Observer>>,
    /// The router's served-by header, named in every version's tags.
    pub(crate) served_by: Option<http::HeaderName>,
    pub(crate) blue: VersionLabel,
    pub(crate) green: VersionLabel,
    pub(crate) measure_always: bool,
    pub(crate) can_mirror: bool,
    pub(crate) classify: Option<Arc<Classifier>>,
}

impl Control {
    pub(crate) fn new(initial: Initial) -> Control {
        let observer = initial.observer.clone();
        let load = |color: Color, label: VersionLabel| {
            let block = Block::acquire();
            set_classifier(block, initial.classify.clone());
            let telemetry = observer
                .as_ref()
                .and_then(|o| o.loaded(color, &label, None));
            let tags = Tags::new(color, &label, initial.served_by.as_ref(), telemetry);
            Live::new(label, next_version_id(), block, tags)
        };
        let state = State {
            active: Color::Blue,
            split: 0.0,
            mirror: 0.0,
            generation: 0,
            epoch: 0,
            previous: None,
            versions: [
                load(Color::Blue, initial.blue),
                load(Color::Green, initial.green),
            ],
            retiring: Vec::new(),
            history: VecDeque::with_capacity(HISTORY),
            measure_always: initial.measure_always,
            measure_refs: 0,
            plan: None,
            can_mirror: initial.can_mirror,
        };
        let cell = OnceLock::new();
        if let Some(o) = initial.observer {
            let _ = cell.set(o);
        }
        Control {
            word: AtomicU64::new(state.word().0),
            state: Mutex::new(state),
            parked: Mutex::new(Vec::new()),
            unknown_override: Default::default(),
            fallbacks: Default::default(),
            observer: cell,
            prober: OnceLock::new(),
            attachments: std::sync::Mutex::new(Vec::new()),
            classify: initial.classify,
            served_by: initial.served_by,
        }
    }

    #[inline]
    pub(crate) fn word(&self) -> Word {
        Word(self.word.load(Ordering::Acquire))
    }

    pub(crate) fn state(&self) -> MutexGuard<'_, State> {
        lock(&self.state)
    }

    /// Publishes the word of `st` (called under the state lock).
    fn publish(&self, st: &State) {
        self.word.store(st.word().0, Ordering::Release);
        fence(Ordering::SeqCst);
    }

    // === attachments ===

    pub(crate) fn set_prober(&self, prober: Weak<dyn Prober>) {
        let _ = self.prober.set(prober);
    }

    /// Attaches `value` under its type (one per type; a second is ignored).
    pub(crate) fn attach(&self, value: Arc<dyn Any + Send + Sync>) {
        let mut all = self.attachments.lock().unwrap_or_else(|e| e.into_inner());
        let id = (*value).type_id();
        if !all.iter().any(|a| (**a).type_id() == id) {
            all.push(value);
        }
    }

    /// What was attached under type `T`.
    pub(crate) fn attached<T: Any + Send + Sync>(&self) -> Option<Arc<T>> {
        let all = self.attachments.lock().unwrap_or_else(|e| e.into_inner());
        all.iter().find_map(|a| a.clone().downcast::<T>().ok())
    }

    /// Replaces what is attached under type `T`.
    pub(crate) fn replace<T: Any + Send + Sync>(&self, value: Arc<T>) {
        let mut all = self.attachments.lock().unwrap_or_else(|e| e.into_inner());
        all.retain(|a| !a.is::<T>());
        all.push(value);
    }

    fn notify(&self, t: &Transition) {
        if let Some(o) = self.observer.get() {
            o.transition(t);
        }
    }

    // === control calls ===

    /// Runs `op` (see [`State::apply`]): publishes the new word, records the
    /// transition and wakes waiting requests when it changes something.
    pub(crate) fn apply(&self, op: Op, expect: Option<u64>) -> Result<Change, ControlError> {
        if let Op::Promote { to, force: false } = &op {
            self.probe_target(to.as_ref());
        }
        let mut st = self.state();
        let from = st.served(st.active);
        match st.apply(&op, expect)? {
            Decision::Unchanged => Ok(Change::Unchanged {
                generation: st.generation,
            }),
            Decision::Apply => {
                let t = st.record(op.kind(), from, None);
                self.publish(&st);
                self.notify(&t);
                drop(st);
                self.wake_parked();
                Ok(Change::Applied(t))
            }
        }
    }

    /// Refreshes the readiness of the color a promote would go to, by
    /// polling a clone of its service (outside the state lock: user code).
    fn probe_target(&self, to: Option<&Target>) {
        let Some(prober) = self.prober.get().and_then(Weak::upgrade) else {
            return;
        };
        let (color, id) = {
            let st = self.state();
            let color = match to {
                None => st.active.other(),
                Some(Target::Color(c)) => *c,
                Some(Target::Version(v)) => match st.color_of(v.as_str()) {
                    Some(c) => c,
                    None => return,
                },
            };
            (color, st.version(color).id)
        };
        if let Some(readiness) = prober.probe(color, id) {
            self.observe(color, id, readiness);
        }
    }

    /// Records what a router (or a probe) saw of version `id` in `color`.
    /// A failure sticks until a new version is deployed.
    pub(crate) fn observe(&self, color: Color, id: u64, readiness: Readiness) {
        let mut st = self.state();
        let live = st.version_mut(color);
        if live.id == id && live.readiness != readiness && live.readiness != Readiness::Failed {
            live.readiness = readiness;
        }
    }

    /// Turns measuring on until the returned guard is dropped.
    pub(crate) fn measuring(self: &Arc<Self>) -> MeasureGuard {
        let mut st = self.state();
        st.measure_refs += 1;
        self.publish(&st);
        MeasureGuard {
            control: Arc::downgrade(self),
        }
    }

    // === plans ===

    /// Marks the router as driven by plan `id`; false when another plan
    /// drives it. Deploys are refused while a plan drives the router.
    pub(crate) fn lock_plan(&self, id: u64) -> bool {
        let mut st = self.state();
        match st.plan {
            Some(other) if other != id => false,
            _ => {
                st.plan = Some(id);
                true
            }
        }
    }

    /// Plan `id` has finished.
    pub(crate) fn unlock_plan(&self, id: u64) {
        let mut st = self.state();
        if st.plan == Some(id) {
            st.plan = None;
        }
    }

    /// Whether the router can mirror to the standby.
    pub(crate) fn can_mirror(&self) -> bool {
        self.state().can_mirror
    }

    // === deploy ===

    /// Commits a deploy of `label` into `color` under the state lock: checks
    /// the preconditions again (the state may have moved while the new
    /// version was made ready), lets `swap` install the typed service (it is
    /// given the new epoch and the version's tags, and returns the replaced
    /// service value), then
    /// publishes the new word.
    #[cfg(feature = "tokio")]
    pub(crate) fn commit_deploy(
        &self,
        color: Color,
        label: VersionLabel,
        block: &'static Block,
        id: u64,
        terms: Terms,
        swap: impl FnOnce(u32, Arc<Tags>) -> Option<Box<dyn Any + Send>>,
    ) -> Result<Deployment, super::DeployError> {
        let mut st = self.state();
        check_deploy(&st, color, &label, terms)?;
        let from = st.served(st.active);
        st.epoch = st.epoch.wrapping_add(1);
        let replaced = st.version(color).label.clone();
        let telemetry = self
            .observer
            .get()
            .and_then(|o| o.loaded(color, &label, Some(&replaced)));
        let tags = Tags::new(color, &label, self.served_by.as_ref(), telemetry);
        let payload = swap(st.epoch, tags.clone());
        set_classifier(block, self.classify.clone());
        let mut live = Live::new(label.clone(), id, block, tags);
        live.readiness = Readiness::Ready;
        let old = std::mem::replace(st.version_mut(color), live);
        let retiring = old.retire(color, payload);
        st.retiring.retain(|r| !r.gone());
        st.retiring.push(retiring.clone());
        let t = st.record(TransitionKind::Deploy, from, Some(replaced.clone()));
        self.publish(&st);
        self.notify(&t);
        drop(st);
        self.wake_parked();
        Ok(Deployment {
            transition: t,
            retired: super::Retired::new(retiring),
        })
    }

    /// The preconditions of a deploy into `color`, checked before the new
    /// version is made ready (and again at the commit).
    #[cfg(feature = "tokio")]
    pub(crate) fn check_deploy(
        &self,
        color: Option<Color>,
        label: &VersionLabel,
        terms: Terms,
    ) -> Result<Color, super::DeployError> {
        let st = self.state();
        let color = color.unwrap_or(st.active.other());
        check_deploy(&st, color, label, terms)?;
        Ok(color)
    }

    // === waiting requests ===

    /// Registers a router clone whose `poll_ready` is pending.
    pub(crate) fn park(&self, id: u64, waker: &Waker) {
        let mut parked = lock(&self.parked);
        match parked.iter_mut().find(|(i, _)| *i == id) {
            Some((_, w)) => w.clone_from(waker),
            None => parked.push((id, waker.clone())),
        }
    }

    pub(crate) fn unpark(&self, id: u64) {
        let mut parked = lock(&self.parked);
        parked.retain(|(i, _)| *i != id);
    }

    fn wake_parked(&self) {
        let woken: Vec<Waker> = {
            let mut parked = lock(&self.parked);
            parked.drain(..).map(|(_, w)| w).collect()
        };
        for w in woken {
            w.wake();
        }
    }

    /// The counters of the version `color` holds now.
    pub(crate) fn block(&self, color: Color) -> &'static Block {
        self.state().version(color).block
    }
}

/// What a deploy requires of the state besides its color and label.
#[cfg(feature = "tokio")]
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Terms {
    /// The generation the state must be at.
    pub(crate) expect: Option<u64>,
    /// The deploy may replace the active color (a store replica's loader
    /// before the replica is ready; see
    /// [`Deploy::into_unserved_active`](super::Deploy::into_unserved_active)):
    /// the canary check then does not apply, as the color is not the
    /// standby.
    pub(crate) unserved_active: bool,
}

#[cfg(feature = "tokio")]
fn check_deploy(
    st: &State,
    color: Color,
    label: &VersionLabel,
    terms: Terms,
) -> Result<(), super::DeployError> {
    use super::DeployError;
    let Terms {
        expect,
        unserved_active,
    } = terms;
    // A running plan owns the state (it also sets the split): named first.
    if st.plan.is_some() {
        return Err(DeployError::PlanRunning);
    }
    if color == st.active && !unserved_active {
        return Err(DeployError::ActiveColor {
            color,
            version: st.version(color).label.clone(),
        });
    }
    if color != st.active && super::word::threshold(st.split) > 0 {
        return Err(DeployError::CanaryRunning { split: st.split });
    }
    if st.version(st.active).label == *label {
        return Err(DeployError::DuplicateVersion {
            version: label.clone(),
        });
    }
    if let Some(expected) = expect {
        if expected != st.generation {
            return Err(DeployError::Conflict {
                expected,
                actual: st.generation,
            });
        }
    }
    Ok(())
}

/// What [`Control::commit_deploy`] returns.
#[cfg(feature = "tokio")]
pub(crate) struct Deployment {
    pub(crate) transition: Transition,
    pub(crate) retired: super::Retired,
}

impl Drop for Control {
    fn drop(&mut self) {
        // Nothing can start on the current versions any more but what still
        // holds them (the slots, router clones): retire them, so their
        // counters go back to the pool once those are gone.
        let st = lock(&self.state);
        for live in &st.versions {
            live.block.retire(None);
        }
    }
}

/// Keeps measuring on; see [`Control::measuring`]. Does not keep the router
/// alive.
pub(crate) struct MeasureGuard {
    control: Weak<Control>,
}

impl Drop for MeasureGuard {
    fn drop(&mut self) {
        if let Some(control) = self.control.upgrade() {
            let mut st = control.state();
            st.measure_refs -= 1;
            control.publish(&st);
        }
    }
}

impl std::fmt::Debug for MeasureGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MeasureGuard").finish_non_exhaustive()
    }
}

impl std::fmt::Debug for Control {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Control")
            .field("word", &self.word())
            .finish_non_exhaustive()
    }
}
