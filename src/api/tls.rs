//! TLS on the gRPC port, with our own acceptor in front of tonic so that certificates can be
//! replaced while serving: every handshake takes the configuration in force, a connection keeps
//! the one it was made with. Handshakes run on the accept loop's tasks with its timeout
//! (`accept.rs`), so a client that stalls mid-handshake holds nothing but its socket, and not
//! for long.

use std::sync::{Arc, RwLock};

use rustls::RootCertStore;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ServerConfig, WebPkiClientVerifier};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

use super::closable::Closable;
use crate::config::TlsConfig;

/// Why certificates cannot be served (never quoting a key).
#[derive(Debug, thiserror::Error)]
#[error("gRPC TLS: {0}")]
pub struct TlsError(String);

/// The gRPC port's TLS configuration, replaceable while serving.
pub struct ServerTls {
    config: RwLock<Arc<ServerConfig>>,
}

impl ServerTls {
    pub fn new(tls: &TlsConfig) -> Result<Arc<ServerTls>, TlsError> {
        Ok(Arc::new(ServerTls {
            config: RwLock::new(Arc::new(server_config(tls)?)),
        }))
    }

    /// Serves `tls` from the next handshake on; refused (what is in force stays) when it
    /// cannot be served.
    pub fn replace(&self, tls: &TlsConfig) -> Result<(), TlsError> {
        let config = server_config(tls)?;
        *self.config.write().expect("tls config lock") = Arc::new(config);
        Ok(())
    }

    fn acceptor(&self) -> TlsAcceptor {
        TlsAcceptor::from(self.config.read().expect("tls config lock").clone())
    }

    /// Opens `connection` with the configuration in force: the stream once the handshake
    /// succeeds (the caller bounds how long it may take).
    pub(super) fn open(
        self: &Arc<Self>,
        connection: Closable,
    ) -> impl std::future::Future<Output = Option<TlsStream<Closable>>> + Send + use<> {
        let accept = self.acceptor().accept(connection);
        async move { accept.await.ok() }
    }
}

fn certificates(pem: &[u8], what: &str) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError(format!("{what} is not PEM: {e}")))?;
    if certs.is_empty() {
        return Err(TlsError(format!("{what} holds no certificate")));
    }
    Ok(certs)
}

fn server_config(tls: &TlsConfig) -> Result<ServerConfig, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let certs = certificates(&tls.cert_pem, "the certificate")?;
    let key = PrivateKeyDer::from_pem_slice(&tls.key_pem)
        .map_err(|_| TlsError("the key is not a PEM private key".into()))?;
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError(e.to_string()))?;
    let builder = match &tls.client_ca_pem {
        Some(ca) => {
            let mut roots = RootCertStore::empty();
            for cert in certificates(ca, "the client CA")? {
                roots
                    .add(cert)
                    .map_err(|e| TlsError(format!("the client CA: {e}")))?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|e| TlsError(format!("the client CA: {e}")))?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut config = builder
        .with_single_cert(certs, key)
        .map_err(|e| TlsError(format!("the certificate and key: {e}")))?;
    // h2 for gRPC; HTTP/1.1 for gRPC-Web clients that do not speak h2.
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}
