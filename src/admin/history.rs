//! The counters of the last minutes, sampled once a second for every model:
//! what the dashboard's charts draw, the stream's `sample` events, and
//! `GET /history`, so that a page opened now shows the recent past.
//!
//! Each sample holds per color the requests per second, the error rate and
//! the p99 latency over the interval (the last two only while the router
//! measures outcomes: while a plan runs, or when built with `measure`), and
//! the shadow comparison's agreement over the interval.

use std::collections::{HashMap, VecDeque};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use serde_json::{json, Value};

use super::json::{micros, phase_text, state_text, unix_ms};
use crate::control::{Measurement, Measurements, RolloutStatus, VersionLabel};
use crate::shadow::ComparedVersions;
use crate::{Color, RolloutHandle};

/// How often the counters are sampled.
pub(crate) const SAMPLE_EVERY: Duration = Duration::from_secs(1);
/// The most samples kept: ten minutes.
pub(crate) const KEEP_SAMPLES: usize = 600;
/// The most bytes of samples kept (a large fleet keeps fewer minutes).
pub(crate) const KEEP_BYTES: usize = 8 << 20;

/// A model to sample: its name in a fleet (`None` for one handle).
pub(crate) struct Sampled {
    pub(crate) name: Option<String>,
    pub(crate) handle: RolloutHandle,
}

/// One sample, encoded: `{"seq", "at_unix_ms", "interval_ms", "models"}`.
#[derive(Debug, Clone)]
pub(crate) struct Sample {
    pub(crate) seq: u64,
    pub(crate) json: Bytes,
}

/// The bounded ring of samples and what the next one is a difference from.
#[derive(Default)]
pub(crate) struct History {
    ring: Mutex<Ring>,
}

#[derive(Default)]
struct Ring {
    samples: VecDeque<Sample>,
    bytes: usize,
    last_seq: u64,
    last_at: Option<Instant>,
    previous: HashMap<Option<String>, Reading>,
}

/// What one model showed at one sample.
struct Reading {
    status: RolloutStatus,
    measured: Measurements,
    pair: Option<ComparedVersions>,
    matched: u64,
    mismatched: u64,
    plan: Option<(String, String)>,
}

impl Reading {
    fn of(handle: &RolloutHandle) -> Reading {
        let report = handle.shadow_report();
        Reading {
            status: handle.status(),
            measured: handle.measurements(),
            pair: report.versions,
            matched: report.matched,
            mismatched: report.mismatched,
            plan: handle
                .plan_status()
                .map(|p| (state_text(p.state), phase_text(&p.phase))),
        }
    }
}

impl History {
    /// Samples every model now (the handles are read before the ring is
    /// locked).
    pub(crate) fn sample(&self, models: &[Sampled]) {
        let readings: Vec<(Option<String>, Reading)> = models
            .iter()
            .map(|m| (m.name.clone(), Reading::of(&m.handle)))
            .collect();
        let now = Instant::now();
        let mut ring = self.lock();
        let interval = ring.last_at.map(|at| now - at);
        let mut shown = Vec::with_capacity(readings.len());
        let mut previous = HashMap::with_capacity(readings.len());
        for (name, reading) in readings {
            let before = ring.previous.get(&name);
            shown.push(model_json(name.as_deref(), &reading, before, interval));
            previous.insert(name, reading);
        }
        ring.previous = previous;
        ring.last_at = Some(now);
        ring.last_seq += 1;
        let doc = json!({
            "seq": ring.last_seq,
            "at_unix_ms": unix_ms(SystemTime::now()),
            "interval_ms": interval.map(|d| d.as_millis() as u64),
            "models": shown,
        });
        let sample = Sample {
            seq: ring.last_seq,
            json: Bytes::from(serde_json::to_vec(&doc).unwrap_or_default()),
        };
        ring.push(sample);
    }

    /// The samples after `seq`, oldest first.
    pub(crate) fn after(&self, seq: u64) -> Vec<Sample> {
        let ring = self.lock();
        let newer = ring.samples.iter().filter(|s| s.seq > seq);
        newer.cloned().collect()
    }

    /// The latest sample's number (0 before the first).
    pub(crate) fn last_seq(&self) -> u64 {
        self.lock().last_seq
    }

