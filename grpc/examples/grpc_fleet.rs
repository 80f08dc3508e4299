//! The model fleet over gRPC: the real iris models served by tonic, v1 (blue)
//! and v2 (green) behind a `BlueGreenRouter` applied with
//! `Server::builder().layer(..)`, green's mirrored answers compared with
//! blue's (prost-decoded, as JSON), then a sticky canary, promote, drain and
//! rollback, with unary and server-streaming calls at every step.
//!
//! ```text
//! cargo run -p tower-rollout-grpc --example grpc_fleet                         # the story, then exit
//! cargo run -p tower-rollout-grpc --example grpc_fleet -- --serve 127.0.0.1:50051   # stay up
//! ```
//!
//! The story is `tower_rollout_grpc::fleet::fleet_demo` (also run by
//! `tests/grpc_fleet.rs`); this program prints it and exits 0, or non-zero
//! naming what went wrong.
//!
//! `--serve ADDR` keeps the fleet up until Ctrl-C
//! (`tower_rollout_grpc::fleet_server`, tested by `tests/reflection.rs`):
//! green mirrored and compared, 10% of users (by the `x-user-id` metadata)
//! on green, and gRPC server reflection, so `grpcurl -plaintext ADDR list`
//! works without the `.proto` files. Ctrl-C prints the comparison report.

use std::net::SocketAddr;
use std::process::ExitCode;

use tower_rollout::shadow::ShadowReport;
use tower_rollout_grpc::fleet::{fleet_demo, FleetOptions};
use tower_rollout_grpc::fleet_server::FleetServer;
use tower_rollout_grpc::BoxError;

const USAGE: &str = "usage: grpc_fleet [--serve ADDR]
  (no arguments)   run the story against a server on 127.0.0.1:0, then exit
  --serve ADDR     serve iris.v1.Iris with reflection on ADDR (e.g. 127.0.0.1:50051) until Ctrl-C";

enum Mode {
    Demo,
    Serve(SocketAddr),
}

fn mode() -> Result<Mode, String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.as_slice() {
        [] => Ok(Mode::Demo),
        [flag, addr] if flag == "--serve" => addr.parse().map(Mode::Serve).map_err(|_| {
            format!("--serve: {addr:?} is not an address like 127.0.0.1:50051\n{USAGE}")
        }),
        [flag] if flag == "--serve" => Err(format!(
            "--serve needs an address, e.g. --serve 127.0.0.1:50051\n{USAGE}"
        )),
        [flag] if flag == "--help" || flag == "-h" => Err(USAGE.to_owned()),
        _ => Err(format!("unknown arguments {args:?}\n{USAGE}")),
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let result = match mode() {
        Ok(Mode::Demo) => demo().await,
        Ok(Mode::Serve(addr)) => serve(addr).await,
        Err(usage) => {
            eprintln!("{usage}");
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("grpc_fleet: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn demo() -> Result<(), BoxError> {
    let mut out = std::io::stdout();
    let summary = fleet_demo(&FleetOptions::default(), &mut out).await?;
    let problems = summary.problems();
    if !problems.is_empty() {
        return Err(format!("something is wrong:\n  - {}", problems.join("\n  - ")).into());
    }
    println!("checks passed");
    Ok(())
}

async fn serve(addr: SocketAddr) -> Result<(), BoxError> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| format!("cannot listen on {addr}: {e}"))?;
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let mut server = FleetServer::start(listener, ctrl_c).await?;
    server.handle.mirror_standby(1.0)?;
    server.handle.set_split(0.1)?;
    let addr = server.addr;
    println!(
        "serving iris.v1.Iris (gRPC, plaintext HTTP/2) on {addr}, with server reflection
  v1 (blue, live):     {}
  v2 (green, standby): {}
  green gets a copy of every call served by blue, compared with blue's answer
  10% of users (by the x-user-id metadata) are served by green

try (grpcurl; any gRPC reflection client works, v1 or v1alpha):
  grpcurl -plaintext {addr} list
  grpcurl -plaintext {addr} describe iris.v1.Iris
  grpcurl -plaintext -H 'x-user-id: alice' -d '{{\"features\": [6.1, 2.8, 4.7, 1.2]}}' {addr} iris.v1.Iris/Predict
  grpcurl -plaintext -d '{{\"flowers\": [{{\"features\": [5.1, 3.5, 1.4, 0.2]}}, {{\"features\": [6.3, 2.8, 5.1, 1.5]}}]}}' \\
       {addr} iris.v1.Iris/PredictStream
(the x-served-by response metadata names the color and version that answered,
 e.g. `green; version=v2`: grpcurl -v shows it)

Ctrl-C prints the comparison report and stops.",
        server.v1.version().describe(),
        server.v2.version().describe(),
    );
    server.wait().await?;
    println!("\n{}", report(&server.handle.shadow_report()));
    let status = server.handle.status();
    println!(
        "served: blue {}, green {}",
        status.blue.served, status.green.served
    );
    Ok(())
}

/// The comparison in two lines: agreement, and mismatches per field.
fn report(r: &ShadowReport) -> String {
    let fields: Vec<String> = r
        .field_mismatches
        .iter()
        .map(|(f, n)| format!("{f} {n}"))
        .collect();
    format!(
        "compared {} calls (prost-decoded, JSON): agreement {}\nmismatches per field: {}",
        r.matched + r.mismatched,
        r.agreement_rate()
            .map_or("-".into(), |a| format!("{:.1}%", 100.0 * a)),
        if fields.is_empty() {
            "none".into()
        } else {
            fields.join(", ")
        }
    )
}
