//! TLS and mutual TLS on the gRPC port, with certificates made for the test (rcgen): a client
//! that trusts the CA gets answers, a plaintext client does not, and with mutual TLS a client
//! without a certificate from the configured CA is refused while others keep being served.

mod common;

use std::time::Duration;

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificates_are_replaced_while_serving() {
    let fake = RunningFakeClerk::start(FakeClerkConfig::new(Population::new(30))).await;
    let dir = tempfile::tempdir().unwrap();
    let (old_ca, new_ca) = (Ca::new("old CA"), Ca::new("new CA"));
    // Kubernetes updates a mounted Secret by pointing a symlink at a new directory: every file
    // changes at once.
    let mounted = dir.path().join("tls");
    let publish = |version: &str, (cert, key): &(String, String)| {
        let target = dir.path().join(version);
        std::fs::create_dir(&target).unwrap();
        std::fs::write(target.join("tls.crt"), cert).unwrap();
        std::fs::write(target.join("tls.key"), key).unwrap();
        let link = dir.path().join("tls.next");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        std::fs::rename(&link, &mounted).unwrap();
    };
    let old = old_ca.sign(&["localhost", "127.0.0.1"]);
    publish("v1", &old);
    let mut options = TestOptions::new(&fake.url);
    options.tls = Some(TlsConfig {
        cert_pem: old.0.clone().into_bytes(),
        key_pem: old.1.clone().into_bytes(),
        client_ca_pem: None,
    });
    options.tls_files = Some(clerk_index::config::TlsFiles {
        cert: mounted.join("tls.crt"),
        key: mounted.join("tls.key"),
        client_ca: None,
    });
    let server = TestServer::start(&dir.path().join("data"), options).await;
    common::wait_ready(&server.http_url).await;
    let count = async |channel: Channel| count_with(&mut UserIndexClient::new(channel), None).await;
    // Clients that open a connection and never finish their handshake hold nobody else up.
    let port = server.grpc_url.rsplit(':').next().unwrap().to_string();
    let mut stalled = Vec::new();
    for _ in 0..20 {
        stalled.push(
            tokio::net::TcpStream::connect(format!("127.0.0.1:{port}"))
                .await
                .unwrap(),
        );
    }
    let before = connect(&server, &old_ca.pem, None).await.unwrap();
    assert_eq!(count(before.clone()).await.unwrap(), 30);

    publish("v2", &new_ca.sign(&["localhost", "127.0.0.1"]));
    let mut served = false;
    for _ in 0..100 {
        if let Ok(channel) = connect(&server, &new_ca.pem, None).await
            && count(channel).await.is_ok()
        {
            served = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(served, "new connections never got the new certificate");
    let stale = match connect(&server, &old_ca.pem, None).await {
        Err(_) => true,
        Ok(channel) => count(channel).await.is_err(),
    };
    assert!(stale, "a new connection still got the old certificate");
    // A connection made before keeps the certificate it was made with.
    assert_eq!(count(before).await.unwrap(), 30);
    drop(stalled);

    // A broken version is refused; the certificate in force stays.
    publish("v3", &("not a certificate".into(), "not a key".into()));
    let text = metrics_until(&server, "outcome=\"refused\"").await;
    assert!(text.contains("clerk_index_config_reloads_total{file=\"tls\",outcome=\"applied\"} 1"));
    let channel = connect(&server, &new_ca.pem, None).await.unwrap();
    assert_eq!(count(channel).await.unwrap(), 30);
    server.stop().await;
}

/// `/metrics` once it contains `needle` (up to 5 s).
async fn metrics_until(server: &TestServer, needle: &str) -> String {
    for _ in 0..100 {
        let text = server.metrics_text().await;
        if text.contains(needle) {
            return text;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("never in the metrics: {needle}");
}
