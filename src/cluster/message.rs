//! The change log's message format. Headers say what changed and where it came from; the body
//! is Clerk's own JSON, so the log stays readable with any NATS tool:
//! - `Clerk-Index-Change: upsert`: the body is the user's Clerk JSON (unknown fields kept);
//! - `Clerk-Index-Change: delete`: the body is `{"user_id": "...", "deleted_at_ms": N}`;
//! - `organization-upsert`: the organization's Clerk JSON; `organization-delete`:
//!   `{"organization_id": "...", "deleted_at_ms": N}`;
//! - `membership-upsert` / `membership-delete`: `{"membership": <the membership as the index
//!   keeps it>, "organization": <the organization it carried, or null>, "deleted_at_ms": N}`;
//! - `segment-tick`: `{"at_ms": N}`, the lease holder moving every replica's time-driven
//!   segments to one instant at one position of the log (subject [`TICK_TOKEN`], kept once).

use std::sync::Arc;

use async_nats::HeaderMap;
use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::change::{Change, ChangeSource, MembershipChange, OrganizationChange, UserChange};
use crate::clerk::{
    OrganizationParseError, UserParseError, parse_organization, parse_stored_membership,
    user_from_json,
};
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

#[derive(Serialize, Deserialize)]
struct OrganizationDeletion {
    organization_id: String,
    deleted_at_ms: i64,
}

#[derive(Serialize, Deserialize)]
struct MembershipMessage<'a> {
    #[serde(borrow)]
    membership: &'a serde_json::value::RawValue,
    #[serde(borrow)]
    organization: Option<&'a serde_json::value::RawValue>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    deleted_at_ms: Option<i64>,
}

/// The subject token of segment ticks: no user or organization id is spelled this way
/// ([`subject_token`] writes ids as `[A-Za-z0-9_-]+` or `x<hex>`).
pub const TICK_TOKEN: &str = "~segment-tick";
const TICK_KIND: &str = "segment-tick";

#[derive(Serialize, Deserialize)]
struct Tick {
    at_ms: i64,
}

/// A segment tick's headers and body.
pub fn encode_tick(at_ms: i64) -> (HeaderMap, Bytes) {
    let mut headers = HeaderMap::new();
    headers.insert(CHANGE, TICK_KIND);
    let body = serde_json::to_vec(&Tick { at_ms }).expect("a tick serializes");
    (headers, Bytes::from(body))
}

/// The instant of a segment tick, or `None` for any other message (an unreadable tick too: it
/// is then reported by [`decode`]).
pub fn decode_tick(headers: Option<&HeaderMap>, payload: &[u8]) -> Option<i64> {
    let kind = headers?.get(CHANGE)?.as_str();
    if kind != TICK_KIND {
        return None;
    }
    serde_json::from_slice::<Tick>(payload)
        .ok()
        .map(|t| t.at_ms)
}

