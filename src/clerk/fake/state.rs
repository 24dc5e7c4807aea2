//! What every request of the fake shares: the users, the secret key, the limits, the injected
//! faults and the webhook dispatcher; and Clerk's ways of answering: its error bodies and the
//! checks every request passes first, in Clerk's order (authentication, API version, faults,
//! rate limit).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::generator::Population;
use super::store::UserStore;
use super::webhooks::{WebhookDispatcher, WebhookTarget};
use crate::clerk::rate_limit::{RateLimit, RateLimiter};

/// API versions the fake accepts in `Clerk-API-Version` (Clerk's published ones).
const KNOWN_API_VERSIONS: &[&str] = &[
    "2021-02-05",
    "2024-10-01",
    "2025-03-12",
    "2025-04-10",
    "2025-11-10",
    "2026-05-12",
];

/// Deliberate failures, counted over every request to `/v1/...`, and the behaviours Clerk does
/// not document, each of which the client must survive.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FaultInjection {
    /// Answer every Nth request with 429 and `Retry-After`.
    pub throttle_every: Option<u64>,
    /// Answer every Nth request with 500 `internal_clerk_error`.
    pub server_error_every: Option<u64>,
    /// The `Retry-After` seconds sent with injected 429s.
    pub retry_after_secs: u64,
    /// Answer every Nth user list with a 200 whose body is not JSON (a proxy's error page).
    pub unreadable_list_every: Option<u64>,
    /// How a `starting_after` naming a user that no longer exists is answered.
    pub cursor_gone: CursorGone,
    /// Ignore `starting_after` altogether (answer the query's first page).
    pub ignore_cursor: bool,
    /// After every Nth full page of a `created_at` listing, delete the page's last user (no
    /// webhook), as a deletion racing a walk's cursor would.
    pub delete_cursor_user_every: Option<u64>,
    /// Milliseconds every request takes (a round trip to Clerk is ~100-200 ms); a listing's
    /// `offset` adds 1 ms per 1,000 users skipped, as Clerk's large offsets get slower.
    pub latency_ms: u64,
    /// Hold every Nth request for `stall_ms` before answering it (past a client's timeout).
    pub stall_every: Option<u64>,
    pub stall_ms: u64,
    /// Answer every Nth request with a 200 whose body breaks off midway (a connection reset).
    pub truncate_every: Option<u64>,
    /// Send injected 429s without `Retry-After` (the endpoint stays blocked all the same).
    pub omit_retry_after: bool,
    /// After every Nth full page of the instance's membership listing, delete the page's first
    /// membership (no webhook): the next pages shift left by one, as a deletion racing an
    /// offset walk does.
    pub delete_listed_membership_every: Option<u64>,
}

/// Clerk's answer to a `starting_after` whose user was deleted is not documented: each
/// plausible one.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum CursorGone {
    /// 422 `form_param_value_invalid`.
    #[default]
    Unprocessable,
    /// 404 `resource_not_found`.
    NotFound,
    /// An empty page, as if the listing had ended.
    EmptyPage,
    /// The query's first page, as if there were no cursor.
    FirstPage,
}

/// How to build a fake Clerk.
#[derive(Debug, Clone)]
pub struct FakeClerkConfig {
    pub population: Population,
    /// The only secret key the fake accepts as `Authorization: Bearer <key>`.
    pub secret_key: String,
    pub faults: FaultInjection,
    /// A real per-instance limit, like Clerk's (production: 1000 / 10 s). `None` = unlimited.
    pub rate_limit: Option<RateLimit>,
    /// Where to announce changes made through the API (create, metadata patch, delete).
    pub webhooks: Option<WebhookTarget>,
    /// `GET /v1/instance`'s `environment_type`: `production` (the default) or `development`.
    pub environment_type: String,
    /// Keep every request and answer (`FakeClerk::recorded_exchanges`).
    pub record_exchanges: bool,
    /// Populations of at most this many users are serialized once at start and kept as JSON
    /// (~2 KB per user); larger ones are generated page by page from the seed, keeping 48 bytes
    /// per user.
    pub keep_json_up_to: usize,
}

/// The default [`FakeClerkConfig::keep_json_up_to`]: 2M users, ~4 GB of JSON.
pub const KEEP_JSON_UP_TO: usize = 2_000_000;

impl FakeClerkConfig {
    pub fn new(population: Population) -> Self {
        FakeClerkConfig {
            population,
            secret_key: "sk_test_fake_clerk".into(),
            faults: FaultInjection::default(),
            rate_limit: None,
            webhooks: None,
            environment_type: "production".into(),
            record_exchanges: false,
            keep_json_up_to: KEEP_JSON_UP_TO,
        }
    }
}

