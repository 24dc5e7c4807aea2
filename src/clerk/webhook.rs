//! Clerk webhooks as Svix delivers them: signature verification and event parsing.
//!
//! Signature: `v1,` + base64(HMAC-SHA256(key, "{svix-id}.{svix-timestamp}.{raw body}")) where
//! the key is the base64 after `whsec_`. `svix-signature` may hold several space-separated
//! signatures (one per active secret); any match is enough. Timestamps more than 5 minutes off
//! in either direction are refused (replay protection). Several secrets are accepted so a
//! secret can be rotated without downtime. Checked against Svix's published test vectors.

use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use serde::Deserialize;
use serde_json::value::RawValue;
use sha2::Sha256;

use super::model::{ClerkDeletedObject, UserParseError, checked_user_id, json_error, parse_user};
use super::organization::{OrganizationParseError, parse_membership, parse_organization};
use crate::organization::{Membership, Organization, is_clerk_id};
use crate::user::User;

/// Svix's tolerance, in seconds, both ways.
pub const TIMESTAMP_TOLERANCE_SECS: i64 = 5 * 60;

/// The shortest signing key accepted, in decoded bytes. Svix's own are 24 bytes; a short key
/// (or `whsec_` alone, an empty one) makes forging a signature a matter of guessing.
pub const MIN_SECRET_BYTES: usize = 16;

/// How far ahead of the receiver's clock an envelope timestamp may order a change, ms: the same
/// tolerance as the signature's. A later timestamp is taken as now plus this.
pub const ENVELOPE_SKEW_MS: i64 = TIMESTAMP_TOLERANCE_SECS * 1000;

/// Verifies Svix signatures with one or more signing secrets.
#[derive(Clone)]
pub struct WebhookVerifier {
    keys: Arc<Vec<Vec<u8>>>,
}

impl std::fmt::Debug for WebhookVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "WebhookVerifier({} secrets)", self.keys.len())
    }
}

/// What is wrong with configured signing secrets (never quoting one).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WebhookSecretError {
    #[error("a webhook signing secret is not whsec_ followed by base64")]
    NotBase64,
    #[error("no webhook signing secret given")]
    None,
    #[error(
        "a webhook signing secret decodes to {0} bytes; at least {MIN_SECRET_BYTES} are needed (copy the whole whsec_ secret from Clerk's dashboard)"
    )]
    TooShort(usize),
}

/// Why a delivery was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("missing {0} header")]
    MissingHeader(&'static str),
    #[error("svix-timestamp is not a number")]
    BadTimestamp,
    #[error("svix-timestamp is more than 5 minutes away from now")]
    TimestampOutOfTolerance,
    #[error("no valid v1 signature")]
    NoMatchingSignature,
}

/// The three Svix headers of one delivery.
#[derive(Debug, Clone, Copy)]
pub struct SvixHeaders<'a> {
    pub id: Option<&'a str>,
    pub timestamp: Option<&'a str>,
    pub signature: Option<&'a str>,
}

impl WebhookVerifier {
    /// `secrets` are Clerk signing secrets (`whsec_...`); whitespace-separated lists are split.
    pub fn new(secrets: &[String]) -> Result<Self, WebhookSecretError> {
        let mut keys = Vec::new();
        for secret in secrets
            .iter()
            .flat_map(|s| s.split([' ', ',', '\n']))
            .filter(|s| !s.trim().is_empty())
        {
            let encoded = secret
                .trim()
                .strip_prefix("whsec_")
                .unwrap_or(secret.trim());
            let key = STANDARD
                .decode(encoded)
                .map_err(|_| WebhookSecretError::NotBase64)?;
            if key.len() < MIN_SECRET_BYTES {
                return Err(WebhookSecretError::TooShort(key.len()));
            }
            keys.push(key);
        }
        if keys.is_empty() {
            return Err(WebhookSecretError::None);
        }
        Ok(WebhookVerifier {
            keys: Arc::new(keys),
        })
    }

    /// Checks a delivery; `now_secs` is the receiver's clock.
    pub fn verify(
        &self,
        headers: SvixHeaders<'_>,
        body: &[u8],
        now_secs: i64,
    ) -> Result<(), VerifyError> {
        let id = headers.id.ok_or(VerifyError::MissingHeader("svix-id"))?;
        let timestamp = headers
            .timestamp
            .ok_or(VerifyError::MissingHeader("svix-timestamp"))?;
        let signatures = headers
            .signature
            .ok_or(VerifyError::MissingHeader("svix-signature"))?;
        let seconds: i64 = timestamp
            .trim()
            .parse()
            .map_err(|_| VerifyError::BadTimestamp)?;
        // `abs_diff` cannot wrap, whatever the sender's number.
        if now_secs.abs_diff(seconds) > TIMESTAMP_TOLERANCE_SECS.unsigned_abs() {
            return Err(VerifyError::TimestampOutOfTolerance);
        }
        self.verify_signature(id, timestamp, body, signatures)
    }

