//! Invariants of the router's per-request header handling: the override
//! header, the sticky key and the served-by header.
//!
//! Shared by the `headers` fuzz target and `tests/fuzz_regressions.rs`.

use std::convert::Infallible;

use bytes::Bytes;
use http::{HeaderName, HeaderValue, Request, Response};
use http_body_util::{BodyExt, Full};
use tower::{service_fn, ServiceExt};
use tower_rollout::control::ColorVersion;
use tower_rollout::{BlueGreenRouter, Color, RolloutHandle};

pub(crate) const STICKY: &str = "x-user";
pub(crate) const OVERRIDE: &str = "x-rollout-color";
pub(crate) const SERVED_BY: &str = "x-served-by";
/// Requests carrying this header may use the override header.
pub(crate) const ALLOW: &str = "x-allow-override";

/// One request header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Header {
    pub(crate) name: Name,
    pub(crate) value: Value,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Name {
    Sticky,
    Override,
    ServedBy,
    Allow,
    /// Any other name (skipped when not a valid header name).
    Other(Vec<u8>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Value {
    /// Raw bytes (skipped when not a valid header value).
    Raw(Vec<u8>),
    /// A color name with the case of each letter taken from `case` (bit i
    /// upper-cases letter i) and spaces or tabs around it (`pad`: low nibble
    /// left, high nibble right, bit 3 of each nibble picks tab).
    Color { green: bool, case: u8, pad: u8 },
}

/// The request and the rollout state it meets.
#[derive(Debug, Clone, Default)]
pub(crate) struct Input {
    pub(crate) promote: bool,
    /// The canary split, as `split / u16::MAX` (so 0 and 1 are reachable).
    pub(crate) split: u16,
    pub(crate) headers: Vec<Header>,
}

impl Value {
    pub(crate) fn bytes(&self) -> Vec<u8> {
        match self {
            Value::Raw(b) => b.clone(),
            Value::Color { green, case, pad } => {
                let name: &[u8] = if *green { b"green" } else { b"blue" };
                let pad_with = |nibble: u8| {
                    let c = if nibble & 8 != 0 { b'\t' } else { b' ' };
                    vec![c; usize::from(nibble & 7)]
                };
                let mut out = pad_with(pad & 0xf);
                out.extend(name.iter().enumerate().map(|(i, &c)| {
                    if case >> i & 1 == 1 {
                        c.to_ascii_uppercase()
                    } else {
                        c
                    }
                }));
                out.extend(pad_with(pad >> 4));
                out
            }
        }
    }
}

type Svc =
    tower::util::BoxCloneSyncService<Request<Full<Bytes>>, Response<Full<Bytes>>, Infallible>;

/// A trivial, always ready version: answers with its color's name and echoes
/// the request headers (so a request can try to smuggle a served-by header
/// into the response).
fn version(color: Color) -> Svc {
    tower::util::BoxCloneSyncService::new(service_fn(move |req: Request<Full<Bytes>>| {
        let mut res = Response::new(Full::new(Bytes::from_static(color.as_str().as_bytes())));
        *res.headers_mut() = req.headers().clone();
        std::future::ready(Ok::<_, Infallible>(res))
    }))
}

/// What a request's override header asks for, by the documented rule:
/// `blue` or `green`, ASCII case-insensitive, surrounding whitespace ignored.
pub(crate) fn expected_override(value: &[u8]) -> Option<Color> {
    let trimmed = value.trim_ascii();
    if trimmed.eq_ignore_ascii_case(b"blue") {
        Some(Color::Blue)
    } else if trimmed.eq_ignore_ascii_case(b"green") {
        Some(Color::Green)
    } else {
        None
    }
}

fn request(headers: &http::HeaderMap) -> Request<Full<Bytes>> {
    let mut req = Request::post("/predict")
        .body(Full::new(Bytes::new()))
        .unwrap();
    *req.headers_mut() = headers.clone();
    req
}

/// Sends one request and returns the color that served it, checking that
/// the served-by header names exactly one color and the body comes from it.
fn serve(router: &BlueGreenRouter<Svc, Svc>, headers: &http::HeaderMap) -> Color {
    futures_executor::block_on(async {
        let res = router.clone().oneshot(request(headers)).await.unwrap();
        let served: Vec<_> = res.headers().get_all(SERVED_BY).iter().collect();
        assert_eq!(served.len(), 1, "one served-by value: {served:?}");
        let served = ColorVersion::from_served_by(served[0].to_str().expect("served-by is ASCII"))
            .expect("served-by names a color and a version");
        let color = served.color;
        assert_eq!(served.version, color.as_str(), "the default labels");
        let body = res.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(body, color.as_str(), "the body comes from the color named");
        color
    })
}

pub(crate) fn split_fraction(split: u16) -> f64 {
    f64::from(split) / f64::from(u16::MAX)
}

fn set_split(handle: &RolloutHandle, split: f64) {
    let generation = handle.generation();
    let changes = handle.status().split != split;
    let change = handle.set_split(split).expect("a fraction in 0..=1");
    assert_eq!(change.is_applied(), changes, "{change:?}");
    assert_eq!(handle.generation(), generation + u64::from(changes));
    assert_eq!(handle.status().split, split);
}

/// Runs the invariants; panics on a violation. Returns the color that served.
pub(crate) fn check(input: &Input) -> Color {
    let (router, handle) = BlueGreenRouter::builder()
        .sticky_header(STICKY)
        .override_header(OVERRIDE, |head| head.headers().contains_key(ALLOW))
        .served_by_header(SERVED_BY)
        .build(version(Color::Blue), version(Color::Green))
        .expect("valid configuration");
    let start = handle.status();
    assert_eq!(
        (start.blue.served, start.green.served),
        (0, 0),
        "fresh counts"
    );
    assert_eq!((start.blue.in_flight, start.green.in_flight), (0, 0));
    assert_eq!(start.unknown_override, 0);
    if input.promote {
        handle.promote().expect("a ready standby");
    }
    let active = handle.active();
    let standby = active.other();
    let split = split_fraction(input.split);
    set_split(&handle, split);

    let mut headers = http::HeaderMap::new();
    for h in &input.headers {
        let name = match &h.name {
            Name::Sticky => HeaderName::from_static(STICKY),
            Name::Override => HeaderName::from_static(OVERRIDE),
            Name::ServedBy => HeaderName::from_static(SERVED_BY),
            Name::Allow => HeaderName::from_static(ALLOW),
            Name::Other(bytes) => match HeaderName::from_bytes(bytes) {
                Ok(name) => name,
                Err(_) => continue,
            },
        };
        let Ok(value) = HeaderValue::from_bytes(&h.value.bytes()) else {
            continue;
        };
        headers.append(name, value);
    }

    let before = handle.status();
    let color = serve(&router, &headers);
    let after = handle.status();
    assert_eq!(
        after.color(color).served,
        before.color(color).served + 1,
        "counted once, on the color that served"
    );
    assert_eq!(
        after.color(color.other()).served,
        before.color(color.other()).served
    );
    assert_eq!(
        (after.blue.in_flight, after.green.in_flight),
        (0, 0),
        "nothing in flight once the body is read"
    );

    // The router reads the first value of each header.
    let allowed = headers.contains_key(ALLOW);
    let override_value = headers.get(OVERRIDE).filter(|_| allowed);
    let forced = override_value.and_then(|v| expected_override(v.as_bytes()));
    let unknown = u64::from(override_value.is_some() && forced.is_none());
    assert_eq!(
        after.unknown_override,
        before.unknown_override + unknown,
        "override value {override_value:?} (allowed: {allowed})"
    );
    if let Some(forced) = forced {
        assert_eq!(color, forced, "a valid override forces its color");
        return color;
    }
    if split == 0.0 {
        assert_eq!(
            color, active,
            "split 0 and no valid override: the active color"
        );
    }
    if split == 1.0 {
        assert_eq!(color, standby, "split 1: the standby");
    }
    if headers.contains_key(STICKY) {
        // Same key, same split: same color.
        assert_eq!(serve(&router, &headers), color, "sticky at split {split}");
        // Raising the split never moves a user back to the active color;
        // lowering it never moves a user to the standby.
        let others: [f64; 3] = if color == standby {
            [split, (split + 1.0) / 2.0, 1.0]
        } else {
            [split / 2.0, split / 3.0, 0.0]
        };
        for s in others {
            set_split(&handle, s);
            assert_eq!(
                serve(&router, &headers),
                color,
                "sticky from {split} to {s}"
            );
        }
    }
    let end = handle.status();
    assert_eq!((end.blue.in_flight, end.green.in_flight), (0, 0));
    color
}
