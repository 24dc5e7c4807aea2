//! A small Backend API client: list users (cursor or offset paging), get one user, count.
//!
//! Every request goes through one shared [`Budget`] (the instance's rate limit and the endpoints
//! Clerk has blocked after a 429), pins `Clerk-API-Version`, honours `Retry-After` on 429 and
//! retries 5xx and network errors with exponential backoff and jitter.
//! Clerk's error body (`{"errors":[{code,message,long_message}],"clerk_trace_id"}`) is surfaced
//! in the error message, since that is what tells an operator what to fix.

use std::sync::Arc;
use std::time::Duration;

use rand::Rng;
use reqwest::StatusCode;
use serde::Deserialize;
use tracing::Instrument;

pub use super::error::ClerkApiError;
use super::error::user_path;
use super::instance::{Budget, BudgetShare, Instance, KnownInstance, LimitSource, Spend};
use super::listing::{ActivityField, CreatedPage, PageCursor};
use super::model::{ClerkTotalCount, UserPage, parse_user, parse_user_page};
use super::rate_limit::RateLimit;
pub use super::stats::ClerkApiStats;
use crate::user::User;

/// The Backend API version this client speaks (Clerk's latest at the time of writing).
pub const CLERK_API_VERSION: &str = "2026-05-12";
/// Clerk's largest page.
pub const MAX_PAGE_SIZE: u32 = 500;
/// Both user listings (by `created_at` and by `-updated_at`) use this endpoint.
const LIST_USERS: &str = "GET /v1/users";
const GET_USER: &str = "GET /v1/users/{user_id}";
const COUNT_USERS: &str = "GET /v1/users/count";
const UPDATE_METADATA: &str = "PATCH /v1/users/{user_id}/metadata";
const GET_INSTANCE: &str = "GET /v1/instance";
/// Answers to one list request that are not a JSON array before it fails.
pub const UNREADABLE_ATTEMPTS: u32 = 3;

/// How to reach one Clerk instance.
#[derive(Clone)]
pub struct ClerkClientConfig {
    /// Scheme and host, without `/v1` (e.g. `https://api.clerk.com`).
    pub api_url: String,
    pub secret_key: String,
    /// The instance's rate limit: given, or Clerk's default for its environment.
    pub rate_limit: LimitSource,
    /// How the limit is shared (cluster mode splits reads and writes).
    pub budget_share: BudgetShare,
    /// Attempts per request before giving up (429s, 5xx and network errors count).
    pub max_attempts: u32,
    pub request_timeout: Duration,
    /// The first backoff after a 5xx or network error; doubles per attempt up to 30 s.
    pub initial_backoff: Duration,
}

impl std::fmt::Debug for ClerkClientConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClerkClientConfig")
            .field("api_url", &self.api_url)
            .field("secret_key", &crate::redact::mask(&self.secret_key))
            .field("rate_limit", &self.rate_limit)
            .field("budget_share", &self.budget_share)
            .field("max_attempts", &self.max_attempts)
            .field("request_timeout", &self.request_timeout)
            .field("initial_backoff", &self.initial_backoff)
            .finish()
    }
}

impl ClerkClientConfig {
    pub fn new(api_url: impl Into<String>, secret_key: impl Into<String>) -> Self {
        ClerkClientConfig {
            api_url: api_url.into(),
            secret_key: secret_key.into(),
            rate_limit: LimitSource::Given(RateLimit::CLERK_PRODUCTION_DEFAULT),
            budget_share: BudgetShare::Whole,
            max_attempts: 8,
            request_timeout: Duration::from_secs(30),
            initial_backoff: Duration::from_millis(250),
        }
    }
}

/// One request, as the retry loop sees it.
struct Call<'a> {
    method: reqwest::Method,
    /// `METHOD /path` with ids as placeholders: the metric label and span name.
    endpoint: &'static str,
    /// `METHOD /path`, for messages.
    request: &'a str,
    path: &'a str,
    query: &'a [(&'a str, String)],
    body: Option<Vec<u8>>,
    /// Wait out 429s (reads) or hand them to the caller (per-user write limits).
    retry_throttled: bool,
}

