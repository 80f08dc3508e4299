//! etcd stopped, frozen, restarted, or never there: every call fails with
//! `Unavailable` within the request timeout, open watches end, and the same
//! store works again once etcd is back.

mod support;

use std::future::Future;
use std::net::{Ipv4Addr, TcpListener};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tower_rollout::store::StateStore;
use tower_rollout_etcd::{ConnectError, EtcdOptions, EtcdStore};

use support::{change, etcd, next, options, put, store, unavailable, TIMEOUT};

/// Slack over the request timeout for a call to come back.
const SLACK: Duration = Duration::from_millis(1500);

/// Runs `call`, checks it took at most the request timeout plus slack, and
/// returns what it returned and how long it took.
async fn timed<T>(call: impl Future<Output = T>) -> (T, Duration) {
    let start = Instant::now();
    let out = call.await;
    let took = start.elapsed();
    assert!(
        took <= TIMEOUT + SLACK,
        "a call took {took:?}, beyond the request timeout {TIMEOUT:?}"
    );
    (out, took)
}

#[tokio::test]
async fn a_stopped_etcd_fails_calls_and_ends_watches_and_a_restart_heals_the_same_store() {
    let mut etcd = etcd();
    let store = store(&etcd).await;
    let key = "models/iris/state";
    let r1 = store
        .compare_and_set(key, 0, Bytes::from("v1"))
        .await
        .unwrap();
    let mut open = store.watch(key, r1).await.unwrap();

    etcd.stop().unwrap();

    // The open watch reports the broken connection once, then ends.
    let reason = unavailable(next(&mut open).await.expect("an item"));
    assert!(reason.contains(&etcd.endpoint()), "{reason}");
    assert!(
        reason.contains("the watch of /tower-rollout/models/iris/state"),
        "{reason}"
    );
    assert!(next(&mut open).await.is_none(), "the stream ends");

    // Calls fail, bounded, and say where and what.
    let (got, _) = timed(store.get(key)).await;
    let reason = unavailable(got);
    assert!(
        reason.contains(&etcd.endpoint()) && reason.contains("get "),
        "{reason}"
    );
    let (cas, _) = timed(store.compare_and_set(key, r1, Bytes::from("v2"))).await;
    assert!(unavailable(cas).contains("compare-and-set "));
    let (watch, _) = timed(store.watch(key, r1)).await;
    assert!(unavailable(watch.map(|_| ())).contains("open a watch of "));

    etcd.restart().unwrap();

    // The same store works again, and nothing was written while down.
    assert_eq!(store.get(key).await, Ok(Some(put("v1", r1))));
    // Another replica writes after the restart; a watch resumed from the
    // last revision seen gets it.
    let other = support::store(&etcd).await;
    let r2 = other
        .compare_and_set(key, r1, Bytes::from("v2"))
        .await
        .unwrap();
    let mut resumed = store.watch(key, r1).await.unwrap();
    assert_eq!(change(&mut resumed).await, put("v2", r2));
    let r3 = store
        .compare_and_set(key, r2, Bytes::from("v3"))
        .await
        .unwrap();
    assert_eq!(change(&mut resumed).await, put("v3", r3));
}

#[tokio::test]
async fn a_frozen_etcd_bounds_every_call_by_the_request_timeout() {
    let etcd = etcd();
    let store = store(&etcd).await;
    let key = "models/iris/state";
    let r1 = store
        .compare_and_set(key, 0, Bytes::from("v1"))
        .await
        .unwrap();

    // Sockets open, nothing answers: only the timeout ends a call.
    etcd.pause().unwrap();
    let (got, took) = timed(store.get(key)).await;
    assert!(took >= TIMEOUT.mul_f32(0.9), "took {took:?}");
    assert!(unavailable(got).contains("get /tower-rollout/models/iris/state"));
    let (cas, took) = timed(store.compare_and_set(key, r1, Bytes::from("v2"))).await;
    assert!(took >= TIMEOUT.mul_f32(0.9), "took {took:?}");
    unavailable(cas);
    let (watch, took) = timed(store.watch(key, r1)).await;
    assert!(took >= TIMEOUT.mul_f32(0.9), "took {took:?}");
    unavailable(watch.map(|_| ()));

    etcd.resume().unwrap();
    // The timed-out compare-and-set may or may not have reached etcd before
    // the freeze; whichever, the store agrees with etcd afterwards.
    let now = store.get(key).await.unwrap().unwrap();
    assert!(
        now == put("v1", r1) || now.value.as_deref() == Some(&b"v2"[..]),
        "{now:?}"
    );
    let next = store
        .compare_and_set(key, now.revision, Bytes::from("v3"))
        .await
        .unwrap();
    assert_eq!(store.get(key).await, Ok(Some(put("v3", next))));
}

