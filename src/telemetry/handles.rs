//! The metric names and their handles, registered once per router or layer.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use metrics::{Counter, Gauge, Histogram, Label, Unit};

use super::labels::{self, CLASSES, COMPARE_OUTCOMES, COPY_OUTCOMES, KINDS};
use super::Owner;
use crate::control::Transition;
use crate::shadow::FieldDiff;
use crate::Color;

const REQUESTS: &str = "rollout_requests_total";
const RESPONSES: &str = "rollout_responses_total";
const TRANSITIONS: &str = "rollout_transitions_total";
const ACTIVE: &str = "rollout_active";
const SPLIT: &str = "rollout_split_ratio";
const MIRROR: &str = "rollout_mirror_ratio";
const GENERATION: &str = "rollout_generation";
const SAMPLED: &str = "rollout_mirror_sampled_total";
const COPIES: &str = "rollout_mirror_copies_total";
const SHADOW_DURATION: &str = "rollout_mirror_shadow_duration_seconds";
const COMPARED: &str = "rollout_compare_total";
const COMPARE_DURATION: &str = "rollout_compare_duration_seconds";
const FIELDS: &str = "rollout_compare_field_mismatches_total";

/// Distinct `field` labels per comparator; the rest go to [`OTHER_FIELD`].
const MAX_FIELDS: usize = 32;
const OTHER_FIELD: &str = "(other)";

/// `name` (shared, not copied) and then static labels.
fn labels(name: &Arc<str>, more: &[(&'static str, &'static str)]) -> Vec<Label> {
    let mut v = Vec::with_capacity(1 + more.len());
    v.push(Label::new("name", name.clone()));
    v.extend(
        more.iter()
            .map(|&(k, val)| Label::from_static_parts(k, val)),
    );
    v
}

fn counter(key: &'static str, labels: Vec<Label>) -> Counter {
    metrics::counter!(key, labels)
}

fn gauge(key: &'static str, labels: Vec<Label>) -> Gauge {
    metrics::gauge!(key, labels)
}

fn histogram(key: &'static str, labels: Vec<Label>) -> Histogram {
    metrics::histogram!(key, labels)
}

pub(super) struct Router {
    pub(super) requests: [Counter; 2],
    pub(super) responses: [[Counter; CLASSES.len()]; 2],
    transitions: [Counter; KINDS.len()],
    active: [Gauge; 2],
    split: Gauge,
    mirror: Gauge,
    generation: Gauge,
}

impl Router {
    pub(super) fn new(name: &Arc<str>) -> Router {
        metrics::describe_counter!(
            REQUESTS,
            Unit::Count,
            "Requests admitted by the router, per serving color."
        );
        metrics::describe_counter!(
            RESPONSES,
            Unit::Count,
            "Responses per serving color and status class (error: the service failed)."
        );
        metrics::describe_counter!(
            TRANSITIONS,
            Unit::Count,
            "Control calls: promote, rollback, split, mirror."
        );
        metrics::describe_gauge!(ACTIVE, "1 for the active color, 0 for the standby.");
        metrics::describe_gauge!(SPLIT, "Fraction of requests sent to the standby (canary).");
        metrics::describe_gauge!(
            MIRROR,
            "Fraction of the active color's requests copied to the standby."
        );
        metrics::describe_gauge!(GENERATION, "Rises by one with every control call.");
        let color = |c: Color| ("color", c.as_str());
        let router = Router {
            requests: Color::ALL.map(|c| counter(REQUESTS, labels(name, &[color(c)]))),
            responses: Color::ALL.map(|c| {
                CLASSES.map(|class| counter(RESPONSES, labels(name, &[color(c), ("class", class)])))
            }),
            transitions: KINDS.map(|k| counter(TRANSITIONS, labels(name, &[("kind", k)]))),
            active: Color::ALL.map(|c| gauge(ACTIVE, labels(name, &[color(c)]))),
            split: gauge(SPLIT, labels(name, &[])),
            mirror: gauge(MIRROR, labels(name, &[])),
            generation: gauge(GENERATION, labels(name, &[])),
        };
        // A new router: blue active, no split, no mirror, generation 0.
        router.state(Color::Blue, 0.0, 0.0, 0);
        router
    }

