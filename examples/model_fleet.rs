//! A model fleet: two real iris classifiers, v1 (a logistic regression, blue,
//! live) and v2 (a decision tree, green, standby), served by axum behind one
//! `BlueGreenRouter`, rolled out step by step while a client asks.
//!
//! ```text
//! cargo run --example model_fleet                        # the walkthrough, then exit
//! cargo run --example model_fleet -- --serve 127.0.0.1:3000   # stay up for curl
//! ```
//!
//! The walkthrough serves on 127.0.0.1 (a port the OS picks), drives its own
//! server with a bounded number of requests, and prints each step: blue live;
//! green mirrored and compared (`mirror_standby`, `shadow_report`); a sticky
//! 10% canary; promote, with a request still in flight on blue and
//! `drained(Blue)` awaited; rollback. It exits 0 with a summary, or non-zero
//! naming what went wrong (a failed request, an answer that is not the
//! serving version's, a user who saw both colors, ...).
//!
//! `--serve ADDR` keeps the server up with green mirrored and compared and a
//! 10% canary, prints curl commands, and on Ctrl-C prints the comparison
//! report. Arguments are read with `std::env::args` ([`parse_args`]).
//!
//! `tests/model_fleet.rs` includes this file and checks [`run_walkthrough`]'s
//! [`Summary`].

use std::convert::Infallible;
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
use tower_rollout::plan::{Gate, Phase, PlanError, PlanEvent, PlanOutcome, RolloutPlan, Verdict};
use tower_rollout::shadow::{Comparator, CompareSettings, JsonCompare, ShadowReport};
use tower_rollout::{BlueGreenRouter, Color, ConfigError, RolloutHandle};
use tower_rollout_models::{app, samples, Features, Model, Prediction};

pub(crate) type DemoError = Box<dyn std::error::Error + Send + Sync>;

/// Probabilities of v1 and v2 closer than this count as agreeing.
pub(crate) const PROBABILITY_TOLERANCE: f64 = 0.25;

/// The header a client names its user with (the sticky canary key).
const USER: &str = "x-user-id";
/// The header the router names the serving color with.
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
  --plan           run an automated rollout plan with a good v2, then a bad one,
                   and print each timeline
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
                         one color per user, blue drained, rollback to blue"
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

