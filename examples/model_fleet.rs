//! A model fleet: real iris classifiers served by axum behind one
//! `BlueGreenRouter`, rolled out one after another in one process while a
//! client asks: v1 (a logistic regression, blue, live), v2 (a decision tree,
//! green), then v3 (v1 retrained with other settings) deployed into the idle
//! color at run time.
//!
//! ```text
//! cargo run --example model_fleet                        # the walkthrough, then exit
//! cargo run --example model_fleet -- --serve 127.0.0.1:3000   # stay up for curl
//! ```
//!
//! The walkthrough serves on 127.0.0.1 (a port the OS picks), drives its own
//! server with a bounded number of requests, and prints each step: v1 live;
//! v2 mirrored and compared (`mirror_standby`, `shadow_report`); a sticky
//! 10% canary; promote, with a request still in flight on blue and
//! `drained(Blue)` awaited; rollback to v1 and a retried promote to v2 that
//! changes nothing; v3 deployed into the idle color while a client sends,
//! with v1's model released once `retired()` resolves; v3 mirrored and
//! compared with v2; a canary of v3; promote to v3. It exits 0 with a
//! summary, or non-zero naming what went wrong (a failed request, an answer
//! that is not the serving version's, a user who saw both versions, a model
//! not released, ...).
//!
//! `--serve ADDR` keeps the server up with green mirrored and compared and a
//! 10% canary, prints curl commands, and on Ctrl-C prints the comparison
//! report. Arguments are read with `std::env::args` ([`parse_args`]).
//!
//! `tests/model_fleet.rs` includes this file and checks [`run_walkthrough`]'s
//! [`Summary`].

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::fmt;
use std::future::Future;
use std::io::Write;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use bytes::Bytes;
use futures_util::FutureExt;
use http_body::Frame;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_stream::wrappers::ReceiverStream;

use tower_rollout::admin::Admin;
use tower_rollout::control::{ColorVersion, Deployer, TransitionKind};
use tower_rollout::drift::{DriftField, DriftSettings, FieldDrift, FieldKind};
use tower_rollout::mirror::MirrorBody;
use tower_rollout::plan::{
    AbortReason, Gate, GateVerdict, Phase, PlanError, PlanEvent, PlanOutcome, PlanRecord,
    RolloutPlan,
};
use tower_rollout::shadow::{Comparator, CompareSettings, JsonCompare, ShadowReport};
use tower_rollout::{BlueGreenRouter, Color, ConfigError, RolloutHandle};
use tower_rollout_models::{app, samples, Features, Model, Prediction, Version};

pub(crate) type DemoError = Box<dyn std::error::Error + Send + Sync>;

/// Probabilities of two versions closer than this count as agreeing.
pub(crate) const PROBABILITY_TOLERANCE: f64 = 0.25;

/// The header a client names its user with (the sticky canary key).
const USER: &str = "x-user-id";
/// The header the router names the serving color and version with.
const SERVED_BY: &str = "x-served-by";
/// The bound on every request and every wait: a broken server fails the
/// walkthrough instead of hanging it.
const DEADLINE: Duration = Duration::from_secs(30);

// === arguments ===

/// What the program was asked to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Mode {
    /// The walkthrough against its own server, then exit.
    Walkthrough,
    /// Serve on this address until Ctrl-C.
    Serve(SocketAddr),
    /// Run a rollout plan with a good v2, then with a bad one.
    Plan,
    /// Print the usage.
    Help,
}

const USAGE: &str = "usage: model_fleet [--serve ADDR | --plan]
  (no arguments)   run the walkthrough against a server on 127.0.0.1:0, then exit
  --plan           run an automated rollout plan three times: a good v2, a v2
                   that starts failing, a v2 that renames a response field;
                   print each event as it happens and a table per phase
  --serve ADDR     serve /predict on ADDR (e.g. 127.0.0.1:3000) until Ctrl-C
  --help           this text";

/// Reads the arguments (without the program name).
///
/// # Errors
/// A message for an unknown argument or a missing or bad address.
pub(crate) fn parse_args<I>(args: I) -> Result<Mode, String>
where
    I: IntoIterator<Item = String>,
{
    let mut args = args.into_iter();
    let mut mode = Mode::Walkthrough;
    while let Some(arg) = args.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((flag, value)) => (flag.to_owned(), Some(value.to_owned())),
            None => (arg.clone(), None),
        };
        match flag.as_str() {
            "--serve" => {
                let value = inline
                    .or_else(|| args.next())
                    .ok_or("--serve needs an address, e.g. --serve 127.0.0.1:3000")?;
                let addr = value.parse().map_err(|_| {
                    format!("--serve: {value:?} is not an address like 127.0.0.1:3000")
                })?;
                mode = Mode::Serve(addr);
            }
            "--plan" => mode = Mode::Plan,
            "-h" | "--help" => return Ok(Mode::Help),
            _ => return Err(format!("unknown argument {arg:?}")),
        }
    }
    Ok(mode)
}

