//! MirrorLayer as a tonic server layer, over real gRPC connections.

mod common;

use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Server;
use tower_rollout::MirrorLayer;
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

/// A PredictBatch whose messages are sent one at a time while the call is
/// open, so they reach the server as separate body frames.
async fn predict_batch(client: &Client, batch: &[Vec<f32>]) -> PredictReply {
    let (tx, rx) = mpsc::channel(1);
    let mut client = client.clone();
    let call = tokio::spawn(async move { client.predict_batch(ReceiverStream::new(rx)).await });
    for features in batch {
        tx.send(request(features)).await.unwrap();
    }
    drop(tx);
    within("the batch reply", call)
        .await
        .unwrap()
        .unwrap()
        .into_inner()
}

#[tokio::test]
async fn mirror_client_streaming() {
    let batch = vec![
        vec![0.0, 1.0, 5.0, 2.0],
        vec![3.0, 0.0, -1.0, 2.0],
        vec![1.5, 0.5, 0.5, 2.5],
        vec![0.0, 0.0, 0.0, -4.0],
    ];
    let features = [0.1, 0.7, 0.2, 0.0];

    // The answers of v1 alone, without the mirror.
    let plain = serve(Server::builder().add_service(ModelServer::v1().into_service()))
        .await
        .unwrap();
    let plain_client = plain.client().await.unwrap();
    let want_batch = predict_batch(&plain_client, &batch).await;
    let want_unary = plain_client
        .clone()
        .predict(request(&features))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(want_batch.version, "v1");

    // v1 behind a mirror to v2.
    let primary = ModelServer::v1();
    let shadow = ModelServer::v2();
    let (layer, mirror) = MirrorLayer::builder(shadow.clone().into_service())
        .sample(1.0)
        .build()
        .unwrap();
    let server = serve(
        Server::builder()
            .layer(layer)
            .add_service(primary.clone().into_service()),
    )
    .await
    .unwrap();
    let client = server.client().await.unwrap();

    // Client streaming: v1's answer, exactly.
    let got = predict_batch(&client, &batch).await;
    assert_eq!(got, want_batch);
    until("the batch copy to settle", || {
        let s = mirror.stats();
        s.sampled == 1 && s.in_flight == 0
    })
    .await;
    let stats = mirror.stats();
    assert_eq!((stats.sampled, stats.completed), (1, 1), "{stats:?}");
    assert_eq!(stats.settled(), 1, "{stats:?}");
    // The shadow received every message, in order, marked as a copy.
    let batch_call = |mirrored| Received {
        rpc: Rpc::PredictBatch,
        messages: batch.clone(),
        complete: true,
        mirrored,
    };
    assert_eq!(shadow.received(), vec![batch_call(true)]);
    assert_eq!(primary.received(), vec![batch_call(false)]);

    // Unary: v1's answer, and one more completed copy.
    let got = client
        .clone()
        .predict(request(&features))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(got, want_unary);
    until("the unary copy to settle", || {
        let s = mirror.stats();
        s.sampled == 2 && s.in_flight == 0
    })
    .await;
    let stats = mirror.stats();
    assert_eq!((stats.sampled, stats.completed), (2, 2), "{stats:?}");
    let unary_call = Received {
        rpc: Rpc::Predict,
        messages: vec![features.to_vec()],
        complete: true,
        mirrored: true,
    };
    assert_eq!(shadow.received(), vec![batch_call(true), unary_call]);
    assert_eq!(primary.received().len(), 2);
}
