//! Invariants of `RolloutHandle` under arbitrary sequences of control calls
//! and admitted requests, checked against a model of the documented rules.
//!
//! Shared by the `handle_ops` fuzz target and `tests/fuzz_regressions.rs`.

use std::convert::Infallible;
use std::future::Future;
use std::pin::pin;
use std::sync::OnceLock;
use std::task::{Context, Poll, Waker};

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use tower::{service_fn, ServiceExt};
use tower_rollout::control::{Change, ColorVersion, ControlError, Drained};
use tower_rollout::mirror::{MirrorBody, MirrorLayer, Mirroring};
use tower_rollout::router::RolloutBody;
use tower_rollout::{BlueGreenRouter, Color, ConfigError, RolloutHandle};

const SERVED_BY: &str = "x-served-by";

/// One step.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Op {
    Promote,
    Rollback,
    SetSplit(f64),
    MirrorStandby(f64),
    /// Sends a request (with a one-byte body or none) and keeps its response
    /// body unread, or drops it at once.
    Admit {
        keep: bool,
        body: bool,
    },
    /// Drops the kept body at this index (modulo the number kept).
    DropBody(usize),
    /// Reads the kept body at this index to its end, and keeps it.
    FinishBody(usize),
    /// Starts waiting for `color` to drain (one waiter per color).
    Watch(Color),
    /// Polls the waiter of `color` again.
    PollWatch(Color),
    /// Drops the waiter of `color`.
    DropWatch(Color),
    /// Lets background copies run to their end (with a runtime only).
    Settle,
}

#[derive(Debug, Clone, Default)]
pub(crate) struct Input {
    /// Run on a tokio runtime (copies to the standby really run), or on a
    /// plain executor (copies are skipped: no executor).
    pub(crate) runtime: bool,
    /// At the end, drop the router and handle before the kept bodies.
    pub(crate) drop_router_first: bool,
    pub(crate) ops: Vec<Op>,
}

type Svc = tower::util::BoxCloneSyncService<
    Request<MirrorBody<Full<Bytes>>>,
    Response<Full<Bytes>>,
    Infallible,
>;

/// Answers with its color's name (a body that is not empty, so the response
/// stays in flight until it is read or dropped).
fn version(color: Color) -> Svc {
    tower::util::BoxCloneSyncService::new(service_fn(
        move |_req: Request<MirrorBody<Full<Bytes>>>| {
            let body = Full::new(Bytes::from_static(color.as_str().as_bytes()));
            std::future::ready(Ok::<_, Infallible>(Response::new(body)))
        },
    ))
}

fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a current-thread runtime")
    })
}

/// The documented state machine of the handle.
#[derive(Debug)]
struct Model {
    active: Color,
    /// The color active before the last promote not yet rolled back.
    previous: Option<Color>,
    split: f64,
    mirror: f64,
    generation: u64,
    served: [u64; 2],
}

fn valid_fraction(f: f64) -> bool {
    f.is_finite() && (0.0..=1.0).contains(&f)
}

fn index(c: Color) -> usize {
    match c {
        Color::Blue => 0,
        Color::Green => 1,
    }
}

struct Kept {
    color: Color,
    body: RolloutBody<Full<Bytes>>,
    ended: bool,
}

struct Watcher {
    fut: Drained,
    /// Seen with nothing in flight since the watcher was first polled.
    idle_seen: bool,
    /// Mirror copies settled when the watcher was made. Copies run in the
    /// background and can end between two of the model's observations, so a
    /// color can be idle for a moment the model never sees; the crate may
    /// then resolve `drained` (as documented), but only if some copy ended.
    settled_at_watch: u64,
}

struct Run {
    router: BlueGreenRouter<Svc, Svc, Mirroring>,
    handle: RolloutHandle,
    model: Model,
    kept: Vec<Kept>,
    watchers: [Option<Watcher>; 2],
    runtime: bool,
    /// `mirror_stats().sampled` at the last check.
    sampled: u64,
    /// How many copies the current step may sample (at least, at most).
    may_sample: (u64, u64),
    /// The mirror stats may have changed since the last check.
    stats_due: bool,
}