/// Why a change log message cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum MessageError {
    #[error("the {CHANGE} header is {0:?}, not a known kind of change")]
    UnknownKind(Option<String>),
    #[error("the user JSON is unreadable: {0}")]
    User(#[from] UserParseError),
    #[error("the deletion is unreadable: {0}")]
    Deletion(serde_json::Error),
    #[error("the organization or membership is unreadable: {0}")]
    Organization(#[from] OrganizationParseError),
    #[error("the message has no {0}")]
    Incomplete(&'static str),
}

/// The headers and body of `change`.
pub fn encode(change: &Change) -> (HeaderMap, Bytes) {
    let change = match change {
        Change::User(change) => change,
        Change::Organization(change) => return encode_organization(change),
        Change::Membership(change) => return encode_membership(change),
    };
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

fn encode_organization(change: &OrganizationChange) -> (HeaderMap, Bytes) {
    let mut headers = HeaderMap::new();
    headers.insert(SOURCE, change.source().name());
    let body = match change {
        OrganizationChange::Upsert { organization, .. } => {
            headers.insert(CHANGE, "organization-upsert");
            Bytes::copy_from_slice(organization.raw_json.as_bytes())
        }
        OrganizationChange::Delete {
            organization_id,
            deleted_at_ms,
            ..
        } => {
            headers.insert(CHANGE, "organization-delete");
            let deletion = OrganizationDeletion {
                organization_id: organization_id.clone(),
                deleted_at_ms: *deleted_at_ms,
            };
            Bytes::from(serde_json::to_vec(&deletion).expect("a deletion serializes"))
        }
    };
    (headers, body)
}

fn encode_membership(change: &MembershipChange) -> (HeaderMap, Bytes) {
    let raw = |json: &str| -> Box<serde_json::value::RawValue> {
        serde_json::value::RawValue::from_string(json.to_string()).expect("kept JSON is JSON")
    };
    let mut headers = HeaderMap::new();
    headers.insert(SOURCE, change.source().name());
    let membership = raw(&change.membership().raw_json);
    let (kind, organization, deleted_at_ms) = match change {
        MembershipChange::Upsert { organization, .. } => (
            "membership-upsert",
            organization.as_ref().map(|org| raw(&org.raw_json)),
            None,
        ),
        MembershipChange::Delete { deleted_at_ms, .. } => {
            ("membership-delete", None, Some(*deleted_at_ms))
        }
    };
    headers.insert(CHANGE, kind);
    let message = MembershipMessage {
        membership: &membership,
        organization: organization.as_deref(),
        deleted_at_ms,
    };
    let body = serde_json::to_vec(&message).expect("a membership serializes");
    (headers, Bytes::from(body))
}

fn decode_membership(
    payload: &[u8],
    source: ChangeSource,
    delete: bool,
) -> Result<Change, MessageError> {
    let message: MembershipMessage =
        serde_json::from_slice(payload).map_err(MessageError::Deletion)?;
    let membership = Arc::new(parse_stored_membership(message.membership.get())?);
    if delete {
        return Ok(Change::Membership(MembershipChange::Delete {
            membership,
            deleted_at_ms: message
                .deleted_at_ms
                .ok_or(MessageError::Incomplete("deleted_at_ms"))?,
            source,
        }));
    }
    let organization = message
        .organization
        .map(parse_organization)
        .transpose()?
        .map(Arc::new);
    Ok(Change::Membership(MembershipChange::Upsert {
        membership,
        organization,
        source,
    }))
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
        Some("organization-upsert") => {
            let raw: &serde_json::value::RawValue =
                serde_json::from_slice(payload).map_err(MessageError::Deletion)?;
            Ok(Change::Organization(OrganizationChange::Upsert {
                organization: Arc::new(parse_organization(raw)?),
                source,
            }))
        }
        Some("organization-delete") => {
            let deletion: OrganizationDeletion =
                serde_json::from_slice(payload).map_err(MessageError::Deletion)?;
            Ok(Change::Organization(OrganizationChange::Delete {
                organization_id: deletion.organization_id,
                deleted_at_ms: deletion.deleted_at_ms,
                source,
            }))
        }
        Some(kind @ ("membership-upsert" | "membership-delete")) => {
            decode_membership(payload, source, kind == "membership-delete")
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
    fn organization_and_membership_changes_survive_the_round_trip() {
        let org = crate::index::org_tests::organization("org_acme", 10, "Acme", "free");
        let member =
            crate::index::org_tests::membership("orgmem_1", "user_1", &org, "org:admin", 20);
        let changes = [
            Change::Organization(OrganizationChange::Upsert {
                organization: org.clone(),
                source: ChangeSource::Backfill,
            }),
            Change::Organization(OrganizationChange::Delete {
                organization_id: "org_acme".into(),
                deleted_at_ms: 30,
                source: ChangeSource::Webhook,
            }),
            Change::Membership(MembershipChange::Upsert {
                membership: member.clone(),
                organization: Some(org.clone()),
                source: ChangeSource::Webhook,
            }),
            Change::Membership(MembershipChange::Upsert {
                membership: member.clone(),
                organization: None,
                source: ChangeSource::Reconcile,
            }),
            Change::Membership(MembershipChange::Delete {
                membership: member.clone(),
                deleted_at_ms: 40,
                source: ChangeSource::Webhook,
            }),
        ];
        for change in changes {
            let (headers, body) = encode(&change);
            let decoded = decode(Some(&headers), &body).unwrap();
            // Same key, same source, and neither supersedes the other: the same change.
            assert_eq!(decoded.key(), change.key());
            assert_eq!(decoded.source(), change.source());
            assert!(!decoded.supersedes(&change), "{change:?}");
            if let (
                Change::Membership(MembershipChange::Upsert {
                    organization,
                    membership,
                    ..
                }),
                Change::Membership(MembershipChange::Upsert {
                    organization: sent, ..
                }),
            ) = (&decoded, &change)
            {
                assert_eq!(organization.is_some(), sent.is_some());
                assert_eq!(**membership, *member);
            }
        }
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
