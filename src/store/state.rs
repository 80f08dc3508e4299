//! [`RolloutState`]: the document replicas share, and its JSON form.

use std::fmt;

use serde_json::{json, Map, Value};

use super::plan_state::StoredPlan;
use crate::control::VersionLabel;
use crate::Color;

/// What every replica of a model serves: the document kept in the store.
///
/// Stored as JSON, for example
/// `{"active":"green","split":0.1,"mirror":0,"versions":{"blue":"v1","green":"v2"},"previous":"blue","generation":7}`.
/// Unknown fields are kept out of the way (a newer writer may add some);
/// a field of the wrong type or value is a [`StateError`].
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct RolloutState {
    /// The color users get.
    pub active: Color,
    /// The fraction of users sent to the other color.
    pub split: f64,
    /// The fraction of requests copied to the other color.
    pub mirror: f64,
    /// The version each color should hold, blue first (`None`: whatever the
    /// replica has).
    pub versions: [Option<VersionLabel>; 2],
    /// The color that was active before the last promote not rolled back
    /// (what a rollback returns to).
    pub previous: Option<Color>,
    /// Counts the writes: every change bumps it, so that conditional calls
    /// (`expect_generation`) work across replicas.
    pub generation: u64,
    /// The fleet-wide plan, running or the last one (see
    /// [`Replica::start_plan`](super::Replica::start_plan)).
    pub plan: Option<StoredPlan>,
}

/// A stored state that does not parse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateError {
    /// The field that is wrong (`active`, `split`, …), or `document`.
    pub field: &'static str,
    /// What is wrong with it.
    pub message: String,
}

impl fmt::Display for StateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "the stored state's {}: {}", self.field, self.message)
    }
}

impl std::error::Error for StateError {}

impl RolloutState {
    /// Blue active, nothing split or mirrored, versions as given.
    pub fn new(versions: [Option<VersionLabel>; 2]) -> Self {
        RolloutState {
            active: Color::Blue,
            split: 0.0,
            mirror: 0.0,
            versions,
            previous: None,
            generation: 0,
            plan: None,
        }
    }

    /// The version `color` should hold.
    pub fn version(&self, color: Color) -> Option<&VersionLabel> {
        self.versions[color as usize].as_ref()
    }

    /// The document as JSON bytes.
    pub fn to_json(&self) -> Vec<u8> {
        let version = |c: Color| self.version(c).map(|v| v.as_str());
        let mut doc = json!({
            "active": self.active.as_str(),
            "split": self.split,
            "mirror": self.mirror,
            "versions": { "blue": version(Color::Blue), "green": version(Color::Green) },
            "previous": self.previous.map(Color::as_str),
            "generation": self.generation,
        });
        if let Some(plan) = &self.plan {
            doc["plan"] = plan.to_value();
        }
        serde_json::to_vec(&doc).unwrap_or_default()
    }

    /// Reads a stored document.
    ///
    /// # Errors
    /// [`StateError`] naming the first field that is missing or wrong.
    pub fn from_json(bytes: &[u8]) -> Result<Self, StateError> {
        let doc: Value = serde_json::from_slice(bytes).map_err(|e| StateError {
            field: "document",
            message: format!("not JSON: {e}"),
        })?;
        let Value::Object(doc) = doc else {
            return Err(StateError {
                field: "document",
                message: "not a JSON object".into(),
            });
        };
        let versions = match doc.get("versions") {
            None | Some(Value::Null) => [None, None],
            Some(Value::Object(v)) => [version_field(v, "blue")?, version_field(v, "green")?],
            Some(_) => return Err(bad("versions", "not an object")),
        };
        Ok(RolloutState {
            active: color_field(&doc, "active")?.ok_or_else(|| bad("active", "missing"))?,
            split: fraction_field(&doc, "split")?,
            mirror: fraction_field(&doc, "mirror")?,
            versions,
            previous: color_field(&doc, "previous")?,
            generation: match doc.get("generation") {
                None => 0,
                Some(v) => v
                    .as_u64()
                    .ok_or_else(|| bad("generation", "not a non-negative integer"))?,
            },
            plan: match doc.get("plan") {
                None | Some(Value::Null) => None,
                Some(p) => Some(StoredPlan::from_value(p).map_err(|m| bad("plan", &m))?),
            },
        })
    }
}