fn poll_once<F: Future + Unpin>(fut: &mut F) -> Poll<F::Output> {
    let mut cx = Context::from_waker(Waker::noop());
    pin!(fut).poll(&mut cx)
}

impl Run {
    fn busy(&self, color: Color) -> u64 {
        let s = self.handle.status();
        let c = s.color(color);
        c.in_flight + c.mirrored_in_flight
    }

    /// The handle's state and counters against the model.
    fn check_state(&mut self) {
        let m = &self.model;
        let s = self.handle.status();
        assert_eq!(s.active, m.active, "{m:?}");
        assert_eq!(self.handle.active(), m.active);
        assert_eq!(self.handle.standby(), m.active.other());
        assert_eq!(s.split.to_bits(), m.split.to_bits(), "{m:?}");
        assert_eq!(s.mirror.to_bits(), m.mirror.to_bits(), "{m:?}");
        assert_eq!(s.generation, m.generation);
        assert_eq!(self.handle.generation(), m.generation);
        assert!(s.history.len() <= 64);
        assert_eq!(
            s.history.len() as u64,
            m.generation.min(64),
            "every call is in the history"
        );
        if let Some(last) = s.history.last() {
            assert_eq!(last.generation, m.generation);
            assert_eq!(last.active, m.active);
        }
        assert!(s
            .history
            .windows(2)
            .all(|w| w[1].generation == w[0].generation + 1));
        for c in Color::ALL {
            let live = self
                .kept
                .iter()
                .filter(|k| k.color == c && !k.ended)
                .count() as u64;
            assert_eq!(s.color(c).in_flight, live, "{c} in flight");
            assert_eq!(self.handle.in_flight(c), live);
            assert_eq!(s.color(c).served, m.served[index(c)], "{c} served");
            if !self.runtime {
                assert_eq!(
                    s.color(c).mirrored_in_flight,
                    0,
                    "no executor: no copy runs"
                );
            }
        }
        for c in Color::ALL {
            let busy = s.color(c).in_flight + s.color(c).mirrored_in_flight;
            if busy == 0 {
                if let Some(w) = self.watchers[index(c)].as_mut() {
                    w.idle_seen = true;
                }
            }
        }
        // Copies change only when a request is admitted or background work
        // runs; reading the stats (percentiles) costs, so only then.
        if !std::mem::take(&mut self.stats_due) {
            return;
        }
        let stats = self.handle.mirror_stats();
        let (least, most) = std::mem::take(&mut self.may_sample);
        let sampled = stats.sampled - self.sampled;
        assert!(
            (least..=most).contains(&sampled),
            "{sampled} copies sampled, expected {least}..={most}"
        );
        self.sampled = stats.sampled;
        if !self.runtime {
            assert_eq!(stats.in_flight, 0);
            assert_eq!(stats.sampled, stats.skipped_no_executor, "{stats:?}");
        }
        if stats.in_flight == 0 {
            assert_eq!(stats.sampled, stats.settled(), "{stats:?}");
        }
    }

    /// A fraction setting: `changes` says whether the model expects the
    /// state to move (a valid fraction other than the current one).
    fn control(&mut self, result: Result<Change, ControlError>, f: f64, changes: bool) {
        match result {
            Ok(change) => {
                assert!(valid_fraction(f), "{f} accepted");
                assert_eq!(change.is_applied(), changes, "{f}: {change:?}");
                if changes {
                    self.model.generation += 1;
                }
                assert_eq!(change.generation(), self.model.generation);
            }
            Err(ControlError::Invalid(ConfigError::InvalidFraction { value, .. })) => {
                assert!(!valid_fraction(f), "{f} rejected");
                assert_eq!(value.to_bits(), f.to_bits());
            }
            Err(e) => panic!("unexpected error {e:?}"),
        }
    }

