//! The plan's state machine and the task that ticks it.
//!
//! Every step happens under one mutex (the runner's): the task's periodic
//! evaluation and the manual controls (pause, resume, abort, skip) both take
//! it, so a manual abort has taken effect when `abort` returns.

use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use tokio::sync::{broadcast, watch};
use tokio::time::{Instant, MissedTickBehavior};

use super::error::PlanError;
use super::gate::{CheckInput, Gate, GateKind};
use super::status::{
    AbortReason, GateStatus, GateVerdict, Phase, PlanEvent, PlanOutcome, PlanRecord, PlanState,
    PlanStatus,
};
use super::{MirrorUntil, RolloutPlan};
use crate::control::{Change, Control, ControlError, MeasureGuard, Measurement, Measurements};
use crate::shadow::{DiffKind, Judge, StructureChange};
use crate::RolloutHandle;

/// How many events [`PlanStatus::history`] keeps.
const HISTORY: usize = 256;

/// The shared state of one plan: held by its task, every [`PlanRun`], and
/// the router's control (for the status). Holds the router only weakly.
pub(crate) struct Shared {
    /// Tells this plan apart from others on the same router.
    id: u64,
    control: Weak<Control>,
    plan: RolloutPlan,
    started: Instant,
    runner: Mutex<Runner>,
    events: broadcast::Sender<PlanRecord>,
    outcome: watch::Sender<Option<PlanOutcome>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum At {
    Mirror,
    Step(usize),
    Post,
    Done,
}

struct Runner {
    status: PlanStatus,
    at: At,
    last_tick: Instant,
    /// Measurements and shadow counts when the phase began.
    window_start: Measurements,
    shadow_start: ShadowCounts,
    plan_start: Measurements,
    /// The stable color's measurements from the plan's start to the promote:
    /// the latency baseline after it.
    baseline: Option<Measurement>,
    /// The generation of the plan's own last transition.
    generation: u64,
    measure: Option<MeasureGuard>,
}

/// A running plan: watch it and steer it. Cheap to clone. Dropping it does
/// not stop the plan (use [`abort`](Self::abort)); the plan holds the router
/// only weakly and aborts if the router is dropped.
#[derive(Clone)]
pub struct PlanRun {
    shared: Arc<Shared>,
}

pub(super) fn start(plan: RolloutPlan, handle: &RolloutHandle) -> Result<PlanRun, PlanError> {
    let control = &handle.control;
    let runtime = tokio::runtime::Handle::try_current().map_err(|_| PlanError::NoRuntime)?;
    check_router(&plan, control)?;
    static IDS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    let id = IDS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    if !control.lock_plan(id) {
        return Err(PlanError::AlreadyRunning);
    }
    let stable = handle.active();
    let candidate = stable.other();
    let now = Instant::now();
    let measure = control.measuring();
    let snapshot = handle.measurements();
    let generation = handle.generation();
    let (events, _) = broadcast::channel(1024);
    let (outcome, _) = watch::channel(None);
    let shared = Arc::new(Shared {
        id,
        control: Arc::downgrade(control),
        plan,
        started: now,
        runner: Mutex::new(Runner {
            status: PlanStatus {
                state: PlanState::Running,
                phase: Phase::Done,
                stable,
                candidate,
                gates: Vec::new(),
                elapsed: Duration::ZERO,
                baked: Duration::ZERO,
                outcome: None,
                history: Vec::new(),
            },
            at: At::Done,
            last_tick: now,
            window_start: snapshot.clone(),
            shadow_start: ShadowCounts::default(),
            plan_start: snapshot,
            baseline: None,
            generation,
            measure: Some(measure),
        }),
        events,
        outcome,
    });
    {
        let mut r = shared.lock();
        shared.emit(&mut r, PlanEvent::Started { stable, candidate });
        let first = if shared.plan.mirror.is_some() {
            At::Mirror
        } else if shared.plan.steps.is_empty() {
            At::Post
        } else {
            At::Step(0)
        };
        shared.enter(&mut r, control, first);
    }
    control.replace(shared.clone());
    let task = shared.clone();
    runtime.spawn(async move {
        let mut every = tokio::time::interval(task.plan.interval);
        every.set_missed_tick_behavior(MissedTickBehavior::Delay);
        every.tick().await; // the first tick is immediate
        loop {
            every.tick().await;
            if !task.tick() {
                break;
            }
        }
    });
    Ok(PlanRun { shared })
}

/// What [`start`] checks of the router before taking it.
pub(crate) fn check_router(plan: &RolloutPlan, control: &Control) -> Result<(), PlanError> {
    let compares = plan.gates.iter().any(|g| g.kind.mirror_only())
        || matches!(
            plan.mirror,
            Some(super::MirrorPhase {
                until: MirrorUntil::Compared(_),
                ..
            })
        );
    if compares && control.attached::<Judge>().is_none() {
        return Err(PlanError::NoComparison);
    }
    if plan.mirror.is_some() && !control.can_mirror() {
        return Err(PlanError::NoMirror);
    }
    #[cfg(feature = "drift")]
    if plan
        .gates
        .iter()
        .any(|g| matches!(g.kind, GateKind::Drift { live: true, .. }))
        && control.attached::<crate::live::LiveState>().is_none()
    {
        return Err(PlanError::NoLiveDrift);
    }
    Ok(())
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Runner> {
        self.runner.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn status(&self) -> PlanStatus {
        let r = self.lock();
        let mut status = r.status.clone();
        if !status.state.is_finished() {
            status.elapsed = Instant::now() - self.started;
        }
        status
    }

    fn emit(&self, r: &mut Runner, event: PlanEvent) {
        let record = PlanRecord {
            at: Instant::now() - self.started,
            event,
        };
        if r.status.history.len() == HISTORY {
            r.status.history.remove(0);
        }
        r.status.history.push(record.clone());
        // No subscriber is fine.
        let _ = self.events.send(record);
    }

    /// One evaluation; false once the plan has finished.
    fn tick(&self) -> bool {
        let mut guard = self.lock();
        let r = &mut *guard;
        if r.status.state.is_finished() {
            return false;
        }
        let Some(control) = self.control.upgrade() else {
            r.measure = None;
            self.finish(
                r,
                PlanState::Aborted,
                PlanOutcome::Aborted(AbortReason::RouterDropped),
                None,
            );
            return false;
        };
        if self.superseded(r, &control) {
            return false;
        }
        let now = Instant::now();
        if r.status.state != PlanState::Paused {
            r.status.baked += now - r.last_tick;
        }
        r.last_tick = now;
        r.status.elapsed = now - self.started;

        let handle = RolloutHandle::new(control.clone());
        let measured = handle.measurements();
        let window = measured.since(&r.window_start);
        let now = shadow_counts(&control);
        let (matched, mismatched) = (
            now.matched.saturating_sub(r.shadow_start.matched),
            now.mismatched.saturating_sub(r.shadow_start.mismatched),
        );
        #[cfg(feature = "drift")]
        let live_drift = control
            .attached::<crate::live::LiveState>()
            .and_then(|state| crate::live::current(&handle, &state))
            .map(|report| report.fields)
            .unwrap_or_default();
        let input = CheckInput {
            phase: &r.status.phase,
            candidate: r.status.candidate,
            stable: r.status.stable,
            window: &window,
            matched,
            mismatched,
            schema_breaks: now
                .schema_breaks
                .saturating_sub(r.shadow_start.schema_breaks),
            reshaped: now.reshaped.saturating_sub(r.shadow_start.reshaped),
            structure: &now.structure,
            baked: r.status.baked,
            #[cfg(feature = "drift")]
            drift: &now.drift,
            #[cfg(feature = "drift")]
            live_drift: &live_drift,
        };
        // The stable color's latency baseline when its window is too thin
        // (a 100% step, after the promote): everything it served since the
        // plan started, up to the promote.
        let baseline = match &r.baseline {
            Some(frozen) => frozen.clone(),
            None => measured.since(&r.plan_start).color(r.status.stable).clone(),
        };
        let verdicts: Vec<GateStatus> = self
            .plan
            .gates
            .iter()
            .filter_map(|g| {
                evaluate(g, &input, &baseline, now.last_break.as_deref()).map(|verdict| {
                    GateStatus {
                        gate: g.name.clone(),
                        threshold: g.threshold(),
                        min_sample: g.min_sample,
                        verdict,
                    }
                })
            })
            .collect();
        for v in &verdicts {
            // An event when the verdict turns (pass, fail, inconclusive),
            // not at every new figure.
            let changed = !r
                .status
                .gates
                .iter()
                .any(|old| old.gate == v.gate && old.verdict.as_str() == v.verdict.as_str());
            if changed {
                self.emit(
                    r,
                    PlanEvent::Gate {
                        gate: v.gate.clone(),
                        verdict: v.verdict.clone(),
                    },
                );
            }
        }
        r.status.gates = verdicts;
        let failed = r.status.gates.iter().find_map(|g| match &g.verdict {
            GateVerdict::Fail(detail) => Some(AbortReason::Gate {
                gate: g.gate.clone(),
                detail: detail.clone(),
            }),
            _ => None,
        });
        if let Some(reason) = failed {
            self.abort(r, &control, reason);
            return false;
        }
        if r.status.state == PlanState::Paused {
            return true;
        }
        let over = match r.at {
            At::Mirror => match self.plan.mirror.map(|m| m.until) {
                Some(MirrorUntil::Elapsed(d)) => r.status.baked >= d,
                Some(MirrorUntil::Compared(n)) => matched + mismatched >= n,
                None => true,
            },
            At::Step(i) => r.status.baked >= self.plan.steps[i].1,
            At::Post => r.status.baked >= self.plan.post_bake,
            At::Done => false,
        };
        if !over {
            return true;
        }
        let holding: Vec<String> = r
            .status
            .gates
            .iter()
            .filter(|g| !g.verdict.is_pass())
            .map(|g| g.gate.clone())
            .collect();
        if holding.is_empty() {
            r.status.state = PlanState::Running;
            let next = self.next(r.at);
            self.enter(r, &control, next);
        } else if r.status.state != PlanState::Holding {
            r.status.state = PlanState::Holding;
            self.emit(r, PlanEvent::Holding { gates: holding });
        }
        !r.status.state.is_finished()
    }

    fn next(&self, at: At) -> At {
        match at {
            At::Mirror if !self.plan.steps.is_empty() => At::Step(0),
            At::Step(i) if i + 1 < self.plan.steps.len() => At::Step(i + 1),
            At::Mirror | At::Step(_) => At::Post,
            At::Post | At::Done => At::Done,
        }
    }

    /// Makes `at`'s traffic change and starts its window.
    fn enter(&self, r: &mut Runner, control: &Arc<Control>, at: At) {
        let handle = RolloutHandle::new(control.clone());
        let leaving = r.at;
        r.at = at;
        if leaving == At::Mirror {
            // Copies stop before users move.
            r.generation = mirror(&handle, 0.0, r.generation);
        }
        let phase = match at {
            At::Mirror => {
                let fraction = self.plan.mirror.map_or(0.0, |m| m.fraction);
                r.generation = mirror(&handle, fraction, r.generation);
                Phase::Mirror { fraction }
            }
            At::Step(i) => {
                let split = self.plan.steps[i].0;
                r.generation = handle
                    .set_split(split)
                    .map(|c| c.generation())
                    .unwrap_or(r.generation);
                Phase::Canary {
                    step: i + 1,
                    steps: self.plan.steps.len(),
                    split,
                }
            }
            At::Post => {
                let measured = handle.measurements();
                let stable = r.status.stable;
                let candidate = r.status.candidate;
                match handle.promote_to(candidate) {
                    Ok(change) => r.generation = change.generation(),
                    Err(ControlError::NotReady { .. }) => {
                        // The candidate is not ready: hold where we are and
                        // try again at the next evaluation.
                        r.at = leaving;
                        if r.status.state != PlanState::Holding {
                            r.status.state = PlanState::Holding;
                            self.emit(
                                r,
                                PlanEvent::Holding {
                                    gates: vec!["candidate ready".to_owned()],
                                },
                            );
                        }
                        return;
                    }
                    Err(_) => {}
                }
                r.baseline = Some(measured.since(&r.plan_start).color(stable).clone());
                self.emit(r, PlanEvent::Promoted);
                Phase::PostPromotion
            }
            At::Done => {
                self.finish(r, PlanState::Promoted, PlanOutcome::Promoted, None);
                return;
            }
        };
        r.window_start = handle.measurements();
        r.shadow_start = shadow_counts(control);
        r.status.baked = Duration::ZERO;
        r.last_tick = Instant::now();
        r.status.gates.clear();
        r.status.phase = phase.clone();
        self.emit(r, PlanEvent::Phase(phase));
        if at == At::Post && self.plan.post_bake.is_zero() {
            self.enter(r, control, At::Done);
        }
    }

    fn abort(&self, r: &mut Runner, control: &Arc<Control>, reason: AbortReason) {
        let _: Change = RolloutHandle::new(control.clone()).abort_to(r.status.stable);
        self.finish(
            r,
            PlanState::Aborted,
            PlanOutcome::Aborted(reason.clone()),
            Some(PlanEvent::Aborted(reason)),
        );
    }

    fn finish(
        &self,
        r: &mut Runner,
        state: PlanState,
        outcome: PlanOutcome,
        event: Option<PlanEvent>,
    ) {
        r.at = At::Done;
        r.status.state = state;
        r.status.phase = Phase::Done;
        r.status.elapsed = Instant::now() - self.started;
        r.status.outcome = Some(outcome.clone());
        r.measure = None;
        if let Some(control) = self.control.upgrade() {
            control.unlock_plan(self.id);
        }
        let event = event.unwrap_or(match &outcome {
            PlanOutcome::Promoted => PlanEvent::Completed,
            PlanOutcome::Aborted(reason) => PlanEvent::Aborted(reason.clone()),
            PlanOutcome::Superseded => PlanEvent::Superseded { generation: 0 },
        });
        self.emit(r, event);
        self.outcome.send_replace(Some(outcome));
    }

    /// Stops the plan if someone else changed the rollout state.
    fn superseded(&self, r: &mut Runner, control: &Control) -> bool {
        let generation = control.state().generation;
        if generation == r.generation {
            return false;
        }
        self.finish(
            r,
            PlanState::Superseded,
            PlanOutcome::Superseded,
            Some(PlanEvent::Superseded { generation }),
        );
        true
    }

    /// Runs `f` on a live plan; false when it has finished (or just was
    /// superseded).
    fn manual(&self, f: impl FnOnce(&Shared, &mut Runner, &Arc<Control>)) -> bool {
        let mut r = self.lock();
        if r.status.state.is_finished() {
            return false;
        }
        let Some(control) = self.control.upgrade() else {
            return false;
        };
        if self.superseded(&mut r, &control) {
            return false;
        }
        f(self, &mut r, &control);
        true
    }
}

fn mirror(handle: &RolloutHandle, fraction: f64, generation: u64) -> u64 {
    // Checked when the plan started: the router can mirror, the fraction is
    // valid.
    handle
        .mirror_standby(fraction)
        .map(|c| c.generation())
        .unwrap_or(generation)
}

/// The comparison's counts, at a phase's start or now.
#[derive(Debug, Clone, Default)]
pub(crate) struct ShadowCounts {
    pub(crate) matched: u64,
    pub(crate) mismatched: u64,
    pub(crate) schema_breaks: u64,
    pub(crate) reshaped: u64,
    /// The pair's structure changes, most frequent first.
    pub(crate) structure: Vec<StructureChange>,
    /// The request and statuses of the last schema break.
    pub(crate) last_break: Option<String>,
    #[cfg(feature = "drift")]
    pub(crate) drift: Vec<crate::drift::FieldDrift>,
}

pub(crate) fn shadow_counts(control: &Control) -> ShadowCounts {
    // The pair compared now (the plan's candidate against the stable
    // version); a new pair starts from zero.
    let report = control
        .attached::<Judge>()
        .and_then(|j| j.pairs.current(control.word()))
        .map(|p| p.report.snapshot())
        .unwrap_or_default();
    let last_break = report
        .exemplars
        .iter()
        .rev()
        .find(|e| e.diffs.first().is_some_and(|d| d.path == "status"))
        .map(|e| {
            // The rejecting side's answer usually names what it missed.
            let rejected = if e.shadow.status.is_client_error() {
                &e.shadow.body
            } else {
                &e.primary.body
            };
            let said: String = String::from_utf8_lossy(rejected)
                .chars()
                .take(160)
                .collect();
            format!(
                "{} {}: {} on the stable version, {} on the candidate ({said})",
                e.method, e.uri, e.primary.status, e.shadow.status
            )
        });
    ShadowCounts {
        matched: report.matched,
        mismatched: report.mismatched,
        schema_breaks: report.schema_breaks,
        reshaped: report.reshaped,
        structure: report.structure_changes,
        last_break,
        #[cfg(feature = "drift")]
        drift: report.drift,
    }
}

/// A gate's verdict in the current phase; `None` when it does not apply.
/// `last_break` describes the last schema break, for the schema gate's verdict.
pub(crate) fn evaluate(
    gate: &Gate,
    input: &CheckInput<'_>,
    baseline: &Measurement,
    last_break: Option<&str>,
) -> Option<GateVerdict> {
    let mirror = matches!(input.phase, Phase::Mirror { .. });
    let live = matches!(input.phase, Phase::Canary { .. } | Phase::PostPromotion);
    let cand = input.window.color(input.candidate);
    let need = gate.min_sample;
    let short =
        |have: u64, what: &str| GateVerdict::Inconclusive(format!("{have} of {need} {what}"));
    let compared = input.matched + input.mismatched;
    let judge = |fails: bool, figures: String| {
        if fails {
            GateVerdict::Fail(figures)
        } else {
            GateVerdict::Pass(figures)
        }
    };
    let verdict = match &gate.kind {
        GateKind::ErrorRate { max } if live => {
            if cand.finished < need {
                short(cand.finished, "requests")
            } else {
                let rate = cand.failures as f64 / cand.finished as f64;
                let fails = rate > *max;
                judge(
                    fails,
                    format!(
                        "{} of {} requests failed ({:.2}%, {} {:.2}%)",
                        cand.failures,
                        cand.finished,
                        rate * 100.0,
                        if fails { "above" } else { "at most" },
                        max * 100.0
                    ),
                )
            }
        }
        GateKind::Latency {
            quantile,
            max_ratio,
            slack,
        } if live => {
            let window = input.window.color(input.stable);
            let base = match input.phase {
                Phase::Canary { .. } if window.latency.count() >= need => window,
                _ => baseline,
            };
            let have = cand.latency.count().min(base.latency.count());
            match (
                cand.latency.quantile(*quantile),
                base.latency.quantile(*quantile),
            ) {
                (Some(c), Some(b)) if have >= need => {
                    let fails = c > b.mul_f64(*max_ratio) + *slack;
                    judge(
                        fails,
                        format!(
                            "p{} {c:?} on the candidate, {} {max_ratio:.2} x {b:?} on the stable color",
                            quantile * 100.0,
                            if fails { "above" } else { "within" },
                        ),
                    )
                }
                _ => short(have, "requests on each color"),
            }
        }
        GateKind::Agreement { min } if mirror => {
            if compared < need {
                short(compared, "compared requests")
            } else {
                let rate = input.matched as f64 / compared as f64;
                let fails = rate < *min;
                judge(
                    fails,
                    format!(
                        "{} of {} compared requests agreed ({:.2}%, {} {:.2}%)",
                        input.matched,
                        compared,
                        rate * 100.0,
                        if fails { "below" } else { "at least" },
                        min * 100.0
                    ),
                )
            }
        }
        GateKind::Mismatches { max } if mirror => {
            if compared < need {
                short(compared, "compared requests")
            } else {
                judge(
                    input.mismatched > *max,
                    format!(
                        "{} of {} compared requests differed (at most {max} allowed)",
                        input.mismatched, compared
                    ),
                )
            }
        }
        GateKind::SchemaBreaks { max } if mirror => {
            let answered = compared + input.schema_breaks;
            let breaks = input.schema_breaks + input.reshaped;
            if answered < need {
                short(answered, "requests answered by both")
            } else {
                let mut figures = format!(
                    "{} of {answered} requests accepted by one version and rejected by the other, {} answered in another structure (at most {max} allowed)",
                    input.schema_breaks, input.reshaped
                );
                if breaks > *max {
                    if input.reshaped > 0 {
                        figures.push_str(&format!("; {}", structure_summary(input.structure)));
                    }
                    if let Some(b) = last_break.filter(|_| input.schema_breaks > 0) {
                        figures.push_str(&format!("; last rejected: {b}"));
                    }
                }
                judge(breaks > *max, figures)
            }
        }
        #[cfg(feature = "drift")]
        GateKind::Drift {
            field,
            statistic,
            limit,
            tests,
            live: false,
        } if mirror => drift_verdict(input.drift, field, *statistic, *limit, *tests, need),
        #[cfg(feature = "drift")]
        GateKind::Drift {
            field,
            statistic,
            limit,
            tests,
            live: true,
        } if matches!(input.phase, Phase::Canary { .. }) => {
            drift_verdict(input.live_drift, field, *statistic, *limit, *tests, need)
        }
        GateKind::Check(check) if mirror || live => {
            let have = if mirror { compared } else { cand.finished };
            if have < need {
                short(
                    have,
                    if mirror {
                        "compared requests"
                    } else {
                        "requests"
                    },
                )
            } else {
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| check(input)))
                    .unwrap_or_else(|_| GateVerdict::Fail("the check panicked".into()))
            }
        }
        _ => return None,
    };
    Some(verdict)
}