fn bad(field: &'static str, message: &str) -> StateError {
    StateError {
        field,
        message: message.to_owned(),
    }
}

fn color_field(doc: &Map<String, Value>, field: &'static str) -> Result<Option<Color>, StateError> {
    match doc.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => s
            .parse()
            .map(Some)
            .map_err(|_| bad(field, &format!("{s:?} is not blue or green"))),
        Some(_) => Err(bad(field, "not a string")),
    }
}

fn fraction_field(doc: &Map<String, Value>, field: &'static str) -> Result<f64, StateError> {
    match doc.get(field) {
        None => Ok(0.0),
        Some(v) => match v.as_f64() {
            Some(f) if (0.0..=1.0).contains(&f) => Ok(f),
            _ => Err(bad(
                field,
                &format!("{v} is not a fraction between 0 and 1"),
            )),
        },
    }
}

fn version_field(
    versions: &Map<String, Value>,
    color: &'static str,
) -> Result<Option<VersionLabel>, StateError> {
    match versions.get(color) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => VersionLabel::new(s)
            .map(Some)
            .map_err(|e| bad("versions", &format!("{color}: {e}"))),
        Some(_) => Err(bad("versions", &format!("{color}: not a string"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_bad_documents() {
        let mut s = RolloutState::new([
            Some(VersionLabel::new("v1").unwrap()),
            Some(VersionLabel::new("v2").unwrap()),
        ]);
        s.active = Color::Green;
        s.split = 0.25;
        s.previous = Some(Color::Blue);
        s.generation = 7;
        assert_eq!(RolloutState::from_json(&s.to_json()), Ok(s));
        let err = |doc: &str| RolloutState::from_json(doc.as_bytes()).unwrap_err().field;
        assert_eq!(err("{"), "document");
        assert_eq!(err("[]"), "document");
        assert_eq!(err("{}"), "active");
        assert_eq!(err(r#"{"active":"red"}"#), "active");
        assert_eq!(err(r#"{"active":"blue","split":1.5}"#), "split");
        assert_eq!(err(r#"{"active":"blue","mirror":"x"}"#), "mirror");
        assert_eq!(err(r#"{"active":"blue","generation":-1}"#), "generation");
        assert_eq!(
            err(r#"{"active":"blue","versions":{"blue":"bad label"}}"#),
            "versions"
        );
        // A stored plan round-trips, and a wrong one names the plan.
        let mut with_plan = RolloutState::new([None, None]);
        let mut plan = StoredPlan {
            id: 3,
            document: serde_json::json!({"steps": [{"split": 0.1, "bake_seconds": 5}]}),
            stable: Color::Blue,
            candidate: Color::Green,
            phase: crate::store::StoredPhase::Canary(0),
            seq: 1,
            entered_unix_ms: 1_700_000_000_000,
            paused_baked_ms: Some(1200),
            state: crate::store::StoredPlanState::Paused,
            reason: None,
            driver: Some("r1".into()),
            term: 42,
            started_unix_ms: 1_700_000_000_000,
            baseline: None,
            timeline: Vec::new(),
        };
        plan.log("canary 1/1 at 10%".into(), "r0", 1_700_000_000_000);
        with_plan.plan = Some(plan);
        assert_eq!(RolloutState::from_json(&with_plan.to_json()), Ok(with_plan));
        for bad_plan in [
            r#"{"active":"blue","plan":{"id":1}}"#,
            r#"{"active":"blue","plan":[]}"#,
        ] {
            assert_eq!(err(bad_plan), "plan", "{bad_plan}");
        }
        // Unknown fields are left alone.
        assert!(RolloutState::from_json(br#"{"active":"blue","owner":"x"}"#).is_ok());
    }
}
