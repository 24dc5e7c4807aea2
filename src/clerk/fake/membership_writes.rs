//! The fake's membership writes, with Clerk's paths and answers:
//! `POST /v1/organizations/{id}/memberships` (`{"user_id", "role"}`),
//! `PATCH /v1/organizations/{id}/memberships/{user_id}` (`{"role"}`) and
//! `DELETE /v1/organizations/{id}/memberships/{user_id}`, each answered with the membership and
//! announced as `organizationMembership.created`/`.updated`/`.deleted` (the deletion's payload is
//! the membership as it was). Roles are `org:admin` and `org:member`; an unknown organization or
//! membership is a 404, an unknown user or a second membership a 422.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{patch, post};
use serde_json::{Value, json};

use super::state::{Admitted, FakeState, clerk_error, form_param_invalid, json_response};

pub(super) fn routes() -> Router<Arc<FakeState>> {
    Router::new()
        .route(
            "/v1/organizations/{organization_id}/memberships",
            post(create_membership),
        )
        .route(
            "/v1/organizations/{organization_id}/memberships/{user_id}",
            patch(update_membership).delete(delete_membership),
        )
}

fn not_found(what: &str) -> Response {
    clerk_error(
        StatusCode::NOT_FOUND,
        "resource_not_found",
        "not found",
        &format!("{what} was not found"),
        json!({}),
    )
}

/// The JSON body and its role: `org:admin` (true) or `org:member` (false).
#[allow(clippy::result_large_err)] // the error is the HTTP answer itself
fn body_and_role(body: &[u8]) -> Result<(Value, bool), Response> {
    let Ok(body) = serde_json::from_slice::<Value>(body) else {
        return Err(form_param_invalid("body", "the body must be a JSON object"));
    };
    let admin = match body["role"].as_str() {
        Some("org:admin") => true,
        Some("org:member") => false,
        _ => {
            return Err(form_param_invalid(
                "role",
                "role must be org:admin or org:member",
            ));
        }
    };
    Ok((body, admin))
}

/// Answers with the membership as Clerk lists it, and announces it.
fn answer(state: &FakeState, event_type: &str, json: Value) -> Response {
    if let Some(webhooks) = state.webhooks.read().expect("fake webhook lock").as_ref() {
        webhooks.send(event_type, json.clone());
    }
    json_response(json.to_string())
}

async fn create_membership(
    State(state): State<Arc<FakeState>>,
    _: Admitted,
    Path(organization_id): Path<String>,
    body: axum::body::Bytes,
) -> Response {
    let (body, admin) = match body_and_role(&body) {
        Ok(parsed) => parsed,
        Err(response) => return response,
    };
    let Some(user_id) = body["user_id"].as_str() else {
        return form_param_invalid("user_id", "user_id is required");
    };
    let users = state.users.read().expect("fake store lock");
    if users.get(user_id).is_none() {
        return form_param_invalid("user_id", "no user with this id");
    }
    let mut store = state.organizations.write().expect("fake org lock");
    if store.organization(&organization_id).is_none() {
        return not_found("the organization");
    }
    let now = crate::clock::now_ms();
    let Some(membership) = store.add_membership(&organization_id, user_id, admin, now) else {
        return clerk_error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "already_a_member_in_organization",
            "already a member",
            "The user is already a member of this organization",
            json!({}),
        );
    };
    let json = store.membership_json(&membership, &users);
    answer(&state, "organizationMembership.created", json)
}

async fn update_membership(
    State(state): State<Arc<FakeState>>,
    _: Admitted,
    Path((organization_id, user_id)): Path<(String, String)>,
    body: axum::body::Bytes,
) -> Response {
    let (_, admin) = match body_and_role(&body) {
        Ok(parsed) => parsed,
        Err(response) => return response,
    };
    let users = state.users.read().expect("fake store lock");
    let mut store = state.organizations.write().expect("fake org lock");
    let now = crate::clock::now_ms();
    let Some(membership) = store.set_admin(&organization_id, &user_id, admin, now) else {
        return not_found("the membership");
    };
    let json = store.membership_json(&membership, &users);
    answer(&state, "organizationMembership.updated", json)
}

async fn delete_membership(
    State(state): State<Arc<FakeState>>,
    _: Admitted,
    Path((organization_id, user_id)): Path<(String, String)>,
) -> Response {
    let users = state.users.read().expect("fake store lock");
    let mut store = state.organizations.write().expect("fake org lock");
    let Some(id) = store
        .membership_of(&organization_id, &user_id)
        .map(|m| m.id.clone())
    else {
        return not_found("the membership");
    };
    let removed = store.remove_membership(&id).expect("just found");
    let json = store.membership_json(&removed, &users);
    answer(&state, "organizationMembership.deleted", json)
}
