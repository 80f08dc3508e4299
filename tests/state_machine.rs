//! Any sequence of control calls, deploys, requests, body ends, drain waits
//! and router clones keeps `BlueGreenRouter` and `RolloutHandle` in step with
//! a small model: every request is served by a version the state allowed at
//! its admission, and every replaced version is dropped, exactly when nothing
//! uses it any more.
//!
//! Cases: `ROLLOUT_PROPTEST_CASES` if set, else proptest's default
//! (`PROPTEST_CASES`, or 256). A deep run:
//! `ROLLOUT_PROPTEST_CASES=10000 cargo test --release --test state_machine`.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::{ready, Future, Ready};
use std::pin::{pin, Pin};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use bytes::Bytes;
use http::{HeaderValue, Request, Response};
use http_body::Body;
use http_body_util::Full;
use proptest::prelude::*;
use proptest::sample::Index;
use tokio_test::task;
use tower::Service;
use tower_rollout::control::{
    Change, ColorVersion, ControlError, DeployError, Deployer, Drained, Retired, Transition,
    TransitionKind,
};
use tower_rollout::router::RolloutBody;
use tower_rollout::{BlueGreenRouter, Color, ConfigError, RolloutHandle};

// === the services behind the router ===

/// What the test knows of one version's service values.
#[derive(Debug, Default)]
struct Track {
    /// Values alive (the original and every clone).
    alive: AtomicI64,
    /// Requests it was called with.
    calls: AtomicU64,
}

/// Always ready. Answers with its version in `x-inner`, the color and
/// version the router put in the request extensions in `x-extension`, and a
/// one-frame body naming its version (open until read or dropped).
struct Inner {
    version: &'static str,
    track: Arc<Track>,
}

impl Inner {
    fn new(version: &'static str) -> (Inner, Arc<Track>) {
        let track = Arc::new(Track::default());
        track.alive.fetch_add(1, Ordering::SeqCst);
        (
            Inner {
                version,
                track: track.clone(),
            },
            track,
        )
    }
}

impl Clone for Inner {
    fn clone(&self) -> Self {
        self.track.alive.fetch_add(1, Ordering::SeqCst);
        Inner {
            version: self.version,
            track: self.track.clone(),
        }
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        let before = self.track.alive.fetch_sub(1, Ordering::SeqCst);
        assert!(before > 0, "{} dropped more often than made", self.version);
    }
}

impl<B> Service<Request<B>> for Inner {
    type Response = Response<Full<Bytes>>;
    type Error = Infallible;
    type Future = Ready<Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        self.track.calls.fetch_add(1, Ordering::SeqCst);
        let extension = req
            .extensions()
            .get::<ColorVersion>()
            .map_or("none".to_owned(), |s| {
                format!("{}; version={}", s.color, s.version)
            });
        let res = Response::builder()
            .header("x-inner", self.version)
            .header("x-extension", extension)
            .body(Full::new(Bytes::from_static(self.version.as_bytes())))
            .unwrap();
        ready(Ok(res))
    }
}

type Router = BlueGreenRouter<Inner, Inner>;

/// The label of the `n`th deploy: `v3`, `v4`, ... (leaked: a test's few).
fn label(n: usize) -> &'static str {
    Box::leak(format!("v{}", n + 3).into_boxed_str())
}

// === operations ===

#[derive(Debug, Clone)]
enum Op {
    Promote,
    PromoteTo(Color),
    Rollback,
    SetSplit(f64),
    /// Deploys the next label into the standby (or, with `into`, into that
    /// color, which fails when it is active).
    Deploy {
        into: Option<Color>,
    },
    /// Deploys a version with the active color's label: refused.
    DeployDuplicate,
    /// `poll_ready` now; the next `Admit` calls with this pick.
    PollReady,
    /// `poll_ready` (unless already polled) then `call`; the response body
    /// stays open. The user's key is sent when `send_key` is set.
    Admit {
        user: u8,
        send_key: bool,
    },
    /// Ends one open body: reads it to its end, or drops it unread.
    EndBody {
        which: Index,
        read: bool,
    },
    /// Creates a drained future for a color and polls it once.
    Drained(Color),
    /// Drops one pending drained future.
    ForgetDrained(Index),
    /// Replaces the router by a clone of itself (which has no pick).
    CloneRouter,
}