/// One Clerk instance's Backend API.
#[derive(Debug, Clone)]
pub struct ClerkClient {
    http: reqwest::Client,
    config: Arc<ClerkClientConfig>,
    budget: Arc<Budget>,
    instance: Arc<KnownInstance>,
    stats: Arc<ClerkApiStats>,
}

#[derive(Deserialize)]
struct ClerkErrorsBody {
    #[serde(default)]
    errors: Vec<ClerkErrorBody>,
    clerk_trace_id: Option<String>,
}

#[derive(Deserialize)]
struct ClerkErrorBody {
    #[serde(default)]
    code: String,
    #[serde(default)]
    message: String,
    #[serde(default)]
    long_message: String,
}

impl ClerkClient {
    pub fn new(config: ClerkClientConfig) -> Result<Self, ClerkApiError> {
        let http = reqwest::Client::builder()
            .timeout(config.request_timeout)
            .user_agent(concat!("clerk-index/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| ClerkApiError::Transport {
                request: "client setup".into(),
                message: e.to_string(),
            })?;
        Ok(ClerkClient {
            http,
            stats: Arc::default(),
            budget: Arc::new(Budget::new(
                config.rate_limit,
                config.budget_share,
                &config.secret_key,
            )),
            instance: Arc::default(),
            config: Arc::new(config),
        })
    }

    /// Requests by endpoint and status, for metrics.
    pub fn stats(&self) -> &Arc<ClerkApiStats> {
        &self.stats
    }

    /// The instance, once [`ClerkClient::learn_instance`] has succeeded.
    pub fn known_instance(&self) -> &Arc<KnownInstance> {
        &self.instance
    }

    /// The instance's whole rate limit as this process counts it.
    pub fn rate_limit(&self) -> RateLimit {
        self.budget.limit()
    }

    /// `GET /v1/instance`: remembers the instance (for webhook envelopes) and adopts the rate
    /// limit of its environment unless one was given.
    pub async fn learn_instance(&self) -> Result<Instance, ClerkApiError> {
        let body = self
            .get(GET_INSTANCE, GET_INSTANCE, "/v1/instance", &[])
            .await?;
        let instance: Instance =
            serde_json::from_slice(&body).map_err(|e| ClerkApiError::Decode {
                request: GET_INSTANCE.into(),
                message: e.to_string(),
            })?;
        self.budget.adopt(&instance).await;
        self.instance.set(instance.clone());
        Ok(instance)
    }

    /// `GET /v1/users?limit=N&order_by=created_at&...`: one page, oldest first.
    pub async fn list_users_created(
        &self,
        page: &CreatedPage,
        limit: u32,
    ) -> Result<UserPage, ClerkApiError> {
        let mut query = vec![
            ("limit", limit.to_string()),
            ("order_by", "created_at".to_string()),
        ];
        if let Some(after) = page.after {
            query.push(("created_at_after", after.to_string()));
        }
        if let Some(before) = page.before {
            query.push(("created_at_before", before.to_string()));
        }
        match &page.cursor {
            PageCursor::Start => {}
            PageCursor::After(id) => query.push(("starting_after", id.clone())),
            PageCursor::Offset(offset) => query.push(("offset", offset.to_string())),
        }
        self.list_users("GET /v1/users?order_by=created_at", &query)
            .await
    }

    /// The creation time of the oldest (or newest) user; `None` when there are no users.
    pub async fn created_at_edge(&self, newest: bool) -> Result<Option<i64>, ClerkApiError> {
        let order = if newest { "-created_at" } else { "created_at" };
        let query = [("limit", "1".to_string()), ("order_by", order.to_string())];
        let page = self.list_users("GET /v1/users?limit=1", &query).await?;
        Ok(page.keys.first().and_then(|key| key.created_at))
    }

