//! The domain view of a Clerk user, and how metadata paths are spelled.
//!
//! `clerk/` turns Clerk's wire JSON into a [`User`]; `index/` stores and indexes it; `query/`
//! evaluates filters against it; [`crate::change`] carries it from every source to the writer. Nothing here knows about HTTP, protobuf or tantivy.

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
    /// The primary email address is verified.
    pub primary_email_verified: bool,
    /// Any email address is verified.
    pub email_verified: bool,
    /// `external_accounts[].provider`, e.g. `oauth_google`, without repeats.
    pub oauth_providers: Vec<String>,
    /// The ids of the enterprise (SAML/OIDC) connections the user signs in through.
    pub enterprise_connections: Vec<String>,
    /// The user's locale (`en-US`), if Clerk has one.
    pub locale: Option<String>,
    /// When the user accepted the legal terms, ms.
    pub legal_accepted_at: Option<i64>,
    /// Multi-factor authentication is on (`mfa_enabled_at` set and not disabled since).
    pub mfa_enabled: bool,
    pub totp_enabled: bool,
    pub backup_code_enabled: bool,
    /// How many passkeys the user has registered.
    pub passkey_count: i64,
    pub public_metadata: Value,
    pub private_metadata: Value,
    pub unsafe_metadata: Value,
    /// The user's Clerk JSON, serialized once; unknown fields are kept.
    pub raw_json: Arc<str>,
    /// The user's sensitive values once sealed (then absent from the metadata and `raw_json`);
    /// `None` before sealing or when the user holds none.
    pub sealed: Option<Arc<Sealed>>,
    /// The user's organization memberships as `org.*` paths address them: an array of
    /// [`crate::organization::membership_view`]s in slot order. Not part of Clerk's user: the
    /// index writer composes it from the membership and organization it holds (a user from Clerk
    /// arrives with an empty array).
    pub organizations: Arc<Value>,
    /// The JSON keys of core fields whose index column does not give back this user's Clerk
    /// JSON (the key is absent, or `null` where the column holds a default such as
    /// `created_at` 0): a projection served from columns reads these from the stored user.
    pub column_gaps: Vec<&'static str>,
}

/// The `organizations` of a user in no organization.
pub fn no_organizations() -> Arc<Value> {
    static EMPTY: std::sync::OnceLock<Arc<Value>> = std::sync::OnceLock::new();
    EMPTY
        .get_or_init(|| Arc::new(Value::Array(Vec::new())))
        .clone()
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

/// How new a user's state is: `updated_at` first, then `last_sign_in_at`, then
/// `last_active_at`. A sign-in need not change `updated_at` (Clerk announces it with
/// `session.created`), so two states with the same `updated_at` are told apart by their sign-in
/// and activity times; an older sign-in never replaces a newer one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct UserVersion {
    pub updated_at: i64,
    pub last_sign_in_at: i64,
    pub last_active_at: i64,
}

impl UserVersion {
    /// Older than any user's state (what a deleted user's version reads as).
    pub const OLDEST: UserVersion = UserVersion {
        updated_at: i64::MIN,
        last_sign_in_at: i64::MIN,
        last_active_at: i64::MIN,
    };
}

impl User {
    /// How new this state is.
    pub fn version(&self) -> UserVersion {
        UserVersion {
            updated_at: self.updated_at,
            last_sign_in_at: self.last_sign_in_at.unwrap_or(i64::MIN),
            last_active_at: self.last_active_at.unwrap_or(i64::MIN),
        }
    }

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

    /// How many organizations the user is a member of.
    pub fn org_count(&self) -> i64 {
        self.organizations.as_array().map_or(0, |a| a.len() as i64)
    }

    /// The metadata object of one namespace.
    pub fn metadata(&self, namespace: MetadataNamespace) -> &Value {
        match namespace {
            MetadataNamespace::Public => &self.public_metadata,
            MetadataNamespace::Private => &self.private_metadata,
            MetadataNamespace::Unsafe => &self.unsafe_metadata,
            MetadataNamespace::Org => &self.organizations,
        }
    }
}

/// The three metadata objects Clerk keeps on a user, and the user's memberships (`org.*`),
/// which filters, sorts and facets address the same way: dynamically typed JSON where arrays
/// are transparent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum MetadataNamespace {
    Public,
    Private,
    Unsafe,
    /// The user's memberships ([`User::organizations`]): `org.role`, `org.public.plan`.
    Org,
}

impl MetadataNamespace {
    /// The three metadata objects of Clerk's user (not `Org`, which the index composes).
    pub const ALL: [MetadataNamespace; 3] = [Self::Public, Self::Private, Self::Unsafe];
    /// Every namespace a path can start with.
    pub const PATHS: [MetadataNamespace; 4] =
        [Self::Public, Self::Private, Self::Unsafe, Self::Org];