    fn state(&self, active: Color, split: f64, mirror: f64, generation: u64) {
        for c in Color::ALL {
            self.active[c.index()].set(if c == active { 1.0 } else { 0.0 });
        }
        self.split.set(split);
        self.mirror.set(mirror);
        self.generation.set(generation as f64);
    }

    pub(super) fn transition(&self, t: &Transition) {
        self.transitions[labels::kind_label(t.kind).0].increment(1);
        self.state(t.active, t.split, t.mirror, t.generation);
    }
}

pub(super) struct Mirror {
    pub(super) sampled: Counter,
    pub(super) outcomes: [Counter; COPY_OUTCOMES.len()],
    pub(super) latency: Histogram,
}

impl Mirror {
    pub(super) fn new(name: &Arc<str>, owner: Owner) -> Mirror {
        metrics::describe_counter!(SAMPLED, Unit::Count, "Requests chosen for a copy.");
        metrics::describe_counter!(
            COPIES,
            Unit::Count,
            "How each chosen copy ended, by outcome and reason."
        );
        metrics::describe_histogram!(
            SHADOW_DURATION,
            Unit::Seconds,
            "Shadow latency, from the copy's start to the end of its response body."
        );
        let layer = ("layer", owner.as_str());
        Mirror {
            sampled: counter(SAMPLED, labels(name, &[layer])),
            outcomes: COPY_OUTCOMES.map(|o| {
                let (_, outcome, reason) = labels::copy_labels(o);
                let mut l = labels(name, &[layer, ("outcome", outcome)]);
                if let Some(reason) = reason {
                    l.push(Label::from_static_parts("reason", reason));
                }
                counter(COPIES, l)
            }),
            latency: histogram(SHADOW_DURATION, labels(name, &[layer])),
        }
    }
}

pub(super) struct Compare {
    name: Arc<str>,
    layer: &'static str,
    pub(super) outcomes: [Counter; COMPARE_OUTCOMES.len()],
    pub(super) primary: Histogram,
    pub(super) shadow: Histogram,
    /// Registered at the first mismatch of each field, at most
    /// `MAX_FIELDS` of them plus the `(other)` one.
    fields: Mutex<HashMap<String, Counter>>,
}

impl Compare {
    pub(super) fn new(name: &Arc<str>, owner: Owner) -> Compare {
        metrics::describe_counter!(COMPARED, Unit::Count, "How each sampled comparison ended.");
        metrics::describe_histogram!(
            COMPARE_DURATION,
            Unit::Seconds,
            "Latency of compared requests, primary and shadow side."
        );
        metrics::describe_counter!(
            FIELDS,
            Unit::Count,
            "Differences per field (at most 32 fields, the rest as \"(other)\")."
        );
        let layer = ("layer", owner.as_str());
        let side = |s| histogram(COMPARE_DURATION, labels(name, &[layer, ("side", s)]));
        Compare {
            name: name.clone(),
            layer: owner.as_str(),
            outcomes: COMPARE_OUTCOMES.map(|o| {
                let outcome = labels::compare_label(o).1;
                counter(COMPARED, labels(name, &[layer, ("outcome", outcome)]))
            }),
            primary: side("primary"),
            shadow: side("shadow"),
            fields: Mutex::new(HashMap::new()),
        }
    }

    pub(super) fn fields(&self, diffs: &[FieldDiff]) {
        let mut fields = self.fields.lock().unwrap_or_else(|e| e.into_inner());
        for d in diffs {
            if let Some(c) = fields.get(&d.path) {
                c.increment(1);
                continue;
            }
            let key = if fields.len() < MAX_FIELDS {
                d.path.clone()
            } else {
                OTHER_FIELD.to_owned()
            };
            let name = &self.name;
            let layer = self.layer;
            fields
                .entry(key)
                .or_insert_with_key(|field| {
                    let mut l = labels(name, &[("layer", layer)]);
                    l.push(Label::new("field", field.clone()));
                    counter(FIELDS, l)
                })
                .increment(1);
        }
    }
}
