//! Readiness, per-request routing, in-flight accounting and conditional
//! control calls of `BlueGreenRouter`, driven step by step with `tower-test`
//! mocks.
//!
//! Every request carries its id in an `x-id` header, so a test can tell which
//! mock received which request. The mocks see the request head only (see
//! [`Svc`]). Requests are taken from the mock handles with
//! `poll_request` instead of `assert_request_eq!`: that macro awaits the next
//! request, so a request routed to the wrong color would hang the test rather
//! than fail it (and `http::Request` has no `PartialEq` to compare with).

use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{HeaderValue, Request, Response};
use http_body::{Body, Frame};
use tokio::sync::mpsc;
use tokio_test::{assert_pending, assert_ready, assert_ready_err, assert_ready_ok, task};
use tower::Service;
use tower_rollout::control::{Change, ColorVersion, ControlError, Readiness};
use tower_rollout::router::RolloutBody;
use tower_rollout::{BlueGreenRouter, Color, ConfigError, RolloutHandle};
use tower_test::mock::{self, SendResponse, Spawn};

// === test body ===

/// A response body fed through a channel: it stays open until its sender is
/// dropped and the body is read to its end (or the body is dropped).
#[derive(Debug)]
struct TestBody {
    rx: Option<mpsc::UnboundedReceiver<Bytes>>,
}

impl TestBody {
    fn channel() -> (mpsc::UnboundedSender<Bytes>, TestBody) {
        let (tx, rx) = mpsc::unbounded_channel();
        (tx, TestBody { rx: Some(rx) })
    }

    /// A body that is already at its end when the response is made.
    fn ended() -> TestBody {
        TestBody { rx: None }
    }
}

impl Body for TestBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        match self.rx.as_mut() {
            None => Poll::Ready(None),
            Some(rx) => rx.poll_recv(cx).map(|b| b.map(|b| Ok(Frame::data(b)))),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.rx.is_none()
    }
}

// === harness ===

/// What a client sends to the router.
type Req = Request<String>;
/// What the mocks see: the head of the request the router passed on.
type Seen = Request<()>;
type Res = Response<TestBody>;
type Mock = mock::Mock<Seen, Res>;
type MockHandle = mock::Handle<Seen, Res>;
type Router = BlueGreenRouter<Svc, Svc>;
type Fut = task::Spawn<<Router as Service<Req>>::Future>;
type Error = Box<dyn std::error::Error + Send + Sync>;
type RolloutRes = Response<RolloutBody<TestBody>>;

/// A mock as a blue or green service. It forwards `poll_ready` and `call`
/// unchanged and drops the request body (the router wraps it in a type of its
/// own), so readiness is exactly the mock's.
#[derive(Clone, Debug)]
struct Svc(Mock);

impl<B> Service<Request<B>> for Svc {
    type Response = Res;
    type Error = Error;
    type Future = <Mock as Service<Seen>>::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        self.0.call(req.map(|_| ()))
    }
}

/// Blue and green services with their mock handles; both are ready until
/// told otherwise.
fn mocks() -> (Svc, MockHandle, Svc, MockHandle) {
    let (blue, bh) = mock::pair();
    let (green, gh) = mock::pair();
    (Svc(blue), bh, Svc(green), gh)
}

fn req(id: &'static str) -> Req {
    req_with(id, &[])
}

fn req_with(id: &'static str, headers: &[(&'static str, &'static str)]) -> Req {
    let mut req = Request::new(String::new());
    req.headers_mut()
        .insert("x-id", HeaderValue::from_static(id));
    for (name, value) in headers {
        req.headers_mut()
            .insert(*name, HeaderValue::from_static(value));
    }
    req
}

fn id<B>(req: &Request<B>) -> &str {
    req.headers()["x-id"].to_str().unwrap()
}

fn poll_ready(svc: &mut Spawn<Router>) -> Poll<Result<(), Error>> {
    svc.poll_ready::<Req>()
}

/// `poll_ready` (which must be ready) then `call`, and one poll of the
/// response future.
fn admit(svc: &mut Spawn<Router>, req: Req) -> Fut {
    assert_ready_ok!(poll_ready(svc), "router not ready for {}", id(&req));
    let mut fut = task::spawn(svc.call(req));
    assert_pending!(fut.poll(), "the mocks have not answered yet");
    fut
}

/// Takes the request `id` from the service behind `handle`; fails if that
/// service received no request or a different one.
fn take(handle: &mut MockHandle, want: &str) -> (Seen, SendResponse<Res>) {
    match handle.poll_request() {
        Poll::Ready(Some((req, send))) => {
            assert_eq!(id(&req), want, "a different request arrived");
            (req, send)
        }
        Poll::Ready(None) => panic!("mock closed while expecting {want}"),
        Poll::Pending => panic!("request {want} did not reach this service"),
    }
}

fn assert_no_request(handle: &mut MockHandle) {
    if let Poll::Ready(r) = handle.poll_request() {
        panic!(
            "unexpected request {:?}",
            r.map(|(req, _)| id(&req).to_owned())
        );
    }
}

/// Answers with an open body; the returned sender keeps it open.
fn respond(send: SendResponse<Res>) -> mpsc::UnboundedSender<Bytes> {
    let (tx, body) = TestBody::channel();
    send.send_response(Response::new(body));
    tx
}

