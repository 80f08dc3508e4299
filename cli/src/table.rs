//! The human status table: a row per color of each model, then a line per
//! comparison and plan.

use std::fmt::Write as _;

use crate::view::{ColorView, ModelView, PlanView};

/// The table for `models`, ending with a newline.
pub(crate) fn render(models: &[ModelView]) -> String {
    let named = models.iter().any(|m| m.name.is_some());
    let mut header = vec![
        "COLOR",
        "VERSION",
        "ROLE",
        "TRAFFIC",
        "MIRROR",
        "IN-FLIGHT",
        "SERVED",
        "ERRORS",
        "GEN",
        "PLAN",
    ];
    if named {
        header.insert(0, "MODEL");
    }
    let mut rows = vec![header.into_iter().map(String::from).collect::<Vec<_>>()];
    for m in models {
        for (i, (color, c)) in [("blue", &m.blue), ("green", &m.green)]
            .into_iter()
            .enumerate()
        {
            let mut row = color_row(m, color, c);
            if i == 0 {
                row.push(m.generation.to_string());
                row.push(m.plan.as_ref().map_or("-".into(), plan_cell));
            }
            if named {
                let name = m.name.as_deref().unwrap_or("-");
                row.insert(0, if i == 0 { name.into() } else { String::new() });
            }
            rows.push(row);
        }
    }
    let mut out = columns(&rows);
    for m in models {
        out.push_str(&notes(m));
    }
    out
}

fn color_row(m: &ModelView, color: &str, c: &ColorView) -> Vec<String> {
    let live = m.active == color;
    let mut role = if live { "live" } else { "standby" }.to_owned();
    if c.readiness != "ready" && c.readiness != "unknown" {
        role.push_str(&format!(" ({})", c.readiness.replace('_', " ")));
    }
    let traffic = if live { 1.0 - m.split } else { m.split };
    let mirror = if live || m.mirror == 0.0 {
        "-".into()
    } else {
        percent(m.mirror)
    };
    let errors = if c.finished == 0 {
        "-".into()
    } else {
        format!("{}/{}", c.failures, c.finished)
    };
    vec![
        color.into(),
        c.version.clone(),
        role,
        percent(traffic),
        mirror,
        c.in_flight.to_string(),
        c.served.to_string(),
        errors,
    ]
}

/// The plan's column: its state and phase, or its outcome once finished.
fn plan_cell(p: &PlanView) -> String {
    match &p.outcome {
        Some(outcome) => outcome.clone(),
        None => format!("{}: {}", p.state, p.phase),
    }
}

/// Lines under the table: the comparison's agreement and the plan's gates.
fn notes(m: &ModelView) -> String {
    let who = m
        .name
        .as_ref()
        .map(|n| format!("{n}: "))
        .unwrap_or_default();
    let mut out = String::new();
    if let Some(c) = &m.comparison {
        let sides = match (&c.shadow, &c.primary) {
            (Some(s), Some(p)) => format!(" ({s} vs {p})"),
            _ => String::new(),
        };
        let agree = c.agreement_rate.map_or("no agreement rate".into(), |r| {
            format!("{} agree", percent(r))
        });
        let _ = write!(
            out,
            "\n{who}compared {}{sides}: {agree}, {} differ",
            c.total, c.mismatched
        );
        if !c.top_fields.is_empty() {
            let fields: Vec<String> = c
                .top_fields
                .iter()
                .map(|f| format!("{} {}", f.field, f.count))
                .collect();
            let _ = write!(out, "; most in {}", fields.join(", "));
        }
    }
    if let Some(p) = &m.plan {
        let (candidate, stable) = (with_version(m, &p.candidate), with_version(m, &p.stable));
        let _ = match &p.outcome {
            Some(outcome) => write!(out, "\n{who}plan {outcome}: {candidate} over {stable}"),
            None => write!(
                out,
                "\n{who}plan {}: {candidate} rolls out over {stable}, {}",
                p.state, p.phase
            ),
        };
        for g in &p.gates {
            let detail = g
                .detail
                .as_ref()
                .map(|d| format!(" ({d})"))
                .unwrap_or_default();
            let _ = write!(out, "\n  gate {}: {}{detail}", g.gate, g.verdict);
        }
    }
    if !out.is_empty() {
        out.push('\n');
    }
    out
}

/// `green (v2)`: a color with the version it holds.
fn with_version(m: &ModelView, color: &str) -> String {
    match color {
        "blue" => format!("blue ({})", m.blue.version),
        "green" => format!("green ({})", m.green.version),
        other => other.to_owned(),
    }
}

