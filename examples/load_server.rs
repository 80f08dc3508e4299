//! The axum model server used by `scripts/load.sh`, in one of several
//! configurations, so that the same server can be measured bare and with each
//! layer side by side.
//!
//! ```text
//! cargo run --release --features idle --example load_server -- MODE [ADDR]
//! ```
//!
//! MODE is one of:
//! - `bare`: the model server alone;
//! - `router`: behind a `BlueGreenRouter` (v1 active, v2 standby, no split);
//! - `mirror10`, `mirror10-slow`, `mirror10-hang`, `mirror100-hang`: behind a
//!   `MirrorLayer` copying 10% (or 100%) of requests to a healthy shadow, a
//!   shadow 100 times slower (10 ms per request against the primary's ~0.1 ms
//!   on loopback), or a shadow that never answers;
//! - `mirror10-idle`: `mirror10` with shadow work on an idle-priority thread
//!   (`IdleSpawner`, feature `idle`);
//! - `mirror10-noop`: 10% copied to a shadow that reads the body and answers at
//!   once (the cost of the mirroring itself, without a second model's work);
//! - `router-measured`: the router measuring every request's outcome (what a
//!   running rollout plan turns on);
//! - `router-mirror10`: the router with `mirror_standby(0.1)`;
//! - `compare10`: a `ShadowComparator` comparing 10% of requests with v2 on
//!   the predicted label (JSON);
//! - `router-compare10`: the router with `mirror_standby(0.1)` and a
//!   comparator.
//!
//! It prints `listening on ADDR` and serves until killed. ADDR defaults to
//! 127.0.0.1:0 (a port the OS picks).

use std::time::Duration;

use axum::{routing::post, Json, Router};
use serde::{Deserialize, Serialize};
use tower_rollout::mirror::{IdleSpawner, MirrorLayer};
use tower_rollout::shadow::{CompareSettings, JsonCompare, ShadowComparator};
use tower_rollout::BlueGreenRouter;

#[derive(Deserialize)]
struct Features {
    features: [f32; 4],
}

#[derive(Serialize)]
struct Prediction {
    label: &'static str,
    probabilities: [f32; 3],
    version: &'static str,
}

const LABELS: [&str; 3] = ["setosa", "versicolor", "virginica"];

/// A fixed multinomial logistic regression over iris-like features.
fn predict(x: [f32; 4], weights: &[[f32; 5]; 3], version: &'static str) -> Prediction {
    let logits: Vec<f32> = weights
        .iter()
        .map(|w| w[4] + w[..4].iter().zip(x).map(|(a, b)| a * b).sum::<f32>())
        .collect();
    let max = logits.iter().cloned().fold(f32::MIN, f32::max);
    let exp: Vec<f32> = logits.iter().map(|l| (l - max).exp()).collect();
    let sum: f32 = exp.iter().sum();
    let probabilities = [exp[0] / sum, exp[1] / sum, exp[2] / sum];
    let best = (0..3)
        .max_by(|&a, &b| probabilities[a].total_cmp(&probabilities[b]))
        .unwrap_or(0);
    Prediction {
        label: LABELS[best],
        probabilities,
        version,
    }
}

const V1: [[f32; 5]; 3] = [
    [0.4, 1.4, -2.2, -1.0, 0.3],
    [0.5, -1.6, 0.6, -1.3, 1.0],
    [-0.9, 0.2, 1.6, 2.3, -1.3],
];
const V2: [[f32; 5]; 3] = [
    [0.5, 1.3, -2.1, -1.1, 0.2],
    [0.4, -1.5, 0.5, -1.2, 1.1],
    [-0.9, 0.3, 1.7, 2.2, -1.2],
];

#[derive(Clone, Copy)]
enum Delay {
    None,
    Slow,
    Hang,
}