    async fn admit(&mut self, keep: bool, body: bool) {
        let body = if body {
            Full::new(Bytes::from_static(b"x"))
        } else {
            Full::new(Bytes::new())
        };
        let req = Request::post("/predict").body(body).unwrap();
        let res = self.router.clone().oneshot(req).await.unwrap();
        let served = ColorVersion::from_served_by(res.headers()[SERVED_BY].to_str().unwrap())
            .expect("a served-by value");
        let color = served.color;
        assert_eq!(
            served.version,
            color.as_str(),
            "each color keeps its version"
        );
        let m = &mut self.model;
        if m.split == 0.0 {
            assert_eq!(color, m.active, "split 0: the active color");
        } else if m.split == 1.0 {
            assert_eq!(color, m.active.other(), "split 1: the standby");
        }
        m.served[index(color)] += 1;
        self.stats_due = true;
        // Checked by `check_state`: only the active color's requests are
        // copied, all of them at 1.
        self.may_sample = if m.mirror == 0.0 || color != m.active {
            (0, 0)
        } else if m.mirror == 1.0 {
            (1, 1)
        } else {
            (0, 1)
        };
        let body = res.into_body();
        assert!(body.in_flight(), "in flight on its color");
        if keep {
            self.kept.push(Kept {
                color,
                body,
                ended: false,
            });
        }
    }

    async fn settle(&mut self) {
        if !self.runtime {
            return;
        }
        self.stats_due = true;
        for _ in 0..10_000 {
            if self.handle.mirror_stats().in_flight == 0
                && Color::ALL
                    .iter()
                    .all(|&c| self.handle.status().color(c).mirrored_in_flight == 0)
            {
                return;
            }
            tokio::task::yield_now().await;
        }
        panic!(
            "copies still running: {:?} {:?}",
            self.handle.mirror_stats(),
            self.handle.status()
        );
    }

    fn watch_poll(&mut self, c: Color, first: bool) {
        let busy = self.busy(c);
        let Some(w) = self.watchers[index(c)].as_mut() else {
            return;
        };
        let expect_ready = busy == 0 || (!first && w.idle_seen);
        let ready = poll_once(&mut w.fut).is_ready();
        let unobserved_idle = !first && self.handle.mirror_stats().settled() > w.settled_at_watch;
        assert!(
            ready == expect_ready || (ready && unobserved_idle),
            "drained({c}): ready {ready}, busy {busy}, idle seen {}",
            w.idle_seen
        );
        if ready {
            self.watchers[index(c)] = None;
        }
    }

    async fn step(&mut self, op: &Op) {
        match *op {
            Op::Promote => {
                // Both colors are always ready: a promote always applies.
                let change = self.handle.promote().expect("a ready standby");
                let m = &mut self.model;
                m.previous = Some(m.active);
                m.active = m.active.other();
                m.split = 0.0;
                m.generation += 1;
                let t = change.transition().expect("a promote changes the state");
                assert_eq!(
                    (t.generation, t.active, t.split),
                    (m.generation, m.active, 0.0)
                );
            }
            Op::Rollback => {
                let change = self.handle.rollback().expect("a rollback is never refused");
                let m = &mut self.model;
                // Nothing to undo (no promote since the last rollback, no
                // split): nothing changes.
                if m.previous.is_none() && m.split == 0.0 {
                    assert_eq!(
                        change,
                        Change::Unchanged {
                            generation: m.generation
                        }
                    );
                } else {
                    if let Some(p) = m.previous.take() {
                        m.active = p;
                    }
                    m.split = 0.0;
                    m.generation += 1;
                    let t = change.transition().expect("a rollback that undoes");
                    assert_eq!(
                        (t.generation, t.active, t.split),
                        (m.generation, m.active, 0.0)
                    );
                }
            }
            Op::SetSplit(f) => {
                let r = self.handle.set_split(f);
                let changes = valid_fraction(f) && f != self.model.split;
                if r.is_ok() {
                    // -0.0 is stored as 0.0.
                    self.model.split = if f == 0.0 { 0.0 } else { f };
                }
                self.control(r, f, changes);
            }
            Op::MirrorStandby(f) => {
                let r = self.handle.mirror_standby(f);
                let changes = valid_fraction(f) && f != self.model.mirror;
                if r.is_ok() {
                    self.model.mirror = if f == 0.0 { 0.0 } else { f };
                }
                self.control(r, f, changes);
            }
            Op::Admit { keep, body } => self.admit(keep, body).await,
            Op::DropBody(i) => {
                if !self.kept.is_empty() {
                    let i = i % self.kept.len();
                    drop(self.kept.remove(i));
                }
            }
            Op::FinishBody(i) => {
                if !self.kept.is_empty() {
                    let i = i % self.kept.len();
                    let k = &mut self.kept[i];
                    let mut bytes = Vec::new();
                    while let Some(frame) = k.body.frame().await {
                        bytes.extend_from_slice(frame.unwrap().data_ref().unwrap());
                    }
                    if !k.ended {
                        assert_eq!(bytes, k.color.as_str().as_bytes());
                    }
                    assert!(!k.body.in_flight(), "ended: no longer in flight");
                    k.ended = true;
                }
            }
            Op::Watch(c) => {
                if self.watchers[index(c)].is_none() {
                    self.watchers[index(c)] = Some(Watcher {
                        fut: self.handle.drained(c),
                        idle_seen: false,
                        settled_at_watch: self.handle.mirror_stats().settled(),
                    });
                    self.watch_poll(c, true);
                }
            }
            Op::PollWatch(c) => self.watch_poll(c, false),
            Op::DropWatch(c) => self.watchers[index(c)] = None,
            Op::Settle => self.settle().await,
        }
        self.check_state();
    }
}

