//! JSON documents the admin reads: strict parsing (duplicate keys refused at
//! every level) and the rollout plan document of `POST /plan`.
//!
//! ```json
//! {
//!   "mirror": { "fraction": 1.0, "until_compared": 500 },
//!   "steps": [ { "split": 0.1, "bake_seconds": 30 }, { "split": 0.5, "bake_seconds": 60 } ],
//!   "post_promotion_bake_seconds": 30,
//!   "interval_ms": 1000,
//!   "gates": [
//!     { "type": "error_rate", "max": 0.01, "min_sample": 200 },
//!     { "type": "latency", "quantile": 0.99, "max_ratio": 1.5, "slack_ms": 5, "min_sample": 200 },
//!     { "type": "agreement", "min": 0.95, "min_sample": 500 },
//!     { "type": "mismatches", "max": 10, "min_sample": 500 },
//!     { "type": "schema_compatible", "max_breaks": 0, "min_sample": 100 },
//!     { "type": "drift", "field": "/label", "statistic": "psi", "limit": 0.25, "min_sample": 500 }
//!   ]
//! }
//! ```
//!
//! `mirror` takes `until_compared` (requests compared) or `seconds`; every
//! gate takes an optional `name`; `drift` gates need the `drift` feature
//! (statistics: `psi`, `jensen_shannon`, `chi_square`, `chi_square_p`, `ks`,
//! `ks_p`, `wasserstein`). Unknown keys are refused, so a typo is never
//! silently ignored.

use std::fmt;
use std::time::Duration;

use serde_json::{Map, Number, Value};

use super::{Gate, PlanError, RolloutPlan};

/// Why a plan document was refused: the field (a path such as
/// `steps[1].bake_seconds`) and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct PlanDocumentError {
    /// Where, as a path into the document (empty for the document itself).
    pub field: String,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for PlanDocumentError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.field.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.field, self.message)
        }
    }
}

impl std::error::Error for PlanDocumentError {}

fn bad(field: impl Into<String>, message: impl Into<String>) -> PlanDocumentError {
    PlanDocumentError {
        field: field.into(),
        message: message.into(),
    }
}

/// Reads a rollout plan from its JSON document (see the module docs); the
/// plan is checked as [`PlanBuilder::build`](crate::plan::PlanBuilder::build)
/// checks it.
///
/// # Errors
/// [`PlanDocumentError`] naming the field that is wrong.
pub fn plan_from_json(bytes: &[u8]) -> Result<RolloutPlan, PlanDocumentError> {
    plan_document(bytes).map(|(plan, _)| plan)
}

/// A gate as its document gave it: what the dashboard shows beside the
/// gate's verdict (the plan keeps its thresholds to itself).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct GateSpec {
    /// The gate's name, as its verdicts carry it.
    pub(crate) name: String,
    /// The document's `type`.
    pub(crate) kind: &'static str,
    /// What passes, in words (`error rate ≤ 0.01`).
    pub(crate) threshold: String,
    pub(crate) min_sample: u64,
}

