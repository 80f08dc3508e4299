//! Readiness, per-request routing and in-flight accounting of
//! `BlueGreenRouter`, driven step by step with `tower-test` mocks.
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
use tower_rollout::body::RolloutBody;
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
    assert_eq!(
        res.body().color(),
        Some(color),
        "body guard on the serving color"
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
        assert_eq!(res.body().color(), Some(Color::Blue));
    }
    // Had the router polled green, green's mock would hold the router's
    // waker and wake it now.
    gh.allow(1);
    assert!(!svc.is_woken(), "the router polled the standby");
    assert_eq!(served(&handle), (3, 0));
    assert_eq!(handle.status().canary_fallback, 0);
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
    assert_eq!(handle.status().canary_fallback, 0);

    // Once blue recovers the router serves from it again; green never saw
    // anything.
    let mut fut = admit(&mut svc, req("r1"));
    let (_, send) = take(&mut bh, "r1");
    let _tx = respond(send);
    assert_ready_ok!(fut.poll());
    assert_no_request(&mut gh);
}

#[test]
fn swap_between_poll_ready_and_call_follows_the_swap() {
    // The mocks panic when called without being polled ready, so calling the
    // color that was not polled fails these tests loudly: the new color is
    // reached through a clone driven to readiness on its own.
    let (blue, mut bh, green, mut gh) = mocks();
    let (router, handle) = BlueGreenRouter::new(blue, green);
    let mut svc = Spawn::new(router);

    assert_ready_ok!(poll_ready(&mut svc));
    handle.promote();
    // Polled for blue, called after the promote: green takes it, so no
    // request called after a promote (or a plan's abort) reaches the old color.
    let mut fut = task::spawn(svc.call(req("r1")));
    assert_pending!(fut.poll());
    let (_, send) = take(&mut gh, "r1");
    assert_no_request(&mut bh);
    let _t1 = respond(send);
    let res = assert_ready_ok!(fut.poll());
    assert_eq!(res.body().color(), Some(Color::Green));
    assert_eq!(handle.in_flight(Color::Green), 1);
    assert_eq!(handle.in_flight(Color::Blue), 0);

    // The next request is picked after the promote.
    let (color, _r2, _t2) = route(&mut svc, &mut bh, &mut gh, req("r2"));
    assert_eq!(color, Color::Green);

    // And the other way round: polled green, rolled back, blue takes it.
    assert_ready_ok!(poll_ready(&mut svc));
    handle.rollback();
    assert_eq!(handle.active(), Color::Blue);
    let mut fut = task::spawn(svc.call(req("r3")));
    assert_pending!(fut.poll());
    let (_, send) = take(&mut bh, "r3");
    assert_no_request(&mut gh);
    let _t3 = respond(send);
    let res = assert_ready_ok!(fut.poll());
    assert_eq!(res.body().color(), Some(Color::Blue));
    assert_eq!(served(&handle), (1, 2));
}

#[test]
fn promote_while_waiting_for_readiness_takes_effect() {
    let (blue, mut bh, green, mut gh) = mocks();
    bh.allow(0);
    let (router, handle) = BlueGreenRouter::new(blue, green);
    let mut svc = Spawn::new(router);

    assert_pending!(poll_ready(&mut svc));
    handle.promote();
    // The next poll picks again, from the new state.
    let (color, _res, _tx) = route(&mut svc, &mut bh, &mut gh, req("r1"));
    assert_eq!(color, Color::Green);
    assert_eq!(served(&handle), (0, 1));
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
    assert_eq!(handle.status().canary_fallback, 1);

    gh.send_error("standby is broken");
    let (color, _r2, _t2) = route(&mut svc, &mut bh, &mut gh, req("r2"));
    assert_eq!(
        color,
        Color::Blue,
        "standby failing: served by the active color"
    );
    assert_eq!(handle.status().canary_fallback, 2);

    gh.allow(1);
    let (color, _r3, _t3) = route(&mut svc, &mut bh, &mut gh, req("r3"));
    assert_eq!(
        color,
        Color::Green,
        "standby ready: the canary gets its pick"
    );
    assert_eq!(handle.status().canary_fallback, 2);
    assert_eq!(served(&handle), (2, 1));
}

