//! Any sequence of control calls, requests, body ends and drain waits keeps
//! `BlueGreenRouter` and `RolloutHandle` in step with a small model.
//!
//! Cases: `ROLLOUT_PROPTEST_CASES` if set, else proptest's default
//! (`PROPTEST_CASES`, or 256). A deep run:
//! `ROLLOUT_PROPTEST_CASES=10000 cargo test --release --test state_machine`.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::{ready, Future, Ready};
use std::pin::{pin, Pin};
use std::sync::atomic::{AtomicU64, Ordering};
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
use tower_rollout::body::RolloutBody;
use tower_rollout::control::{Drained, Transition, TransitionKind};
use tower_rollout::{BlueGreenRouter, Color, ConfigError, RolloutHandle};

// === the services behind the router ===

/// Always ready. Answers with its own color in `x-inner`, the color the
/// router put in the request extensions in `x-extension`, and a one-frame
/// body naming its color (open until read or dropped).
#[derive(Clone)]
struct Inner {
    color: Color,
    calls: Arc<AtomicU64>,
}

// Generic over the request body: the router hands its services the body
// wrapped in a type of its own.
impl<B> Service<Request<B>> for Inner {
    type Response = Response<Full<Bytes>>;
    type Error = Infallible;
    type Future = Ready<Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        self.calls.fetch_add(1, Ordering::Relaxed);
        let extension = req
            .extensions()
            .get::<Color>()
            .map_or("none", |c| c.as_str());
        let name = self.color.as_str();
        let res = Response::builder()
            .header("x-inner", name)
            .header("x-extension", extension)
            .body(Full::new(Bytes::from_static(name.as_bytes())))
            .unwrap();
        ready(Ok(res))
    }
}

type Router = BlueGreenRouter<Inner, Inner>;

// === operations ===

#[derive(Debug, Clone)]
enum Op {
    Promote,
    Rollback,
    SetSplit(f64),
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
        1 => Just(Op::Rollback),
        3 => split_value().prop_map(Op::SetSplit),
        1 => Just(Op::PollReady),
        6 => (0..6u8, any::<bool>()).prop_map(|(user, send_key)| Op::Admit { user, send_key }),
        4 => (any::<Index>(), any::<bool>()).prop_map(|(which, read)| Op::EndBody { which, read }),
        2 => color().prop_map(Op::Drained),
        1 => any::<Index>().prop_map(Op::ForgetDrained),
        1 => Just(Op::CloneRouter),
    ]
}

// === the model ===

/// What routing decisions depend on.
#[derive(Debug, Clone, Copy)]
struct Routing {
    active: Color,
    split: f64,
}

impl Routing {
    /// The colors a request picked under this routing may be served by: the
    /// active color at split 0, the standby at split 1, else either.
    fn allowed(self) -> Vec<Color> {
        if self.split == 0.0 {
            vec![self.active]
        } else if self.split == 1.0 {
            vec![self.active.other()]
        } else {
            Color::ALL.to_vec()
        }
    }

    /// The colors a request polled ready under `self` and called under `now`
    /// may be served by. A sticky key is hashed at `call`, under `now`; a
    /// random draw is made at `poll_ready` and kept unless the drawn color
    /// takes no requests any more (it is not active and the split is 0),
    /// in which case the active color takes it.
    fn allowed_at_call(self, now: Routing, keyed: bool) -> Vec<Color> {
        if keyed {
            return now.allowed();
        }
        let mut colors: Vec<Color> = self
            .allowed()
            .into_iter()
            .map(|drawn| {
                // The router keeps splits in steps of 2^-20: below half a
                // step it is 0.
                let no_split = (now.split * f64::from(1u32 << 20)).round() == 0.0;
                if drawn != now.active && no_split {
                    now.active
                } else {
                    drawn
                }
            })
            .collect();
        colors.dedup();
        colors
    }
}

struct Model {
    routing: Routing,
    /// The color active before the last promote not yet rolled back.
    previous: Option<Color>,
    generation: u64,
    last: Option<TransitionKind>,
    served: [u64; 2],
    /// Per sticky user: the highest split at which the active color served
    /// them and the lowest at which the standby did. A user's bucket is fixed,
    /// so the first must stay below the second.
    users: HashMap<u8, (f64, f64)>,
}