impl PlanRun {
    pub(crate) fn from_shared(shared: Arc<Shared>) -> PlanRun {
        PlanRun { shared }
    }

    /// A snapshot of the plan.
    pub fn status(&self) -> PlanStatus {
        self.shared.status()
    }

    /// Every event from now on (steps, gate verdict changes, holds, pauses,
    /// the promote, the abort with its reason, the end). A receiver that
    /// falls more than 1024 events behind loses the oldest; the full
    /// timeline stays in [`PlanStatus::history`].
    pub fn subscribe(&self) -> broadcast::Receiver<PlanRecord> {
        self.shared.events.subscribe()
    }

    /// Resolves when the plan has finished.
    pub fn finished(&self) -> impl Future<Output = PlanOutcome> + Send + 'static {
        let shared = self.shared.clone();
        async move {
            let mut rx = shared.outcome.subscribe();
            let outcome = match rx.wait_for(Option::is_some).await {
                Ok(outcome) => outcome.clone().expect("waited for Some"),
                // Unreachable: `shared`, held here, owns the sender.
                Err(_) => PlanOutcome::Superseded,
            };
            outcome
        }
    }

    /// Stops advancing: the current traffic split stays, bake time stops
    /// counting, the gates keep evaluating and still abort. False when the
    /// plan has finished or was already paused.
    pub fn pause(&self) -> bool {
        let mut done = false;
        self.shared.manual(|shared, r, _| {
            if r.status.state != PlanState::Paused {
                let now = Instant::now();
                r.status.baked += now - r.last_tick;
                r.last_tick = now;
                r.status.state = PlanState::Paused;
                shared.emit(r, PlanEvent::Paused);
                done = true;
            }
        }) && done
    }

    /// Continues a paused plan. False when it was not paused.
    pub fn resume(&self) -> bool {
        let mut done = false;
        self.shared.manual(|shared, r, _| {
            if r.status.state == PlanState::Paused {
                r.last_tick = Instant::now();
                r.status.state = PlanState::Running;
                shared.emit(r, PlanEvent::Resumed);
                done = true;
            }
        }) && done
    }

    /// Aborts now: the stable color is active again, split and mirror at
    /// zero, before this returns. False when the plan had already finished.
    pub fn abort(&self, why: impl Into<String>) -> bool {
        let why = why.into();
        self.shared.manual(|shared, r, control| {
            shared.abort(r, control, AbortReason::Manual(why));
        })
    }

    /// Promotes now, skipping the remaining mirror and canary phases, and
    /// goes on with the post-promotion bake. False when the plan had already
    /// promoted or finished.
    pub fn skip_to_promote(&self) -> bool {
        let mut done = false;
        self.shared.manual(|shared, r, control| {
            if matches!(r.at, At::Mirror | At::Step(_)) {
                if r.status.state == PlanState::Paused {
                    shared.emit(r, PlanEvent::Resumed);
                }
                r.status.state = PlanState::Running;
                shared.enter(r, control, At::Post);
                done = true;
            }
        }) && done
    }
}