/// Returns the generation after the last operation.
async fn run(input: &Input) -> u64 {
    let (router, handle) = BlueGreenRouter::builder()
        .served_by_header(SERVED_BY)
        .mirror(MirrorLayer::settings())
        .build(version(Color::Blue), version(Color::Green))
        .expect("valid configuration");
    let mut run = Run {
        router,
        handle,
        model: Model {
            active: Color::Blue,
            previous: None,
            split: 0.0,
            mirror: 0.0,
            generation: 0,
            served: [0, 0],
        },
        kept: Vec::new(),
        watchers: [None, None],
        runtime: input.runtime,
        sampled: 0,
        may_sample: (0, 0),
        stats_due: true,
    };
    run.check_state();
    for op in &input.ops {
        run.step(op).await;
    }
    // Everything ends: nothing stays in flight, every copy is counted.
    let generation = run.handle.generation();
    run.watchers = [None, None];
    if input.drop_router_first {
        let Run {
            router,
            handle,
            kept,
            ..
        } = run;
        drop((router, handle));
        drop(kept);
    } else {
        run.kept.clear();
        run.settle().await;
        run.check_state();
        for c in Color::ALL {
            assert_eq!(run.busy(c), 0);
            let mut drained = run.handle.drained(c);
            assert!(poll_once(&mut drained).is_ready(), "{c} drained");
        }
        let stats = run.handle.mirror_stats();
        assert_eq!(stats.sampled, stats.settled(), "{stats:?}");
    }
    generation
}

/// Runs the invariants; panics on a violation. Returns the generation after
/// the last operation.
pub(crate) fn check(input: &Input) -> u64 {
    let generation = if input.runtime {
        let rt = runtime();
        rt.block_on(async {
            let generation = run(input).await;
            // Let copies left behind (router dropped first) finish before
            // the next input.
            for _ in 0..100_000 {
                if rt.metrics().num_alive_tasks() == 0 {
                    return generation;
                }
                tokio::task::yield_now().await;
            }
            panic!("background tasks never finished");
        })
    } else {
        futures_executor::block_on(run(input))
    };
    // A router built now starts from zero, whatever the last one left behind
    // (its counters' block may be a recycled one).
    let (_router, handle) = BlueGreenRouter::new(version(Color::Blue), version(Color::Green));
    let s = handle.status();
    assert_eq!((s.blue.served, s.green.served), (0, 0), "fresh router");
    assert_eq!((s.blue.in_flight, s.green.in_flight), (0, 0));
    assert_eq!(
        (s.blue.mirrored_in_flight, s.green.mirrored_in_flight),
        (0, 0)
    );
    assert_eq!(s.generation, 0);
    generation
}
