//! ShadowComparator: the primary streams unchanged and undelayed while the
//! comparison runs in the background, and every outcome is counted once.

mod support;

use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body::Frame;
use http_body_util::{combinators::BoxBody, BodyExt, Full, StreamBody};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tower::BoxError;
use tower::{service_fn, Service, ServiceBuilder, ServiceExt};
use tower_rollout::mirror::{MirrorBody, MirrorLayer};
use tower_rollout::shadow::{
    Captured, Comparator, Compare, CompareSettings, ShadowComparator, ShadowHandle, ShadowReport,
    Verdict,
};
use tower_rollout::BlueGreenRouter;

type Req = Request<MirrorBody<Full<Bytes>>>;
type Out = Response<BoxBody<Bytes, Infallible>>;

fn full(s: impl Into<Bytes>) -> BoxBody<Bytes, Infallible> {
    Full::new(s.into()).boxed()
}

fn request(body: &'static str) -> Request<Full<Bytes>> {
    Request::post("/predict")
        .body(Full::new(Bytes::from(body)))
        .unwrap()
}

/// Echoes the request body with a prefix.
fn echo(
    prefix: &'static str,
) -> impl Service<Req, Response = Out, Error = BoxError, Future: Send> + Clone + Send + 'static {
    service_fn(move |req: Req| async move {
        let body = req.into_body().collect().await?.to_bytes();
        Ok::<_, BoxError>(Response::new(full(format!(
            "{prefix}{}",
            String::from_utf8_lossy(&body)
        ))))
    })
}

async fn settled(handle: &ShadowHandle, n: u64) -> ShadowReport {
    for _ in 0..100_000 {
        if handle.report().total() >= n && handle.mirror_stats().in_flight == 0 {
            break;
        }
        tokio::task::yield_now().await;
    }
    let r = handle.report();
    assert_eq!(r.total(), n, "every sampled request counted once: {r:?}");
    r
}

/// The primary's body is produced one chunk at a time from a channel; with the
/// comparator on, the client receives chunk k before chunk k+1 exists.
#[tokio::test]
async fn streamed_primary_reaches_the_client_chunk_by_chunk() {
    let (tx, rx) = mpsc::channel::<Result<Frame<Bytes>, Infallible>>(1);
    let rx = Arc::new(std::sync::Mutex::new(Some(rx)));
    let primary = service_fn(move |req: Req| {
        let rx = rx.lock().unwrap().take().expect("one request");
        async move {
            req.into_body().collect().await?;
            let body = StreamBody::new(ReceiverStream::new(rx)).boxed();
            Ok::<_, BoxError>(Response::new(body))
        }
    });
    let shadow = service_fn(|req: Req| async move {
        req.into_body().collect().await?;
        Ok::<_, BoxError>(Response::new(full("data: 0\n\ndata: 1\n\ndata: 2\n\n")))
    });
    let (layer, handle) = ShadowComparator::new(shadow, Comparator::bytes());
    let svc = ServiceBuilder::new().layer(layer).service(primary);
    let res = svc.oneshot(request("prompt")).await.unwrap();
    let mut body = res.into_body();

    for k in 0..3 {
        // Chunk k+1 does not exist yet: the body must be pending, not waiting
        // for more to compare.
        let mut next = tokio_test::task::spawn(body.frame());
        assert!(next.poll().is_pending(), "chunk {k} not produced yet");
        tx.send(Ok(Frame::data(Bytes::from(format!("data: {k}\n\n")))))
            .await
            .unwrap();
        assert!(next.is_woken());
        let frame = match next.poll() {
            std::task::Poll::Ready(Some(Ok(f))) => f,
            other => panic!("chunk {k}: {other:?}"),
        };
        assert_eq!(frame.into_data().unwrap(), format!("data: {k}\n\n"));
    }
    drop(tx);
    assert!(body.frame().await.is_none());

    let report = settled(&handle, 1).await;
    assert_eq!(report.matched, 1, "{report:?}");
}

