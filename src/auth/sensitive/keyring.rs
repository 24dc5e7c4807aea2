//! The sensitive key ring: one blind-index key and encryption keys by id, the first active.
//! Parse errors name the line, never a key.

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use rand::RngCore;

/// The id the blind-index key has in the key ring text.
pub(super) const BLIND_INDEX_ID: &str = "blind-index";

/// What is wrong with a key ring's text (with the line, when one line is at fault).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("sensitive keys{}: {reason}", line.map(|l| format!(", line {l}")).unwrap_or_default())]
pub struct KeyRingError {
    pub line: Option<usize>,
    pub reason: String,
}

impl KeyRingError {
    fn at(line: usize, reason: String) -> KeyRingError {
        KeyRingError {
            line: Some(line),
            reason,
        }
    }

    fn whole(reason: &str) -> KeyRingError {
        KeyRingError {
            line: None,
            reason: reason.into(),
        }
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
    pub fn parse(text: &str) -> Result<KeyRing, KeyRingError> {
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
                return Err(KeyRingError::at(
                    line_number,
                    "expected `<key id> <32 bytes in base64>`".into(),
                ));
            };
            if !id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            {
                return Err(KeyRingError::at(
                    line_number,
                    "a key id holds only letters, digits, '-' and '_'".into(),
                ));
            }
            let key: [u8; 32] = BASE64
                .decode(key)
                .ok()
                .and_then(|bytes| bytes.try_into().ok())
                .ok_or_else(|| {
                    KeyRingError::at(
                        line_number,
                        format!(
                            "key {id:?} is not 32 bytes in base64 (make one with `clerk-index sensitive-key create`)"
                        ),
                    )
                })?;
            if id == BLIND_INDEX_ID {
                if blind.replace(key).is_some() {
                    return Err(KeyRingError::at(
                        line_number,
                        "a second blind-index key".into(),
                    ));
                }
            } else if keys.iter().any(|(existing, _)| existing == id) {
                return Err(KeyRingError::at(
                    line_number,
                    format!("key id {id:?} is used twice"),
                ));
            } else {
                keys.push((id.to_string(), key));
            }
        }
        let blind = blind.ok_or(KeyRingError::whole("no `blind-index` key"))?;
        if keys.is_empty() {
            return Err(KeyRingError::whole(
                "no encryption key (a line `<key id> <key>`)",
            ));
        }
        Ok(KeyRing { blind, keys })
    }

    pub fn active_id(&self) -> &str {
        &self.keys[0].0
    }

    pub fn ids(&self) -> impl Iterator<Item = &str> {
        self.keys.iter().map(|(id, _)| id.as_str())
    }

    /// The active encryption key and its id.
    pub(super) fn active(&self) -> (&str, &[u8; 32]) {
        let (id, key) = &self.keys[0];
        (id, key)
    }

    pub(super) fn blind_key(&self) -> &[u8; 32] {
        &self.blind
    }

    pub(super) fn key(&self, id: &str) -> Option<&[u8; 32]> {
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
