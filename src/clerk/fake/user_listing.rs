//! `GET /v1/users`' query parameters, and the users a list request selects in its order.
//!
//! The common cases (by `created_at` either way, at most a `created_at` window) are a range of
//! the store's order found by binary search. Other orders sort only what they select, and a page
//! after an `offset` keeps only the first `offset + limit` users, so a 10M-user fake answers
//! reconcile's `-updated_at` pages without sorting everyone.

use std::cmp::Ordering;
use std::ops::Range;
use std::sync::Arc;

use axum::response::Response;
use serde_json::Value;

use super::state::{form_param_invalid, list_limit, order_by};
use super::store::{Entry, UserStore};

const ORDER_FIELDS: &[&str] = &[
    "created_at",
    "updated_at",
    "email_address",
    "web3wallet",
    "first_name",
    "last_name",
    "phone_number",
    "username",
    "last_active_at",
    "last_sign_in_at",
];

pub(super) struct ListParams {
    pub(super) limit: usize,
    pub(super) offset: usize,
    pub(super) order_field: String,
    pub(super) descending: bool,
    pub(super) starting_after: Option<String>,
    user_ids: Vec<String>,
    /// `(field, after, before)` time filters: `created_at_after=…` and the like (exclusive).
    windows: Vec<(TimeField, Option<i64>, Option<i64>)>,
}

/// The user timestamps Clerk's list filters by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TimeField {
    /// `created_at`
    Created,
    /// `last_sign_in_at`
    SignIn,
    /// `last_active_at`
    Active,
}

impl TimeField {
    fn of(self, store: &UserStore, entry: &Entry) -> Option<i64> {
        match self {
            TimeField::Created => Some(entry.created_at),
            TimeField::SignIn => store.last_sign_in_at(entry.who),
            TimeField::Active => store.last_active_at(entry.who),
        }
    }

    /// The field and bound a query parameter names: `last_sign_in_at_after` -> (sign-in, after).
    fn parse(key: &str) -> Option<(TimeField, bool)> {
        let (field, after) = match key.rsplit_once('_')? {
            (field, "after") => (field, true),
            (field, "before") => (field, false),
            _ => return None,
        };
        let field = match field {
            "created_at" => TimeField::Created,
            "last_sign_in_at" => TimeField::SignIn,
            "last_active_at" => TimeField::Active,
            _ => return None,
        };
        Some((field, after))
    }
}

#[allow(clippy::result_large_err)] // the error is the HTTP answer itself, built once per request
pub(super) fn parse_list_params(query: Option<String>) -> Result<ListParams, Response> {
    let mut params = ListParams {
        limit: 10,
        offset: 0,
        order_field: "created_at".into(),
        descending: true,
        starting_after: None,
        user_ids: Vec::new(),
        windows: Vec::new(),
    };
    let mut offset_given = false;
    for (key, value) in form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
        match key.as_ref() {
            // Out of range (or not a number): Clerk's default page, silently.
            "limit" => params.limit = list_limit(&value),
            "offset" => {
                params.offset = value.parse().map_err(|_| {
                    form_param_invalid("offset", "offset must be a non-negative integer")
                })?;
                offset_given = params.offset != 0;
            }
            "order_by" => {
                (params.descending, params.order_field) = order_by(&value, ORDER_FIELDS)?;
            }
            "starting_after" => params.starting_after = Some(value.into_owned()),
            "user_id" => params.user_ids.push(value.into_owned()),
            key => {
                if let Some((field, after)) = TimeField::parse(key) {
                    let ms: i64 = value.parse().map_err(|_| {
                        form_param_invalid(
                            key,
                            &format!("{key} must be milliseconds since the epoch"),
                        )
                    })?;
                    let bound = if after {
                        (Some(ms), None)
                    } else {
                        (None, Some(ms))
                    };
                    params.windows.push((field, bound.0, bound.1));
                }
            }
        }
    }
    if params.starting_after.is_some() {
        if params.order_field != "created_at" {
            return Err(form_param_invalid(
                "starting_after",
                "starting_after can only be used when ordering by created_at",
            ));
        }
        if offset_given {
            return Err(form_param_invalid(
                "starting_after",
                "starting_after cannot be combined with a non-zero offset",
            ));
        }
    }
    Ok(params)
}

/// The users a list request selects, in its order.
pub(super) enum Selection {
    /// Positions of the store's `(created_at, id)` order, read forwards or backwards.
    Range {
        range: Range<usize>,
        descending: bool,
    },
    /// These users, in this order. Without a cursor only the first `offset + limit` are kept.
    Listed(Vec<Entry>),
}

