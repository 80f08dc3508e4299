//! [`StoredPlan`]: the fleet-wide plan's part of the stored document: the
//! plan's own document, where it is (phase, since when), who drives it,
//! and its timeline, written in the same compare-and-set as the traffic
//! change of each phase.

use serde_json::{json, Map, Value};

use crate::control::Measurement;
use crate::{Color, Latencies};

/// How many entries the stored timeline keeps (the oldest go first).
pub(crate) const TIMELINE: usize = 64;

/// A rollout plan run across the fleet, as the state document keeps it.
///
/// Every phase change is one write of the document: the traffic of the new
/// phase (split, mirror, or the promote) together with `phase`, `seq` and a
/// [`TimelineEntry`], so that a driver taking over continues from the
/// stored phase, and a phase is entered once (`seq` counts the entries).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct StoredPlan {
    /// Tells this plan apart from earlier ones: the generation it was
    /// started at.
    pub id: u64,
    /// The plan's document (the admin's format, see
    /// [`plan_from_json`](crate::plan::plan_from_json)), read again by a
    /// driver that takes over.
    pub document: Value,
    /// The color serving when the plan started.
    pub stable: Color,
    /// The color rolled out.
    pub candidate: Color,
    /// Where the plan is.
    pub phase: StoredPhase,
    /// How many phases were entered (1: the first): each replica's
    /// measurement window is counted from its `seq`'s start.
    pub seq: u64,
    /// When the phase was entered (the writer's clock, Unix milliseconds);
    /// while paused, moved on at the resume by the pause's length.
    pub entered_unix_ms: u64,
    /// Set while paused: the bake time the phase had then.
    pub paused_baked_ms: Option<u64>,
    /// Running, paused, or how it ended.
    pub state: StoredPlanState,
    /// Why it was aborted.
    pub reason: Option<String>,
    /// The replica driving it (`None` until one is elected).
    pub driver: Option<String>,
    /// The driver's term: the store revision at which it won the election.
    /// A driver that finds a later term here stops; each of its writes
    /// holds only while its election key is still at its term, so none
    /// lands once its lease expired.
    pub term: u64,
    /// When the plan started (the starter's clock, Unix milliseconds).
    pub started_unix_ms: u64,
    /// The stable color's outcomes across the fleet from the plan's start
    /// to the promote, written with the promote: the latency baseline of
    /// the post-promotion bake, whoever drives it.
    pub baseline: Option<Measurement>,
    /// Every phase entered, takeover and ending, oldest first (the last
    /// 64 of them).
    pub timeline: Vec<TimelineEntry>,
}

/// Where a stored plan is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum StoredPhase {
    /// The mirror phase.
    Mirror,
    /// Canary step `0`-based index.
    Canary(usize),
    /// After the promote.
    Post,
    /// Finished.
    Done,
}

/// A stored plan's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum StoredPlanState {
    /// Driven on.
    Running,
    /// Paused by hand: the bake time stands still, the gates are still
    /// judged (a failing one still aborts).
    Paused,
    /// Promoted and baked.
    Promoted,
    /// Aborted: the stable color serves everyone again.
    Aborted,
    /// A control call changed the traffic while it ran.
    Superseded,
}

impl StoredPlanState {
    /// Whether the plan has ended.
    pub fn is_finished(self) -> bool {
        matches!(
            self,
            StoredPlanState::Promoted | StoredPlanState::Aborted | StoredPlanState::Superseded
        )
    }

    /// Its name in the document.
    pub fn as_str(self) -> &'static str {
        match self {
            StoredPlanState::Running => "running",
            StoredPlanState::Paused => "paused",
            StoredPlanState::Promoted => "promoted",
            StoredPlanState::Aborted => "aborted",
            StoredPlanState::Superseded => "superseded",
        }
    }
}

/// One line of a stored plan's timeline.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct TimelineEntry {
    /// The plan's `seq` after this entry.
    pub seq: u64,
    /// What happened: `mirror 100%`, `canary 1/3 at 10%`, `promoted`,
    /// `completed`, `driven by r2 (term 57)`, `paused`, `resumed`,
    /// `aborted: ...`, `superseded by a control call`.
    pub what: String,
    /// The replica that wrote it.
    pub by: String,
    /// When (the writer's clock, Unix milliseconds).
    pub at_unix_ms: u64,
}

impl StoredPlan {
    /// Whether the plan still runs (running or paused).
    pub fn is_active(&self) -> bool {
        !self.state.is_finished()
    }

    /// Whether an abort made while the store was away still applies to
    /// it: it runs, or it promoted after the abort was made.
    pub(crate) fn abortable(&self) -> bool {
        matches!(
            self.state,
            StoredPlanState::Running | StoredPlanState::Paused | StoredPlanState::Promoted
        )
    }

    /// Adds a timeline entry (dropping the oldest beyond [`TIMELINE`]).
    pub(crate) fn log(&mut self, what: String, by: &str, at_unix_ms: u64) {
        if self.timeline.len() >= TIMELINE {
            self.timeline.remove(0);
        }
        self.timeline.push(TimelineEntry {
            seq: self.seq,
            what,
            by: by.to_owned(),
            at_unix_ms,
        });
    }

