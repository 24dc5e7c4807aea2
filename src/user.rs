//! The domain view of a Clerk user and the one change type every source produces.
//!
//! `clerk/` turns Clerk's wire JSON into a [`User`]; `index/` stores and indexes it; `query/`
//! evaluates filters against it. Nothing here knows about HTTP, protobuf or tantivy.

use std::sync::Arc;

use serde_json::Value;

/// A Clerk user as the index sees it: the typed core fields that filters address, the three
/// metadata objects, and the user's full Clerk JSON kept verbatim for `GetUser` and projections.
#[derive(Debug, Clone, PartialEq)]
pub struct User {
    pub id: String,
    pub external_id: Option<String>,
    pub username: Option<String>,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    /// The primary email address, if the user has one.
    pub primary_email: Option<String>,
    /// Every email address of the user, primary first.
    pub emails: Vec<String>,
    pub phone_numbers: Vec<String>,
    /// Milliseconds since the epoch, as Clerk sends them.
    pub created_at: i64,
    pub updated_at: i64,
    pub last_sign_in_at: Option<i64>,
    pub last_active_at: Option<i64>,
    pub banned: bool,
    pub locked: bool,
    pub two_factor_enabled: bool,
    pub password_enabled: bool,
    pub has_image: bool,
    pub public_metadata: Value,
    pub private_metadata: Value,
    pub unsafe_metadata: Value,
    /// The user's Clerk JSON, serialized once; unknown fields are kept.
    pub raw_json: Arc<str>,
    /// The user's sensitive values once sealed (then absent from the metadata and `raw_json`);
    /// `None` before sealing or when the user holds none.
    pub sealed: Option<Arc<Sealed>>,
}

/// A user's sensitive values, sealed before the user reaches the index (`auth::sensitive`): the
/// values encrypted, and blind-index tokens (keyed hashes of path and value) that equality
/// filters look up. Nothing here is plaintext.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Sealed {
    /// The encrypted values as stored with the user: opaque outside `auth`.
    pub values: String,
    /// One token per sensitive path and value.
    pub tokens: Vec<String>,
}

impl User {
    /// The domains of every email address, lower-cased and deduplicated, in address order.
    pub fn email_domains(&self) -> Vec<String> {
        let mut domains: Vec<String> = Vec::with_capacity(self.emails.len());
        for email in &self.emails {
            if let Some((_, domain)) = email.rsplit_once('@') {
                let domain = domain.to_lowercase();
                if !domains.contains(&domain) {
                    domains.push(domain);
                }
            }
        }
        domains
    }

    /// The metadata object of one namespace.
    pub fn metadata(&self, namespace: MetadataNamespace) -> &Value {
        match namespace {
            MetadataNamespace::Public => &self.public_metadata,
            MetadataNamespace::Private => &self.private_metadata,
            MetadataNamespace::Unsafe => &self.unsafe_metadata,
        }
    }
}

/// The three metadata objects Clerk keeps on a user.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum MetadataNamespace {
    Public,
    Private,
    Unsafe,
}

impl MetadataNamespace {
    pub const ALL: [MetadataNamespace; 3] = [Self::Public, Self::Private, Self::Unsafe];

    /// The Clerk JSON key, which is also the index field name.
    pub fn field_name(self) -> &'static str {
        match self {
            Self::Public => "public_metadata",
            Self::Private => "private_metadata",
            Self::Unsafe => "unsafe_metadata",
        }
    }

    /// The short spelling used in filters (`public.plan`).
    pub fn short_name(self) -> &'static str {
        match self {
            Self::Public => "public",
            Self::Private => "private",
            Self::Unsafe => "unsafe",
        }
    }

    /// Accepts both spellings.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|ns| ns.field_name() == name || ns.short_name() == name)
    }
}

/// Where a change came from; kept for logs and, later, per-source metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeSource {
    Backfill,
    Webhook,
    Reconcile,
    WriteThrough,
    /// Re-sealing sensitive values under a new key.
    Reencrypt,
}