#[test]
fn canary_fallback_counts_requests_not_polls() {
    // RolloutStatus::canary_fallback counts "requests the random canary split
    // drew for the standby that went to the active color". A request that
    // waits while both colors are pending and is then served by the standby
    // never went to the active color.
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
        handle.status().canary_fallback,
        0,
        "no request fell back to the active color"
    );
}

#[test]
fn clone_resets_pick() {
    let (blue, mut bh, green, mut gh) = mocks();
    let (router, handle) = BlueGreenRouter::new(blue, green);
    let mut a = Spawn::new(router);

    assert_ready_ok!(poll_ready(&mut a)); // `a` picked blue
    let mut b = a.clone();
    handle.promote();
    // `b` was never polled: it picks for itself, from the state now. Had it
    // kept `a`'s pick it would call its blue clone, which was never polled
    // ready, and the mock would panic.
    let (color, _rb, _tb) = route(&mut b, &mut bh, &mut gh, req("from-b"));
    assert_eq!(color, Color::Green);

    // `a` polled blue before the promote; called after it, green takes it
    // (through a clone of green driven to readiness on its own).
    let mut fut = task::spawn(a.call(req("from-a")));
    assert_pending!(fut.poll());
    let (_, send) = take(&mut gh, "from-a");
    let _ta = respond(send);
    assert_eq!(
        assert_ready_ok!(fut.poll()).body().color(),
        Some(Color::Green)
    );
    assert_no_request(&mut bh);
    assert_eq!(served(&handle), (0, 2));
}

// === per-request choices ===

