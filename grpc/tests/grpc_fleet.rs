//! The gRPC fleet story end to end (`fleet_demo`, what
//! `cargo run -p tower-rollout-grpc --example grpc_fleet` prints), checked
//! against the models themselves.

use tower_rollout::shadow::ShadowReport;
use tower_rollout::Color;
use tower_rollout_grpc::fleet::{fleet_demo, FleetOptions};
use tower_rollout_models::{samples, Model};

/// How many of `flowers` the two models label differently.
fn disagreements<'a>(v1: &Model, v2: &Model, flowers: impl Iterator<Item = &'a [f32; 4]>) -> u64 {
    flowers
        .filter(|x| v1.predict(**x).label != v2.predict(**x).label)
        .count() as u64
}

/// The report's mismatches on a `label` field, over every message.
fn label_mismatches(r: &ShadowReport) -> u64 {
    r.field_mismatches
        .iter()
        .filter(|(f, _)| f.ends_with("/label"))
        .map(|(_, n)| n)
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_fleet_rolls_out_and_back() {
    let opts = FleetOptions::default();
    let mut out = Vec::new();
    let s = fleet_demo(&opts, &mut out).await.unwrap();
    let printed = String::from_utf8(out).unwrap();

    assert_eq!(s.failed, 0, "{:?}", s.errors);
    assert_eq!(s.wrong_answers, 0);

    // Unary and server-streaming calls both went through the layer: blue
    // answered both kinds, every streamed flower got its message.
    let unary = opts.unary as u64;
    assert_eq!((s.live.unary_blue, s.live.streams_blue), (unary, 1));
    assert_eq!(s.live.messages, opts.batch as u64);
    assert_eq!(s.live.green(), 0);

    // Mirrored and compared: clients got blue only; every call (unary and
    // stream) was compared, and the label mismatches are exactly the flowers
    // on which the two models, run here, disagree.
    let m = &s.mirrored;
    assert_eq!(
        (m.unary_blue, m.streams_blue, m.green()),
        (opts.mirrored_unary as u64, opts.mirrored_streams as u64, 0)
    );
    let r = &s.report;
    assert_eq!(
        r.matched + r.mismatched,
        (opts.mirrored_unary + opts.mirrored_streams) as u64,
        "{r:?}"
    );
    let (v1, v2) = Model::train_both().unwrap();
    let flowers: Vec<[f32; 4]> = samples(opts.mirrored_unary)
        .into_iter()
        .chain(samples(opts.mirrored_streams * opts.batch))
        .collect();
    let disagree = disagreements(&v1, &v2, flowers.iter());
    assert!(disagree > 0);
    assert_eq!(label_mismatches(r), disagree, "{:?}", r.field_mismatches);
    // Stream answers are compared message by message.
    assert!(r
        .field_mismatches
        .iter()
        .any(|(f, _)| f.starts_with("/predictions/") && !f.starts_with("/predictions/0/")));
    assert!(r.field_mismatches.iter().all(|(f, _)| f != "/grpc-status"));

    // The canary is sticky by metadata and near its split.
    assert_eq!(s.canary_users_on_both, 0);
    let n = s.canary_users as f64;
    let share = s.canary_green_users as f64 / n;
    assert!(
        (share - opts.canary).abs() <= 5.0 * (opts.canary * (1.0 - opts.canary) / n).sqrt(),
        "{share}"
    );

    // Promote moves both kinds of call to green (v2); rollback back to blue.
    assert!(s.blue_drained);
    assert_eq!(
        (
            s.after_promote.unary_green,
            s.after_promote.streams_green,
            s.after_promote.blue()
        ),
        (unary, 1, 0)
    );
    assert_eq!(
        (
            s.after_rollback.unary_blue,
            s.after_rollback.streams_blue,
            s.after_rollback.green()
        ),
        (unary, 1, 0)
    );
    assert_eq!(s.active_at_end, Some(Color::Blue));

    assert_eq!(s.problems(), Vec::<String>::new());
    assert!(printed.contains("5. rollback"), "{printed}");
}

/// The standalone `ShadowComparator` layer (not the router's `compare`)
/// applied with tonic's `Server::builder().layer(..)`: v1 answers, v2 is the
/// shadow, unary and server-streaming calls are both compared.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shadow_comparator_layer_on_a_tonic_server() {
    use std::time::Duration;
    use tokio_stream::StreamExt;
    use tonic::transport::Server;
    use tower_rollout::shadow::ShadowComparator;
    use tower_rollout_grpc::fleet::{comparator, pb, to_pb, IrisServer};
    use tower_rollout_grpc::serve;

    let (v1, v2) = Model::train_both().unwrap();
    let (layer, shadow) = ShadowComparator::new(
        IrisServer::new(v2.clone()).into_service(),
        comparator().unwrap(),
    );
    let server = serve(
        Server::builder()
            .layer(layer)
            .add_service(IrisServer::new(v1.clone()).into_service()),
    )
    .await
    .unwrap();
    let mut client = pb::iris_client::IrisClient::connect(format!("http://{}", server.addr))
        .await
        .unwrap();

    let unary = samples(60);
    for x in &unary {
        let got = client
            .predict(pb::Flower {
                features: x.to_vec(),
            })
            .await
            .unwrap()
            .into_inner();
        // The client always gets the primary's (v1's) answer.
        assert_eq!(got, to_pb(&v1.predict(*x)));
    }
    let batches: Vec<Vec<[f32; 4]>> = samples(40).chunks(4).map(|c| c.to_vec()).collect();
    for batch in &batches {
        let msg = pb::Batch {
            flowers: batch
                .iter()
                .map(|x| pb::Flower {
                    features: x.to_vec(),
                })
                .collect(),
        };
        let mut stream = client.predict_stream(msg).await.unwrap().into_inner();
        let mut got = Vec::new();
        while let Some(p) = stream.next().await {
            got.push(p.unwrap());
        }
        let want: Vec<_> = batch.iter().map(|x| to_pb(&v1.predict(*x))).collect();
        assert_eq!(got, want);
    }

    // Every call compared, once.
    let calls = (unary.len() + batches.len()) as u64;
    let wait = async {
        while shadow.report().total() < calls {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(30), wait)
        .await
        .expect("every call compared within 30 s");
    let r = shadow.report();
    assert_eq!(
        (r.matched + r.mismatched, r.total()),
        (calls, calls),
        "{r:?}"
    );
    // The label mismatches are exactly the flowers on which v1 and v2 differ.
    let disagree = disagreements(&v1, &v2, unary.iter().chain(batches.iter().flatten()));
    assert!(disagree > 0);
    assert_eq!(label_mismatches(&r), disagree, "{:?}", r.field_mismatches);
}