/// Left-aligned columns two spaces apart, no trailing spaces.
fn columns(rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = Vec::new();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            let w = cell.chars().count();
            match widths.get_mut(i) {
                Some(max) => *max = (*max).max(w),
                None => widths.push(w),
            }
        }
    }
    let mut out = String::new();
    for row in rows {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            let _ = write!(line, "{cell:<w$}  ", w = widths[i]);
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// `0.1` as `10%`, `0.005` as `0.5%`: at most two decimals, no trailing zeros.
pub(crate) fn percent(fraction: f64) -> String {
    let s = format!("{:.2}", fraction * 100.0);
    let s = s.trim_end_matches('0').trim_end_matches('.');
    format!("{s}%")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::view::{ComparisonView, FieldCount, GateView};

    fn color(version: &str, served: u64) -> ColorView {
        ColorView {
            version: version.into(),
            readiness: "ready".into(),
            in_flight: 0,
            served,
            finished: 0,
            failures: 0,
        }
    }

    fn model(name: Option<&str>) -> ModelView {
        ModelView {
            name: name.map(Into::into),
            active: "blue".into(),
            split: 0.1,
            mirror: 1.0,
            generation: 3,
            blue: color("v1", 90),
            green: color("v2", 10),
            comparison: None,
            plan: None,
        }
    }

    #[test]
    fn one_model_without_a_name_column() {
        let table = render(&[model(None)]);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 3, "{table}");
        let cells = |l: &str| l.split_whitespace().map(String::from).collect::<Vec<_>>();
        assert_eq!(
            cells(lines[0]),
            [
                "COLOR",
                "VERSION",
                "ROLE",
                "TRAFFIC",
                "MIRROR",
                "IN-FLIGHT",
                "SERVED",
                "ERRORS",
                "GEN",
                "PLAN"
            ]
        );
        assert_eq!(
            cells(lines[1]),
            ["blue", "v1", "live", "90%", "-", "0", "90", "-", "3", "-"]
        );
        assert_eq!(
            cells(lines[2]),
            ["green", "v2", "standby", "10%", "100%", "0", "10", "-"]
        );
        // Columns line up: every cell of a column starts at the same offset.
        let at = |l: &str, s: &str| l.find(s).unwrap();
        assert_eq!(at(lines[0], "SERVED"), at(lines[2], " 10 ") + 1);
    }

    #[test]
    fn a_fleet_with_a_comparison_and_a_plan() {
        let mut m = model(Some("iris"));
        m.green.readiness = "not_ready".into();
        m.green.finished = 40;
        m.green.failures = 2;
        m.comparison = Some(ComparisonView {
            primary: Some("blue v1".into()),
            shadow: Some("green v2".into()),
            total: 200,
            mismatched: 3,
            agreement_rate: Some(0.985),
            top_fields: vec![FieldCount {
                field: "/label".into(),
                count: 3,
            }],
        });
        m.plan = Some(PlanView {
            state: "running".into(),
            phase: "canary 1/2 at 0.1".into(),
            stable: "blue".into(),
            candidate: "green".into(),
            gates: vec![GateView {
                gate: "error_rate".into(),
                verdict: "inconclusive".into(),
                detail: Some("40 of 200 samples".into()),
            }],
            outcome: None,
        });
        let table = render(&[m, model(Some("vision"))]);
        let lines: Vec<&str> = table.lines().collect();
        assert!(lines[0].starts_with("MODEL  "), "{table}");
        assert!(lines[1].starts_with("iris    blue"), "{table}");
        assert!(lines[1].ends_with("running: canary 1/2 at 0.1"), "{table}");
        assert!(
            lines[2]
                .trim_start()
                .starts_with("green  v2       standby (not ready)"),
            "{table}"
        );
        assert_eq!(lines[2].find("green"), lines[1].find("blue"), "{table}");
        assert!(lines[2].contains(" 2/40"), "{table}");
        assert!(lines[3].starts_with("vision"), "{table}");
        assert!(
            table.contains(
                "iris: compared 200 (green v2 vs blue v1): 98.5% agree, 3 differ; most in /label 3"
            ),
            "{table}"
        );
        assert!(table.contains(
            "iris: plan running: green (v2) rolls out over blue (v1), canary 1/2 at 0.1"
        ));
        assert!(table.contains("  gate error_rate: inconclusive (40 of 200 samples)"));
    }

    #[test]
    fn percentages() {
        assert_eq!(percent(0.1), "10%");
        assert_eq!(percent(0.005), "0.5%");
        assert_eq!(percent(1.0), "100%");
        assert_eq!(percent(0.0), "0%");
        assert_eq!(percent(1.0 / 3.0), "33.33%");
    }
}