#[tokio::main]
async fn main() -> ExitCode {
    let mode = match parse_args(std::env::args().skip(1)) {
        Ok(mode) => mode,
        Err(msg) => {
            eprintln!("{msg}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let mut out = std::io::stdout();
    let result = match mode {
        Mode::Help => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Mode::Walkthrough => match run_walkthrough(&Options::default(), &mut out).await {
            Ok(summary) => {
                let problems = summary.problems();
                if problems.is_empty() {
                    println!(
                        "checks passed: no failed request, every answer from the serving version, \
                         one version per canary user, blue drained, rollback to v1, a retried promote \
                         changed nothing, v3 deployed without a restart and v1's model released"
                    );
                    return ExitCode::SUCCESS;
                }
                Err(format!("something is wrong:\n  - {}", problems.join("\n  - ")).into())
            }
            Err(e) => Err(e),
        },
        Mode::Serve(addr) => serve(addr, &mut out).await,
        Mode::Plan => plans(&mut out).await,
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("model_fleet: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `--plan`: the plan with a good v2 (expected: promoted, no failure), a v2
/// that starts failing (expected: rolled back, no failure after the abort)
/// and a v2 that renames its `label` field (expected: aborted by the schema
/// gate in the mirror phase, before any user saw it).
async fn plans(out: &mut dyn Write) -> Result<(), DemoError> {
    let good = run_plan(Candidate::Good, out).await?;
    let bad = run_plan(Candidate::Failing, out).await?;
    let renamed = run_plan(Candidate::Renamed, out).await?;
    let mut problems = Vec::new();
    if good.outcome != Some(PlanOutcome::Promoted) || good.failed > 0 {
        problems.push(format!(
            "good v2: {:?}, {} failed requests",
            good.outcome, good.failed
        ));
    }
    if !matches!(bad.outcome, Some(PlanOutcome::Aborted(_)))
        || bad.active_at_end != Some(Color::Blue)
        || bad.failed_after_abort > 0
    {
        problems.push(format!(
            "failing v2: {:?}, active {:?}, {} failed after the abort",
            bad.outcome, bad.active_at_end, bad.failed_after_abort
        ));
    }
    let schema_abort = matches!(&renamed.outcome,
        Some(PlanOutcome::Aborted(AbortReason::Gate { gate, detail }))
            if gate == "schema_compatible" && detail.contains("/label") && detail.contains("/class"));
    if !schema_abort || renamed.failed > 0 || renamed.served_by_green > 0 {
        problems.push(format!(
            "renamed v2: {:?}, {} failed, {} answered by v2",
            renamed.outcome, renamed.failed, renamed.served_by_green
        ));
    }
    if problems.is_empty() {
        writeln!(
            out,
            "checks passed: the good v2 was promoted with no failed request; the failing v2 was rolled back \
             automatically and no request sent after the abort failed; the v2 that renamed /label was \
             stopped by the schema gate while mirrored, before any user got its answers"
        )?;
        Ok(())
    } else {
        Err(format!("something is wrong:\n  - {}", problems.join("\n  - ")).into())
    }
}

// === the server ===

/// The comparator for mirrored copies: JSON, version ignored, labels equal,
/// each probability within [`PROBABILITY_TOLERANCE`].
pub(crate) fn comparator() -> Result<Comparator, ConfigError> {
    JsonCompare::new()
        .ignore("/version")
        .abs_tolerance(PROBABILITY_TOLERANCE)
        .build()
}

/// Loads the next model into the fleet's idle color. The router compares,
/// so its inner services take [`MirrorBody`] request bodies.
type FleetDeployer = Deployer<axum::Router, http::Request<MirrorBody<axum::body::Body>>>;

/// The fleet's server: v1 (blue) and v2 (green) behind one router.
struct Fleet {
    addr: SocketAddr,
    handle: RolloutHandle,
    deployer: FleetDeployer,
    server: JoinHandle<std::io::Result<()>>,
}

impl Fleet {
    async fn start<F>(
        listener: TcpListener,
        v1: &Model,
        v2: &Model,
        admin_token: Option<&str>,
        shutdown: F,
    ) -> Result<Fleet, DemoError>
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let (router, handle) = BlueGreenRouter::builder()
            .versions(v1.version().as_str(), v2.version().as_str())
            .sticky_header(USER)
            .served_by_header(SERVED_BY)
            .compare(CompareSettings::new(comparator()?).drift(drift_fields()?))
            .build(app(v1.clone()), app(v2.clone()))?;
        let deployer = router.deployer::<axum::body::Body>();
        // axum::serve wants axum's own response type: mount the router as the
        // fallback of an axum Router, with the admin routes beside it.
        let mut app = axum::Router::new().fallback_service(router);
        let mut admin = None;
        if let Some(token) = admin_token {
            let built = Admin::builder()
                .token(token)
                .handle(handle.clone())
                .build()?;
            app = app.nest_service("/admin", built.clone());
            admin = Some(built);
        }
        // An open dashboard keeps its event stream open: end the streams when
        // the shutdown starts, or the graceful shutdown waits for the tab.
        let shutdown = async move {
            shutdown.await;
            if let Some(admin) = admin {
                admin.close_streams();
            }
        };
        let addr = listener.local_addr()?;
        let server = tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(shutdown)
                .await
        });
        Ok(Fleet {
            addr,
            handle,
            deployer,
            server,
        })
    }
}

fn describe(model: &Model) -> String {
    format!(
        "{}, training accuracy {:.1}% on iris, trained in {} ms",
        model.version().describe(),
        100.0 * model.training_accuracy(),
        model.trained_in().as_millis()
    )
}

async fn serve(addr: SocketAddr, out: &mut dyn Write) -> Result<(), DemoError> {
    let (v1, v2) = Model::train_both()?;
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|e| format!("cannot listen on {addr}: {e}"))?;
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    // The admin token: from ROLLOUT_ADMIN_TOKEN, or a random one printed below.
    let token = std::env::var("ROLLOUT_ADMIN_TOKEN").unwrap_or_else(|_| {
        use rand::RngExt;
        let mut rng = rand::rng();
        (0..32)
            .map(|_| char::from(b"0123456789abcdef"[rng.random_range(0..16)]))
            .collect()
    });
    let fleet = Fleet::start(listener, &v1, &v2, Some(&token), ctrl_c).await?;
    fleet.handle.mirror_standby(1.0)?;
    fleet.handle.set_split(0.1)?;
    let addr = fleet.addr;
    writeln!(
        out,
        "serving on http://{addr}/predict
  v1 (blue, live):     {}
  v2 (green, standby): {}
  green gets a copy of every request served by blue, compared with blue's answer
  10% of users (by the {USER} header) are served by green

try:
  curl -si http://{addr}/predict -H 'content-type: application/json' -H '{USER}: alice' \\
       -d '{{\"features\": [6.1, 2.8, 4.7, 1.2]}}'
  curl -si http://{addr}/predict -H 'content-type: application/json' -H '{USER}: bob' \\
       -d '{{\"features\": [6.3, 2.8, 5.1, 1.5]}}'
  curl -si http://{addr}/predict -H 'content-type: application/json' -d '{{\"features\": [1e39, 1, 1, 1]}}'
(the {SERVED_BY} response header names the color and version that answered, e.g.
 `green; version=v2`; about one {USER} in ten gets green)

admin (bearer token {token}):
  dashboard: http://{addr}/admin/ (it asks for the token)
  curl -s http://{addr}/admin/status -H 'authorization: Bearer {token}'
  curl -s -X POST http://{addr}/admin/split -H 'authorization: Bearer {token}' -d '{{\"fraction\": 0.5}}'
  curl -s -X POST http://{addr}/admin/promote -H 'authorization: Bearer {token}'
  curl -s -X POST http://{addr}/admin/rollback -H 'authorization: Bearer {token}'

Ctrl-C prints the comparison report and stops.",
        describe(&v1),
        describe(&v2)
    )?;
    out.flush()?;
    fleet.server.await??;
    writeln!(out)?;
    print_report(out, &fleet.handle.shadow_report())?;
    let status = fleet.handle.status();
    writeln!(
        out,
        "served: blue {}, green {}",
        status.blue.served, status.green.served
    )?;
    Ok(())
}

// === the walkthrough ===

/// How much the walkthrough sends.
#[derive(Debug, Clone)]
pub(crate) struct Options {
    /// Requests while v1 alone is live.
    pub(crate) live: usize,
    /// Requests mirrored to the candidate and compared, in each mirror step.
    pub(crate) mirrored: usize,
    /// The canaries' split.
    pub(crate) canary: f64,
    /// Users in each canary, two requests each.
    pub(crate) users: usize,
    /// Requests after each promote and after the rollback.
    pub(crate) after: usize,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            live: 10,
            mirrored: 150,
            canary: 0.10,
            users: 500,
            after: 20,
        }
    }
}

/// Requests answered per version in one step.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Served(BTreeMap<String, u64>);

impl Served {
    fn add(&mut self, version: &str) {
        *self.0.entry(version.to_owned()).or_default() += 1;
    }

    /// Answers from `version`.
    pub(crate) fn by(&self, version: &str) -> u64 {
        self.0.get(version).copied().unwrap_or(0)
    }

    /// Answers from any version.
    pub(crate) fn total(&self) -> u64 {
        self.0.values().sum()
    }

    /// Answers from versions other than `version`.
    pub(crate) fn besides(&self, version: &str) -> u64 {
        self.total() - self.by(version)
    }
}

impl fmt::Display for Served {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return f.write_str("none answered");
        }
        let parts: Vec<String> = self.0.iter().map(|(v, n)| format!("{n} by {v}")).collect();
        f.write_str(&parts.join(", "))
    }
}

/// A sticky canary: its split, its users, how many the candidate answered,
/// and how many got answers from both versions (none should).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Canary {
    pub(crate) split: f64,
    pub(crate) users: u64,
    pub(crate) on_candidate: u64,
    pub(crate) on_both: u64,
}

impl Canary {
    fn problems(&self, candidate: &str, p: &mut Vec<String>) {
        if self.on_both > 0 {
            p.push(format!(
                "{} users of the {candidate} canary saw both versions",
                self.on_both
            ));
        }
        let (n, split) = (self.users as f64, self.split);
        let share = self.on_candidate as f64 / n.max(1.0);
        // Five standard deviations of a binomial share: sticky hashing of
        // distinct ids lands this far off once in millions of id sets.
        if (share - split).abs() > 5.0 * (split * (1.0 - split) / n.max(1.0)).sqrt() {
            p.push(format!(
                "the {candidate} canary's share {share:.3} is far from the split {split}"
            ));
        }
    }
}

/// What the comparison counted during one mirror step (the router's report
/// accumulates over the run; this is the step's part of it).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Compared {
    /// Copies compared (matched or mismatched).
    pub(crate) compared: u64,
    pub(crate) matched: u64,
    /// Comparisons whose `/label` differed.
    pub(crate) label_mismatches: u64,
    /// Copies sampled but not compared (shadow errors, timeouts, skips).
    pub(crate) not_compared: u64,
}

impl Compared {
    fn between(before: &ShadowReport, after: &ShadowReport) -> Compared {
        let labels = |r: &ShadowReport| {
            r.field_mismatches
                .iter()
                .find(|(f, _)| f == "/label")
                .map_or(0, |(_, n)| *n)
        };
        let compared = |r: &ShadowReport| r.matched + r.mismatched;
        Compared {
            compared: compared(after) - compared(before),
            matched: after.matched - before.matched,
            label_mismatches: labels(after) - labels(before),
            not_compared: (after.total() - compared(after)) - (before.total() - compared(before)),
        }
    }

