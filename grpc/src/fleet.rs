//! The model fleet over gRPC: the real iris models of `tower-rollout-models`
//! served by tonic (`proto/iris.proto`, service `iris.v1.Iris` with a unary
//! `Predict` and a server-streaming `PredictStream`), v1 (blue) and v2 (green)
//! behind a `BlueGreenRouter` applied with `Server::builder().layer(..)`,
//! green's mirrored answers compared with blue's by a `Comparator::decoded`
//! that unpacks the gRPC frames with prost and compares them as JSON.
//!
//! [`fleet_demo`] runs the whole story against a server on 127.0.0.1:0 and
//! returns a [`FleetSummary`]; `examples/grpc_fleet.rs` prints it and
//! `tests/grpc_fleet.rs` checks it.
//!
//! ```no_run
//! use tonic::transport::Server;
//! use tower_rollout::shadow::CompareSettings;
//! use tower_rollout::BlueGreenRouter;
//! use tower_rollout_grpc::fleet::{comparator, IrisServer};
//! use tower_rollout_models::Model;
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
//! let (v1, v2) = Model::train_both()?;
//! let (layer, handle) = BlueGreenRouter::builder()
//!     .sticky_header("x-user-id")
//!     .served_by_header("x-served-by")
//!     .compare(CompareSettings::new(comparator()?))
//!     .layer(IrisServer::new(v2).into_service())?;
//! let server = Server::builder()
//!     .layer(layer)
//!     .add_service(IrisServer::new(v1).into_service());
//! handle.mirror_standby(1.0)?;   // green answers copies; users get blue's answers
//! // later: handle.shadow_report(), handle.set_split(0.1), handle.promote(), ...
//! # drop(server);
//! # Ok(())
//! # }
//! ```

use std::fmt;
use std::io::Write;
use std::pin::Pin;
use std::time::Duration;

use prost::Message;
use tokio_stream::Stream;
use tonic::metadata::MetadataMap;
use tonic::transport::{Channel, Server};
use tonic::{Request, Response, Status};
use tower_rollout::control::ColorVersion;
use tower_rollout::shadow::{Captured, Comparator, CompareSettings, JsonCompare, ShadowReport};
use tower_rollout::{BlueGreenRouter, Color, ConfigError, RolloutHandle};
use tower_rollout_models::{samples, Model};

use crate::{serve, BoxError};

/// Code generated from `proto/iris.proto` (package `iris.v1`): messages,
/// `iris_server` and `iris_client`.
#[allow(missing_docs, missing_debug_implementations)]
pub mod pb {
    tonic::include_proto!("iris.v1");
}

use pb::iris_client::IrisClient;

/// The most flowers one `PredictStream` call may carry.
pub const MAX_BATCH: usize = 1000;

/// Probabilities of v1 and v2 closer than this count as agreeing.
pub const PROBABILITY_TOLERANCE: f64 = 0.25;

const USER: &str = "x-user-id";
const SERVED_BY: &str = "x-served-by";
/// The bound on every call and every wait.
const DEADLINE: Duration = Duration::from_secs(30);

// === the service ===

/// The `iris.v1.Iris` service over one trained [`Model`].
#[derive(Debug, Clone)]
pub struct IrisServer {
    model: Model,
}

impl IrisServer {
    /// Serves `model`.
    pub fn new(model: Model) -> Self {
        IrisServer { model }
    }

    /// The generated tonic service; `Clone`, as `add_service` and the
    /// tower-rollout layers need.
    pub fn into_service(self) -> pb::iris_server::IrisServer<Self> {
        pb::iris_server::IrisServer::new(self)
    }

    fn answer(&self, flower: &pb::Flower) -> Result<pb::Prediction, Status> {
        Ok(to_pb(&self.model.predict(features(flower)?)))
    }
}

/// A model's prediction as the protobuf message.
pub fn to_pb(p: &tower_rollout_models::Prediction) -> pb::Prediction {
    pb::Prediction {
        label: p.label.clone(),
        probabilities: p.probabilities.to_vec(),
        version: p.version.clone(),
    }
}

