//! Sensitive paths: metadata values that are never indexed or stored in plaintext.
//!
//! Configured paths (`private.ssn`, `private.medical.*`) are cut out of a user's metadata and
//! Clerk JSON before the user reaches the index. Each cut subtree is encrypted with
//! XChaCha20-Poly1305 under the active key of a key ring (random 24-byte nonce; the key id in
//! each ciphertext; the user id and path as associated data, so a ciphertext cannot be moved to
//! another user or path) and stored beside the user. For equality filters each value is also
//! indexed as a blind-index token: HMAC-SHA256 under a separate key of the path and the
//! normalized value. A `sensitive`-scoped caller can then filter with `=`, `!=` and `IN` (the
//! literals are turned into tokens the same way) and read the values back (decrypted per
//! response); nothing else, and a copy of the index directory holds neither plaintext nor
//! anything to test guesses against without the keys.
//!
//! Keys rotate without downtime: new values are sealed with the first key of the ring, older
//! keys still open what they sealed, and `Sync.ReencryptSensitive` re-seals everything under the
//! active key so old keys can then be dropped.

use std::fmt;
use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use hmac::{Hmac, Mac};
use rand::RngCore;
use serde_json::{Map, Value as Json};
use sha2::Sha256;

use crate::index::{Sealer, UserIndex, WriterHandle};
use crate::query::ast::{CmpOp, FieldPath, Filter, Op, Predicate, Value};
use crate::user::{
    ChangeSource, MetadataNamespace, Sealed, User, UserChange, decode_metadata_path,
    encode_metadata_path,
};

/// The id the blind-index key has in the key ring text.
const BLIND_INDEX_ID: &str = "blind-index";
/// Blind-index tokens keep this many bytes of the HMAC (128 bits).
const TOKEN_BYTES: usize = 16;
/// Tokens naming the key a user's values are sealed with start with this (hex tokens never do).
const KEY_TOKEN_PREFIX: &str = "key:";

/// Which metadata paths are sensitive.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SensitivePaths {
    paths: Vec<(MetadataNamespace, Vec<String>)>,
}

impl SensitivePaths {
    /// Comma-separated metadata paths as filters spell them (`private.ssn`,
    /// ``private.`a.b` ``, `private_metadata.medical.*`); a trailing `.*` is allowed and means
    /// the same as without it: everything at and below the path.
    pub fn parse(text: &str) -> Result<SensitivePaths, String> {
        let mut paths = Vec::new();
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let path_text = part.strip_suffix(".*").unwrap_or(part);
            match crate::query::parse_path(path_text) {
                Ok(FieldPath::Metadata { namespace, keys }) if !keys.is_empty() => {
                    paths.push((namespace, keys))
                }
                Ok(_) => {
                    return Err(format!(
                        "{part}: only paths inside public, private or unsafe metadata can be sensitive"
                    ));
                }
                Err(e) => return Err(format!("{part}: {e}")),
            }
        }
        paths.sort();
        paths.dedup();
        Ok(SensitivePaths { paths })
    }

    pub fn is_empty(&self) -> bool {
        self.paths.is_empty()
    }

    /// Whether `path` is at or below a sensitive path.
    pub fn covers(&self, path: &FieldPath) -> bool {
        match path {
            FieldPath::Core(_) => false,
            FieldPath::Metadata { namespace, keys } => self
                .paths
                .iter()
                .any(|(ns, prefix)| ns == namespace && keys.starts_with(prefix)),
        }
    }

    /// The paths, canonical and sorted: `private_metadata.ssn`, ...
    pub fn describe_list(&self) -> Vec<String> {
        self.paths
            .iter()
            .map(|(ns, keys)| encode_metadata_path(*ns, keys))
            .collect()
    }

    fn describe(&self) -> String {
        self.describe_list().join(",")
    }
}

/// The keys: one blind-index key and the encryption keys by id, the first one active.
#[derive(Clone)]
pub struct KeyRing {
    blind: [u8; 32],
    /// `(id, key)`, the active key first.
    keys: Vec<(String, [u8; 32])>,
}