fn model(version: &'static str, weights: &'static [[f32; 5]; 3], delay: Delay) -> Router {
    Router::new().route(
        "/predict",
        post(move |Json(f): Json<Features>| async move {
            match delay {
                Delay::None => {}
                Delay::Slow => tokio::time::sleep(Duration::from_millis(10)).await,
                Delay::Hang => std::future::pending::<()>().await,
            }
            Json(predict(f.features, weights, version))
        }),
    )
}

fn mirrored(fraction: f64, delay: Delay) -> Router {
    let (layer, _stats) = MirrorLayer::builder(model("v2", &V2, delay))
        .sample(fraction)
        .build()
        .expect("valid mirror settings");
    model("v1", &V1, Delay::None).layer(layer)
}

/// Shadow work on its own thread at idle CPU priority.
fn mirrored_idle(fraction: f64) -> Router {
    let spawner = IdleSpawner::new().expect("shadow thread");
    let (layer, _stats) = MirrorLayer::builder(model("v2", &V2, Delay::None))
        .sample(fraction)
        .spawner(spawner)
        .build()
        .expect("valid mirror settings");
    model("v1", &V1, Delay::None).layer(layer)
}

fn app(mode: &str) -> Option<Router> {
    Some(match mode {
        "bare" => model("v1", &V1, Delay::None),
        "router" => {
            let (layer, _handle) = BlueGreenRouter::layer(model("v2", &V2, Delay::None));
            model("v1", &V1, Delay::None).layer(layer)
        }
        "mirror10" => mirrored(0.1, Delay::None),
        "mirror10-idle" => mirrored_idle(0.1),
        "mirror10-noop" => {
            // The mechanism alone: a shadow that reads the copied body and
            // answers at once, without the model's work.
            let noop = Router::new().route("/predict", post(|_body: axum::body::Bytes| async {}));
            let (layer, _stats) = MirrorLayer::builder(noop)
                .sample(0.1)
                .build()
                .expect("valid mirror settings");
            model("v1", &V1, Delay::None).layer(layer)
        }
        "mirror10-slow" => mirrored(0.1, Delay::Slow),
        "mirror10-hang" => mirrored(0.1, Delay::Hang),
        "mirror100-hang" => mirrored(1.0, Delay::Hang),
        "compare10" => {
            let comparator = JsonCompare::new()
                .only("/label")
                .build()
                .expect("valid comparator");
            let (layer, _report) =
                ShadowComparator::builder(model("v2", &V2, Delay::None), comparator)
                    .sample(0.1)
                    .build()
                    .expect("valid settings");
            model("v1", &V1, Delay::None).layer(layer)
        }
        "router-compare10" => {
            let comparator = JsonCompare::new()
                .only("/label")
                .build()
                .expect("valid comparator");
            let (layer, handle) = BlueGreenRouter::builder()
                .compare(CompareSettings::new(comparator))
                .layer(model("v2", &V2, Delay::None))
                .expect("valid settings");
            handle.mirror_standby(0.1).expect("valid fraction");
            model("v1", &V1, Delay::None).layer(layer)
        }
        "router-measured" => {
            let (layer, _handle) = BlueGreenRouter::builder()
                .measure(true)
                .layer(model("v2", &V2, Delay::None))
                .expect("valid settings");
            model("v1", &V1, Delay::None).layer(layer)
        }
        "router-mirror10" => {
            let (layer, handle) = BlueGreenRouter::layer(model("v2", &V2, Delay::None));
            handle.mirror_standby(0.1).expect("valid fraction");
            model("v1", &V1, Delay::None).layer(layer)
        }
        _ => return None,
    })
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let mode = args.next().unwrap_or_else(|| "bare".into());
    let addr = args.next().unwrap_or_else(|| "127.0.0.1:0".into());
    let Some(app) = app(&mode) else {
        eprintln!("unknown mode {mode:?}; see the doc comment of examples/load_server.rs");
        std::process::exit(2);
    };
    // One worker thread: the load generator gets the other core.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(&addr).await?;
        println!("listening on {}", listener.local_addr()?);
        axum::serve(listener, app).await?;
        Ok(())
    })
}
