//! The fake's organization writes, with Clerk's paths and answers:
//! `POST /v1/organizations` (`name` required; `slug`, `created_by`, `public_metadata`,
//! `private_metadata`, `max_allowed_memberships` and a past `created_at` in RFC 3339 optional),
//! answered with the organization and announced as `organization.created` (and the creator's
//! admin membership as `organizationMembership.created`), and
//! `DELETE /v1/organizations/{id}`, answered with Clerk's deleted object, announced as
//! `organization.deleted` with the same payload; its memberships go with it. An unknown
//! organization is a 404, a missing name or unknown creator a 422.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{delete, post};
use serde_json::{Value, json};

use super::random::clerk_id;
use super::state::{Admitted, FakeState, clerk_error, form_param_invalid, json_response};

pub(super) fn routes() -> Router<Arc<FakeState>> {
    Router::new()
        .route("/v1/organizations", post(create_organization))
        .route(
            "/v1/organizations/{organization_id}",
            delete(delete_organization),
        )
}

fn announce(state: &FakeState, event_type: &str, json: &Value) {
    if let Some(webhooks) = state.webhooks.read().expect("fake webhook lock").as_ref() {
        webhooks.send(event_type, json.clone());
    }
}

/// The organization's JSON from a create request's body, or the 422 that refuses it.
#[allow(clippy::result_large_err)] // the error is the HTTP answer itself
fn new_organization(body: &Value, index: usize, now: i64) -> Result<Value, Response> {
    let Some(name) = body["name"].as_str().filter(|n| !n.trim().is_empty()) else {
        return Err(form_param_invalid("name", "name is required"));
    };
    let created_at = match body["created_at"].as_str() {
        None => now,
        Some(text) => {
            let format = time::format_description::well_known::Rfc3339;
            let at = time::OffsetDateTime::parse(text, &format)
                .map_err(|_| form_param_invalid("created_at", "created_at must be RFC 3339"))?;
            (at.unix_timestamp_nanos() / 1_000_000) as i64
        }
    };
    let id = {
        use rand::SeedableRng;
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(now as u64 ^ index as u64);
        clerk_id(&mut rng, "org", index)
    };
    let slug = body["slug"].as_str().map_or_else(
        || {
            name.to_lowercase()
                .replace(|c: char| !c.is_alphanumeric(), "-")
        },
        str::to_string,
    );
    let object = |key: &str| match &body[key] {
        Value::Object(map) => Value::Object(map.clone()),
        _ => json!({}),
    };
    Ok(json!({
        "object": "organization",
        "id": id,
        "name": name,
        "slug": slug,
        "image_url": "https://img.clerk.com/eyJ0eXBlIjoiZGVmYXVsdCJ9",
        "has_image": false,
        "max_allowed_memberships": body["max_allowed_memberships"].as_i64().unwrap_or(5),
        "admin_delete_enabled": true,
        "public_metadata": object("public_metadata"),
        "private_metadata": object("private_metadata"),
        "created_by": body["created_by"],
        "created_at": created_at,
        "updated_at": now,
    }))
}

async fn create_organization(
    State(state): State<Arc<FakeState>>,
    _: Admitted,
    body: axum::body::Bytes,
) -> Response {
    let Ok(body) = serde_json::from_slice::<Value>(&body) else {
        return form_param_invalid("body", "the body must be a JSON object");
    };
    let users = state.users.read().expect("fake store lock");
    let creator = body["created_by"].as_str();
    if creator.is_some_and(|id| users.get(id).is_none()) {
        return form_param_invalid("created_by", "no user with this id");
    }
    let mut store = state.organizations.write().expect("fake org lock");
    let now = crate::clock::now_ms();
    let json = match new_organization(&body, store.organizations().len(), now) {
        Ok(json) => json,
        Err(response) => return response,
    };
    let organization = store.add_organization(json);
    let membership = creator.and_then(|user_id| {
        let membership = store.add_membership(&organization.id, user_id, true, now)?;
        Some(store.membership_json(&membership, &users))
    });
    let answer = store.organization_json(&organization, true);
    announce(&state, "organization.created", &answer);
    if let Some(membership) = membership {
        announce(&state, "organizationMembership.created", &membership);
    }
    json_response(answer.to_string())
}

async fn delete_organization(
    State(state): State<Arc<FakeState>>,
    _: Admitted,
    Path(organization_id): Path<String>,
) -> Response {
    let mut store = state.organizations.write().expect("fake org lock");
    if store.remove_organization(&organization_id).is_none() {
        return clerk_error(
            StatusCode::NOT_FOUND,
            "resource_not_found",
            "not found",
            &format!("No organization was found with id {organization_id}"),
            json!({}),
        );
    }
    let deleted = json!({"object": "organization", "id": organization_id, "deleted": true});
    announce(&state, "organization.deleted", &deleted);
    json_response(deleted.to_string())
}
