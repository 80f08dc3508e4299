//! `GET /events`: server-sent events for the dashboard.
//!
//! Each client gets a task that looks every [`CHECK_EVERY`] and sends:
//! `hello` once; `sample` for each new sample of the history (every model's
//! counters, once a second); and for the model the stream is about (the
//! handle's `/events`, or a fleet's `/models/{name}/events`) its `status`
//! document, at once when its routing state, versions, readiness or plan
//! changed, else at most once a second when anything in it changed. The
//! events go through a bounded channel: a client that stops reading is
//! dropped (its stream ends) rather than buffered for.

use std::sync::{Arc, Weak};
use std::time::Duration;

use bytes::Bytes;
use http::header::{CACHE_CONTROL, CONTENT_TYPE};
use http::{HeaderValue, Response, StatusCode};
use serde_json::{json, Value};
use tokio::sync::mpsc;

use super::history::SAMPLE_EVERY;
use super::reply::{error, AdminBody, Reply};
use super::routes::{Model, Target};
use super::shared::Shared;
use crate::control::{Readiness, VersionLabel};
use crate::plan::{GateStatus, Phase, PlanRecord, PlanState};
use crate::{Color, RolloutHandle};

/// How often a stream looks for changes.
pub(crate) const CHECK_EVERY: Duration = Duration::from_millis(250);
/// Events buffered per client; a client this far behind is dropped.
pub(crate) const EVENT_BUFFER: usize = 64;
/// Looks between two status documents sent only for changed counters.
const CHECKS_PER_STATUS: u64 = 4;

/// The model a stream sends the status of.
struct Watched {
    name: Option<String>,
    handle: RolloutHandle,
}

/// Starts a stream; `model` is the one whose status it sends (none for a
/// fleet's `/events`).
pub(crate) fn stream(shared: &Arc<Shared>, model: Option<Model<'_>>) -> Reply {
    if shared.streams_closed() {
        let msg = "the admin's event streams are closed (shutting down)";
        return error(StatusCode::SERVICE_UNAVAILABLE, msg);
    }
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "the event stream needs a tokio runtime",
        );
    };
    let watched = model.map(|m| Watched {
        name: m.name.map(String::from),
        handle: m.handle,
    });
    let (tx, rx) = mpsc::channel(EVENT_BUFFER);
    runtime.spawn(run(Arc::downgrade(shared), watched, tx));
    let mut res = Response::new(AdminBody::events(rx));
    let headers = res.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    // Proxies that buffer answers (nginx) must pass each event on at once.
    headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
    res
}

/// What a client was last sent.
#[derive(Default)]
struct Sent {
    seq: u64,
    key: Option<ChangeKey>,
    status: Option<Value>,
}

/// One client's task: ends when the client is gone or behind, or the admin
/// is dropped or closes its streams.
async fn run(shared: Weak<Shared>, watched: Option<Watched>, tx: mpsc::Sender<Bytes>) {
    let mut sent = Sent::default();
    match shared.upgrade() {
        Some(s) if send(&tx, "hello", &hello(&s, watched.as_ref())) => {
            sent.seq = s.history.last_seq();
        }
        _ => return,
    }
    let mut tick = tokio::time::interval(CHECK_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    for n in 0u64.. {
        tick.tick().await;
        let Some(shared) = shared.upgrade().filter(|s| !s.streams_closed()) else {
            return;
        };
        let due = n % CHECKS_PER_STATUS == 0;
        if !check(&shared, watched.as_ref(), &mut sent, due, &tx) || tx.is_closed() {
            return;
        }
    }
}

/// Sends what is new since `sent`; false when the client is gone or behind.
fn check(
    shared: &Shared,
    watched: Option<&Watched>,
    sent: &mut Sent,
    due: bool,
    tx: &mpsc::Sender<Bytes>,
) -> bool {
    for sample in shared.history.after(sent.seq) {
        if !send_raw(tx, "sample", &sample.json) {
            return false;
        }
        sent.seq = sample.seq;
    }
    let Some(w) = watched else {
        return true;
    };
    let key = ChangeKey::of(&w.handle);
    if due || sent.key.as_ref() != Some(&key) {
        let status = shared.status(w.name.as_deref(), &w.handle);
        if sent.status.as_ref() != Some(&status) {
            let event = json!({ "model": w.name, "status": status });
            if !send(tx, "status", &event) {
                return false;
            }
            sent.status = Some(status);
        }
        sent.key = Some(key);
    }
    true
}

/// The first event: what the stream is about and how often it samples.
fn hello(shared: &Shared, watched: Option<&Watched>) -> Value {
    let models: Vec<Option<String>> = shared.models().into_iter().map(|m| m.name).collect();
    json!({
        "mode": match shared.target { Target::Handle(_) => "handle", Target::Fleet(_) => "fleet" },
        "model": watched.and_then(|w| w.name.as_deref()),
        "models": models,
        "sample_every_ms": SAMPLE_EVERY.as_millis() as u64,
        "check_every_ms": CHECK_EVERY.as_millis() as u64,
    })
}

fn send(tx: &mpsc::Sender<Bytes>, event: &str, data: &Value) -> bool {
    send_raw(tx, event, &serde_json::to_vec(data).unwrap_or_default())
}

/// Sends one event (`data` is one line of JSON); false when the client is
/// gone or its buffer is full.
fn send_raw(tx: &mpsc::Sender<Bytes>, event: &str, data: &[u8]) -> bool {
    let mut frame = Vec::with_capacity(data.len() + event.len() + 16);
    frame.extend_from_slice(b"event: ");
    frame.extend_from_slice(event.as_bytes());
    frame.extend_from_slice(b"\ndata: ");
    frame.extend_from_slice(data);
    frame.extend_from_slice(b"\n\n");
    tx.try_send(Bytes::from(frame)).is_ok()
}

/// What makes a status worth sending at once: a transition, a deploy, a
/// readiness change, a plan's step, verdict or event.
#[derive(Debug, PartialEq)]
struct ChangeKey {
    generation: u64,
    versions: [VersionLabel; 2],
    readiness: [Readiness; 2],
    retiring: usize,
    plan: Option<PlanKey>,
}

#[derive(Debug, PartialEq)]
struct PlanKey {
    state: PlanState,
    phase: Phase,
    gates: Vec<GateStatus>,
    events: usize,
    last: Option<PlanRecord>,
}

impl ChangeKey {
    fn of(handle: &RolloutHandle) -> ChangeKey {
        let s = handle.status();
        let plan = handle.plan_status().map(|p| PlanKey {
            events: p.history.len(),
            last: p.history.last().cloned(),
            state: p.state,
            phase: p.phase,
            gates: p.gates,
        });
        ChangeKey {
            generation: s.generation,
            versions: [Color::Blue, Color::Green].map(|c| s.color(c).version.clone()),
            readiness: [Color::Blue, Color::Green].map(|c| s.color(c).readiness),
            retiring: s.retiring.len(),
            plan,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_framed_and_a_full_buffer_drops_the_client() {
        let (tx, mut rx) = mpsc::channel(2);
        assert!(send(&tx, "status", &json!({ "a": "x\ny" })));
        let frame = rx.try_recv().unwrap();
        assert_eq!(&frame[..], b"event: status\ndata: {\"a\":\"x\\ny\"}\n\n");
        assert!(send_raw(&tx, "sample", b"{}"));
        assert!(send_raw(&tx, "sample", b"{}"));
        assert!(
            !send_raw(&tx, "sample", b"{}"),
            "full: the client is behind"
        );
        drop(rx);
        assert!(!send_raw(&tx, "sample", b"{}"), "gone");
    }
}