    /// `GET /v1/users?limit=N&order_by=-updated_at&offset=M`: most recently updated first. Clerk
    /// allows the cursor only for `created_at` order, so this pages by offset.
    pub async fn list_users_recently_updated(
        &self,
        offset: u64,
        limit: u32,
    ) -> Result<UserPage, ClerkApiError> {
        let query = vec![
            ("limit", limit.to_string()),
            ("order_by", "-updated_at".to_string()),
            ("offset", offset.to_string()),
        ];
        self.list_users("GET /v1/users?order_by=-updated_at", &query)
            .await
    }

    /// `GET /v1/users?limit=N&order_by=-<field>&<field>_after=A[&<field>_before=B][&offset=M]`:
    /// users who signed in (or were active) after `after` and before `before`, latest first.
    pub async fn list_users_by_activity(
        &self,
        field: ActivityField,
        after: i64,
        before: Option<i64>,
        offset: u64,
        limit: u32,
    ) -> Result<UserPage, ClerkApiError> {
        let name = field.name();
        let mut query = vec![
            ("limit", limit.to_string()),
            ("order_by", format!("-{name}")),
            (field.after_param(), after.to_string()),
        ];
        if let Some(before) = before {
            query.push((field.before_param(), before.to_string()));
        }
        if offset > 0 {
            query.push(("offset", offset.to_string()));
        }
        let request = match field {
            ActivityField::SignIn => "GET /v1/users?order_by=-last_sign_in_at",
            ActivityField::Active => "GET /v1/users?order_by=-last_active_at",
        };
        self.list_users(request, &query).await
    }

