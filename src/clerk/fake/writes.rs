//! The fake's write endpoints: `POST /v1/users`, `PATCH /v1/users/{id}/metadata` and
//! `DELETE /v1/users/{id}`, each announced with a webhook when a target is set.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::state::{
    Admitted, FakeState, body_not_an_object, clerk_error, form_param_invalid, json_response,
    too_many_requests, user_not_found,
};
use super::store::StoredUser;
use crate::clerk::rate_limit::{RateLimit, RateLimiter};

/// RFC 7386 merge patch, which is what Clerk documents for `PATCH .../metadata`: objects merge
/// recursively, `null` removes a key, anything else (arrays included) replaces.
pub fn merge_patch(target: &mut Value, patch: &Value) {
    let Value::Object(patch) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(serde_json::Map::new());
    }
    let object = target.as_object_mut().expect("made an object above");
    for (key, value) in patch {
        if value.is_null() {
            object.remove(key);
        } else {
            merge_patch(object.entry(key.clone()).or_insert(Value::Null), value);
        }
    }
}

pub(super) async fn update_user_metadata(
    State(state): State<Arc<FakeState>>,
    _: Admitted,
    Path(user_id): Path<String>,
    body: axum::body::Bytes,
) -> Response {
    let limiter = state
        .metadata_limiters
        .lock()
        .expect("fake limiter lock")
        .entry(user_id.clone())
        .or_insert_with(|| {
            Arc::new(RateLimiter::new(RateLimit {
                requests: 10,
                per: Duration::from_secs(10),
            }))
        })
        .clone();
    if let Err(wait) = limiter.try_acquire().await {
        return too_many_requests(&state, wait.as_secs_f64().ceil().max(1.0) as u64);
    }
    let patch: Value = match serde_json::from_slice(&body) {
        Ok(Value::Object(patch)) => Value::Object(patch),
        _ => {
            return body_not_an_object();
        }
    };
    let known = ["public_metadata", "private_metadata", "unsafe_metadata"];
    for (key, value) in patch.as_object().expect("checked above") {
        if !known.contains(&key.as_str()) {
            return clerk_error(
                StatusCode::UNPROCESSABLE_ENTITY,
                "form_param_unknown",
                "is unknown",
                &format!("{key} is not a valid parameter for this request."),
                json!({"name": key}),
            );
        }
        if !value.is_object() {
            return form_param_invalid(key, &format!("{key} must be an object"));
        }
    }
    let mut users = state.users.write().expect("fake store lock");
    let Some(stored) = users.get(&user_id) else {
        return user_not_found(&user_id);
    };
    let mut user: Value = serde_json::from_str(&stored.json).expect("stored json is valid");
    for key in known {
        if let Some(changes) = patch.get(key) {
            merge_patch(&mut user[key], changes);
        }
    }
    let now = crate::clock::now_ms();
    user["updated_at"] = json!(now.max(stored.updated_at + 1));
    let updated = StoredUser::from_json(&user).expect("the user stays complete");
    let body = updated.json.to_string();
    users.put(updated);
    drop(users);
    if let Some(webhooks) = &*state.webhooks.read().expect("fake webhook lock") {
        webhooks.send("user.updated", user);
    }
    json_response(body)
}

fn random_id(prefix: &str) -> String {
    const BASE62: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    let tail: String = (0..27)
        .map(|_| BASE62[rand::random_range(0..62)] as char)
        .collect();
    format!("{prefix}_{tail}")
}