impl ChangeSource {
    pub fn name(self) -> &'static str {
        match self {
            ChangeSource::Backfill => "backfill",
            ChangeSource::Webhook => "webhook",
            ChangeSource::Reconcile => "reconcile",
            ChangeSource::WriteThrough => "write_through",
            ChangeSource::Reencrypt => "reencrypt",
        }
    }
}

/// The one change type every source (backfill, webhooks, reconcile, write-through) produces and
/// the index writer task applies.
#[derive(Debug, Clone)]
pub enum UserChange {
    /// Insert or replace a user. Ignored when the index holds a newer `updated_at` for the id.
    Upsert {
        user: Arc<User>,
        source: ChangeSource,
    },
    /// Remove a user, as of `deleted_at_ms`.
    Delete {
        user_id: String,
        deleted_at_ms: i64,
        source: ChangeSource,
    },
}

impl UserChange {
    pub fn user_id(&self) -> &str {
        match self {
            UserChange::Upsert { user, .. } => &user.id,
            UserChange::Delete { user_id, .. } => user_id,
        }
    }

    pub fn source(&self) -> ChangeSource {
        match self {
            UserChange::Upsert { source, .. } | UserChange::Delete { source, .. } => *source,
        }
    }

    /// Whether this change, arriving after `held` (the latest state recorded for the same user),
    /// changes what an index holds: the index writer's rules, for a log that keeps one change per
    /// user. A deletion always does (unless an equal or later one is held); an upsert must be
    /// newer than a held deletion, and at least as new as a held upsert and different from it.
    pub fn supersedes(&self, held: &UserChange) -> bool {
        match (self, held) {
            (UserChange::Upsert { user, .. }, UserChange::Upsert { user: held, .. }) => {
                user.updated_at > held.updated_at
                    || (user.updated_at == held.updated_at && user.raw_json != held.raw_json)
            }
            (
                UserChange::Upsert { user, .. },
                UserChange::Delete {
                    deleted_at_ms: held,
                    ..
                },
            ) => user.updated_at > *held,
            (UserChange::Delete { .. }, UserChange::Upsert { .. }) => true,
            (
                UserChange::Delete { deleted_at_ms, .. },
                UserChange::Delete {
                    deleted_at_ms: held,
                    ..
                },
            ) => deleted_at_ms > held,
        }
    }
}

/// Joins a namespace and keys into one path string, `public_metadata.a.b`, escaping `\` and `.`
/// inside keys so `{"a.b": 1}` and `{"a": {"b": 1}}` stay distinct.
pub fn encode_metadata_path(namespace: MetadataNamespace, keys: &[String]) -> String {
    let mut path = namespace.field_name().to_string();
    for key in keys {
        path.push('.');
        push_escaped_key(&mut path, key);
    }
    path
}

fn push_escaped_key(path: &mut String, key: &str) {
    for c in key.chars() {
        if c == '.' || c == '\\' {
            path.push('\\');
        }
        path.push(c);
    }
}

/// Whether a JSON value holds at least one non-null scalar (arrays and objects are looked into).
/// This is what `EXISTS` means: `null`, `[]`, `[null]` and `{}` do not exist.
pub fn has_value(value: &Value) -> bool {
    match value {
        Value::Null => false,
        Value::Array(items) => items.iter().any(has_value),
        Value::Object(map) => map.values().any(has_value),
        _ => true,
    }
}

/// Every metadata path of one namespace that `EXISTS` (holds a value somewhere beneath it), and
/// every path holding an explicit `null` (directly or as an array element). Arrays are
/// transparent: `{"a": [{"b": 1}]}` has the path `a.b`, as it has in the index's JSON field.
pub fn metadata_path_facts(
    namespace: MetadataNamespace,
    value: &Value,
) -> (Vec<String>, Vec<String>) {
    let mut present = Vec::new();
    let mut nulls = Vec::new();
    walk_paths(
        value,
        &mut namespace.field_name().to_string(),
        true,
        &mut present,
        &mut nulls,
    );
    present.sort_unstable();
    present.dedup();
    nulls.sort_unstable();
    nulls.dedup();
    (present, nulls)
}

