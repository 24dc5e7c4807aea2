//! Destinations at rest, in one of two places:
//! - single mode: one JSON file (`destinations/state.json`) replaced atomically (write aside,
//!   fsync, rename, fsync the directory) at every definition change and after every delivered
//!   batch, so a crash at worst sends a batch again;
//! - cluster mode: the cluster's destinations bucket, one key per destination, each write a
//!   compare-and-set (a change that lost the race is applied again to the newest value), so an
//!   edit on one replica and the position the delivering replica saves never overwrite each
//!   other.
//!
//! Signing secrets are sealed with the sensitive key ring's active key when one is configured,
//! else (single mode only) with a key ring of the store's own (`destinations/secret-keys`, mode
//! 0600, made on first use). Cluster mode needs the configured ring, the same on every replica.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::model::{Destination, DestinationError, SealedSecret};
use crate::auth::Sensitive;
use crate::auth::sensitive::{KeyRing, SensitivePaths, generate_key_line};
use crate::clock::now_ms;
use crate::cluster::{ClusterError, DestinationBucket};

#[derive(Serialize, Deserialize)]
struct StateFile {
    version: u32,
    destinations: Vec<Destination>,
}

/// Where destinations are kept, and the sealer of secrets (`None`: cluster mode without a
/// sensitive key ring, where destinations cannot be made).
pub struct Store {
    place: Place,
    sealer: Option<Arc<Sensitive>>,
    /// Cluster mode: the newest revision of each destination this replica holds, so a watch
    /// that reports an older one after this replica's own write does not take it back.
    revisions: Mutex<std::collections::HashMap<String, u64>>,
}

enum Place {
    File(PathBuf),
    Shared(Box<DestinationBucket>),
}

/// Compare-and-set attempts before a write gives up (each lost one means another write landed).
const CAS_ATTEMPTS: usize = 20;

fn shared_error(error: ClusterError) -> DestinationError {
    DestinationError::Unavailable(error.to_string())
}

fn decode(name: &str, bytes: &[u8]) -> Result<Destination, DestinationError> {
    serde_json::from_slice(bytes).map_err(|e| DestinationError::Io {
        path: format!("the cluster's destination {name:?}"),
        message: format!("damaged: {e}"),
    })
}