impl fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ids: Vec<&str> = self.keys.iter().map(|(id, _)| id.as_str()).collect();
        f.debug_struct("KeyRing")
            .field("encryption_key_ids", &ids)
            .finish_non_exhaustive()
    }
}

impl KeyRing {
    /// One key per line, `<id> <32 bytes in base64>`: a line with the id `blind-index` holds the
    /// blind-index key; of the others, the first is the active key. Blank lines and `#`
    /// comments are skipped. Errors never quote a key.
    pub fn parse(text: &str) -> Result<KeyRing, String> {
        let mut blind = None;
        let mut keys: Vec<(String, [u8; 32])> = Vec::new();
        for (index, line) in text.lines().enumerate() {
            let line_number = index + 1;
            let line = line.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            let parts: Vec<&str> = line.split_whitespace().collect();
            let [id, key] = parts[..] else {
                return Err(format!(
                    "sensitive keys, line {line_number}: expected `<key id> <32 bytes in base64>`"
                ));
            };
            if !id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            {
                return Err(format!(
                    "sensitive keys, line {line_number}: a key id holds only letters, digits, '-' and '_'"
                ));
            }
            let key: [u8; 32] = BASE64
                .decode(key)
                .ok()
                .and_then(|bytes| bytes.try_into().ok())
                .ok_or_else(|| {
                    format!(
                        "sensitive keys, line {line_number}: key {id:?} is not 32 bytes in base64 (make one with `clerk-index sensitive-key create`)"
                    )
                })?;
            if id == BLIND_INDEX_ID {
                if blind.replace(key).is_some() {
                    return Err(format!(
                        "sensitive keys, line {line_number}: a second blind-index key"
                    ));
                }
            } else if keys.iter().any(|(existing, _)| existing == id) {
                return Err(format!(
                    "sensitive keys, line {line_number}: key id {id:?} is used twice"
                ));
            } else {
                keys.push((id.to_string(), key));
            }
        }
        let blind = blind.ok_or("sensitive keys: no `blind-index` key")?;
        if keys.is_empty() {
            return Err("sensitive keys: no encryption key (a line `<key id> <key>`)".into());
        }
        Ok(KeyRing { blind, keys })
    }

    pub fn active_id(&self) -> &str {
        &self.keys[0].0
    }

    pub fn ids(&self) -> impl Iterator<Item = &str> {
        self.keys.iter().map(|(id, _)| id.as_str())
    }

    fn key(&self, id: &str) -> Option<&[u8; 32]> {
        self.keys.iter().find(|(i, _)| i == id).map(|(_, k)| k)
    }
}

/// A new key line for the key ring, `<id> <base64>` (from the thread's CSPRNG, seeded by the
/// operating system).
pub fn generate_key_line(id: &str) -> String {
    let mut key = [0u8; 32];
    rand::rng().fill_bytes(&mut key);
    format!("{id} {}", BASE64.encode(key))
}

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

/// The configured sensitive paths with their keys: seals users, turns filter literals into
/// tokens, and opens values for responses.
#[derive(Debug)]
pub struct Sensitive {
    paths: SensitivePaths,
    ring: KeyRing,
}

impl Sensitive {
    pub fn new(paths: SensitivePaths, ring: KeyRing) -> Sensitive {
        Sensitive { paths, ring }
    }

    pub fn paths(&self) -> &SensitivePaths {
        &self.paths
    }

    pub fn ring(&self) -> &KeyRing {
        &self.ring
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
        <Hmac<Sha256> as Mac>::new_from_slice(&self.ring.blind).expect("HMAC takes any key length")
    }