    /// The share of compared copies that agreed.
    pub(crate) fn agreement(&self) -> Option<f64> {
        (self.compared > 0).then(|| self.matched as f64 / self.compared as f64)
    }
}

/// The deploy of v3 into the idle color.
#[derive(Debug, Clone, Default)]
pub(crate) struct DeployStep {
    /// The color v3 went into.
    pub(crate) color: Option<Color>,
    /// The version it replaced, as the deploy said.
    pub(crate) replaced: String,
    /// The version `Deployed::retired` resolved with.
    pub(crate) retired: String,
    /// Clones of v1's model alive just before the deploy (the router's).
    pub(crate) v1_clones_before: usize,
    /// Whether v1's model was released (every clone dropped) once
    /// `retired` resolved.
    pub(crate) v1_released: bool,
    /// What users got while the deploy ran (a client sending all along),
    /// and how many of those requests failed.
    pub(crate) during: Served,
    pub(crate) failed_during: u64,
}

/// What the walkthrough saw.
#[derive(Debug, Clone, Default)]
pub(crate) struct Summary {
    /// Requests sent (by the walkthrough's client; the deploy step's
    /// background client is counted in [`DeployStep`]).
    pub(crate) requests: u64,
    /// Requests that failed (transport error, timeout, status not 200, no
    /// served-by header, body not a prediction).
    pub(crate) failed: u64,
    /// The first failures, for the message.
    pub(crate) errors: Vec<String>,
    /// Answers that differ from what the model of the version named in the
    /// served-by header predicts for that input (checked against local
    /// copies of the models), or that name another version in the body.
    pub(crate) wrong_answers: u64,
    /// Step 1: v1 alone live.
    pub(crate) live: Served,
    /// Step 2: what users got while v2 was mirrored, and the comparison.
    pub(crate) mirror_v2: Served,
    pub(crate) report_v2: ShadowReport,
    /// Step 3: the v2 canary.
    pub(crate) canary_v2: Canary,
    /// Step 4: blue's in-flight count just after the promote (the held request).
    pub(crate) blue_in_flight_at_promote: u64,
    /// Step 4: `drained(Blue)` was already resolved while the request was held
    /// (wrong: it was in flight).
    pub(crate) drained_early: bool,
    /// Step 4: the color and version that answered the held request.
    pub(crate) held: Option<ColorVersion>,
    /// Step 4: `drained(Blue)` resolved after the held request finished.
    pub(crate) blue_drained: bool,
    /// Step 4: requests after the promote.
    pub(crate) after_promote: Served,
    /// Step 5: the version the rollback returned to, and what users got.
    pub(crate) rollback_to: Option<String>,
    pub(crate) after_rollback: Served,
    /// Step 5: whether the retried `promote_to_version("v2")` changed the
    /// state (it must not).
    pub(crate) retried_promote_changed: Option<bool>,
    /// Step 6: the deploy of v3.
    pub(crate) deploy: DeployStep,
    /// Step 7: what users got while v3 was mirrored, and the comparison.
    pub(crate) mirror_v3: Served,
    pub(crate) compared_v3: Compared,
    /// Step 8: the v3 canary.
    pub(crate) canary_v3: Canary,
    /// Step 9: requests after v3's promote.
    pub(crate) after_v3: Served,
    /// The live color and version at the end.
    pub(crate) live_at_end: Option<ColorVersion>,
}

impl Summary {
    /// Everything that is not as it should be, in words; empty when all is well.
    pub(crate) fn problems(&self) -> Vec<String> {
        let mut p = Vec::new();
        if self.failed > 0 {
            p.push(format!(
                "{} of {} requests failed: {}",
                self.failed,
                self.requests,
                self.errors.join("; ")
            ));
        }
        if self.wrong_answers > 0 {
            p.push(format!(
                "{} answers were not the serving version's",
                self.wrong_answers
            ));
        }
        let only = |p: &mut Vec<String>, step: &str, served: &Served, version: &str| {
            if served.besides(version) > 0 || served.total() == 0 {
                p.push(format!("{step}: expected only {version}, got {served}"));
            }
        };
        only(&mut p, "v1 live", &self.live, "v1");
        only(&mut p, "v2 mirrored", &self.mirror_v2, "v1");
        let compared = self.report_v2.matched + self.report_v2.mismatched;
        if compared != self.mirror_v2.by("v1") {
            p.push(format!(
                "{} of {} requests mirrored to v2 compared ({:?})",
                compared,
                self.mirror_v2.by("v1"),
                self.report_v2
            ));
        }
        self.canary_v2.problems("v2", &mut p);
        if self.blue_in_flight_at_promote == 0 || self.drained_early {
            p.push("the held request was not in flight on blue across the promote".into());
        }
        let held = self.held.as_ref().map(|h| (h.color, h.version.as_str()));
        if held != Some((Color::Blue, "v1")) {
            p.push(format!(
                "the request admitted before the promote was answered by {:?}, not blue (v1)",
                self.held
            ));
        }
        if !self.blue_drained {
            p.push("blue did not drain".into());
        }
        only(&mut p, "after v2's promote", &self.after_promote, "v2");
        if self.rollback_to.as_deref() != Some("v1") {
            p.push(format!(
                "the rollback returned to {:?}, not v1",
                self.rollback_to
            ));
        }
        only(&mut p, "after the rollback", &self.after_rollback, "v1");
        if self.retried_promote_changed != Some(false) {
            p.push("the retried promote to v2 was not a no-op".into());
        }
        let d = &self.deploy;
        if d.color != Some(Color::Blue) || d.replaced != "v1" || d.retired != "v1" {
            p.push(format!(
                "v3 was deployed into {:?} replacing {:?} (retired {:?}), not into blue replacing v1",
                d.color, d.replaced, d.retired
            ));
        }
        if d.v1_clones_before == 0 || !d.v1_released {
            p.push(format!(
                "v1's model was not released after its retirement ({} clones before the deploy)",
                d.v1_clones_before
            ));
        }
        if d.failed_during > 0 {
            p.push(format!(
                "{} requests failed during the deploy",
                d.failed_during
            ));
        }
        only(&mut p, "during the deploy", &d.during, "v2");
        only(&mut p, "v3 mirrored", &self.mirror_v3, "v2");
        let c = &self.compared_v3;
        if c.compared != self.mirror_v3.by("v2") || c.not_compared > 0 {
            p.push(format!(
                "{} of {} requests mirrored to v3 compared ({} not compared)",
                c.compared,
                self.mirror_v3.by("v2"),
                c.not_compared
            ));
        }
        self.canary_v3.problems("v3", &mut p);
        only(&mut p, "after v3's promote", &self.after_v3, "v3");
        let end = self
            .live_at_end
            .as_ref()
            .map(|e| (e.color, e.version.as_str()));
        if end != Some((Color::Blue, "v3")) {
            p.push(format!(
                "live at the end: {:?}, not v3 on blue",
                self.live_at_end
            ));
        }
        p
    }
}

type Body = BoxBody<Bytes, Infallible>;

/// `POST uri` with a JSON body, as user `user` (the sticky canary key).
fn predict_request(uri: &str, user: &str, body: Body) -> Result<http::Request<Body>, DemoError> {
    Ok(http::Request::post(uri)
        .header("content-type", "application/json")
        .header(USER, user)
        .body(body)?)
}

fn features(x: [f32; 4]) -> Result<Body, DemoError> {
    Ok(Full::new(Bytes::from(serde_json::to_vec(&Features { features: x })?)).boxed())
}

/// Reads one answer: the color and version the served-by header names, and
/// the prediction, whose version must be the one named.
async fn answer(
    res: http::Response<hyper::body::Incoming>,
) -> Result<(ColorVersion, Prediction), DemoError> {
    let status = res.status();
    let served = res
        .headers()
        .get(SERVED_BY)
        .ok_or("no x-served-by header")?
        .to_str()
        .map_err(|_| "x-served-by is not text")?;
    let served = ColorVersion::from_served_by(served)?;
    let body = res.into_body().collect().await?.to_bytes();
    if status != http::StatusCode::OK {
        return Err(format!("status {status}: {}", String::from_utf8_lossy(&body)).into());
    }
    let prediction: Prediction = serde_json::from_slice(&body)?;
    Ok((served, prediction))
}

