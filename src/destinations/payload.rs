//! What a destination receives: JSON messages in the Standard Webhooks shape (`type`,
//! `timestamp`, `data`), signed with the Standard Webhooks scheme — `webhook-id`,
//! `webhook-timestamp` and `webhook-signature: v1,<base64 HMAC-SHA256 of id.timestamp.body>`,
//! one signature per secret in force — so Svix's and Standard Webhooks' libraries verify them.

use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use rand::RngCore;
use serde_json::{Value as Json, json};

use crate::clerk::webhook::WebhookVerifier;
use crate::segments::{EventKind, SegmentEvent};

/// One request's worth: its stable id (the same on every retry) and body.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    pub id: String,
    pub body: Vec<u8>,
}

/// A new signing secret, `whsec_` and 32 random bytes in base64.
pub fn new_secret() -> String {
    let mut key = [0u8; 32];
    rand::rng().fill_bytes(&mut key);
    format!("whsec_{}", BASE64.encode(key))
}

/// The `webhook-signature` header: a `v1,` signature per secret, space-separated.
pub fn signature(secrets: &[String], id: &str, timestamp_secs: i64, body: &[u8]) -> String {
    secrets
        .iter()
        .filter_map(|secret| WebhookVerifier::new(std::slice::from_ref(secret)).ok())
        .map(|signer| signer.sign(id, timestamp_secs, body))
        .collect::<Vec<_>>()
        .join(" ")
}

pub fn rfc3339(ms: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}

/// An event's type on the wire.
pub fn event_type(kind: EventKind) -> &'static str {
    match kind {
        EventKind::Entered => "segment.entered",
        EventKind::Exited => "segment.exited",
        EventKind::SegmentUpdated => "segment.updated",
        EventKind::SegmentDeleted => "segment.deleted",
    }
}

/// An event's stable id: its sequence number in this service's log.
pub fn event_id(sequence: u64) -> String {
    format!("evt_{sequence}")
}

fn event_json(event: &SegmentEvent) -> Json {
    let mut value = json!({
        "id": event_id(event.sequence),
        "sequence": event.sequence,
        "type": event_type(event.kind),
        "segment": event.segment,
        "cause": event.cause,
        "change_time": rfc3339(event.change_time_ms),
        "recorded_at": rfc3339(event.recorded_at_ms),
    });
    if !event.user_id.is_empty() {
        value["user_id"] = json!(event.user_id);
    }
    value
}

fn message(id: String, kind: &str, now_ms: i64, data: Json) -> Message {
    let body = json!({ "type": kind, "timestamp": rfc3339(now_ms), "data": data });
    Message {
        id,
        body: serde_json::to_vec(&body).expect("JSON values serialize"),
    }
}

/// A batch of events, in sequence order. Its id names the destination and the range, so a
/// retry (even after a restart) of the same events has the same id.
pub fn events_message(destination: &str, events: &[Arc<SegmentEvent>], now_ms: i64) -> Message {
    let first = events.first().map_or(0, |e| e.sequence);
    let last = events.last().map_or(0, |e| e.sequence);
    let data = json!({
        "destination": destination,
        "events": events.iter().map(|e| event_json(e)).collect::<Vec<_>>(),
    });
    message(
        format!("msg_{destination}_{first}_{last}"),
        "segment.events",
        now_ms,
        data,
    )
}

/// One part of a resync: members of `segment` at log position `sequence`. The receiver
/// replaces the segment's members with the union of the parts once `last` arrives, then
/// applies events after `sequence`.
pub struct SnapshotPart<'a> {
    pub destination: &'a str,
    pub segment: &'a str,
    pub sequence: u64,
    pub part: usize,
    pub last: bool,
    pub user_ids: &'a [String],
}

pub fn snapshot_message(part: &SnapshotPart<'_>, now_ms: i64) -> Message {
    let data = json!({
        "destination": part.destination,
        "segment": part.segment,
        "sequence": part.sequence,
        "part": part.part,
        "last": part.last,
        "user_ids": part.user_ids,
    });
    message(
        format!(
            "snap_{}_{}_{}_{}",
            part.destination, part.sequence, part.segment, part.part
        ),
        "segment.snapshot",
        now_ms,
        data,
    )
}

/// What `TestDestination` sends: no events, just a signed request the receiver can check.
pub fn test_message(destination: &str, now_ms: i64) -> Message {
    let mut nonce = [0u8; 8];
    rand::rng().fill_bytes(&mut nonce);
    let id: String = nonce.iter().map(|b| format!("{b:02x}")).collect();
    message(
        format!("test_{destination}_{id}"),
        "destination.test",
        now_ms,
        json!({ "destination": destination }),
    )
}