/// The four features of a flower, or `INVALID_ARGUMENT`.
fn features(flower: &pb::Flower) -> Result<[f32; 4], Status> {
    let x: [f32; 4] = flower.features.as_slice().try_into().map_err(|_| {
        Status::invalid_argument(format!(
            "a flower has 4 features, not {}",
            flower.features.len()
        ))
    })?;
    tower_rollout_models::Features { features: x }
        .validate()
        .map_err(|e| Status::invalid_argument(e.to_string()))
}

type PredictionStream = Pin<Box<dyn Stream<Item = Result<pb::Prediction, Status>> + Send>>;

#[tonic::async_trait]
impl pb::iris_server::Iris for IrisServer {
    async fn predict(
        &self,
        request: Request<pb::Flower>,
    ) -> Result<Response<pb::Prediction>, Status> {
        self.answer(request.get_ref()).map(Response::new)
    }

    type PredictStreamStream = PredictionStream;

    async fn predict_stream(
        &self,
        request: Request<pb::Batch>,
    ) -> Result<Response<PredictionStream>, Status> {
        let flowers = &request.get_ref().flowers;
        if flowers.len() > MAX_BATCH {
            return Err(Status::invalid_argument(format!(
                "at most {MAX_BATCH} flowers per batch, not {}",
                flowers.len()
            )));
        }
        // Every flower is checked before the first answer is sent.
        let answers = flowers
            .iter()
            .map(|f| self.answer(f))
            .collect::<Result<Vec<_>, _>>()?;
        let stream = tokio_stream::iter(answers.into_iter().map(Ok));
        Ok(Response::new(Box::pin(stream)))
    }
}

// === the comparator ===

/// A gRPC response body that is not a sequence of uncompressed
/// `iris.v1.Prediction` messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeError(String);

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for DecodeError {}

/// Unpacks a captured gRPC response (length-prefixed frames, the status in
/// the trailers) into JSON the [`JsonCompare`] can compare field by field:
/// `{"grpc-status": "0", "predictions": [{"label": .., "probabilities": [..],
/// "version": ..}, ..]}`. A unary answer has one prediction, a stream one per
/// message.
///
/// # Errors
/// A frame that is cut short, compressed, or not a `Prediction`.
pub fn decode_predictions(captured: &Captured) -> Result<Captured, DecodeError> {
    let mut rest = &captured.body[..];
    let mut predictions = Vec::new();
    while !rest.is_empty() {
        let Some((head, body)) = rest.split_first_chunk::<5>() else {
            return Err(DecodeError(format!(
                "a frame header cut short ({} bytes)",
                rest.len()
            )));
        };
        if head[0] != 0 {
            return Err(DecodeError("a compressed frame".into()));
        }
        let len = u32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize;
        if body.len() < len {
            return Err(DecodeError(format!(
                "a frame of {len} bytes cut short at {}",
                body.len()
            )));
        }
        let p = pb::Prediction::decode(&body[..len])
            .map_err(|e| DecodeError(format!("not a Prediction: {e}")))?;
        predictions.push(serde_json::json!({
            "label": p.label,
            "probabilities": p.probabilities,
            "version": p.version,
        }));
        rest = &body[len..];
    }
    let doc = serde_json::json!({
        "grpc-status": captured.grpc_status(),
        "predictions": predictions,
    });
    Ok(Captured::new(captured.status, doc.to_string()))
}

/// The comparator for mirrored calls: [`decode_predictions`] on both sides,
/// then JSON with the version ignored, labels and `grpc-status` equal, and
/// each probability within [`PROBABILITY_TOLERANCE`].
///
/// # Errors
/// Never with these settings; the type is `JsonCompare::build`'s.
pub fn comparator() -> Result<Comparator, ConfigError> {
    let json = JsonCompare::new()
        .ignore("/predictions/*/version")
        .abs_tolerance(PROBABILITY_TOLERANCE)
        .build()?;
    Ok(Comparator::decoded(decode_predictions, json))
}

// === the demo ===

/// How much [`fleet_demo`] sends. Inputs come from
/// [`samples`]: a step with `n` unary calls
/// sends `samples(n)`, and `k` streams of `b` flowers send `samples(k * b)`
/// in consecutive batches.
#[derive(Debug, Clone)]
pub struct FleetOptions {
    /// Unary calls in each step (blue live, after promote, after rollback).
    pub unary: usize,
    /// Unary calls mirrored to green and compared.
    pub mirrored_unary: usize,
    /// Streams mirrored to green and compared (one stream per other step).
    pub mirrored_streams: usize,
    /// Flowers per stream.
    pub batch: usize,
    /// Users in the canary (two unary calls each).
    pub users: usize,
    /// The canary's split.
    pub canary: f64,
}

