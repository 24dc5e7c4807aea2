//! `POST /webhooks/clerk`: the HTTP side of webhook deliveries. Reads the Svix headers (or their
//! Standard Webhooks spellings), hands the delivery to [`WebhookReceiver`], and turns its answer
//! into a status and a JSON body, in a server span whose parent is the request's trace context.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::{Json, Router};
use bytes::Bytes;
use serde_json::{Value, json};
use tower_http::timeout::TimeoutLayer;
use tracing::Instrument;

use crate::clerk::webhook::SvixHeaders;
use crate::sync::{Recorded, WebhookAnswer, WebhookDetail, WebhookOutcome, WebhookReceiver};

/// The path Clerk's dashboard should deliver to.
pub const WEBHOOK_PATH: &str = "/webhooks/clerk";

/// The route, with a body size limit and a request timeout.
pub fn webhook_router(
    receiver: Arc<WebhookReceiver>,
    body_limit: usize,
    timeout: Duration,
) -> Router {
    Router::new()
        .route(WEBHOOK_PATH, post(receive))
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::SERVICE_UNAVAILABLE,
            timeout,
        ))
        .with_state(receiver)
}

fn header<'a>(headers: &'a HeaderMap, svix: &str, standard: &str) -> Option<&'a str> {
    headers
        .get(svix)
        .or_else(|| headers.get(standard))
        .and_then(|v| v.to_str().ok())
}

/// Svix answers: 2xx only for what is durable or needs no work; 4xx for what a retry cannot
/// fix; 503 for what it can.
fn status_of(outcome: WebhookOutcome) -> StatusCode {
    match outcome {
        WebhookOutcome::Applied
        | WebhookOutcome::Duplicate
        | WebhookOutcome::Ignored
        | WebhookOutcome::ForeignInstance => StatusCode::OK,
        WebhookOutcome::BadSignature => StatusCode::UNAUTHORIZED,
        WebhookOutcome::Malformed => StatusCode::BAD_REQUEST,
        WebhookOutcome::Failed | WebhookOutcome::NotConfigured => StatusCode::SERVICE_UNAVAILABLE,
    }
}

fn recorded_json(recorded: Recorded) -> Value {
    match recorded {
        Recorded::Committed { generation } => json!({ "generation": generation }),
        Recorded::Logged { sequence, outcome } => {
            json!({ "sequence": sequence, "outcome": outcome.name() })
        }
    }
}

fn body_of(answer: WebhookAnswer) -> Value {
    let detail = match answer.detail {
        WebhookDetail::None => Value::Null,
        WebhookDetail::Message(message) => json!(message),
        WebhookDetail::EventType(event_type) => json!(event_type),
        WebhookDetail::Recorded {
            about,
            id,
            recorded,
        } => {
            let mut detail = recorded_json(recorded);
            detail[about] = id.into();
            detail
        }
    };
    json!({ "outcome": answer.outcome.name(), "detail": detail })
}

async fn receive(
    State(receiver): State<Arc<WebhookReceiver>>,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, Json<Value>) {
    let svix = SvixHeaders {
        id: header(&headers, "svix-id", "webhook-id"),
        timestamp: header(&headers, "svix-timestamp", "webhook-timestamp"),
        signature: header(&headers, "svix-signature", "webhook-signature"),
    };
    let span = tracing::info_span!(
        "webhook",
        otel.name = concat!("POST ", "/webhooks/clerk"),
        otel.kind = "server",
        otel.status_code = tracing::field::Empty,
        http.request.method = "POST",
        http.route = WEBHOOK_PATH,
        http.response.status_code = tracing::field::Empty,
        svix.id = tracing::field::Empty,
        clerk.outcome = tracing::field::Empty,
    );
    crate::telemetry::otel::set_parent_from_headers(&span, &headers);
    let answer = receiver.receive(svix, &body).instrument(span.clone()).await;
    let status = status_of(answer.outcome);
    span.record("http.response.status_code", i64::from(status.as_u16()));
    span.record("clerk.outcome", answer.outcome.name());
    // The sender's id only once its signature held, and never much of it.
    if !matches!(
        answer.outcome,
        WebhookOutcome::BadSignature | WebhookOutcome::NotConfigured
    ) && let Some(id) = svix.id
    {
        span.record("svix.id", &*crate::redact::clip(id, 64));
    }
    if status.is_server_error() {
        span.record("otel.status_code", "ERROR");
    }
    (status, Json(body_of(answer)))
}
