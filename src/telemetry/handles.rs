//! The metric names and their handles, registered once per router or layer.

use std::sync::Arc;

use metrics::{Counter, Gauge, Histogram, Label, Unit};

use super::labels::{self, CLASSES, KINDS};
use crate::control::{Transition, VersionLabel};
use crate::Color;

const REQUESTS: &str = "rollout_requests_total";
const RESPONSES: &str = "rollout_responses_total";
const TRANSITIONS: &str = "rollout_transitions_total";
const ACTIVE: &str = "rollout_active";
const SPLIT: &str = "rollout_split_ratio";
const MIRROR: &str = "rollout_mirror_ratio";
const GENERATION: &str = "rollout_generation";
const VERSION: &str = "rollout_version";

/// `name` (shared, not copied) and then static labels.
pub(crate) fn labels(name: &Arc<str>, more: &[(&'static str, &'static str)]) -> Vec<Label> {
    let mut v = Vec::with_capacity(1 + more.len());
    v.push(Label::new("name", name.clone()));
    v.extend(
        more.iter()
            .map(|&(k, val)| Label::from_static_parts(k, val)),
    );
    v
}

pub(crate) fn counter(key: &'static str, labels: Vec<Label>) -> Counter {
    metrics::counter!(key, labels)
}

pub(crate) fn gauge(key: &'static str, labels: Vec<Label>) -> Gauge {
    metrics::gauge!(key, labels)
}

pub(crate) fn histogram(key: &'static str, labels: Vec<Label>) -> Histogram {
    metrics::histogram!(key, labels)
}

pub(super) struct Router {
    name: Arc<str>,
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
            "Requests admitted by the router, per serving color and version."
        );
        metrics::describe_counter!(
            RESPONSES,
            Unit::Count,
            "Responses per serving color and version and status class (error: the service failed)."
        );
        metrics::describe_counter!(
            TRANSITIONS,
            Unit::Count,
            "Control calls: promote, rollback, split, mirror, abort, deploy."
        );
        metrics::describe_gauge!(ACTIVE, "1 for the active color, 0 for the standby.");
        metrics::describe_gauge!(SPLIT, "Fraction of requests sent to the standby (canary).");
        metrics::describe_gauge!(
            MIRROR,
            "Fraction of the active color's requests copied to the standby."
        );
        metrics::describe_gauge!(GENERATION, "Rises by one with every control call.");
        metrics::describe_gauge!(
            VERSION,
            "1 while the version is loaded in the color, 0 once it was replaced."
        );
        let color = |c: Color| ("color", c.as_str());
        let router = Router {
            name: name.clone(),
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

    /// `version` was loaded into `color`, replacing `replaced`.
    pub(super) fn loaded(
        &self,
        color: Color,
        version: &VersionLabel,
        replaced: Option<&VersionLabel>,
    ) {
        let info = |v: &VersionLabel| {
            let mut l = labels(&self.name, &[("color", color.as_str())]);
            l.push(Label::new("version", v.to_string()));
            gauge(VERSION, l)
        };
        if let Some(old) = replaced {
            info(old).set(0.0);
        }
        info(version).set(1.0);
    }
}

/// The request and response counters of one loaded version.
pub(super) struct Version {
    pub(super) requests: Counter,
    pub(super) responses: [Counter; CLASSES.len()],
}

impl Version {
    pub(super) fn new(name: &Arc<str>, color: Color, version: &VersionLabel) -> Version {
        let with = |more: &[(&'static str, &'static str)]| {
            let mut l = labels(name, &[("color", color.as_str())]);
            l.push(Label::new("version", version.to_string()));
            l.extend(more.iter().map(|&(k, v)| Label::from_static_parts(k, v)));
            l
        };
        Version {
            requests: counter(REQUESTS, with(&[])),
            responses: CLASSES.map(|class| counter(RESPONSES, with(&[("class", class)]))),
        }
    }
}
