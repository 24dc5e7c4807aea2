//! TLS on the gRPC port, with our own acceptor in front of tonic so that certificates can be
//! replaced while serving: every handshake takes the configuration in force, a connection keeps
//! the one it was made with. Handshakes run on their own tasks with a timeout, so a client that
//! stalls mid-handshake holds nothing but its socket, and not for long.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use rustls::RootCertStore;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ServerConfig, WebPkiClientVerifier};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;

use super::closable::Closable;
use crate::config::TlsConfig;

/// How long a TLS handshake may take.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

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

    /// The connections of `listener` once their handshakes succeed, until the stream is
    /// dropped; each can be cut by `cut`.
    pub(super) fn incoming(
        self: Arc<Self>,
        listener: TcpListener,
        cut: CancellationToken,
    ) -> ReceiverStream<std::io::Result<TlsStream<Closable>>> {
        let (sender, receiver) = mpsc::channel(64);
        tokio::spawn(async move {
            loop {
                let accepted = tokio::select! {
                    accepted = listener.accept() => accepted,
                    () = sender.closed() => return,
                };
                let Ok((tcp, _)) = accepted else {
                    // Out of file descriptors, or reset before accept: wait rather than spin.
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                };
                let _ = tcp.set_nodelay(true);
                let (acceptor, sender, cut) = (self.acceptor(), sender.clone(), cut.clone());
                tokio::spawn(async move {
                    let stream = Closable::new(tcp, &cut);
                    let handshake =
                        tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream));
                    if let Ok(Ok(tls)) = handshake.await {
                        let _ = sender.send(Ok(tls)).await;
                    }
                });
            }
        });
        ReceiverStream::new(receiver)
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
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(config)
}