/// The walkthrough's client and bookkeeping.
struct Tour<'a> {
    out: &'a mut dyn Write,
    client: Client<HttpConnector, Body>,
    uri: String,
    /// Local copies of the models by version, to check every answer. v1's is
    /// dropped before its retirement, so that only the server could still
    /// hold it.
    models: BTreeMap<String, Model>,
    summary: Summary,
}

impl Tour<'_> {
    fn fail(&mut self, what: String) {
        self.summary.failed += 1;
        if self.summary.errors.len() < 5 {
            self.summary.errors.push(what);
        }
    }

    fn request(&self, user: &str, body: Body) -> Result<http::Request<Body>, DemoError> {
        predict_request(&self.uri, user, body)
    }

    /// Reads a response and checks it against the local model of the
    /// version that answered.
    async fn read(
        &mut self,
        x: [f32; 4],
        res: http::Response<hyper::body::Incoming>,
    ) -> Result<(ColorVersion, Prediction), DemoError> {
        let (served, prediction) = answer(res).await?;
        let right = self
            .models
            .get(served.version.as_str())
            .is_some_and(|m| prediction == m.predict(x));
        if !right {
            self.summary.wrong_answers += 1;
        }
        Ok((served, prediction))
    }

    /// One request; failures are counted and give `None`.
    async fn ask(&mut self, user: &str, x: [f32; 4]) -> Option<ColorVersion> {
        self.summary.requests += 1;
        let result = async {
            let req = self.request(user, features(x)?)?;
            let res = tokio::time::timeout(DEADLINE, self.client.request(req))
                .await
                .map_err(|_| "no answer within the deadline")??;
            self.read(x, res).await
        }
        .await;
        match result {
            Ok((served, _)) => Some(served),
            Err(e) => {
                self.fail(format!("{user}: {e}"));
                None
            }
        }
    }

    /// `n` requests from users `{prefix}-0..n` with `samples(n)`.
    async fn round(&mut self, prefix: &str, n: usize) -> Served {
        let mut served = Served::default();
        for (i, x) in samples(n).into_iter().enumerate() {
            if let Some(s) = self.ask(&format!("{prefix}-{i}"), x).await {
                served.add(s.version.as_str());
            }
        }
        served
    }

    /// `users` users `{prefix}-0..users`, two requests each, with the
    /// canary at `split` for `candidate`; also returns a user the candidate
    /// did not answer.
    async fn canary(
        &mut self,
        prefix: &str,
        users: usize,
        split: f64,
        candidate: &str,
    ) -> (Canary, Option<String>) {
        let mut canary = Canary {
            split,
            users: users as u64,
            ..Canary::default()
        };
        let mut stable_user = None;
        let inputs = samples(2 * users);
        for u in 0..users {
            let user = format!("{prefix}-{u}");
            let first = self.ask(&user, inputs[2 * u]).await;
            let second = self.ask(&user, inputs[2 * u + 1]).await;
            let versions: Vec<String> = [first, second]
                .into_iter()
                .flatten()
                .map(|s| s.version.to_string())
                .collect();
            if versions.windows(2).any(|w| w[0] != w[1]) {
                canary.on_both += 1;
            } else if versions.iter().any(|v| v == candidate) {
                canary.on_candidate += 1;
            } else if !versions.is_empty() {
                stable_user.get_or_insert(user);
            }
        }
        (canary, stable_user)
    }

    /// Mirrors every request to the standby for one round of `n`, waits for
    /// the comparisons, and turns mirroring off; returns what users got and
    /// the step's comparisons.
    async fn mirrored(
        &mut self,
        handle: &RolloutHandle,
        prefix: &str,
        n: usize,
    ) -> Result<(Served, Compared), DemoError> {
        let before = handle.shadow_report();
        handle.mirror_standby(1.0)?;
        let served = self.round(prefix, n).await;
        let expected = before.total() + served.total();
        until("the comparisons", || {
            handle.shadow_report().total() >= expected
        })
        .await?;
        handle.mirror_standby(0.0)?;
        let compared = Compared::between(&before, &handle.shadow_report());
        Ok((served, compared))
    }
}

