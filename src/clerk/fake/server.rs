//! The fake's HTTP side: Clerk's paths, query parameters, validation rules, error bodies,
//! authentication, a real per-key rate limit and optional injected 429s and 500s.
//!
//! Fidelity notes (from Clerk's Backend API spec `2026-05-12`): the list is a bare JSON array;
//! `limit` is 1..=500, default 10, and one out of range is not an error: Clerk answers its
//! default page of 10; the default order is `-created_at`; `starting_after` needs `created_at`
//! ordering and no `offset` (422 otherwise); errors are `ClerkErrors` bodies. An unknown
//! `starting_after` id is answered as [`CursorGone`] says (Clerk does not document it).

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use axum::Router;
use axum::extract::{Path, RawQuery, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, patch};
use serde_json::{Value, json};
use tokio::net::TcpListener;

use super::org_store::OrgStore;
use super::state::{
    Admitted, CursorGone, FakeClerkConfig, FakeState, FaultInjection, form_param_invalid,
    json_response, user_not_found,
};
use super::store::{StoredUser, UserStore};
use super::user_listing::{ListParams, Selection, parse_list_params};
use super::webhooks::{WebhookDispatcher, WebhookTarget};
use super::writes;
use crate::clerk::rate_limit::RateLimiter;
use crate::clerk::webhook::WebhookSecretError;

/// A running (or ready to run) fake Clerk. Cheap to clone; clones share the users.
#[derive(Clone)]
pub struct FakeClerk {
    state: Arc<FakeState>,
}

impl FakeClerk {
    /// Generates the population (in parallel) and prepares the server. With a webhook target it
    /// must be called inside a tokio runtime (the dispatcher runs on it).
    pub fn new(config: FakeClerkConfig) -> Self {
        let users = UserStore::generate(&config.population, config.keep_json_up_to);
        let organizations = OrgStore::generate(&config.population, &users);
        FakeClerk {
            state: Arc::new(FakeState {
                users: RwLock::new(users),
                organizations: RwLock::new(organizations),
                secret_key: config.secret_key,
                environment_type: config.environment_type,
                blocked: Mutex::new(HashMap::new()),
                exchanges: config.record_exchanges.then(Mutex::default),
                faults: RwLock::new(config.faults),
                limiter: config.rate_limit.map(RateLimiter::new),
                metadata_limiters: Mutex::new(HashMap::new()),
                webhooks: RwLock::new(config.webhooks.map(|target| {
                    WebhookDispatcher::start(target).expect("a valid webhook signing secret")
                })),
                requests: AtomicU64::new(0),
                throttled: AtomicU64::new(0),
                lists: AtomicU64::new(0),
                users_listed: AtomicU64::new(0),
                full_created_pages: AtomicU64::new(0),
                full_membership_pages: AtomicU64::new(0),
            }),
        }
    }

    pub fn router(&self) -> Router {
        let router = Router::new()
            .route("/v1/users", get(list_users).post(writes::create_user))
            .route("/v1/users/count", get(count_users))
            .route("/v1/instance", get(get_instance))
            .route(
                "/v1/users/{user_id}",
                get(get_user).delete(writes::delete_user),
            )
            .route(
                "/v1/users/{user_id}/metadata",
                patch(writes::update_user_metadata),
            )
            .merge(super::organizations::routes())
            .merge(super::membership_writes::routes())
            .merge(super::organization_writes::routes())
            .with_state(self.state.clone());
        super::record::recording(router, &self.state)
    }

