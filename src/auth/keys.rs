//! API keys: a name, scopes and the SHA-256 of the key, one per line.
//!
//! ```text
//! # name       scopes                  hash of the key
//! frontend     public                  sha256:3b1f...
//! marketing    public,private,segments sha256:9a0c...
//! ```
//!
//! Keys are 160 random bits (`cki_` and 27 base62 characters), so one SHA-256 is as hard to
//! reverse as the key is to guess; a slow password hash would only slow every request down.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use rand::Rng;
use sha2::{Digest, Sha256};

use super::caller::Caller;
use super::scope::Scopes;

/// The configured keys, by hash.
#[derive(Clone, Default)]
pub struct ApiKeys {
    by_hash: HashMap<[u8; 32], Caller>,
}

impl fmt::Debug for ApiKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiKeys")
            .field("keys", &self.describe())
            .finish()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("API keys, line {line}: {message}")]
pub struct KeysError {
    pub line: usize,
    pub message: String,
}

impl ApiKeys {
    /// Parses the key list (see the module docs). Blank lines and `#` comments are skipped.
    pub fn parse(text: &str) -> Result<ApiKeys, KeysError> {
        let mut keys = ApiKeys::default();
        let mut names = HashMap::new();
        for (index, line) in text.lines().enumerate() {
            let line_number = index + 1;
            let error = |message: String| KeysError {
                line: line_number,
                message,
            };
            let line = line.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            let parts: Vec<&str> = line.split_whitespace().collect();
            let [name, scopes, hash] = parts[..] else {
                return Err(error(
                    "expected `<name> <scope,scope,...> sha256:<hex>`".into(),
                ));
            };
            if !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
            {
                return Err(error(format!(
                    "key name {name:?} may hold only letters, digits, '.', '_' and '-'"
                )));
            }
            let scopes = Scopes::parse_list(scopes).map_err(|e| error(e.to_string()))?;
            if scopes.is_empty() {
                return Err(error(format!("key {name:?} has no scopes")));
            }
            let hash = parse_hash(hash).ok_or_else(|| {
                if hash.starts_with("cki_") {
                    error(format!(
                        "key {name:?} is given as the key itself; configure its hash (`clerk-index api-key hash`)"
                    ))
                } else {
                    error(format!("key {name:?}: the hash is not sha256:<64 hex digits>"))
                }
            })?;
            if let Some(first) = names.insert(name.to_string(), line_number) {
                return Err(error(format!(
                    "key name {name:?} is already used on line {first}"
                )));
            }
            let caller = Caller {
                name: Arc::from(name),
                scopes,
                sensitive: None,
            };
            if keys.by_hash.insert(hash, caller).is_some() {
                return Err(error(format!(
                    "key {name:?} has the same hash as an earlier key"
                )));
            }
        }
        Ok(keys)
    }

    pub fn is_empty(&self) -> bool {
        self.by_hash.is_empty()
    }

    /// `name (scopes)` of every key, sorted: what may be shown of the list.
    pub fn describe(&self) -> Vec<String> {
        let mut keys: Vec<String> = self
            .by_hash
            .values()
            .map(|c| format!("{} ({})", c.name, c.scopes))
            .collect();
        keys.sort();
        keys
    }

    pub fn len(&self) -> usize {
        self.by_hash.len()
    }

    /// The caller holding `key`, if it is configured.
    pub fn find(&self, key: &str) -> Option<Caller> {
        self.by_hash.get(&hash_key(key)).cloned()
    }
}

fn parse_hash(text: &str) -> Option<[u8; 32]> {
    let hex = text.strip_prefix("sha256:")?;
    if hex.len() != 64 {
        return None;
    }
    let mut hash = [0u8; 32];
    for (i, byte) in hash.iter_mut().enumerate() {
        *byte = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(hash)
}

/// The SHA-256 of a key, as configured.
pub fn hash_key(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

/// `sha256:<hex>` of a key: the form the key list holds.
pub fn hash_text(key: &str) -> String {
    let hash = hash_key(key);
    let hex: String = hash.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256:{hex}")
}

/// A new random key and its configured hash.
pub fn generate_key() -> (String, String) {
    const ALPHABET: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    let mut rng = rand::rng();
    // 27 base62 characters carry 160.7 bits.
    let mut key = String::from("cki_");
    key.extend((0..27).map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char));
    let hash = hash_text(&key);
    (key, hash)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::Scope;

    #[test]
    fn key_lists_parse_with_comments_and_find_keys_by_hash() {
        let (key_a, hash_a) = generate_key();
        let (key_b, hash_b) = generate_key();
        assert!(key_a.starts_with("cki_") && key_a.len() == 31);
        assert_ne!(key_a, key_b);
        let keys = ApiKeys::parse(&format!(
            "# name scopes hash\n\nfrontend public {hash_a}   # the web app\nops admin,segments {hash_b}\n"
        ))
        .unwrap();
        assert_eq!(keys.len(), 2);
        let ops = keys.find(&key_b).unwrap();
        assert_eq!(&*ops.name, "ops");
        assert!(ops.scopes.contains(Scope::Admin) && !ops.scopes.contains(Scope::Public));
        assert!(keys.find(&hash_a).is_none(), "the hash is not a key");
        assert!(keys.find("cki_nope").is_none());
        // The key list's debug form names keys and scopes, never hashes.
        let debug = format!("{keys:?}");
        assert!(debug.contains("frontend (public)") && !debug.contains(&hash_a[7..]));
    }

    #[test]
    fn bad_key_lists_say_which_line_and_why() {
        let (key, hash) = generate_key();
        let cases = [
            (format!("a public {hash}\nb"), 2, "expected"),
            (format!("a publik {hash}"), 1, "unknown scope \"publik\""),
            (format!("a public {key}"), 1, "the key itself"),
            ("a public sha256:abc".to_string(), 1, "64 hex digits"),
            (format!("a/b public {hash}"), 1, "may hold only"),
            (
                format!("a public {hash}\na private {}", generate_key().1),
                2,
                "already used on line 1",
            ),
            (format!("a public {hash}\nb private {hash}"), 2, "same hash"),
            (format!("a , {hash}"), 1, "no scopes"),
        ];
        for (text, line, message) in cases {
            let error = ApiKeys::parse(&text).unwrap_err();
            assert_eq!(error.line, line, "{text}: {error}");
            assert!(error.to_string().contains(message), "{text}: {error}");
        }
    }
}
