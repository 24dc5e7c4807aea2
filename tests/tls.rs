//! TLS and mutual TLS on the gRPC port, with certificates made for the test (rcgen): a client
//! that trusts the CA gets answers, a plaintext client does not, and with mutual TLS a client
//! without a certificate from the configured CA is refused while others keep being served.

mod common;

use common::count_with;

use clerk_index::api::proto::user_index_client::UserIndexClient;
use clerk_index::clerk::fake::{FakeClerkConfig, Population};
use clerk_index::config::TlsConfig;
use common::{RunningFakeClerk, TestOptions, TestServer};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

/// A CA, and PEM certificates and keys it signs.
struct Ca {
    issuer: Issuer<'static, KeyPair>,
    pem: String,
}

impl Ca {
    fn new(name: &str) -> Ca {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        let pem = params.self_signed(&key).unwrap().pem();
        Ca {
            issuer: Issuer::new(params, key),
            pem,
        }
    }

    /// `(certificate, key)` for `names`.
    fn sign(&self, names: &[&str]) -> (String, String) {
        let key = KeyPair::generate().unwrap();
        let params =
            CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        (cert.pem(), key.serialize_pem())
    }
}

/// A TLS client trusting `ca`, with `identity` when given, to the server's port.
async fn connect(
    server: &TestServer,
    ca: &str,
    identity: Option<&(String, String)>,
) -> Result<Channel, tonic::transport::Error> {
    let port = server.grpc_url.rsplit(':').next().unwrap();
    let mut tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(ca))
        .domain_name("localhost");
    if let Some((cert, key)) = identity {
        tls = tls.identity(Identity::from_pem(cert, key));
    }
    Endpoint::from_shared(format!("https://127.0.0.1:{port}"))
        .unwrap()
        .tls_config(tls)
        .unwrap()
        .connect()
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_is_served_over_tls_and_mutual_tls_refuses_clients_without_a_certificate() {
    let fake = RunningFakeClerk::start(FakeClerkConfig::new(Population::new(50))).await;
    let ca = Ca::new("clerk-index test CA");
    let (server_cert, server_key) = ca.sign(&["localhost", "127.0.0.1"]);
    let client = ca.sign(&["reporting-job"]);
    let rogue = Ca::new("someone else").sign(&["reporting-job"]);

    // TLS, no client certificates.
    let dir = tempfile::tempdir().unwrap();
    let mut options = TestOptions::new(&fake.url);
    options.tls = Some(TlsConfig {
        cert_pem: server_cert.clone().into_bytes(),
        key_pem: server_key.clone().into_bytes(),
        client_ca_pem: None,
    });
    let server = TestServer::start(dir.path(), options).await;
    common::wait_ready(&server.http_url).await;
    let channel = connect(&server, &ca.pem, None).await.unwrap();
    assert_eq!(
        count_with(&mut UserIndexClient::new(channel), None)
            .await
            .unwrap(),
        50
    );
    // A plaintext client gets nothing from a TLS port.
    let plaintext = Endpoint::from_shared(server.grpc_url.clone())
        .unwrap()
        .connect()
        .await;
    if let Ok(plaintext) = plaintext {
        assert!(
            count_with(&mut UserIndexClient::new(plaintext), None)
                .await
                .is_err()
        );
    }
    // A client that does not trust the server's CA refuses it.
    let untrusting = connect(&server, &Ca::new("other").pem, None).await;
    match untrusting {
        Err(_) => {}
        Ok(channel) => assert!(
            count_with(&mut UserIndexClient::new(channel), None)
                .await
                .is_err()
        ),
    }
    server.stop().await;

    // Mutual TLS: the same data dir, now requiring client certificates from `ca`.
    let mut options = TestOptions::new(&fake.url);
    options.tls = Some(TlsConfig {
        cert_pem: server_cert.into_bytes(),
        key_pem: server_key.into_bytes(),
        client_ca_pem: Some(ca.pem.clone().into_bytes()),
    });
    let server = TestServer::start(dir.path(), options).await;
    common::wait_ready(&server.http_url).await;
    for identity in [None, Some(&rogue)] {
        let refused = match connect(&server, &ca.pem, identity).await {
            Err(_) => true,
            Ok(channel) => count_with(&mut UserIndexClient::new(channel), None)
                .await
                .is_err(),
        };
        assert!(refused, "a client with {identity:?} was served");
    }
    let channel = connect(&server, &ca.pem, Some(&client)).await.unwrap();
    assert_eq!(
        count_with(&mut UserIndexClient::new(channel), None)
            .await
            .unwrap(),
        50
    );
    server.stop().await;
}