/// Each failure mode is counted once, in its own counter, and the primary's
/// answers are the same as without the comparator.
#[tokio::test(start_paused = true)]
async fn failures_are_counted_once_and_never_reach_the_primary() {
    let calls = Arc::new(AtomicUsize::new(0));
    // The shadow's behaviour by request body.
    let shadow = {
        let calls = calls.clone();
        service_fn(move |req: Req| {
            calls.fetch_add(1, Ordering::SeqCst);
            async move {
                let body = req.into_body().collect().await?.to_bytes();
                match &body[..] {
                    b"error" => Err::<Out, BoxError>("shadow failed".into()),
                    b"hang" => std::future::pending().await,
                    b"huge" => Ok(Response::new(full(vec![b'x'; 2048]))),
                    b"differ" => Ok(Response::new(full("v2:differ"))),
                    b"status" => {
                        let mut r = Response::new(full("v1:status"));
                        *r.status_mut() = StatusCode::BAD_REQUEST;
                        Ok(r)
                    }
                    other => Ok(Response::new(full(format!(
                        "v1:{}",
                        String::from_utf8_lossy(other)
                    )))),
                }
            }
        })
    };
    // Panics when both bodies say "boom".
    let comparator = Comparator::new(|p: &Captured, s: &Captured| {
        if p.body == "v1:boom" && s.body == "v1:boom" {
            panic!("comparator bug");
        }
        Comparator::bytes().compare(p, s)
    });
    let (layer, handle) = ShadowComparator::builder(
        shadow,
        CompareSettings::new(comparator)
            .max_compare_bytes(1024)
            .mirror(MirrorLayer::settings().timeout(Duration::from_secs(2))),
    )
    .build()
    .unwrap();
    let svc = ServiceBuilder::new().layer(layer).service(echo("v1:"));

    let inputs = [
        "same", "error", "hang", "huge", "differ", "status", "boom", "same",
    ];
    let start = tokio::time::Instant::now();
    for input in inputs {
        let res = svc.clone().oneshot(request(input)).await.unwrap();
        let body = res.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(
            body,
            format!("v1:{input}"),
            "the primary's answer, unchanged"
        );
    }
    assert_eq!(start.elapsed(), Duration::ZERO, "the primary never waited");

    tokio::time::sleep(Duration::from_secs(5)).await; // past the shadow deadline
    let r = settled(&handle, inputs.len() as u64).await;
    assert_eq!(r.matched, 2);
    assert_eq!(r.mismatched, 1, "differ");
    assert_eq!(
        r.schema_breaks, 1,
        "status: 200 on the primary, 400 on the shadow"
    );
    assert_eq!(r.shadow_errors, 1);
    assert_eq!(r.shadow_timeouts, 1);
    assert_eq!(r.skipped_over_cap, 1);
    assert_eq!(r.comparator_panics, 1);
    assert_eq!(r.agreement_rate(), Some(2.0 / 3.0));
    let fields: Vec<_> = r
        .field_mismatches
        .iter()
        .map(|(f, n)| (f.as_str(), *n))
        .collect();
    assert_eq!(
        fields,
        vec![("body", 1)],
        "a schema break is not a field mismatch"
    );
    assert_eq!(r.exemplars.len(), 2);
    assert_eq!(r.exemplars[0].request, "differ");
    assert_eq!(r.exemplars[0].shadow.body, "v2:differ");
    assert_eq!(r.exemplars[1].request, "status");
    assert_eq!(r.exemplars[1].diffs[0].path, "status");
    assert_eq!(r.primary_latency.count, 4, "latency of compared requests");
    assert_eq!(calls.load(Ordering::SeqCst), inputs.len());
}

#[tokio::test]
async fn primary_failure_and_early_drop_are_skipped() {
    let primary = service_fn(|req: Req| async move {
        let body = req.into_body().collect().await?.to_bytes();
        if body == "fail" {
            return Err::<Out, BoxError>("primary failed".into());
        }
        Ok(Response::new(full(body)))
    });
    let (layer, handle) = ShadowComparator::new(echo(""), Comparator::bytes());
    let svc = ServiceBuilder::new().layer(layer).service(primary);
    assert!(svc.clone().oneshot(request("fail")).await.is_err());
    // The client drops the response before reading its body.
    drop(svc.clone().oneshot(request("dropped")).await.unwrap());
    let r = settled(&handle, 2).await;
    assert_eq!(r.skipped_primary_failed, 2, "{r:?}");
}