#[test]
fn sticky_key_for_standby_goes_through_oneshot_clone() {
    let (blue, mut bh, green, mut gh) = mocks();
    gh.allow(0);
    let (router, handle) = BlueGreenRouter::builder()
        .sticky_header("x-user")
        .build(blue, green)
        .unwrap();
    // At split 1 every sticky bucket belongs to the standby.
    handle.set_split(1.0).unwrap();
    let mut svc = Spawn::new(router);

    let mut fut = admit(&mut svc, req_with("alice-1", &[("x-user", "alice")]));
    assert_no_request(&mut bh);
    assert_no_request(&mut gh);
    assert_eq!(
        handle.in_flight(Color::Green),
        1,
        "admitted on green at call"
    );
    assert_eq!(handle.status().canary_fallback, 0);

    // Green becomes ready: the request's own future is woken. (The router
    // itself may be woken too: its random canary draw at split 1 polled green
    // before falling back to blue, which the sticky key then overrode.)
    gh.allow(1);
    assert!(fut.is_woken());
    assert_pending!(fut.poll());
    let (_, send) = take(&mut gh, "alice-1");
    let _t1 = respond(send);
    assert_eq!(
        assert_ready_ok!(fut.poll()).body().color(),
        Some(Color::Green)
    );

    // The same user at split 0 is served by the active color.
    handle.set_split(0.0).unwrap();
    let alice = req_with("alice-2", &[("x-user", "alice")]);
    let (color, _r2, _t2) = route(&mut svc, &mut bh, &mut gh, alice);
    assert_eq!(color, Color::Blue);
    assert_eq!(served(&handle), (1, 1));
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
    handle.promote();
    let r = tester(req_with("r5", &[("x-rollout-color", " Blue ")]));
    assert_eq!(route(&mut svc, &mut bh, &mut gh, r).0, Color::Blue);
    let r = req_with("r6", &[("x-rollout-color", "blue")]);
    assert_eq!(route(&mut svc, &mut bh, &mut gh, r).0, Color::Green);

    assert_eq!(handle.status().unknown_override, 0);
    assert_eq!(served(&handle), (3, 3));
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
fn served_by_header_and_color_extension() {
    let (blue, mut bh, green, mut gh) = mocks();
    let (router, handle) = BlueGreenRouter::builder()
        .served_by_header("x-served-by")
        .color_extension(true)
        .override_header("x-rollout-color", |_| true)
        .build(blue, green)
        .unwrap();
    let mut svc = Spawn::new(router);

    let mut check = |r: Req, want: Color| {
        let rid = id(&r).to_owned();
        let mut fut = admit(&mut svc, r);
        let (to, other) = match want {
            Color::Blue => (&mut bh, &mut gh),
            Color::Green => (&mut gh, &mut bh),
        };
        let (seen, send) = take(to, &rid);
        assert_no_request(other);
        assert_eq!(seen.extensions().get::<Color>(), Some(&want), "{rid}");
        let _tx = respond(send);
        let res = assert_ready_ok!(fut.poll());
        assert_eq!(res.headers()["x-served-by"], want.as_str(), "{rid}");
        assert_eq!(res.headers().get_all("x-served-by").iter().count(), 1);
    };
    check(req("r1"), Color::Blue);
    handle.promote();
    check(req("r2"), Color::Green);
    // Through the oneshot clone too.
    check(req_with("r3", &[("x-rollout-color", "blue")]), Color::Blue);

    // Both are off by default.
    let (blue, mut bh, green, _gh) = mocks();
    let (router, _handle) = BlueGreenRouter::new(blue, green);
    let mut svc = Spawn::new(router);
    let mut fut = admit(&mut svc, req("plain"));
    let (seen, send) = take(&mut bh, "plain");
    assert_eq!(seen.extensions().get::<Color>(), None);
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

    // In flight from `call`, before the inner service has answered.
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
    assert_eq!(b1.color(), None);
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
    assert_eq!(res.body().color(), None);
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

    // The same through the oneshot clone of the other color.
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
            Err(ConfigError::InvalidFraction {
                setting: "split",
                value,
            }) => assert!(
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
        assert_eq!(handle.set_split(edge).unwrap().split, edge);
    }
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
    for i in 1..=150u64 {
        // Alternate the two handles: they share one state.
        let h = if i % 2 == 0 { &handle } else { &other };
        let (t, kind, split) = match i % 5 {
            0 | 3 => {
                previous = Some(active);
                active = active.other();
                (h.promote(), TransitionKind::Promote, 0.0)
            }
            1 => {
                let split = (i % 10) as f64 / 10.0;
                (h.set_split(split).unwrap(), TransitionKind::Split, split)
            }
            2 => {
                if let Some(p) = previous.take() {
                    active = p;
                }
                (h.rollback(), TransitionKind::Rollback, 0.0)
            }
            _ => {
                assert!(h.set_split(f64::NAN).is_err());
                assert_eq!(
                    handle.generation(),
                    i - 1,
                    "a rejected call is no transition"
                );
                let split = 0.5;
                (h.set_split(split).unwrap(), TransitionKind::Split, split)
            }
        };
        assert_eq!(t.generation, i);
        assert_eq!(
            (t.kind, t.active, t.split),
            (kind, active, split),
            "call {i}"
        );
        assert_eq!(handle.generation(), i);
        assert_eq!(handle.active(), active);

        let st = handle.status();
        assert_eq!(st.generation, i);
        assert_eq!((st.active, st.split), (active, split));
        assert_eq!(st.history.len() as u64, i.min(64), "history is bounded");
        assert_eq!(st.history.last(), Some(&t), "newest last");
        let first = i + 1 - st.history.len() as u64;
        for (k, entry) in st.history.iter().enumerate() {
            assert_eq!(entry.generation, first + k as u64, "oldest first, no gaps");
        }
    }
}