fn split_value() -> impl Strategy<Value = f64> {
    prop_oneof![
        2 => Just(0.0),
        2 => Just(1.0),
        1 => Just(-0.0),
        4 => 0.0..=1.0f64,
        // Fractions that round to the ends of the 2^-20 resolution.
        1 => prop::sample::select(vec![1e-9, 1.0 - 1e-9]),
        2 => prop::sample::select(vec![
            f64::NAN,
            -0.25,
            -f64::MIN_POSITIVE,
            1.0 + f64::EPSILON,
            7.0,
            f64::INFINITY,
            f64::NEG_INFINITY,
        ]),
    ]
}

fn color() -> impl Strategy<Value = Color> {
    prop_oneof![Just(Color::Blue), Just(Color::Green)]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        2 => Just(Op::Promote),
        1 => color().prop_map(Op::PromoteTo),
        1 => Just(Op::Rollback),
        3 => split_value().prop_map(Op::SetSplit),
        2 => prop::option::weighted(0.2, color()).prop_map(|into| Op::Deploy { into }),
        1 => Just(Op::DeployDuplicate),
        1 => Just(Op::PollReady),
        6 => (0..6u8, any::<bool>()).prop_map(|(user, send_key)| Op::Admit { user, send_key }),
        4 => (any::<Index>(), any::<bool>()).prop_map(|(which, read)| Op::EndBody { which, read }),
        2 => color().prop_map(Op::Drained),
        1 => any::<Index>().prop_map(Op::ForgetDrained),
        1 => Just(Op::CloneRouter),
    ]
}

// === the model ===

/// What routing decisions depend on, as of one moment.
#[derive(Debug, Clone, Copy)]
struct Routing {
    active: Color,
    split: f64,
    /// The version each color holds, blue first.
    versions: [&'static str; 2],
}

impl Routing {
    /// The colors a request admitted under this routing may be served by:
    /// the active color at split 0, the standby at split 1, else either.
    fn allowed(self) -> Vec<Color> {
        // The router keeps splits in steps of 2^-20.
        let steps = (self.split * f64::from(1u32 << 20)).round();
        if steps == 0.0 {
            vec![self.active]
        } else if steps == f64::from(1u32 << 20) {
            vec![self.active.other()]
        } else {
            Color::ALL.to_vec()
        }
    }

    fn version(self, color: Color) -> &'static str {
        self.versions[idx(color)]
    }
}

struct Model {
    routing: Routing,
    /// The color (and the version it held) active before the last promote
    /// not yet rolled back.
    previous: Option<(Color, &'static str)>,
    generation: u64,
    last: Option<TransitionKind>,
    /// Requests served per version.
    served: HashMap<&'static str, u64>,
    /// Per sticky user: the highest split at which the active color served
    /// them and the lowest at which the standby did. A user's bucket is
    /// fixed, so the first must stay below the second.
    users: HashMap<u8, (f64, f64)>,
    deployed: usize,
    /// Sticky requests whose state moved between their admission and their
    /// call: they may be served by the color admitted instead of their key's
    /// (a fallback).
    may_fall_back: u64,
}

impl Model {
    fn transition(&mut self, kind: TransitionKind, change: &Change) -> Result<(), TestCaseError> {
        let t: &Transition = match change.transition() {
            Some(t) => t,
            None => return Err(TestCaseError::fail(format!("{kind:?} changed nothing"))),
        };
        self.generation += 1;
        self.last = Some(kind);
        prop_assert_eq!(t.generation, self.generation);
        prop_assert_eq!(t.kind, kind);
        prop_assert_eq!(t.active, self.routing.active);
        prop_assert_eq!(t.version.as_str(), self.routing.version(t.active));
        prop_assert_eq!(t.split.to_bits(), self.routing.split.to_bits());
        prop_assert_eq!(t.blue.as_str(), self.routing.versions[0]);
        prop_assert_eq!(t.green.as_str(), self.routing.versions[1]);
        Ok(())
    }

