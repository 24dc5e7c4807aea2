//! Sealing: sensitive values cut out of a user's metadata and Clerk JSON, encrypted under the
//! active key (XChaCha20-Poly1305, random 24-byte nonce, the key id in each ciphertext, the user
//! id and path as associated data), and indexed only as blind-index tokens (HMAC-SHA256 under a
//! separate key of the path and the normalized value). Opening them again for responses, and
//! re-sealing under a new active key.

use std::sync::{Arc, RwLock};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use hmac::{Hmac, Mac};
use rand::RngCore;
use serde_json::{Map, Value as Json};
use sha2::Sha256;

use super::keyring::KeyRing;
use super::paths::SensitivePaths;
use crate::index::{Sealer, WriteError};
use crate::query::FieldPath;
use crate::user::{MetadataNamespace, Sealed, User, decode_metadata_path, encode_metadata_path};

/// Blind-index tokens keep this many bytes of the HMAC (128 bits).
const TOKEN_BYTES: usize = 16;
/// The associated data's first part for the service's own secrets (no user id is empty).
const SECRET_CONTEXT: &str = "";
/// Tokens naming the key a user's values are sealed with start with this (hex tokens never do).
const KEY_TOKEN_PREFIX: &str = "key:";

/// Why a sealed value could not be opened (never with the value in it).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    #[error("a sensitive value is sealed with key {0:?}, which is not in the key ring")]
    UnknownKey(String),
    #[error(
        "a sealed value of user {user} at {path} does not open (damaged, or moved from another user)"
    )]
    Damaged { user: String, path: String },
    #[error("a user's Clerk JSON is not valid JSON: {0}")]
    Json(String),
}

/// Why a new key ring was not put in force (never quoting a key).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RingRefused {
    #[error(
        "the blind-index key differs: changing it means rebuilding the index (restart with the new ring)"
    )]
    BlindKey,
    #[error("key {0:?} has other key material than before; add a key under a new id")]
    KeyChanged(String),
}

/// The configured sensitive paths with their keys: seals users, turns filter literals into
/// tokens, and opens values for responses.
/// The key ring can be replaced while serving ([`Sensitive::replace_ring`]); the paths cannot.
#[derive(Debug)]
pub struct Sensitive {
    paths: SensitivePaths,
    ring: RwLock<Arc<KeyRing>>,
}

impl Sensitive {
    pub fn new(paths: SensitivePaths, ring: KeyRing) -> Sensitive {
        Sensitive {
            paths,
            ring: RwLock::new(Arc::new(ring)),
        }
    }

    pub fn paths(&self) -> &SensitivePaths {
        &self.paths
    }

    /// The key ring in force now.
    pub fn ring(&self) -> Arc<KeyRing> {
        self.ring.read().expect("key ring lock").clone()
    }

    /// Puts `ring` in force: new values are sealed with its active key, and values sealed with
    /// any of its keys open. Refused (the ring in force stays) when it would make the index or
    /// sealed values unreadable: another blind-index key (every token would change), or other
    /// key material under an id already in use.
    pub fn replace_ring(&self, ring: KeyRing) -> Result<(), RingRefused> {
        let mut current = self.ring.write().expect("key ring lock");
        if ring.blind_key() != current.blind_key() {
            return Err(RingRefused::BlindKey);
        }
        if let Some(id) = ring
            .ids()
            .find(|id| current.key(id).is_some_and(|key| Some(key) != ring.key(id)))
        {
            return Err(RingRefused::KeyChanged(id.to_string()));
        }
        *current = Arc::new(ring);
        Ok(())
    }

    /// Identifies the paths and the blind-index key (an HMAC: it reveals neither), so an index
    /// sealed otherwise is rebuilt.
    pub fn fingerprint(&self) -> String {
        let mut mac = self.blind_mac();
        mac.update(b"clerk-index sealing v1\0");
        mac.update(self.paths.describe().as_bytes());
        hex(&mac.finalize().into_bytes()[..TOKEN_BYTES])
    }

    pub fn covers(&self, path: &FieldPath) -> bool {
        self.paths.covers(path)
    }

    fn blind_mac(&self) -> Hmac<Sha256> {
        <Hmac<Sha256> as Mac>::new_from_slice(self.ring().blind_key())
            .expect("HMAC takes any key length")
    }

    /// The blind-index token of one value at one (encoded) path.
    pub(super) fn token(&self, encoded_path: &str, normalized: &str) -> String {
        let mut mac = self.blind_mac();
        mac.update(encoded_path.as_bytes());
        mac.update(&[0]);
        mac.update(normalized.as_bytes());
        hex(&mac.finalize().into_bytes()[..TOKEN_BYTES])
    }