    /// The signature check alone (for test vectors with old timestamps).
    pub fn verify_signature(
        &self,
        id: &str,
        timestamp: &str,
        body: &[u8],
        signatures: &str,
    ) -> Result<(), VerifyError> {
        let candidates: Vec<Vec<u8>> = signatures
            .split_whitespace()
            .filter_map(|entry| entry.strip_prefix("v1,"))
            .filter_map(|b64| STANDARD.decode(b64).ok())
            .collect();
        for key in self.keys.iter() {
            let mac = signed_content_mac(key, id, timestamp, body);
            // `verify_slice` compares in constant time.
            if candidates
                .iter()
                .any(|candidate| mac.clone().verify_slice(candidate).is_ok())
            {
                return Ok(());
            }
        }
        Err(VerifyError::NoMatchingSignature)
    }

    /// Signs like Svix does (with the first secret), for the fake Clerk and tests.
    pub fn sign(&self, id: &str, timestamp_secs: i64, body: &[u8]) -> String {
        let mac = signed_content_mac(&self.keys[0], id, &timestamp_secs.to_string(), body);
        format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
    }
}

fn signed_content_mac(key: &[u8], id: &str, timestamp: &str, body: &[u8]) -> Hmac<Sha256> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("hmac takes keys of any length");
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body);
    mac
}

/// What a verified delivery asks for.
#[derive(Debug)]
pub enum WebhookEvent {
    /// `user.created` / `user.updated`, and `session.*` (whose payload carries the user): the
    /// full user.
    UserUpserted { user: Arc<User>, event_type: String },
    /// `user.deleted`: ordered by the envelope timestamp (the payload has no `updated_at`).
    UserDeleted { user_id: String, deleted_at_ms: i64 },
    /// `organization.created` / `organization.updated`.
    OrganizationUpserted {
        organization: Arc<Organization>,
        event_type: String,
    },
    /// `organization.deleted` (a `DeletedObject`): ordered by the envelope timestamp.
    OrganizationDeleted {
        organization_id: String,
        deleted_at_ms: i64,
    },
    /// `organizationMembership.created` / `.updated`, with the organization as of the event.
    MembershipUpserted {
        membership: Arc<Membership>,
        organization: Arc<Organization>,
        event_type: String,
    },
    /// `organizationMembership.deleted`: the payload is the membership as it was (its
    /// `updated_at` unchanged), so the deletion is ordered by the envelope timestamp.
    MembershipDeleted {
        membership: Arc<Membership>,
        deleted_at_ms: i64,
    },
    /// Any other event type: acknowledged and counted, nothing to apply.
    Other { event_type: String },
}

impl WebhookEvent {
    /// The event type of an organization or membership event.
    pub fn organization_event_type(&self) -> Option<&str> {
        match self {
            WebhookEvent::OrganizationUpserted { event_type, .. }
            | WebhookEvent::MembershipUpserted { event_type, .. } => Some(event_type),
            WebhookEvent::OrganizationDeleted { .. } => Some("organization.deleted"),
            WebhookEvent::MembershipDeleted { .. } => Some("organizationMembership.deleted"),
            _ => None,
        }
    }
}

/// A verified delivery: the instance its envelope names, and what it asks for.
#[derive(Debug)]
pub struct Delivery {
    /// The envelope's `instance_id` (Clerk's spec requires it; older payloads may lack it).
    pub instance_id: Option<String>,
    pub event: WebhookEvent,
}

#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(rename = "type")]
    event_type: String,
    #[serde(default)]
    instance_id: Option<String>,
    timestamp: Option<i64>,
    #[serde(borrow)]
    data: Option<&'a RawValue>,
}

/// The part of a `session.*` payload the index uses.
#[derive(Deserialize)]
struct SessionPayload<'a> {
    #[serde(borrow, default)]
    user: Option<&'a RawValue>,
}

/// Clerk documents the envelope timestamp in milliseconds; its spec examples use seconds.
pub fn timestamp_to_ms(timestamp: i64) -> i64 {
    if timestamp < 1_000_000_000_000 {
        timestamp.saturating_mul(1000)
    } else {
        timestamp
    }
}