    /// One `GET /v1/users` page. A body that is not a JSON array (a proxy's error page, a cut
    /// answer) is asked for again, [`UNREADABLE_ATTEMPTS`] times in all, then fails the request.
    async fn list_users(
        &self,
        request: &str,
        query: &[(&str, String)],
    ) -> Result<UserPage, ClerkApiError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let body = self.get(request, LIST_USERS, "/v1/users", query).await?;
            match parse_user_page(&body) {
                Ok(page) => return Ok(page),
                Err(error) if attempt < UNREADABLE_ATTEMPTS => {
                    let wait = self.backoff(attempt);
                    tracing::warn!(request, attempt, bytes = body.len(), wait_ms = wait.as_millis() as u64, %error, "clerk sent an unreadable page, asking again");
                    tokio::time::sleep(wait).await;
                }
                Err(error) => {
                    return Err(ClerkApiError::Decode {
                        request: request.into(),
                        message: format!("{error} ({attempt} answers in a row)"),
                    });
                }
            }
        }
    }

    /// `GET /v1/users/{id}`; `Ok(None)` when Clerk says 404.
    pub async fn get_user(&self, user_id: &str) -> Result<Option<User>, ClerkApiError> {
        // No Clerk user has a malformed id, and in a path it could name another endpoint.
        let Some(path) = user_path(user_id, "") else {
            return Ok(None);
        };
        let request = format!("GET /v1/users/{user_id}");
        match self.get(&request, GET_USER, &path, &[]).await {
            Ok(body) => {
                let raw: Box<serde_json::value::RawValue> =
                    serde_json::from_slice(&body).map_err(|e| ClerkApiError::Decode {
                        request: request.clone(),
                        message: e.to_string(),
                    })?;
                parse_user(&raw)
                    .map(Some)
                    .map_err(|e| ClerkApiError::Decode {
                        request,
                        message: e.to_string(),
                    })
            }
            Err(error) if error.status() == Some(404) => Ok(None),
            Err(error) => Err(error),
        }
    }

    /// `GET /v1/users/count`.
    pub async fn count_users(&self) -> Result<u64, ClerkApiError> {
        let request = "GET /v1/users/count";
        let body = self
            .get(request, COUNT_USERS, "/v1/users/count", &[])
            .await?;
        serde_json::from_slice::<ClerkTotalCount>(&body)
            .map(|c| c.total_count)
            .map_err(|e| ClerkApiError::Decode {
                request: request.into(),
                message: e.to_string(),
            })
    }

    pub(super) async fn get(
        &self,
        request: &str,
        endpoint: &'static str,
        path: &str,
        query: &[(&str, String)],
    ) -> Result<bytes::Bytes, ClerkApiError> {
        self.send(Call {
            method: reqwest::Method::GET,
            endpoint,
            request,
            path,
            query,
            body: None,
            retry_throttled: true,
        })
        .await
    }

    /// A `PATCH` with a JSON body, its 429 returned rather than waited out (writes pass Clerk's
    /// `Retry-After` on to their caller).
    pub(super) async fn patch(
        &self,
        request: &str,
        endpoint: &'static str,
        path: &str,
        body: Vec<u8>,
    ) -> Result<bytes::Bytes, ClerkApiError> {
        self.send(Call {
            method: reqwest::Method::PATCH,
            endpoint,
            request,
            path,
            query: &[],
            body: Some(body),
            retry_throttled: false,
        })
        .await
    }

    /// `PATCH /v1/users/{id}/metadata`: Clerk deep-merges the patch (`null` removes a key) and
    /// returns the updated user. Clerk's per-user limit (10 writes / 10 s) is not waited out: the
    /// 429 is returned with its `Retry-After`, for the caller to pass on.
    pub async fn update_user_metadata(
        &self,
        user_id: &str,
        patch: &serde_json::Value,
    ) -> Result<User, ClerkApiError> {
        let Some(path) = user_path(user_id, "/metadata") else {
            return Err(ClerkApiError::not_a_user(UPDATE_METADATA));
        };
        let request = format!("PATCH /v1/users/{user_id}/metadata");
        let body = serde_json::to_vec(patch).map_err(|e| ClerkApiError::Decode {
            request: request.clone(),
            message: e.to_string(),
        })?;
        let call = Call {
            method: reqwest::Method::PATCH,
            endpoint: UPDATE_METADATA,
            request: &request,
            path: &path,
            query: &[],
            body: Some(body),
            retry_throttled: false,
        };
        let answer = self.send(call).await?;
        let raw: Box<serde_json::value::RawValue> =
            serde_json::from_slice(&answer).map_err(|e| ClerkApiError::Decode {
                request: request.clone(),
                message: e.to_string(),
            })?;
        parse_user(&raw).map_err(|e| ClerkApiError::Decode {
            request,
            message: e.to_string(),
        })
    }

    async fn send(&self, call: Call<'_>) -> Result<bytes::Bytes, ClerkApiError> {
        let url = format!("{}{}", self.config.api_url.trim_end_matches('/'), call.path);
        let mut attempt = 0;
        loop {
            attempt += 1;
            let spend = if call.retry_throttled {
                Spend::Read
            } else {
                Spend::Write
            };
            self.budget.acquire(call.endpoint, spend).await;
            let error = match self.send_once(&call, &url).await {
                Ok(body) => return Ok(body),
                Err(error) => error,
            };
            let throttled = error.status() == Some(429);
            if let ClerkApiError::Api {
                retry_after: Some(after),
                ..
            } = &error
                && throttled
                && call.retry_throttled
            {
                // Clerk blocks the endpoint for this long: every walk waits it out together.
                self.budget.block(call.endpoint, *after);
            }
            if !error.is_transient()
                || (throttled && !call.retry_throttled)
                || attempt >= self.config.max_attempts
            {
                return Err(error);
            }
            let wait = match &error {
                ClerkApiError::Api {
                    retry_after: Some(after),
                    ..
                } => *after,
                _ => self.backoff(attempt),
            };
            tracing::warn!(request = call.request, attempt, wait_ms = wait.as_millis() as u64, error = %error, "clerk request failed, retrying");
            tokio::time::sleep(wait).await;
        }
    }

    /// One attempt, timed and counted by endpoint and status, in a client span.
    async fn send_once(&self, call: &Call<'_>, url: &str) -> Result<bytes::Bytes, ClerkApiError> {
        let span = tracing::info_span!(
            "clerk.request",
            otel.name = call.endpoint,
            otel.kind = "client",
            http.request.method = %call.method,
            url.template = call.endpoint,
            http.response.status_code = tracing::field::Empty,
            error.r#type = tracing::field::Empty,
        );
        let started = std::time::Instant::now();
        let result = self.attempt(call, url).instrument(span.clone()).await;
        let status = match &result {
            Ok((status, _)) => status.as_u16().to_string(),
            Err(ClerkApiError::Api { status, .. }) => status.to_string(),
            Err(ClerkApiError::Transport { .. }) => "transport_error".to_string(),
            Err(ClerkApiError::Decode { .. }) => "decode_error".to_string(),
        };
        if let Ok(code) = status.parse::<i64>() {
            span.record("http.response.status_code", code);
        }
        if let Err(error) = &result {
            span.record("error.type", error.kind());
        }
        self.stats.record(call.endpoint, status, started.elapsed());
        result.map(|(_, body)| body)
    }

    async fn attempt(
        &self,
        call: &Call<'_>,
        url: &str,
    ) -> Result<(StatusCode, bytes::Bytes), ClerkApiError> {
        let transport = |e: reqwest::Error| ClerkApiError::Transport {
            request: call.request.to_string(),
            message: e.to_string(),
        };
        let mut builder = self
            .http
            .request(call.method.clone(), url)
            .query(call.query)
            .bearer_auth(&self.config.secret_key)
            .header("Clerk-API-Version", CLERK_API_VERSION);
        if let Some(body) = &call.body {
            builder = builder
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body.clone());
        }
        let response = builder.send().await.map_err(transport)?;
        let status = response.status();
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let trace_header = response
            .headers()
            .get("cf-ray")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let body = response.bytes().await.map_err(transport)?;
        if status.is_success() {
            return Ok((status, body));
        }
        let retry_after = retry_after
            .or(Some(Duration::from_secs(1)).filter(|_| status == StatusCode::TOO_MANY_REQUESTS));
        Err(api_error(
            call.request,
            status,
            &body,
            trace_header,
            retry_after,
        ))
    }

    /// Exponential backoff with "equal jitter": half fixed, half random, capped at 30 s.
    fn backoff(&self, attempt: u32) -> Duration {
        let exp = self
            .config
            .initial_backoff
            .saturating_mul(1 << (attempt - 1).min(16));
        let capped = exp.min(Duration::from_secs(30));
        let half = capped / 2;
        half + half.mul_f64(rand::rng().random::<f64>())
    }
}

fn api_error(
    request: &str,
    status: StatusCode,
    body: &[u8],
    trace_header: Option<String>,
    retry_after: Option<Duration>,
) -> ClerkApiError {
    let parsed: Option<ClerkErrorsBody> = serde_json::from_slice(body).ok();
    let first = parsed.as_ref().and_then(|b| b.errors.first());
    let code = first
        .map(|e| e.code.clone())
        .filter(|c| !c.is_empty())
        .unwrap_or_else(|| status.canonical_reason().unwrap_or("error").to_lowercase());
    let long_message = first
        .map(|e| {
            if e.long_message.is_empty() {
                e.message.clone()
            } else {
                e.long_message.clone()
            }
        })
        .unwrap_or_else(|| String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned());
    ClerkApiError::Api {
        request: request.to_string(),
        status: status.as_u16(),
        code,
        long_message,
        trace_id: parsed.and_then(|b| b.clerk_trace_id).or(trace_header),
        retry_after,
    }
}
