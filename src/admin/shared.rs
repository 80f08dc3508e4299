//! What every request of one admin shares: the target, the sampled
//! history and its sampler task, and what the admin remembers of the plans
//! it has seen (their gates' documents, when they started).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::SystemTime;

use serde_json::Value;

use super::history::{History, Sampled, SAMPLE_EVERY};
use super::json::{millis, status_json, unix_ms, Extras};
use super::routes::Target;
use crate::plan::document::GateSpec;
use crate::plan::PlanRun;
use crate::RolloutHandle;

/// The most exemplars the status shows, whatever the builder was given.
pub(crate) const MAX_SHOWN_EXEMPLARS: usize = 50;

pub(crate) struct Shared {
    pub(crate) target: Target,
    pub(crate) history: History,
    /// Exemplars shown in the status (0: none).
    exemplars: usize,
    /// The last plan seen per model (`None`: the admin of one handle).
    plans: Mutex<HashMap<Option<String>, SeenPlan>>,
    sampler_started: AtomicBool,
    /// Set by [`Admin::close_streams`](super::Admin::close_streams).
    closed: AtomicBool,
    /// The replica whose router this admin steers, written to the store.
    #[cfg(feature = "store")]
    pub(crate) replica: std::sync::OnceLock<crate::store::Replica>,
}

/// A plan the admin started or saw running.
struct SeenPlan {
    /// Compared by its event channel: the same run or another one.
    run: PlanRun,
    /// Its gates' document, when the admin started it.
    gates: Option<Vec<GateSpec>>,
    /// When it started, on the wall clock.
    started_unix_ms: u64,
}

impl Shared {
    pub(crate) fn new(target: Target, exemplars: usize) -> Arc<Shared> {
        Arc::new(Shared {
            target,
            history: History::default(),
            exemplars: exemplars.min(MAX_SHOWN_EXEMPLARS),
            plans: Mutex::new(HashMap::new()),
            sampler_started: AtomicBool::new(false),
            closed: AtomicBool::new(false),
            #[cfg(feature = "store")]
            replica: std::sync::OnceLock::new(),
        })
    }

    /// Starts the sampler on the current tokio runtime, once; outside a
    /// runtime it does nothing (and is tried again at the next request).
    /// The task holds the admin weakly and ends soon after it is dropped.
    pub(crate) fn start_sampler(self: &Arc<Self>) {
        if self.sampler_started.load(Ordering::Relaxed) {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        if self.sampler_started.swap(true, Ordering::Relaxed) {
            return;
        }
        let weak = Arc::downgrade(self);
        runtime.spawn(sample_forever(weak));
    }

    /// Ends every event stream (within a check) and refuses new ones.
    pub(crate) fn close_streams(&self) {
        self.closed.store(true, Ordering::Relaxed);
    }

    pub(crate) fn streams_closed(&self) -> bool {
        self.closed.load(Ordering::Relaxed)
    }

    /// Every model, named in a fleet.
    pub(crate) fn models(&self) -> Vec<Sampled> {
        match &self.target {
            Target::Handle(h) => vec![Sampled {
                name: None,
                handle: h.clone(),
            }],
            Target::Fleet(fleet) => fleet
                .iter()
                .map(|(name, handle)| Sampled {
                    name: Some(name),
                    handle,
                })
                .collect(),
        }
    }

    /// A model's status document, with what the admin knows of its plan.
    pub(crate) fn status(&self, model: Option<&str>, handle: &RolloutHandle) -> Value {
        #[allow(unused_mut)]
        let mut doc = status_json(handle, &self.extras(model, handle));
        #[cfg(feature = "store")]
        if let (Some(replica), Some(obj)) = (self.replica(), doc.as_object_mut()) {
            // Conditional calls go to the store: its generation is the one
            // to expect; the router's own is kept apart.
            let status = replica.status();
            if let Some(local) = obj.remove("generation") {
                obj.insert("local_generation".into(), local);
            }
            let stored = status.state.as_ref().map(|s| s.generation);
            obj.insert("generation".into(), Value::from(stored));
            let fleet = replica.fleet();
            let plan = replica.plan_status();
            if let Some(p) = &plan {
                // The fleet-wide plan in the place and shape of a router's
                // own, for the dashboard and the CLI.
                obj.insert("plan".into(), super::synced::plan_compat(p));
            }
            obj.insert(
                "replica".into(),
                super::synced::replica_json(&status, &fleet, plan.as_ref()),
            );
        }
        doc
    }

    /// The replica, when the admin was built for one.
    #[cfg(feature = "store")]
    pub(crate) fn replica(&self) -> Option<&crate::store::Replica> {
        self.replica.get()
    }

    /// Remembers a plan the admin started from its document.
    pub(crate) fn plan_started(&self, model: Option<&str>, run: PlanRun, gates: Vec<GateSpec>) {
        let seen = SeenPlan {
            run,
            gates: Some(gates),
            started_unix_ms: unix_ms(SystemTime::now()),
        };
        self.plans().insert(model.map(String::from), seen);
    }

    fn extras(&self, model: Option<&str>, handle: &RolloutHandle) -> Extras {
        let mut extras = Extras {
            exemplars: self.exemplars,
            ..Extras::default()
        };
        let Some(run) = handle.plan() else {
            return extras;
        };
        let key = model.map(String::from);
        let mut plans = self.plans();
        let known = plans
            .get(&key)
            .filter(|seen| seen.run.subscribe().same_channel(&run.subscribe()));
        let seen = match known {
            Some(seen) => seen,
            None => {
                let status = run.status();
                if status.state.is_finished() {
                    // Never seen running: when it started is unknown.
                    return extras;
                }
                let now = unix_ms(SystemTime::now());
                let started_unix_ms = now.saturating_sub(millis(status.elapsed));
                let seen = SeenPlan {
                    run,
                    gates: None,
                    started_unix_ms,
                };
                plans.insert(key.clone(), seen);
                &plans[&key]
            }
        };
        extras.gates = seen.gates.clone();
        extras.plan_started_unix_ms = Some(seen.started_unix_ms);
        extras
    }

    /// Forgets the plans of models no longer in the fleet.
    fn forget_removed(&self, models: &[Sampled]) {
        self.plans()
            .retain(|key, _| models.iter().any(|m| &m.name == key));
    }

    fn plans(&self) -> MutexGuard<'_, HashMap<Option<String>, SeenPlan>> {
        self.plans.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Samples every model each [`SAMPLE_EVERY`] while the admin lives; also
/// notes the plans it sees start, so their timeline gets wall-clock times.
async fn sample_forever(shared: Weak<Shared>) {
    let mut tick = tokio::time::interval(SAMPLE_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(shared) = shared.upgrade() else {
            return;
        };
        let models = shared.models();
        for m in &models {
            shared.extras(m.name.as_deref(), &m.handle);
        }
        shared.forget_removed(&models);
        shared.history.sample(&models);
    }
}