/// An envelope timestamp as it may order a change: in ms, and never later than `received_at_ms`
/// plus [`ENVELOPE_SKEW_MS`]. Signed is not the same as sensible: a far-future deletion would
/// leave a tombstone that refuses every later version of the user, and would pin the freshness
/// lag at zero.
pub fn envelope_time_ms(timestamp: i64, received_at_ms: i64) -> i64 {
    timestamp_to_ms(timestamp).min(received_at_ms.saturating_add(ENVELOPE_SKEW_MS))
}

/// Parses a verified body. `received_at_ms` stands in for a missing envelope timestamp.
pub fn parse_delivery(body: &[u8], received_at_ms: i64) -> Result<Delivery, UserParseError> {
    let mut envelope: Envelope = serde_json::from_slice(body).map_err(|e| json_error(&e))?;
    let instance_id = envelope.instance_id.take();
    let event = parse_event(envelope, received_at_ms)?;
    Ok(Delivery { instance_id, event })
}

fn parse_event(envelope: Envelope, received_at_ms: i64) -> Result<WebhookEvent, UserParseError> {
    let data = || {
        envelope.data.ok_or_else(|| {
            UserParseError::Malformed(format!("{} event without data", envelope.event_type))
        })
    };
    match envelope.event_type.as_str() {
        "user.created" | "user.updated" => Ok(WebhookEvent::UserUpserted {
            user: Arc::new(parse_user(data()?)?),
            event_type: envelope.event_type.clone(),
        }),
        // A sign-in (and a session's end) need not change `updated_at`: the session's `user` is
        // the whole user as of the event, with its new `last_sign_in_at`/`last_active_at`.
        event_type if event_type.starts_with("session.") => {
            let session: SessionPayload =
                serde_json::from_str(data()?.get()).map_err(|e| json_error(&e))?;
            match session.user {
                Some(user) => Ok(WebhookEvent::UserUpserted {
                    user: Arc::new(parse_user(user)?),
                    event_type: envelope.event_type.clone(),
                }),
                None => Ok(WebhookEvent::Other {
                    event_type: envelope.event_type.clone(),
                }),
            }
        }
        "user.deleted" => {
            let deleted: ClerkDeletedObject =
                serde_json::from_str(data()?.get()).map_err(|e| json_error(&e))?;
            let user_id = checked_user_id(deleted.id)?;
            Ok(WebhookEvent::UserDeleted {
                user_id,
                deleted_at_ms: deleted_at(envelope.timestamp, received_at_ms),
            })
        }
        "organization.created" | "organization.updated" => Ok(WebhookEvent::OrganizationUpserted {
            organization: Arc::new(parse_organization(data()?).map_err(org_error)?),
            event_type: envelope.event_type.clone(),
        }),
        "organization.deleted" => {
            let deleted: ClerkDeletedObject =
                serde_json::from_str(data()?.get()).map_err(|e| json_error(&e))?;
            let organization_id =
                deleted
                    .id
                    .filter(|id| is_clerk_id(id, "org_"))
                    .ok_or_else(|| {
                        UserParseError::Malformed(
                            "organization.deleted without an organization id".into(),
                        )
                    })?;
            Ok(WebhookEvent::OrganizationDeleted {
                organization_id,
                deleted_at_ms: deleted_at(envelope.timestamp, received_at_ms),
            })
        }
        "organizationMembership.created" | "organizationMembership.updated" => {
            let parsed = parse_membership(data()?).map_err(org_error)?;
            Ok(WebhookEvent::MembershipUpserted {
                membership: Arc::new(parsed.membership),
                organization: Arc::new(parsed.organization),
                event_type: envelope.event_type.clone(),
            })
        }
        "organizationMembership.deleted" => {
            let parsed = parse_membership(data()?).map_err(org_error)?;
            Ok(WebhookEvent::MembershipDeleted {
                membership: Arc::new(parsed.membership),
                deleted_at_ms: deleted_at(envelope.timestamp, received_at_ms),
            })
        }
        _ => Ok(WebhookEvent::Other {
            event_type: envelope.event_type,
        }),
    }
}

/// When a deletion happened: the envelope's time (bounded by [`envelope_time_ms`]), or the
/// receipt time when the envelope has none.
fn deleted_at(timestamp: Option<i64>, received_at_ms: i64) -> i64 {
    timestamp.map_or(received_at_ms, |t| envelope_time_ms(t, received_at_ms))
}

/// A webhook's organization or membership that cannot be used is a malformed delivery.
fn org_error(error: OrganizationParseError) -> UserParseError {
    UserParseError::Malformed(error.to_string())
}

#[cfg(test)]
mod tests;
