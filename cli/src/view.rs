//! The parts of the admin's status document the CLI shows, read into named
//! types (a missing required field is a failure naming it).

use serde_json::Value;

use crate::failure::{Failure, Kind};

/// One model's state.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ModelView {
    /// The fleet's name for it; `None` for a one-model admin.
    pub(crate) name: Option<String>,
    pub(crate) active: String,
    pub(crate) split: f64,
    pub(crate) mirror: f64,
    pub(crate) generation: u64,
    pub(crate) blue: ColorView,
    pub(crate) green: ColorView,
    pub(crate) comparison: Option<ComparisonView>,
    pub(crate) plan: Option<PlanView>,
}

/// One color's version and counters.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ColorView {
    pub(crate) version: String,
    pub(crate) readiness: String,
    pub(crate) in_flight: u64,
    pub(crate) served: u64,
    /// Requests classified while measuring (a plan runs), and of those the
    /// failures.
    pub(crate) finished: u64,
    pub(crate) failures: u64,
}

/// The shadow comparison's counts, when anything was compared.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ComparisonView {
    /// `color version` of each side, when the report names them.
    pub(crate) primary: Option<String>,
    pub(crate) shadow: Option<String>,
    pub(crate) total: u64,
    pub(crate) mismatched: u64,
    pub(crate) agreement_rate: Option<f64>,
    /// The fields that differed most, most first.
    pub(crate) top_fields: Vec<FieldCount>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FieldCount {
    pub(crate) field: String,
    pub(crate) count: u64,
}

/// The running (or last) rollout plan.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct PlanView {
    pub(crate) state: String,
    pub(crate) phase: String,
    pub(crate) stable: String,
    pub(crate) candidate: String,
    pub(crate) gates: Vec<GateView>,
    pub(crate) outcome: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct GateView {
    pub(crate) gate: String,
    pub(crate) verdict: String,
    pub(crate) detail: Option<String>,
}

impl PlanView {
    /// Whether the plan has finished (promoted, aborted, superseded).
    pub(crate) fn is_finished(&self) -> bool {
        self.outcome.is_some()
    }
}

/// The models of a status answer: a fleet's `{"models": {name: status}}`
/// (sorted by name), or one model's status (named `name` if given).
pub(crate) fn models(doc: &Value, name: Option<&str>) -> Result<Vec<ModelView>, Failure> {
    if doc.get("active").is_none() {
        if let Some(models) = doc.get("models").and_then(Value::as_object) {
            return models
                .iter()
                .map(|(name, status)| model(status, Some(name)))
                .collect();
        }
    }
    Ok(vec![model(doc, name)?])
}

/// One model's status document.
pub(crate) fn model(doc: &Value, name: Option<&str>) -> Result<ModelView, Failure> {
    let colors = doc.get("colors");
    Ok(ModelView {
        name: name.map(str::to_owned),
        active: text(doc, "active")?,
        split: number(doc, "split")?,
        mirror: number(doc, "mirror")?,
        generation: count(doc, "generation")?,
        blue: color(colors.and_then(|c| c.get("blue")), "colors.blue")?,
        green: color(colors.and_then(|c| c.get("green")), "colors.green")?,
        comparison: doc.get("comparison").and_then(comparison),
        plan: match doc.get("plan") {
            None | Some(Value::Null) => None,
            Some(p) => Some(plan(p)?),
        },
    })
}

fn color(doc: Option<&Value>, at: &str) -> Result<ColorView, Failure> {
    let doc = doc.ok_or_else(|| missing(at))?;
    let opt = |key: &str| doc.get(key).and_then(Value::as_u64).unwrap_or(0);
    Ok(ColorView {
        version: text(doc, "version").map_err(|_| missing(&format!("{at}.version")))?,
        readiness: doc
            .get("readiness")
            .and_then(Value::as_str)
            .unwrap_or("unknown")
            .to_owned(),
        in_flight: opt("in_flight"),
        served: opt("served"),
        finished: opt("finished"),
        failures: opt("failures"),
    })
}

