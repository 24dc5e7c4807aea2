//! Recording what passes through the fake: every request it receives and every answer it
//! sends, as JSON lines that `scripts/openapi-check` validates against Clerk's OpenAPI spec. Off
//! unless [`super::FakeClerkConfig::record_exchanges`] is set (then read with
//! `FakeClerk::recorded_exchanges`); at most [`MAX_EXCHANGES`] kept.

use std::sync::Arc;

use axum::body::{Body, to_bytes};
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::state::FakeState;

/// Exchanges kept; later ones are not recorded.
pub const MAX_EXCHANGES: usize = 10_000;
/// Bodies larger than this are not buffered for the record (they pass through untouched).
const MAX_BODY: usize = 16 << 20;

fn headers_json(headers: &axum::http::HeaderMap) -> Value {
    headers
        .iter()
        .filter_map(|(name, value)| Some((name.as_str().to_string(), value.to_str().ok()?.into())))
        .collect::<serde_json::Map<String, Value>>()
        .into()
}

/// The middleware: buffers the request and the answer and keeps both.
pub(super) async fn record(
    State(state): State<Arc<FakeState>>,
    request: Request,
    next: Next,
) -> Response {
    let (parts, body) = request.into_parts();
    let Ok(request_body) = to_bytes(body, MAX_BODY).await else {
        return StatusCode::PAYLOAD_TOO_LARGE.into_response();
    };
    let mut exchange = json!({
        "kind": "api",
        "method": parts.method.as_str(),
        "path": parts.uri.path(),
        "query": parts.uri.query().unwrap_or(""),
        "headers": headers_json(&parts.headers),
        "request_body": String::from_utf8_lossy(&request_body),
    });
    let response = next
        .run(Request::from_parts(parts, Body::from(request_body)))
        .await;
    let (parts, body) = response.into_parts();
    let Ok(response_body) = to_bytes(body, MAX_BODY).await else {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    };
    exchange["status"] = parts.status.as_u16().into();
    exchange["response_headers"] = headers_json(&parts.headers);
    exchange["response_body"] = String::from_utf8_lossy(&response_body).into();
    if let Some(exchanges) = &state.exchanges {
        let mut exchanges = exchanges.lock().expect("fake record lock");
        if exchanges.len() < MAX_EXCHANGES {
            exchanges.push(exchange);
        }
    }
    Response::from_parts(parts, Body::from(response_body))
}

/// `router`, recording through [`record`] when the fake keeps exchanges.
pub(super) fn recording(router: axum::Router, state: &Arc<FakeState>) -> axum::Router {
    match state.exchanges {
        Some(_) => router.layer(axum::middleware::from_fn_with_state(state.clone(), record)),
        None => router,
    }
}