/// Routes `id` through `svc` and returns the color whose mock received it,
/// with the response (body still open) and its sender.
fn route(
    svc: &mut Spawn<Router>,
    bh: &mut MockHandle,
    gh: &mut MockHandle,
    req: Req,
) -> (Color, RolloutRes, mpsc::UnboundedSender<Bytes>) {
    let want = id(&req).to_owned();
    let mut fut = admit(svc, req);
    let (color, send) = match (bh.poll_request(), gh.poll_request()) {
        (Poll::Ready(Some((r, send))), Poll::Pending) => {
            assert_eq!(id(&r), want);
            (Color::Blue, send)
        }
        (Poll::Pending, Poll::Ready(Some((r, send)))) => {
            assert_eq!(id(&r), want);
            (Color::Green, send)
        }
        (b, g) => panic!(
            "{want} must reach exactly one color; blue: {:?}, green: {:?}",
            b.map(|r| r.map(|(r, _)| id(&r).to_owned())),
            g.map(|r| r.map(|(r, _)| id(&r).to_owned())),
        ),
    };
    let tx = respond(send);
    let res = assert_ready_ok!(fut.poll());
    assert!(
        res.body().in_flight(),
        "the body keeps the request in flight"
    );
    (color, res, tx)
}

fn served(handle: &RolloutHandle) -> (u64, u64) {
    let st = handle.status();
    (st.blue.served, st.green.served)
}

type NextFrame = Option<Result<Frame<Bytes>, Infallible>>;

/// Polls a body once with a task that is never woken.
fn poll_body(body: &mut RolloutBody<TestBody>) -> Poll<NextFrame> {
    let mut cx = Context::from_waker(std::task::Waker::noop());
    Pin::new(body).poll_frame(&mut cx)
}

// === readiness ===

#[test]
fn standby_pending_never_blocks_active() {
    let (blue, mut bh, green, mut gh) = mocks();
    gh.allow(0);
    let (router, handle) = BlueGreenRouter::new(blue, green);
    let mut svc = Spawn::new(router);

    let mut open = Vec::new();
    for id in ["r1", "r2", "r3"] {
        let mut fut = admit(&mut svc, req(id));
        let (_, send) = take(&mut bh, id);
        assert_no_request(&mut gh);
        open.push(respond(send));
        let res = assert_ready_ok!(fut.poll());
        assert!(res.body().in_flight());
    }
    // Had the router polled green, green's mock would hold the router's
    // waker and wake it now.
    gh.allow(1);
    assert!(!svc.is_woken(), "the router polled the standby");
    assert_eq!(served(&handle), (3, 0));
    assert_eq!(handle.status().fallbacks, 0);
}

#[test]
fn active_pending_is_pending_and_woken_when_ready() {
    let (blue, mut bh, green, mut gh) = mocks();
    bh.allow(0);
    let (router, handle) = BlueGreenRouter::new(blue, green);
    let mut svc = Spawn::new(router);

    assert_pending!(poll_ready(&mut svc));
    assert_pending!(poll_ready(&mut svc));
    assert_eq!(handle.in_flight(Color::Blue), 0, "nothing admitted yet");
    bh.allow(1);
    assert!(
        svc.is_woken(),
        "the active color's readiness must wake the router"
    );
    let mut fut = admit(&mut svc, req("r1"));
    let (_, send) = take(&mut bh, "r1");
    assert_no_request(&mut gh);
    let _tx = respond(send);
    assert_ready_ok!(fut.poll());
    // The one allowed call is used up: pending again.
    assert_pending!(poll_ready(&mut svc));
}

#[test]
fn standby_poll_ready_error_never_fails_active() {
    let (blue, mut bh, green, mut gh) = mocks();
    let green_probe = green.clone();
    gh.send_error("standby is broken");
    let (router, handle) = BlueGreenRouter::new(blue, green);
    let mut svc = Spawn::new(router);

    let mut open = Vec::new();
    for id in ["r1", "r2"] {
        let mut fut = admit(&mut svc, req(id));
        let (_, send) = take(&mut bh, id);
        open.push(respond(send));
        assert_ready_ok!(fut.poll());
    }
    assert_no_request(&mut gh);
    assert_eq!(served(&handle), (2, 0));
    // The error is still waiting for whoever polls green first: the router
    // never did.
    let mut probe = Spawn::new(green_probe);
    let err = assert_ready_err!(probe.poll_ready::<Seen>());
    assert_eq!(err.to_string(), "standby is broken");
}

#[test]
fn active_poll_ready_error_passes_through() {
    let (blue, mut bh, green, mut gh) = mocks();
    bh.send_error("blue is broken");
    let (router, handle) = BlueGreenRouter::new(blue, green);
    let mut svc = Spawn::new(router);

    let err = assert_ready_err!(poll_ready(&mut svc));
    assert_eq!(err.to_string(), "blue is broken");
    assert_eq!(served(&handle), (0, 0));
    assert_eq!(handle.in_flight(Color::Blue), 0);
    assert_eq!(handle.status().fallbacks, 0);
    assert_eq!(handle.status().blue.readiness, Readiness::Failed);

    // The router drops its broken copy and takes a fresh one from the slot:
    // once blue recovers it serves from it again; green never saw anything.
    let mut fut = admit(&mut svc, req("r1"));
    let (_, send) = take(&mut bh, "r1");
    let _tx = respond(send);
    assert_ready_ok!(fut.poll());
    assert_no_request(&mut gh);
}