    /// Serves until `shutdown` resolves.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        axum::serve(listener, self.router())
            .with_graceful_shutdown(shutdown)
            .await
    }

    pub fn user_count(&self) -> usize {
        self.state.users.read().expect("fake store lock").len()
    }

    /// Every membership: `(organization id, user id, admin)`, oldest first.
    pub fn memberships(&self) -> Vec<(String, String, bool)> {
        (self
            .state
            .organizations
            .read()
            .expect("fake org lock")
            .memberships())
        .iter()
        .map(|m| (m.organization_id.clone(), m.user_id.clone(), m.admin))
        .collect()
    }

    /// Writes every organization (Clerk's JSON with `members_count`) and every membership
    /// (Clerk's JSON with its organization by id only) as JSON lines, oldest first.
    pub fn write_organizations(
        &self,
        organizations: &mut dyn std::io::Write,
        memberships: &mut dyn std::io::Write,
    ) -> std::io::Result<()> {
        let users = self.state.users.read().expect("fake store lock");
        let store = self.state.organizations.read().expect("fake org lock");
        store.write_jsonl(&users, organizations, memberships)
    }

    /// Every user id, oldest first.
    pub fn user_ids(&self) -> Vec<String> {
        self.state.users.read().expect("fake store lock").ids()
    }

    pub fn user_json(&self, id: &str) -> Option<Value> {
        let users = self.state.users.read().expect("fake store lock");
        users
            .get(id)
            .map(|u| serde_json::from_str(&u.json).expect("stored json is valid"))
    }

    /// Inserts or replaces a user (as a change made in Clerk's dashboard would).
    pub fn put_user_json(&self, user: &Value) {
        let stored =
            StoredUser::from_json(user).expect("a user needs id, created_at and updated_at");
        self.state
            .users
            .write()
            .expect("fake store lock")
            .put(stored);
    }

    /// A sign-in at `at_ms`, as Clerk records one made through its frontend API:
    /// `last_sign_in_at` and `last_active_at` move, `updated_at` does not, and the only
    /// announcement is a `session.created` whose `data.user` is the whole user. `false` when
    /// no such user exists.
    pub fn sign_in(&self, id: &str, at_ms: i64) -> bool {
        let user = {
            let mut users = self.state.users.write().expect("fake store lock");
            let Some(stored) = users.get(id) else {
                return false;
            };
            let mut user: Value = serde_json::from_str(&stored.json).expect("stored json is valid");
            user["last_sign_in_at"] = at_ms.into();
            // Clerk keeps `last_active_at` to the day.
            user["last_active_at"] = (at_ms - at_ms.rem_euclid(86_400_000)).into();
            users.put(StoredUser::from_json(&user).expect("a stored user stays valid"));
            user
        };
        if let Some(webhooks) = self
            .state
            .webhooks
            .read()
            .expect("fake webhook lock")
            .as_ref()
        {
            let session = serde_json::json!({
                "object": "session",
                "id": format!("sess_fake_{}", rand::random::<u64>()),
                "user_id": id,
                "client_id": "client_fake",
                "status": "active",
                "last_active_at": at_ms,
                "expire_at": at_ms + 7 * 24 * 3_600_000,
                "abandon_at": at_ms + 30 * 24 * 3_600_000,
                "created_at": at_ms,
                "updated_at": at_ms,
                "user": user,
            });
            webhooks.send("session.created", session);
        }
        true
    }

    pub fn delete_user(&self, id: &str) -> bool {
        self.state
            .users
            .write()
            .expect("fake store lock")
            .remove(id)
    }

    /// Starts (or replaces) webhook deliveries; must be called inside a tokio runtime.
    pub fn set_webhook_target(&self, target: WebhookTarget) -> Result<(), WebhookSecretError> {
        let dispatcher = WebhookDispatcher::start(target)?;
        *self.state.webhooks.write().expect("fake webhook lock") = Some(dispatcher);
        Ok(())
    }

    pub fn set_faults(&self, faults: FaultInjection) {
        *self.state.faults.write().expect("fake faults lock") = faults;
    }

    /// Requests received on `/v1/...`, including rejected ones.
    pub fn request_count(&self) -> u64 {
        self.state.requests.load(Ordering::Relaxed)
    }

    /// Users sent in list answers so far (a user on two pages counts twice).
    pub fn users_listed(&self) -> u64 {
        self.state.users_listed.load(Ordering::Relaxed)
    }

    /// The requests received and answers sent so far, when recording (else empty).
    pub fn recorded_exchanges(&self) -> Vec<Value> {
        let exchanges = self.state.exchanges.as_ref();
        exchanges.map_or_else(Vec::new, |e| e.lock().expect("fake record lock").clone())
    }

    /// Requests answered with 429 (injected or rate-limited).
    pub fn throttled_count(&self) -> u64 {
        self.state.throttled.load(Ordering::Relaxed)
    }
}

