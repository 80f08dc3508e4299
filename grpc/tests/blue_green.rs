//! BlueGreenRouter as a tonic server layer, over real gRPC connections.

mod common;

use std::sync::Arc;

use tokio::sync::Semaphore;
use tonic::service::Routes;
use tonic::transport::Server;
use tower_rollout::{BlueGreenRouter, Color};
use tower_rollout_grpc::pb::model_client::ModelClient;
use tower_rollout_grpc::pb::{PredictReply, PredictRequest};
use tower_rollout_grpc::{serve, ModelServer, Received, Rpc};

use common::{until, within};

type Client = ModelClient<tonic::transport::Channel>;

fn request(features: &[f32]) -> PredictRequest {
    PredictRequest {
        features: features.to_vec(),
    }
}

fn served_by<T>(res: &tonic::Response<T>) -> String {
    let value = res
        .metadata()
        .get("x-served-by")
        .expect("the router sets x-served-by")
        .to_str()
        .unwrap();
    tower_rollout::control::ColorVersion::from_served_by(value)
        .unwrap()
        .color
        .to_string()
}

/// A unary Predict: the reply and the color the router says served it.
async fn predict(client: &mut Client, features: &[f32]) -> (PredictReply, String) {
    let res = client.predict(request(features)).await.unwrap();
    let color = served_by(&res);
    (res.into_inner(), color)
}

/// A whole PredictStream: every reply and the serving color.
async fn predict_stream(client: &mut Client, features: &[f32]) -> (Vec<PredictReply>, String) {
    let res = client.predict_stream(request(features)).await.unwrap();
    let color = served_by(&res);
    let mut stream = res.into_inner();
    let mut replies = Vec::new();
    while let Some(reply) = stream.message().await.unwrap() {
        replies.push(reply);
    }
    (replies, color)
}

#[tokio::test]
async fn blue_green_unary_and_streaming() {
    let features = [0.5, 2.0, -1.0, 0.25];
    let v1 = ModelServer::v1();
    // Green's streamed replies each wait for a permit of `gate`, so the test
    // can hold a stream half-way.
    let gate = Arc::new(Semaphore::new(0));
    let v2 = ModelServer::v2().paced(gate.clone());
    let (v1_reply, v2_reply) = (
        v1.classify(&features).unwrap(),
        v2.classify(&features).unwrap(),
    );
    assert_ne!(
        v1_reply.label, v2_reply.label,
        "the versions must be told apart"
    );

    // Green is a tonic `Routes` holding the v2 service; blue is the server's
    // own routes (v1), which the layer wraps.
    let green = Routes::new(v2.clone().into_service());
    let (layer, handle) = BlueGreenRouter::builder()
        .served_by_header("x-served-by")
        .layer(green)
        .unwrap();
    let server = serve(
        Server::builder()
            .layer(layer)
            .add_service(v1.clone().into_service()),
    )
    .await
    .unwrap();
    let mut client = server.client().await.unwrap();
    // What the client saw, per version: (v1, v2).
    let mut seen = (0u64, 0u64);

    // Blue is active.
    let (reply, color) = predict(&mut client, &features).await;
    assert_eq!((reply, color.as_str()), (v1_reply.clone(), "blue"));
    seen.0 += 1;

    // Promote: green answers.
    handle.promote().unwrap();
    let (reply, color) = predict(&mut client, &features).await;
    assert_eq!((reply, color.as_str()), (v2_reply.clone(), "green"));
    seen.1 += 1;

    // Nothing may be left in flight before the stream starts, so the counts
    // below are the stream's alone.
    within("blue to drain", handle.drained(Color::Blue)).await;
    within("green to drain", handle.drained(Color::Green)).await;

    // A server stream on green, read half-way.
    let expected = v2.stream_replies(&features).unwrap();
    assert!(expected.len() >= 3);
    let res = client.predict_stream(request(&features)).await.unwrap();
    assert_eq!(served_by(&res), "green");
    seen.1 += 1;
    let mut stream = res.into_inner();
    gate.add_permits(1);
    let first = within("the first streamed reply", stream.message())
        .await
        .unwrap()
        .expect("a first reply");
    assert_eq!(first, expected[0]);
    // Green's handler now waits for the next permit: the stream is open.
    let status = handle.status();
    assert_eq!(
        (status.green.in_flight, status.blue.in_flight),
        (1, 0),
        "{status:?}"
    );

    // A rollback while the stream is open: new requests go to blue, the open
    // stream stays on green to its end.
    handle.rollback().unwrap();
    assert_eq!(handle.active(), Color::Blue);
    assert_eq!(handle.in_flight(Color::Green), 1);
    gate.add_permits(expected.len() - 1);
    let mut rest = Vec::new();
    while let Some(reply) = within("a streamed reply", stream.message()).await.unwrap() {
        rest.push(reply);
    }
    assert_eq!(rest, expected[1..], "all chunks come from v2");
    // The stream has ended for the client; the router's guard ends with the
    // server's response body.
    within(
        "green to drain after the stream",
        handle.drained(Color::Green),
    )
    .await;
    let status = handle.status();
    assert_eq!(
        (status.green.in_flight, status.blue.in_flight),
        (0, 0),
        "{status:?}"
    );

    // Rolled back: blue answers, unary and streaming.
    let (reply, color) = predict(&mut client, &features).await;
    assert_eq!((reply, color.as_str()), (v1_reply, "blue"));
    seen.0 += 1;
    let (replies, color) = predict_stream(&mut client, &features).await;
    assert_eq!(color, "blue");
    assert_eq!(replies, v1.stream_replies(&features).unwrap());
    assert!(replies.iter().all(|r| r.version == "v1"));
    seen.0 += 1;

    // The router's counts match what the client saw, and what each version
    // received.
    let status = handle.status();
    assert_eq!(
        (status.blue.served, status.green.served),
        seen,
        "{status:?}"
    );
    assert_eq!(v1.received().len() as u64, seen.0);
    assert_eq!(v2.received().len() as u64, seen.1);
    assert!(v1
        .received()
        .iter()
        .chain(&v2.received())
        .all(|r| !r.mirrored));
}