    /// Tokens of every scalar at or below `value`, at its path (arrays are transparent, as in
    /// filters).
    fn tokens_of(
        &self,
        namespace: MetadataNamespace,
        keys: &mut Vec<String>,
        value: &Json,
        into: &mut Vec<String>,
    ) {
        match value {
            Json::Object(map) => {
                for (key, child) in map {
                    keys.push(key.clone());
                    self.tokens_of(namespace, keys, child, into);
                    keys.pop();
                }
            }
            Json::Array(items) => {
                for item in items {
                    self.tokens_of(namespace, keys, item, into);
                }
            }
            scalar => {
                if let Some(normalized) = normalize_json(scalar) {
                    into.push(self.token(&encode_metadata_path(namespace, keys), &normalized));
                }
            }
        }
    }

    fn encrypt(&self, user_id: &str, path: &str, plaintext: &[u8]) -> String {
        let ring = self.ring();
        let (id, key) = ring.active();
        let mut nonce = [0u8; 24];
        rand::rng().fill_bytes(&mut nonce);
        let aad = associated_data(user_id, path);
        let ciphertext = XChaCha20Poly1305::new(key.into())
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: plaintext,
                    aad: &aad,
                },
            )
            .expect("XChaCha20-Poly1305 encrypts any message that fits in memory");
        let mut sealed = nonce.to_vec();
        sealed.extend_from_slice(&ciphertext);
        format!("{id}:{}", BASE64.encode(sealed))
    }

    fn decrypt(&self, user_id: &str, path: &str, sealed: &str) -> Result<Vec<u8>, SealError> {
        let damaged = || SealError::Damaged {
            user: user_id.to_string(),
            path: path.to_string(),
        };
        let (id, body) = sealed.split_once(':').ok_or_else(damaged)?;
        let ring = self.ring();
        let key = ring
            .key(id)
            .ok_or_else(|| SealError::UnknownKey(id.to_string()))?;
        let bytes = BASE64.decode(body).map_err(|_| damaged())?;
        if bytes.len() < 24 {
            return Err(damaged());
        }
        let (nonce, ciphertext) = bytes.split_at(24);
        let aad = associated_data(user_id, path);
        XChaCha20Poly1305::new(key.into())
            .decrypt(
                XNonce::from_slice(nonce),
                Payload {
                    msg: ciphertext,
                    aad: &aad,
                },
            )
            .map_err(|_| damaged())
    }

    /// Seals one of the service's own secrets (a destination's signing secret) under the
    /// active key, bound to `owner` (it opens only for the same owner).
    pub fn seal_secret(&self, owner: &str, secret: &[u8]) -> String {
        self.encrypt(SECRET_CONTEXT, owner, secret)
    }

    /// Opens what [`Sensitive::seal_secret`] sealed for `owner`.
    pub fn open_secret(&self, owner: &str, sealed: &str) -> Result<Vec<u8>, SealError> {
        self.decrypt(SECRET_CONTEXT, owner, sealed)
    }

    /// `user` with its sensitive values cut out and sealed; `None` when it holds none.
    pub fn seal_user(&self, user: &User) -> Result<Option<User>, SealError> {
        // Every user of a backfill comes through here: most hold no sensitive value, and are
        // passed over without copying anything.
        if !self
            .paths
            .entries()
            .iter()
            .any(|(namespace, keys)| holds(user.metadata(*namespace), keys))
        {
            return Ok(None);
        }
        let mut metadata = MetadataNamespace::ALL.map(|ns| user.metadata(ns).clone());
        let mut taken: Vec<(MetadataNamespace, Vec<String>, Json)> = Vec::new();
        for (namespace, keys) in self.paths.entries() {
            let slot = MetadataNamespace::ALL
                .iter()
                .position(|ns| ns == namespace)
                .expect("every namespace is in ALL");
            take(&mut metadata[slot], keys, 0, *namespace, &mut taken);
        }
        let mut raw: Json =
            serde_json::from_str(&user.raw_json).map_err(|e| SealError::Json(e.to_string()))?;
        self.strip(&mut raw);
        let [public_metadata, private_metadata, unsafe_metadata] = metadata;
        Ok(Some(User {
            public_metadata,
            private_metadata,
            unsafe_metadata,
            raw_json: Arc::from(raw.to_string()),
            sealed: Some(Arc::new(self.seal_values(&user.id, &taken))),
            ..user.clone()
        }))
    }

    /// Encrypts cut-out values under the active key, with their tokens.
    fn seal_values(
        &self,
        user_id: &str,
        taken: &[(MetadataNamespace, Vec<String>, Json)],
    ) -> Sealed {
        let mut values = Map::new();
        let mut tokens = vec![format!("{KEY_TOKEN_PREFIX}{}", self.ring().active_id())];
        for (namespace, keys, value) in taken {
            let path = encode_metadata_path(*namespace, keys);
            let plaintext = value.to_string();
            values.insert(
                path.clone(),
                Json::String(self.encrypt(user_id, &path, plaintext.as_bytes())),
            );
            self.tokens_of(*namespace, &mut keys.clone(), value, &mut tokens);
        }
        tokens.sort();
        tokens.dedup();
        Sealed {
            values: Json::Object(values).to_string(),
            tokens,
        }
    }

    /// Opens a user's sealed values: `(namespace, keys, value)` per sealed path.
    pub fn reveal(
        &self,
        user_id: &str,
        sealed: &str,
    ) -> Result<Vec<(MetadataNamespace, Vec<String>, Json)>, SealError> {
        let values: Map<String, Json> =
            serde_json::from_str(sealed).map_err(|e| SealError::Json(e.to_string()))?;
        let mut opened = Vec::with_capacity(values.len());
        for (path, ciphertext) in values {
            let damaged = || SealError::Damaged {
                user: user_id.to_string(),
                path: path.clone(),
            };
            let ciphertext = ciphertext.as_str().ok_or_else(damaged)?;
            let plaintext = self.decrypt(user_id, &path, ciphertext)?;
            let value: Json = serde_json::from_slice(&plaintext).map_err(|_| damaged())?;
            let (namespace, keys) = decode_metadata_path(&path).ok_or_else(damaged)?;
            opened.push((namespace, keys, value));
        }
        Ok(opened)
    }

    /// `user` (parsed from its stored JSON) with `sealed` re-sealed under the active key; `None`
    /// when every value already is.
    pub fn reseal(&self, user: &User, sealed: &str) -> Result<Option<User>, SealError> {
        let values: Map<String, Json> =
            serde_json::from_str(sealed).map_err(|e| SealError::Json(e.to_string()))?;
        let active = format!("{}:", self.ring().active_id());
        if values
            .values()
            .all(|v| v.as_str().is_some_and(|s| s.starts_with(&active)))
        {
            return Ok(None);
        }
        let opened = self.reveal(&user.id, sealed)?;
        Ok(Some(User {
            sealed: Some(Arc::new(self.seal_values(&user.id, &opened))),
            ..user.clone()
        }))
    }

    /// Cuts the sensitive values out of a user's Clerk JSON (for JSON that did not come from
    /// the index, such as Clerk's answer to a metadata update).
    pub fn strip(&self, raw: &mut Json) {
        if let Json::Object(raw) = raw {
            for (namespace, keys) in self.paths.entries() {
                if let Some(object) = raw.get_mut(namespace.field_name()) {
                    take(object, keys, 0, *namespace, &mut Vec::new());
                }
            }
        }
    }

    /// The key-id token of the users sealed with `key_id` (for finding them).
    pub fn key_token(key_id: &str) -> String {
        format!("{KEY_TOKEN_PREFIX}{key_id}")
    }
}