fn walk_paths(
    value: &Value,
    path: &mut String,
    is_root: bool,
    present: &mut Vec<String>,
    nulls: &mut Vec<String>,
) -> bool {
    match value {
        Value::Null => {
            if !is_root {
                nulls.push(path.clone());
            }
            false
        }
        Value::Array(items) => {
            let mut any = false;
            for item in items {
                any |= walk_paths(item, path, is_root, present, nulls);
            }
            any
        }
        Value::Object(map) => {
            let mut any = false;
            for (key, child) in map {
                let len = path.len();
                path.push('.');
                push_escaped_key(path, key);
                if walk_paths(child, path, false, present, nulls) {
                    present.push(path.clone());
                    any = true;
                }
                path.truncate(len);
            }
            any
        }
        _ => true,
    }
}

/// Separates a path from a JSON type name in [`metadata_path_types`] entries.
pub const TYPE_SEPARATOR: char = '\u{1f}';

/// The JSON types held at each path of one namespace, as `{encoded path}\u{1f}{type}` entries,
/// sorted and deduplicated. Types are `string`, `integer`, `float`, `boolean`, `null`, `object`
/// and `array`; an array also contributes the types of its elements (arrays are transparent, as
/// in filters), and an object the paths beneath it.
pub fn metadata_path_types(namespace: MetadataNamespace, value: &Value) -> Vec<String> {
    let mut entries = Vec::new();
    if let Value::Object(map) = value {
        let mut path = namespace.field_name().to_string();
        for (key, child) in map {
            let len = path.len();
            path.push('.');
            push_escaped_key(&mut path, key);
            walk_types(child, &mut path, &mut entries);
            path.truncate(len);
        }
    }
    entries.sort_unstable();
    entries.dedup();
    entries
}

fn walk_types(value: &Value, path: &mut String, entries: &mut Vec<String>) {
    let kind = match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_f64() => "float",
        Value::Number(_) => "integer",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    };
    entries.push(format!("{path}{TYPE_SEPARATOR}{kind}"));
    match value {
        Value::Array(items) => {
            for item in items {
                walk_types(item, path, entries);
            }
        }
        Value::Object(map) => {
            for (key, child) in map {
                let len = path.len();
                path.push('.');
                push_escaped_key(path, key);
                walk_types(child, path, entries);
                path.truncate(len);
            }
        }
        _ => {}
    }
}