#[test]
fn admitted_before_a_promote_is_served_by_the_old_color_and_drained_waits_for_it() {
    // A request is counted from the moment `poll_ready` admits it, so
    // `drained(old)` made right after a promote waits for it, with no sleep.
    // The mocks panic when called without being polled ready, so calling a
    // color that was not polled fails this test loudly.
    let (blue, mut bh, green, mut gh) = mocks();
    let (router, handle) = BlueGreenRouter::new(blue, green);
    let mut svc = Spawn::new(router);

    assert_ready_ok!(poll_ready(&mut svc));
    assert_eq!(handle.in_flight(Color::Blue), 1, "admitted by poll_ready");
    handle.promote().unwrap();
    let mut drained = task::spawn(handle.drained(Color::Blue));
    assert_pending!(drained.poll(), "r1 was admitted to blue before the promote");

    let mut fut = task::spawn(svc.call(req("r1")));
    assert_pending!(fut.poll());
    let (_, send) = take(&mut bh, "r1");
    assert_no_request(&mut gh);
    let tx = respond(send);
    let res = assert_ready_ok!(fut.poll());
    assert!(!drained.is_woken());
    assert_pending!(drained.poll(), "its body is still open");

    // The next request is picked after the promote.
    let (color, _r2, _t2) = route(&mut svc, &mut bh, &mut gh, req("r2"));
    assert_eq!(color, Color::Green);
    assert_pending!(drained.poll(), "green's traffic does not count for blue");

    drop(tx);
    drop(res);
    assert!(drained.is_woken());
    assert_ready!(drained.poll());
    assert_eq!(served(&handle), (1, 1));
}

#[test]
fn a_request_waiting_for_readiness_picks_again_when_the_state_changes() {
    let (blue, mut bh, green, mut gh) = mocks();
    bh.allow(0);
    let (router, handle) = BlueGreenRouter::new(blue, green);
    let mut svc = Spawn::new(router);

    assert_pending!(poll_ready(&mut svc));
    handle.promote().unwrap();
    assert!(svc.is_woken(), "a transition wakes the waiting request");
    // The next poll picks again, from the new state.
    let (color, _res, _tx) = route(&mut svc, &mut bh, &mut gh, req("r1"));
    assert_eq!(color, Color::Green);
    assert_eq!(served(&handle), (0, 1));
}

#[test]
fn a_rollback_rescues_requests_waiting_on_a_forced_promote() {
    let (blue, mut bh, green, mut gh) = mocks();
    gh.allow(0);
    let (router, handle) = BlueGreenRouter::new(blue, green);
    let mut svc = Spawn::new(router);

    // Forced onto a standby that is not ready: requests wait.
    handle.force().promote().unwrap();
    assert_eq!(handle.active(), Color::Green);
    assert_pending!(poll_ready(&mut svc));
    assert_pending!(poll_ready(&mut svc));
    assert!(!svc.is_woken());

    // The rollback wakes the waiting request, which picks blue.
    let change = handle.rollback().unwrap();
    assert_eq!(change.transition().unwrap().active, Color::Blue);
    assert!(svc.is_woken(), "the rollback wakes the parked request");
    let (color, _res, _tx) = route(&mut svc, &mut bh, &mut gh, req("r1"));
    assert_eq!(color, Color::Blue);
    assert_no_request(&mut gh);
}

