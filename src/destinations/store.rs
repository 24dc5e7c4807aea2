//! Destinations at rest: one JSON file (`destinations/state.json`) replaced atomically (write
//! aside, fsync, rename, fsync the directory) at every definition change and after every
//! delivered batch, so a crash at worst sends a batch again. Signing secrets are sealed with
//! the sensitive key ring's active key when one is configured, else with a key ring of the
//! store's own (`destinations/secret-keys`, mode 0600, made on first use).

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::model::{Destination, DestinationError, SealedSecret};
use crate::auth::Sensitive;
use crate::auth::sensitive::{KeyRing, SensitivePaths, generate_key_line};

#[derive(Serialize, Deserialize)]
struct StateFile {
    version: u32,
    destinations: Vec<Destination>,
}

/// The state file and the sealer of secrets.
pub struct Store {
    path: PathBuf,
    sealer: Arc<Sensitive>,
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> DestinationError + '_ {
    move |error| DestinationError::Io {
        path: path.display().to_string(),
        message: error.to_string(),
    }
}

/// The saved destinations (none when the file does not exist yet).
pub fn load(dir: &Path) -> Result<Vec<Destination>, DestinationError> {
    let path = dir.join("state.json");
    match std::fs::read(&path) {
        Ok(bytes) => {
            let state: StateFile =
                serde_json::from_slice(&bytes).map_err(|e| DestinationError::Io {
                    path: path.display().to_string(),
                    message: format!("damaged: {e}"),
                })?;
            Ok(state.destinations)
        }
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(error) => Err(io(&path)(error)),
    }
}

/// The position retention must be held at for the saved destinations: the slowest one's
/// (those with a gap hold nothing: what they missed is gone already).
pub fn hold_of<'a>(destinations: impl IntoIterator<Item = &'a Destination>) -> Option<u64> {
    destinations
        .into_iter()
        .filter(|d| d.state != super::model::State::Gap)
        .map(|d| d.delivered_through)
        .min()
}

impl Store {
    /// `ring`: the configured sensitive key ring, if any.
    pub fn open(dir: &Path, ring: Option<Arc<Sensitive>>) -> Result<Store, DestinationError> {
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        let sealer = match ring {
            Some(ring) => ring,
            None => Arc::new(local_sealer(dir)?),
        };
        Ok(Store {
            path: dir.join("state.json"),
            sealer,
        })
    }

    pub fn save(
        &self,
        destinations: &BTreeMap<String, Destination>,
    ) -> Result<(), DestinationError> {
        let state = StateFile {
            version: 1,
            destinations: destinations.values().cloned().collect(),
        };
        let bytes = serde_json::to_vec_pretty(&state).expect("destinations serialize");
        let aside = self.path.with_extension("json.saving");
        let fail = io(&self.path);
        let mut file = File::create(&aside).map_err(&fail)?;
        file.write_all(&bytes)
            .and_then(|()| file.sync_all())
            .map_err(&fail)?;
        std::fs::rename(&aside, &self.path).map_err(&fail)?;
        if let Some(dir) = self.path.parent() {
            File::open(dir).and_then(|d| d.sync_all()).map_err(&fail)?;
        }
        Ok(())
    }

    pub fn seal(&self, destination: &str, secret: &str, expires_ms: Option<i64>) -> SealedSecret {
        SealedSecret {
            sealed: self.sealer.seal_secret(destination, secret.as_bytes()),
            expires_ms,
        }
    }

    pub fn open_secret(
        &self,
        destination: &str,
        secret: &SealedSecret,
    ) -> Result<String, DestinationError> {
        let bytes = self.sealer.open_secret(destination, &secret.sealed)?;
        String::from_utf8(bytes).map_err(|_| {
            DestinationError::FailedPrecondition(format!(
                "destination {destination:?}'s signing secret is damaged"
            ))
        })
    }
}

/// The store's own key ring, made on first use (readable by the owner only).
fn local_sealer(dir: &Path) -> Result<Sensitive, DestinationError> {
    let path = dir.join("secret-keys");
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            let text = format!(
                "{}\n{}\n",
                generate_key_line("blind-index"),
                generate_key_line("local")
            );
            write_private(&path, text.as_bytes()).map_err(io(&path))?;
            text
        }
        Err(error) => return Err(io(&path)(error)),
    };
    let ring = KeyRing::parse(&text).map_err(|e| DestinationError::Io {
        path: path.display().to_string(),
        message: e.to_string(),
    })?;
    let paths = SensitivePaths::parse("").expect("no paths parse");
    Ok(Sensitive::new(paths, ring))
}

fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}