    /// The Clerk JSON key, which is also the index field name.
    pub fn field_name(self) -> &'static str {
        match self {
            Self::Public => "public_metadata",
            Self::Private => "private_metadata",
            Self::Unsafe => "unsafe_metadata",
            Self::Org => "org",
        }
    }

    /// The short spelling used in filters (`public.plan`).
    pub fn short_name(self) -> &'static str {
        match self {
            Self::Public => "public",
            Self::Private => "private",
            Self::Unsafe => "unsafe",
            Self::Org => "org",
        }
    }

    /// Accepts both spellings.
    pub fn parse(name: &str) -> Option<Self> {
        Self::PATHS
            .into_iter()
            .find(|ns| ns.field_name() == name || ns.short_name() == name)
    }
}

/// The longest user id accepted, in bytes (Clerk's are `user_` and 27 characters).
pub const MAX_USER_ID_BYTES: usize = 64;

/// Whether `id` has the shape of a Clerk user id: `user_` followed by ASCII letters, digits and
/// underscores, at most [`MAX_USER_ID_BYTES`] long. Anything else (`..`, a NUL, 100 KB) is
/// refused wherever an id enters: it could never be a Clerk user, and in a URL path it could
/// name another endpoint.
pub fn is_user_id(id: &str) -> bool {
    id.len() <= MAX_USER_ID_BYTES
        && id.strip_prefix("user_").is_some_and(|rest| {
            !rest.is_empty() && rest.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
        })
}

/// Why an id was refused, without repeating it.
pub fn user_id_rule() -> String {
    format!(
        "a Clerk user id is user_ followed by letters, digits and underscores, at most {MAX_USER_ID_BYTES} bytes"
    )
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

/// Appends `key` to an encoded path, escaping `\` and `.` (see [`encode_metadata_path`]).
pub fn push_escaped_key(path: &mut String, key: &str) {
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

/// The inverse of [`encode_metadata_path`].
pub fn decode_metadata_path(encoded: &str) -> Option<(MetadataNamespace, Vec<String>)> {
    let (field, rest) = encoded.split_once('.').unwrap_or((encoded, ""));
    let namespace = MetadataNamespace::PATHS
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

/// The CSV columns exports default to.
pub const DEFAULT_COLUMNS: [&str; 5] = ["id", "email", "first_name", "last_name", "created_at"];

/// The fields to ask for so that a user's JSON has `columns` (`email` is the primary address,
/// found from `email_addresses` and `primary_email_address_id`).
pub fn column_fields(columns: &[String]) -> Vec<String> {
    let mut fields = Vec::new();
    for column in columns {
        if column == "email" {
            fields.push("email_addresses".to_string());
            fields.push("primary_email_address_id".to_string());
        } else {
            fields.push(column.clone());
        }
    }
    fields
}

/// One cell of a table of users: the value of `column` in a user's Clerk JSON, as text.
pub fn column_value(user: &Value, column: &str) -> String {
    match column {
        "email" => primary_email(user),
        path => value_at(user, path),
    }
}

/// The primary email address in a user's Clerk JSON (the first, if none is marked).
pub fn primary_email(user: &Value) -> String {
    let primary = &user["primary_email_address_id"];
    user["email_addresses"]
        .as_array()
        .and_then(|emails| {
            emails
                .iter()
                .find(|e| &e["id"] == primary)
                .or(emails.first())
        })
        .and_then(|e| e["email_address"].as_str())
        .unwrap_or("")
        .to_string()
}

/// The value at a dotted path (`public.plan`) of a user's Clerk JSON, as text; empty if absent.
pub fn value_at(user: &Value, path: &str) -> String {
    let mut keys = path.split('.');
    let mut current = match keys.next() {
        Some(first) => match MetadataNamespace::parse(first) {
            Some(namespace) => &user[namespace.field_name()],
            None => &user[first],
        },
        None => return String::new(),
    };
    for key in keys {
        current = &current[key];
    }
    match current {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_ids_have_clerks_shape() {
        for id in ["user_1", "user_2g7np7Hrk0SN6kj5EDMLDaKNL0S", "user_a_B_9"] {
            assert!(is_user_id(id), "{id}");
        }
        let long = format!("user_{}", "a".repeat(MAX_USER_ID_BYTES));
        for id in [
            "", ".", "..", "user_", "user_..", "user_a\0", "usr_1", "user_a-b", "USER_1", &long,
        ] {
            assert!(!is_user_id(id), "{id:?}");
        }
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
}