/// [`plan_from_json`], with what each gate was given.
pub(crate) fn plan_document(
    bytes: &[u8],
) -> Result<(RolloutPlan, Vec<GateSpec>), PlanDocumentError> {
    let mut specs = Vec::new();
    let doc = strict_json(bytes).map_err(|e| bad("", e))?;
    let doc = object(&doc, "")?;
    only(
        doc,
        "",
        &[
            "mirror",
            "steps",
            "post_promotion_bake_seconds",
            "interval_ms",
            "gates",
        ],
    )?;
    let mut plan = RolloutPlan::builder();
    if let Some(m) = doc.get("mirror") {
        let m = object(m, "mirror")?;
        only(m, "mirror", &["fraction", "until_compared", "seconds"])?;
        let fraction = number(m, "mirror", "fraction")?.unwrap_or(1.0);
        plan = match (m.get("until_compared"), m.get("seconds")) {
            (Some(_), None) => plan.mirror_until_compared(
                fraction,
                count(m, "mirror", "until_compared")?.unwrap_or(0),
            ),
            (None, Some(_)) => plan.mirror_for(fraction, seconds(m, "mirror", "seconds")?),
            _ => return Err(bad("mirror", r#"give "until_compared" or "seconds""#)),
        };
    }
    if let Some(steps) = doc.get("steps") {
        let steps = steps
            .as_array()
            .ok_or_else(|| bad("steps", "must be an array of {\"split\", \"bake_seconds\"}"))?;
        for (i, step) in steps.iter().enumerate() {
            let at = format!("steps[{i}]");
            let step = object(step, &at)?;
            only(step, &at, &["split", "bake_seconds"])?;
            let split =
                number(step, &at, "split")?.ok_or_else(|| bad(format!("{at}.split"), "missing"))?;
            plan = plan.step(split, seconds(step, &at, "bake_seconds")?);
        }
    }
    if doc.contains_key("post_promotion_bake_seconds") {
        plan = plan.post_promotion_bake(seconds(doc, "", "post_promotion_bake_seconds")?);
    }
    if doc.contains_key("interval_ms") {
        let ms = count(doc, "", "interval_ms")?.unwrap_or(0);
        plan = plan.interval(Duration::from_millis(ms));
    }
    if let Some(gates) = doc.get("gates") {
        let gates = gates
            .as_array()
            .ok_or_else(|| bad("gates", "must be an array"))?;
        for (i, gate) in gates.iter().enumerate() {
            let (gate, spec) = gate_from(gate, &format!("gates[{i}]"))?;
            plan = plan.gate(gate);
            specs.push(spec);
        }
    }
    let plan = plan
        .build()
        .map_err(|e| bad(plan_field(&e), e.to_string()))?;
    Ok((plan, specs))
}

/// The document field a plan error is about.
fn plan_field(e: &PlanError) -> String {
    match e {
        PlanError::InvalidSplit { .. } | PlanError::DecreasingSplit { .. } => "steps".into(),
        PlanError::EmptyPlan | PlanError::StepsWithAllAtOnce => "steps".into(),
        PlanError::ZeroDuration { what } => (*what).into(),
        PlanError::MissingMinSample { gate }
        | PlanError::InvalidThreshold { gate, .. }
        | PlanError::DuplicateGate { gate }
        | PlanError::GateNeedsMirror { gate } => format!("gates[{gate}]"),
        _ => String::new(),
    }
}

fn gate_from(v: &Value, at: &str) -> Result<(Gate, GateSpec), PlanDocumentError> {
    let g = object(v, at)?;
    let kind = g.get("type").and_then(Value::as_str).ok_or_else(|| {
        bad(
            format!("{at}.type"),
            "missing: error_rate, latency, agreement, mismatches, schema_compatible or drift",
        )
    })?;
    let typed = typed_gate(g, at, kind)?;
    let mut allowed = vec!["type", "name", "min_sample"];
    allowed.extend_from_slice(typed.keys);
    only(g, at, &allowed)?;
    let min_sample = count(g, at, "min_sample")?.ok_or_else(|| {
        bad(
            format!("{at}.min_sample"),
            "missing: the sample a verdict needs",
        )
    })?;
    let mut gate = typed.gate.min_sample(min_sample);
    if let Some(name) = g.get("name") {
        let name = name
            .as_str()
            .ok_or_else(|| bad(format!("{at}.name"), "must be a string"))?;
        gate = gate.named(name);
    }
    let spec = GateSpec {
        name: gate.name().to_owned(),
        kind: typed.kind,
        threshold: typed.threshold,
        min_sample,
    };
    Ok((gate, spec))
}

/// What a gate's `type` makes of its document: the gate, the keys that
/// type takes, and its threshold in words.
struct TypedGate {
    gate: Gate,
    kind: &'static str,
    keys: &'static [&'static str],
    threshold: String,
}

fn typed_gate(
    g: &Map<String, Value>,
    at: &str,
    kind: &str,
) -> Result<TypedGate, PlanDocumentError> {
    let need = |key: &str| -> Result<f64, PlanDocumentError> {
        number(g, at, key)?.ok_or_else(|| bad(format!("{at}.{key}"), "missing"))
    };
    let typed = |gate, kind, keys, threshold| TypedGate {
        gate,
        kind,
        keys,
        threshold,
    };
    Ok(match kind {
        "error_rate" => {
            let max = need("max")?;
            let threshold = format!("error rate ≤ {max}");
            typed(Gate::error_rate(max), "error_rate", &["max"], threshold)
        }
        "latency" => {
            let (quantile, ratio) = (need("quantile")?, need("max_ratio")?);
            let mut gate = Gate::latency(quantile, ratio);
            let mut threshold = format!("p{} ≤ {ratio}× stable", quantile * 100.0);
            if let Some(ms) = count(g, at, "slack_ms")? {
                gate = gate.slack(Duration::from_millis(ms));
                threshold.push_str(&format!(" + {ms} ms"));
            }
            let keys = &["quantile", "max_ratio", "slack_ms"];
            typed(gate, "latency", keys, threshold)
        }
        "agreement" => {
            let min = need("min")?;
            let threshold = format!("agreement ≥ {min}");
            typed(Gate::agreement(min), "agreement", &["min"], threshold)
        }
        "mismatches" => {
            let max = count(g, at, "max")?.ok_or_else(|| bad(format!("{at}.max"), "missing"))?;
            let threshold = format!("mismatches ≤ {max}");
            typed(Gate::max_mismatches(max), "mismatches", &["max"], threshold)
        }
        "schema_compatible" => {
            let max = count(g, at, "max_breaks")?.unwrap_or(0);
            let threshold = format!("schema breaks ≤ {max}");
            let gate = Gate::schema_compatible(max);
            typed(gate, "schema_compatible", &["max_breaks"], threshold)
        }
        #[cfg(feature = "drift")]
        "drift" => drift_gate(g, at)?,
        other => {
            return Err(bad(
                format!("{at}.type"),
                format!("unknown gate type {other:?}"),
            ))
        }
    })
}

#[cfg(feature = "drift")]
fn drift_gate(g: &Map<String, Value>, at: &str) -> Result<TypedGate, PlanDocumentError> {
    let field = g.get("field").and_then(Value::as_str).ok_or_else(|| {
        bad(
            format!("{at}.field"),
            "missing: a JSON pointer such as \"/label\"",
        )
    })?;
    let statistic = g.get("statistic").and_then(Value::as_str).unwrap_or("");
    let statistic = crate::drift::Statistic::from_name(statistic).ok_or_else(|| {
        bad(
            format!("{at}.statistic"),
            "one of psi, jensen_shannon, chi_square, chi_square_p, ks, ks_p, wasserstein",
        )
    })?;
    let limit = number(g, at, "limit")?.ok_or_else(|| bad(format!("{at}.limit"), "missing"))?;
    let threshold = if statistic.is_p_value() {
        format!("{} ≥ {limit}", statistic.as_str())
    } else {
        format!("{} ≤ {limit}", statistic.as_str())
    };
    Ok(TypedGate {
        gate: Gate::drift(field, statistic, limit),
        kind: "drift",
        keys: &["field", "statistic", "limit"],
        threshold,
    })
}

fn path(at: &str, key: &str) -> String {
    if at.is_empty() {
        key.to_owned()
    } else {
        format!("{at}.{key}")
    }
}

fn object<'a>(v: &'a Value, at: &str) -> Result<&'a Map<String, Value>, PlanDocumentError> {
    v.as_object()
        .ok_or_else(|| bad(at, "must be a JSON object"))
}

