//! The fake's organization endpoints, with Clerk's paths, parameters and list shape
//! (`{"data": [...], "total_count": N}`, offset paging only, `limit` 1..=500 else the default 10):
//! `GET /v1/organizations`, the instance-wide `GET /v1/organization_memberships`,
//! `GET /v1/organizations/{id}/memberships` (with `created_at` windows, `role` and `user_id`
//! filters), `GET /v1/users/{id}/organization_memberships` and
//! `PATCH /v1/organizations/{id}/metadata` (deep merge, announced as `organization.updated`;
//! 404 for an unknown organization). The two membership lists of one organization or user have
//! no 404 in Clerk's spec, so an unknown id is an empty list.
//! Orders: organizations by `created_at`, `name` or `members_count`, memberships by
//! `created_at` (Clerk also sorts memberships by member fields, which the fake refuses with 422).

use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::Router;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{get, patch};
use serde_json::{Value, json};

use super::org_store::StoredMembership;
use super::state::{
    Admitted, FakeState, clerk_error, form_param_invalid, json_response, list_limit, order_by,
};
use super::writes::merge_patch;

pub(super) fn routes() -> Router<Arc<FakeState>> {
    Router::new()
        .route("/v1/organizations", get(list_organizations))
        .route("/v1/organization_memberships", get(list_all_memberships))
        .route(
            "/v1/organizations/{organization_id}/memberships",
            get(list_organization_memberships),
        )
        .route(
            "/v1/organizations/{organization_id}/metadata",
            patch(update_organization_metadata),
        )
        .route(
            "/v1/users/{user_id}/organization_memberships",
            get(list_user_memberships),
        )
}

/// The parameters every list here shares, and the filters some of them take.
struct Params {
    limit: usize,
    offset: usize,
    order_field: String,
    descending: bool,
    include_members_count: bool,
    user_ids: Vec<String>,
    organization_ids: Vec<String>,
    roles: Vec<String>,
    query: Option<String>,
    created_after: Option<i64>,
    created_before: Option<i64>,
}

#[allow(clippy::result_large_err)] // the error is the HTTP answer itself, built once per request
fn params(
    query: Option<String>,
    order_fields: &[&str],
    default_order: &str,
) -> Result<Params, Response> {
    let mut params = Params {
        limit: 10,
        offset: 0,
        order_field: default_order.trim_start_matches(['-', '+']).to_string(),
        descending: default_order.starts_with('-'),
        include_members_count: false,
        user_ids: Vec::new(),
        organization_ids: Vec::new(),
        roles: Vec::new(),
        query: None,
        created_after: None,
        created_before: None,
    };
    let millis = |key: &str, value: &str| {
        (value.parse::<i64>().ok()).ok_or_else(|| {
            form_param_invalid(key, &format!("{key} must be milliseconds since the epoch"))
        })
    };
    for (key, value) in form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
        match key.as_ref() {
            "limit" => params.limit = list_limit(&value),
            "offset" => {
                params.offset = value.parse().map_err(|_| {
                    form_param_invalid("offset", "offset must be a non-negative integer")
                })?;
            }
            "order_by" => {
                (params.descending, params.order_field) = order_by(&value, order_fields)?;
            }
            "include_members_count" => params.include_members_count = value == "true",
            "user_id" => params.user_ids.push(value.into_owned()),
            "organization_id" => params.organization_ids.push(value.into_owned()),
            "role" => params.roles.push(value.into_owned()),
            "query" => params.query = Some(value.to_lowercase()),
            "created_at_after" => params.created_after = Some(millis("created_at_after", &value)?),
            "created_at_before" => {
                params.created_before = Some(millis("created_at_before", &value)?)
            }
            _ => {}
        }
    }
    Ok(params)
}

/// One page of `items` (already in ascending order), as Clerk's `{data, total_count}`.
fn page<T>(items: Vec<T>, params: &Params, json: impl Fn(&T) -> Value) -> Response {
    let total = items.len();
    let ordered: Box<dyn Iterator<Item = &T>> = if params.descending {
        Box::new(items.iter().rev())
    } else {
        Box::new(items.iter())
    };
    let data: Vec<Value> = ordered
        .skip(params.offset)
        .take(params.limit)
        .map(json)
        .collect();
    json_response(json!({"data": data, "total_count": total}).to_string())
}

async fn list_organizations(
    State(state): State<Arc<FakeState>>,
    _: Admitted,
    RawQuery(query): RawQuery,
) -> Response {
    let params = match params(
        query,
        &["created_at", "name", "members_count"],
        "-created_at",
    ) {
        Ok(params) => params,
        Err(response) => return response,
    };
    let store = state.organizations.read().expect("fake org lock");
    let member_of: Vec<&str> = (store.memberships().iter())
        .filter(|m| params.user_ids.contains(&m.user_id))
        .map(|m| m.organization_id.as_str())
        .collect();
    let mut selected: Vec<_> = (store.organizations().iter())
        .filter(|o| params.organization_ids.is_empty() || params.organization_ids.contains(&o.id))
        .filter(|o| params.user_ids.is_empty() || member_of.contains(&o.id.as_str()))
        .filter(|o| {
            params.query.as_ref().is_none_or(|q| {
                o.id.to_lowercase().contains(q)
                    || o.json["name"]
                        .as_str()
                        .is_some_and(|n| n.to_lowercase().contains(q))
                    || o.json["slug"].as_str().is_some_and(|s| s.contains(q))
            })
        })
        .collect();
    match params.order_field.as_str() {
        "name" => selected.sort_by(|a, b| a.json["name"].as_str().cmp(&b.json["name"].as_str())),
        "members_count" => selected.sort_by_key(|o| store.members_count(&o.id)),
        _ => {}
    }
    page(selected, &params, |org| {
        store.organization_json(org, params.include_members_count)
    })
}

