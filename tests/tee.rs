//! Property: whatever the chunking, trailers, buffer size, budget and early
//! drop, the primary gets exactly the original frames, and the shadow gets
//! exactly the original body and trailers or an aborted body — never a
//! shorter body that ends cleanly. Every copy is counted once.
//!
//! Cases: `ROLLOUT_PROPTEST_CASES` (default 256); the deep run uses 10 000.

use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Request, Response};
use http_body::Frame;
use http_body_util::{combinators::BoxBody, BodyExt, StreamBody};
use proptest::prelude::*;
use tower::BoxError;
use tower::{service_fn, ServiceBuilder, ServiceExt};
use tower_rollout::mirror::{CopyAborted, MirrorBody, MirrorLayer};

type TestBody = BoxBody<Bytes, Infallible>;
type Req = Request<MirrorBody<TestBody>>;

#[derive(Debug, Clone, PartialEq)]
enum ShadowSaw {
    Whole(Bytes, Option<HeaderMap>),
    Aborted,
    OtherError(String),
}

fn cases() -> u32 {
    std::env::var("ROLLOUT_PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256)
}

#[derive(Debug, Clone)]
struct Case {
    chunks: Vec<Vec<u8>>,
    trailers: bool,
    /// Frames the primary reads before dropping its body; `None`: all of it.
    primary_reads: Option<usize>,
    buffer_frames: usize,
    budget: u64,
    /// Let the shadow run between the primary's reads.
    interleave: bool,
}

fn case() -> impl Strategy<Value = Case> {
    (
        prop::collection::vec(prop::collection::vec(any::<u8>(), 0..48), 0..24),
        any::<bool>(),
        prop::option::of(0usize..30),
        1usize..40,
        prop_oneof![Just(u64::MAX / 2), 1u64..600],
        any::<bool>(),
    )
        .prop_map(
            |(chunks, trailers, primary_reads, buffer_frames, budget, interleave)| Case {
                chunks,
                trailers,
                primary_reads,
                buffer_frames,
                budget,
                interleave,
            },
        )
}

fn run(case: &Case) -> Result<(), TestCaseError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let trailers = case.trailers.then(|| {
            let mut t = HeaderMap::new();
            t.insert("grpc-status", HeaderValue::from_static("0"));
            t
        });
        let mut frames: Vec<Result<Frame<Bytes>, Infallible>> = case
            .chunks
            .iter()
            .map(|c| Ok(Frame::data(Bytes::from(c.clone()))))
            .collect();
        if let Some(t) = &trailers {
            frames.push(Ok(Frame::trailers(t.clone())));
        }
        let total_frames = frames.len();
        let all_bytes: Vec<u8> = case.chunks.concat();

        let saw = Arc::new(Mutex::new(None));
        let shadow = {
            let saw = saw.clone();
            service_fn(move |req: Req| {
                let saw = saw.clone();
                async move {
                    let result = match req.into_body().collect().await {
                        Ok(c) => {
                            let t = c.trailers().cloned();
                            ShadowSaw::Whole(c.to_bytes(), t)
                        }
                        Err(e) if e.downcast_ref::<CopyAborted>().is_some() => ShadowSaw::Aborted,
                        Err(e) => ShadowSaw::OtherError(e.to_string()),
                    };
                    *saw.lock().unwrap() = Some(result);
                    Ok::<_, BoxError>(Response::new(String::new()))
                }
            })
        };
        let primary_got = Arc::new(Mutex::new((Vec::<u8>::new(), None, 0usize, false)));
        let primary = {
            let got = primary_got.clone();
            let reads = case.primary_reads;
            let interleave = case.interleave;
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
                                got.lock().unwrap().3 = true;
                                break;
                            }
                            Some(f) => {
                                let f = f?;
                                let mut g = got.lock().unwrap();
                                if let Some(d) = f.data_ref() {
                                    g.0.extend_from_slice(d);
                                }
                                if let Some(t) = f.trailers_ref() {
                                    g.1 = Some(t.clone());
                                }
                                g.2 += 1;
                            }
                        }
                        n += 1;
                        if interleave {
                            tokio::task::yield_now().await;
                        }
                    }
                    Ok::<_, BoxError>(Response::new(String::new()))
                }
            })
        };
        let (layer, handle) = MirrorLayer::builder(shadow)
            .buffer_frames(case.buffer_frames)
            .max_body_bytes(case.budget)
            .build()
            .unwrap();
        let svc = ServiceBuilder::new().layer(layer).service(primary);
        let req = Request::post("/")
            .body(StreamBody::new(futures_util::stream::iter(frames)).boxed())
            .unwrap();
        svc.oneshot(req).await.unwrap();
        for _ in 0..10_000 {
            if handle.stats().in_flight == 0 {
                break;
            }
            tokio::task::yield_now().await;
        }

        // The primary: exactly the original frames, in order, as far as it read.
        let (got_bytes, got_trailers, got_frames, reached_end) =
            primary_got.lock().unwrap().clone();
        let expect_frames = case
            .primary_reads
            .map_or(total_frames, |k| k.min(total_frames));
        prop_assert_eq!(got_frames, expect_frames);
        let expect_bytes: Vec<u8> = case
            .chunks
            .iter()
            .take(expect_frames)
            .flatten()
            .copied()
            .collect();
        prop_assert_eq!(&got_bytes, &expect_bytes);
        if expect_frames == total_frames {
            prop_assert_eq!(&got_trailers, &trailers);
        }

        // The shadow: the whole body and trailers, or an aborted body.
        let stats = handle.stats();
        prop_assert_eq!(stats.in_flight, 0);
        prop_assert_eq!((stats.sampled, stats.settled()), (1, 1), "{:?}", stats);
        let saw = saw.lock().unwrap().clone();
        match &saw {
            Some(ShadowSaw::Whole(bytes, t)) => {
                prop_assert_eq!(&bytes[..], &all_bytes[..]);
                prop_assert_eq!(t, &trailers);
                prop_assert!(reached_end, "a complete copy needs a complete primary read");
                prop_assert_eq!(stats.completed, 1);
            }
            Some(ShadowSaw::Aborted) => {
                prop_assert_eq!(stats.completed, 0);
                prop_assert_eq!(stats.dropped(), 1, "{:?}", stats);
            }
            Some(ShadowSaw::OtherError(e)) => prop_assert!(false, "unexpected error {e}"),
            // Never started: only when the budget ruled it out up front (the
            // stream's size is unknown, so this cannot happen here).
            None => prop_assert!(false, "shadow never ran: {:?}", stats),
        }
        // When nothing could go wrong, the copy must be whole.
        let fits = all_bytes.len() as u64 <= case.budget;
        let buffered = case.interleave || case.buffer_frames > total_frames;
        if reached_end && fits && buffered {
            prop_assert!(matches!(saw, Some(ShadowSaw::Whole(..))), "{:?}", saw);
        }
        if !reached_end || !fits {
            prop_assert_eq!(saw, Some(ShadowSaw::Aborted));
        }
        Ok(())
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases()))]

    #[test]
    fn tee_primary_exact_shadow_exact_or_aborted(case in case()) {
        run(&case)?;
    }
}