#[tokio::test]
async fn on_mismatch_hook_sees_each_mismatch() {
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let settings = CompareSettings::new(Comparator::bytes())
        .on_mismatch({
            let seen = seen.clone();
            move |e| seen.lock().unwrap().push(e.diffs[0].to_string())
        })
        .exemplars(1);
    let (layer, handle) = ShadowComparator::builder(echo("v2:"), settings)
        .build()
        .unwrap();
    let svc = ServiceBuilder::new().layer(layer).service(echo("v1:"));
    for input in ["a", "b"] {
        let res = svc.clone().oneshot(request(input)).await.unwrap();
        res.into_body().collect().await.unwrap();
    }
    let r = settled(&handle, 2).await;
    assert_eq!(r.mismatched, 2);
    assert_eq!(r.exemplars.len(), 1, "ring of 1 keeps the last");
    assert_eq!(r.exemplars[0].request, "b");
    let mut seen = seen.lock().unwrap().clone();
    seen.sort();
    assert_eq!(seen, vec!["body: v1:a != v2:a", "body: v1:b != v2:b"]);
}

#[test]
fn bad_compare_settings_fail_at_construction() {
    use tower_rollout::ConfigError as E;
    let b = || ShadowComparator::builder(echo(""), Comparator::status());
    let with = |s: CompareSettings| ShadowComparator::builder(echo(""), s).build();
    let cmp = || CompareSettings::new(Comparator::status());
    assert!(matches!(
        with(cmp().max_compare_bytes(0)),
        Err(E::MustBePositive { .. })
    ));
    assert!(matches!(
        with(cmp().compare_wait(Duration::ZERO)),
        Err(E::MustBePositive { .. })
    ));
    assert!(matches!(
        b().sample(2.0).build(),
        Err(E::InvalidFraction { .. })
    ));
}

/// The router compares what `mirror_standby` copies with the active color's
/// answers; the report is read from the rollout handle.
#[tokio::test]
async fn router_compares_mirrored_standby_traffic() {
    let comparator = Comparator::new(|p: &Captured, s: &Captured| {
        // v1 and v2 differ only in their prefix; compare what follows.
        let strip = |b: &Bytes| b.split(|&c| c == b':').nth(1).map(<[u8]>::to_vec);
        if strip(&p.body) == strip(&s.body) {
            Verdict::Match
        } else {
            Comparator::bytes().compare(p, s)
        }
    });
    let (router, handle) = BlueGreenRouter::builder()
        .compare(CompareSettings::new(comparator))
        .build(echo("v1:"), echo("v2:"))
        .unwrap();
    handle.mirror_standby(1.0).unwrap();
    for input in ["a", "b", "c"] {
        let res = router.clone().oneshot(request(input)).await.unwrap();
        assert_eq!(
            res.into_body().collect().await.unwrap().to_bytes(),
            format!("v1:{input}")
        );
    }
    for _ in 0..100_000 {
        if handle.shadow_report().total() == 3 {
            break;
        }
        tokio::task::yield_now().await;
    }
    let r = handle.shadow_report();
    assert_eq!((r.matched, r.total()), (3, 3), "{r:?}");
    assert_eq!(handle.mirror_stats().completed, 3);
}

/// The noise floor: the primary is noisy in `ts` (a timestamp that differs
/// between any two instances), the shadow really differs in `label`. Only
/// `label` is reported as a real difference.
#[tokio::test]
async fn noise_floor_separates_noise_from_real_differences() {
    // An instance of a model version: `label` from the input, `ts` from the
    // instance's own clock (two instances never agree on it).
    fn model(
        version: u8,
        instance: usize,
    ) -> impl Service<Req, Response = Out, Error = BoxError, Future: Send> + Clone + Send + 'static
    {
        let clock = Arc::new(AtomicUsize::new(instance * 1_000_000));
        service_fn(move |req: Req| {
            let ts = clock.fetch_add(1, Ordering::SeqCst);
            async move {
                let body = req.into_body().collect().await?.to_bytes();
                let n: u32 = String::from_utf8_lossy(&body).parse()?;
                // v2 changes its mind on every third input.
                let label = if version == 2 && n % 3 == 0 {
                    "dog"
                } else {
                    "cat"
                };
                Ok::<_, BoxError>(Response::new(full(format!("label={label};ts={ts}"))))
            }
        })
    }
    // Per-field comparison of `k=v;k=v` bodies.
    let fields = |c: &Captured| -> Vec<(String, String)> {
        String::from_utf8_lossy(&c.body)
            .split(';')
            .filter_map(|kv| {
                kv.split_once('=')
                    .map(|(k, v)| (k.to_owned(), v.to_owned()))
            })
            .collect()
    };
    let comparator = Comparator::new(move |p: &Captured, s: &Captured| {
        let diffs = fields(p)
            .into_iter()
            .zip(fields(s))
            .filter(|(a, b)| a.1 != b.1)
            .map(|(a, b)| tower_rollout::shadow::FieldDiff::new(a.0, a.1, b.1))
            .collect();
        Verdict::from_diffs(diffs)
    });
    let (layer, handle) = ShadowComparator::builder(model(2, 2), comparator)
        .noise_floor(model(1, 1))
        .build()
        .unwrap();
    let svc = ServiceBuilder::new().layer(layer).service(model(1, 0));
    const N: u32 = 90;
    for n in 0..N {
        let req = Request::post("/")
            .body(Full::new(Bytes::from(n.to_string())))
            .unwrap();
        let res = svc.clone().oneshot(req).await.unwrap();
        res.into_body().collect().await.unwrap();
        // Let this request's copies finish, as a server's idle moments would:
        // all requests are then compared, none dropped by the in-flight bound.
        while handle.mirror_stats().in_flight > 0 {
            tokio::task::yield_now().await;
        }
    }
    let report = settled(&handle, N as u64).await;
    assert_eq!(handle.mirror_stats().dropped(), 0);
    let noise = report.noise.expect("noise floor on");
    assert_eq!(noise.comparisons, N as u64);
    assert_eq!(noise.real_differences(), vec!["label"], "{noise:?}");
    let ts = noise.fields.iter().find(|f| f.path == "ts").unwrap();
    assert_eq!(
        (ts.candidate_rate, ts.noise_rate, ts.real),
        (1.0, 1.0, false)
    );
    let label = noise.fields.iter().find(|f| f.path == "label").unwrap();
    assert_eq!((label.candidate_rate, label.noise_rate), (1.0 / 3.0, 0.0));
}