/// `POST /v1/users` (CreateUser): the fields a segmentation demo needs; others are ignored.
pub(super) async fn create_user(
    State(state): State<Arc<FakeState>>,
    _: Admitted,
    body: axum::body::Bytes,
) -> Response {
    let Ok(Value::Object(params)) = serde_json::from_slice::<Value>(&body) else {
        return body_not_an_object();
    };
    let now = crate::clock::now_ms();
    let emails: Vec<Value> = params
        .get("email_address")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .map(|address| json!({"id": random_id("idn"), "object": "email_address", "email_address": address, "reserved": false,
            "verification": {"object": "verification_admin", "status": "verified", "strategy": "admin", "attempts": null, "expire_at": null}, "linked_to": [], "created_at": now, "updated_at": now}))
        .collect();
    let field = |name: &str| params.get(name).cloned().unwrap_or(Value::Null);
    let object_field = |name: &str| {
        params
            .get(name)
            .filter(|v| v.is_object())
            .cloned()
            .unwrap_or_else(|| json!({}))
    };
    let user = json!({
        "id": random_id("user"), "object": "user", "external_id": field("external_id"),
        "primary_email_address_id": emails.first().map(|e| e["id"].clone()).unwrap_or(Value::Null),
        "primary_phone_number_id": null, "primary_web3_wallet_id": null,
        "username": field("username"), "first_name": field("first_name"), "last_name": field("last_name"),
        "image_url": "https://img.clerk.com/default", "has_image": false,
        "public_metadata": object_field("public_metadata"), "private_metadata": object_field("private_metadata"),
        "unsafe_metadata": object_field("unsafe_metadata"),
        "email_addresses": emails, "phone_numbers": [], "web3_wallets": [], "passkeys": [],
        "password_enabled": params.contains_key("password"), "two_factor_enabled": false, "totp_enabled": false,
        "backup_code_enabled": false, "mfa_enabled_at": null, "mfa_disabled_at": null,
        "external_accounts": [], "saml_accounts": [], "enterprise_accounts": [],
        "last_sign_in_at": null, "banned": false, "locked": false, "lockout_expires_in_seconds": null,
        "verification_attempts_remaining": 100, "created_at": now, "updated_at": now,
        "delete_self_enabled": true, "create_organization_enabled": true, "create_organizations_limit": null,
        "last_active_at": null, "legal_accepted_at": null,
    });
    let stored = StoredUser::from_json(&user).expect("a created user is complete");
    let body = stored.json.to_string();
    state.users.write().expect("fake store lock").put(stored);
    if let Some(webhooks) = &*state.webhooks.read().expect("fake webhook lock") {
        webhooks.send("user.created", user);
    }
    json_response(body)
}

/// `DELETE /v1/users/{id}`: answers Clerk's `DeletedObject`, with the user's `external_id`
/// when it had one (the spec's `DeletedObject` carries it).
pub(super) async fn delete_user(
    State(state): State<Arc<FakeState>>,
    _: Admitted,
    Path(user_id): Path<String>,
) -> Response {
    let external_id = {
        let mut users = state.users.write().expect("fake store lock");
        let Some(user) = users.get(&user_id) else {
            return user_not_found(&user_id);
        };
        let json: Value = serde_json::from_str(&user.json).expect("stored json is valid");
        users.remove(&user_id);
        json["external_id"].as_str().map(str::to_string)
    };
    let mut deleted = json!({"object": "user", "id": user_id, "deleted": true});
    if let Some(external_id) = external_id {
        deleted["external_id"] = external_id.into();
    }
    if let Some(webhooks) = &*state.webhooks.read().expect("fake webhook lock") {
        webhooks.send("user.deleted", deleted.clone());
    }
    axum::Json(deleted).into_response()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::merge_patch;

    #[test]
    fn merge_patch_follows_rfc_7386() {
        // The examples of RFC 7386 appendix A that apply to objects.
        for (target, patch, result) in [
            (json!({"a": "b"}), json!({"a": "c"}), json!({"a": "c"})),
            (
                json!({"a": "b"}),
                json!({"b": "c"}),
                json!({"a": "b", "b": "c"}),
            ),
            (json!({"a": "b"}), json!({"a": null}), json!({})),
            (
                json!({"a": "b", "b": "c"}),
                json!({"a": null}),
                json!({"b": "c"}),
            ),
            (json!({"a": ["b"]}), json!({"a": "c"}), json!({"a": "c"})),
            (
                json!({"a": {"b": "c"}}),
                json!({"a": {"b": "d", "c": null}}),
                json!({"a": {"b": "d"}}),
            ),
            (
                json!({"a": [{"b": "c"}]}),
                json!({"a": [1]}),
                json!({"a": [1]}),
            ),
            (json!(null), json!({"a": 1}), json!({"a": 1})),
            (
                json!({"e": null}),
                json!({"a": 1}),
                json!({"e": null, "a": 1}),
            ),
        ] {
            let mut merged = target.clone();
            merge_patch(&mut merged, &patch);
            assert_eq!(merged, result, "{target} + {patch}");
        }
    }
}