/// `--plan`: the plan with a good v2 (expected: promoted, no failure) and a
/// bad one (expected: rolled back, no failure after the abort).
async fn plans(out: &mut dyn Write) -> Result<(), DemoError> {
    let good = run_plan(true, out).await?;
    let bad = run_plan(false, out).await?;
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
            "bad v2: {:?}, active {:?}, {} failed after the abort",
            bad.outcome, bad.active_at_end, bad.failed_after_abort
        ));
    }
    if problems.is_empty() {
        writeln!(
            out,
            "checks passed: the good v2 was promoted with no failed request; the bad v2 was rolled back \
             automatically and no request sent after the abort failed"
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

/// The fleet's server: v1 (blue) and v2 (green) behind one router.
struct Fleet {
    addr: SocketAddr,
    handle: RolloutHandle,
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
            .sticky_header(USER)
            .served_by_header(SERVED_BY)
            .compare(CompareSettings::new(comparator()?))
            .build(app(v1.clone()), app(v2.clone()))?;
        // axum::serve wants axum's own response type: mount the router as the
        // fallback of an axum Router, with the admin routes beside it.
        let mut app = axum::Router::new().fallback_service(router);
        if let Some(token) = admin_token {
            let admin = Admin::builder()
                .token(token)
                .handle(handle.clone())
                .build()?;
            app = app.nest_service("/admin", admin);
        }
        let addr = listener.local_addr()?;
        let server = tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(shutdown)
                .await
        });
        Ok(Fleet {
            addr,
            handle,
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
(the {SERVED_BY} response header names the color that answered; about one {USER} in ten gets green)

admin (bearer token {token}):
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
    /// Requests while blue alone is live.
    pub(crate) live: usize,
    /// Requests mirrored to green and compared (`samples(mirrored)`).
    pub(crate) mirrored: usize,
    /// The canary's split.
    pub(crate) canary: f64,
    /// Users in the canary, two requests each.
    pub(crate) users: usize,
    /// Requests after the promote, and again after the rollback.
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

/// Requests answered per color in one step.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Served {
    pub(crate) blue: u64,
    pub(crate) green: u64,
}

impl Served {
    fn add(&mut self, color: Color) {
        match color {
            Color::Blue => self.blue += 1,
            Color::Green => self.green += 1,
        }
    }
}

/// What the walkthrough saw.
#[derive(Debug, Clone, Default)]
pub(crate) struct Summary {
    /// Requests sent.
    pub(crate) requests: u64,
    /// Requests that failed (transport error, timeout, status not 200, no
    /// served-by header, body not a prediction).
    pub(crate) failed: u64,
    /// The first failures, for the message.
    pub(crate) errors: Vec<String>,
    /// Answers that differ from what the serving color's model predicts for
    /// that input (checked against local copies of both models).
    pub(crate) wrong_answers: u64,
    /// Step 1: blue alone live.
    pub(crate) live: Served,
    /// Step 2: what users got while green was mirrored.
    pub(crate) mirror: Served,
    /// Step 2: the comparison of the mirrored copies.
    pub(crate) report: ShadowReport,
    /// Step 3: the canary's split, users, users on green, and users who got
    /// answers from both colors.
    pub(crate) canary_split: f64,
    pub(crate) canary_users: u64,
    pub(crate) canary_green_users: u64,
    pub(crate) canary_users_on_both: u64,
    /// Step 4: blue's in-flight count just after the promote (the held request).
    pub(crate) blue_in_flight_at_promote: u64,
    /// Step 4: `drained(Blue)` was already resolved while the request was held
    /// (wrong: it was in flight).
    pub(crate) drained_early: bool,
    /// Step 4: the color and version that answered the held request.
    pub(crate) held_served_by: Option<Color>,
    pub(crate) held_version: Option<String>,
    /// Step 4: `drained(Blue)` resolved after the held request finished.
    pub(crate) blue_drained: bool,
    /// Step 4: requests after the promote.
    pub(crate) after_promote: Served,
    /// Step 5: requests after the rollback.
    pub(crate) after_rollback: Served,
    /// The active color at the end.
    pub(crate) active_at_end: Option<Color>,
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
        if self.live.green + self.mirror.green > 0 {
            p.push("green answered users before the canary".into());
        }
        let compared = self.report.matched + self.report.mismatched;
        if compared != self.mirror.blue {
            p.push(format!(
                "{} of {} mirrored requests compared ({:?})",
                compared, self.mirror.blue, self.report
            ));
        }
        if self.canary_users_on_both > 0 {
            p.push(format!(
                "{} canary users saw both colors",
                self.canary_users_on_both
            ));
        }
        let (n, split) = (self.canary_users as f64, self.canary_split);
        let share = self.canary_green_users as f64 / n.max(1.0);
        // Five standard deviations of a binomial share: sticky hashing of
        // distinct ids lands this far off once in millions of id sets.
        if (share - split).abs() > 5.0 * (split * (1.0 - split) / n.max(1.0)).sqrt() {
            p.push(format!(
                "canary share {share:.3} is far from the split {split}"
            ));
        }
        if self.blue_in_flight_at_promote == 0 || self.drained_early {
            p.push("the held request was not in flight on blue across the promote".into());
        }
        if self.held_served_by != Some(Color::Blue) || self.held_version.as_deref() != Some("v1") {
            p.push(format!(
                "the request admitted before the promote was answered by {:?} ({:?}), not blue (v1)",
                self.held_served_by, self.held_version
            ));
        }
        if !self.blue_drained {
            p.push("blue did not drain".into());
        }
        if self.after_promote.blue > 0 {
            p.push("blue answered after the promote".into());
        }
        if self.after_rollback.green > 0 || self.active_at_end != Some(Color::Blue) {
            p.push("the rollback did not put blue back".into());
        }
        p
    }
}

type Body = BoxBody<Bytes, Infallible>;

/// `POST uri` with a JSON body, as user `user` (the sticky key).
fn predict_request(uri: &str, user: &str, body: Body) -> Result<http::Request<Body>, DemoError> {
    Ok(http::Request::post(uri)
        .header("content-type", "application/json")
        .header(USER, user)
        .body(body)?)
}

/// The walkthrough's client and bookkeeping.
struct Tour<'a> {
    out: &'a mut dyn Write,
    client: Client<HttpConnector, Body>,
    uri: String,
    v1: Model,
    v2: Model,
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

    /// Reads a response: the serving color and the prediction, checked
    /// against the local model of that color.
    async fn read(
        &mut self,
        x: [f32; 4],
        res: http::Response<hyper::body::Incoming>,
    ) -> Result<(Color, Prediction), DemoError> {
        let status = res.status();
        let color: Option<Color> = res
            .headers()
            .get(SERVED_BY)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok());
        let body = res.into_body().collect().await?.to_bytes();
        if status != http::StatusCode::OK {
            return Err(format!("status {status}: {}", String::from_utf8_lossy(&body)).into());
        }
        let color = color.ok_or("no valid x-served-by header")?;
        let prediction: Prediction = serde_json::from_slice(&body)?;
        let model = match color {
            Color::Blue => &self.v1,
            Color::Green => &self.v2,
        };
        if prediction != model.predict(x) {
            self.summary.wrong_answers += 1;
        }
        Ok((color, prediction))
    }

    /// One request; failures are counted and give `None`.
    async fn ask(&mut self, user: &str, x: [f32; 4]) -> Option<Color> {
        self.summary.requests += 1;
        let result = async {
            let body = serde_json::to_vec(&Features { features: x })?;
            let req = self.request(user, Full::new(Bytes::from(body)).boxed())?;
            let res = tokio::time::timeout(DEADLINE, self.client.request(req))
                .await
                .map_err(|_| "no answer within the deadline")??;
            self.read(x, res).await
        }
        .await;
        match result {
            Ok((color, _)) => Some(color),
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
            if let Some(color) = self.ask(&format!("{prefix}-{i}"), x).await {
                served.add(color);
            }
        }
        served
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
        writeln!(
            out,
            "   e.g. features {x}: blue says {}, green says {}",
            d.primary, d.shadow
        )?;
    }
    writeln!(
        out,
        "   latency p50 / p99: blue {} / {} ms, green {} / {} ms",
        ms(r.primary_latency.p50),
        ms(r.primary_latency.p99),
        ms(r.shadow_latency.p50),
        ms(r.shadow_latency.p99)
    )
}