/// A primary answering with an empty body (204, HEAD) is still compared:
/// servers drop such bodies without polling them.
#[tokio::test]
async fn empty_primary_bodies_are_compared() {
    let primary = service_fn(|req: Req| async move {
        req.into_body().collect().await?;
        let mut res = Response::new(full(Bytes::new()));
        *res.status_mut() = StatusCode::NO_CONTENT;
        Ok::<_, BoxError>(res)
    });
    let (layer, handle) = ShadowComparator::new(echo(""), Comparator::status());
    let svc = ServiceBuilder::new().layer(layer).service(primary);
    let res = svc.oneshot(request("x")).await.unwrap();
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    drop(res); // as hyper does with a body that has ended
    let r = settled(&handle, 1).await;
    assert_eq!(r.mismatched, 1, "204 vs 200: {r:?}");
    assert_eq!(r.field_mismatches, vec![("status".to_string(), 1)]);
}

/// Comparisons whose task the executor drops unrun are counted once, as not
/// started (the mirror counts the copy as `skipped_no_executor`).
#[tokio::test]
async fn comparisons_dropped_by_the_executor_are_counted() {
    let settings = CompareSettings::new(Comparator::bytes())
        .mirror(MirrorLayer::settings().spawner(support::DropTasks));
    let (layer, handle) = ShadowComparator::builder(echo(""), settings)
        .build()
        .unwrap();
    let svc = ServiceBuilder::new().layer(layer).service(echo(""));
    let res = svc.oneshot(request("x")).await.unwrap();
    assert_eq!(res.into_body().collect().await.unwrap().to_bytes(), "x");
    let r = handle.report();
    assert_eq!((r.skipped_not_started, r.total()), (1, 1), "{r:?}");
}

/// No setting undoes another: the builder's `.sample(0.0)` holds whatever
/// sample the comparison's mirror settings carry (before, a `.mirror(..)`
/// after `.sample(0.0)` reset it to 1).
#[tokio::test]
async fn the_builders_sample_wins_over_the_mirror_settings() {
    for mirror_sample in [1.0, 0.5] {
        let settings = CompareSettings::new(Comparator::bytes()).mirror(
            MirrorLayer::settings()
                .sample(mirror_sample)
                .timeout(Duration::from_secs(2)),
        );
        let b = ShadowComparator::builder(echo("v2:"), settings).sample(0.0);
        let sample_first = mirror_sample;
        let (layer, handle) = b.build().unwrap();
        let svc = ServiceBuilder::new().layer(layer).service(echo("v1:"));
        for _ in 0..20 {
            let res = svc.clone().oneshot(request("x")).await.unwrap();
            res.into_body().collect().await.unwrap();
        }
        let stats = handle.mirror_stats();
        assert_eq!(stats.sampled, 0, "sample_first={sample_first}: {stats:?}");
        assert_eq!(handle.report().total(), 0);
    }
}