fn only(m: &Map<String, Value>, at: &str, allowed: &[&str]) -> Result<(), PlanDocumentError> {
    match m.keys().find(|k| !allowed.contains(&k.as_str())) {
        Some(k) => Err(bad(
            path(at, k),
            format!("unknown field: expected one of {}", allowed.join(", ")),
        )),
        None => Ok(()),
    }
}

fn number(m: &Map<String, Value>, at: &str, key: &str) -> Result<Option<f64>, PlanDocumentError> {
    match m.get(key) {
        None => Ok(None),
        Some(v) => v
            .as_f64()
            .map(Some)
            .ok_or_else(|| bad(path(at, key), format!("must be a number, got {v}"))),
    }
}

fn count(m: &Map<String, Value>, at: &str, key: &str) -> Result<Option<u64>, PlanDocumentError> {
    match m.get(key) {
        None => Ok(None),
        Some(v) => v
            .as_u64()
            .map(Some)
            .ok_or_else(|| bad(path(at, key), format!("must be a whole number, got {v}"))),
    }
}

fn seconds(m: &Map<String, Value>, at: &str, key: &str) -> Result<Duration, PlanDocumentError> {
    let s = number(m, at, key)?.ok_or_else(|| bad(path(at, key), "missing"))?;
    Duration::try_from_secs_f64(s).map_err(|_| {
        bad(
            path(at, key),
            format!("must be a number of seconds, got {s}"),
        )
    })
}

/// Parses JSON, refusing duplicate keys in every object (serde_json's
/// `Value` would keep the last one silently).
pub(crate) fn strict_json(bytes: &[u8]) -> Result<Value, String> {
    serde_json::from_slice::<Strict>(bytes)
        .map(|s| s.0)
        .map_err(|e| format!("invalid JSON: {e}"))
}

struct Strict(Value);

impl<'de> serde::Deserialize<'de> for Strict {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(StrictVisitor).map(Strict)
    }
}

struct StrictVisitor;

impl<'de> serde::de::Visitor<'de> for StrictVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Value, E> {
        Number::from_f64(v)
            .map(Value::Number)
            .ok_or_else(|| E::custom("a number that is not finite"))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(Strict(v)) = seq.next_element()? {
            items.push(v);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut m: A) -> Result<Value, A::Error> {
        let mut fields = Map::new();
        while let Some(key) = m.next_key::<String>()? {
            if fields.contains_key(&key) {
                return Err(serde::de::Error::custom(format!("duplicate field {key:?}")));
            }
            let Strict(value) = m.next_value()?;
            fields.insert(key, value);
        }
        Ok(Value::Object(fields))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plan_document_keeps_what_its_gates_were_given() {
        let doc = br#"{
            "mirror": {"fraction": 1.0, "until_compared": 50},
            "steps": [{"split": 0.1, "bake_seconds": 30}],
            "gates": [
                {"type": "error_rate", "max": 0.01, "min_sample": 200},
                {"type": "latency", "quantile": 0.99, "max_ratio": 1.5, "slack_ms": 5, "min_sample": 100, "name": "p99"},
                {"type": "agreement", "min": 0.95, "min_sample": 50}
            ]
        }"#;
        let (plan, specs) = plan_document(doc).unwrap();
        assert_eq!(plan.gates().len(), 3);
        let shown: Vec<(&str, &str, &str, u64)> = specs
            .iter()
            .map(|s| (s.name.as_str(), s.kind, s.threshold.as_str(), s.min_sample))
            .collect();
        assert_eq!(
            shown,
            [
                ("error_rate", "error_rate", "error rate ≤ 0.01", 200),
                ("p99", "latency", "p99 ≤ 1.5× stable + 5 ms", 100),
                ("agreement", "agreement", "agreement ≥ 0.95", 50),
            ]
        );
    }
}