impl Sealer for Sensitive {
    fn seal(&self, user: Arc<User>) -> Result<Arc<User>, WriteError> {
        if user.sealed.is_some() {
            return Ok(user);
        }
        match self.seal_user(&user) {
            Ok(Some(sealed)) => Ok(Arc::new(sealed)),
            Ok(None) => Ok(user),
            Err(error) => Err(WriteError::seal(error)),
        }
    }
}

/// Cuts the value at `keys[at..]` out of `value`, recording it in `taken` with its full path.
/// An array on the way is cut whole (its elements' keys are not addressable one by one), so a
/// sensitive key under an array never stays behind in plaintext.
fn take(
    value: &mut Json,
    keys: &[String],
    at: usize,
    namespace: MetadataNamespace,
    taken: &mut Vec<(MetadataNamespace, Vec<String>, Json)>,
) {
    let Json::Object(map) = value else {
        return;
    };
    let key = keys[at].clone();
    let last = at + 1 == keys.len();
    let descend = !last && map.get(&key).is_some_and(Json::is_object);
    if descend {
        if let Some(child) = map.get_mut(&key) {
            take(child, keys, at + 1, namespace, taken);
        }
    } else if let Some(removed) = map.shift_remove(&key) {
        // The key itself, or an array or scalar standing where an object was expected.
        taken.push((namespace, keys[..=at].to_vec(), removed));
    }
}

/// Whether [`take`] would cut anything out of `value` at `keys`.
fn holds(value: &Json, keys: &[String]) -> bool {
    let Json::Object(map) = value else {
        return false;
    };
    match map.get(&keys[0]) {
        None => false,
        Some(child) if keys.len() > 1 && child.is_object() => holds(child, &keys[1..]),
        Some(_) => true,
    }
}

/// What the blind index hashes for a stored value: type and canonical value, so `42` and
/// `42.0` (equal in filters) give one token, and `"42"` another.
fn normalize_json(value: &Json) -> Option<String> {
    match value {
        Json::String(s) => Some(format!("s{s}")),
        Json::Number(n) => n.as_f64().map(|f| format!("n{}", canonical_number(f))),
        Json::Bool(b) => Some(format!("b{b}")),
        Json::Null => Some("z".into()),
        Json::Array(_) | Json::Object(_) => None,
    }
}

pub(super) fn canonical_number(f: f64) -> String {
    if f.fract() == 0.0 && f.abs() < 1e15 {
        format!("{}", f as i64)
    } else {
        format!("{f:?}")
    }
}

fn associated_data(user_id: &str, path: &str) -> Vec<u8> {
    let mut aad = Vec::with_capacity(user_id.len() + path.len() + 1);
    aad.extend_from_slice(user_id.as_bytes());
    aad.push(0);
    aad.extend_from_slice(path.as_bytes());
    aad
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
