//! TLS to a real etcd (feature `tls`): etcd's certificate checked against
//! a CA, a client certificate presented when etcd requires one.

mod support;

use std::path::Path;

use bytes::Bytes;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, ExtendedKeyUsagePurpose, IsCa, KeyPair,
};
use tempfile::TempDir;
use tower_rollout::store::StateStore;
use tower_rollout_etcd::testing::{EtcdServer, ServerTls};
use tower_rollout_etcd::{Certificate, EtcdStore, Identity, TlsOptions};

use support::{change, options, put, unavailable};

/// PEM files of a test CA, etcd's certificate for 127.0.0.1, and a
/// client's certificate, all signed by the CA.
struct Pki {
    dir: TempDir,
    ca: String,
    client_cert: String,
    client_key: String,
}

impl Pki {
    fn new() -> Pki {
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();

        let dir = tempfile::tempdir().unwrap();
        let issue = |names: Vec<String>, usage, name: &str| {
            let mut params = CertificateParams::new(names).unwrap();
            params.extended_key_usages = vec![usage];
            let key = KeyPair::generate().unwrap();
            let cert = params.signed_by(&key, &ca).unwrap();
            write(dir.path(), &format!("{name}.pem"), &cert.pem());
            write(dir.path(), &format!("{name}-key.pem"), &key.serialize_pem());
            (cert.pem(), key.serialize_pem())
        };
        let server_names = vec!["127.0.0.1".to_owned(), "localhost".to_owned()];
        issue(server_names, ExtendedKeyUsagePurpose::ServerAuth, "server");
        let (client_cert, client_key) = issue(
            vec!["rollout".to_owned()],
            ExtendedKeyUsagePurpose::ClientAuth,
            "client",
        );
        write(dir.path(), "ca.pem", &ca.pem());
        Pki {
            ca: ca.pem(),
            client_cert,
            client_key,
            dir,
        }
    }

    fn server(&self, require_client_cert: bool) -> ServerTls {
        let path = |name: &str| self.dir.path().join(name);
        ServerTls {
            cert: path("server.pem"),
            key: path("server-key.pem"),
            client_ca: require_client_cert.then(|| path("ca.pem")),
        }
    }

    fn trusting(&self) -> TlsOptions {
        TlsOptions::new().ca_certificate(Certificate::from_pem(&self.ca))
    }
}

fn write(dir: &Path, name: &str, pem: &str) {
    std::fs::write(dir.join(name), pem).unwrap();
}

fn start(tls: ServerTls) -> EtcdServer {
    EtcdServer::start_tls(tls).unwrap_or_else(|err| panic!("cannot start etcd: {err}"))
}

async fn connect(etcd: &EtcdServer, tls: TlsOptions) -> EtcdStore {
    EtcdStore::connect([etcd.endpoint()], options().tls(tls))
        .await
        .expect("connect")
}

#[tokio::test]
async fn a_store_over_tls_with_a_client_certificate_works() {
    let pki = Pki::new();
    let etcd = start(pki.server(true));
    assert!(etcd.endpoint().starts_with("https://"));
    let identity = Identity::from_pem(&pki.client_cert, &pki.client_key);
    let store = connect(&etcd, pki.trusting().identity(identity)).await;

    let key = "models/iris/state";
    let r1 = store
        .compare_and_set(key, 0, Bytes::from("v1"))
        .await
        .unwrap();
    let mut changes = store.watch(key, 0).await.unwrap();
    let r2 = store
        .compare_and_set(key, r1, Bytes::from("v2"))
        .await
        .unwrap();
    assert_eq!(change(&mut changes).await, put("v1", r1));
    assert_eq!(change(&mut changes).await, put("v2", r2));
    assert_eq!(store.get(key).await, Ok(Some(put("v2", r2))));
}

#[tokio::test]
async fn no_client_certificate_or_an_untrusted_server_is_unavailable() {
    let pki = Pki::new();
    let etcd = start(pki.server(true));

    // etcd requires a client certificate; none given.
    let anonymous = connect(&etcd, pki.trusting()).await;
    unavailable(anonymous.get("k").await);
    unavailable(anonymous.compare_and_set("k", 0, Bytes::from("x")).await);

    // etcd's certificate is not signed by a CA the client trusts.
    let other = Pki::new();
    let identity = Identity::from_pem(&pki.client_cert, &pki.client_key);
    let distrusting = connect(&etcd, other.trusting().identity(identity)).await;
    let reason = unavailable(distrusting.get("k").await);
    assert!(reason.contains(&etcd.endpoint()), "{reason}");
    unavailable(distrusting.watch("k", 0).await.map(|_| ()));

    // Nothing was written.
    let identity = Identity::from_pem(&pki.client_cert, &pki.client_key);
    let good = connect(&etcd, pki.trusting().identity(identity)).await;
    assert_eq!(good.get("k").await, Ok(None));
}

#[tokio::test]
async fn a_tls_server_without_client_certificates_takes_a_ca_alone() {
    let pki = Pki::new();
    let etcd = start(pki.server(false));
    let store = connect(&etcd, pki.trusting()).await;
    let rev = store
        .compare_and_set("k", 0, Bytes::from("v"))
        .await
        .unwrap();
    assert_eq!(store.get("k").await, Ok(Some(put("v", rev))));
}