    /// The blind-index token of one value at one (encoded) path.
    fn token(&self, encoded_path: &str, normalized: &str) -> String {
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
        let (id, key) = &self.ring.keys[0];
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
        let key = self
            .ring
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

    /// `user` with its sensitive values cut out and sealed; `None` when it holds none.
    pub fn seal_user(&self, user: &User) -> Result<Option<User>, SealError> {
        // Every user of a backfill comes through here: most hold no sensitive value, and are
        // passed over without copying anything.
        if !self
            .paths
            .paths
            .iter()
            .any(|(namespace, keys)| holds(user.metadata(*namespace), keys))
        {
            return Ok(None);
        }
        let mut metadata = MetadataNamespace::ALL.map(|ns| user.metadata(ns).clone());
        let mut taken: Vec<(MetadataNamespace, Vec<String>, Json)> = Vec::new();
        for (namespace, keys) in &self.paths.paths {
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
        let mut tokens = vec![format!("{KEY_TOKEN_PREFIX}{}", self.ring.active_id())];
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
        let active = format!("{}:", self.ring.active_id());
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
            for (namespace, keys) in &self.paths.paths {
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

    /// `filter` with every predicate on a sensitive path turned into a token lookup: `=` and
    /// `IN` match a token, `!=` is the negation. Other operators are refused (the values are
    /// not in the index to compare or scan); errors name the path, never a value.
    pub fn seal_filter(&self, filter: Filter) -> Result<Filter, String> {
        Ok(match filter {
            Filter::And(parts) => Filter::And(
                parts
                    .into_iter()
                    .map(|p| self.seal_filter(p))
                    .collect::<Result<_, _>>()?,
            ),
            Filter::Or(parts) => Filter::Or(
                parts
                    .into_iter()
                    .map(|p| self.seal_filter(p))
                    .collect::<Result<_, _>>()?,
            ),
            Filter::Not(inner) => Filter::Not(Box::new(self.seal_filter(*inner)?)),
            Filter::Predicate(predicate) if self.covers(&predicate.path) => {
                let FieldPath::Metadata { namespace, keys } = &predicate.path else {
                    unreachable!("only metadata paths are sensitive");
                };
                let path = encode_metadata_path(*namespace, keys);
                let tokens = |values: &[Value]| -> Result<Vec<String>, String> {
                    values
                        .iter()
                        .map(|value| {
                            normalize_literal(value)
                                .map(|normalized| self.token(&path, &normalized))
                                .ok_or_else(|| {
                                    format!(
                                        "{} is a sensitive path: compare it with a string, number, boolean or null",
                                        predicate.path
                                    )
                                })
                        })
                        .collect()
                };
                let sealed = |tokens: Vec<String>| {
                    Filter::Predicate(Predicate {
                        path: predicate.path.clone(),
                        op: Op::Sealed(tokens),
                        position: predicate.position,
                    })
                };
                match &predicate.op {
                    Op::Compare(CmpOp::Eq, value) => sealed(tokens(std::slice::from_ref(value))?),
                    Op::Compare(CmpOp::Ne, value) => {
                        Filter::Not(Box::new(sealed(tokens(std::slice::from_ref(value))?)))
                    }
                    Op::In(values) => sealed(tokens(values)?),
                    _ => {
                        return Err(format!(
                            "{} is a sensitive path: it can be filtered only with =, != or IN",
                            predicate.path
                        ));
                    }
                }
            }
            other => other,
        })
    }

    /// Whether `filter` tests a sensitive path.
    pub fn touches(&self, filter: &Filter) -> bool {
        match filter {
            Filter::And(parts) | Filter::Or(parts) => parts.iter().any(|p| self.touches(p)),
            Filter::Not(inner) => self.touches(inner),
            Filter::Predicate(predicate) => self.covers(&predicate.path),
        }
    }
}

/// What [`reseal_all`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resealed {
    pub users: u64,
    pub generation: u64,
}

/// Re-seals every user sealed with a key other than the active one, through the writer (so
/// it is durable, and a newer version of a user written meanwhile wins as usual).
pub async fn reseal_all(
    sensitive: &Sensitive,
    index: &UserIndex,
    writer: &WriterHandle,
) -> Result<Resealed, String> {
    const BATCH: usize = 500;
    let snapshot = index.snapshot();
    let mut users = 0;
    let mut generation = snapshot.freshness.generation;
    for key_id in sensitive
        .ring
        .ids()
        .filter(|id| *id != sensitive.ring.active_id())
    {
        let addresses = snapshot
            .with_blind_token(&Sensitive::key_token(key_id))
            .map_err(|e| e.to_string())?;
        for batch in addresses.chunks(BATCH) {
            let mut changes = Vec::with_capacity(batch.len());
            for address in batch {
                let stored = snapshot.stored_at(*address).map_err(|e| e.to_string())?;
                let Some(sealed) = stored.sealed else {
                    continue;
                };
                let raw = serde_json::value::RawValue::from_string(stored.raw_json)
                    .map_err(|e| e.to_string())?;
                let user = crate::clerk::model::parse_user(&raw).map_err(|e| e.to_string())?;
                if let Some(resealed) = sensitive
                    .reseal(&user, &sealed)
                    .map_err(|e| e.to_string())?
                {
                    changes.push(UserChange::Upsert {
                        user: Arc::new(resealed),
                        source: ChangeSource::Reencrypt,
                    });
                }
            }
            users += changes.len() as u64;
            generation = writer
                .apply(changes, None)
                .await
                .map_err(|e| e.to_string())?;
        }
    }
    if users > 0 {
        tracing::info!(
            users,
            active_key = sensitive.ring.active_id(),
            "re-sealed sensitive values"
        );
    }
    Ok(Resealed { users, generation })
}

impl Sealer for Sensitive {
    fn seal(&self, user: Arc<User>) -> Result<Arc<User>, String> {
        if user.sealed.is_some() {
            return Ok(user);
        }
        match self.seal_user(&user) {
            Ok(Some(sealed)) => Ok(Arc::new(sealed)),
            Ok(None) => Ok(user),
            Err(error) => Err(error.to_string()),
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

/// The same for a filter literal; dates have no stored form to compare with.
fn normalize_literal(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(format!("s{s}")),
        Value::Integer(i) => Some(format!("n{}", canonical_number(*i as f64))),
        Value::Float(f) => Some(format!("n{}", canonical_number(*f))),
        Value::Bool(b) => Some(format!("b{b}")),
        Value::Null => Some("z".into()),
        Value::Date(_) => None,
    }
}

fn canonical_number(f: f64) -> String {
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

/// Keys for tests: a ring whose active key is `active` among `ids`.
#[cfg(test)]
pub(crate) fn test_ring(ids: &[&str]) -> String {
    let mut text = generate_key_line(BLIND_INDEX_ID);
    for id in ids {
        text.push('\n');
        text.push_str(&generate_key_line(id));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::query::{FilterLimits, parse_filter, parse_path};

    fn user(private: Json) -> User {
        let raw = serde_json::json!({
            "id": "user_1", "object": "user", "created_at": 1, "updated_at": 2,
            "public_metadata": {"plan": "pro"}, "private_metadata": private, "unsafe_metadata": {}
        });
        let raw = serde_json::value::RawValue::from_string(raw.to_string()).unwrap();
        crate::clerk::model::parse_user(&raw).unwrap()
    }

    fn sensitive(paths: &str, ring: &str) -> Sensitive {
        Sensitive::new(
            SensitivePaths::parse(paths).unwrap(),
            KeyRing::parse(ring).unwrap(),
        )
    }

    #[test]
    fn paths_parse_and_cover_what_is_below_them() {
        let paths =
            SensitivePaths::parse("private.ssn, private_metadata.medical.*, public.`a.b`").unwrap();
        for covered in [
            "private.ssn",
            "private.medical",
            "private.medical.condition",
            "public.`a.b`.c",
        ] {
            assert!(paths.covers(&parse_path(covered).unwrap()), "{covered}");
        }
        for open in [
            "private.ltv",
            "private.ssn_last4",
            "public.a",
            "unsafe.ssn",
            "email",
        ] {
            assert!(!paths.covers(&parse_path(open).unwrap()), "{open}");
        }
        assert!(SensitivePaths::parse("email").is_err());
        assert!(SensitivePaths::parse("private").is_err());
    }

    #[test]
    fn key_rings_parse_and_never_quote_a_key() {
        let ring = KeyRing::parse(&test_ring(&["k2", "k1"])).unwrap();
        assert_eq!(ring.active_id(), "k2");
        assert_eq!(ring.ids().collect::<Vec<_>>(), ["k2", "k1"]);
        assert!(
            KeyRing::parse("k1 c2hvcnQ=")
                .unwrap_err()
                .contains("32 bytes")
        );
        assert!(
            KeyRing::parse(&generate_key_line("k1"))
                .unwrap_err()
                .contains("blind-index")
        );
        assert!(
            KeyRing::parse(&generate_key_line(BLIND_INDEX_ID))
                .unwrap_err()
                .contains("no encryption key")
        );
        let secret = generate_key_line("k1");
        let error = KeyRing::parse(&format!("{secret} extra")).unwrap_err();
        assert!(
            !error.contains(secret.split(' ').nth(1).unwrap()),
            "{error}"
        );
        assert!(!format!("{ring:?}").contains(&BASE64.encode(ring.blind)));
    }

    #[test]
    fn sealing_cuts_values_out_encrypts_them_and_opens_them_again() {
        let s = sensitive(
            "private.ssn, private.medical.*, private.contacts.phone",
            &test_ring(&["k1"]),
        );
        let user = user(serde_json::json!({
            "ssn": "123-45-6789", "ltv": 10,
            "medical": {"condition": "asthma", "since": 2019},
            "contacts": [{"phone": "555-0100", "name": "Al"}]
        }));
        let sealed = s.seal_user(&user).unwrap().unwrap();
        for secret in ["123-45-6789", "asthma", "555-0100"] {
            assert!(
                !sealed.raw_json.contains(secret),
                "{secret} in {}",
                sealed.raw_json
            );
            assert!(!sealed.private_metadata.to_string().contains(secret));
            assert!(!sealed.sealed.as_ref().unwrap().values.contains(secret));
        }
        assert_eq!(sealed.private_metadata["ltv"], 10);
        assert!(sealed.raw_json.contains("\"ltv\":10"));
        let opened = s
            .reveal(&user.id, &sealed.sealed.as_ref().unwrap().values)
            .unwrap();
        let find = |path: &str| {
            let FieldPath::Metadata { namespace, keys } = parse_path(path).unwrap() else {
                panic!()
            };
            opened
                .iter()
                .find(|(n, k, _)| *n == namespace && *k == keys)
                .map(|(_, _, v)| v.clone())
        };
        assert_eq!(find("private.ssn").unwrap(), "123-45-6789");
        assert_eq!(
            find("private.medical").unwrap(),
            serde_json::json!({"condition": "asthma", "since": 2019})
        );
        // Under an array, the whole array is sealed.
        assert_eq!(
            find("private.contacts").unwrap(),
            serde_json::json!([{"phone": "555-0100", "name": "Al"}])
        );
        // A ciphertext opens only for its own user and path.
        let values = &sealed.sealed.as_ref().unwrap().values;
        assert!(matches!(
            s.reveal("user_2", values),
            Err(SealError::Damaged { .. })
        ));
        let swapped = values.replacen("private_metadata.ssn", "private_metadata.zzz", 1);
        assert!(s.reveal(&user.id, &swapped).is_err());
        // Without sensitive values, nothing changes.
        assert!(
            s.seal_user(&self::user(serde_json::json!({"ltv": 1})))
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn equality_filters_match_the_tokens_of_the_sealed_values_only() {
        let s = sensitive("private.ssn, private.medical", &test_ring(&["k1"]));
        let user = Arc::new(user(
            serde_json::json!({"ssn": "123-45-6789", "medical": {"codes": [7, 9.5]}}),
        ));
        let sealed = s.seal(user.clone()).unwrap();
        let limits = FilterLimits::default();
        let check = |text: &str, expected: bool| {
            let filter = s.seal_filter(parse_filter(text, &limits).unwrap()).unwrap();
            assert_eq!(
                crate::query::eval::matches(&filter, &sealed, 0),
                expected,
                "{text}"
            );
        };
        check(r#"private.ssn = "123-45-6789""#, true);
        check(r#"private.ssn = "123-45-6780""#, false);
        check(r#"private.ssn != "123-45-6789""#, false);
        check(r#"private.ssn IN ["x", "123-45-6789"]"#, true);
        check("private.medical.codes = 7.0", true);
        check("private.medical.codes = 9.5", true);
        check(r#"private.medical.codes = "7""#, false);
        check(
            r#"private.ssn = "123-45-6789" AND public.plan = "pro""#,
            true,
        );
        for refused in [
            r#"private.ssn > "1""#,
            r#"private.ssn STARTS WITH "123""#,
            "private.ssn EXISTS",
            "private.ssn = 2024-01-01",
        ] {
            let error = s
                .seal_filter(parse_filter(refused, &limits).unwrap())
                .unwrap_err();
            assert!(error.contains("private.ssn is a sensitive path"), "{error}");
            assert!(!error.contains("123"), "{error}");
        }
        // Another blind-index key gives other tokens (and another fingerprint).
        let other = sensitive("private.ssn, private.medical", &test_ring(&["k1"]));
        let filter = other
            .seal_filter(parse_filter(r#"private.ssn = "123-45-6789""#, &limits).unwrap())
            .unwrap();
        assert!(!crate::query::eval::matches(&filter, &sealed, 0));
        assert_ne!(s.fingerprint(), other.fingerprint());
    }

    #[test]
    fn rotation_keeps_old_values_readable_and_reseals_them_under_the_new_key() {
        let old_ring = test_ring(&["k1"]);
        let old = sensitive("private.ssn", &old_ring);
        let user = user(serde_json::json!({"ssn": "123-45-6789"}));
        let sealed_old = old.seal_user(&user).unwrap().unwrap();
        let values_old = sealed_old.sealed.as_ref().unwrap().values.clone();
        assert!(values_old.contains("\"k1:"));
        // The new ring: k2 active, k1 still there, the same blind-index key.
        let blind = old_ring.lines().next().unwrap();
        let new_ring = format!(
            "{blind}\n{}\n{}",
            generate_key_line("k2"),
            old_ring.lines().nth(1).unwrap()
        );
        let new = sensitive("private.ssn", &new_ring);
        assert_eq!(
            new.fingerprint(),
            old.fingerprint(),
            "same paths, same blind key"
        );
        assert_eq!(
            new.reveal(&user.id, &values_old).unwrap()[0].2,
            "123-45-6789"
        );
        let resealed = new.reseal(&sealed_old, &values_old).unwrap().unwrap();
        let values_new = &resealed.sealed.as_ref().unwrap().values;
        assert!(values_new.contains("\"k2:") && !values_new.contains("\"k1:"));
        assert!(
            resealed
                .sealed
                .as_ref()
                .unwrap()
                .tokens
                .contains(&Sensitive::key_token("k2"))
        );
        assert_eq!(
            new.reveal(&user.id, values_new).unwrap()[0].2,
            "123-45-6789"
        );
        assert!(
            new.reseal(&resealed, values_new).unwrap().is_none(),
            "already current"
        );
        // Without k1 the old value cannot be opened, and the error names the key only.
        let without_k1 = sensitive(
            "private.ssn",
            &format!("{blind}\n{}", generate_key_line("k2")),
        );
        assert_eq!(
            without_k1.reveal(&user.id, &values_old).unwrap_err(),
            SealError::UnknownKey("k1".into())
        );
    }
}
