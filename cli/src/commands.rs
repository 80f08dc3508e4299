//! Each command: the admin route it calls, the body it sends, what it prints.

use std::io::{Read, Write};

use serde_json::{json, Map, Value};

use crate::args::{Cli, Command, Expect, PlanCommand};
use crate::client::AdminClient;
use crate::failure::{Failure, Kind};
use crate::output::{print_json, write};
use crate::{table, view, watch};

/// Runs the command, printing its answer to `out`.
pub(crate) fn run(cli: &Cli, out: &mut dyn Write) -> Result<(), Failure> {
    if matches!(cli.command, Command::Models) && cli.model.is_some() {
        return Err(Failure::usage(
            "--model does not apply to `models` (it lists them)",
        ));
    }
    let client = AdminClient::new(&cli.conn, cli.model.as_deref())?;
    let model = cli.model.as_deref();
    match &cli.command {
        Command::Status(args) if args.watch => watch::run(&client, model, args, cli.json, out),
        Command::Status(_) => {
            let doc = client.get("status")?;
            if cli.json {
                return print_json(out, &doc);
            }
            let models = view::models(&doc, model)?;
            write(out, &table::render(&models))
        }
        Command::Promote(args) => {
            let mut body = conditional(&args.expect);
            if let Some(to) = args.to {
                body.insert("to".into(), json!(to.as_str()));
            }
            if let Some(v) = &args.version {
                body.insert("version".into(), json!(v));
            }
            if args.force {
                body.insert("force".into(), json!(true));
            }
            control(&client, cli, out, "promote", body, "promoted")
        }
        Command::Rollback(expect) => control(
            &client,
            cli,
            out,
            "rollback",
            conditional(expect),
            "rolled back",
        ),
        Command::Split(args) => {
            let mut body = conditional(&args.expect);
            body.insert("fraction".into(), json!(args.fraction));
            control(&client, cli, out, "split", body, "split set")
        }
        Command::Mirror(args) => {
            let mut body = conditional(&args.expect);
            body.insert("fraction".into(), json!(args.fraction));
            control(&client, cli, out, "mirror", body, "mirror set")
        }
        Command::Deploy(args) => {
            let mut body = conditional(&args.expect);
            body.insert("version".into(), json!(args.version));
            control(&client, cli, out, "deploy", body, "deployed")
        }
        Command::Plan(plan) => plan_command(&client, cli, plan, out),
        Command::Models => {
            let doc = client.get_admin("models")?;
            if cli.json {
                return print_json(out, &doc);
            }
            let names = doc.get("models").and_then(Value::as_array).ok_or_else(|| {
                Failure::new(Kind::Other, "the answer of /models has no \"models\" list")
            })?;
            let mut text = String::new();
            for name in names {
                text.push_str(name.as_str().unwrap_or("?"));
                text.push('\n');
            }
            write(out, &text)
        }
    }
}

/// `{"expect_generation": n}` when asked for.
fn conditional(expect: &Expect) -> Map<String, Value> {
    let mut body = Map::new();
    if let Some(g) = expect.expect_generation {
        body.insert("expect_generation".into(), json!(g));
    }
    body
}

/// A control route: POST the body, print the new state in one line.
fn control(
    client: &AdminClient,
    cli: &Cli,
    out: &mut dyn Write,
    route: &str,
    body: Map<String, Value>,
    done: &str,
) -> Result<(), Failure> {
    // A map of strings, numbers and booleans always serializes.
    let body = serde_json::to_vec(&Value::Object(body)).unwrap_or_default();
    let doc = client.post(route, &body)?;
    report(cli, out, &doc, done)
}

fn plan_command(
    client: &AdminClient,
    cli: &Cli,
    plan: &PlanCommand,
    out: &mut dyn Write,
) -> Result<(), Failure> {
    let (route, done, body) = match plan {
        PlanCommand::Start { file } => ("plan", "plan started", read_plan(file)?),
        PlanCommand::Pause => ("plan-pause", "plan paused", Vec::new()),
        PlanCommand::Resume => ("plan-resume", "plan resumed", Vec::new()),
        PlanCommand::Abort => ("plan-abort", "plan aborted", Vec::new()),
        PlanCommand::Promote => ("plan-promote", "plan promoting", Vec::new()),
    };
    let doc = client.post(route, &body)?;
    report(cli, out, &doc, done)
}

/// The plan document from `file`, or stdin for `-`.
fn read_plan(file: &std::path::Path) -> Result<Vec<u8>, Failure> {
    let mut bytes = Vec::new();
    let read = if file.as_os_str() == "-" {
        std::io::stdin().read_to_end(&mut bytes).map(|_| ())
    } else {
        std::fs::read(file).map(|b| bytes = b)
    };
    read.map_err(|e| {
        Failure::usage(format!(
            "cannot read the plan document {}: {e}",
            file.display()
        ))
    })?;
    Ok(bytes)
}

/// Prints a control route's answer: the JSON, or one line saying what
/// changed (or that nothing did) and the state now.
fn report(cli: &Cli, out: &mut dyn Write, doc: &Value, done: &str) -> Result<(), Failure> {
    if cli.json {
        return print_json(out, doc);
    }
    let model = view::model(doc, cli.model.as_deref())?;
    let changed = doc.get("changed").and_then(Value::as_bool).unwrap_or(true);
    let what = if changed { done } else { "unchanged" };
    write(out, &format!("{what}: {}\n", summary(&model)))
}

/// `green (v2) is live, blue (v1) standby; split 0%, mirror 0%; generation 3`
/// and the plan's state when one is known.
fn summary(m: &view::ModelView) -> String {
    let (live, standby) = if m.active == "green" {
        (("green", &m.green), ("blue", &m.blue))
    } else {
        (("blue", &m.blue), ("green", &m.green))
    };
    let mut s = format!(
        "{} ({}) is live, {} ({}) standby; split {}, mirror {}; generation {}",
        live.0,
        live.1.version,
        standby.0,
        standby.1.version,
        table::percent(m.split),
        table::percent(m.mirror),
        m.generation
    );
    if let Some(p) = &m.plan {
        let state = p.outcome.as_deref().unwrap_or(&p.state);
        s.push_str(&format!("; plan {state}"));
        if !p.is_finished() {
            s.push_str(&format!(", {}", p.phase));
        }
    }
    if let Some(name) = &m.name {
        s = format!("{name}: {s}");
    }
    s
}