impl Selection {
    pub(super) fn of(store: &UserStore, params: &ListParams) -> Selection {
        let only_created = params
            .windows
            .iter()
            .all(|(field, _, _)| *field == TimeField::Created);
        if params.order_field == "created_at" && params.user_ids.is_empty() && only_created {
            let entries = store.entries();
            let mut range = 0..entries.len();
            for (_, after, before) in &params.windows {
                if let Some(after) = after {
                    range.start = range
                        .start
                        .max(entries.partition_point(|e| e.created_at <= *after));
                }
                if let Some(before) = before {
                    range.end = range
                        .end
                        .min(entries.partition_point(|e| e.created_at < *before));
                }
            }
            range.end = range.end.max(range.start);
            return Selection::Range {
                range,
                descending: params.descending,
            };
        }
        let in_windows = |entry: &Entry| {
            params.windows.iter().all(|(field, after, before)| {
                field.of(store, entry).is_some_and(|t| {
                    after.is_none_or(|after| t > after) && before.is_none_or(|before| t < before)
                })
            })
        };
        let mut selected: Vec<Entry> = if params.user_ids.is_empty() {
            store.entries().iter().copied().filter(in_windows).collect()
        } else {
            let mut located: Vec<Entry> = (params.user_ids.iter())
                .filter_map(|id| store.locate(id))
                .filter(in_windows)
                .collect();
            located.sort_by(|a, b| store.cmp_entries(a, b));
            located.dedup();
            located
        };
        let keep = params
            .starting_after
            .is_none()
            .then_some(params.offset.saturating_add(params.limit));
        sort_entries(
            store,
            &mut selected,
            &params.order_field,
            params.descending,
            keep,
        );
        Selection::Listed(selected)
    }

    pub(super) fn len(&self) -> usize {
        match self {
            Selection::Range { range, .. } => range.len(),
            Selection::Listed(entries) => entries.len(),
        }
    }

    /// Where user `id` is in the selection.
    pub(super) fn position(&self, store: &UserStore, id: &str) -> Option<usize> {
        let entry = store.locate(id)?;
        match self {
            Selection::Range { range, descending } => {
                let at = store.position(entry)?;
                let offset = range.contains(&at).then(|| at - range.start)?;
                Some(if *descending {
                    range.len() - 1 - offset
                } else {
                    offset
                })
            }
            Selection::Listed(entries) => entries.iter().position(|e| *e == entry),
        }
    }

    /// The JSON of the users at `start..start + limit` of the selection.
    pub(super) fn page(&self, store: &UserStore, start: usize, limit: usize) -> Vec<Arc<str>> {
        let end = start.saturating_add(limit).min(self.len());
        let start = start.min(end);
        match self {
            Selection::Range { range, descending } => {
                let positions = if *descending {
                    range.end - end..range.end - start
                } else {
                    range.start + start..range.start + end
                };
                let mut page: Vec<Arc<str>> = store.entries()[positions]
                    .iter()
                    .map(|e| store.json(e.who))
                    .collect();
                if *descending {
                    page.reverse();
                }
                page
            }
            Selection::Listed(entries) => entries[start..end]
                .iter()
                .map(|e| store.json(e.who))
                .collect(),
        }
    }
}

/// Sorts by one of Clerk's `order_by` fields, ties by id, then reversed when descending; with
/// `keep`, only that many first users are kept (selected first, then sorted).
fn sort_entries(
    store: &UserStore,
    entries: &mut Vec<Entry>,
    field: &str,
    descending: bool,
    keep: Option<usize>,
) {
    let directed = |order: Ordering| if descending { order.reverse() } else { order };
    // Users who never signed in sort last going up, as PostgreSQL orders NULLs.
    let nulls_last = |a: Option<i64>, b: Option<i64>| (a.is_none(), a).cmp(&(b.is_none(), b));
    let by_key = |a: &Entry, b: &Entry| match field {
        "created_at" => a.created_at.cmp(&b.created_at),
        "updated_at" => store.updated_at(a.who).cmp(&store.updated_at(b.who)),
        "last_sign_in_at" => nulls_last(store.last_sign_in_at(a.who), store.last_sign_in_at(b.who)),
        "last_active_at" => nulls_last(store.last_active_at(a.who), store.last_active_at(b.who)),
        _ => Ordering::Equal,
    };
    let cmp =
        |a: &Entry, b: &Entry| directed(by_key(a, b).then_with(|| store.cmp_ids(a.who, b.who)));
    if matches!(
        field,
        "created_at" | "updated_at" | "last_sign_in_at" | "last_active_at"
    ) {
        if let Some(keep) = keep.filter(|&keep| keep < entries.len()) {
            if keep == 0 {
                entries.clear();
                return;
            }
            entries.select_nth_unstable_by(keep - 1, cmp);
            entries.truncate(keep);
        }
        entries.sort_by(cmp);
        return;
    }
    // A field inside the JSON: read every selected user once.
    let mut keyed: Vec<(String, Entry)> = entries
        .iter()
        .map(|e| (json_key(&store.json(e.who), field), *e))
        .collect();
    keyed
        .sort_by(|(ka, a), (kb, b)| directed(ka.cmp(kb).then_with(|| store.cmp_ids(a.who, b.who))));
    *entries = keyed.into_iter().map(|(_, e)| e).collect();
}

fn json_key(json: &str, field: &str) -> String {
    let json: Value = serde_json::from_str(json).unwrap_or_default();
    let value = match field {
        "email_address" => json["email_addresses"][0]["email_address"].clone(),
        "phone_number" => json["phone_numbers"][0]["phone_number"].clone(),
        "web3wallet" => json["web3_wallets"][0]["web3_wallet"].clone(),
        field => json[field].clone(),
    };
    value.to_string()
}