fn encode(destination: &Destination) -> Bytes {
    Bytes::from(serde_json::to_vec(destination).expect("a destination serializes"))
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
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
    /// Single mode: the state file under `dir`. `ring`: the configured sensitive key ring, if
    /// any.
    pub fn open(dir: &Path, ring: Option<Arc<Sensitive>>) -> Result<Store, DestinationError> {
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        let sealer = match ring {
            Some(ring) => ring,
            None => Arc::new(local_sealer(dir)?),
        };
        Ok(Store {
            place: Place::File(dir.join("state.json")),
            sealer: Some(sealer),
            revisions: Mutex::default(),
        })
    }

    /// Cluster mode: the cluster's destinations bucket.
    pub fn shared(bucket: DestinationBucket, ring: Option<Arc<Sensitive>>) -> Store {
        Store {
            place: Place::Shared(Box::new(bucket)),
            sealer: ring,
            revisions: Mutex::default(),
        }
    }

    /// Cluster mode: takes revision `revision` of destination `name` into `state` (`None`: it
    /// was deleted) unless a newer one is there already; `present`: only if `state` still
    /// holds it (a save must not bring back a destination whose deletion was seen). Checked
    /// and applied under the state lock, so what a delivery task reads next is never older
    /// than what it saved. `false` when nothing changed.
    pub fn apply(
        &self,
        state: &Mutex<BTreeMap<String, Destination>>,
        name: &str,
        revision: u64,
        value: Option<Destination>,
        present: bool,
    ) -> bool {
        let mut state = lock(state);
        if present && !state.contains_key(name) {
            return false;
        }
        let mut revisions = lock(&self.revisions);
        if revisions.get(name).is_some_and(|noted| revision <= *noted) {
            return false;
        }
        match value {
            Some(destination) => {
                revisions.insert(name.to_string(), revision);
                state.insert(name.to_string(), destination);
            }
            None => {
                // Gone for good: the revisions remembered stay bounded by the live ones.
                revisions.remove(name);
                state.remove(name);
            }
        }
        true
    }

    /// The cluster's bucket, in cluster mode.
    pub fn bucket(&self) -> Option<&DestinationBucket> {
        match &self.place {
            Place::File(_) => None,
            Place::Shared(bucket) => Some(bucket),
        }
    }

    /// Applies `change` to destination `name` in `state` and saves it: the whole file, or a
    /// compare-and-set on its key (`change` applied again to the newest value after a lost
    /// race). Nothing changes when `change` or the save fails.
    pub async fn persist(
        &self,
        state: &Mutex<BTreeMap<String, Destination>>,
        name: &str,
        change: impl Fn(&mut Destination) -> Result<(), DestinationError>,
    ) -> Result<Destination, DestinationError> {
        let not_found = || DestinationError::NotFound(name.to_string());
        let bucket = match &self.place {
            Place::File(_) => {
                let mut state = lock(state);
                let mut changed = state.get(name).ok_or_else(not_found)?.clone();
                change(&mut changed)?;
                changed.updated_ms = now_ms();
                let before = state.insert(name.to_string(), changed.clone());
                if let Err(error) = self.save(&state) {
                    if let Some(before) = before {
                        state.insert(name.to_string(), before);
                    }
                    return Err(error);
                }
                return Ok(changed);
            }
            Place::Shared(bucket) => bucket,
        };
        for _ in 0..CAS_ATTEMPTS {
            let Some((bytes, revision)) = bucket.get(name).await.map_err(shared_error)? else {
                lock(state).remove(name);
                return Err(not_found());
            };
            let mut changed = decode(name, &bytes)?;
            change(&mut changed)?;
            changed.updated_ms = now_ms();
            let saved =
                (bucket.put(name, encode(&changed), revision).await).map_err(shared_error)?;
            if let Some(revision) = saved {
                self.apply(state, name, revision, Some(changed.clone()), true);
                return Ok(changed);
            }
        }
        Err(DestinationError::Unavailable(format!(
            "destination {name:?} changed {CAS_ATTEMPTS} times while this change was being saved"
        )))
    }

    /// Adds a new destination to `state` and saves it; `AlreadyExists` when the name is taken
    /// (here, or on another replica in cluster mode).
    pub async fn insert(
        &self,
        state: &Mutex<BTreeMap<String, Destination>>,
        destination: &Destination,
        max: usize,
    ) -> Result<(), DestinationError> {
        let name = destination.name.clone();
        {
            let mut state = lock(state);
            if state.contains_key(&name) {
                return Err(DestinationError::AlreadyExists(name));
            }
            if state.len() >= max {
                return Err(DestinationError::TooMany(max));
            }
            if matches!(self.place, Place::File(_)) {
                state.insert(name.clone(), destination.clone());
                if let Err(error) = self.save(&state) {
                    state.remove(&name);
                    return Err(error);
                }
                return Ok(());
            }
        }
        let bucket = self.bucket().expect("cluster mode");
        match bucket.put(&name, encode(destination), 0).await {
            Ok(Some(revision)) => {
                self.apply(state, &name, revision, Some(destination.clone()), false);
                Ok(())
            }
            Ok(None) => Err(DestinationError::AlreadyExists(name)),
            Err(error) => Err(shared_error(error)),
        }
    }

    /// Removes destination `name` from `state` and saves that.
    pub async fn remove(
        &self,
        state: &Mutex<BTreeMap<String, Destination>>,
        name: &str,
    ) -> Result<(), DestinationError> {
        let not_found = || DestinationError::NotFound(name.to_string());
        let bucket = match &self.place {
            Place::File(_) => {
                let mut state = lock(state);
                let removed = state.remove(name).ok_or_else(not_found)?;
                if let Err(error) = self.save(&state) {
                    state.insert(name.to_string(), removed);
                    return Err(error);
                }
                return Ok(());
            }
            Place::Shared(bucket) => bucket,
        };
        if bucket.get(name).await.map_err(shared_error)?.is_none() {
            lock(state).remove(name);
            return Err(not_found());
        }
        bucket.delete(name).await.map_err(shared_error)?;
        lock(state).remove(name);
        Ok(())
    }

    /// A value of the cluster's bucket as a destination.
    pub fn decode(name: &str, bytes: &[u8]) -> Result<Destination, DestinationError> {
        decode(name, bytes)
    }

    /// Writes the whole state file (single mode; nothing to do in cluster mode).
    pub fn save(
        &self,
        destinations: &BTreeMap<String, Destination>,
    ) -> Result<(), DestinationError> {
        let Place::File(path) = &self.place else {
            return Ok(());
        };
        let state = StateFile {
            version: 1,
            destinations: destinations.values().cloned().collect(),
        };
        let bytes = serde_json::to_vec_pretty(&state).expect("destinations serialize");
        let aside = path.with_extension("json.saving");
        let fail = io(path);
        let mut file = File::create(&aside).map_err(&fail)?;
        file.write_all(&bytes)
            .and_then(|()| file.sync_all())
            .map_err(&fail)?;
        std::fs::rename(&aside, path).map_err(&fail)?;
        if let Some(dir) = path.parent() {
            File::open(dir).and_then(|d| d.sync_all()).map_err(&fail)?;
        }
        Ok(())
    }

    fn sealer(&self) -> Result<&Sensitive, DestinationError> {
        self.sealer.as_deref().ok_or_else(|| {
            DestinationError::FailedPrecondition(
                "in cluster mode destination signing secrets are sealed with the sensitive key ring, and none is configured: set --sensitive-keys (the same keys on every replica)".into(),
            )
        })
    }

    pub fn seal(
        &self,
        destination: &str,
        secret: &str,
        expires_ms: Option<i64>,
    ) -> Result<SealedSecret, DestinationError> {
        Ok(SealedSecret {
            sealed: self.sealer()?.seal_secret(destination, secret.as_bytes()),
            expires_ms,
        })
    }

    pub fn open_secret(
        &self,
        destination: &str,
        secret: &SealedSecret,
    ) -> Result<String, DestinationError> {
        let bytes = self.sealer()?.open_secret(destination, &secret.sealed)?;
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