    fn lock(&self) -> MutexGuard<'_, Ring> {
        self.ring.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Ring {
    fn push(&mut self, sample: Sample) {
        self.bytes += sample.json.len();
        self.samples.push_back(sample);
        while self.samples.len() > KEEP_SAMPLES || self.bytes > KEEP_BYTES {
            match self.samples.pop_front() {
                Some(old) => self.bytes -= old.json.len(),
                None => break,
            }
        }
    }
}

/// One model's sample, as differences from `before` over `interval`.
fn model_json(
    name: Option<&str>,
    now: &Reading,
    before: Option<&Reading>,
    interval: Option<Duration>,
) -> Value {
    let color = |c: Color| {
        let before = before.filter(|b| b.status.color(c).version == now.status.color(c).version);
        color_json(c, now, before, interval)
    };
    let same_pair = before.filter(|b| b.pair == now.pair);
    let matched = same_pair.map(|b| now.matched.saturating_sub(b.matched));
    let mismatched = same_pair.map(|b| now.mismatched.saturating_sub(b.mismatched));
    let compared = matched.zip(mismatched).map(|(m, x)| m + x);
    let agreement = compared
        .filter(|&n| n > 0)
        .map(|n| matched.unwrap_or(0) as f64 / n as f64);
    let s = &now.status;
    json!({
        "model": name,
        "generation": s.generation,
        "active": s.active.as_str(),
        "split": s.split,
        "mirror": s.mirror,
        "plan": now.plan.as_ref().map(|p| &p.0),
        "phase": now.plan.as_ref().map(|p| &p.1),
        "colors": { "blue": color(Color::Blue), "green": color(Color::Green) },
        "compared": compared,
        "agreement": agreement,
    })
}

/// One color's sample; `before` is the same version's previous reading.
fn color_json(
    c: Color,
    now: &Reading,
    before: Option<&Reading>,
    interval: Option<Duration>,
) -> Value {
    let status = now.status.color(c);
    let served = before.map(|b| status.served.saturating_sub(b.status.color(c).served));
    let rps = served
        .zip(interval.filter(|d| !d.is_zero()))
        .map(|(n, d)| n as f64 / d.as_secs_f64());
    let window: Option<Measurement> =
        before.map(|b| now.measured.color(c).since(b.measured.color(c)));
    let version: &VersionLabel = &status.version;
    json!({
        "version": version.as_str(),
        "in_flight": status.in_flight,
        "served": status.served,
        "rps": rps,
        "finished": window.as_ref().map(|w| w.finished),
        "error_rate": window.as_ref().and_then(Measurement::failure_rate),
        "p99_us": window.as_ref().and_then(|w| w.latency_quantile(0.99)).map(micros),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn handle() -> RolloutHandle {
        let svc = tower::service_fn(|_: http::Request<String>| async {
            Ok::<_, std::convert::Infallible>(http::Response::new(String::new()))
        });
        crate::BlueGreenRouter::new(svc, svc).1
    }

    fn parsed(s: &Sample) -> Value {
        serde_json::from_slice(&s.json).unwrap()
    }

    #[test]
    fn samples_are_numbered_bounded_and_show_changes() {
        let h = handle();
        let history = History::default();
        let models = [Sampled {
            name: Some("m".into()),
            handle: h.clone(),
        }];
        assert_eq!(history.last_seq(), 0);
        history.sample(&models);
        let first = parsed(&history.after(0)[0]);
        assert_eq!(first["seq"], 1);
        assert_eq!(first["interval_ms"], Value::Null, "nothing to compare with");
        assert_eq!(first["models"][0]["model"], "m");
        assert_eq!(first["models"][0]["colors"]["blue"]["rps"], Value::Null);

        h.set_split(0.5).unwrap();
        history.sample(&models);
        let second = parsed(&history.after(1)[0]);
        let m = &second["models"][0];
        assert_eq!(
            (m["split"].as_f64(), m["generation"].as_u64()),
            (Some(0.5), Some(1))
        );
        assert_eq!(m["colors"]["blue"]["rps"], 0.0);
        assert_eq!(m["agreement"], Value::Null, "nothing compared");
        assert!(history.after(2).is_empty());

        for _ in 0..KEEP_SAMPLES + 5 {
            history.sample(&models);
        }
        let all = history.after(0);
        assert_eq!(all.len(), KEEP_SAMPLES);
        assert_eq!(all[0].seq, 8, "the oldest were dropped");
        assert_eq!(history.last_seq(), KEEP_SAMPLES as u64 + 7);
    }
}
