//! `grpc_fleet --serve` (`fleet_server::FleetServer`) on 127.0.0.1:0: a tonic
//! reflection client lists and describes the services, as grpcurl does, and
//! the generated iris client calls the service it found, before and after a
//! promote.

mod common;

use prost::Message;
use prost_types::FileDescriptorProto;
use tokio_stream::StreamExt;
use tonic::transport::Channel;
use tower_rollout::control::ColorVersion;
use tower_rollout::Color;
use tower_rollout_grpc::fleet::pb::{iris_client::IrisClient, Flower};
use tower_rollout_grpc::fleet_server::FleetServer;
use tower_rollout_models::samples;

use common::within;

mod v1 {
    pub use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    pub use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    pub use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
    pub use tonic_reflection::pb::v1::ServerReflectionRequest;
}

mod v1alpha {
    pub use tonic_reflection::pb::v1alpha::server_reflection_client::ServerReflectionClient;
    pub use tonic_reflection::pb::v1alpha::server_reflection_request::MessageRequest;
    pub use tonic_reflection::pb::v1alpha::server_reflection_response::MessageResponse;
    pub use tonic_reflection::pb::v1alpha::ServerReflectionRequest;
}

/// One request on the v1 reflection stream, its one answer (or the error
/// status the stream ends with).
async fn ask_v1(
    channel: &Channel,
    request: v1::MessageRequest,
) -> Result<v1::MessageResponse, tonic::Status> {
    let mut client = v1::ServerReflectionClient::new(channel.clone());
    let req = v1::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(request),
    };
    let mut answers = client
        .server_reflection_info(tokio_stream::iter([req]))
        .await
        .expect("the reflection stream opens")
        .into_inner();
    let answer = answers.next().await.expect("one answer")?;
    Ok(answer.message_response.expect("a message response"))
}

async fn services_v1(channel: &Channel) -> Vec<String> {
    match ask_v1(channel, v1::MessageRequest::ListServices(String::new())).await {
        Ok(v1::MessageResponse::ListServicesResponse(list)) => {
            let mut names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
            names.sort();
            names
        }
        other => panic!("not a service list: {other:?}"),
    }
}

async fn services_v1alpha(channel: &Channel) -> Vec<String> {
    let mut client = v1alpha::ServerReflectionClient::new(channel.clone());
    let req = v1alpha::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(v1alpha::MessageRequest::ListServices(String::new())),
    };
    let mut answers = client
        .server_reflection_info(tokio_stream::iter([req]))
        .await
        .unwrap()
        .into_inner();
    match answers.next().await.unwrap().unwrap().message_response {
        Some(v1alpha::MessageResponse::ListServicesResponse(list)) => {
            let mut names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
            names.sort();
            names
        }
        other => panic!("not a service list: {other:?}"),
    }
}

/// Predicts one flower through the generated client: the label and who
/// answered.
async fn predict(channel: &Channel, user: &str, x: [f32; 4]) -> (String, ColorVersion) {
    let mut client = IrisClient::new(channel.clone());
    let mut req = tonic::Request::new(Flower {
        features: x.to_vec(),
    });
    req.metadata_mut()
        .insert("x-user-id", user.parse().unwrap());
    let res = client.predict(req).await.expect("Predict answers");
    let served = res
        .metadata()
        .get("x-served-by")
        .expect("x-served-by metadata")
        .to_str()
        .unwrap();
    let served = ColorVersion::from_served_by(served).unwrap();
    (res.into_inner().label, served)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reflection_finds_the_service_and_the_client_calls_it() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let server = within(
        "the fleet to start",
        FleetServer::start(listener, std::future::pending()),
    )
    .await
    .unwrap();
    let channel = within(
        "a connection",
        Channel::from_shared(format!("http://{}", server.addr))
            .unwrap()
            .connect(),
    )
    .await
    .unwrap();

    // What `grpcurl -plaintext ADDR list` asks (v1, and v1alpha for older
    // clients such as grpcio's reflection package).
    assert_eq!(
        within("list (v1)", services_v1(&channel)).await,
        ["grpc.reflection.v1.ServerReflection", "iris.v1.Iris"]
    );
    assert_eq!(
        within("list (v1alpha)", services_v1alpha(&channel)).await,
        ["grpc.reflection.v1alpha.ServerReflection", "iris.v1.Iris"]
    );

    // What `grpcurl describe iris.v1.Iris` asks: the file that defines it.
    let file = match within(
        "the file of iris.v1.Iris",
        ask_v1(
            &channel,
            v1::MessageRequest::FileContainingSymbol("iris.v1.Iris".into()),
        ),
    )
    .await
    {
        Ok(v1::MessageResponse::FileDescriptorResponse(files)) => {
            assert_eq!(files.file_descriptor_proto.len(), 1);
            FileDescriptorProto::decode(&files.file_descriptor_proto[0][..]).unwrap()
        }
        other => panic!("not a file descriptor: {other:?}"),
    };
    assert_eq!((file.name(), file.package()), ("iris.proto", "iris.v1"));
    let service = &file.service[0];
    assert_eq!(service.name(), "Iris");
    let methods: Vec<(&str, &str, &str, bool)> = service
        .method
        .iter()
        .map(|m| {
            (
                m.name(),
                m.input_type(),
                m.output_type(),
                m.server_streaming(),
            )
        })
        .collect();
    assert_eq!(
        methods,
        [
            ("Predict", ".iris.v1.Flower", ".iris.v1.Prediction", false),
            (
                "PredictStream",
                ".iris.v1.Batch",
                ".iris.v1.Prediction",
                true
            ),
        ]
    );
    let unknown = ask_v1(
        &channel,
        v1::MessageRequest::FileContainingSymbol("iris.v1.Nope".into()),
    );
    let refused = within("an unknown symbol", unknown).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::NotFound, "{refused:?}");

    // The service reflection found answers with the live model, and after
    // a promote with the other. Reflection is not behind the router: the
    // router counts only the Predict calls, and a promote does not touch it.
    let x = samples(1)[0];
    let (label, served) = within("Predict on blue", predict(&channel, "alice", x)).await;
    assert_eq!((served.color, served.version.as_str()), (Color::Blue, "v1"));
    assert_eq!(label, server.v1.predict(x).label);
    let status = server.handle.status();
    assert_eq!((status.blue.served, status.green.served), (1, 0));

    server.handle.promote().unwrap();
    let (label, served) = within("Predict on green", predict(&channel, "alice", x)).await;
    assert_eq!(
        (served.color, served.version.as_str()),
        (Color::Green, "v2")
    );
    assert_eq!(label, server.v2.predict(x).label);
    assert_eq!(
        within("list after the promote", services_v1(&channel)).await,
        ["grpc.reflection.v1.ServerReflection", "iris.v1.Iris"]
    );
    let status = server.handle.status();
    assert_eq!((status.blue.served, status.green.served), (1, 1));
}