impl Default for FleetOptions {
    fn default() -> Self {
        FleetOptions {
            unary: 10,
            mirrored_unary: 100,
            mirrored_streams: 10,
            batch: 8,
            users: 300,
            canary: 0.10,
        }
    }
}

/// Calls answered per color in one step, and streamed messages received.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Answered {
    /// Unary calls answered by blue.
    pub unary_blue: u64,
    /// Unary calls answered by green.
    pub unary_green: u64,
    /// Streams answered by blue.
    pub streams_blue: u64,
    /// Streams answered by green.
    pub streams_green: u64,
    /// Streamed messages received, all streams together.
    pub messages: u64,
}

impl Answered {
    /// Calls answered by blue.
    pub fn blue(&self) -> u64 {
        self.unary_blue + self.streams_blue
    }

    /// Calls answered by green.
    pub fn green(&self) -> u64 {
        self.unary_green + self.streams_green
    }
}

/// What [`fleet_demo`] saw.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct FleetSummary {
    /// Calls made (unary and streaming).
    pub calls: u64,
    /// Calls that failed (status not OK, no served-by metadata, a stream that
    /// broke or had the wrong number of messages).
    pub failed: u64,
    /// The first failures.
    pub errors: Vec<String>,
    /// Answers (unary replies and streamed messages) that differ from what
    /// the serving color's model predicts.
    pub wrong_answers: u64,
    /// Blue alone live.
    pub live: Answered,
    /// While green was mirrored: what the clients got.
    pub mirrored: Answered,
    /// The comparison of the mirrored calls.
    pub report: ShadowReport,
    /// The canary's split, users, users on green, users on both colors.
    pub canary_split: f64,
    /// Users in the canary.
    pub canary_users: u64,
    /// Canary users answered by green.
    pub canary_green_users: u64,
    /// Canary users answered by both colors (should be none).
    pub canary_users_on_both: u64,
    /// Blue's in-flight count just after the promote.
    pub blue_in_flight_at_promote: u64,
    /// `drained(Blue)` resolved after the promote.
    pub blue_drained: bool,
    /// After the promote.
    pub after_promote: Answered,
    /// After the rollback.
    pub after_rollback: Answered,
    /// The active color at the end.
    pub active_at_end: Option<Color>,
}

impl FleetSummary {
    /// Everything that is not as it should be, in words; empty when all is
    /// well.
    pub fn problems(&self) -> Vec<String> {
        let mut p = Vec::new();
        if self.failed > 0 {
            p.push(format!(
                "{} of {} calls failed: {}",
                self.failed,
                self.calls,
                self.errors.join("; ")
            ));
        }
        if self.wrong_answers > 0 {
            p.push(format!(
                "{} answers were not the serving version's",
                self.wrong_answers
            ));
        }
        if self.live.green() + self.mirrored.green() > 0 {
            p.push("green answered clients before the canary".into());
        }
        let compared = self.report.matched + self.report.mismatched;
        if compared != self.mirrored.blue() {
            p.push(format!(
                "{compared} of {} mirrored calls compared",
                self.mirrored.blue()
            ));
        }
        if self.canary_users_on_both > 0 {
            p.push(format!(
                "{} canary users saw both colors",
                self.canary_users_on_both
            ));
        }
        let (n, split) = (self.canary_users.max(1) as f64, self.canary_split);
        let share = self.canary_green_users as f64 / n;
        if (share - split).abs() > 5.0 * (split * (1.0 - split) / n).sqrt() {
            p.push(format!(
                "canary share {share:.3} is far from the split {split}"
            ));
        }
        if !self.blue_drained {
            p.push("blue did not drain".into());
        }
        if self.after_promote.blue() > 0 || self.after_promote.green() == 0 {
            p.push("the promote did not move the clients to green".into());
        }
        if self.after_rollback.green() > 0
            || self.after_rollback.blue() == 0
            || self.active_at_end != Some(Color::Blue)
        {
            p.push("the rollback did not put blue back".into());
        }
        p
    }
}

