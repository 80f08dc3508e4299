//! `rollout`: a command line over the admin HTTP API of
//! [tower-rollout](https://docs.rs/tower-rollout) (`tower_rollout::admin::Admin`).
//!
//! ```text
//! export ROLLOUT_ADMIN_URL=http://127.0.0.1:3000/admin ROLLOUT_ADMIN_TOKEN=...
//! rollout status --watch
//! rollout split 10% && rollout promote --to green --expect-generation 4
//! rollout plan start plan.json && rollout plan abort
//! rollout --model vision status    # one model of a fleet admin
//! ```
//!
//! Exit codes are in `rollout --help` (and [`failure::EXIT_CODES`]).

mod args;
mod client;
mod commands;
mod failure;
mod output;
mod table;
mod view;
mod watch;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    // clap prints usage errors and exits with 2 (our usage code), help with 0.
    let cli = args::Cli::parse();
    let mut out = std::io::stdout().lock();
    match commands::run(&cli, &mut out) {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            eprintln!("rollout: {failure}");
            ExitCode::from(failure.kind.code())
        }
    }
}