impl Model {
    fn transition(&mut self, kind: TransitionKind, t: &Transition) -> Result<(), TestCaseError> {
        self.generation += 1;
        self.last = Some(kind);
        prop_assert_eq!(t.generation, self.generation);
        prop_assert_eq!(t.kind, kind);
        prop_assert_eq!(t.active, self.routing.active);
        prop_assert_eq!(t.split.to_bits(), self.routing.split.to_bits());
        Ok(())
    }
}

// === the system under test ===

struct Open {
    body: RolloutBody<Full<Bytes>>,
    color: Color,
}

struct Sut {
    router: Router,
    /// Two handles on one state: control calls alternate between them.
    handles: [RolloutHandle; 2],
    calls: [Arc<AtomicU64>; 2],
    open: Vec<Open>,
    watchers: Vec<(Color, task::Spawn<Drained>)>,
    /// The model's routing when the router was polled ready, while it holds
    /// that pick.
    polled: Option<Routing>,
}

impl Sut {
    fn open_on(&self, color: Color) -> u64 {
        self.open.iter().filter(|o| o.color == color).count() as u64
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
    let calls = [Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0))];
    let inner = |color: Color| Inner {
        color,
        calls: calls[idx(color)].clone(),
    };
    let mut builder = BlueGreenRouter::builder()
        .served_by_header("x-served-by")
        .color_extension(true);
    if sticky {
        builder = builder.sticky_header("x-user");
    }
    let (router, handle) = builder
        .build(inner(Color::Blue), inner(Color::Green))
        .unwrap();
    let mut sut = Sut {
        handles: [handle, router.handle()],
        router,
        calls: calls.clone(),
        open: Vec::new(),
        watchers: Vec::new(),
        polled: None,
    };
    let mut model = Model {
        routing: Routing {
            active: Color::Blue,
            split: 0.0,
        },
        previous: None,
        generation: 0,
        last: None,
        served: [0, 0],
        users: HashMap::new(),
    };
    check(&mut sut, &model)?;

    for (step, op) in ops.iter().enumerate() {
        let h = sut.handles[step % 2].clone();
        match op {
            Op::Promote => {
                let t = h.promote();
                model.previous = Some(model.routing.active);
                model.routing = Routing {
                    active: model.routing.active.other(),
                    split: 0.0,
                };
                model.transition(TransitionKind::Promote, &t)?;
            }
            Op::Rollback => {
                let t = h.rollback();
                if let Some(previous) = model.previous.take() {
                    model.routing.active = previous;
                }
                model.routing.split = 0.0;
                model.transition(TransitionKind::Rollback, &t)?;
            }
            &Op::SetSplit(f) => {
                if f.is_finite() && (0.0..=1.0).contains(&f) {
                    let t = h.set_split(f);
                    prop_assert!(t.is_ok(), "set_split({}) rejected: {:?}", f, t);
                    model.routing.split = f;
                    model.transition(TransitionKind::Split, &t.unwrap())?;
                } else {
                    match h.set_split(f) {
                        Err(ConfigError::InvalidFraction {
                            setting: "split",
                            value,
                        }) => prop_assert_eq!(value.to_bits(), f.to_bits()),
                        other => prop_assert!(false, "set_split({}) gave {:?}", f, other),
                    }
                }
            }
            Op::PollReady => {
                sut.poll_ready()?;
                // A router that already holds a pick keeps it.
                sut.polled.get_or_insert(model.routing);
            }
            &Op::Admit { user, send_key } => admit(&mut sut, &mut model, sticky, user, send_key)?,
            &Op::EndBody { ref which, read } => {
                if !sut.open.is_empty() {
                    let Open { mut body, color } = sut.open.remove(which.index(sut.open.len()));
                    if read {
                        read_to_end(&mut body, color, &sut)?;
                    }
                    drop(body);
                }
            }
            &Op::Drained(color) => {
                let mut drained = task::spawn(h.drained(color));
                let idle = sut.open_on(color) == 0;
                match drained.poll() {
                    Poll::Ready(()) => prop_assert!(idle, "{} drained with bodies open", color),
                    Poll::Pending => {
                        prop_assert!(!idle, "{} idle but drained is pending", color);
                        sut.watchers.push((color, drained));
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
    Ok(())
}

fn h_in_flight(h: &RolloutHandle) -> [u64; 2] {
    [h.in_flight(Color::Blue), h.in_flight(Color::Green)]
}

/// Reads the one frame of `body` (no longer among `sut.open`): the request
/// ends with that last frame, before the body is dropped.
fn read_to_end(
    body: &mut RolloutBody<Full<Bytes>>,
    color: Color,
    sut: &Sut,
) -> Result<(), TestCaseError> {
    let mut cx = Context::from_waker(Waker::noop());
    prop_assert_eq!(body.color(), Some(color));
    match Pin::new(&mut *body).poll_frame(&mut cx) {
        Poll::Ready(Some(Ok(frame))) => {
            prop_assert_eq!(frame.into_data().ok(), Some(Bytes::from(color.as_str())));
        }
        other => prop_assert!(false, "expected the body's frame, got {:?}", other),
    }
    prop_assert_eq!(body.color(), None, "ended at its last frame");
    let open = Color::ALL.map(|c| sut.open_on(c));
    prop_assert_eq!(h_in_flight(&sut.handles[0]), open);
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
        sut.polled = Some(model.routing);
    }
    // The pick and the word it was made from are the ones of poll_ready.
    let routing = sut.polled.take().unwrap();

    let mut req = Request::new(String::new());
    // Keyless requests (on any router) are drawn at random at poll_ready.
    if send_key {
        let key = HeaderValue::from_str(&format!("user-{user}")).unwrap();
        req.headers_mut().insert("x-user", key);
    }
    let calls_before = sut.calls.each_ref().map(|c| c.load(Ordering::Relaxed));
    let open_before = sut.open.len() as u64;

    let fut = sut.router.call(req);
    // In flight from `call` on, before the response is polled.
    let in_flight = h_in_flight(&sut.handles[0]);
    prop_assert_eq!(in_flight[0] + in_flight[1], open_before + 1);

    let mut fut = pin!(fut);
    let mut cx = Context::from_waker(Waker::noop());
    let res = match fut.as_mut().poll(&mut cx) {
        Poll::Ready(Ok(res)) => res,
        Poll::Ready(Err(e)) => match e {},
        Poll::Pending => return Err(TestCaseError::fail("always-ready services answer at once")),
    };

    // Exactly one inner service saw the request.
    let calls_after = sut.calls.each_ref().map(|c| c.load(Ordering::Relaxed));
    let color = match (
        calls_after[0] - calls_before[0],
        calls_after[1] - calls_before[1],
    ) {
        (1, 0) => Color::Blue,
        (0, 1) => Color::Green,
        other => return Err(TestCaseError::fail(format!("calls per color: {other:?}"))),
    };
    prop_assert!(
        routing
            .allowed_at_call(model.routing, sticky && send_key)
            .contains(&color),
        "{} served a request polled under {:?}, called under {:?}",
        color,
        routing,
        model.routing
    );
    prop_assert_eq!(in_flight[idx(color)], sut.open_on(color) + 1);
    for name in ["x-inner", "x-served-by", "x-extension"] {
        let value = res.headers().get(name).map(|v| v.as_bytes());
        prop_assert_eq!(value, Some(color.as_str().as_bytes()), "{}", name);
    }
    prop_assert_eq!(res.body().color(), Some(color));

    if sticky && send_key {
        // A sticky key is hashed under the routing at `call`.
        let routing = model.routing;
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

    model.served[idx(color)] += 1;
    sut.open.push(Open {
        body: res.into_body(),
        color,
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

    for color in Color::ALL {
        let open = sut.open_on(color);
        let served = model.served[idx(color)];
        prop_assert_eq!(st.color(color).in_flight, open, "{} in flight", color);
        prop_assert_eq!(sut.handles[1].in_flight(color), open, "{} in flight", color);
        prop_assert_eq!(st.color(color).served, served, "{} served", color);
        prop_assert_eq!(sut.calls[idx(color)].load(Ordering::Relaxed), served);
    }
    prop_assert_eq!(st.canary_fallback, 0, "the services are always ready");
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

    // A pending drained future is woken exactly when its color's last open
    // body ends, and is then ready.
    let mut still = Vec::new();
    for (color, mut drained) in sut.watchers.drain(..) {
        if sut.open.iter().any(|o| o.color == color) {
            prop_assert!(!drained.is_woken(), "{} woken with bodies open", color);
            still.push((color, drained));
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
