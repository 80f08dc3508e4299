//! Invariants of the request-body tee of `MirrorLayer`: whatever the chunking,
//! trailers, timing, buffer and budget, the primary gets exactly the original
//! frames it reads, and the shadow gets the whole body and trailers or an
//! aborted body, never a shorter body that ends cleanly. Every copy is
//! counted exactly once.
//!
//! Shared by the `tee` fuzz target and `tests/fuzz_regressions.rs`.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Request, Response};
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use tower::BoxError;
use tower::{service_fn, ServiceBuilder, ServiceExt};
use tower_rollout::mirror::{CopyAborted, MirrorBody, MirrorLayer};
use tower_rollout::ConfigError;

#[derive(Debug, Clone, Default)]
pub(crate) struct Input {
    pub(crate) chunks: Vec<Vec<u8>>,
    pub(crate) trailers: bool,
    /// Frames the primary reads before dropping its body; `None`: to the end.
    pub(crate) primary_reads: Option<usize>,
    /// The primary yields to the runtime after each frame.
    pub(crate) interleave: bool,
    /// The shadow yields this many times before each frame it reads.
    pub(crate) shadow_yields: u8,
    /// Bit `i % 8` set: the client's body is pending once before poll `i`.
    pub(crate) pending_mask: u8,
    /// The client's body reports its exact length up front.
    pub(crate) exact_hint: bool,
    /// The client's body reports its end with its last frame (rather than
    /// only when polled past it).
    pub(crate) accurate_end: bool,
    pub(crate) buffer_frames: usize,
    pub(crate) max_body_bytes: u64,
}

/// A client body: the given frames, with optional pending polls.
struct Chunks {
    frames: VecDeque<Frame<Bytes>>,
    hint: Option<u64>,
    accurate_end: bool,
    pending_mask: u8,
    polls: u32,
    pended: bool,
}

impl Body for Chunks {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let this = self.get_mut();
        if !this.pended && (this.pending_mask >> (this.polls % 8)) & 1 == 1 {
            this.pended = true;
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        this.pended = false;
        this.polls += 1;
        Poll::Ready(this.frames.pop_front().map(Ok))
    }

    fn is_end_stream(&self) -> bool {
        self.accurate_end && self.frames.is_empty()
    }

    fn size_hint(&self) -> SizeHint {
        match self.hint {
            Some(n) => SizeHint::with_exact(n),
            None => SizeHint::default(),
        }
    }
}

type Req = Request<MirrorBody<Chunks>>;

#[derive(Debug, Clone, PartialEq)]
enum ShadowSaw {
    Whole(Vec<u8>, Option<HeaderMap>),
    Aborted,
    OtherError(String),
}

