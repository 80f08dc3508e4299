//! The model fleet over gRPC: the real iris models served by tonic, v1 (blue)
//! and v2 (green) behind a `BlueGreenRouter` applied with
//! `Server::builder().layer(..)`, green's mirrored answers compared with
//! blue's (prost-decoded, as JSON), then a sticky canary, promote, drain and
//! rollback, with unary and server-streaming calls at every step.
//!
//! ```text
//! cargo run -p tower-rollout-grpc --example grpc_fleet
//! ```
//!
//! The story is `tower_rollout_grpc::fleet::fleet_demo` (also run by
//! `tests/grpc_fleet.rs`); this program prints it and exits 0, or non-zero
//! naming what went wrong.

use std::process::ExitCode;

use tower_rollout_grpc::fleet::{fleet_demo, FleetOptions};

#[tokio::main]
async fn main() -> ExitCode {
    let mut out = std::io::stdout();
    match fleet_demo(&FleetOptions::default(), &mut out).await {
        Ok(summary) => {
            let problems = summary.problems();
            if problems.is_empty() {
                println!("checks passed");
                ExitCode::SUCCESS
            } else {
                eprintln!(
                    "grpc_fleet: something is wrong:\n  - {}",
                    problems.join("\n  - ")
                );
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("grpc_fleet: {e}");
            ExitCode::FAILURE
        }
    }
}