/// Waits until `done()` holds, checking every millisecond, at most
/// [`DEADLINE`].
async fn until(what: &str, mut done: impl FnMut() -> bool) -> Result<(), DemoError> {
    let wait = async {
        while !done() {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    };
    tokio::time::timeout(DEADLINE, wait)
        .await
        .map_err(|_| format!("still waiting for {what} after {DEADLINE:?}").into())
}

fn ms(d: Option<Duration>) -> String {
    d.map_or("-".into(), |d| format!("{:.2}", d.as_secs_f64() * 1e3))
}

fn print_report(out: &mut dyn Write, r: &ShadowReport) -> std::io::Result<()> {
    let compared = r.matched + r.mismatched;
    writeln!(
        out,
        "   compared {compared}: agreement {} (labels equal, probabilities within {PROBABILITY_TOLERANCE}, version ignored)",
        r.agreement_rate()
            .map_or("-".into(), |a| format!("{:.1}%", 100.0 * a))
    )?;
    if compared != r.total() {
        writeln!(
            out,
            "   not compared: {} (shadow errors {}, timeouts {}, skipped {})",
            r.total() - compared,
            r.shadow_errors,
            r.shadow_timeouts,
            r.skipped_not_started
                + r.skipped_dropped
                + r.skipped_over_cap
                + r.skipped_primary_failed
        )?;
    }
    if !r.field_mismatches.is_empty() {
        let fields: Vec<String> = r
            .field_mismatches
            .iter()
            .map(|(f, n)| format!("{f} {n}"))
            .collect();
        writeln!(out, "   mismatches per field: {}", fields.join(", "))?;
    }
    let label_diff = r
        .exemplars
        .iter()
        .rev()
        .find_map(|e| Some((e, e.diffs.iter().find(|d| d.path == "/label")?)));
    if let Some((e, d)) = label_diff {
        let x = serde_json::from_slice::<Features>(&e.request)
            .map_or_else(|_| "?".into(), |f| format!("{:?}", f.features));
        // The sides' names come from the report, which keeps them per pair.
        let (live, candidate) = match &e.versions {
            Some(v) => (
                format!("{} ({})", v.primary.version, v.primary.color),
                format!("{} ({})", v.shadow.version, v.shadow.color),
            ),
            None => ("the live version".into(), "the candidate".into()),
        };
        writeln!(
            out,
            "   e.g. features {x}: {live} says {}, {candidate} says {}",
            d.primary, d.shadow
        )?;
    }
    for d in &r.drift {
        writeln!(out, "   drift of {}", drift_line(d))?;
    }
    writeln!(
        out,
        "   latency p50 / p99: live {} / {} ms, candidate {} / {} ms",
        ms(r.primary_latency.p50),
        ms(r.primary_latency.p99),
        ms(r.shadow_latency.p50),
        ms(r.shadow_latency.p99)
    )
}

/// The predicted label and the first class's probability, compared in
/// distribution between the live version and the candidate.
fn drift_fields() -> Result<DriftSettings, ConfigError> {
    Ok(DriftSettings::new([
        DriftField::categorical("/label")?,
        DriftField::numeric("/probabilities/0")?,
    ]))
}

/// One field's drift, on one line.
fn drift_line(d: &FieldDrift) -> String {
    let f = |x: Option<f64>| x.map_or("-".into(), |x| format!("{x:.3}"));
    let p = |x: Option<f64>| x.map_or("-".into(), |x| format!("{x:.2e}"));
    match d.kind {
        FieldKind::Categorical => format!(
            "{} ({} vs {} answers): PSI {}, Jensen-Shannon {}, chi-square p {}",
            d.field,
            d.primary_n,
            d.shadow_n,
            f(d.psi),
            f(d.jensen_shannon),
            p(d.chi_square.map(|c| c.p_value)),
        ),
        _ => format!(
            "{} ({} vs {} answers): KS {} (p {}), Wasserstein {}",
            d.field,
            d.primary_n,
            d.shadow_n,
            f(d.ks.map(|k| k.statistic)),
            p(d.ks.map(|k| k.p_value)),
            f(d.wasserstein),
        ),
    }
}

/// A client sending requests (users `during-deploy-*`) until `stop` is set
/// and at least `at_least` were sent: what answered, and the failures (any
/// error, or an answer that is not v2's).
fn background_client(
    client: Client<HttpConnector, Body>,
    uri: String,
    v2: Model,
    at_least: usize,
    stop: Arc<AtomicBool>,
) -> JoinHandle<(Served, u64)> {
    tokio::spawn(async move {
        let (mut served, mut failed) = (Served::default(), 0);
        let inputs = samples(at_least.max(1));
        for i in 0usize.. {
            if i >= at_least && stop.load(Ordering::SeqCst) {
                break;
            }
            let x = inputs[i % inputs.len()];
            let result = async {
                let req = predict_request(&uri, &format!("during-deploy-{i}"), features(x)?)?;
                let res = tokio::time::timeout(DEADLINE, client.request(req))
                    .await
                    .map_err(|_| "no answer within the deadline")??;
                answer(res).await
            }
            .await;
            match result {
                Ok((s, p)) if s.version == "v2" && p == v2.predict(x) => served.add("v2"),
                Ok((s, _)) => {
                    served.add(s.version.as_str());
                    failed += 1;
                }
                Err(_) => failed += 1,
            }
        }
        (served, failed)
    })
}

/// Runs the walkthrough against a server of its own on 127.0.0.1:0, printing
/// each step to `out`.
///
/// # Errors
/// When the models do not train, the server does not start, a control call
/// or the deploy fails, or a wait (for the comparisons, the held request,
/// the drain, the retirement) exceeds its deadline. Failed requests are
/// counted in the [`Summary`] instead; see [`Summary::problems`].
pub(crate) async fn run_walkthrough(
    opts: &Options,
    out: &mut dyn Write,
) -> Result<Summary, DemoError> {
    let (v1, v2) = Model::train_both()?;
    let v3 = Model::train(Version::V3)?;
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let fleet = Fleet::start(listener, &v1, &v2, None, async {
        let _ = stopped.await;
    })
    .await?;
    let handle = fleet.handle.clone();
    writeln!(
        out,
        "tower-rollout model fleet: iris classifiers behind one BlueGreenRouter, one process, no restart
  v1 (blue):  {}
  v2 (green): {}
  v3 (deployed later into the idle color): {}
  serving on http://{}/predict\n",
        describe(&v1),
        describe(&v2),
        describe(&v3),
        fleet.addr
    )?;
    let weak_v1 = v1.downgrade();
    let mut tour = Tour {
        out,
        client: Client::builder(TokioExecutor::new()).build_http(),
        uri: format!("http://{}/predict", fleet.addr),
        models: [v1, v2.clone(), v3.clone()]
            .into_iter()
            .map(|m| (m.version().to_string(), m))
            .collect(),
        summary: Summary::default(),
    };

    // 1. v1 alone.
    writeln!(tour.out, "1. blue (v1) is live")?;
    tour.summary.live = tour.round("live", opts.live).await;
    writeln!(
        tour.out,
        "   {} requests: {}\n",
        opts.live, tour.summary.live
    )?;

    // 2. v2 mirrored and compared.
    writeln!(
        tour.out,
        "2. green (v2) mirrored and compared with v1: handle.mirror_standby(1.0)"
    )?;
    let (served, _) = tour.mirrored(&handle, "mirror", opts.mirrored).await?;
    tour.summary.mirror_v2 = served;
    tour.summary.report_v2 = handle.shadow_report();
    writeln!(
        tour.out,
        "   {} requests: users got v1's answers ({}); each copied to v2",
        opts.mirrored, tour.summary.mirror_v2
    )?;
    print_report(tour.out, &tour.summary.report_v2)?;
    writeln!(tour.out, "   mirroring off: handle.mirror_standby(0.0)\n")?;

    // 3. A sticky canary of v2.
    writeln!(
        tour.out,
        "3. canary: handle.set_split({}), sticky by the {USER} header",
        opts.canary
    )?;
    handle.set_split(opts.canary)?;
    let (canary, blue_user) = tour.canary("user", opts.users, opts.canary, "v2").await;
    tour.summary.canary_v2 = canary;
    writeln!(
        tour.out,
        "   {} users x 2 requests: {} users ({:.1}%) answered by v2, the others by v1; {} saw both\n",
        opts.users,
        canary.on_candidate,
        100.0 * canary.on_candidate as f64 / opts.users.max(1) as f64,
        canary.on_both
    )?;

    // 4. Promote while a request is in flight on blue, then drain blue.
    writeln!(
        tour.out,
        "4. promote: green (v2) is live, v1 stays warm on blue"
    )?;
    let blue_user = blue_user.ok_or("no canary user was on blue")?;
    let x = samples(1)[0];
    let json = serde_json::to_vec(&Features { features: x })?;
    let (head, tail) = json.split_at(json.len() / 2);
    let (tx, rx) = mpsc::channel::<Result<Frame<Bytes>, Infallible>>(2);
    tx.send(Ok(Frame::data(Bytes::copy_from_slice(head))))
        .await
        .map_err(|_| "held body closed")?;
    let req = tour.request(&blue_user, StreamBody::new(ReceiverStream::new(rx)).boxed())?;
    tour.summary.requests += 1;
    let held = tokio::spawn(tour.client.request(req));
    until("the held request on blue", || {
        handle.in_flight(Color::Blue) >= 1
    })
    .await?;
    handle.promote()?;
    let in_flight = handle.in_flight(Color::Blue);
    tour.summary.blue_in_flight_at_promote = in_flight;
    let mut drained = handle.drained(Color::Blue);
    tour.summary.drained_early = (&mut drained).now_or_never().is_some();
    writeln!(
        tour.out,
        "   {blue_user} sent half a request to blue before the promote: blue in flight {in_flight}, drained(Blue) {}",
        if tour.summary.drained_early { "resolved (wrong!)" } else { "pending" }
    )?;
    tour.summary.after_promote = tour.round("after-promote", opts.after).await;
    writeln!(
        tour.out,
        "   {} new requests: {}",
        opts.after, tour.summary.after_promote
    )?;
    tx.send(Ok(Frame::data(Bytes::copy_from_slice(tail))))
        .await
        .map_err(|_| "held body closed")?;
    drop(tx);
    let res = tokio::time::timeout(DEADLINE, held)
        .await
        .map_err(|_| "the held request did not finish")?;
    match res.map_err(DemoError::from).and_then(|r| Ok(r?)) {
        Ok(res) => match tour.read(x, res).await {
            Ok((served, _)) => tour.summary.held = Some(served),
            Err(e) => tour.fail(format!("{blue_user} (held): {e}")),
        },
        Err(e) => tour.fail(format!("{blue_user} (held): {e}")),
    }
    tokio::time::timeout(DEADLINE, drained)
        .await
        .map_err(|_| "blue did not drain")?;
    tour.summary.blue_drained = true;
    writeln!(
        tour.out,
        "   the held request finished on {}; handle.drained(Blue) resolved, blue in flight {}\n",
        tour.summary
            .held
            .as_ref()
            .map_or("?".into(), |h| h.to_string()),
        handle.in_flight(Color::Blue)
    )?;

    // 5. Roll back, then promote again with a retried call.
    writeln!(tour.out, "5. rollback: handle.rollback()")?;
    let change = handle.rollback()?;
    tour.summary.rollback_to = change.transition().map(|t| t.version.to_string());
    tour.summary.after_rollback = tour.round("after-rollback", opts.after).await;
    writeln!(
        tour.out,
        "   back to {} (still loaded on blue); {} requests: {}",
        tour.summary.rollback_to.as_deref().unwrap_or("?"),
        opts.after,
        tour.summary.after_rollback
    )?;
    let first = handle.promote_to_version("v2")?;
    let retried = handle.promote_to_version("v2")?;
    tour.summary.retried_promote_changed = Some(retried.is_applied());
    writeln!(
        tour.out,
        "   handle.promote_to_version(\"v2\") twice, as a client retrying would: generation {} then {} (the retry changed nothing)\n",
        first.generation(),
        retried.generation()
    )?;

    // 6. Deploy v3 into the idle color (blue, holding v1) under traffic.
    writeln!(
        tour.out,
        "6. deploy v3 into the idle color while serving: deployer.deploy(\"v3\", app(v3)).warm_up(..)"
    )?;
    // The walkthrough lets go of its own copy of v1: only the server holds it.
    tour.models.remove("v1");
    tour.summary.deploy.v1_clones_before = weak_v1.clones_alive();
    let stop_background = Arc::new(AtomicBool::new(false));
    let background = background_client(
        tour.client.clone(),
        tour.uri.clone(),
        v2.clone(),
        opts.after,
        stop_background.clone(),
    );
    let warm_up_input = samples(1)[0];
    let deployed = fleet
        .deployer
        .deploy("v3", app(v3.clone()))
        .warm_up(move |svc: axum::Router| async move {
            // One prediction through the new version before it counts as
            // deployed (loads caches; a failure fails the deploy).
            let req = http::Request::post("/predict")
                .header("content-type", "application/json")
                .body(axum::body::Body::from(serde_json::to_vec(&Features {
                    features: warm_up_input,
                })?))?;
            let res = tower::ServiceExt::oneshot(svc, req).await?;
            if res.status() != http::StatusCode::OK {
                return Err(DemoError::from(format!(
                    "warm-up answered {}",
                    res.status()
                )));
            }
            Ok(())
        })
        .timeout(DEADLINE)
        .await?;
    let d = &mut tour.summary.deploy;
    d.color = Some(deployed.color);
    d.replaced = deployed.replaced().to_string();
    writeln!(
        tour.out,
        "   v3 is in {} (replacing {}), ready and warmed up; generation {}",
        deployed.color,
        deployed.replaced(),
        deployed.transition.generation
    )?;
    let retired = tokio::time::timeout(DEADLINE, deployed.retired())
        .await
        .map_err(|_| "v1 was not retired")?;
    let d = &mut tour.summary.deploy;
    d.retired = retired.to_string();
    d.v1_released = weak_v1.is_released();
    stop_background.store(true, Ordering::SeqCst);
    let (during, failed_during) = background.await?;
    d.during = during;
    d.failed_during = failed_during;
    writeln!(
        tour.out,
        "   deployed.retired() resolved: {retired} dropped everywhere; v1's model {} (alive clones: {} before the deploy, {} now)",
        if d.v1_released { "released" } else { "STILL ALIVE" },
        d.v1_clones_before,
        weak_v1.clones_alive()
    )?;
    writeln!(
        tour.out,
        "   a client sending all along: {} ({} failed)\n",
        d.during, d.failed_during
    )?;

    // 7. v3 mirrored and compared with v2.
    writeln!(
        tour.out,
        "7. blue (v3) mirrored and compared with v2: handle.mirror_standby(1.0)"
    )?;
    let (served, compared) = tour.mirrored(&handle, "mirror-v3", opts.mirrored).await?;
    tour.summary.mirror_v3 = served;
    tour.summary.compared_v3 = compared.clone();
    writeln!(
        tour.out,
        "   {} requests: users got v2's answers ({}); compared {}: agreement {}, labels differ on {}",
        opts.mirrored,
        tour.summary.mirror_v3,
        compared.compared,
        compared
            .agreement()
            .map_or("-".into(), |a| format!("{:.1}%", 100.0 * a)),
        compared.label_mismatches
    )?;
    // The report of this pair (v2 live, v3 the candidate) names both sides.
    let pair = handle.shadow_report();
    if let Some(v) = &pair.versions {
        writeln!(
            tour.out,
            "   the pair compared: {} ({}) against {} ({})",
            v.primary.version, v.primary.color, v.shadow.version, v.shadow.color
        )?;
    }
    for d in &pair.drift {
        writeln!(tour.out, "   drift of {}", drift_line(d))?;
    }
    writeln!(tour.out)?;

    // 8. A sticky canary of v3.
    writeln!(
        tour.out,
        "8. canary of v3: handle.set_split({})",
        opts.canary
    )?;
    handle.set_split(opts.canary)?;
    let (canary, _) = tour.canary("v3-user", opts.users, opts.canary, "v3").await;
    tour.summary.canary_v3 = canary;
    writeln!(
        tour.out,
        "   {} users x 2 requests: {} users ({:.1}%) answered by v3, the others by v2; {} saw both\n",
        opts.users,
        canary.on_candidate,
        100.0 * canary.on_candidate as f64 / opts.users.max(1) as f64,
        canary.on_both
    )?;

    // 9. Promote v3.
    writeln!(
        tour.out,
        "9. promote: handle.promote_to_version(\"v3\"); v2 stays warm on green"
    )?;
    handle.promote_to_version("v3")?;
    tour.summary.after_v3 = tour.round("after-v3", opts.after).await;
    let status = handle.status();
    tour.summary.live_at_end = Some(ColorVersion {
        color: status.active,
        version: status.active_version().clone(),
    });
    writeln!(
        tour.out,
        "   {} requests: {}\n",
        opts.after, tour.summary.after_v3
    )?;

    let history: Vec<String> = status
        .history
        .iter()
        .map(|t| match t.kind {
            TransitionKind::Promote | TransitionKind::Rollback => {
                format!("{} to {}", t.kind, t.version)
            }
            TransitionKind::Deploy => {
                let into = t.active.other();
                let version = if into == Color::Blue {
                    &t.blue
                } else {
                    &t.green
                };
                format!("deploy {version} into {into}")
            }
            _ => t.kind.to_string(),
        })
        .collect();
    let summary = tour.summary;
    writeln!(
        tour.out,
        "summary: {} requests, {} failed, {} answers not the serving version's; {} live on {}, {} warm on {}; transitions: {}",
        summary.requests,
        summary.failed,
        summary.wrong_answers,
        status.active_version(),
        status.active,
        status.color(status.standby()).version,
        status.standby(),
        history.join(" -> ")
    )?;
    let _ = stop.send(());
    drop(tour.client);
    if tokio::time::timeout(DEADLINE, fleet.server).await.is_err() {
        return Err("the server did not shut down".into());
    }
    Ok(summary)
}

// === the rollout plan mode (`--plan`) ===

/// The plan the `--plan` mode runs: a mirror phase until 100 requests are
/// compared, canary steps of 10%, 25% and 50% for a second each, promote, and
/// one second of post-promotion bake; gates on agreement (the two models
/// really differ on about 15% of inputs), error rate and p99 latency,
/// evaluated every 100 ms.
pub(crate) fn demo_plan() -> Result<RolloutPlan, PlanError> {
    let bake = Duration::from_secs(1);
    RolloutPlan::builder()
        .mirror_until_compared(1.0, 100)
        .step(0.10, bake)
        .step(0.25, bake)
        .step(0.50, bake)
        .post_promotion_bake(bake)
        // First: when both it and the agreement gate fail, the abort names
        // the schema, the more precise of the two.
        .gate(Gate::schema_compatible(0).min_sample(50))
        .gate(Gate::agreement(0.75).min_sample(50))
        .gate(Gate::error_rate(0.02).min_sample(30))
        // p90 over at least 50 answers: a p99 of a 1 s canary step at 10%
        // is nearly its slowest answer, noise on a busy 2-core machine.
        .gate(
            Gate::latency(0.90, 3.0)
                .slack(Duration::from_millis(10))
                .min_sample(50),
        )
        .interval(Duration::from_millis(100))
        .build()
}

/// Which v2 a plan run rolls out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Candidate {
    /// v2 as trained: expected to be promoted.
    Good,
    /// v2 that answers every fourth request with a 500 from the second
    /// canary step on: expected to be rolled back by the error-rate gate.
    Failing,
    /// v2 whose answers call the label `class`: expected to be stopped by
    /// the schema gate while mirrored.
    Renamed,
}

