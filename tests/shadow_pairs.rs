//! The router's comparison report is kept per pair of versions: a promote
//! swaps the sides and starts a new pair, a deploy replaces a side and
//! starts another, a rollback returns to a pair still kept, and only the
//! last few pairs are kept. Every exemplar names both sides, and its bodies
//! are those of the sides it names.

use std::convert::Infallible;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use tower::{service_fn, Service, ServiceExt};
use tower_rollout::mirror::MirrorBody;
use tower_rollout::shadow::{Comparator, CompareSettings, ShadowReport};
use tower_rollout::{BlueGreenRouter, Color, RolloutHandle};

type Req = Request<MirrorBody<Full<Bytes>>>;

/// A version that answers its own name, whatever it is asked.
fn version(
    name: &'static str,
) -> impl Service<Req, Response = Response<Full<Bytes>>, Error = Infallible, Future: Send>
       + Clone
       + Send
       + Sync
       + 'static {
    service_fn(move |req: Req| async move {
        let _ = req.into_body().collect().await;
        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(name))))
    })
}

/// Sends `n` requests; returns who answered them (all the same here).
async fn send<S, RB>(router: &S, n: usize) -> Vec<String>
where
    S: Service<Request<Full<Bytes>>, Response = Response<RB>> + Clone,
    S::Error: std::fmt::Debug,
    RB: http_body::Body,
    RB::Error: std::fmt::Debug,
{
    let mut answers = Vec::new();
    for _ in 0..n {
        let req = Request::post("/predict")
            .body(Full::new(Bytes::from_static(b"x")))
            .unwrap();
        let res = router.clone().oneshot(req).await.unwrap();
        let body = res.into_body().collect().await.unwrap().to_bytes();
        answers.push(String::from_utf8(body.to_vec()).unwrap());
    }
    answers
}

/// Waits (bounded) until the current pair has counted `n` comparisons.
async fn compared(handle: &RolloutHandle, n: u64) -> ShadowReport {
    for _ in 0..200_000 {
        let r = handle.shadow_report();
        if r.total() >= n && handle.mirror_stats().in_flight == 0 {
            return r;
        }
        tokio::task::yield_now().await;
    }
    panic!(
        "{n} comparisons never counted: {:?}",
        handle.shadow_report()
    );
}

fn sides(r: &ShadowReport) -> (Color, String, Color, String) {
    let v = r
        .versions
        .as_ref()
        .expect("a routed pair names its versions");
    (
        v.primary.color,
        v.primary.version.to_string(),
        v.shadow.color,
        v.shadow.version.to_string(),
    )
}

#[tokio::test]
async fn promote_deploy_and_rollback_each_keep_their_own_pair() {
    let (router, handle) = BlueGreenRouter::builder()
        .versions("v1", "v2")
        .compare(CompareSettings::new(Comparator::bytes()))
        .build(version("v1"), version("v2"))
        .unwrap();
    let deployer = router.deployer::<Full<Bytes>>();
    handle.mirror_standby(1.0).unwrap();

    // v1 (blue) answers users, v2 (green) the copies: 5 mismatches.
    assert!(send(&router, 5).await.iter().all(|a| a == "v1"));
    let first = compared(&handle, 5).await;
    assert_eq!(
        sides(&first),
        (Color::Blue, "v1".into(), Color::Green, "v2".into())
    );
    assert_eq!((first.mismatched, first.total()), (5, 5));
    let e = first.exemplars.last().expect("an exemplar per mismatch");
    assert_eq!(e.versions, first.versions, "the exemplar names both sides");
    assert_eq!(
        &e.primary.body[..],
        b"v1",
        "the primary side is v1's answer"
    );
    assert_eq!(&e.shadow.body[..], b"v2", "the shadow side is v2's answer");

    // Promote: a new pair, v2 against v1, starting from zero.
    handle.promote_to_version("v2").unwrap();
    assert_eq!(handle.shadow_report().total(), 0, "nothing blended in");
    handle.mirror_standby(1.0).unwrap();
    assert!(send(&router, 3).await.iter().all(|a| a == "v2"));
    let second = compared(&handle, 3).await;
    assert_eq!(
        sides(&second),
        (Color::Green, "v2".into(), Color::Blue, "v1".into())
    );
    assert_eq!(second.total(), 3);
    let e = second.exemplars.last().unwrap();
    assert_eq!(
        (&e.primary.body[..], &e.shadow.body[..]),
        (&b"v2"[..], &b"v1"[..]),
        "sides follow the promote"
    );

    // Rollback: back to the first pair, which goes on counting.
    handle.rollback().unwrap();
    handle.mirror_standby(1.0).unwrap();
    send(&router, 2).await;
    let again = compared(&handle, 7).await;
    assert_eq!(sides(&again), sides(&first));
    assert_eq!(
        again.total(),
        7,
        "5 before the promote, 2 after the rollback"
    );

    // Deploy v3 into the standby (green, holding v2): a third pair.
    handle.mirror_standby(0.0).unwrap();
    deployer.deploy("v3", version("v3")).await.unwrap();
    handle.mirror_standby(1.0).unwrap();
    send(&router, 4).await;
    let third = compared(&handle, 4).await;
    assert_eq!(
        sides(&third),
        (Color::Blue, "v1".into(), Color::Green, "v3".into())
    );
    assert_eq!(third.total(), 4);
    assert_eq!(&third.exemplars.last().unwrap().shadow.body[..], b"v3");

    // All three, oldest first, each with its own counts.
    let all = handle.shadow_reports();
    let named: Vec<_> = all.iter().map(|r| (sides(r), r.total())).collect();
    assert_eq!(
        named,
        vec![(sides(&first), 7), (sides(&second), 3), (sides(&third), 4),]
    );
}

#[tokio::test]
async fn only_the_last_eight_pairs_are_kept() {
    let (router, handle) = BlueGreenRouter::builder()
        .versions("v0", "v1")
        .compare(CompareSettings::new(Comparator::bytes()))
        .build(version("v0"), version("v1"))
        .unwrap();
    let deployer = router.deployer::<Full<Bytes>>();
    const NAMES: [&str; 12] = [
        "v2", "v3", "v4", "v5", "v6", "v7", "v8", "v9", "v10", "v11", "v12", "v13",
    ];
    for (i, name) in NAMES.iter().enumerate() {
        handle.mirror_standby(1.0).unwrap();
        send(&router, 1).await;
        compared(&handle, 1).await;
        handle.mirror_standby(0.0).unwrap();
        deployer.deploy(*name, version(name)).await.unwrap();
        handle.promote_to_version(name).unwrap();
        assert!(handle.shadow_reports().len() <= 8, "after deploy {i}");
    }
    let all = handle.shadow_reports();
    assert_eq!(all.len(), 8);
    // The newest pair compared v12 (live) against v11, just before v13.
    let last = all.last().unwrap();
    assert_eq!(sides(last).1, "v12");
    assert_eq!(sides(last).3, "v11");
    assert!(all.iter().all(|r| r.total() == 1));
}
