//! Files read again while serving: the API key list (`--api-keys-file`) and the sensitive key
//! ring (`--sensitive-keys-file`). Each is polled by content hash, not watched: Kubernetes swaps
//! a mounted Secret's files through symlinks, which file-change events and modification times
//! miss. A new version that cannot be put in force is refused with the reason logged and counted
//! (never its contents), and the version in force stays.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use sha2::{Digest, Sha256};
use tokio_util::sync::CancellationToken;

use super::auth::Authenticate;
use crate::auth::sensitive::KeyRing;
use crate::auth::{ApiKeys, Sensitive};
use crate::telemetry::metrics::Metrics;

/// Puts a file's new text in force; what it now holds, or why it was refused.
type Apply = Box<dyn Fn(&str) -> Result<String, String> + Send + Sync>;

/// One file followed while serving.
pub struct Followed {
    /// The `file` label of `clerk_index_config_reloads_total`.
    label: &'static str,
    path: PathBuf,
    apply: Apply,
}

impl Followed {
    /// The API key list: a new list that parses and names at least one key.
    pub fn api_keys(path: PathBuf, auth: Authenticate) -> Followed {
        let apply = move |text: &str| {
            let keys = ApiKeys::parse(text).map_err(|e| e.to_string())?;
            if keys.is_empty() {
                return Err("it lists no keys".into());
            }
            let count = keys.len();
            auth.replace_keys(keys);
            Ok(format!("{count} keys"))
        };
        Followed {
            label: "api_keys",
            path,
            apply: Box::new(apply),
        }
    }

    /// The sensitive key ring: a new ring that parses and keeps the blind-index key and the
    /// material of every key id it shares with the ring in force.
    pub fn sensitive_keys(path: PathBuf, sensitive: Arc<Sensitive>) -> Followed {
        let apply = move |text: &str| {
            let ring = KeyRing::parse(text).map_err(|e| e.to_string())?;
            let active = ring.active_id().to_string();
            sensitive.replace_ring(ring).map_err(|e| e.to_string())?;
            Ok(format!("active key {active}"))
        };
        Followed {
            label: "sensitive_keys",
            path,
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
        seen.push(read(&file.path).await.0);
    }
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(every) => {}
        }
        for (file, seen) in files.iter().zip(seen.iter_mut()) {
            let (now, text) = read(&file.path).await;
            if now == *seen {
                continue;
            }
            let outcome = match &now {
                Seen::Unreadable(error) => Err(format!("cannot read it: {error}")),
                Seen::Contents(_) => std::str::from_utf8(&text)
                    .map_err(|_| "it is not UTF-8 text".to_string())
                    .and_then(|text| (file.apply)(text)),
            };
            *seen = now;
            let path = file.path.display();
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

async fn read(path: &PathBuf) -> (Seen, Vec<u8>) {
    match tokio::fs::read(path).await {
        Ok(text) => (Seen::Contents(Sha256::digest(&text).into()), text),
        Err(error) => (Seen::Unreadable(error.kind().to_string()), Vec::new()),
    }
}
