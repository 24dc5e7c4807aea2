//! Files read again while serving: the API key list (`--api-keys-file`). The file is polled by
//! content hash, not watched: Kubernetes swaps a mounted Secret's files through symlinks, which
//! file-change events and modification times miss. A new list that does not parse, or is empty,
//! is refused with the reason logged and counted, and the keys in force stay.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use sha2::{Digest, Sha256};
use tokio_util::sync::CancellationToken;

use super::auth::Authenticate;
use crate::auth::ApiKeys;
use crate::telemetry::metrics::Metrics;

/// What was last seen in the file: its hash, or why it could not be read.
#[derive(PartialEq)]
enum Seen {
    Contents([u8; 32]),
    Unreadable(String),
}

/// Reads `path` every `every` until `stop`, and serves its keys whenever they change and parse.
pub async fn reload_api_keys(
    path: PathBuf,
    auth: Authenticate,
    metrics: Arc<Metrics>,
    every: Duration,
    stop: CancellationToken,
) {
    // The keys in force were read from this file at start.
    let mut seen = read(&path).await.0;
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(every) => {}
        }
        let (now, text) = read(&path).await;
        if now == seen {
            continue;
        }
        let file = path.display();
        let keys = match (&now, text) {
            (Seen::Unreadable(error), _) => Err(format!("cannot read it: {error}")),
            (_, text) => std::str::from_utf8(&text)
                .map_err(|_| "it is not UTF-8 text".to_string())
                .and_then(|text| ApiKeys::parse(text).map_err(|e| e.to_string()))
                .and_then(|keys| match keys.is_empty() {
                    true => Err("it lists no keys".to_string()),
                    false => Ok(keys),
                }),
        };
        seen = now;
        match keys {
            Ok(keys) => {
                tracing::info!(%file, keys = keys.len(), "API keys reloaded");
                auth.replace_keys(keys);
                metrics.record_reload("api_keys", true);
            }
            Err(reason) => {
                tracing::warn!(%file, %reason, "the changed API key file was refused; the previous keys stay in force");
                metrics.record_reload("api_keys", false);
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