#[derive(Debug, Clone, Default)]
struct PrimaryGot {
    bytes: Vec<u8>,
    trailers: Option<HeaderMap>,
    frames: usize,
    /// Polled past the last frame.
    reached_end: bool,
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

/// Runs the invariants; panics on a violation. Returns whether the shadow
/// received the whole body.
pub(crate) fn check(input: &Input) -> bool {
    runtime().block_on(run(input))
}

async fn run(input: &Input) -> bool {
    let trailers = input.trailers.then(|| {
        let mut t = HeaderMap::new();
        t.insert("grpc-status", HeaderValue::from_static("0"));
        t.append("x-checksum", HeaderValue::from_static("abc"));
        t
    });
    let mut frames: VecDeque<Frame<Bytes>> = input
        .chunks
        .iter()
        .map(|c| Frame::data(Bytes::from(c.clone())))
        .collect();
    if let Some(t) = &trailers {
        frames.push_back(Frame::trailers(t.clone()));
    }
    let total_frames = frames.len();
    let all_bytes: Vec<u8> = input.chunks.concat();
    let total_len = all_bytes.len() as u64;

    let saw = Arc::new(Mutex::new(None::<ShadowSaw>));
    let shadow = {
        let saw = saw.clone();
        let yields = input.shadow_yields;
        service_fn(move |req: Req| {
            let saw = saw.clone();
            async move {
                let mut body = req.into_body();
                let mut bytes = Vec::new();
                let mut trailers = None;
                let result = loop {
                    for _ in 0..yields {
                        tokio::task::yield_now().await;
                    }
                    match body.frame().await {
                        None => break ShadowSaw::Whole(bytes, trailers),
                        Some(Ok(f)) => {
                            if let Some(d) = f.data_ref() {
                                assert!(trailers.is_none(), "data after trailers");
                                bytes.extend_from_slice(d);
                            } else if let Some(t) = f.trailers_ref() {
                                trailers = Some(t.clone());
                            }
                        }
                        Some(Err(e)) if e.downcast_ref::<CopyAborted>().is_some() => {
                            break ShadowSaw::Aborted
                        }
                        Some(Err(e)) => break ShadowSaw::OtherError(e.to_string()),
                    }
                };
                *saw.lock().unwrap() = Some(result);
                Ok::<_, BoxError>(Response::new(String::new()))
            }
        })
    };
    let got = Arc::new(Mutex::new(PrimaryGot::default()));
    let primary = {
        let got = got.clone();
        let reads = input.primary_reads;
        let interleave = input.interleave;
        service_fn(move |req: Req| {
            let got = got.clone();
            async move {
                let mut body = req.into_body();
                let mut n = 0;
                loop {
                    if reads.is_some_and(|k| n >= k) {
                        break; // drop the body early
                    }
                    match body.frame().await {
                        None => {
                            got.lock().unwrap().reached_end = true;
                            break;
                        }
                        Some(f) => {
                            let f = f?;
                            let mut g = got.lock().unwrap();
                            if let Some(d) = f.data_ref() {
                                g.bytes.extend_from_slice(d);
                            }
                            if let Some(t) = f.trailers_ref() {
                                g.trailers = Some(t.clone());
                            }
                            g.frames += 1;
                        }
                    }
                    n += 1;
                    if interleave {
                        tokio::task::yield_now().await;
                    }
                }
                Ok::<_, BoxError>(Response::new(String::from("primary")))
            }
        })
    };

    let built = MirrorLayer::builder(shadow)
        .buffer_frames(input.buffer_frames)
        .max_body_bytes(input.max_body_bytes)
        .build();
    let (layer, handle) = match built {
        Ok(built) => built,
        Err(e) => {
            assert!(
                input.buffer_frames == 0 || input.max_body_bytes == 0,
                "rejected: {e}"
            );
            assert!(matches!(e, ConfigError::MustBePositive { .. }), "{e:?}");
            return false;
        }
    };
    assert!(input.buffer_frames > 0 && input.max_body_bytes > 0);
    let svc = ServiceBuilder::new().layer(layer).service(primary);
    let body = Chunks {
        frames,
        hint: input.exact_hint.then_some(total_len),
        accurate_end: input.accurate_end,
        pending_mask: input.pending_mask,
        polls: 0,
        pended: false,
    };
    let req = Request::post("/predict").body(body).unwrap();
    let res = svc.oneshot(req).await.unwrap();
    assert_eq!(
        res.into_body(),
        "primary",
        "the primary's answer, untouched"
    );
    for _ in 0..100_000 {
        if handle.stats().in_flight == 0 {
            break;
        }
        tokio::task::yield_now().await;
    }

    // The primary: exactly the original frames, in order, as far as it read.
    let got = got.lock().unwrap().clone();
    let expect_frames = input
        .primary_reads
        .map_or(total_frames, |k| k.min(total_frames));
    assert_eq!(got.frames, expect_frames, "frames the primary read");
    let expect_bytes: Vec<u8> = input
        .chunks
        .iter()
        .take(expect_frames)
        .flatten()
        .copied()
        .collect();
    assert_eq!(got.bytes, expect_bytes, "the primary's bytes");
    if expect_frames == total_frames {
        assert_eq!(got.trailers, trailers, "the primary's trailers");
    } else {
        assert_eq!(got.trailers, None);
    }

    // Every copy counted exactly once.
    let stats = handle.stats();
    assert_eq!(stats.in_flight, 0, "{stats:?}");
    assert_eq!((stats.sampled, stats.settled()), (1, 1), "{stats:?}");

    // The shadow: the whole body and trailers, or an aborted body.
    let saw = saw.lock().unwrap().clone();
    let fits = total_len <= input.max_body_bytes;
    if input.exact_hint && !fits {
        assert_eq!(saw, None, "over budget up front: never started");
        assert_eq!(stats.dropped_over_budget, 1, "{stats:?}");
        return false;
    }
    // The tee learns that the body is complete with its last frame when the
    // body says so, or else when the primary polls past it.
    let consumed = got.frames == total_frames && (input.accurate_end || got.reached_end);
    match &saw {
        Some(ShadowSaw::Whole(bytes, t)) => {
            assert_eq!(bytes, &all_bytes, "the shadow's bytes");
            assert_eq!(t, &trailers, "the shadow's trailers");
            assert!(consumed, "a whole copy needs a whole primary read: {got:?}");
            assert!(fits, "a whole copy within the budget");
            assert_eq!(stats.completed, 1, "{stats:?}");
        }
        Some(ShadowSaw::Aborted) => {
            assert_eq!(stats.completed, 0, "{stats:?}");
            assert_eq!(stats.dropped(), 1, "{stats:?}");
        }
        Some(ShadowSaw::OtherError(e)) => panic!("unexpected shadow body error {e}"),
        None => panic!("the shadow never ran: {stats:?}"),
    }
    if !consumed || !fits {
        assert_eq!(saw, Some(ShadowSaw::Aborted), "{got:?} fits: {fits}");
    }
    // With room for every frame and nothing over budget, nothing can go wrong.
    if consumed && fits && input.buffer_frames >= total_frames {
        assert!(
            matches!(saw, Some(ShadowSaw::Whole(..))),
            "room for all {total_frames} frames: {saw:?} {stats:?}"
        );
    }
    matches!(saw, Some(ShadowSaw::Whole(..)))
}