impl fmt::Display for Candidate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Candidate::Good => "good v2",
            Candidate::Failing => "v2 that starts failing at the second canary step",
            Candidate::Renamed => "v2 that renames its /label field to /class",
        })
    }
}

/// What one plan run saw.
#[derive(Debug, Clone, Default)]
pub(crate) struct PlanSummary {
    /// How the plan ended.
    pub(crate) outcome: Option<PlanOutcome>,
    /// Requests the clients sent, and how many of them failed (status not 200
    /// or no answer).
    pub(crate) requests: u64,
    pub(crate) failed: u64,
    /// Requests sent after the abort was announced, and how many failed.
    pub(crate) sent_after_abort: u64,
    pub(crate) failed_after_abort: u64,
    /// Failed requests v2 answered (while it was broken, before the abort).
    pub(crate) failed_on_green: u64,
    /// Requests v2 (green) answered.
    pub(crate) served_by_green: u64,
    /// The active color at the end.
    pub(crate) active_at_end: Option<Color>,
    /// The plan's timeline, one line per event, as printed while it ran.
    pub(crate) timeline: Vec<String>,
    /// One row per phase, as printed in the summary table.
    pub(crate) phases: Vec<PhaseRow>,
    /// The drift lines of the mirror phase, as printed.
    pub(crate) drift: Vec<String>,
}