    pub(crate) fn to_value(&self) -> Value {
        let phase = match self.phase {
            StoredPhase::Mirror => json!({"name": "mirror"}),
            StoredPhase::Canary(i) => json!({"name": "canary", "step": i}),
            StoredPhase::Post => json!({"name": "post_promotion"}),
            StoredPhase::Done => json!({"name": "done"}),
        };
        let timeline: Vec<Value> = self
            .timeline
            .iter()
            .map(|t| json!({"seq": t.seq, "what": t.what, "by": t.by, "at_unix_ms": t.at_unix_ms}))
            .collect();
        json!({
            "id": self.id,
            "document": self.document,
            "stable": self.stable.as_str(),
            "candidate": self.candidate.as_str(),
            "phase": phase,
            "seq": self.seq,
            "entered_unix_ms": self.entered_unix_ms,
            "paused_baked_ms": self.paused_baked_ms,
            "state": self.state.as_str(),
            "reason": self.reason,
            "driver": self.driver,
            "term": self.term,
            "started_unix_ms": self.started_unix_ms,
            "baseline": self.baseline.as_ref().map(measurement_to_value),
            "timeline": timeline,
        })
    }

    pub(crate) fn from_value(v: &Value) -> Result<StoredPlan, String> {
        let Value::Object(m) = v else {
            return Err(bad("not an object"));
        };
        let phase = match m.get("phase") {
            Some(Value::Object(p)) => match p.get("name").and_then(Value::as_str) {
                Some("mirror") => StoredPhase::Mirror,
                Some("canary") => StoredPhase::Canary(
                    p.get("step")
                        .and_then(Value::as_u64)
                        .and_then(|s| usize::try_from(s).ok())
                        .ok_or_else(|| bad("phase.step: not a step index"))?,
                ),
                Some("post_promotion") => StoredPhase::Post,
                Some("done") => StoredPhase::Done,
                _ => {
                    return Err(bad(
                        "phase.name: not mirror, canary, post_promotion or done",
                    ))
                }
            },
            _ => return Err(bad("phase: missing")),
        };
        let state = match m.get("state").and_then(Value::as_str) {
            Some("running") => StoredPlanState::Running,
            Some("paused") => StoredPlanState::Paused,
            Some("promoted") => StoredPlanState::Promoted,
            Some("aborted") => StoredPlanState::Aborted,
            Some("superseded") => StoredPlanState::Superseded,
            _ => {
                return Err(bad(
                    "state: not running, paused, promoted, aborted or superseded",
                ))
            }
        };
        let timeline = match m.get("timeline") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(items)) => items
                .iter()
                .map(|t| {
                    Some(TimelineEntry {
                        seq: t.get("seq")?.as_u64()?,
                        what: t.get("what")?.as_str()?.to_owned(),
                        by: t.get("by")?.as_str()?.to_owned(),
                        at_unix_ms: t.get("at_unix_ms")?.as_u64()?,
                    })
                })
                .collect::<Option<Vec<_>>>()
                .ok_or_else(|| bad("timeline: an entry is not {seq, what, by, at_unix_ms}"))?,
            Some(_) => return Err(bad("timeline: not an array")),
        };
        Ok(StoredPlan {
            id: number(m, "id")?,
            document: match m.get("document") {
                Some(d @ Value::Object(_)) => d.clone(),
                _ => return Err(bad("document: not the plan's document")),
            },
            stable: color(m, "stable")?,
            candidate: color(m, "candidate")?,
            phase,
            seq: number(m, "seq")?,
            entered_unix_ms: number(m, "entered_unix_ms")?,
            paused_baked_ms: match m.get("paused_baked_ms") {
                None | Some(Value::Null) => None,
                Some(v) => Some(
                    v.as_u64()
                        .ok_or_else(|| bad("paused_baked_ms: not a number"))?,
                ),
            },
            state,
            reason: optional_text(m, "reason")?,
            driver: optional_text(m, "driver")?,
            term: number(m, "term")?,
            started_unix_ms: number(m, "started_unix_ms")?,
            baseline: match m.get("baseline") {
                None | Some(Value::Null) => None,
                Some(b) => Some(
                    measurement_from_value(b).ok_or_else(|| bad("baseline: not a measurement"))?,
                ),
            },
            timeline,
        })
    }
}

fn bad(message: &str) -> String {
    message.to_owned()
}

fn number(m: &Map<String, Value>, key: &str) -> Result<u64, String> {
    m.get(key)
        .and_then(Value::as_u64)
        .ok_or_else(|| bad(&format!("{key}: not a non-negative integer")))
}

fn color(m: &Map<String, Value>, key: &str) -> Result<Color, String> {
    m.get(key)
        .and_then(Value::as_str)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad(&format!("{key}: not blue or green")))
}

fn optional_text(m: &Map<String, Value>, key: &str) -> Result<Option<String>, String> {
    match m.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(bad(&format!("{key}: not a string"))),
    }
}

/// A measurement as JSON: counts, and the latency histogram's non-empty
/// buckets as `[index, count]`.
pub(crate) fn measurement_to_value(m: &Measurement) -> Value {
    let buckets: Vec<Value> = m
        .latency
        .buckets()
        .into_iter()
        .map(|(i, n)| json!([i, n]))
        .collect();
    json!({"finished": m.finished, "failures": m.failures, "abandoned": m.abandoned, "latency": buckets})
}

/// [`measurement_to_value`] read back; `None` when it is not one.
pub(crate) fn measurement_from_value(v: &Value) -> Option<Measurement> {
    let buckets: Vec<(usize, u64)> = v["latency"]
        .as_array()?
        .iter()
        .map(|b| Some((usize::try_from(b[0].as_u64()?).ok()?, b[1].as_u64()?)))
        .collect::<Option<_>>()?;
    Some(Measurement {
        finished: v["finished"].as_u64()?,
        failures: v["failures"].as_u64()?,
        abandoned: v["abandoned"].as_u64()?,
        latency: Latencies::from_buckets(&buckets)?,
    })
}