struct Tour<'a> {
    out: &'a mut dyn Write,
    client: IrisClient<Channel>,
    v1: Model,
    v2: Model,
    summary: FleetSummary,
}

fn request<T>(user: &str, message: T) -> Result<Request<T>, BoxError> {
    let mut req = Request::new(message);
    req.metadata_mut().insert(USER, user.parse()?);
    req.set_timeout(DEADLINE);
    Ok(req)
}

fn served_by(meta: &MetadataMap) -> Result<Color, BoxError> {
    let value = meta
        .get(SERVED_BY)
        .ok_or("no x-served-by metadata")?
        .to_str()?;
    Ok(ColorVersion::from_served_by(value)?.color)
}

fn flower(x: [f32; 4]) -> pb::Flower {
    pb::Flower {
        features: x.to_vec(),
    }
}

impl Tour<'_> {
    fn fail(&mut self, what: String) {
        self.summary.failed += 1;
        if self.summary.errors.len() < 5 {
            self.summary.errors.push(what);
        }
    }

    fn check(&mut self, color: Color, x: [f32; 4], got: &pb::Prediction) {
        let model = match color {
            Color::Blue => &self.v1,
            Color::Green => &self.v2,
        };
        if *got != to_pb(&model.predict(x)) {
            self.summary.wrong_answers += 1;
        }
    }

    async fn unary(&mut self, user: &str, x: [f32; 4], into: &mut Answered) -> Option<Color> {
        self.summary.calls += 1;
        let result = async {
            let res = self.client.predict(request(user, flower(x))?).await?;
            let color = served_by(res.metadata())?;
            Ok::<_, BoxError>((color, res.into_inner()))
        }
        .await;
        match result {
            Ok((color, reply)) => {
                self.check(color, x, &reply);
                match color {
                    Color::Blue => into.unary_blue += 1,
                    Color::Green => into.unary_green += 1,
                }
                Some(color)
            }
            Err(e) => {
                self.fail(format!("{user} Predict: {e}"));
                None
            }
        }
    }

    async fn stream(&mut self, user: &str, batch: &[[f32; 4]], into: &mut Answered) {
        self.summary.calls += 1;
        let result = async {
            let msg = pb::Batch {
                flowers: batch.iter().copied().map(flower).collect(),
            };
            let res = self.client.predict_stream(request(user, msg)?).await?;
            let color = served_by(res.metadata())?;
            let mut stream = res.into_inner();
            let mut replies = Vec::new();
            while let Some(reply) = stream.message().await? {
                replies.push(reply);
            }
            Ok::<_, BoxError>((color, replies))
        }
        .await;
        match result {
            Ok((color, replies)) => {
                into.messages += replies.len() as u64;
                if replies.len() != batch.len() {
                    self.fail(format!(
                        "{user} PredictStream: {} messages for {} flowers",
                        replies.len(),
                        batch.len()
                    ));
                    return;
                }
                for (x, reply) in batch.iter().zip(&replies) {
                    self.check(color, *x, reply);
                }
                match color {
                    Color::Blue => into.streams_blue += 1,
                    Color::Green => into.streams_green += 1,
                }
            }
            Err(e) => self.fail(format!("{user} PredictStream: {e}")),
        }
    }

    /// `unary` calls with `samples(unary)` and `streams` batches of `batch`.
    async fn round(&mut self, step: &str, unary: usize, streams: usize, batch: usize) -> Answered {
        let mut answered = Answered::default();
        for (i, x) in samples(unary).into_iter().enumerate() {
            self.unary(&format!("{step}-{i}"), x, &mut answered).await;
        }
        let flowers = samples(streams * batch);
        for (i, chunk) in flowers.chunks(batch.max(1)).enumerate() {
            self.stream(&format!("{step}-stream-{i}"), chunk, &mut answered)
                .await;
        }
        answered
    }

    fn show(&mut self, what: &str, a: Answered) -> std::io::Result<()> {
        writeln!(
            self.out,
            "   {what}: Predict answered by blue {} / green {}, PredictStream by blue {} / green {} ({} messages)",
            a.unary_blue, a.unary_green, a.streams_blue, a.streams_green, a.messages
        )
    }
}