#[tokio::test]
async fn keep_alive_pings_end_a_watch_whose_connection_went_silent() {
    let etcd = etcd();
    // etcd refuses pings more often than every 5 s (its default
    // --grpc-keepalive-min-time).
    let interval = Duration::from_secs(5);
    let ping_timeout = Duration::from_secs(1);
    let options = options().keep_alive(interval, ping_timeout);
    let store = EtcdStore::connect([etcd.endpoint()], options)
        .await
        .unwrap();
    let key = "models/iris/state";
    let r1 = store
        .compare_and_set(key, 0, Bytes::from("v1"))
        .await
        .unwrap();
    let mut open = store.watch(key, r1).await.unwrap();

    etcd.pause().unwrap();
    let start = Instant::now();
    let bound = interval + ping_timeout + Duration::from_secs(5);
    let item = tokio::time::timeout(bound, next(&mut open))
        .await
        .unwrap_or_else(|_| panic!("the silent watch did not end within {bound:?}"));
    let reason = unavailable(item.expect("an item"));
    assert!(reason.contains("the watch of "), "{reason}");
    assert!(
        start.elapsed() >= ping_timeout,
        "it ended for another reason"
    );
    etcd.resume().unwrap();
    assert!(next(&mut open).await.is_none(), "the stream ends");
}

/// A loopback port nothing listens on.
fn closed_port() -> u16 {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    listener.local_addr().unwrap().port()
}

#[tokio::test]
async fn nothing_listening_is_unavailable_in_bounded_time_not_a_panic() {
    // A closed loopback port (refused at once) and an address that does not
    // answer at all (10.255.255.1: dropped, or unreachable on a machine
    // without network).
    for endpoint in [
        format!("http://127.0.0.1:{}", closed_port()),
        "http://10.255.255.1:2379".to_owned(),
    ] {
        let store = EtcdStore::connect([endpoint.as_str()], options())
            .await
            .expect("connect does not reach etcd");
        let (got, _) = timed(store.get("k")).await;
        let reason = unavailable(got);
        assert!(reason.contains(&endpoint), "{reason}");
        let (cas, _) = timed(store.compare_and_set("k", 0, Bytes::from("v"))).await;
        unavailable(cas);
        let (watch, _) = timed(store.watch("k", 0)).await;
        unavailable(watch.map(|_| ()));
    }
}

#[tokio::test]
async fn a_store_made_while_etcd_is_down_works_once_it_is_up() {
    let mut etcd = etcd();
    let endpoint = etcd.endpoint();
    etcd.stop().unwrap();
    let store = EtcdStore::connect([endpoint], options()).await.unwrap();
    unavailable(store.get("k").await);
    etcd.restart().unwrap();
    let rev = store
        .compare_and_set("k", 0, Bytes::from("v"))
        .await
        .unwrap();
    assert_eq!(store.get("k").await, Ok(Some(put("v", rev))));
}

#[tokio::test]
async fn unusable_endpoints_and_options_are_typed_errors_at_connect() {
    let bad = [
        (vec!["not a url at all"], "a non-URL"),
        (vec![], "no endpoint"),
    ];
    for (endpoints, what) in bad {
        let err = EtcdStore::connect(endpoints, EtcdOptions::new())
            .await
            .unwrap_err();
        assert!(
            matches!(err, ConnectError::InvalidEndpoint { .. }),
            "{what}: {err:?}"
        );
    }
    let err = EtcdStore::connect(
        ["http://127.0.0.1:2379"],
        EtcdOptions::new().connect_timeout(Duration::ZERO),
    )
    .await
    .unwrap_err();
    assert_eq!(
        err,
        ConnectError::InvalidOption {
            option: "connect_timeout",
            reason: "must be longer than zero".into()
        }
    );
}

#[tokio::test]
async fn tls_options_with_an_http_endpoint_are_refused_at_connect() {
    let options = EtcdOptions::new().tls(tower_rollout_etcd::TlsOptions::new());
    let err = EtcdStore::connect(["http://127.0.0.1:2379"], options)
        .await
        .unwrap_err();
    assert!(
        matches!(err, ConnectError::InvalidEndpoint { .. }),
        "{err:?}"
    );
}

#[tokio::test]
async fn the_first_call_after_a_restart_on_an_idle_connection_succeeds() {
    // No call while etcd is down: the store learns that its connection
    // broke only when it uses it, and then tries once more on a new one.
    let mut etcd = etcd();
    let store = store(&etcd).await;
    let key = "models/iris/state";
    let r1 = store
        .compare_and_set(key, 0, Bytes::from("v1"))
        .await
        .unwrap();

    etcd.restart().unwrap();
    let r2 = store
        .compare_and_set(key, r1, Bytes::from("v2"))
        .await
        .unwrap();
    assert!(r2 > r1);

    etcd.restart().unwrap();
    assert_eq!(store.get(key).await, Ok(Some(put("v2", r2))));

    etcd.restart().unwrap();
    let mut changes = store.watch(key, r1).await.unwrap();
    assert_eq!(change(&mut changes).await, put("v2", r2));
}