    fn unchanged(&self, change: &Change) -> Result<(), TestCaseError> {
        prop_assert_eq!(
            change,
            &Change::Unchanged {
                generation: self.generation
            }
        );
        Ok(())
    }
}

// === the system under test ===

struct Open {
    body: RolloutBody<Full<Bytes>>,
    version: &'static str,
}

/// A replaced version: its service values and its retirement future.
struct Replaced {
    version: &'static str,
    track: Arc<Track>,
    retired: task::Spawn<Retired>,
}

struct Sut {
    router: Router,
    /// Two handles on one state: control calls alternate between them.
    handles: [RolloutHandle; 2],
    deployer: Deployer<Inner, Request<String>>,
    runtime: tokio::runtime::Runtime,
    tracks: HashMap<&'static str, Arc<Track>>,
    replaced: Vec<Replaced>,
    open: Vec<Open>,
    /// Pending drained futures, with the versions each one waits for (its
    /// color's versions when it was first polled).
    watchers: Vec<(Color, Vec<String>, task::Spawn<Drained>)>,
    /// The model's routing and generation when the router was polled ready,
    /// while it holds that pick.
    polled: Option<(Routing, u64)>,
}

impl Sut {
    fn open_on(&self, version: &str) -> u64 {
        self.open.iter().filter(|o| o.version == version).count() as u64
    }