pub(super) struct FakeState {
    pub(super) users: RwLock<UserStore>,
    /// Organizations and memberships (empty unless the population has them).
    pub(super) organizations: RwLock<super::org_store::OrgStore>,
    pub(super) secret_key: String,
    /// What `GET /v1/instance` answers for `environment_type`.
    pub(super) environment_type: String,
    /// Endpoints (`METHOD /route`) answered 429 until then, as Clerk blocks an endpoint after
    /// a 429 for its `Retry-After`.
    pub(super) blocked: Mutex<HashMap<String, std::time::Instant>>,
    /// Requests and answers, when recording (`record.rs`).
    pub(super) exchanges: Option<Mutex<Vec<Value>>>,
    pub(super) faults: RwLock<FaultInjection>,
    pub(super) limiter: Option<RateLimiter>,
    /// Clerk's per-user limit on metadata writes: 10 requests per 10 s.
    pub(super) metadata_limiters: Mutex<HashMap<String, Arc<RateLimiter>>>,
    pub(super) webhooks: RwLock<Option<WebhookDispatcher>>,
    pub(super) requests: AtomicU64,
    pub(super) throttled: AtomicU64,
    /// User lists answered, for [`FaultInjection::unreadable_list_every`].
    pub(super) lists: AtomicU64,
    /// Users sent in list answers, all pages together.
    pub(super) users_listed: AtomicU64,
    /// Full `created_at` pages answered, for [`FaultInjection::delete_cursor_user_every`].
    pub(super) full_created_pages: AtomicU64,
    /// Full membership pages answered, for [`FaultInjection::delete_listed_membership_every`].
    pub(super) full_membership_pages: AtomicU64,
}

/// A list's `limit`: 1..=500; anything else (out of range, not a number) is not an error but
/// Clerk's default page of 10.
pub(super) fn list_limit(value: &str) -> usize {
    value
        .parse()
        .ok()
        .filter(|l| (1..=500).contains(l))
        .unwrap_or(10)
}

/// A list's `order_by`: a field of `fields`, `+` (the default) or `-` before it; whether it
/// descends, and the field. 422 for another field.
#[allow(clippy::result_large_err)] // the error is the HTTP answer itself, built once per request
pub(super) fn order_by(value: &str, fields: &[&str]) -> Result<(bool, String), Response> {
    let (descending, field) = match value.as_bytes().first() {
        Some(b'-') => (true, &value[1..]),
        Some(b'+') => (false, &value[1..]),
        _ => (false, value),
    };
    if !fields.contains(&field) {
        return Err(form_param_invalid(
            "order_by",
            &format!("order_by must be one of {}", fields.join(", ")),
        ));
    }
    Ok((descending, field.to_string()))
}

/// A `ClerkErrors` body with the given status.
pub(super) fn clerk_error(
    status: StatusCode,
    code: &str,
    message: &str,
    long_message: &str,
    meta: Value,
) -> Response {
    let body = json!({
        "errors": [{"code": code, "message": message, "long_message": long_message, "meta": meta}],
        "meta": {},
        "clerk_trace_id": format!("fake_{:016x}", rand::random::<u64>()),
    });
    (status, axum::Json(body)).into_response()
}

/// Clerk's 404 for a user id (`UserNotFound` in its error catalog).
pub(super) fn user_not_found(user_id: &str) -> Response {
    clerk_error(
        StatusCode::NOT_FOUND,
        "resource_not_found",
        "not found",
        &format!("No user was found with id {user_id}"),
        json!({}),
    )
}

pub(super) fn form_param_invalid(name: &str, long_message: &str) -> Response {
    clerk_error(
        StatusCode::UNPROCESSABLE_ENTITY,
        "form_param_value_invalid",
        "is invalid",
        long_message,
        json!({"name": name}),
    )
}

/// A request that passed [`admit`]: every `/v1` handler takes one first, so a refused request
/// is answered before anything else is looked at.
pub(super) struct Admitted;

impl axum::extract::FromRequestParts<Arc<FakeState>> for Admitted {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &Arc<FakeState>,
    ) -> Result<Admitted, Response> {
        let route = parts
            .extensions
            .get::<axum::extract::MatchedPath>()
            .map_or_else(|| parts.uri.path().to_string(), |p| p.as_str().to_string());
        let endpoint = format!("{} {route}", parts.method);
        admit(state, &parts.headers, endpoint).await?;
        Ok(Admitted)
    }
}