/// The inverse of [`encode_metadata_path`].
pub fn decode_metadata_path(encoded: &str) -> Option<(MetadataNamespace, Vec<String>)> {
    let (field, rest) = encoded.split_once('.').unwrap_or((encoded, ""));
    let namespace = MetadataNamespace::ALL
        .into_iter()
        .find(|ns| ns.field_name() == field)?;
    let mut keys = Vec::new();
    if encoded.len() == field.len() {
        return Some((namespace, keys));
    }
    let mut key = String::new();
    let mut chars = rest.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => key.push(chars.next()?),
            '.' => keys.push(std::mem::take(&mut key)),
            c => key.push(c),
        }
    }
    keys.push(key);
    Some((namespace, keys))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn upsert(updated_at: i64, plan: &str) -> UserChange {
        let json = json!({"id": "user_1", "object": "user", "created_at": 1, "updated_at": updated_at,
            "public_metadata": {"plan": plan}, "email_addresses": []});
        let raw = serde_json::value::RawValue::from_string(json.to_string()).unwrap();
        UserChange::Upsert {
            user: Arc::new(crate::clerk::model::parse_user(&raw).unwrap()),
            source: ChangeSource::Webhook,
        }
    }

    fn delete(deleted_at_ms: i64) -> UserChange {
        UserChange::Delete {
            user_id: "user_1".into(),
            deleted_at_ms,
            source: ChangeSource::Webhook,
        }
    }

    #[test]
    fn a_change_supersedes_what_the_index_writer_would_replace_with_it() {
        // Newer wins; an equal version replaces only when it says something else.
        assert!(upsert(20, "pro").supersedes(&upsert(10, "free")));
        assert!(!upsert(10, "free").supersedes(&upsert(20, "pro")));
        assert!(upsert(10, "pro").supersedes(&upsert(10, "free")));
        assert!(!upsert(10, "free").supersedes(&upsert(10, "free")));
        // A deletion is final unless the user was changed after it.
        assert!(delete(5).supersedes(&upsert(10, "free")));
        assert!(!upsert(10, "free").supersedes(&delete(10)));
        assert!(upsert(11, "free").supersedes(&delete(10)));
        assert!(delete(11).supersedes(&delete(10)));
        assert!(!delete(10).supersedes(&delete(10)));
        assert!(!delete(9).supersedes(&delete(10)));
    }

    #[test]
    fn path_facts_look_through_arrays_and_skip_empty_values() {
        let value = json!({
            "tier": "gold", "referrer": null, "tags": [], "maybe": [null, null],
            "orgs": [{"role": "admin"}, {"role": null}], "empty": {}, "a.b": {"c": 1}
        });
        let (present, nulls) = metadata_path_facts(MetadataNamespace::Public, &value);
        assert_eq!(
            present,
            vec![
                "public_metadata.a\\.b",
                "public_metadata.a\\.b.c",
                "public_metadata.orgs",
                "public_metadata.orgs.role",
                "public_metadata.tier"
            ]
        );
        assert_eq!(
            nulls,
            vec![
                "public_metadata.maybe",
                "public_metadata.orgs.role",
                "public_metadata.referrer"
            ]
        );
    }

    #[test]
    fn path_types_name_every_json_type_and_look_into_arrays() {
        let value = json!({
            "tier": "gold", "n": 3, "f": 0.5, "whole": 5.0, "ok": true, "gone": null,
            "tags": ["a", 1], "orgs": [{"role": "admin"}], "a.b": {}
        });
        let entries: Vec<String> = metadata_path_types(MetadataNamespace::Unsafe, &value)
            .into_iter()
            .map(|e| e.replace(TYPE_SEPARATOR, " "))
            .collect();
        assert_eq!(
            entries,
            vec![
                "unsafe_metadata.a\\.b object",
                "unsafe_metadata.f float",
                "unsafe_metadata.gone null",
                "unsafe_metadata.n integer",
                "unsafe_metadata.ok boolean",
                "unsafe_metadata.orgs array",
                "unsafe_metadata.orgs object",
                "unsafe_metadata.orgs.role string",
                "unsafe_metadata.tags array",
                "unsafe_metadata.tags integer",
                "unsafe_metadata.tags string",
                "unsafe_metadata.tier string",
                "unsafe_metadata.whole float",
            ]
        );
    }

    #[test]
    fn decoding_inverts_encoding() {
        for keys in [
            vec![],
            vec!["a"],
            vec!["a.b", "c\\d", ""],
            vec!["x", "y.", ".z"],
        ] {
            let keys: Vec<String> = keys.into_iter().map(String::from).collect();
            let encoded = encode_metadata_path(MetadataNamespace::Private, &keys);
            assert_eq!(
                decode_metadata_path(&encoded),
                Some((MetadataNamespace::Private, keys)),
                "{encoded}"
            );
        }
        assert_eq!(decode_metadata_path("email"), None);
    }

    #[test]
    fn null_metadata_has_no_paths() {
        let (present, nulls) = metadata_path_facts(MetadataNamespace::Private, &Value::Null);
        assert!(present.is_empty() && nulls.is_empty());
    }
}
