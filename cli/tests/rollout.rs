//! The `rollout` binary end to end: a real admin on 127.0.0.1:0, the built
//! binary run as a user runs it, and the router's state checked after each
//! command.

mod support;

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::process::Stdio;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;
use tower_rollout::plan::PlanState;
use tower_rollout::Color;

use support::{command, fleet, one_model, predict, replica, rollout, row, run, Run, TOKEN};

/// Exit codes, as `rollout --help` documents them.
const OK: i32 = 0;
const USAGE: i32 = 2;
const UNAUTHORIZED: i32 = 3;
const NOT_FOUND: i32 = 4;
const CONFLICT: i32 = 5;
const UNREACHABLE: i32 = 6;

#[track_caller]
fn expect(run: &Run, code: i32) {
    assert_eq!(run.code, code, "exit code; {run:#?}");
}

#[test]
fn status_shows_the_table_and_parses_as_json() {
    let (server, handle) = one_model();
    for _ in 0..3 {
        assert_eq!(predict(server.addr, "/predict"), "v1");
    }
    handle.set_split(0.25).unwrap();
    handle.mirror_standby(0.5).unwrap();

    let r = rollout(&server, &["status"]);
    expect(&r, OK);
    let header = row(&r.stdout, &["COLOR"]);
    assert_eq!(
        header,
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
    let generation = handle.generation().to_string();
    assert_eq!(
        row(&r.stdout, &["blue"]),
        [
            "blue",
            "v1",
            "live",
            "75%",
            "-",
            "0",
            "3",
            "-",
            generation.as_str(),
            "-"
        ]
    );
    assert_eq!(
        row(&r.stdout, &["green"]),
        ["green", "v2", "standby", "25%", "50%", "0", "0", "-"]
    );

    let r = rollout(&server, &["status", "--json"]);
    expect(&r, OK);
    let doc: Value = serde_json::from_str(&r.stdout).expect("status --json is JSON");
    let status = handle.status();
    assert_eq!(doc["active"], status.active.as_str());
    assert_eq!(doc["generation"], status.generation);
    assert_eq!(doc["split"], 0.25);
    assert_eq!(doc["colors"]["blue"]["served"], 3);
}

#[test]
fn control_commands_steer_the_router() {
    let (server, handle) = one_model();

    let r = rollout(&server, &["promote"]);
    expect(&r, OK);
    assert_eq!(handle.active(), Color::Green);
    assert!(
        r.stdout
            .starts_with("promoted: green (v2) is live, blue (v1) standby"),
        "{r:#?}"
    );
    assert_eq!(predict(server.addr, "/predict"), "v2");

    // A promote *to* the live color is a no-op, safe to retry.
    let generation = handle.generation();
    let r = rollout(&server, &["promote", "--to", "green"]);
    expect(&r, OK);
    assert!(
        r.stdout.starts_with("unchanged: green (v2) is live"),
        "{r:#?}"
    );
    assert_eq!(handle.generation(), generation);

    let r = rollout(&server, &["rollback"]);
    expect(&r, OK);
    assert_eq!(handle.active(), Color::Blue);
    assert!(
        r.stdout.starts_with("rolled back: blue (v1) is live"),
        "{r:#?}"
    );

    let r = rollout(&server, &["promote", "--version", "v2"]);
    expect(&r, OK);
    assert_eq!(handle.active(), Color::Green);
    rollout(&server, &["promote", "--to", "blue"]);
    assert_eq!(handle.active(), Color::Blue);

    let r = rollout(&server, &["split", "10%"]);
    expect(&r, OK);
    assert_eq!(handle.status().split, 0.1);
    assert!(r.stdout.contains("split 10%"), "{r:#?}");
    let r = rollout(&server, &["mirror", "0.5"]);
    expect(&r, OK);
    assert_eq!(handle.status().mirror, 0.5);

    // Out of range: the server's message, the usage code, nothing changed.
    let generation = handle.generation();
    let r = rollout(&server, &["split", "1.5"]);
    expect(&r, USAGE);
    assert!(
        r.stderr
            .contains("invalid split: 1.5 is not a fraction between 0 and 1"),
        "{r:#?}"
    );
    assert_eq!(
        (handle.generation(), handle.status().split),
        (generation, 0.1)
    );

    // --json prints the server's answer.
    let r = rollout(&server, &["--json", "split", "0"]);
    expect(&r, OK);
    let doc: Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(
        (doc["split"].as_f64(), doc["changed"].as_bool()),
        (Some(0.0), Some(true))
    );
}

#[test]
fn a_stale_generation_is_a_conflict_and_changes_nothing() {
    let (server, handle) = one_model();
    handle.set_split(0.1).unwrap();
    let seen = handle.generation();
    handle.set_split(0.2).unwrap();
    let now = handle.generation();

    let r = rollout(
        &server,
        &["promote", "--expect-generation", &seen.to_string()],
    );
    expect(&r, CONFLICT);
    assert!(
        r.stderr.contains(&format!(
            "expected generation {seen}, the state is at {now}"
        )),
        "{r:#?}"
    );
    assert_eq!((handle.active(), handle.generation()), (Color::Blue, now));

    let r = rollout(
        &server,
        &["split", "0.3", "--expect-generation", &now.to_string()],
    );
    expect(&r, OK);
    assert_eq!(handle.status().split, 0.3);
}

#[test]
fn deploy_names_the_next_version_on_every_replica() {
    let (server, handle, replica) = replica();
    let r = rollout(&server, &["deploy", "v3"]);
    expect(&r, OK);
    assert!(r.stdout.contains("deployed"), "{r:#?}");
    // This replica's loader loads it into the standby; then it is promoted.
    let deadline = Instant::now() + Duration::from_secs(10);
    while handle.version(Color::Green).as_str() != "v3" {
        assert!(
            Instant::now() < deadline,
            "v3 not loaded: {:?}",
            replica.status()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        // The report under the lease says v3 once it was republished.
        let r = rollout(&server, &["promote"]);
        if r.code == OK {
            break;
        }
        expect(&r, CONFLICT);
        assert!(Instant::now() < deadline, "{r:#?}");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(predict(server.addr, "/predict"), "v3");
    // A version no loader knows: written, then reported by the replica.
    let r = rollout(&server, &["deploy", "v9"]);
    expect(&r, OK);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !format!("{:?}", replica.status().loads[0]).contains("no model v9") {
        assert!(Instant::now() < deadline, "{:?}", replica.status());
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(predict(server.addr, "/predict"), "v3", "still served");
    // The admin of one router cannot deploy from a label.
    let (one, _) = one_model();
    let r = rollout(&one, &["deploy", "v3"]);
    expect(&r, CONFLICT);
    assert!(r.stderr.contains("replica"), "{r:#?}");
}

#[test]
fn a_wrong_or_missing_token_is_refused() {
    let (server, handle) = one_model();

    let mut cmd = command();
    cmd.args(["--url", &server.url, "--token", "not-the-token", "promote"]);
    let r = run(cmd);
    expect(&r, UNAUTHORIZED);
    assert!(r.stderr.contains("invalid bearer token"), "{r:#?}");
    assert!(
        r.stderr.contains("--token"),
        "says where the token comes from: {r:#?}"
    );
    assert_eq!((handle.active(), handle.generation()), (Color::Blue, 0));

    let mut cmd = command();
    cmd.args(["--url", &server.url, "status"]);
    let r = run(cmd);
    expect(&r, USAGE);
    assert!(r.stderr.contains("ROLLOUT_ADMIN_TOKEN"), "{r:#?}");

    let mut cmd = command();
    cmd.env("ROLLOUT_ADMIN_TOKEN", TOKEN).arg("status");
    let r = run(cmd);
    expect(&r, USAGE);
    assert!(r.stderr.contains("ROLLOUT_ADMIN_URL"), "{r:#?}");
}

#[test]
fn a_closed_port_or_a_silent_server_is_unreachable() {
    let closed = {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap()
    };
    let mut cmd = command();
    cmd.args([
        "--url",
        &format!("http://{closed}/admin"),
        "--token",
        TOKEN,
        "status",
    ]);
    let r = run(cmd);
    expect(&r, UNREACHABLE);
    assert!(r.stderr.contains("cannot connect"), "{r:#?}");
    assert!(
        r.stderr.contains(&closed.to_string()),
        "names the address: {r:#?}"
    );

    // Accepts connections (the kernel's backlog) but never answers.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = silent.local_addr().unwrap();
    let started = Instant::now();
    let mut cmd = command();
    cmd.args(["--url", &format!("http://{addr}/admin"), "--token", TOKEN])
        .args(["--timeout", "0.5", "promote"]);
    let r = run(cmd);
    expect(&r, UNREACHABLE);
    assert!(r.stderr.contains("no answer within 0.5 s"), "{r:#?}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "bounded by --timeout"
    );
    drop(silent);
}

#[test]
fn plans_start_from_a_file_and_are_steered() {
    let (server, handle) = one_model();
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("rollout-plans");
    std::fs::create_dir_all(&dir).unwrap();

    let bad = dir.join("bad.json");
    std::fs::write(&bad, r#"{"steps": [{"split": 0.1}]}"#).unwrap();
    let r = rollout(&server, &["plan", "start", bad.to_str().unwrap()]);
    expect(&r, USAGE);
    assert!(
        r.stderr.contains("steps[0].bake_seconds"),
        "names the field: {r:#?}"
    );
    assert!(handle.plan_status().is_none(), "nothing started");

    let r = rollout(
        &server,
        &["plan", "start", dir.join("missing.json").to_str().unwrap()],
    );
    expect(&r, USAGE);
    assert!(r.stderr.contains("cannot read the plan document"), "{r:#?}");

    let good = dir.join("good.json");
    std::fs::write(
        &good,
        r#"{
            "steps": [{"split": 0.1, "bake_seconds": 600}],
            "gates": [{"type": "error_rate", "max": 0.01, "min_sample": 10}],
            "interval_ms": 100
        }"#,
    )
    .unwrap();
    let r = rollout(&server, &["plan", "start", good.to_str().unwrap()]);
    expect(&r, OK);
    assert!(r.stdout.starts_with("plan started: "), "{r:#?}");
    let plan = handle.plan_status().expect("a plan runs");
    assert!(!plan.state.is_finished(), "{plan:?}");
    assert_eq!(handle.status().split, 0.1, "the plan's first step");

    let r = rollout(&server, &["plan", "start", good.to_str().unwrap()]);
    expect(&r, CONFLICT);

    // The gate's verdict shows once the plan has evaluated it (every 100 ms):
    // inconclusive, no request has reached the minimum sample.
    let deadline = Instant::now() + Duration::from_secs(10);
    let r = loop {
        let r = rollout(&server, &["status"]);
        expect(&r, OK);
        if r.stdout.contains("gate error_rate: ") || Instant::now() > deadline {
            break r;
        }
    };
    assert!(
        r.stdout
            .contains("plan running: green (v2) rolls out over blue (v1)"),
        "{r:#?}"
    );
    assert!(r.stdout.contains("gate error_rate: inconclusive"), "{r:#?}");
    assert!(
        row(&r.stdout, &["blue"]).ends_with(&[
            "canary".into(),
            "1/1".into(),
            "at".into(),
            "0.1".into()
        ]),
        "{r:#?}"
    );

    let r = rollout(&server, &["plan", "pause"]);
    expect(&r, OK);
    assert_eq!(handle.plan_status().unwrap().state, PlanState::Paused);
    let r = rollout(&server, &["plan", "resume"]);
    expect(&r, OK);
    assert_ne!(handle.plan_status().unwrap().state, PlanState::Paused);
    let r = rollout(&server, &["plan", "abort"]);
    expect(&r, OK);
    let plan = handle.plan_status().unwrap();
    assert_eq!(plan.state, PlanState::Aborted);
    assert_eq!((handle.active(), handle.status().split), (Color::Blue, 0.0));
    assert!(r.stdout.contains("plan aborted"), "{r:#?}");

    let r = rollout(&server, &["status"]);
    assert!(
        row(&r.stdout, &["blue"]).contains(&"aborted:".to_owned()),
        "{r:#?}"
    );
    assert!(r.stdout.contains("plan aborted: "), "{r:#?}");

    let r = rollout(&server, &["plan", "resume"]);
    expect(&r, CONFLICT);
    assert!(r.stderr.contains("nothing to do"), "{r:#?}");
}

#[test]
fn a_fleet_admin_lists_and_addresses_models() {
    let (server, sentiment, vision) = fleet();

    let r = rollout(&server, &["models"]);
    expect(&r, OK);
    assert_eq!(r.stdout, "sentiment\nvision\n");

    let r = rollout(&server, &["--model", "vision", "promote"]);
    expect(&r, OK);
    assert!(
        r.stdout.starts_with("promoted: vision: green (v2) is live"),
        "{r:#?}"
    );
    assert_eq!(
        (sentiment.active(), vision.active()),
        (Color::Blue, Color::Green)
    );
    assert_eq!(predict(server.addr, "/vision/predict"), "v2");
    assert_eq!(predict(server.addr, "/sentiment/predict"), "v1");

    let r = rollout(&server, &["status"]);
    expect(&r, OK);
    let lines: Vec<&str> = r.stdout.lines().collect();
    let at = |name: &str| lines.iter().position(|l| l.starts_with(name)).unwrap();
    let cells = |i: usize| lines[i].split_whitespace().collect::<Vec<_>>();
    assert_eq!(
        cells(at("sentiment"))[..4],
        ["sentiment", "blue", "v1", "live"]
    );
    assert_eq!(cells(at("sentiment") + 1)[..3], ["green", "v2", "standby"]);
    assert_eq!(
        cells(at("vision"))[..4],
        ["vision", "blue", "v1", "standby"]
    );
    assert_eq!(cells(at("vision") + 1)[..3], ["green", "v2", "live"]);

    let r = rollout(&server, &["status", "--model", "sentiment", "--json"]);
    expect(&r, OK);
    let doc: Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(doc["active"], "blue");

    let r = rollout(&server, &["--model", "audio", "status"]);
    expect(&r, NOT_FOUND);
    assert!(r.stderr.contains("unknown model \"audio\""), "{r:#?}");

    let r = rollout(&server, &["promote"]);
    expect(&r, NOT_FOUND);
    assert!(
        r.stderr.contains("--model NAME"),
        "hints at --model: {r:#?}"
    );
    assert_eq!(sentiment.generation(), 0);

    let (one, _) = one_model();
    let r = rollout(&one, &["models"]);
    expect(&r, NOT_FOUND);
    assert!(r.stderr.contains("serves one model, not a fleet"), "{r:#?}");
    let r = rollout(&one, &["--model", "vision", "status"]);
    expect(&r, NOT_FOUND);
    assert!(r.stderr.contains("takes no --model"), "{r:#?}");
}

/// Frames read from a watching process, as they arrive.
struct Frames {
    lines: mpsc::Receiver<String>,
    current: Vec<String>,
    count: usize,
}

impl Frames {
    /// Waits (until `deadline`) for a complete frame for which `want` holds;
    /// returns it.
    fn until(&mut self, deadline: Instant, want: impl Fn(&str) -> bool) -> String {
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = self
                .lines
                .recv_timeout(left)
                .unwrap_or_else(|_| panic!("no such frame in time; last: {:?}", self.current));
            if line.starts_with("rollout status: ") && !self.current.is_empty() {
                let frame = std::mem::take(&mut self.current).join("\n");
                self.count += 1;
                if want(&frame) {
                    self.current.push(line);
                    return frame;
                }
            }
            self.current.push(line);
        }
    }
}

#[test]
fn watch_redraws_and_shows_a_change_made_meanwhile() {
    let (server, handle) = one_model();
    let mut cmd = command();
    cmd.env("ROLLOUT_ADMIN_URL", &server.url)
        .env("ROLLOUT_ADMIN_TOKEN", TOKEN)
        .args(["status", "--watch", "--interval", "0.1"])
        .stdout(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            if tx.send(line.unwrap()).is_err() {
                break;
            }
        }
    });
    let mut frames = Frames {
        lines: rx,
        current: Vec::new(),
        count: 0,
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    let live = |frame: &str, color: &str| {
        frame.lines().any(|l| {
            let cells: Vec<&str> = l.split_whitespace().collect();
            cells.len() > 2 && cells[0] == color && cells[2] == "live"
        })
    };

    let first = frames.until(deadline, |f| live(f, "blue"));
    assert!(
        !first.contains('\x1b'),
        "no terminal codes into a pipe: {first:?}"
    );
    handle.promote().unwrap();
    let after = frames.until(deadline, |f| live(f, "green"));
    assert!(
        after.contains(&format!("{}", handle.generation())),
        "{after}"
    );
    assert!(frames.count >= 2, "redrawn: {} frames", frames.count);
    child.kill().unwrap();
    child.wait().unwrap();
}

/// On a terminal (a pseudo-terminal from util-linux's `script`) each frame
/// clears the screen and draws from the top left corner.
#[test]
fn watch_redraws_in_place_on_a_terminal() {
    let (server, _handle) = one_model();
    let watch = format!(
        "{} status --watch --interval 0.1 --count 3",
        env!("CARGO_BIN_EXE_rollout")
    );
    let mut cmd = std::process::Command::new("script");
    cmd.args(["-q", "-e", "-c", &watch, "/dev/null"])
        .env("ROLLOUT_ADMIN_URL", &server.url)
        .env("ROLLOUT_ADMIN_TOKEN", TOKEN)
        .stdin(Stdio::null());
    let out = cmd.output().unwrap_or_else(|e| {
        panic!("`script` runs the watch on a terminal: {e} (apt-get install bsdutils)")
    });
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8(out.stdout).unwrap();
    let frames: Vec<&str> = text.split("\x1b[H\x1b[2J").skip(1).collect();
    assert_eq!(frames.len(), 3, "{text:?}");
    for frame in frames {
        assert!(frame.starts_with("rollout status: "), "{frame:?}");
        assert!(frame.contains("blue   v1       live"), "{frame:?}");
    }
}

#[test]
fn watch_stops_after_count_frames_with_a_json_line_each() {
    let (server, handle) = one_model();
    let r = rollout(
        &server,
        &[
            "status",
            "--watch",
            "--interval",
            "0.1",
            "--count",
            "3",
            "--json",
        ],
    );
    expect(&r, OK);
    let docs: Vec<Value> = r
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON document per line"))
        .collect();
    assert_eq!(docs.len(), 3);
    for doc in docs {
        assert_eq!(doc["generation"], handle.generation());
    }
}

#[test]
fn help_and_usage_errors() {
    let r = run({
        let mut c = command();
        c.arg("--help");
        c
    });
    expect(&r, OK);
    assert!(r.stdout.contains("Exit codes:"), "{r:#?}");
    for code in [
        "  2  usage",
        "  3  unauthorized",
        "  5  conflict",
        "  6  unreachable",
    ] {
        assert!(r.stdout.contains(code), "{code}: {r:#?}");
    }
    assert!(r.stdout.contains("ROLLOUT_ADMIN_URL") && r.stdout.contains("ROLLOUT_ADMIN_TOKEN"));

    for args in [
        &[][..],
        &["split", "ten"],
        &["promote", "--to", "red"],
        &["promote", "--to", "blue", "--version", "v1"],
        &["status", "--count", "2"],
        &["--model", "a/b", "status"],
    ] {
        let mut c = command();
        c.args(args);
        let r = run(c);
        expect(&r, USAGE);
        assert!(!r.stderr.is_empty(), "{args:?}");
    }

    let mut c = command();
    c.args([
        "--url",
        "https://127.0.0.1:1/admin",
        "--token",
        TOKEN,
        "status",
    ]);
    let r = run(c);
    expect(&r, USAGE);
    assert!(r.stderr.contains("https is not supported"), "{r:#?}");
}