fn ms(d: Option<Duration>) -> String {
    d.map_or("-".into(), |d| format!("{:.2}", d.as_secs_f64() * 1e3))
}

async fn until(what: &str, mut done: impl FnMut() -> bool) -> Result<(), BoxError> {
    let wait = async {
        while !done() {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    };
    tokio::time::timeout(DEADLINE, wait)
        .await
        .map_err(|_| format!("still waiting for {what} after {DEADLINE:?}").into())
}

/// Builds the fleet's layer: a router over `v2` (green) with the comparator,
/// to wrap a server whose own service is `v1` (blue); the versions are named
/// after the models (`v1`, `v2`).
pub(crate) fn layer(
    v1: &Model,
    v2: &Model,
) -> Result<
    (
        tower_rollout::router::BlueGreenLayer<
            pb::iris_server::IrisServer<IrisServer>,
            tower_rollout::shadow::Comparing,
        >,
        RolloutHandle,
    ),
    ConfigError,
> {
    BlueGreenRouter::builder()
        .versions(v1.version().as_str(), v2.version().as_str())
        .sticky_header(USER)
        .served_by_header(SERVED_BY)
        .compare(CompareSettings::new(comparator()?))
        .layer(IrisServer::new(v2.clone()).into_service())
}

/// The fleet story over gRPC, printed to `out` step by step: blue live;
/// green mirrored and compared; a sticky canary; promote and drain; rollback.
/// Every step makes unary `Predict` and server-streaming `PredictStream`
/// calls (the canary: unary only) through a tonic server on 127.0.0.1:0 whose
/// `Server::builder().layer(..)` is the router.
///
/// # Errors
/// When the models do not train, the server does not start, or a wait (the
/// comparisons, the drain) exceeds its deadline. Failed calls are counted in
/// the summary instead; see [`FleetSummary::problems`].
pub async fn fleet_demo(
    opts: &FleetOptions,
    out: &mut dyn Write,
) -> Result<FleetSummary, BoxError> {
    let (v1, v2) = Model::train_both()?;
    let (layer, handle) = layer(&v1, &v2)?;
    let server = serve(
        Server::builder()
            .layer(layer)
            .add_service(IrisServer::new(v1.clone()).into_service()),
    )
    .await?;
    let client = IrisClient::connect(format!("http://{}", server.addr)).await?;
    writeln!(
        out,
        "tower-rollout gRPC fleet: iris.v1.Iris (Predict, PredictStream) on tonic, two versions behind one BlueGreenRouter
  v1 (blue):  {}
  v2 (green): {}
  serving on http://{}\n",
        v1.version().describe(),
        v2.version().describe(),
        server.addr
    )?;
    let mut tour = Tour {
        out,
        client,
        v1,
        v2,
        summary: FleetSummary::default(),
    };

    writeln!(tour.out, "1. blue (v1) is live")?;
    tour.summary.live = tour.round("live", opts.unary, 1, opts.batch).await;
    tour.show("clients", tour.summary.live)?;

    writeln!(
        tour.out,
        "\n2. green (v2) mirrored and compared: handle.mirror_standby(1.0)"
    )?;
    handle.mirror_standby(1.0)?;
    tour.summary.mirrored = tour
        .round(
            "mirror",
            opts.mirrored_unary,
            opts.mirrored_streams,
            opts.batch,
        )
        .await;
    let expected = tour.summary.mirrored.blue();
    until("the comparisons", || {
        handle.shadow_report().total() >= expected
    })
    .await?;
    handle.mirror_standby(0.0)?;
    let r = handle.shadow_report();
    tour.show("clients (blue's answers only)", tour.summary.mirrored)?;
    let fields: Vec<String> = r
        .field_mismatches
        .iter()
        .take(6)
        .map(|(f, n)| format!("{f} {n}"))
        .collect();
    writeln!(
        tour.out,
        "   compared {} calls (prost-decoded, JSON): agreement {}; mismatches per field: {}{}
   latency p50 / p99: blue {} / {} ms, green {} / {} ms",
        r.matched + r.mismatched,
        r.agreement_rate()
            .map_or("-".into(), |a| format!("{:.1}%", 100.0 * a)),
        fields.join(", "),
        if r.field_mismatches.len() > fields.len() {
            ", ..."
        } else {
            ""
        },
        ms(r.primary_latency.p50),
        ms(r.primary_latency.p99),
        ms(r.shadow_latency.p50),
        ms(r.shadow_latency.p99)
    )?;
    tour.summary.report = r;

    writeln!(
        tour.out,
        "\n3. canary: handle.set_split({}), sticky by x-user-id metadata",
        opts.canary
    )?;
    handle.set_split(opts.canary)?;
    let inputs = samples(2 * opts.users);
    let (mut green_users, mut both) = (0, 0);
    let mut canary = Answered::default();
    for u in 0..opts.users {
        let user = format!("user-{u}");
        let a = tour.unary(&user, inputs[2 * u], &mut canary).await;
        let b = tour.unary(&user, inputs[2 * u + 1], &mut canary).await;
        match (a, b) {
            (Some(a), Some(b)) if a != b => both += 1,
            (Some(Color::Green), _) | (_, Some(Color::Green)) => green_users += 1,
            _ => {}
        }
    }
    tour.summary.canary_split = opts.canary;
    tour.summary.canary_users = opts.users as u64;
    tour.summary.canary_green_users = green_users;
    tour.summary.canary_users_on_both = both;
    writeln!(
        tour.out,
        "   {} users x 2 calls: {} users ({:.1}%) answered by green; {} saw both colors",
        opts.users,
        green_users,
        100.0 * green_users as f64 / opts.users.max(1) as f64,
        both
    )?;

    writeln!(tour.out, "\n4. promote: green (v2) is live")?;
    handle.promote()?;
    tour.summary.blue_in_flight_at_promote = handle.in_flight(Color::Blue);
    tokio::time::timeout(DEADLINE, handle.drained(Color::Blue))
        .await
        .map_err(|_| "blue did not drain")?;
    tour.summary.blue_drained = true;
    writeln!(
        tour.out,
        "   blue in flight at the promote: {}; handle.drained(Blue) resolved",
        tour.summary.blue_in_flight_at_promote
    )?;
    tour.summary.after_promote = tour.round("promoted", opts.unary, 1, opts.batch).await;
    tour.show("clients", tour.summary.after_promote)?;

    writeln!(tour.out, "\n5. rollback: handle.rollback()")?;
    handle.rollback()?;
    tour.summary.after_rollback = tour.round("rolled-back", opts.unary, 1, opts.batch).await;
    tour.summary.active_at_end = Some(handle.active());
    tour.show("clients", tour.summary.after_rollback)?;

    let summary = tour.summary;
    writeln!(
        tour.out,
        "\nsummary: {} calls, {} failed, {} answers not the serving version's",
        summary.calls, summary.failed, summary.wrong_answers
    )?;
    drop(server);
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::StatusCode;
    use tower_rollout::shadow::{Compare, Verdict};

    fn frames(predictions: &[pb::Prediction]) -> Vec<u8> {
        let mut body = Vec::new();
        for p in predictions {
            let bytes = p.encode_to_vec();
            body.push(0);
            body.extend_from_slice(&(bytes.len() as u32).to_be_bytes());
            body.extend_from_slice(&bytes);
        }
        body
    }

    fn grpc(body: Vec<u8>, status: &str) -> Captured {
        let mut c = Captured::new(StatusCode::OK, body);
        let mut trailers = http::HeaderMap::new();
        trailers.insert("grpc-status", status.parse().unwrap());
        c.trailers = Some(trailers);
        c
    }

    fn prediction(label: &str, p: [f32; 3], version: &str) -> pb::Prediction {
        pb::Prediction {
            label: label.into(),
            probabilities: p.to_vec(),
            version: version.into(),
        }
    }

    #[test]
    fn decodes_every_frame() {
        let a = prediction("setosa", [1.0, 0.0, 0.0], "v1");
        let b = prediction("virginica", [0.0, 0.25, 0.75], "v1");
        let decoded = decode_predictions(&grpc(frames(&[a, b]), "0")).unwrap();
        let json: serde_json::Value = serde_json::from_slice(&decoded.body).unwrap();
        assert_eq!(json["grpc-status"], "0");
        assert_eq!(json["predictions"][0]["label"], "setosa");
        assert_eq!(json["predictions"][1]["label"], "virginica");
        assert_eq!(json["predictions"][1]["probabilities"][2], 0.75);
        assert_eq!(json["predictions"].as_array().unwrap().len(), 2);
    }

    #[test]
    fn bad_frames_are_decode_errors() {
        let good = frames(&[prediction("setosa", [1.0, 0.0, 0.0], "v1")]);
        let cut = good[..good.len() - 1].to_vec();
        assert!(decode_predictions(&grpc(cut, "0"))
            .unwrap_err()
            .to_string()
            .contains("cut short"));
        assert!(decode_predictions(&grpc(vec![0, 0], "0")).is_err());
        let mut compressed = good.clone();
        compressed[0] = 1;
        assert_eq!(
            decode_predictions(&grpc(compressed, "0")).unwrap_err(),
            DecodeError("a compressed frame".into())
        );
        // A frame that is not a Prediction (field 1 with wire type 7).
        let garbage = vec![0, 0, 0, 0, 1, 0x0f];
        assert!(decode_predictions(&grpc(garbage, "0"))
            .unwrap_err()
            .to_string()
            .contains("not a Prediction"));
    }

    #[test]
    fn comparator_compares_labels_probabilities_and_status() {
        let cmp = comparator().unwrap();
        let v1 = grpc(
            frames(&[
                prediction("setosa", [0.9, 0.1, 0.0], "v1"),
                prediction("versicolor", [0.0, 0.6, 0.4], "v1"),
            ]),
            "0",
        );
        // Same labels, probabilities within 0.25, another version: a match.
        let close = grpc(
            frames(&[
                prediction("setosa", [1.0, 0.0, 0.0], "v2"),
                prediction("versicolor", [0.0, 0.8, 0.2], "v2"),
            ]),
            "0",
        );
        assert!(cmp.compare(&v1, &close).is_match());
        // The second message's label differs.
        let other = grpc(
            frames(&[
                prediction("setosa", [1.0, 0.0, 0.0], "v2"),
                prediction("virginica", [0.0, 0.4, 0.6], "v2"),
            ]),
            "0",
        );
        let Verdict::Mismatch(diffs) = cmp.compare(&v1, &other) else {
            panic!("labels differ")
        };
        let paths: Vec<&str> = diffs.iter().map(|d| d.path.as_str()).collect();
        assert_eq!(paths, ["/predictions/1/label"]);
        // A failed call against an answer.
        let failed = grpc(Vec::new(), "3");
        let Verdict::Mismatch(diffs) = cmp.compare(&v1, &failed) else {
            panic!("status differs")
        };
        assert!(diffs.iter().any(|d| d.path == "/grpc-status"));
        // Garbage on one side is a mismatch at `decode`, not a panic.
        let Verdict::Mismatch(diffs) = cmp.compare(&v1, &grpc(vec![9], "0")) else {
            panic!("decode fails")
        };
        assert_eq!(diffs[0].path, "decode");
    }

    #[tokio::test]
    async fn invalid_flowers_are_invalid_argument() {
        use pb::iris_server::Iris;
        let server = IrisServer::new(Model::train(tower_rollout_models::Version::V1).unwrap());
        let short = pb::Flower {
            features: vec![1.0, 2.0, 3.0],
        };
        let err = server
            .predict(Request::new(short.clone()))
            .await
            .unwrap_err();
        assert_eq!(err.code(), tonic::Code::InvalidArgument);
        assert!(err.message().contains("4 features, not 3"));
        let inf = flower([1.0, f32::INFINITY, 1.0, 1.0]);
        let err = server.predict(Request::new(inf)).await.unwrap_err();
        assert_eq!(err.code(), tonic::Code::InvalidArgument);
        // One bad flower fails the batch before anything is streamed.
        let batch = pb::Batch {
            flowers: vec![flower([5.0, 3.0, 1.5, 0.2]), short],
        };
        let err = server
            .predict_stream(Request::new(batch))
            .await
            .err()
            .unwrap();
        assert_eq!(err.code(), tonic::Code::InvalidArgument);
        let big = pb::Batch {
            flowers: vec![flower([5.0, 3.0, 1.5, 0.2]); MAX_BATCH + 1],
        };
        let err = server
            .predict_stream(Request::new(big))
            .await
            .err()
            .unwrap();
        assert!(err.message().contains("at most 1000"));
    }
}