#[tokio::test]
async fn mirror_standby_copies_grpc_calls_to_the_standby() {
    let features = [3.0, 1.0, 2.0];
    let batch = vec![
        vec![1.0, 0.0, 4.0],
        vec![0.5, 2.0, 0.0],
        vec![0.0, 1.0, 1.0],
    ];
    let v1 = ModelServer::v1();
    let v2 = ModelServer::v2();

    // Green is the generated tonic service itself (it is `Clone`).
    let (layer, handle) = BlueGreenRouter::builder()
        .served_by_header("x-served-by")
        .mirror(tower_rollout::MirrorLayer::settings())
        .layer(v2.clone().into_service())
        .unwrap();
    handle.mirror_standby(1.0).unwrap();
    let server = serve(
        Server::builder()
            .layer(layer)
            .add_service(v1.clone().into_service()),
    )
    .await
    .unwrap();
    let mut client = server.client().await.unwrap();

    // Unary, server streaming and client streaming: the client sees v1 only.
    let (reply, color) = predict(&mut client, &features).await;
    assert_eq!(
        (reply, color.as_str()),
        (v1.classify(&features).unwrap(), "blue")
    );
    let (replies, color) = predict_stream(&mut client, &features).await;
    assert_eq!(color, "blue");
    assert_eq!(replies, v1.stream_replies(&features).unwrap());
    let res = client
        .predict_batch(tokio_stream::iter(
            batch.iter().map(|f| request(f)).collect::<Vec<_>>(),
        ))
        .await
        .unwrap();
    assert_eq!(served_by(&res), "blue");
    assert_eq!(res.into_inner().version, "v1");

    // Each call was copied to green, whole.
    until("three copies to settle", || {
        let s = handle.mirror_stats();
        s.sampled == 3 && s.in_flight == 0
    })
    .await;
    let stats = handle.mirror_stats();
    assert_eq!((stats.sampled, stats.completed), (3, 3), "{stats:?}");
    let copy = |rpc, messages: Vec<Vec<f32>>, mirrored| Received {
        rpc,
        messages,
        complete: true,
        mirrored,
    };
    let calls = |mirrored| {
        vec![
            copy(Rpc::Predict, vec![features.to_vec()], mirrored),
            copy(Rpc::PredictStream, vec![features.to_vec()], mirrored),
            copy(Rpc::PredictBatch, batch.clone(), mirrored),
        ]
    };
    assert_eq!(v1.received(), calls(false));
    assert_eq!(v2.received(), calls(true));
    let status = handle.status();
    assert_eq!((status.blue.served, status.green.served), (3, 0));
    assert_eq!(status.green.mirrored_in_flight, 0);

    // After a promote the copies go to the old color, blue.
    handle.promote().unwrap();
    let (reply, color) = predict(&mut client, &features).await;
    assert_eq!(
        (reply, color.as_str()),
        (v2.classify(&features).unwrap(), "green")
    );
    until("the fourth copy to settle", || {
        let s = handle.mirror_stats();
        s.sampled == 4 && s.in_flight == 0
    })
    .await;
    assert_eq!(handle.mirror_stats().completed, 4);
    assert_eq!(
        v1.received().last(),
        Some(&copy(Rpc::Predict, vec![features.to_vec()], true))
    );
    assert_eq!(v2.received().len(), 4);
}
