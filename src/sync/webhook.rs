//! `POST /webhooks/clerk`: Svix-signed Clerk deliveries become `UserChange`s.
//!
//! Order of checks: signature first (401, nothing changes), then the body (400, nothing
//! changes), then the change is recorded and the answer waits for it to be durable (the index
//! commit, or in cluster mode JetStream's acknowledgement): a 2xx is sent only for what a crash
//! cannot lose. The writer batches concurrent deliveries into one commit.
//! Deliveries are at-least-once and unordered: a recently seen `svix-id` is acknowledged without
//! work, and everything else is safe to apply twice (older `updated_at`s and users deleted later
//! are ignored by the writer), so the duplicate memory need not survive restarts.

use std::collections::{HashSet, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::{Json, Router};
use bytes::Bytes;
use serde_json::{Value, json};
use tower_http::timeout::TimeoutLayer;
use tracing::Instrument;

use super::sink::ChangeSink;
use super::state::now_ms;
use crate::clerk::webhook::{SvixHeaders, WebhookEvent, WebhookVerifier, parse_event};
use crate::user::{ChangeSource, UserChange};

/// The path Clerk's dashboard should deliver to.
pub const WEBHOOK_PATH: &str = "/webhooks/clerk";
/// How many recent `svix-id`s are remembered for duplicate detection.
const REMEMBERED_IDS: usize = 100_000;

/// Deliveries by outcome, since start.
#[derive(Debug, Default)]
pub struct WebhookCounters {
    pub applied: AtomicU64,
    pub duplicate: AtomicU64,
    /// Verified events of types the index does not use (sessions, organizations, ...).
    pub ignored_type: AtomicU64,
    pub bad_signature: AtomicU64,
    pub malformed: AtomicU64,
    /// Verified and well-formed, but the commit failed: answered 503 so Svix retries.
    pub failed: AtomicU64,
    /// Refused with 503 because no signing secret is configured.
    pub not_configured: AtomicU64,
    /// Newest envelope event time applied, ms.
    pub newest_event_at_ms: AtomicU64,
}

/// A bounded set of recently seen ids (oldest forgotten first).
#[derive(Default)]
struct RecentIds {
    set: HashSet<String>,
    order: VecDeque<String>,
}

impl RecentIds {
    fn contains(&self, id: &str) -> bool {
        self.set.contains(id)
    }

    fn insert(&mut self, id: String) {
        if self.set.insert(id.clone()) {
            self.order.push_back(id);
            if self.order.len() > REMEMBERED_IDS
                && let Some(oldest) = self.order.pop_front()
            {
                self.set.remove(&oldest);
            }
        }
    }
}

/// Receives Clerk webhooks and hands them to the index writer.
pub struct WebhookReceiver {
    verifier: Option<WebhookVerifier>,
    sink: ChangeSink,
    seen: Mutex<RecentIds>,
    pub counters: Arc<WebhookCounters>,
}

impl WebhookReceiver {
    /// `verifier` is `None` when no signing secret is configured: every delivery is then refused
    /// with 503, so a misconfiguration is loud in Clerk's dashboard instead of silently dropped.
    pub fn new(verifier: Option<WebhookVerifier>, sink: ChangeSink) -> Self {
        WebhookReceiver {
            verifier,
            sink,
            seen: Mutex::new(RecentIds::default()),
            counters: Arc::new(WebhookCounters::default()),
        }
    }

    /// The route, with a body size limit and a request timeout.
    pub fn router(self: Arc<Self>, body_limit: usize, timeout: Duration) -> Router {
        Router::new()
            .route(WEBHOOK_PATH, post(receive_in_span))
            .layer(DefaultBodyLimit::max(body_limit))
            .layer(TimeoutLayer::with_status_code(
                StatusCode::SERVICE_UNAVAILABLE,
                timeout,
            ))
            .with_state(self)
    }

    fn count(&self, counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

fn header<'a>(headers: &'a HeaderMap, svix: &str, standard: &str) -> Option<&'a str> {
    headers
        .get(svix)
        .or_else(|| headers.get(standard))
        .and_then(|v| v.to_str().ok())
}

type Answer = (StatusCode, Json<Value>);

fn answer(status: StatusCode, outcome: &str, detail: Value) -> Answer {
    (
        status,
        Json(json!({ "outcome": outcome, "detail": detail })),
    )
}

/// [`receive`] in a server span whose parent is the W3C trace context of the request, if any.
async fn receive_in_span(
    receiver: State<Arc<WebhookReceiver>>,
    headers: HeaderMap,
    body: Bytes,
) -> Answer {
    let span = tracing::info_span!(
        "webhook",
        otel.name = concat!("POST ", "/webhooks/clerk"),
        otel.kind = "server",
        otel.status_code = tracing::field::Empty,
        http.request.method = "POST",
        http.route = WEBHOOK_PATH,
        http.response.status_code = tracing::field::Empty,
        svix.id = header(&headers, "svix-id", "webhook-id"),
        clerk.outcome = tracing::field::Empty,
    );
    crate::telemetry::otel::set_parent_from_headers(&span, &headers);
    let answer = receive(receiver, headers, body)
        .instrument(span.clone())
        .await;
    span.record("http.response.status_code", i64::from(answer.0.as_u16()));
    if let Some(outcome) = answer.1.get("outcome").and_then(Value::as_str) {
        span.record("clerk.outcome", outcome);
    }
    if answer.0.is_server_error() {
        span.record("otel.status_code", "ERROR");
    }
    answer
}

async fn receive(
    State(receiver): State<Arc<WebhookReceiver>>,
    headers: HeaderMap,
    body: Bytes,
) -> Answer {
    let Some(verifier) = &receiver.verifier else {
        receiver.count(&receiver.counters.not_configured);
        return answer(
            StatusCode::SERVICE_UNAVAILABLE,
            "not_configured",
            json!("no webhook signing secret is configured"),
        );
    };
    let svix = SvixHeaders {
        id: header(&headers, "svix-id", "webhook-id"),
        timestamp: header(&headers, "svix-timestamp", "webhook-timestamp"),
        signature: header(&headers, "svix-signature", "webhook-signature"),
    };
    if let Err(error) = verifier.verify(svix, &body, now_ms() / 1000) {
        receiver.count(&receiver.counters.bad_signature);
        tracing::warn!(%error, svix_id = svix.id, "webhook refused");
        return answer(
            StatusCode::UNAUTHORIZED,
            "bad_signature",
            json!(error.to_string()),
        );
    }
    let svix_id = svix.id.unwrap_or_default().to_string();
    if receiver
        .seen
        .lock()
        .expect("webhook id lock")
        .contains(&svix_id)
    {
        receiver.count(&receiver.counters.duplicate);
        return answer(StatusCode::OK, "duplicate", Value::Null);
    }
    let event = match parse_event(&body, now_ms()) {
        Ok(event) => event,
        Err(error) => {
            receiver.count(&receiver.counters.malformed);
            tracing::warn!(%error, %svix_id, "webhook body refused");
            return answer(
                StatusCode::BAD_REQUEST,
                "malformed",
                json!(error.to_string()),
            );
        }
    };
    let (change, event_at_ms) = match event {
        WebhookEvent::UserUpserted { user, .. } => {
            let at = user.updated_at;
            (
                UserChange::Upsert {
                    user,
                    source: ChangeSource::Webhook,
                },
                at,
            )
        }
        WebhookEvent::UserDeleted {
            user_id,
            deleted_at_ms,
        } => (
            UserChange::Delete {
                user_id,
                deleted_at_ms,
                source: ChangeSource::Webhook,
            },
            deleted_at_ms,
        ),
        WebhookEvent::Other { event_type } => {
            receiver.count(&receiver.counters.ignored_type);
            receiver
                .seen
                .lock()
                .expect("webhook id lock")
                .insert(svix_id);
            return answer(StatusCode::OK, "ignored", json!(event_type));
        }
    };
    let user_id = change.user_id().to_string();
    match receiver.sink.record(change, Some(&svix_id)).await {
        Ok(recorded) => {
            receiver.count(&receiver.counters.applied);
            receiver
                .counters
                .newest_event_at_ms
                .fetch_max(event_at_ms.max(0) as u64, Ordering::Relaxed);
            receiver
                .seen
                .lock()
                .expect("webhook id lock")
                .insert(svix_id);
            let mut detail = recorded.to_json();
            detail["user_id"] = user_id.into();
            answer(StatusCode::OK, "applied", detail)
        }
        Err(error) => {
            receiver.count(&receiver.counters.failed);
            tracing::error!(%error, %svix_id, "webhook change could not be committed");
            answer(
                StatusCode::SERVICE_UNAVAILABLE,
                "failed",
                json!(error.to_string()),
            )
        }
    }
}

/// Time since the newest change the index is known to hold was made in Clerk: the newest applied
/// webhook event or the newest `updated_at` in the index, whichever is later; 0 before any. Quiet
/// periods count too: it bounds staleness, it does not measure delivery delay.
pub fn freshness_lag_ms(webhooks: &WebhookCounters, newest_updated_at_ms: i64) -> i64 {
    let newest =
        (webhooks.newest_event_at_ms.load(Ordering::Relaxed) as i64).max(newest_updated_at_ms);
    if newest > 0 {
        (now_ms() - newest).max(0)
    } else {
        0
    }
}