/// One request's record: when it was sent, in which phase, how it went.
struct Sent {
    at: std::time::Instant,
    ok: bool,
    green: bool,
    took: Duration,
}

/// A phase of the plan as the summary table shows it.
#[derive(Debug, Clone, Default)]
pub(crate) struct PhaseRow {
    pub(crate) name: String,
    /// The share of users on the candidate.
    pub(crate) split: f64,
    /// Requests per color, failures per color, p99 per color.
    pub(crate) blue: ColorFigures,
    pub(crate) green: ColorFigures,
    /// Compared answers in the phase and how many agreed.
    pub(crate) compared: u64,
    pub(crate) agreed: u64,
}

/// One color's figures in one phase, from the clients' side.
#[derive(Debug, Clone, Default)]
pub(crate) struct ColorFigures {
    pub(crate) requests: u64,
    pub(crate) failed: u64,
    pub(crate) p99: Option<Duration>,
}

impl ColorFigures {
    fn of<'a>(sent: impl Iterator<Item = &'a Sent>) -> ColorFigures {
        let mut took: Vec<Duration> = Vec::new();
        let mut failed = 0;
        for s in sent {
            took.push(s.took);
            failed += u64::from(!s.ok);
        }
        took.sort();
        let p99 = (!took.is_empty()).then(|| took[(took.len() * 99).div_ceil(100) - 1]);
        ColorFigures {
            requests: took.len() as u64,
            failed,
            p99,
        }
    }

    fn cells(&self) -> (String, String, String) {
        if self.requests == 0 {
            return ("0".into(), "-".into(), "-".into());
        }
        (
            self.requests.to_string(),
            format!("{:.1}%", self.failed as f64 * 100.0 / self.requests as f64),
            ms(self.p99),
        )
    }
}

fn phase_name(phase: &Phase) -> (String, f64) {
    match phase {
        Phase::Mirror { fraction } => (format!("mirror {:.0}%", fraction * 100.0), 0.0),
        Phase::Canary { step, steps, split } => (format!("canary {step}/{steps}"), *split),
        Phase::PostPromotion => ("after promote".into(), 1.0),
        _ => ("done".into(), 0.0),
    }
}

/// Runs [`demo_plan`] against a fresh server while four clients send
/// requests (each stops at the plan's end plus half a second, at most 60 s),
/// printing each event as it happens and a table per phase at the end.
pub(crate) async fn run_plan(
    candidate: Candidate,
    out: &mut dyn Write,
) -> Result<PlanSummary, DemoError> {
    let (v1, v2) = Model::train_both()?;
    let broken = Arc::new(AtomicBool::new(false));
    let v2_app = match candidate {
        Candidate::Renamed => renamed(app(v2.clone())),
        _ => faulty(app(v2.clone()), broken.clone()),
    };
    let (router, handle) = BlueGreenRouter::builder()
        .versions("v1", "v2")
        .sticky_header(USER)
        .served_by_header(SERVED_BY)
        .compare(CompareSettings::new(comparator()?).drift(drift_fields()?))
        .build(app(v1.clone()), v2_app)?;
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        axum::serve(listener, axum::Router::new().fallback_service(router))
            .with_graceful_shutdown(async {
                let _ = stopped.await;
            })
            .await
    });
    let plan = demo_plan()?;
    writeln!(
        out,
        "rollout plan, {candidate}: mirror until 100 compared, canary 10% / 25% / 50% (1 s each), promote, bake 1 s"
    )?;
    for g in plan.gates() {
        writeln!(
            out,
            "  gate {}: {}, decides after {} samples",
            g.name(),
            g.threshold(),
            g.sample_needed()
        )?;
    }

    let t0 = std::time::Instant::now();
    let run = plan.start(&handle)?;
    let mut events = run.subscribe();
    let mut summary = PlanSummary::default();
    // Each phase's row, its start (since the plan's), and the comparison
    // counts then.
    let mut phases: Vec<(PhaseRow, Duration, (u64, u64))> = Vec::new();
    let agreement = |h: &RolloutHandle| {
        let r = h.shadow_report();
        (r.matched, r.mismatched)
    };
    let mut aborted_at = None::<std::time::Instant>;
    let mut show = |record: &PlanRecord,
                    out: &mut dyn Write,
                    summary: &mut PlanSummary,
                    phases: &mut Vec<(PhaseRow, Duration, (u64, u64))>|
     -> std::io::Result<()> {
        let line = format!(
            "{:>7.3} s  {}",
            record.at.as_secs_f64(),
            describe_event(&record.event)
        );
        writeln!(out, "  {line}")?;
        summary.timeline.push(line);
        match &record.event {
            PlanEvent::Phase(p) => {
                let (name, split) = phase_name(p);
                let row = PhaseRow {
                    name,
                    split,
                    ..PhaseRow::default()
                };
                phases.push((row, record.at, agreement(&handle)));
                if candidate == Candidate::Failing && matches!(p, Phase::Canary { step: 2, .. }) {
                    broken.store(true, Ordering::SeqCst);
                }
            }
            PlanEvent::Aborted(_) => aborted_at = Some(std::time::Instant::now()),
            _ => {}
        }
        Ok(())
    };
    // What happened before this subscription (the start, the first phase).
    for record in run.status().history {
        show(&record, out, &mut summary, &mut phases)?;
    }

    let finished = Arc::new(AtomicBool::new(false));
    let client: Client<HttpConnector, Body> = Client::builder(TokioExecutor::new()).build_http();
    let inputs = samples(500);
    let mut clients = Vec::new();
    for c in 0..4 {
        let (client, finished, inputs) = (client.clone(), finished.clone(), inputs.clone());
        let uri = format!("http://{addr}/predict");
        clients.push(tokio::spawn(async move {
            let mut sent = Vec::new();
            let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
            let mut end = None;
            for i in 0usize.. {
                let now = tokio::time::Instant::now();
                if now > deadline || end.is_some_and(|e| now > e) {
                    break;
                }
                if end.is_none() && finished.load(Ordering::SeqCst) {
                    end = Some(now + Duration::from_millis(500));
                }
                let x = inputs[i % inputs.len()];
                let body = serde_json::to_vec(&Features { features: x }).unwrap_or_default();
                let user = format!("user-{c}-{}", i % 1000);
                let req = predict_request(&uri, &user, Full::new(Bytes::from(body)).boxed());
                let at = std::time::Instant::now();
                let (ok, green) = match req {
                    Ok(req) => match tokio::time::timeout(DEADLINE, client.request(req)).await {
                        Ok(Ok(res)) => {
                            let green = res
                                .headers()
                                .get(SERVED_BY)
                                .and_then(|v| v.to_str().ok())
                                .and_then(|v| ColorVersion::from_served_by(v).ok())
                                .is_some_and(|s| s.color == Color::Green);
                            let ok = res.status() == http::StatusCode::OK;
                            (res.into_body().collect().await.is_ok() && ok, green)
                        }
                        _ => (false, false),
                    },
                    Err(_) => (false, false),
                };
                let took = at.elapsed();
                sent.push(Sent {
                    at,
                    ok,
                    green,
                    took,
                });
            }
            sent
        }));
    }
    // Each event as it happens, until the plan finishes (at most 60 s).
    let done = run.finished();
    tokio::pin!(done);
    let limit = tokio::time::sleep(Duration::from_secs(60));
    tokio::pin!(limit);
    let outcome = loop {
        tokio::select! {
            outcome = &mut done => break outcome,
            record = events.recv() => match record {
                Ok(record) => show(&record, out, &mut summary, &mut phases)?,
                Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                    writeln!(out, "  ({n} events not shown: the printer fell behind)")?;
                }
                Err(tokio::sync::broadcast::error::RecvError::Closed) => {}
            },
            _ = &mut limit => return Err("the plan did not finish within 60 s".into()),
        }
    };
    while let Ok(record) = events.try_recv() {
        show(&record, out, &mut summary, &mut phases)?;
    }
    finished.store(true, Ordering::SeqCst);
    let mut sent = Vec::new();
    for c in clients {
        sent.extend(c.await?);
    }
    let end_agreement = agreement(&handle);

    summary.outcome = Some(outcome.clone());
    summary.requests = sent.len() as u64;
    summary.failed = sent.iter().filter(|s| !s.ok).count() as u64;
    summary.failed_on_green = sent.iter().filter(|s| !s.ok && s.green).count() as u64;
    summary.served_by_green = sent.iter().filter(|s| s.green).count() as u64;
    summary.active_at_end = Some(handle.active());
    if let Some(t) = aborted_at {
        let after: Vec<&Sent> = sent.iter().filter(|s| s.at > t).collect();
        summary.sent_after_abort = after.len() as u64;
        summary.failed_after_abort = after.iter().filter(|s| !s.ok).count() as u64;
    }
    // Agreement per phase: the comparison counts at each phase's start.
    // A request belongs to the phase it was sent in (the plan changes
    // traffic, then records the phase: a request sent in between counts
    // in the phase before).
    let starts: Vec<(Duration, (u64, u64))> = phases.iter().map(|(_, t, a)| (*t, *a)).collect();
    let phase_of = |s: &Sent| {
        let since = s.at.saturating_duration_since(t0);
        starts.iter().rposition(|(t, _)| *t <= since).unwrap_or(0)
    };
    for (i, (row, _, start)) in phases.iter_mut().enumerate() {
        let end = starts.get(i + 1).map_or(end_agreement, |(_, a)| *a);
        let (matched, mismatched) = (end.0.saturating_sub(start.0), end.1.saturating_sub(start.1));
        row.compared = matched + mismatched;
        row.agreed = matched;
        row.blue = ColorFigures::of(sent.iter().filter(|s| phase_of(s) == i && !s.green));
        row.green = ColorFigures::of(sent.iter().filter(|s| phase_of(s) == i && s.green));
    }
    summary.phases = phases.into_iter().map(|(row, _, _)| row).collect();
    print_phases(out, &summary.phases)?;
    // The mirror phase's pair (v1 primary, v2 shadow): the drift between
    // the versions' answers to the same requests.
    let mirrored = handle.shadow_reports().into_iter().find(|r| {
        r.versions
            .as_ref()
            .is_some_and(|v| v.primary.version.as_str() == "v1")
    });
    for d in mirrored.iter().flat_map(|r| &r.drift) {
        let line = format!("drift v1 -> v2 while mirrored: {}", drift_line(d));
        writeln!(out, "  {line}")?;
        summary.drift.push(line);
    }
    writeln!(
        out,
        "  outcome: {}; active at the end: {}
  clients: {} requests, {} failed ({} of them answered by a broken v2){}\n",
        match &outcome {
            PlanOutcome::Promoted => "promoted".to_string(),
            PlanOutcome::Aborted(why) => format!("rolled back ({why})"),
            other => format!("{other:?}"),
        },
        handle.active(),
        summary.requests,
        summary.failed,
        summary.failed_on_green,
        match aborted_at {
            Some(_) => format!(
                "; after the abort: {} requests, {} failed",
                summary.sent_after_abort, summary.failed_after_abort
            ),
            None => String::new(),
        },
    )?;
    let _ = stop.send(());
    drop(client);
    if tokio::time::timeout(DEADLINE, server).await.is_err() {
        return Err("the server did not shut down".into());
    }
    Ok(summary)
}

