//! The command line: flags, commands, and the parsers of their values.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::failure::EXIT_CODES;

/// Watch and steer tower-rollout model rollouts through their admin API.
#[derive(Debug, Parser)]
#[command(name = "rollout", version, after_help = EXIT_CODES)]
pub(crate) struct Cli {
    #[command(flatten)]
    pub(crate) conn: Connection,

    /// Address one model of a fleet admin (see `rollout models`).
    #[arg(long, global = true, value_name = "NAME", value_parser = model_name)]
    pub(crate) model: Option<String>,

    /// Print the server's JSON answer instead of a table or summary.
    #[arg(long, global = true)]
    pub(crate) json: bool,

    #[command(subcommand)]
    pub(crate) command: Command,
}

/// Where the admin is and how to reach it.
#[derive(Debug, Args)]
pub(crate) struct Connection {
    /// The admin's base URL, where it is mounted: http://HOST:PORT/admin
    /// (plain http).
    #[arg(long, global = true, env = "ROLLOUT_ADMIN_URL", value_name = "URL")]
    pub(crate) url: Option<String>,

    /// The admin's bearer token.
    #[arg(
        long,
        global = true,
        env = "ROLLOUT_ADMIN_TOKEN",
        hide_env_values = true,
        value_name = "TOKEN"
    )]
    pub(crate) token: Option<String>,

    /// Seconds to wait for a connection and a whole answer.
    #[arg(long, global = true, value_name = "SECONDS", default_value = "10", value_parser = seconds)]
    pub(crate) timeout: Duration,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Show the live color, versions, traffic, counters and plan (all
    /// models of a fleet admin unless --model).
    Status(StatusArgs),
    /// Make the standby live (the live color becomes the standby, kept warm).
    Promote(PromoteArgs),
    /// Make the previous color live again.
    Rollback(Expect),
    /// Send a fraction of users (by sticky key) to the standby: 0.1 or 10%.
    Split(FractionArgs),
    /// Copy a fraction of live requests to the standby: 0.1 or 10%.
    Mirror(FractionArgs),
    /// Name the next version for the standby on every replica (the admin
    /// of a replica on a shared store; each replica's loader loads it).
    Deploy(DeployArgs),
    /// Start or steer a rollout plan.
    #[command(subcommand)]
    Plan(PlanCommand),
    /// List the models of a fleet admin.
    Models,
}

#[derive(Debug, Args)]
pub(crate) struct StatusArgs {
    /// Redraw the table every --interval until Ctrl-C (or --count frames).
    #[arg(long)]
    pub(crate) watch: bool,

    /// Seconds between redraws (at least 0.1).
    #[arg(long, value_name = "SECONDS", default_value = "2", value_parser = interval, requires = "watch")]
    pub(crate) interval: Duration,

    /// Stop after this many frames.
    #[arg(long, value_name = "N", requires = "watch", value_parser = clap::value_parser!(u64).range(1..))]
    pub(crate) count: Option<u64>,
}

#[derive(Debug, Args)]
pub(crate) struct PromoteArgs {
    /// Make this color live; a no-op when it already is (safe to retry).
    #[arg(long, value_enum, conflicts_with = "version")]
    pub(crate) to: Option<ColorArg>,

    /// Make the color holding this version live; a no-op when it already is.
    #[arg(long, value_name = "V")]
    pub(crate) version: Option<String>,

    /// Promote a standby last seen not ready.
    #[arg(long)]
    pub(crate) force: bool,

    #[command(flatten)]
    pub(crate) expect: Expect,
}

#[derive(Debug, Args)]
pub(crate) struct DeployArgs {
    /// The version label, e.g. iris-v4.
    pub(crate) version: String,

    #[command(flatten)]
    pub(crate) expect: Expect,
}

/// The conditional form of a control call.
#[derive(Debug, Args)]
pub(crate) struct Expect {
    /// Refuse (exit 5) unless the state is still at this generation.
    #[arg(long, value_name = "N")]
    pub(crate) expect_generation: Option<u64>,
}

#[derive(Debug, Args)]
pub(crate) struct FractionArgs {
    /// A fraction between 0 and 1, or a percentage: 0.1, 10%.
    #[arg(value_name = "F", value_parser = fraction, allow_negative_numbers = true)]
    pub(crate) fraction: f64,

    #[command(flatten)]
    pub(crate) expect: Expect,
}

#[derive(Debug, Subcommand)]
pub(crate) enum PlanCommand {
    /// Start a rollout plan from its JSON document (a file, or - for stdin).
    Start {
        /// The plan document: steps, bake times, gates (see the README).
        #[arg(value_name = "FILE")]
        file: PathBuf,
    },
    /// Pause the running plan (its gates still abort it).
    Pause,
    /// Resume a paused plan.
    Resume,
    /// Abort the plan: the stable color takes all traffic again.
    Abort,
    /// Skip the remaining steps and promote now.
    Promote,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum ColorArg {
    Blue,
    Green,
}

impl ColorArg {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            ColorArg::Blue => "blue",
            ColorArg::Green => "green",
        }
    }
}

// === value parsers ===

/// `0.1` or `10%`; the range is the server's to check (it names the limit).
fn fraction(s: &str) -> Result<f64, String> {
    let (number, scale) = match s.strip_suffix('%') {
        Some(n) => (n, 100.0),
        None => (s, 1.0),
    };
    let value: f64 = number
        .trim()
        .parse()
        .map_err(|_| format!("{s:?} is not a fraction such as 0.1 or 10%"))?;
    if !value.is_finite() {
        return Err(format!("{s:?} is not a finite number"));
    }
    Ok(value / scale)
}

fn seconds(s: &str) -> Result<Duration, String> {
    let value: f64 = s
        .parse()
        .map_err(|_| format!("{s:?} is not a number of seconds"))?;
    Duration::try_from_secs_f64(value)
        .ok()
        .filter(|d| !d.is_zero())
        .ok_or_else(|| format!("{s:?} is not a positive number of seconds"))
}

fn interval(s: &str) -> Result<Duration, String> {
    let d = seconds(s)?;
    if d < Duration::from_millis(100) {
        return Err(format!("{s:?} is under 0.1 seconds"));
    }
    Ok(d)
}

/// The rule the fleet applies to names: one URL path segment as it is.
fn model_name(s: &str) -> Result<String, String> {
    let unreserved = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~');
    if s.is_empty() || s == "." || s == ".." || !s.bytes().all(unreserved) {
        return Err(format!(
            "{s:?} is not a model name (letters, digits, '-', '.', '_', '~')"
        ));
    }
    Ok(s.to_owned())
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn fractions_take_numbers_and_percentages() {
        assert_eq!(fraction("0.25"), Ok(0.25));
        assert_eq!(fraction("10%"), Ok(0.1));
        assert_eq!(fraction("1.5"), Ok(1.5), "the range is the server's");
        for bad in ["", "ten", "NaN", "inf", "%", "1e999"] {
            assert!(fraction(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn durations_and_names_are_checked() {
        assert_eq!(seconds("1.5"), Ok(Duration::from_millis(1500)));
        for bad in ["0", "-1", "x", "NaN", "1e400"] {
            assert!(seconds(bad).is_err(), "{bad:?}");
        }
        assert!(interval("0.05").is_err());
        assert_eq!(model_name("iris-v2.1"), Ok("iris-v2.1".into()));
        for bad in ["", ".", "..", "a/b", "a b", "a%2f"] {
            assert!(model_name(bad).is_err(), "{bad:?}");
        }
    }
}