#[test]
fn promote_to_a_standby_that_is_not_ready_is_refused_unless_forced() {
    let (blue, mut bh, green, mut gh) = mocks();
    gh.allow(0);
    let (router, handle) = BlueGreenRouter::new(blue, green);
    let mut svc = Spawn::new(router);
    // A request teaches the router how to poll its services.
    let (_, _r1, _t1) = route(&mut svc, &mut bh, &mut gh, req("r1"));

    // The promote polls a clone of green once: pending, so refused.
    let err = handle.promote().unwrap_err();
    assert!(
        matches!(
            &err,
            ControlError::NotReady {
                color: Color::Green,
                readiness: Readiness::NotReady,
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(handle.active(), Color::Blue);
    assert_eq!(handle.generation(), 0, "a refused call changes nothing");
    assert_eq!(handle.status().green.readiness, Readiness::NotReady);
    let err = handle.promote_to(Color::Green).unwrap_err();
    assert!(matches!(err, ControlError::NotReady { .. }));

    // Green becomes ready: the next promote sees it.
    gh.allow(1);
    handle.promote().unwrap();
    assert_eq!(handle.active(), Color::Green);
    assert_eq!(handle.status().green.readiness, Readiness::Ready);
    let (color, _r2, _t2) = route(&mut svc, &mut bh, &mut gh, req("r2"));
    assert_eq!(color, Color::Green);

    // Failed since: blue breaks while it is the standby; promoting to it is
    // refused, forcing it is allowed.
    handle.set_split(1.0).unwrap();
    bh.send_error("blue broke");
    gh.allow(1);
    let (color, _r3, _t3) = route(&mut svc, &mut bh, &mut gh, req("r3"));
    assert_eq!(color, Color::Green, "the canary draw fell back");
    assert_eq!(handle.status().blue.readiness, Readiness::Failed);
    handle.set_split(0.0).unwrap();
    let err = handle.promote_to(Color::Blue).unwrap_err();
    assert!(
        matches!(
            err,
            ControlError::NotReady {
                readiness: Readiness::Failed,
                ..
            }
        ),
        "{err}"
    );
    handle.force().promote_to(Color::Blue).unwrap();
    assert_eq!(handle.active(), Color::Blue);
}

#[test]
fn canary_pick_falls_back_to_active_when_standby_not_ready() {
    let (blue, mut bh, green, mut gh) = mocks();
    gh.allow(0);
    let (router, handle) = BlueGreenRouter::new(blue, green);
    // Every random draw picks the standby at split 1.
    handle.set_split(1.0).unwrap();
    let mut svc = Spawn::new(router);

    let (color, _r1, _t1) = route(&mut svc, &mut bh, &mut gh, req("r1"));
    assert_eq!(
        color,
        Color::Blue,
        "standby pending: served by the active color"
    );
    assert_eq!(handle.status().fallbacks, 1);

    gh.send_error("standby is broken");
    let (color, _r2, _t2) = route(&mut svc, &mut bh, &mut gh, req("r2"));
    assert_eq!(
        color,
        Color::Blue,
        "standby failing: served by the active color"
    );
    assert_eq!(handle.status().fallbacks, 2);

    gh.allow(1);
    let (color, _r3, _t3) = route(&mut svc, &mut bh, &mut gh, req("r3"));
    assert_eq!(
        color,
        Color::Green,
        "standby ready: the canary gets its pick"
    );
    assert_eq!(handle.status().fallbacks, 2);
    assert_eq!(served(&handle), (2, 1));
}

#[test]
fn fallbacks_count_requests_not_polls() {
    // A request that waits while both colors are pending and is then served
    // by the standby never went to the active color.
    let (blue, mut bh, green, mut gh) = mocks();
    bh.allow(0);
    gh.allow(0);
    let (router, handle) = BlueGreenRouter::new(blue, green);
    handle.set_split(1.0).unwrap();
    let mut svc = Spawn::new(router);

    for _ in 0..3 {
        assert_pending!(poll_ready(&mut svc));
    }
    gh.allow(1);
    let (color, _res, _tx) = route(&mut svc, &mut bh, &mut gh, req("r1"));
    assert_eq!(color, Color::Green);
    assert_eq!(
        handle.status().fallbacks,
        0,
        "no request fell back to the active color"
    );
}

#[test]
fn clone_resets_pick() {
    let (blue, mut bh, green, mut gh) = mocks();
    let (router, handle) = BlueGreenRouter::new(blue, green);
    let mut a = Spawn::new(router);

    assert_ready_ok!(poll_ready(&mut a)); // `a` admitted a request to blue
    let mut b = a.clone();
    handle.promote().unwrap();
    // `b` was never polled: it picks for itself, from the state now. Had it
    // kept `a`'s pick it would call a blue it never polled ready, and the
    // mock would panic.
    let (color, _rb, _tb) = route(&mut b, &mut bh, &mut gh, req("from-b"));
    assert_eq!(color, Color::Green);

    // `a` admitted its request to blue before the promote: blue serves it.
    let mut fut = task::spawn(a.call(req("from-a")));
    assert_pending!(fut.poll());
    let (_, send) = take(&mut bh, "from-a");
    let _ta = respond(send);
    assert!(assert_ready_ok!(fut.poll()).body().in_flight());
    assert_no_request(&mut gh);
    assert_eq!(served(&handle), (1, 1));
}

// === per-request choices ===

#[test]
fn sticky_user_on_a_standby_that_is_not_ready_is_served_by_the_active_color() {
    let (blue, mut bh, green, mut gh) = mocks();
    gh.allow(0);
    let (router, handle) = BlueGreenRouter::builder()
        .sticky_header("x-user")
        .build(blue, green)
        .unwrap();
    // At split 1 every sticky bucket belongs to the standby.
    handle.set_split(1.0).unwrap();
    let mut svc = Spawn::new(router);

    // Green is not ready: alice does not wait, blue serves her.
    let alice = |id| req_with(id, &[("x-user", "alice")]);
    let (color, _r1, _t1) = route(&mut svc, &mut bh, &mut gh, alice("alice-1"));
    assert_eq!(color, Color::Blue);
    assert_eq!(handle.status().fallbacks, 1);
    assert_eq!(handle.status().green.readiness, Readiness::NotReady);
    assert!(!svc.is_woken(), "nothing waits on green");

    // Green becomes ready: alice is back on her bucket's color.
    gh.allow(1);
    let (color, _r2, _t2) = route(&mut svc, &mut bh, &mut gh, alice("alice-2"));
    assert_eq!(color, Color::Green);
    assert_eq!(handle.status().fallbacks, 1);
    assert_eq!(handle.status().green.readiness, Readiness::Ready);

    // The same user at split 0 is served by the active color.
    handle.set_split(0.0).unwrap();
    let (color, _r3, _t3) = route(&mut svc, &mut bh, &mut gh, alice("alice-3"));
    assert_eq!(color, Color::Blue);
    assert_eq!(served(&handle), (2, 1));
}

#[test]
fn keyless_request_with_sticky_config_is_drawn_at_random() {
    // Builder::sticky_header: "Requests without the header are drawn at
    // random." At split 1 every random draw is the standby.
    let (blue, mut bh, green, mut gh) = mocks();
    let (router, handle) = BlueGreenRouter::builder()
        .sticky_header("x-user")
        .build(blue, green)
        .unwrap();
    handle.set_split(1.0).unwrap();
    let mut svc = Spawn::new(router);

    let (color, _res, _tx) = route(&mut svc, &mut bh, &mut gh, req("anonymous"));
    assert_eq!(
        color,
        Color::Green,
        "a keyless request at split 1.0 must be drawn for the standby"
    );
}

#[derive(Clone, Debug)]
struct Tester;

#[test]
fn override_header_only_when_allowed() {
    let (blue, mut bh, green, mut gh) = mocks();
    let (router, handle) = BlueGreenRouter::builder()
        .sticky_header("x-user")
        .override_header("x-rollout-color", |head| {
            head.extensions().get::<Tester>().is_some()
        })
        .build(blue, green)
        .unwrap();
    let mut svc = Spawn::new(router);
    let tester = |mut req: Req| {
        req.extensions_mut().insert(Tester);
        req
    };

    // Not allowed: the header is ignored.
    let r = req_with("r1", &[("x-rollout-color", "green")]);
    assert_eq!(route(&mut svc, &mut bh, &mut gh, r).0, Color::Blue);

    // Allowed: the request goes to the color it names.
    let r = tester(req_with("r2", &[("x-rollout-color", "green")]));
    assert_eq!(route(&mut svc, &mut bh, &mut gh, r).0, Color::Green);

    // An allowed override beats the sticky key.
    handle.set_split(1.0).unwrap();
    let r = tester(req_with(
        "r3",
        &[("x-rollout-color", "blue"), ("x-user", "alice")],
    ));
    assert_eq!(route(&mut svc, &mut bh, &mut gh, r).0, Color::Blue);
    let r = req_with("r4", &[("x-rollout-color", "blue"), ("x-user", "alice")]);
    assert_eq!(
        route(&mut svc, &mut bh, &mut gh, r).0,
        Color::Green,
        "not allowed: the sticky key decides"
    );

    // After a promote, an allowed tester can still reach the old color;
    // case and surrounding spaces do not matter.
    handle.promote().unwrap();
    let r = tester(req_with("r5", &[("x-rollout-color", " Blue ")]));
    assert_eq!(route(&mut svc, &mut bh, &mut gh, r).0, Color::Blue);
    let r = req_with("r6", &[("x-rollout-color", "blue")]);
    assert_eq!(route(&mut svc, &mut bh, &mut gh, r).0, Color::Green);

    // An override naming a color that is not ready is served by the other.
    bh.allow(0);
    let r = tester(req_with("r7", &[("x-rollout-color", "blue")]));
    assert_eq!(route(&mut svc, &mut bh, &mut gh, r).0, Color::Green);
    assert_eq!(handle.status().fallbacks, 1);

    assert_eq!(handle.status().unknown_override, 0);
    assert_eq!(served(&handle), (3, 4));
}

#[test]
fn unknown_override_value_is_ignored_and_counted() {
    let (blue, mut bh, green, mut gh) = mocks();
    let (router, handle) = BlueGreenRouter::builder()
        .override_header("x-rollout-color", |_| true)
        .build(blue, green)
        .unwrap();
    let mut svc = Spawn::new(router);

    let values: [&[u8]; 4] = [b"purple", b"", b"greenish", b"\xff"];
    for (n, value) in values.into_iter().enumerate() {
        let mut r = req("unknown");
        r.headers_mut()
            .insert("x-rollout-color", HeaderValue::from_bytes(value).unwrap());
        assert_eq!(
            route(&mut svc, &mut bh, &mut gh, r).0,
            Color::Blue,
            "{value:?} is routed normally"
        );
        assert_eq!(handle.status().unknown_override, n as u64 + 1);
    }
    let r = req_with("known", &[("x-rollout-color", "green")]);
    assert_eq!(route(&mut svc, &mut bh, &mut gh, r).0, Color::Green);
    let r = req("none");
    assert_eq!(route(&mut svc, &mut bh, &mut gh, r).0, Color::Blue);
    assert_eq!(handle.status().unknown_override, 4);
}

#[test]
fn served_by_header_and_extension_name_the_color_and_version() {
    let (blue, mut bh, green, mut gh) = mocks();
    let (router, handle) = BlueGreenRouter::builder()
        .versions("iris-v1", "iris-v2")
        .served_by_header("x-served-by")
        .color_extension(true)
        .override_header("x-rollout-color", |_| true)
        .build(blue, green)
        .unwrap();
    let mut svc = Spawn::new(router);

    let mut check = |r: Req, want: Color, version: &str| {
        let rid = id(&r).to_owned();
        let mut fut = admit(&mut svc, r);
        let (to, other) = match want {
            Color::Blue => (&mut bh, &mut gh),
            Color::Green => (&mut gh, &mut bh),
        };
        let (seen, send) = take(to, &rid);
        assert_no_request(other);
        let served = seen.extensions().get::<ColorVersion>().unwrap();
        assert_eq!(
            (served.color, served.version.as_str()),
            (want, version),
            "{rid}"
        );
        let _tx = respond(send);
        let res = assert_ready_ok!(fut.poll());
        assert_eq!(
            res.headers()["x-served-by"],
            format!("{want}; version={version}"),
            "{rid}"
        );
        assert_eq!(res.headers().get_all("x-served-by").iter().count(), 1);
    };
    check(req("r1"), Color::Blue, "iris-v1");
    handle.promote().unwrap();
    check(req("r2"), Color::Green, "iris-v2");
    // Through an override to the other color too.
    check(
        req_with("r3", &[("x-rollout-color", "blue")]),
        Color::Blue,
        "iris-v1",
    );

    // Both are off by default.
    let (blue, mut bh, green, _gh) = mocks();
    let (router, _handle) = BlueGreenRouter::new(blue, green);
    let mut svc = Spawn::new(router);
    let mut fut = admit(&mut svc, req("plain"));
    let (seen, send) = take(&mut bh, "plain");
    assert_eq!(seen.extensions().get::<ColorVersion>(), None);
    let _tx = respond(send);
    let res = assert_ready_ok!(fut.poll());
    assert!(res.headers().is_empty(), "{:?}", res.headers());
}

// === in-flight accounting ===

#[test]
fn in_flight_until_body_ends_or_drops() {
    let (blue, mut bh, green, mut gh) = mocks();
    let (router, handle) = BlueGreenRouter::new(blue, green);
    let mut svc = Spawn::new(router);

    // In flight from `poll_ready`, before the inner service has answered.
    let mut f1 = admit(&mut svc, req("r1"));
    assert_eq!(handle.in_flight(Color::Blue), 1);
    let mut drained = task::spawn(handle.drained(Color::Blue));
    assert_pending!(drained.poll());
    assert_ready!(
        task::spawn(handle.drained(Color::Green)).poll(),
        "green has nothing in flight"
    );

    let mut f2 = admit(&mut svc, req("r2"));
    let (_, s1) = take(&mut bh, "r1");
    let (_, s2) = take(&mut bh, "r2");
    assert_no_request(&mut gh);
    let t1 = respond(s1);
    let t2 = respond(s2);
    let mut b1 = assert_ready_ok!(f1.poll()).into_body();
    let b2 = assert_ready_ok!(f2.poll()).into_body();
    assert_eq!(
        handle.in_flight(Color::Blue),
        2,
        "responses out, bodies open"
    );
    assert_eq!(handle.status().blue.in_flight, 2);

    // A frame is not the end.
    t1.send(Bytes::from_static(b"token")).unwrap();
    let frame = assert_ready!(poll_body(&mut b1)).unwrap().unwrap();
    assert_eq!(frame.into_data().unwrap(), "token");
    assert_pending!(poll_body(&mut b1));
    assert_eq!(handle.in_flight(Color::Blue), 2);

    // r1 ends by being read to its end; r2 is still open.
    drop(t1);
    assert!(assert_ready!(poll_body(&mut b1)).is_none());
    assert!(!b1.in_flight());
    assert_eq!(handle.in_flight(Color::Blue), 1);
    assert!(!drained.is_woken(), "woken with r2 still in flight");
    assert_pending!(drained.poll());
    drop(b1);
    assert_eq!(
        handle.in_flight(Color::Blue),
        1,
        "dropping an ended body counts nothing"
    );

    // r2 ends by being dropped unread, its sender still open.
    drop(b2);
    assert_eq!(handle.in_flight(Color::Blue), 0);
    assert!(drained.is_woken());
    assert_ready!(drained.poll());
    drop(t2);

    // A response future dropped before the answer ends the request too.
    let f3 = admit(&mut svc, req("r3"));
    assert_eq!(handle.in_flight(Color::Blue), 1);
    let mut drained = task::spawn(handle.drained(Color::Blue));
    assert_pending!(drained.poll());
    drop(f3);
    assert_eq!(handle.in_flight(Color::Blue), 0);
    assert!(drained.is_woken());
    assert_ready!(drained.poll());
    let _ = take(&mut bh, "r3");

    // A body that is already at its end is not in flight at all.
    let mut f4 = admit(&mut svc, req("r4"));
    let (_, s4) = take(&mut bh, "r4");
    s4.send_response(Response::new(TestBody::ended()));
    let res = assert_ready_ok!(f4.poll());
    assert!(!res.body().in_flight());
    assert_eq!(handle.in_flight(Color::Blue), 0);

    // Polled ready and never called (the router clone dropped): taken back,
    // not served.
    assert_ready_ok!(poll_ready(&mut svc));
    assert_eq!(handle.in_flight(Color::Blue), 1);
    drop(svc);
    assert_eq!(handle.in_flight(Color::Blue), 0);

    let st = handle.status();
    assert_eq!((st.blue.served, st.green.served), (4, 0));
    assert_eq!(st.green.in_flight, 0);
}

#[test]
fn drained_resolves_at_first_idle_moment() {
    // RolloutHandle::drained: "The future does not stop new requests from
    // reaching `color`; it resolves at the first moment nothing is in flight."
    // Here blue goes idle, the waiting task is woken, and a new request
    // reaches blue before that task gets to run.
    let (blue, mut bh, green, mut gh) = mocks();
    let (router, handle) = BlueGreenRouter::new(blue, green);
    let mut svc = Spawn::new(router);

    let (_, r1, _t1) = route(&mut svc, &mut bh, &mut gh, req("r1"));
    let mut drained = task::spawn(handle.drained(Color::Blue));
    assert_pending!(drained.poll());
    drop(r1);
    assert!(drained.is_woken());
    let (_, _r2, _t2) = route(&mut svc, &mut bh, &mut gh, req("r2"));
    assert_ready!(
        drained.poll(),
        "blue had nothing in flight after r1 ended; drained must resolve"
    );
}

#[test]
fn inner_error_passes_through_and_ends_in_flight() {
    let (blue, mut bh, green, mut gh) = mocks();
    let (router, handle) = BlueGreenRouter::new(blue, green);
    let mut svc = Spawn::new(router);

    let mut fut = admit(&mut svc, req("r1"));
    assert_eq!(handle.in_flight(Color::Blue), 1);
    let mut drained = task::spawn(handle.drained(Color::Blue));
    assert_pending!(drained.poll());

    let (_, send) = take(&mut bh, "r1");
    assert_no_request(&mut gh);
    send.send_error("model crashed");
    let err = assert_ready_err!(fut.poll());
    assert_eq!(err.to_string(), "model crashed");
    assert_eq!(handle.in_flight(Color::Blue), 0);
    assert!(drained.is_woken());
    assert_ready!(drained.poll());
    assert_eq!(served(&handle), (1, 0));

    // The same through an override to the other color.
    let (blue, mut bh, green, mut gh) = mocks();
    let (router, handle) = BlueGreenRouter::builder()
        .override_header("x-rollout-color", |_| true)
        .build(blue, green)
        .unwrap();
    let mut svc = Spawn::new(router);
    let mut fut = admit(&mut svc, req_with("r2", &[("x-rollout-color", "green")]));
    assert_eq!(handle.in_flight(Color::Green), 1);
    let (_, send) = take(&mut gh, "r2");
    assert_no_request(&mut bh);
    send.send_error("green crashed");
    assert_eq!(assert_ready_err!(fut.poll()).to_string(), "green crashed");
    assert_eq!(handle.in_flight(Color::Green), 0);
    assert_eq!(served(&handle), (0, 1));
}

// === configuration and control ===

#[test]
fn bad_config_is_a_typed_error() {
    let bad_name = |setting: &'static str, name: &str| ConfigError::InvalidHeaderName {
        setting,
        name: name.to_owned(),
    };
    let build = |b: tower_rollout::router::Builder| b.build((), ()).err();

    assert_eq!(
        build(BlueGreenRouter::builder().sticky_header("not a header")),
        Some(bad_name("sticky header", "not a header"))
    );
    assert_eq!(
        build(BlueGreenRouter::builder().override_header("", |_| true)),
        Some(bad_name("override header", ""))
    );
    assert_eq!(
        build(BlueGreenRouter::builder().served_by_header("served by")),
        Some(bad_name("served-by header", "served by"))
    );
    // The first bad setting is the one reported, and a later good one does
    // not clear it.
    assert_eq!(
        build(
            BlueGreenRouter::builder()
                .sticky_header("a b")
                .served_by_header("c d")
        ),
        Some(bad_name("sticky header", "a b"))
    );
    assert_eq!(
        build(
            BlueGreenRouter::builder()
                .served_by_header("c d")
                .served_by_header("x-served-by")
        ),
        Some(bad_name("served-by header", "c d"))
    );
    assert_eq!(
        BlueGreenRouter::builder()
            .override_header("x y", |_| true)
            .layer(())
            .err(),
        Some(bad_name("override header", "x y"))
    );
    assert!(build(
        BlueGreenRouter::builder()
            .sticky_header("x-user")
            .override_header("x-rollout-color", |_| true)
            .served_by_header("x-served-by")
    )
    .is_none());

    // Version labels: checked, and not the same twice.
    assert_eq!(
        build(BlueGreenRouter::builder().versions("iris v1", "v2")),
        Some(ConfigError::InvalidVersion {
            label: "iris v1".into()
        })
    );
    assert_eq!(
        build(BlueGreenRouter::builder().versions("v1", "v1")),
        Some(ConfigError::DuplicateVersion { label: "v1".into() })
    );

    // Fractions.
    let (_router, handle) = BlueGreenRouter::new((), ());
    handle.set_split(0.25).unwrap();
    let before = handle.status();
    for bad in [
        f64::NAN,
        -0.5,
        -f64::MIN_POSITIVE,
        1.0 + f64::EPSILON,
        1.5,
        f64::INFINITY,
        f64::NEG_INFINITY,
    ] {
        match handle.set_split(bad) {
            Err(ControlError::Invalid(ConfigError::InvalidFraction {
                setting: "split",
                value,
            })) => assert!(
                value.to_bits() == bad.to_bits(),
                "{value} reported for {bad}"
            ),
            other => panic!("set_split({bad}) gave {other:?}"),
        }
        assert_eq!(
            handle.status(),
            before,
            "set_split({bad}) changed the state"
        );
    }
    assert_eq!(handle.generation(), 1);
    for edge in [0.0, 1.0] {
        let change = handle.set_split(edge).unwrap();
        assert_eq!(change.transition().unwrap().split, edge);
    }
    // -0.0 is stored as 0.0.
    handle.set_split(-0.0).unwrap();
    assert!(handle.status().split.is_sign_positive());
    assert_eq!(handle.status().split, 0.0);
    // A plain router cannot mirror.
    assert_eq!(handle.mirror_standby(0.5), Err(ControlError::NoMirror));
}

#[test]
fn control_calls_that_state_their_target_are_safe_to_repeat() {
    let (_router, handle) = BlueGreenRouter::builder()
        .versions("v1", "v2")
        .build((), ())
        .unwrap();

    // Promote *to* a color or a version: once applied, a retry is a no-op.
    let first = handle.promote_to(Color::Green).unwrap();
    assert!(first.is_applied());
    assert_eq!(first.generation(), 1);
    for _ in 0..3 {
        assert_eq!(
            handle.promote_to(Color::Green).unwrap(),
            Change::Unchanged { generation: 1 }
        );
        assert_eq!(
            handle.promote_to_version("v2").unwrap(),
            Change::Unchanged { generation: 1 }
        );
    }
    assert_eq!(handle.active(), Color::Green);
    assert_eq!(handle.status().history.len(), 1);
    assert!(matches!(
        handle.promote_to_version("v9"),
        Err(ControlError::UnknownVersion { .. })
    ));

    // A plain promote flips: that is what it says.
    let t = handle.promote().unwrap();
    let t = t.transition().unwrap();
    assert_eq!((t.active, t.version.as_str()), (Color::Blue, "v1"));
    assert_eq!(
        (t.from.color, t.from.version.as_str()),
        (Color::Green, "v2")
    );

    // Rollback says which version it returned to; with nothing to undo it
    // changes nothing (no generation bump, no transition).
    let back = handle.rollback().unwrap();
    let t = back.transition().unwrap();
    assert_eq!((t.active, t.version.as_str()), (Color::Green, "v2"));
    let generation = handle.generation();
    assert_eq!(handle.rollback().unwrap(), Change::Unchanged { generation });
    assert_eq!(handle.status().history.len(), 3);

    // Setting a split to its value changes nothing either.
    handle.set_split(0.2).unwrap();
    assert_eq!(
        handle.set_split(0.2).unwrap(),
        Change::Unchanged {
            generation: generation + 1
        }
    );
}

#[test]
fn the_compare_and_set_form_fails_with_a_typed_conflict_when_the_state_moved() {
    let (_router, handle) = BlueGreenRouter::new((), ());
    let seen = handle.generation();
    handle.set_split(0.1).unwrap(); // someone else
    for call in [
        handle.expect_generation(seen).promote(),
        handle.expect_generation(seen).rollback(),
        handle.expect_generation(seen).set_split(0.3),
    ] {
        assert_eq!(
            call,
            Err(ControlError::Conflict {
                expected: seen,
                actual: seen + 1
            })
        );
    }
    assert_eq!(handle.status().split, 0.1, "nothing changed");
    assert_eq!(handle.active(), Color::Blue);
    // With the generation it saw, the call goes through.
    let now = handle.generation();
    let change = handle.expect_generation(now).promote().unwrap();
    assert_eq!(change.generation(), now + 1);
    // A target already reached is unchanged whatever the generation.
    assert_eq!(
        handle
            .expect_generation(0)
            .promote_to(Color::Green)
            .unwrap(),
        Change::Unchanged {
            generation: now + 1
        }
    );
}

#[test]
fn generation_rises_and_history_is_bounded() {
    use tower_rollout::control::TransitionKind;

    let (_router, handle) = BlueGreenRouter::new((), ());
    let other = handle.clone();
    assert_eq!(handle.generation(), 0);
    assert!(handle.status().history.is_empty());

    let mut active = Color::Blue;
    let mut previous = None;
    let mut split;
    let mut generation = 0;
    for i in 1..=150u64 {
        // Alternate the two handles: they share one state.
        let h = if i % 2 == 0 { &handle } else { &other };
        let (change, kind) = match i % 5 {
            0 | 3 => {
                previous = Some(active);
                active = active.other();
                split = 0.0;
                (h.promote().unwrap(), TransitionKind::Promote)
            }
            1 => {
                split = (i % 10) as f64 / 10.0 + 0.05;
                (h.set_split(split).unwrap(), TransitionKind::Split)
            }
            2 => {
                if let Some(p) = previous.take() {
                    active = p;
                }
                split = 0.0;
                (h.rollback().unwrap(), TransitionKind::Rollback)
            }
            _ => {
                assert!(h.set_split(f64::NAN).is_err());
                assert_eq!(
                    handle.generation(),
                    generation,
                    "a rejected call is no transition"
                );
                split = 0.5;
                (h.set_split(split).unwrap(), TransitionKind::Split)
            }
        };
        generation += 1;
        let t = change
            .transition()
            .expect("every call here changes the state");
        assert_eq!(t.generation, generation);
        assert_eq!(
            (t.kind, t.active, t.split),
            (kind, active, split),
            "call {i}"
        );
        assert_eq!(handle.generation(), generation);
        assert_eq!(handle.active(), active);

        let st = handle.status();
        assert_eq!(st.generation, generation);
        assert_eq!((st.active, st.split), (active, split));
        assert_eq!(
            st.history.len() as u64,
            generation.min(64),
            "history is bounded"
        );
        assert_eq!(st.history.last(), Some(t), "newest last");
        let first = generation + 1 - st.history.len() as u64;
        for (k, entry) in st.history.iter().enumerate() {
            assert_eq!(entry.generation, first + k as u64, "oldest first, no gaps");
        }
    }
}