/// Authentication, API version, injected faults and the rate limit, in Clerk's order.
#[allow(clippy::result_large_err)] // the error is the HTTP answer itself, built once per request
async fn admit(state: &FakeState, headers: &HeaderMap, endpoint: String) -> Result<(), Response> {
    let n = state.requests.fetch_add(1, Ordering::Relaxed) + 1;
    let latency_ms = state.faults.read().expect("fake faults lock").latency_ms;
    if latency_ms > 0 {
        tokio::time::sleep(std::time::Duration::from_millis(latency_ms)).await;
    }
    let auth = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let Some(key) = auth.and_then(|v| v.strip_prefix("Bearer ")) else {
        return Err(clerk_error(
            StatusCode::UNAUTHORIZED,
            "authorization_header_format_invalid",
            "Invalid Authorization header format",
            "Invalid Authorization header format. Must be 'Bearer <YOUR_API_KEY>'",
            json!({}),
        ));
    };
    if key != state.secret_key {
        return Err(clerk_error(
            StatusCode::UNAUTHORIZED,
            "clerk_key_invalid",
            "Secret Key invalid",
            "The provided Clerk Secret Key is invalid. Make sure that your Clerk Secret Key is correct.",
            json!({}),
        ));
    }
    if let Some(version) = headers
        .get("clerk-api-version")
        .and_then(|v| v.to_str().ok())
        && !KNOWN_API_VERSIONS.contains(&version)
    {
        return Err(clerk_error(
            StatusCode::BAD_REQUEST,
            "api_version_invalid",
            "Invalid API version",
            &format!("The API version {version} is not valid."),
            json!({}),
        ));
    }
    let now = std::time::Instant::now();
    let blocked_for = state
        .blocked
        .lock()
        .expect("fake block lock")
        .get(&endpoint)
        .and_then(|until| until.checked_duration_since(now))
        .filter(|left| !left.is_zero());
    if let Some(left) = blocked_for {
        return Err(too_many_requests(state, left.as_secs_f64().ceil() as u64));
    }
    let block = |secs: u64| {
        state
            .blocked
            .lock()
            .expect("fake block lock")
            .insert(endpoint.clone(), now + std::time::Duration::from_secs(secs));
        too_many_requests(state, secs)
    };
    let faults = *state.faults.read().expect("fake faults lock");
    let every = |k: Option<u64>| k.is_some_and(|k| k > 0 && n.is_multiple_of(k));
    if every(faults.stall_every) {
        tokio::time::sleep(std::time::Duration::from_millis(faults.stall_ms)).await;
    }
    if every(faults.truncate_every) {
        return Err(truncated());
    }
    if every(faults.throttle_every) {
        let mut throttled = block(faults.retry_after_secs);
        if faults.omit_retry_after {
            throttled.headers_mut().remove(header::RETRY_AFTER);
        }
        return Err(throttled);
    }
    if every(faults.server_error_every) {
        return Err(clerk_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal_clerk_error",
            "Oops, an unexpected error occurred",
            "There was an internal error on our servers. We've been notified and are working on fixing it.",
            json!({}),
        ));
    }
    if let Some(limiter) = &state.limiter
        && let Err(wait) = limiter.try_acquire().await
    {
        return Err(block(wait.as_secs_f64().ceil().max(1.0) as u64));
    }
    Ok(())
}

pub(super) fn too_many_requests(state: &FakeState, retry_after_secs: u64) -> Response {
    state.throttled.fetch_add(1, Ordering::Relaxed);
    let mut response = clerk_error(
        StatusCode::TOO_MANY_REQUESTS,
        "too_many_requests",
        "Too many requests",
        "Too many requests, retry later",
        json!({"ResetsIn": retry_after_secs}),
    );
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(retry_after_secs));
    response
}

/// A 200 whose body breaks off after a few bytes, as when the connection is reset mid-answer.
fn truncated() -> Response {
    let parts: [Result<bytes::Bytes, std::io::Error>; 2] = [
        Ok(bytes::Bytes::from_static(b"[{\"id\":\"user_")),
        Err(std::io::Error::new(
            std::io::ErrorKind::ConnectionReset,
            "the fake cut this answer short",
        )),
    ];
    let body = axum::body::Body::from_stream(futures_util::stream::iter(parts));
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}

/// Clerk's 400 for a body that is not a JSON object.
pub(super) fn body_not_an_object() -> Response {
    clerk_error(
        StatusCode::BAD_REQUEST,
        "request_body_invalid",
        "Request body invalid",
        "The request body is not a JSON object.",
        json!({}),
    )
}

pub(super) fn json_response(body: String) -> Response {
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}