impl std::fmt::Debug for PlanRun {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let r = self.shared.lock();
        f.debug_struct("PlanRun")
            .field("state", &r.status.state)
            .field("phase", &r.status.phase)
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("plan", &self.plan)
            .finish_non_exhaustive()
    }
}

impl RolloutHandle {
    /// The rollout plan running (or last run) on this router, to watch or
    /// steer it (pause, resume, abort, skip to promote).
    pub fn plan(&self) -> Option<PlanRun> {
        self.control.attached::<Shared>().map(PlanRun::from_shared)
    }

    /// The status of the rollout plan running (or last run) on this router.
    pub fn plan_status(&self) -> Option<PlanStatus> {
        self.control
            .attached::<Shared>()
            .map(|shared| shared.status())
    }
}

/// A drift gate's verdict over the current pair's figures.
#[cfg(feature = "drift")]
fn drift_verdict(
    drift: &[crate::drift::FieldDrift],
    field: &str,
    statistic: crate::drift::Statistic,
    limit: f64,
    tests: usize,
    need: u64,
) -> GateVerdict {
    let Some(d) = drift.iter().find(|d| d.field == field) else {
        return GateVerdict::Inconclusive(format!(
            "{field} is not measured (give it to CompareSettings::drift)"
        ));
    };
    if d.kind != statistic.kind() {
        return GateVerdict::Inconclusive(format!(
            "{} does not apply to {field} ({:?})",
            statistic.as_str(),
            d.kind
        ));
    }
    if d.sample() == 0 {
        return GateVerdict::Inconclusive(format!(
            "{field} never appeared on both sides ({} and {} values)",
            d.primary_n, d.shadow_n
        ));
    }
    if d.sample() < need {
        return GateVerdict::Inconclusive(format!("{} of {need} values of {field}", d.sample()));
    }
    let Some(value) = d.get(statistic) else {
        return GateVerdict::Inconclusive(format!("no {} for {field} yet", statistic.as_str()));
    };
    let name = statistic.as_str();
    let n = d.sample();
    if statistic.is_p_value() {
        let alpha = limit / tests as f64;
        let fails = value < alpha;
        let side = if fails { "below" } else { "at least" };
        let figures = format!(
            "{field}: {name} {value:.3e} {side} {alpha:.3e} ({limit} over {tests} tests; {n} values)"
        );
        if fails {
            GateVerdict::Fail(figures)
        } else {
            GateVerdict::Pass(figures)
        }
    } else if value > limit {
        GateVerdict::Fail(format!(
            "{field}: {name} {value:.4} above {limit} ({n} values)"
        ))
    } else {
        GateVerdict::Pass(format!(
            "{field}: {name} {value:.4} at most {limit} ({n} values)"
        ))
    }
}

/// The most frequent structure changes, in words: `/label only on the
/// stable version (12), /class only on the candidate (12)`.
fn structure_summary(changes: &[StructureChange]) -> String {
    let shown: Vec<String> = changes
        .iter()
        .take(4)
        .map(|c| {
            let what = match c.kind {
                DiffKind::OnlyPrimary => "only on the stable version",
                DiffKind::OnlyShadow => "only on the candidate",
                DiffKind::Type => "of another type on the candidate",
                DiffKind::Length => "of another length on the candidate",
                _ => "changed",
            };
            format!("{} {what} ({})", c.pointer, c.count)
        })
        .collect();
    format!("fields: {}", shown.join(", "))
}
