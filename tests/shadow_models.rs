//! End to end: two small real models (v1 logistic regression, v2 decision
//! tree) served by axum on 127.0.0.1:0, v2 mirrored and compared on the
//! predicted label; the agreement rate equals what the test computes by
//! running both models itself.

mod support;

use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use support::model::{self, Features, Prediction};
use tower_rollout::shadow::{JsonCompare, ShadowComparator};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agreement_rate_matches_the_models() {
    let comparator = JsonCompare::new().only("/label").build().unwrap();
    let (layer, shadow) = ShadowComparator::builder(model::app(model::v2), comparator)
        .build()
        .unwrap();
    let app = model::app(model::v1).layer(layer);
    let (addr, server) = support::serve(app).await;
    let client = support::client();

    let inputs = model::samples(150);
    let mut expected_agree = 0;
    for x in &inputs {
        let body = serde_json::to_vec(&Features { features: *x }).unwrap();
        let req = http::Request::post(format!("http://{addr}/predict"))
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(body)))
            .unwrap();
        let answer = support::send(&client, req, "x-none").await.unwrap();
        let got: Prediction = serde_json::from_slice(&answer.body).unwrap();
        assert_eq!(got, model::v1(*x), "users get v1's answer, exactly");
        if model::v1(*x).label == model::v2(*x).label {
            expected_agree += 1;
        }
    }
    let report = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            let r = shadow.report();
            if r.total() == inputs.len() as u64 {
                return r;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("every request compared");

    let disagree = inputs.len() - expected_agree;
    assert!(
        disagree > 0 && expected_agree > 0,
        "a test that can tell: {expected_agree}"
    );
    assert_eq!(
        (report.matched, report.mismatched),
        (expected_agree as u64, disagree as u64)
    );
    assert_eq!(
        report.agreement_rate(),
        Some(expected_agree as f64 / inputs.len() as f64)
    );
    assert_eq!(
        report.field_mismatches,
        vec![("/label".to_string(), disagree as u64)]
    );
    // Exemplars show the request and both labels.
    let e = report.exemplars.last().unwrap();
    let x: Features = serde_json::from_slice(&e.request).unwrap();
    assert_eq!(
        e.diffs[0].primary,
        format!("\"{}\"", model::v1(x.features).label)
    );
    assert_eq!(
        e.diffs[0].shadow,
        format!("\"{}\"", model::v2(x.features).label)
    );
    assert!(report.primary_latency.p50.is_some() && report.shadow_latency.p50.is_some());
    server.abort();
}