    fn poll_ready(&mut self) -> Result<(), TestCaseError> {
        let mut cx = Context::from_waker(Waker::noop());
        let res = Service::<Request<String>>::poll_ready(&mut self.router, &mut cx);
        prop_assert!(
            matches!(res, Poll::Ready(Ok(()))),
            "always-ready services: {:?}",
            res
        );
        Ok(())
    }
}

fn idx(color: Color) -> usize {
    match color {
        Color::Blue => 0,
        Color::Green => 1,
    }
}

fn run(sticky: bool, ops: &[Op]) -> Result<(), TestCaseError> {
    let (blue, blue_track) = Inner::new("v1");
    let (green, green_track) = Inner::new("v2");
    let mut builder = BlueGreenRouter::builder()
        .versions("v1", "v2")
        .served_by_header("x-served-by")
        .color_extension(true);
    if sticky {
        builder = builder.sticky_header("x-user");
    }
    let (router, handle) = builder.build(blue, green).unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let mut sut = Sut {
        handles: [handle, router.handle()],
        deployer: router.deployer::<String>(),
        router,
        runtime,
        tracks: HashMap::from([("v1", blue_track), ("v2", green_track)]),
        replaced: Vec::new(),
        open: Vec::new(),
        watchers: Vec::new(),
        polled: None,
    };
    let mut model = Model {
        routing: Routing {
            active: Color::Blue,
            split: 0.0,
            versions: ["v1", "v2"],
        },
        previous: None,
        generation: 0,
        last: None,
        served: HashMap::new(),
        users: HashMap::new(),
        deployed: 0,
        may_fall_back: 0,
    };
    check(&mut sut, &model)?;

    for (step, op) in ops.iter().enumerate() {
        let h = sut.handles[step % 2].clone();
        match op {
            Op::Promote => {
                let change = h
                    .promote()
                    .map_err(|e| TestCaseError::fail(e.to_string()))?;
                let active = model.routing.active;
                model.previous = Some((active, model.routing.version(active)));
                model.routing.active = active.other();
                model.routing.split = 0.0;
                model.transition(TransitionKind::Promote, &change)?;
            }
            &Op::PromoteTo(color) => {
                let change = h
                    .promote_to(color)
                    .map_err(|e| TestCaseError::fail(e.to_string()))?;
                let active = model.routing.active;
                if color == active {
                    model.unchanged(&change)?;
                } else {
                    model.previous = Some((active, model.routing.version(active)));
                    model.routing.active = color;
                    model.routing.split = 0.0;
                    model.transition(TransitionKind::Promote, &change)?;
                }
            }
            Op::Rollback => {
                let change = h
                    .rollback()
                    .map_err(|e| TestCaseError::fail(e.to_string()))?;
                // Back only to a color still holding the version it held.
                let back = model
                    .previous
                    .filter(|&(c, v)| c != model.routing.active && model.routing.version(c) == v);
                if back.is_none() && model.routing.split == 0.0 {
                    model.unchanged(&change)?;
                } else {
                    if let Some((color, _)) = back {
                        model.routing.active = color;
                        model.previous = None;
                    }
                    model.routing.split = 0.0;
                    model.transition(TransitionKind::Rollback, &change)?;
                }
            }
            &Op::SetSplit(f) => {
                if f.is_finite() && (0.0..=1.0).contains(&f) {
                    let change = h.set_split(f);
                    prop_assert!(change.is_ok(), "set_split({}) rejected: {:?}", f, change);
                    let change = change.unwrap();
                    let f = if f == 0.0 { 0.0 } else { f }; // -0.0 is 0.0
                    if f == model.routing.split {
                        model.unchanged(&change)?;
                    } else {
                        model.routing.split = f;
                        model.transition(TransitionKind::Split, &change)?;
                    }
                } else {
                    match h.set_split(f) {
                        Err(ControlError::Invalid(ConfigError::InvalidFraction {
                            setting: "split",
                            value,
                        })) => prop_assert_eq!(value.to_bits(), f.to_bits()),
                        other => prop_assert!(false, "set_split({}) gave {:?}", f, other),
                    }
                }
            }
            &Op::Deploy { into } => deploy(&mut sut, &mut model, into)?,
            Op::DeployDuplicate => {
                let active = model.routing.version(model.routing.active);
                let (svc, track) = Inner::new(active);
                let result = sut
                    .runtime
                    .block_on(async { sut.deployer.deploy(active, svc).await });
                prop_assert!(
                    matches!(
                        result,
                        Err(DeployError::DuplicateVersion { .. })
                            | Err(DeployError::CanaryRunning { .. })
                    ),
                    "{:?}",
                    result.map(|d| d.version)
                );
                prop_assert_eq!(track.alive.load(Ordering::SeqCst), 0);
            }
            Op::PollReady => {
                sut.poll_ready()?;
                // A router that already holds a pick keeps it.
                sut.polled.get_or_insert((model.routing, model.generation));
            }
            &Op::Admit { user, send_key } => admit(&mut sut, &mut model, sticky, user, send_key)?,
            &Op::EndBody { ref which, read } => {
                if !sut.open.is_empty() {
                    let Open { mut body, version } = sut.open.remove(which.index(sut.open.len()));
                    if read {
                        read_to_end(&mut body, version)?;
                    }
                    drop(body);
                }
            }
            &Op::Drained(color) => {
                let mut drained = task::spawn(h.drained(color));
                let versions = versions_of(&sut, color);
                let idle = idle(&sut, &versions);
                match drained.poll() {
                    Poll::Ready(()) => prop_assert!(idle, "{} drained with bodies open", color),
                    Poll::Pending => {
                        prop_assert!(!idle, "{} idle but drained is pending", color);
                        sut.watchers.push((color, versions, drained));
                    }
                }
            }
            Op::ForgetDrained(which) => {
                if !sut.watchers.is_empty() {
                    drop(sut.watchers.remove(which.index(sut.watchers.len())));
                }
            }
            Op::CloneRouter => {
                sut.router = sut.router.clone();
                sut.polled = None;
            }
        }
        check(&mut sut, &model)?;
    }

    // The end: with the router, the handles and every body gone, every
    // replaced version has been dropped and its retirement has resolved.
    let Sut {
        router,
        handles,
        deployer,
        open,
        watchers,
        mut replaced,
        tracks,
        ..
    } = sut;
    drop((router, handles, deployer, open, watchers));
    for r in &mut replaced {
        prop_assert!(r.retired.poll().is_ready(), "{} never retired", r.version);
        prop_assert_eq!(
            r.track.alive.load(Ordering::SeqCst),
            0,
            "{} values alive",
            r.version
        );
    }
    for (version, track) in tracks {
        prop_assert_eq!(
            track.alive.load(Ordering::SeqCst),
            0,
            "{} values alive",
            version
        );
    }
    Ok(())
}

/// The versions of `color` now: its current one and those it held before
/// that still run.
fn versions_of(sut: &Sut, color: Color) -> Vec<String> {
    let status = sut.handles[0].status();
    let mut versions = vec![status.color(color).version.to_string()];
    for r in status.retiring.iter().filter(|r| r.color == color) {
        versions.push(r.version.to_string());
    }
    versions
}

/// Whether nothing of `versions` is in flight: no open body and no pick
/// admitted to any of them.
fn idle(sut: &Sut, versions: &[String]) -> bool {
    let status = sut.handles[0].status();
    let picked = Color::ALL.into_iter().any(|c| {
        let s = status.color(c);
        versions.contains(&s.version.to_string()) && s.in_flight > sut.open_on(s.version.as_str())
    }) || status.retiring.iter().any(|r| {
        versions.contains(&r.version.to_string()) && r.in_flight > sut.open_on(r.version.as_str())
    });
    !picked
        && !sut
            .open
            .iter()
            .any(|o| versions.iter().any(|v| v == o.version))
}

fn deploy(sut: &mut Sut, model: &mut Model, into: Option<Color>) -> Result<(), TestCaseError> {
    let label = label(model.deployed);
    let (svc, track) = Inner::new(label);
    let mut deploy = sut.deployer.deploy(label, svc);
    if let Some(color) = into {
        deploy = deploy.into_color(color);
    }
    let result = sut.runtime.block_on(async { deploy.await });
    let standby = model.routing.active.other();
    let color = into.unwrap_or(standby);
    let replaced_label = model.routing.version(color);
    let expected_error = if color == model.routing.active {
        Some("active")
    } else if (model.routing.split * f64::from(1u32 << 20)).round() > 0.0 {
        Some("canary")
    } else if model.routing.version(model.routing.active) == label {
        Some("duplicate")
    } else {
        None
    };
    match (result, expected_error) {
        (Ok(deployed), None) => {
            prop_assert_eq!(deployed.color, color);
            prop_assert_eq!(deployed.version.as_str(), label);
            prop_assert_eq!(deployed.replaced().as_str(), replaced_label);
            model.routing.versions[idx(color)] = label;
            model.generation += 1;
            model.last = Some(TransitionKind::Deploy);
            model.deployed += 1;
            prop_assert_eq!(deployed.transition.generation, model.generation);
            prop_assert_eq!(
                deployed.transition.replaced.as_ref().map(|v| v.as_str()),
                Some(replaced_label)
            );
            sut.tracks.insert(label, track.clone());
            let replaced_track = sut.tracks[replaced_label].clone();
            sut.replaced.push(Replaced {
                version: replaced_label,
                track: replaced_track,
                retired: task::spawn(deployed.retired()),
            });
        }
        (Err(e), Some(why)) => {
            let matches = match why {
                "active" => matches!(e, DeployError::ActiveColor { .. }),
                "canary" => matches!(e, DeployError::CanaryRunning { .. }),
                _ => matches!(e, DeployError::DuplicateVersion { .. }),
            };
            prop_assert!(matches, "expected a {} error, got {}", why, e);
            // Nothing changed, and the new service value was dropped.
            prop_assert_eq!(track.alive.load(Ordering::SeqCst), 0);
            model.deployed += 1;
        }
        (Ok(d), Some(why)) => prop_assert!(
            false,
            "deploy of {} went through: expected {}",
            d.version,
            why
        ),
        (Err(e), None) => prop_assert!(false, "deploy refused: {}", e),
    }
    Ok(())
}

/// Reads the one frame of `body` (no longer among the open ones): the request
/// ends with that last frame, before the body is dropped.
fn read_to_end(
    body: &mut RolloutBody<Full<Bytes>>,
    version: &'static str,
) -> Result<(), TestCaseError> {
    let mut cx = Context::from_waker(Waker::noop());
    prop_assert!(body.in_flight());
    match Pin::new(&mut *body).poll_frame(&mut cx) {
        Poll::Ready(Some(Ok(frame))) => {
            prop_assert_eq!(frame.into_data().ok(), Some(Bytes::from(version)));
        }
        other => prop_assert!(false, "expected the body's frame, got {:?}", other),
    }
    prop_assert!(!body.in_flight(), "ended at its last frame");
    prop_assert!(matches!(
        Pin::new(&mut *body).poll_frame(&mut cx),
        Poll::Ready(None)
    ));
    Ok(())
}

fn admit(
    sut: &mut Sut,
    model: &mut Model,
    sticky: bool,
    user: u8,
    send_key: bool,
) -> Result<(), TestCaseError> {
    if sut.polled.is_none() {
        sut.poll_ready()?;
        sut.polled = Some((model.routing, model.generation));
    }
    // The request was admitted by poll_ready: its routing is that moment's.
    let (routing, generation) = sut.polled.take().unwrap();
    // A sticky router admits to the active color and moves the request to
    // its key's color in `call`, unless the state moved since: then it stays
    // where it was admitted (a fallback).
    let moved = sticky && generation != model.generation;
    if moved {
        model.may_fall_back += 1;
    }

    let mut req = Request::new(String::new());
    if send_key {
        let key = HeaderValue::from_str(&format!("user-{user}")).unwrap();
        req.headers_mut().insert("x-user", key);
    }
    let calls_before: HashMap<&str, u64> = sut
        .tracks
        .iter()
        .map(|(v, t)| (*v, t.calls.load(Ordering::SeqCst)))
        .collect();

    let fut = sut.router.call(req);
    let mut fut = pin!(fut);
    let mut cx = Context::from_waker(Waker::noop());
    let res = match fut.as_mut().poll(&mut cx) {
        Poll::Ready(Ok(res)) => res,
        Poll::Ready(Err(e)) => match e {},
        Poll::Pending => return Err(TestCaseError::fail("always-ready services answer at once")),
    };

    // Exactly one version's service saw the request.
    let called: Vec<&str> = sut
        .tracks
        .iter()
        .filter(|(v, t)| t.calls.load(Ordering::SeqCst) != calls_before[*v])
        .map(|(v, _)| *v)
        .collect();
    prop_assert_eq!(called.len(), 1, "calls: {:?}", called);
    let version = called[0];
    let color = match Color::ALL
        .into_iter()
        .find(|&c| routing.version(c) == version)
    {
        Some(c) => c,
        None => {
            return Err(TestCaseError::fail(format!(
                "{version} served a request admitted under {routing:?}"
            )))
        }
    };
    prop_assert!(
        routing.allowed().contains(&color) || (moved && color == routing.active),
        "{} ({}) served a request admitted under {:?}",
        color,
        version,
        routing
    );
    let named = format!("{color}; version={version}");
    for name in ["x-served-by", "x-extension"] {
        let value = res
            .headers()
            .get(name)
            .map(|v| v.to_str().unwrap().to_owned());
        prop_assert_eq!(value.as_deref(), Some(named.as_str()), "{}", name);
    }
    prop_assert_eq!(res.headers()["x-inner"].to_str().unwrap(), version);
    prop_assert!(res.body().in_flight());

    if sticky && send_key && !moved {
        // A sticky key is hashed under the routing of its admission.
        let (max_active, min_standby) = model
            .users
            .entry(user)
            .or_insert((f64::NEG_INFINITY, f64::INFINITY));
        if color == routing.active {
            prop_assert!(
                routing.split < *min_standby,
                "user {} on the active color at split {} but on the standby at {}",
                user,
                routing.split,
                min_standby
            );
            *max_active = max_active.max(routing.split);
        } else {
            prop_assert!(
                routing.split > *max_active,
                "user {} on the standby at split {} but on the active color at {}",
                user,
                routing.split,
                max_active
            );
            *min_standby = min_standby.min(routing.split);
        }
    }

    *model.served.entry(version).or_default() += 1;
    sut.open.push(Open {
        body: res.into_body(),
        version,
    });
    Ok(())
}

/// The invariants that hold after every operation.
fn check(sut: &mut Sut, model: &Model) -> Result<(), TestCaseError> {
    let st = sut.handles[0].status();
    prop_assert_eq!(st.generation, model.generation);
    for h in &sut.handles {
        prop_assert_eq!(h.generation(), model.generation);
        prop_assert_eq!(h.active(), model.routing.active);
        prop_assert_eq!(h.standby(), model.routing.active.other());
    }
    prop_assert_eq!(st.active, model.routing.active);
    prop_assert_eq!(st.split.to_bits(), model.routing.split.to_bits());

    // In flight: the open bodies, and the pick `poll_ready` admitted (on a
    // color the model does not know when it was a random draw).
    let picked = u64::from(sut.polled.is_some());
    let mut in_flight = 0;
    let mut open_now = 0;
    for color in Color::ALL {
        let version = model.routing.version(color);
        let status = st.color(color);
        prop_assert_eq!(status.version.as_str(), version);
        let open = sut.open_on(version);
        let extra = status.in_flight.checked_sub(open);
        prop_assert!(
            extra.is_some_and(|e| e <= picked),
            "{} ({}) in flight {} with {} open",
            color,
            version,
            status.in_flight,
            open
        );
        in_flight += status.in_flight;
        open_now += open;
        prop_assert_eq!(sut.handles[1].in_flight(color), status.in_flight);
        // Served counts admissions, the pending pick's too.
        let called = model.served.get(version).copied().unwrap_or(0);
        let served = called + (status.in_flight - open);
        prop_assert_eq!(status.served, served, "{} ({}) served", color, version);
        prop_assert_eq!(sut.tracks[version].calls.load(Ordering::SeqCst), called);
        prop_assert!(
            sut.tracks[version].alive.load(Ordering::SeqCst) > 0,
            "{} loaded",
            version
        );
    }
    // Bodies of replaced versions count on those versions: in all, every
    // open body and the pick are in flight somewhere.
    let retiring: u64 = st.retiring.iter().map(|r| r.in_flight).sum();
    for r in &st.retiring {
        prop_assert!(r.in_flight >= sut.open_on(r.version.as_str()));
    }
    prop_assert_eq!(in_flight + retiring, sut.open.len() as u64 + picked);
    let _ = open_now;
    prop_assert!(
        st.fallbacks <= model.may_fall_back,
        "the services are always ready: {} fallbacks",
        st.fallbacks
    );
    prop_assert_eq!(st.unknown_override, 0);

    prop_assert_eq!(st.history.len() as u64, model.generation.min(64));
    let first = model.generation + 1 - st.history.len() as u64;
    for (k, t) in st.history.iter().enumerate() {
        prop_assert_eq!(t.generation, first + k as u64);
    }
    if let Some(last) = st.history.last() {
        prop_assert_eq!(Some(last.kind), model.last);
        prop_assert_eq!(last.active, model.routing.active);
        prop_assert_eq!(last.split.to_bits(), model.routing.split.to_bits());
    }

    // A replaced version is gone exactly when nothing uses it: no open body
    // of it, no value of it alive (the router lets go of its copy at its next
    // request, or when it is dropped).
    for r in &mut sut.replaced {
        let open = sut.open.iter().filter(|o| o.version == r.version).count();
        let alive = r.track.alive.load(Ordering::SeqCst);
        match r.retired.poll() {
            Poll::Ready(label) => {
                prop_assert_eq!(label.as_str(), r.version);
                prop_assert_eq!(alive, 0, "{} retired with values alive", r.version);
                prop_assert_eq!(open, 0, "{} retired with requests open", r.version);
            }
            Poll::Pending => {
                prop_assert!(
                    alive > 0 || open > 0,
                    "{} unused but not retired",
                    r.version
                );
            }
        }
    }

    // A pending drained future is woken exactly when its color's last open
    // body ends, and is then ready.
    let mut still = Vec::new();
    let watchers: Vec<_> = sut.watchers.drain(..).collect();
    for (color, versions, mut drained) in watchers {
        if !idle(sut, &versions) {
            // One of several versions going idle may wake it; it must not
            // resolve.
            if drained.is_woken() {
                prop_assert!(
                    drained.poll().is_pending(),
                    "{} drained with bodies open",
                    color
                );
            }
            still.push((color, versions, drained));
        } else {
            prop_assert!(drained.is_woken(), "{} drained but not woken", color);
            prop_assert!(drained.poll().is_ready(), "{} woken but pending", color);
        }
    }
    sut.watchers = still;
    Ok(())
}

fn config() -> ProptestConfig {
    // ProptestConfig::default() honours PROPTEST_CASES (256 otherwise).
    let mut config = ProptestConfig::default();
    if let Ok(cases) = std::env::var("ROLLOUT_PROPTEST_CASES") {
        config.cases = cases
            .parse()
            .expect("ROLLOUT_PROPTEST_CASES must be a number of cases");
    }
    config
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn handle_state_machine(sticky in any::<bool>(), ops in prop::collection::vec(op(), 1..120)) {
        run(sticky, &ops)?;
    }
}
