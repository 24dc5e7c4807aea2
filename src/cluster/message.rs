//! The change log's message format. Headers say what changed and where it came from; the body
//! is Clerk's own JSON, so the log stays readable with any NATS tool:
//! - `Clerk-Index-Change: upsert`: the body is the user's Clerk JSON (unknown fields kept);
//! - `Clerk-Index-Change: delete`: the body is `{"user_id": "...", "deleted_at_ms": N}`.

use std::sync::Arc;

use async_nats::HeaderMap;
use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::change::{Change, ChangeSource, UserChange};
use crate::clerk::{UserParseError, user_from_json};
use crate::user::Sealed;

const CHANGE: &str = "Clerk-Index-Change";
const SOURCE: &str = "Clerk-Index-Source";
/// A sealed user's encrypted sensitive values (the body then holds none of them).
const SEALED: &str = "Clerk-Index-Sealed";
/// A sealed user's blind-index tokens, space-separated.
const SEALED_TOKENS: &str = "Clerk-Index-Sealed-Tokens";

#[derive(Serialize, Deserialize)]
struct Deletion {
    user_id: String,
    deleted_at_ms: i64,
}

/// Why a change log message cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum MessageError {
    #[error("the {CHANGE} header is {0:?}, not upsert or delete")]
    UnknownKind(Option<String>),
    #[error("the user JSON is unreadable: {0}")]
    User(#[from] UserParseError),
    #[error("the deletion is unreadable: {0}")]
    Deletion(serde_json::Error),
}

/// The headers and body of `change`.
pub fn encode(change: &Change) -> (HeaderMap, Bytes) {
    let Change::User(change) = change;
    let mut headers = HeaderMap::new();
    headers.insert(SOURCE, change.source().name());
    let body = match change {
        UserChange::Upsert { user, .. } => {
            headers.insert(CHANGE, "upsert");
            // Sealed before publishing: plaintext of a sensitive path never crosses NATS.
            if let Some(sealed) = &user.sealed {
                headers.insert(SEALED, sealed.values.as_str());
                headers.insert(SEALED_TOKENS, sealed.tokens.join(" ").as_str());
            }
            Bytes::copy_from_slice(user.raw_json.as_bytes())
        }
        UserChange::Delete {
            user_id,
            deleted_at_ms,
            ..
        } => {
            headers.insert(CHANGE, "delete");
            let deletion = Deletion {
                user_id: user_id.clone(),
                deleted_at_ms: *deleted_at_ms,
            };
            Bytes::from(serde_json::to_vec(&deletion).expect("a deletion serializes"))
        }
    };
    (headers, body)
}

/// The change a message carries.
pub fn decode(headers: Option<&HeaderMap>, payload: &[u8]) -> Result<Change, MessageError> {
    let header = |name: &str| {
        headers
            .and_then(|headers| headers.get(name))
            .map(|value| value.as_str().to_string())
    };
    let source = match header(SOURCE).as_deref() {
        Some("backfill") => ChangeSource::Backfill,
        Some("reconcile") => ChangeSource::Reconcile,
        Some("write_through") => ChangeSource::WriteThrough,
        Some("reencrypt") => ChangeSource::Reencrypt,
        _ => ChangeSource::Webhook,
    };
    match header(CHANGE).as_deref() {
        Some("upsert") => {
            let json = std::str::from_utf8(payload)
                .map_err(|e| UserParseError::Malformed(e.to_string()))?;
            let mut user = user_from_json(json)?;
            if let Some(values) = header(SEALED) {
                let tokens = header(SEALED_TOKENS).unwrap_or_default();
                user.sealed = Some(Arc::new(Sealed {
                    values,
                    tokens: tokens.split_whitespace().map(String::from).collect(),
                }));
            }
            Ok(Change::User(UserChange::Upsert {
                user: Arc::new(user),
                source,
            }))
        }
        Some("delete") => {
            let deletion: Deletion =
                serde_json::from_slice(payload).map_err(MessageError::Deletion)?;
            Ok(Change::User(UserChange::Delete {
                user_id: deletion.user_id,
                deleted_at_ms: deletion.deleted_at_ms,
                source,
            }))
        }
        other => Err(MessageError::UnknownKind(other.map(String::from))),
    }
}

/// A subject token for a change's key (a user id): the id itself when NATS allows it (Clerk's `user_...` ids
/// always are), else `x` and its bytes in hex, so no id can reach into another subject.
pub(super) fn subject_token(key: &str) -> String {
    let plain = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if plain {
        key.to_string()
    } else {
        let hex: String = key.bytes().map(|b| format!("{b:02x}")).collect();
        format!("x{hex}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clerk::fake::Population;

    fn user_change() -> Change {
        let json = serde_json::to_string(&Population::new(1).user(0)).unwrap();
        Change::User(UserChange::Upsert {
            user: Arc::new(user_from_json(&json).unwrap()),
            source: ChangeSource::Reconcile,
        })
    }

    #[test]
    fn changes_survive_the_round_trip() {
        let upsert = user_change();
        let (headers, body) = encode(&upsert);
        match (decode(Some(&headers), &body).unwrap(), &upsert) {
            (
                Change::User(UserChange::Upsert { user, source }),
                Change::User(UserChange::Upsert { user: original, .. }),
            ) => {
                assert_eq!(user.raw_json, original.raw_json);
                assert_eq!(user.updated_at, original.updated_at);
                assert_eq!(source, ChangeSource::Reconcile);
            }
            other => panic!("{other:?}"),
        }
        let delete = Change::User(UserChange::Delete {
            user_id: "user_2x".into(),
            deleted_at_ms: 1_700_000_000_000,
            source: ChangeSource::Webhook,
        });
        let (headers, body) = encode(&delete);
        match decode(Some(&headers), &body).unwrap() {
            Change::User(UserChange::Delete {
                user_id,
                deleted_at_ms,
                source,
            }) => {
                assert_eq!(
                    (user_id.as_str(), deleted_at_ms, source),
                    ("user_2x", 1_700_000_000_000, ChangeSource::Webhook)
                );
            }
            other => panic!("{other:?}"),
        }
        assert!(
            decode(None, &body)
                .unwrap_err()
                .to_string()
                .contains("Clerk-Index-Change")
        );
    }

    #[test]
    fn user_ids_cannot_escape_their_subject() {
        assert_eq!(subject_token("user_2abcDEF"), "user_2abcDEF");
        assert_eq!(subject_token("a.b"), "x612e62");
        assert_eq!(subject_token("*"), "x2a");
        assert_eq!(subject_token(">"), "x3e");
        assert_eq!(subject_token(""), "x");
    }
}