/// Runs the walkthrough against a server of its own on 127.0.0.1:0, printing
/// each step to `out`.
///
/// # Errors
/// When the models do not train, the server does not start, or a wait (for
/// the comparisons, the held request, the drain) exceeds its deadline. Failed
/// requests are counted in the [`Summary`] instead; see
/// [`Summary::problems`].
pub(crate) async fn run_walkthrough(
    opts: &Options,
    out: &mut dyn Write,
) -> Result<Summary, DemoError> {
    let (v1, v2) = Model::train_both()?;
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let fleet = Fleet::start(listener, &v1, &v2, None, async {
        let _ = stopped.await;
    })
    .await?;
    let handle = fleet.handle.clone();
    writeln!(
        out,
        "tower-rollout model fleet: two iris classifiers behind one BlueGreenRouter
  v1 (blue):  {}
  v2 (green): {}
  serving on http://{}/predict\n",
        describe(&v1),
        describe(&v2),
        fleet.addr
    )?;
    let mut tour = Tour {
        out,
        client: Client::builder(TokioExecutor::new()).build_http(),
        uri: format!("http://{}/predict", fleet.addr),
        v1,
        v2,
        summary: Summary::default(),
    };

    // 1. Blue alone.
    writeln!(tour.out, "1. blue (v1) is live")?;
    tour.summary.live = tour.round("live", opts.live).await;
    let s = tour.summary.live;
    writeln!(
        tour.out,
        "   {} requests: {} answered by blue, {} by green\n",
        opts.live, s.blue, s.green
    )?;

    // 2. Green mirrored and compared.
    writeln!(
        tour.out,
        "2. green (v2) mirrored and compared: handle.mirror_standby(1.0)"
    )?;
    handle.mirror_standby(1.0)?;
    tour.summary.mirror = tour.round("mirror", opts.mirrored).await;
    let expected = tour.summary.mirror.blue;
    until("the comparisons", || {
        handle.shadow_report().total() >= expected
    })
    .await?;
    handle.mirror_standby(0.0)?;
    tour.summary.report = handle.shadow_report();
    let s = tour.summary.mirror;
    writeln!(
        tour.out,
        "   {} requests: users got blue's answers ({} by blue, {} by green); each copied to green",
        opts.mirrored, s.blue, s.green
    )?;
    print_report(tour.out, &tour.summary.report)?;
    writeln!(tour.out, "   mirroring off: handle.mirror_standby(0.0)\n")?;

    // 3. A sticky canary.
    writeln!(
        tour.out,
        "3. canary: handle.set_split({}), sticky by the {USER} header",
        opts.canary
    )?;
    handle.set_split(opts.canary)?;
    let mut blue_user = None;
    let (mut green_users, mut both) = (0, 0);
    let inputs = samples(2 * opts.users);
    for u in 0..opts.users {
        let user = format!("user-{u}");
        let first = tour.ask(&user, inputs[2 * u]).await;
        let second = tour.ask(&user, inputs[2 * u + 1]).await;
        match (first, second) {
            (Some(a), Some(b)) if a != b => both += 1,
            (Some(Color::Green), _) | (_, Some(Color::Green)) => green_users += 1,
            (Some(Color::Blue), _) | (_, Some(Color::Blue)) => {
                blue_user.get_or_insert(user);
            }
            (None, None) => {}
        }
    }
    tour.summary.canary_split = opts.canary;
    tour.summary.canary_users = opts.users as u64;
    tour.summary.canary_green_users = green_users;
    tour.summary.canary_users_on_both = both;
    writeln!(
        tour.out,
        "   {} users x 2 requests: {} users ({:.1}%) answered by green, the others by blue; {} saw both colors\n",
        opts.users,
        green_users,
        100.0 * green_users as f64 / opts.users as f64,
        both
    )?;

    // 4. Promote while a request is in flight on blue, then drain blue.
    writeln!(tour.out, "4. promote: green (v2) is live")?;
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
    handle.promote();
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
    let s = tour.summary.after_promote;
    writeln!(
        tour.out,
        "   {} new requests: {} answered by green, {} by blue",
        opts.after, s.green, s.blue
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
            Ok((color, p)) => {
                tour.summary.held_served_by = Some(color);
                tour.summary.held_version = Some(p.version);
            }
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
        "   the held request finished on {} ({}); handle.drained(Blue) resolved, blue in flight {}: safe to unload v1\n",
        tour.summary.held_served_by.map_or("?", |c| c.as_str()),
        tour.summary.held_version.as_deref().unwrap_or("?"),
        handle.in_flight(Color::Blue)
    )?;

    // 5. Roll back.
    writeln!(tour.out, "5. rollback: handle.rollback()")?;
    handle.rollback();
    tour.summary.after_rollback = tour.round("after-rollback", opts.after).await;
    tour.summary.active_at_end = Some(handle.active());
    let s = tour.summary.after_rollback;
    writeln!(
        tour.out,
        "   {} requests: {} answered by blue (v1), {} by green\n",
        opts.after, s.blue, s.green
    )?;

    let status = handle.status();
    let history: Vec<String> = status
        .history
        .iter()
        .map(|t| format!("{:?}", t.kind))
        .collect();
    let summary = tour.summary;
    writeln!(
        tour.out,
        "summary: {} requests, {} failed, {} answers not the serving version's; served blue {}, green {}; transitions {}",
        summary.requests,
        summary.failed,
        summary.wrong_answers,
        status.blue.served,
        status.green.served,
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
        .gate(Gate::agreement(0.75).min_sample(50))
        .gate(Gate::error_rate(0.02).min_sample(30))
        .gate(
            Gate::latency(0.99, 3.0)
                .slack(Duration::from_millis(5))
                .min_sample(30),
        )
        .interval(Duration::from_millis(100))
        .build()
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
    /// The active color at the end.
    pub(crate) active_at_end: Option<Color>,
    /// The plan's timeline, one line per event.
    pub(crate) timeline: Vec<String>,
}

/// One request's record: when it was sent and whether it succeeded.
struct Sent {
    at: std::time::Instant,
    ok: bool,
    green: bool,
}

/// Runs [`demo_plan`] against a fresh server while four clients send
/// requests (each stops at the plan's end plus half a second, at most 60 s).
/// With `good == false`, v2 starts answering every fourth request with a 500
/// when the plan reaches its second canary step.
pub(crate) async fn run_plan(good: bool, out: &mut dyn Write) -> Result<PlanSummary, DemoError> {
    let (v1, v2) = Model::train_both()?;
    let broken = Arc::new(AtomicBool::new(false));
    let (router, handle) = BlueGreenRouter::builder()
        .sticky_header(USER)
        .served_by_header(SERVED_BY)
        .compare(CompareSettings::new(comparator()?))
        .build(app(v1.clone()), faulty(app(v2.clone()), broken.clone()))?;
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
    writeln!(
        out,
        "rollout plan with a {} v2: mirror until 100 compared, canary 10% / 25% / 50% (1 s each), promote, bake 1 s",
        if good { "good" } else { "bad" }
    )?;

    let run = demo_plan()?.start(&handle)?;
    let mut events = run.subscribe();
    let aborted_at = Arc::new(std::sync::Mutex::new(None::<std::time::Instant>));
    let watcher = {
        let (aborted_at, broken) = (aborted_at.clone(), broken.clone());
        tokio::spawn(async move {
            while let Ok(record) = events.recv().await {
                match record.event {
                    PlanEvent::Phase(Phase::Canary { step: 2, .. }) if !good => {
                        broken.store(true, Ordering::SeqCst);
                    }
                    PlanEvent::Aborted(_) => {
                        *aborted_at.lock().unwrap() = Some(std::time::Instant::now());
                    }
                    _ => {}
                }
            }
        })
    };
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
                            let green = res.headers().get(SERVED_BY).is_some_and(|v| v == "green");
                            let ok = res.status() == http::StatusCode::OK;
                            (res.into_body().collect().await.is_ok() && ok, green)
                        }
                        _ => (false, false),
                    },
                    Err(_) => (false, false),
                };
                sent.push(Sent { at, ok, green });
            }
            sent
        }));
    }
    let outcome = tokio::time::timeout(Duration::from_secs(60), run.finished())
        .await
        .map_err(|_| "the plan did not finish within 60 s")?;
    finished.store(true, Ordering::SeqCst);
    let mut sent = Vec::new();
    for c in clients {
        sent.extend(c.await?);
    }
    watcher.abort();

    let aborted_at = *aborted_at.lock().unwrap();
    let mut summary = PlanSummary {
        outcome: Some(outcome.clone()),
        requests: sent.len() as u64,
        failed: sent.iter().filter(|s| !s.ok).count() as u64,
        failed_on_green: sent.iter().filter(|s| !s.ok && s.green).count() as u64,
        active_at_end: Some(handle.active()),
        ..PlanSummary::default()
    };
    if let Some(t) = aborted_at {
        let after: Vec<&Sent> = sent.iter().filter(|s| s.at > t).collect();
        summary.sent_after_abort = after.len() as u64;
        summary.failed_after_abort = after.iter().filter(|s| !s.ok).count() as u64;
    }
    let status = run.status();
    for r in &status.history {
        let line = format!(
            "{:>7.3} s  {}",
            r.at.as_secs_f64(),
            describe_event(&r.event)
        );
        writeln!(out, "  {line}")?;
        summary.timeline.push(line);
    }
    let measured = handle.measurements();
    writeln!(
        out,
        "  outcome: {}; active at the end: {}
  clients: {} requests, {} failed ({} of them answered by a broken v2){}
  measured during the plan: blue {} finished / {} failed, green {} finished / {} failed\n",
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
        measured.blue.finished,
        measured.blue.failures,
        measured.green.finished,
        measured.green.failures,
    )?;
    let _ = stop.send(());
    drop(client);
    if tokio::time::timeout(DEADLINE, server).await.is_err() {
        return Err("the server did not shut down".into());
    }
    Ok(summary)
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
            Verdict::Pass => format!("  gate {gate}: pass"),
            Verdict::Fail(why) => format!("  gate {gate}: FAIL, {why}"),
            Verdict::Inconclusive(why) => format!("  gate {gate}: waiting ({why})"),
        },
        PlanEvent::Promoted => "promoted".into(),
        PlanEvent::Aborted(why) => format!("ABORTED, rolled back to the stable color: {why}"),
        PlanEvent::Completed => "completed".into(),
        other => format!("{other:?}"),
    }
}