fn memberships_page(
    state: &FakeState,
    query: Option<String>,
    keep: impl Fn(&StoredMembership) -> bool,
) -> Response {
    let params = match params(query, &["created_at"], "-created_at") {
        Ok(params) => params,
        Err(response) => return response,
    };
    let users = state.users.read().expect("fake store lock");
    let store = state.organizations.read().expect("fake org lock");
    let selected: Vec<&StoredMembership> = (store.memberships().iter())
        .filter(|m| keep(m))
        .filter(|m| params.user_ids.is_empty() || params.user_ids.contains(&m.user_id))
        .filter(|m| {
            let role = if m.admin { "org:admin" } else { "org:member" };
            params.roles.is_empty() || params.roles.iter().any(|r| r == role)
        })
        .filter(|m| params.created_after.is_none_or(|t| m.created_at > t))
        .filter(|m| params.created_before.is_none_or(|t| m.created_at < t))
        .collect();
    page(selected, &params, |m| store.membership_json(m, &users))
}

async fn list_all_memberships(
    State(state): State<Arc<FakeState>>,
    _: Admitted,
    RawQuery(query): RawQuery,
) -> Response {
    let response = memberships_page(&state, query.clone(), |_| true);
    delete_after_full_page(&state, query);
    response
}

/// [`super::FaultInjection::delete_listed_membership_every`]: after a full page of the
/// ascending listing, its first membership is deleted.
fn delete_after_full_page(state: &FakeState, query: Option<String>) {
    let faults = *state.faults.read().expect("fake faults lock");
    let Some(every) = faults.delete_listed_membership_every else {
        return;
    };
    let Ok(params) = params(query, &["created_at"], "-created_at") else {
        return;
    };
    let mut store = state.organizations.write().expect("fake org lock");
    let full = store.memberships().len() >= params.offset + params.limit;
    if params.descending || !full {
        return;
    }
    let every = every.max(1);
    if state.full_membership_pages.fetch_add(1, Ordering::Relaxed) % every != every - 1 {
        return;
    }
    let id = store.memberships()[params.offset].id.clone();
    store.remove_membership(&id);
}

fn organization_not_found(organization_id: &str) -> Response {
    clerk_error(
        StatusCode::NOT_FOUND,
        "resource_not_found",
        "not found",
        &format!("No organization was found with id {organization_id}"),
        json!({}),
    )
}

async fn list_organization_memberships(
    State(state): State<Arc<FakeState>>,
    _: Admitted,
    Path(organization_id): Path<String>,
    RawQuery(query): RawQuery,
) -> Response {
    // The spec lists no 404 here (200, 401, 422): an unknown organization has no members.
    memberships_page(&state, query, |m| m.organization_id == organization_id)
}

async fn list_user_memberships(
    State(state): State<Arc<FakeState>>,
    _: Admitted,
    Path(user_id): Path<String>,
    RawQuery(query): RawQuery,
) -> Response {
    // The spec lists no 404 here (200, 403): an unknown user belongs to no organization.
    memberships_page(&state, query, |m| m.user_id == user_id)
}

async fn update_organization_metadata(
    State(state): State<Arc<FakeState>>,
    _: Admitted,
    Path(organization_id): Path<String>,
    body: axum::body::Bytes,
) -> Response {
    let Ok(Value::Object(patch)) = serde_json::from_slice::<Value>(&body) else {
        return form_param_invalid("body", "the body must be a JSON object");
    };
    let known = ["public_metadata", "private_metadata"];
    for (key, value) in &patch {
        if !known.contains(&key.as_str()) || !value.is_object() {
            return form_param_invalid(
                key,
                &format!("{key} must be one of {} and an object", known.join(", ")),
            );
        }
    }
    let mut store = state.organizations.write().expect("fake org lock");
    let Some(org) = store.organization(&organization_id) else {
        return organization_not_found(&organization_id);
    };
    let mut json = org.json.clone();
    for key in known {
        if let Some(changes) = patch.get(key) {
            merge_patch(&mut json[key], changes);
        }
    }
    let previous = json["updated_at"].as_i64().unwrap_or(0);
    json["updated_at"] = json!(crate::clock::now_ms().max(previous + 1));
    store.replace(&organization_id, json);
    let org = store.organization(&organization_id).expect("just replaced");
    let answer = store.organization_json(org, true);
    if let Some(webhooks) = state.webhooks.read().expect("fake webhook lock").as_ref() {
        webhooks.send("organization.updated", answer.clone());
    }
    json_response(answer.to_string())
}