/// The per-phase table: split, requests, error rate and p99 per color (as
/// the clients saw them), agreement of the compared answers.
fn print_phases(out: &mut dyn Write, rows: &[PhaseRow]) -> std::io::Result<()> {
    writeln!(
        out,
        "  {:<14} {:>6} | {:>7} {:>6} {:>8} | {:>7} {:>6} {:>8} | {:>9}",
        "phase", "split", "v1 req", "errors", "p99 ms", "v2 req", "errors", "p99 ms", "agreement"
    )?;
    for r in rows {
        let (bn, be, bp) = r.blue.cells();
        let (gn, ge, gp) = r.green.cells();
        let agreement = if r.compared == 0 {
            "-".to_owned()
        } else {
            format!("{:.1}%", r.agreed as f64 * 100.0 / r.compared as f64)
        };
        writeln!(
            out,
            "  {:<14} {:>5.0}% | {bn:>7} {be:>6} {bp:>8} | {gn:>7} {ge:>6} {gp:>8} | {agreement:>9}",
            r.name,
            r.split * 100.0
        )?;
    }
    Ok(())
}

/// v2 with its answers' `label` field renamed to `class`: a schema change
/// the comparison sees as a field on one side only.
fn renamed(app: axum::Router) -> axum::Router {
    app.layer(axum::middleware::map_response(rename_label))
}

async fn rename_label(res: axum::response::Response) -> axum::response::Response {
    let (mut parts, body) = res.into_parts();
    let bytes = axum::body::to_bytes(body, 64 * 1024)
        .await
        .unwrap_or_default();
    let body = match serde_json::from_slice::<serde_json::Value>(&bytes) {
        Ok(serde_json::Value::Object(mut fields)) => {
            if let Some(label) = fields.remove("label") {
                fields.insert("class".to_owned(), label);
            }
            serde_json::to_vec(&fields).unwrap_or_default().into()
        }
        _ => bytes,
    };
    parts.headers.remove(http::header::CONTENT_LENGTH);
    axum::response::Response::from_parts(parts, axum::body::Body::from(body))
}

/// v2 behind a switch: once `broken` is set, every fourth response becomes
/// a 500 (the model still ran; its answer is lost).
fn faulty(app: axum::Router, broken: Arc<AtomicBool>) -> axum::Router {
    let count = Arc::new(AtomicU64::new(0));
    app.layer(tower::util::MapResponseLayer::new(
        move |res: axum::response::Response| {
            let n = count.fetch_add(1, Ordering::Relaxed);
            if broken.load(Ordering::Relaxed) && n % 4 == 0 {
                let mut res = axum::response::Response::new(axum::body::Body::from("v2 broke"));
                *res.status_mut() = http::StatusCode::INTERNAL_SERVER_ERROR;
                res
            } else {
                res
            }
        },
    ))
}

fn describe_event(e: &PlanEvent) -> String {
    match e {
        PlanEvent::Started { stable, candidate } => {
            format!("started: {candidate} (v2) rolls out, {stable} (v1) is stable")
        }
        PlanEvent::Phase(Phase::Mirror { fraction }) => {
            format!(
                "mirror {:.0}% of requests to the candidate",
                fraction * 100.0
            )
        }
        PlanEvent::Phase(Phase::Canary { step, steps, split }) => {
            format!("canary step {step}/{steps}: {:.0}% of users", split * 100.0)
        }
        PlanEvent::Phase(Phase::PostPromotion) => "post-promotion bake (v1 kept warm)".into(),
        PlanEvent::Gate { gate, verdict } => match verdict {
            GateVerdict::Pass(figures) => format!("  gate {gate}: pass, {figures}"),
            GateVerdict::Fail(why) => format!("  gate {gate}: FAIL, {why}"),
            GateVerdict::Inconclusive(why) => format!("  gate {gate}: waiting ({why})"),
        },
        PlanEvent::Promoted => "promoted".into(),
        PlanEvent::Aborted(why) => format!("ABORTED, rolled back to the stable color: {why}"),
        PlanEvent::Completed => "completed".into(),
        other => format!("{other:?}"),
    }
}