/// The comparison, or `None` when nothing was compared.
fn comparison(doc: &Value) -> Option<ComparisonView> {
    let total = doc.get("total")?.as_u64()?;
    if total == 0 {
        return None;
    }
    let side = |key: &str| {
        let side = doc.get("versions")?.get(key)?;
        Some(format!(
            "{} {}",
            side.get("color")?.as_str()?,
            side.get("version")?.as_str()?
        ))
    };
    let mut top_fields: Vec<FieldCount> = doc
        .get("field_mismatches")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|f| {
            Some(FieldCount {
                field: f.get("field")?.as_str()?.to_owned(),
                count: f.get("count")?.as_u64()?,
            })
        })
        .collect();
    top_fields.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.field.cmp(&b.field)));
    top_fields.truncate(3);
    Some(ComparisonView {
        primary: side("primary"),
        shadow: side("shadow"),
        total,
        mismatched: doc.get("mismatched").and_then(Value::as_u64).unwrap_or(0),
        agreement_rate: doc.get("agreement_rate").and_then(Value::as_f64),
        top_fields,
    })
}

fn plan(doc: &Value) -> Result<PlanView, Failure> {
    let gates = doc
        .get("gates")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|g| GateView {
            gate: g.get("gate").and_then(Value::as_str).unwrap_or("?").into(),
            verdict: g
                .get("verdict")
                .and_then(Value::as_str)
                .unwrap_or("?")
                .into(),
            detail: g.get("detail").and_then(Value::as_str).map(str::to_owned),
        })
        .collect();
    Ok(PlanView {
        state: text(doc, "state").map_err(|_| missing("plan.state"))?,
        phase: text(doc, "phase").map_err(|_| missing("plan.phase"))?,
        stable: doc
            .get("stable")
            .and_then(Value::as_str)
            .unwrap_or("?")
            .into(),
        candidate: doc
            .get("candidate")
            .and_then(Value::as_str)
            .unwrap_or("?")
            .into(),
        gates,
        outcome: doc
            .get("outcome")
            .and_then(Value::as_str)
            .map(str::to_owned),
    })
}

fn missing(field: &str) -> Failure {
    Failure::new(
        Kind::Other,
        format!("the status document has no {field:?}: is the server a tower-rollout admin?"),
    )
}

fn text(doc: &Value, key: &str) -> Result<String, Failure> {
    doc.get(key)
        .and_then(Value::as_str)
        .map(str::to_owned)
        .ok_or_else(|| missing(key))
}

fn number(doc: &Value, key: &str) -> Result<f64, Failure> {
    doc.get(key)
        .and_then(Value::as_f64)
        .ok_or_else(|| missing(key))
}

fn count(doc: &Value, key: &str) -> Result<u64, Failure> {
    doc.get(key)
        .and_then(Value::as_u64)
        .ok_or_else(|| missing(key))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn status(active: &str) -> Value {
        json!({
            "active": active, "split": 0.1, "mirror": 0.0, "generation": 4,
            "colors": {
                "blue": {"version": "v1", "readiness": "ready", "served": 10},
                "green": {"version": "v2", "served": 2, "finished": 2, "failures": 1},
            },
            "comparison": {"total": 0},
            "plan": null,
        })
    }

    #[test]
    fn one_model_and_a_fleet() {
        let one = models(&status("blue"), None).unwrap();
        assert_eq!(one.len(), 1);
        assert_eq!(one[0].name, None);
        assert_eq!(
            (one[0].green.failures, one[0].green.readiness.as_str()),
            (1, "unknown")
        );
        assert_eq!(one[0].comparison, None, "nothing compared");

        let fleet = json!({"models": {"vision": status("green"), "audio": status("blue")}});
        let many = models(&fleet, None).unwrap();
        let names: Vec<_> = many.iter().map(|m| m.name.clone().unwrap()).collect();
        assert_eq!(names, ["audio", "vision"]);
        assert_eq!(many[1].active, "green");
    }

    #[test]
    fn a_missing_field_is_named() {
        let mut doc = status("blue");
        doc["colors"]["green"]
            .as_object_mut()
            .unwrap()
            .remove("version");
        let err = model(&doc, None).unwrap_err();
        assert!(err.message.contains("colors.green.version"), "{err}");
        assert!(model(&json!({"error": "x"}), None)
            .unwrap_err()
            .message
            .contains("\"active\""));
    }
}