async fn list_users(
    State(state): State<Arc<FakeState>>,
    _: Admitted,
    RawQuery(query): RawQuery,
) -> Response {
    let params = match parse_list_params(query) {
        Ok(params) => params,
        Err(response) => return response,
    };
    let faults = *state.faults.read().expect("fake faults lock");
    let n = state.lists.fetch_add(1, Ordering::Relaxed) + 1;
    if faults
        .unreadable_list_every
        .is_some_and(|k| k > 0 && n.is_multiple_of(k))
    {
        return (
            [(axum::http::header::CONTENT_TYPE, "text/html")],
            "<html><body><h1>502 Bad Gateway</h1></body></html>",
        )
            .into_response();
    }
    if params.offset >= 1000 {
        // Clerk: "a large offset has to walk and discard every row before it".
        let skipped = std::time::Duration::from_millis(params.offset as u64 / 1000);
        tokio::time::sleep(skipped).await;
    }
    // Pages of users not kept as JSON are generated here: off the async workers.
    let page = {
        let state = state.clone();
        tokio::task::spawn_blocking(move || (select_page(&state, &params, faults), params))
    };
    let (page, params) = page.await.expect("a list page does not panic");
    let page = match page {
        Ok(page) => page,
        Err(response) => return response,
    };
    state
        .users_listed
        .fetch_add(page.len() as u64, Ordering::Relaxed);
    if let Some(every) = faults.delete_cursor_user_every
        && params.order_field == "created_at"
        && page.len() == params.limit
        && state.full_created_pages.fetch_add(1, Ordering::Relaxed) % every.max(1)
            == every.max(1) - 1
        && let Some(last) = page.last()
        && let Some(id) = serde_json::from_str::<Value>(last)
            .ok()
            .and_then(|u| u["id"].as_str().map(str::to_string))
    {
        state.users.write().expect("fake store lock").remove(&id);
    }
    let mut body = String::with_capacity(page.iter().map(|u| u.len() + 1).sum::<usize>() + 2);
    body.push('[');
    for (i, user) in page.iter().enumerate() {
        if i > 0 {
            body.push(',');
        }
        body.push_str(user);
    }
    body.push(']');
    json_response(body)
}

/// The page a list request asks for, or the error Clerk answers for its cursor.
#[allow(clippy::result_large_err)] // the error is the HTTP answer itself
fn select_page(
    state: &FakeState,
    params: &ListParams,
    faults: FaultInjection,
) -> Result<Vec<Arc<str>>, Response> {
    let users = state.users.read().expect("fake store lock");
    let selected = Selection::of(&users, params);
    let start = match &params.starting_after {
        Some(_) if faults.ignore_cursor => 0,
        Some(after) => match selected.position(&users, after) {
            Some(position) => position + 1,
            None => match faults.cursor_gone {
                CursorGone::Unprocessable => {
                    return Err(form_param_invalid(
                        "starting_after",
                        &format!("no user with id {after} to start after"),
                    ));
                }
                CursorGone::NotFound => return Err(user_not_found(after)),
                CursorGone::EmptyPage => selected.len(),
                CursorGone::FirstPage => 0,
            },
        },
        None => params.offset,
    };
    Ok(selected.page(&users, start, params.limit))
}

async fn count_users(State(state): State<Arc<FakeState>>, _: Admitted) -> Response {
    let total = state.users.read().expect("fake store lock").len();
    axum::Json(json!({"object": "total_count", "total_count": total})).into_response()
}

async fn get_instance(State(state): State<Arc<FakeState>>, _: Admitted) -> Response {
    axum::Json(json!({
        "object": "instance",
        "id": super::webhooks::FAKE_INSTANCE_ID,
        "environment_type": state.environment_type,
        "allowed_origins": null,
        "workspace_id": null,
    }))
    .into_response()
}

async fn get_user(
    State(state): State<Arc<FakeState>>,
    _: Admitted,
    Path(user_id): Path<String>,
) -> Response {
    let users = state.users.read().expect("fake store lock");
    match users.get(&user_id) {
        Some(user) => json_response(user.json.to_string()),
        None => user_not_found(&user_id),
    }
}
