//! Files read again while serving: the API key list (`--api-keys-file`), the sensitive key ring
//! (`--sensitive-keys-file`) and the gRPC port's certificate, key and client CA. Each is polled by
//! content hash, not watched: Kubernetes swaps a mounted Secret's files through symlinks, which
//! file-change events and modification times miss. A new version that cannot be put in force is
//! refused with the reason logged and counted (never its contents), and the version in force
//! stays.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use sha2::{Digest, Sha256};
use tokio_util::sync::CancellationToken;

use super::auth::Authenticate;
use super::tls::ServerTls;
use crate::auth::sensitive::KeyRing;
use crate::auth::{ApiKeys, Sensitive};
use crate::config::{TlsConfig, TlsFiles};
use crate::telemetry::metrics::Metrics;

/// Puts the files' new texts in force (in the order of their paths); what they now hold, or why
/// they were refused.
type Apply = Box<dyn Fn(&[String]) -> Result<String, String> + Send + Sync>;

/// Files followed together while serving (a certificate and its key change at once).
pub struct Followed {
    /// The `file` label of `clerk_index_config_reloads_total`.
    label: &'static str,
    paths: Vec<PathBuf>,
    apply: Apply,
}

impl Followed {
    /// The API key list: a new list that parses and names at least one key.
    pub fn api_keys(path: PathBuf, auth: Authenticate) -> Followed {
        let apply = move |texts: &[String]| {
            let keys = ApiKeys::parse(&texts[0]).map_err(|e| e.to_string())?;
            if keys.is_empty() {
                return Err("it lists no keys".into());
            }
            let count = keys.len();
            auth.replace_keys(keys);
            Ok(format!("{count} keys"))
        };
        Followed::one("api_keys", path, apply)
    }

    /// The sensitive key ring: a new ring that parses and keeps the blind-index key and the
    /// material of every key id it shares with the ring in force.
    pub fn sensitive_keys(path: PathBuf, sensitive: Arc<Sensitive>) -> Followed {
        let apply = move |texts: &[String]| {
            let ring = KeyRing::parse(&texts[0]).map_err(|e| e.to_string())?;
            let active = ring.active_id().to_string();
            sensitive.replace_ring(ring).map_err(|e| e.to_string())?;
            Ok(format!("active key {active}"))
        };
        Followed::one("sensitive_keys", path, apply)
    }

    fn one(
        label: &'static str,
        path: PathBuf,
        apply: impl Fn(&[String]) -> Result<String, String> + Send + Sync + 'static,
    ) -> Followed {
        Followed {
            label,
            paths: vec![path],
            apply: Box::new(apply),
        }
    }

    /// The gRPC port's certificate chain, key and client CA: new handshakes use them once they
    /// make a working TLS configuration together.
    pub fn tls(files: TlsFiles, tls: Arc<ServerTls>) -> Followed {
        let mut paths = vec![files.cert, files.key];
        paths.extend(files.client_ca);
        let apply = move |texts: &[String]| {
            let config = TlsConfig {
                cert_pem: texts[0].clone().into_bytes(),
                key_pem: texts[1].clone().into_bytes(),
                client_ca_pem: texts.get(2).map(|ca| ca.clone().into_bytes()),
            };
            tls.replace(&config).map_err(|e| e.to_string())?;
            Ok(TlsConfig::mode(Some(&config)).to_string())
        };
        Followed {
            label: "tls",
            paths,
            apply: Box::new(apply),
        }
    }
}

/// What was last seen in a file: its hash, or why it could not be read.
#[derive(PartialEq)]
enum Seen {
    Contents([u8; 32]),
    Unreadable(String),
}

/// Reads each of `files` every `every` until `stop`, and puts every change in force.
pub async fn follow_files(
    files: Vec<Followed>,
    metrics: Arc<Metrics>,
    every: Duration,
    stop: CancellationToken,
) {
    // What is in force was read from these files at start.
    let mut seen = Vec::with_capacity(files.len());
    for file in &files {
        seen.push(read(&file.paths).await.0);
    }
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(every) => {}
        }
        for (file, seen) in files.iter().zip(seen.iter_mut()) {
            let (now, texts) = read(&file.paths).await;
            if now == *seen {
                continue;
            }
            let outcome = match &now {
                Seen::Unreadable(why) => Err(format!("cannot read it: {why}")),
                Seen::Contents(_) => (file.apply)(&texts),
            };
            *seen = now;
            let path = file.paths[0].display();
            match outcome {
                Ok(holds) => {
                    tracing::info!(file = %path, %holds, "{} reloaded", file.label);
                    metrics.record_reload(file.label, true);
                }
                Err(reason) => {
                    tracing::warn!(file = %path, %reason, "a changed {} file was refused; the previous one stays in force", file.label);
                    metrics.record_reload(file.label, false);
                }
            }
        }
    }
}

/// The files' texts and their hash together, or why one cannot be read as text.
async fn read(paths: &[PathBuf]) -> (Seen, Vec<String>) {
    let mut hash = Sha256::new();
    let mut texts = Vec::with_capacity(paths.len());
    for path in paths {
        let text = match tokio::fs::read(path).await {
            Ok(bytes) => match String::from_utf8(bytes) {
                Ok(text) => text,
                Err(_) => {
                    let why = format!("{} is not UTF-8 text", path.display());
                    return (Seen::Unreadable(why), Vec::new());
                }
            },
            Err(error) => {
                let why = format!("{}: {}", path.display(), error.kind());
                return (Seen::Unreadable(why), Vec::new());
            }
        };
        hash.update((text.len() as u64).to_le_bytes());
        hash.update(text.as_bytes());
        texts.push(text);
    }
    (Seen::Contents(hash.finalize().into()), texts)
}
