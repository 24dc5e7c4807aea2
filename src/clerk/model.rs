//! Clerk's wire models, parsed leniently.
//!
//! Clerk's OpenAPI spec marks most User fields required and says `additionalProperties: false`,
//! but real payloads omit fields, add legacy ones (`birthday`, `gender`) and drop `object` tags on
//! nested objects. So every field is optional here, unknown fields are ignored by the struct and
//! kept in the raw JSON, and only `id` is truly required: without it a user cannot be indexed.

use std::sync::Arc;

use serde::Deserialize;
use serde_json::Value;
use serde_json::value::RawValue;

use crate::user::User;

/// A Clerk User object (`components.schemas.User` in the Backend API spec `2026-05-12`): every
/// field of the spec, every one optional.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct ClerkUser {
    pub id: Option<String>,
    pub object: Option<String>,
    #[serde(deserialize_with = "keyed")]
    pub external_id: Keyed<String>,
    pub primary_email_address_id: Option<String>,
    pub primary_phone_number_id: Option<String>,
    pub primary_web3_wallet_id: Option<String>,
    pub username: Option<String>,
    #[serde(deserialize_with = "keyed")]
    pub first_name: Keyed<String>,
    #[serde(deserialize_with = "keyed")]
    pub last_name: Keyed<String>,
    pub locale: Option<String>,
    /// Deprecated by Clerk in favour of `image_url`.
    pub profile_image_url: Option<String>,
    pub image_url: Option<String>,
    #[serde(deserialize_with = "keyed")]
    pub has_image: Keyed<bool>,
    pub public_metadata: Value,
    pub private_metadata: Value,
    pub unsafe_metadata: Value,
    pub email_addresses: Option<Vec<ClerkEmailAddress>>,
    pub phone_numbers: Option<Vec<ClerkPhoneNumber>>,
    pub web3_wallets: Option<Vec<ClerkWeb3Wallet>>,
    pub passkeys: Option<Vec<ClerkPasskey>>,
    #[serde(deserialize_with = "keyed")]
    pub password_enabled: Keyed<bool>,
    #[serde(deserialize_with = "keyed")]
    pub two_factor_enabled: Keyed<bool>,
    #[serde(deserialize_with = "keyed")]
    pub totp_enabled: Keyed<bool>,
    #[serde(deserialize_with = "keyed")]
    pub backup_code_enabled: Keyed<bool>,
    pub mfa_enabled_at: Option<i64>,
    pub mfa_disabled_at: Option<i64>,
    pub password_last_updated_at: Option<i64>,
    pub external_accounts: Option<Vec<ClerkExternalAccount>>,
    pub saml_accounts: Option<Vec<ClerkEnterpriseAccount>>,
    pub enterprise_accounts: Option<Vec<ClerkEnterpriseAccount>>,
    /// Optional in the spec and often absent: do not rely on it.
    pub organization_memberships: Option<Vec<Value>>,
    #[serde(deserialize_with = "keyed")]
    pub last_sign_in_at: Keyed<i64>,
    #[serde(deserialize_with = "keyed")]
    pub banned: Keyed<bool>,
    #[serde(deserialize_with = "keyed")]
    pub locked: Keyed<bool>,
    pub deprovisioned: Option<bool>,
    /// Seconds, unlike every other duration here.
    pub lockout_expires_in_seconds: Option<i64>,
    pub verification_attempts_remaining: Option<i64>,
    #[serde(deserialize_with = "keyed")]
    pub updated_at: Keyed<i64>,
    #[serde(deserialize_with = "keyed")]
    pub created_at: Keyed<i64>,
    pub delete_self_enabled: Option<bool>,
    pub create_organization_enabled: Option<bool>,
    pub create_organizations_limit: Option<i64>,
    /// Day precision.
    #[serde(deserialize_with = "keyed")]
    pub last_active_at: Keyed<i64>,
    #[serde(deserialize_with = "keyed")]
    pub legal_accepted_at: Keyed<i64>,
    pub bypass_client_trust: Option<bool>,
    pub scim: Option<ClerkScim>,
}

/// A field whose column answers for the JSON it came from: `None` when the key is absent,
/// `Some(None)` when it is `null`. Projections served from columns must tell these apart
/// (`User::column_gaps`).
pub type Keyed<T> = Option<Option<T>>;

/// The largest time (ms, either side of 1970) a nanosecond `i64` holds: about the year 2262.
const MAX_MS: i64 = i64::MAX / 1_000_000;

/// Deserializes a present key (`null` included) as `Some`; an absent key stays `None`.
fn keyed<'de, D, T>(deserializer: D) -> Result<Keyed<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(deserializer).map(Some)
}

/// `verification` on identifiers: a `oneOf` tagged by `object` in the spec, but real payloads
/// often lack the tag and carry strategies outside the spec's enums, so it is one lenient struct.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct ClerkVerification {
    pub object: Option<String>,
    pub status: Option<String>,
    pub strategy: Option<String>,
    pub attempts: Option<i64>,
    pub expire_at: Option<i64>,
}

/// `components.schemas.EmailAddress`; `id` is not marked required in the spec but is always sent.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct ClerkEmailAddress {
    pub id: Option<String>,
    pub object: Option<String>,
    pub email_address: Option<String>,
    pub reserved: Option<bool>,
    pub verification: Option<ClerkVerification>,
    pub linked_to: Option<Vec<Value>>,
    pub matches_sso_connection: Option<bool>,
    pub created_at: Option<i64>,
    pub updated_at: Option<i64>,
}

/// `components.schemas.PhoneNumber`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct ClerkPhoneNumber {
    pub id: Option<String>,
    pub object: Option<String>,
    pub phone_number: Option<String>,
    pub reserved_for_second_factor: Option<bool>,
    pub default_second_factor: Option<bool>,
    pub reserved: Option<bool>,
    pub verification: Option<ClerkVerification>,
    pub linked_to: Option<Vec<Value>>,
    pub backup_codes: Option<Vec<String>>,
    pub created_at: Option<i64>,
    pub updated_at: Option<i64>,
}

/// `components.schemas.Web3Wallet`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct ClerkWeb3Wallet {
    pub id: Option<String>,
    pub object: Option<String>,
    pub web3_wallet: Option<String>,
    pub verification: Option<ClerkVerification>,
    pub created_at: Option<i64>,
    pub updated_at: Option<i64>,
}

/// `components.schemas.Passkey`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct ClerkPasskey {
    pub id: Option<String>,
    pub object: Option<String>,
    pub name: Option<String>,
    pub last_used_at: Option<i64>,
    pub verification: Option<ClerkVerification>,
}

/// `components.schemas.ExternalAccountWithVerification` (OAuth accounts).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct ClerkExternalAccount {
    pub object: Option<String>,
    pub id: Option<String>,
    pub provider: Option<String>,
    pub identification_id: Option<String>,
    pub provider_user_id: Option<String>,
    pub approved_scopes: Option<String>,
    pub email_address: Option<String>,
    pub email_address_verified: Option<bool>,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub avatar_url: Option<String>,
    pub image_url: Option<String>,
    pub username: Option<String>,
    pub phone_number: Option<String>,
    pub public_metadata: Value,
    pub label: Option<String>,
    pub created_at: Option<i64>,
    pub updated_at: Option<i64>,
    pub verification: Option<ClerkVerification>,
}

/// `components.schemas.SAMLAccount` and `EnterpriseAccount`, which share their fields
/// (`protocol` and `enterprise_connection*` only on the latter; the connection objects are kept
/// as JSON).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct ClerkEnterpriseAccount {
    pub id: Option<String>,
    pub object: Option<String>,
    pub protocol: Option<String>,
    pub provider: Option<String>,
    pub active: Option<bool>,
    pub email_address: Option<String>,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub provider_user_id: Option<String>,
    pub enterprise_connection_id: Option<String>,
    pub last_authenticated_at: Option<i64>,
    pub public_metadata: Value,
    pub verification: Option<ClerkVerification>,
    pub saml_connection: Option<Value>,
    pub enterprise_connection: Option<Value>,
}

/// `scim` on a user provisioned through SCIM.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct ClerkScim {
    pub directory_id: Option<String>,
    pub directory_enabled: Option<bool>,
    pub external_id: Option<String>,
}

/// `DeletedObject`, the `data` of a `user.deleted` event and the answer to `DELETE /v1/users/{id}`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct ClerkDeletedObject {
    pub id: Option<String>,
    pub object: Option<String>,
    pub deleted: Option<bool>,
    pub external_id: Option<String>,
}

/// `{"object":"total_count","total_count":N}`, the answer to `GET /v1/users/count`.
#[derive(Debug, Clone, Deserialize)]
pub struct ClerkTotalCount {
    pub total_count: u64,
}

/// Why a Clerk user could not be turned into an indexable [`User`].
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum UserParseError {
    #[error("clerk user json is malformed: {0}")]
    Malformed(String),
    #[error("clerk user has no id")]
    MissingId,
    /// The id is not shaped like Clerk's (never repeated: it may be anything).
    #[error("clerk user id of {0} bytes is not one: {rule}", rule = crate::user::user_id_rule())]
    InvalidId(usize),
}

/// `id` when it is shaped like a Clerk user id.
pub(super) fn checked_user_id(id: Option<String>) -> Result<String, UserParseError> {
    match id.filter(|id| !id.is_empty()) {
        None => Err(UserParseError::MissingId),
        Some(id) if crate::user::is_user_id(&id) => Ok(id),
        Some(id) => Err(UserParseError::InvalidId(id.len())),
    }
}

/// Parses one Clerk user, keeping its JSON verbatim as the stored copy.
pub fn parse_user(raw: &RawValue) -> Result<User, UserParseError> {
    let wire: ClerkUser = serde_json::from_str(raw.get()).map_err(|e| malformed(raw.get(), &e))?;
    wire.into_user(Arc::from(raw.get()))
}

/// Says how and where JSON is wrong without quoting it (serde's message may repeat a value).
pub(super) fn json_error(error: &serde_json::Error) -> UserParseError {
    UserParseError::Malformed(format!(
        "{} at line {} column {}",
        error_kind(error),
        error.line(),
        error.column()
    ))
}

fn error_kind(error: &serde_json::Error) -> &'static str {
    match error.classify() {
        serde_json::error::Category::Syntax => "invalid JSON",
        serde_json::error::Category::Eof => "truncated JSON",
        serde_json::error::Category::Data => "a value of the wrong type",
        serde_json::error::Category::Io => "unreadable JSON",
    }
}

/// Says where and how a user's JSON is wrong without quoting it: serde's own message repeats
/// the offending value (`invalid type: string "…"`), which may be a person's data. The path is
/// found by parsing again, only on this rare path.
fn malformed(json: &str, error: &serde_json::Error) -> UserParseError {
    let kind = error_kind(error);
    let mut deserializer = serde_json::Deserializer::from_str(json);
    let path = match serde_path_to_error::deserialize::<_, ClerkUser>(&mut deserializer) {
        Err(located) if located.path().iter().next().is_some() => located.path().to_string(),
        _ => format!("line {} column {}", error.line(), error.column()),
    };
    UserParseError::Malformed(format!("{kind} at {path}"))
}

/// Parses one Clerk user from its JSON text (a stored copy, a change log message): the one way
/// code outside `clerk` turns Clerk JSON into a [`User`].
pub fn user_from_json(json: &str) -> Result<User, UserParseError> {
    let raw: &RawValue = serde_json::from_str(json).map_err(|e| malformed(json, &e))?;
    parse_user(raw)
}

/// Where one element of a `GET /v1/users` page sits in the listing, whether it parsed or not:
/// a walk positions itself by these, so one bad user can neither stop nor rewind it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedKey {
    pub id: Option<String>,
    pub created_at: Option<i64>,
}

/// A listed user that could not be indexed; fetched again by id later.
#[derive(Debug)]
pub struct RejectedUser {
    pub id: Option<String>,
    pub error: UserParseError,
}

/// A `GET /v1/users` page. One malformed user must not block a whole walk, so users that cannot
/// be parsed are reported separately; `keys` holds every element, in Clerk's order.
#[derive(Debug, Default)]
pub struct UserPage {
    pub users: Vec<User>,
    pub rejected: Vec<RejectedUser>,
    pub keys: Vec<ListedKey>,
}

impl UserPage {
    /// How many elements Clerk sent (parsed or not): a short page ends a walk.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

/// The id and creation time of an element that did not parse as a user, read as leniently as
/// possible (either may be missing or of the wrong type).
fn loose_key(raw: &RawValue) -> ListedKey {
    #[derive(Deserialize)]
    struct Loose {
        #[serde(default)]
        id: Value,
        #[serde(default)]
        created_at: Value,
    }
    let loose: Option<Loose> = serde_json::from_str(raw.get()).ok();
    ListedKey {
        id: loose
            .as_ref()
            .and_then(|l| l.id.as_str())
            .filter(|id| !id.is_empty())
            .map(str::to_string),
        created_at: loose.and_then(|l| l.created_at.as_i64()),
    }
}

/// Parses a `GET /v1/users` page: a bare JSON array of users. Only a body that is not a JSON
/// array is an error.
pub fn parse_user_page(body: &[u8]) -> Result<UserPage, UserParseError> {
    let raws: Vec<&RawValue> = serde_json::from_slice(body).map_err(|e| {
        let kind = if e.classify() == serde_json::error::Category::Data {
            "not a JSON array"
        } else {
            "not JSON"
        };
        UserParseError::Malformed(format!("the page is {kind}"))
    })?;
    let mut page = UserPage {
        keys: Vec::with_capacity(raws.len()),
        users: Vec::with_capacity(raws.len()),
        ..UserPage::default()
    };
    for raw in raws {
        match parse_user(raw) {
            Ok(user) => {
                page.keys.push(ListedKey {
                    id: Some(user.id.clone()),
                    created_at: Some(user.created_at),
                });
                page.users.push(user);
            }
            Err(error) => {
                let key = loose_key(raw);
                page.rejected.push(RejectedUser {
                    // Fetched again by id later: only an id Clerk could have.
                    id: key.id.clone().filter(|id| crate::user::is_user_id(id)),
                    error,
                });
                page.keys.push(key);
            }
        }
    }
    Ok(page)
}

impl ClerkUser {
    /// Builds the domain view. `raw_json` is the user's full JSON as received.
    pub fn into_user(self, raw_json: Arc<str>) -> Result<User, UserParseError> {
        let column_gaps = self.column_gaps();
        let id = checked_user_id(self.id)?;
        let addresses = self.email_addresses.unwrap_or_default();
        let primary_email = addresses
            .iter()
            .find(|e| e.id.is_some() && e.id == self.primary_email_address_id)
            .and_then(|e| e.email_address.clone());
        let verified = |e: &ClerkEmailAddress| {
            e.verification.as_ref().and_then(|v| v.status.as_deref()) == Some("verified")
        };
        let primary_email_verified = addresses
            .iter()
            .any(|e| e.id.is_some() && e.id == self.primary_email_address_id && verified(e));
        let email_verified = addresses.iter().any(verified);
        let mut oauth_providers: Vec<String> = Vec::new();
        for provider in self
            .external_accounts
            .iter()
            .flatten()
            .filter_map(|a| a.provider.as_deref())
        {
            let provider = provider.trim();
            if !provider.is_empty() && !oauth_providers.iter().any(|p| p == provider) {
                oauth_providers.push(provider.to_string());
            }
        }
        let mut enterprise_connections: Vec<String> = Vec::new();
        let enterprise = self.enterprise_accounts.iter().flatten();
        for account in enterprise.chain(self.saml_accounts.iter().flatten()) {
            let id = account.enterprise_connection_id.clone().or_else(|| {
                account
                    .enterprise_connection
                    .as_ref()
                    .or(account.saml_connection.as_ref())
                    .and_then(|c| c.get("id"))
                    .and_then(Value::as_str)
                    .map(str::to_string)
            });
            if let Some(id) = id.filter(|id| !id.is_empty())
                && !enterprise_connections.contains(&id)
            {
                enterprise_connections.push(id);
            }
        }
        let mfa_enabled = match (self.mfa_enabled_at, self.mfa_disabled_at) {
            (Some(enabled), Some(disabled)) => enabled > disabled,
            (Some(_), None) => true,
            (None, _) => false,
        };
        let mut emails: Vec<String> = primary_email.iter().cloned().collect();
        for address in addresses {
            if let Some(email) = address.email_address
                && Some(&email) != primary_email.as_ref()
            {
                emails.push(email);
            }
        }
        let created_at = self.created_at.flatten().unwrap_or(0);
        // Filters address metadata keys, so only objects count; Clerk allows `null` (PUT metadata).
        let object_or_null = |v: Value| if v.is_object() { v } else { Value::Null };
        Ok(User {
            id,
            external_id: self.external_id.flatten(),
            username: self.username,
            first_name: self.first_name.flatten(),
            last_name: self.last_name.flatten(),
            primary_email,
            emails,
            phone_numbers: self
                .phone_numbers
                .unwrap_or_default()
                .into_iter()
                .filter_map(|p| p.phone_number)
                .collect(),
            created_at,
            updated_at: self.updated_at.flatten().unwrap_or(created_at),
            last_sign_in_at: self.last_sign_in_at.flatten(),
            last_active_at: self.last_active_at.flatten(),
            banned: self.banned.flatten().unwrap_or(false),
            locked: self.locked.flatten().unwrap_or(false),
            two_factor_enabled: self.two_factor_enabled.flatten().unwrap_or(false),
            password_enabled: self.password_enabled.flatten().unwrap_or(false),
            has_image: self
                .has_image
                .flatten()
                .unwrap_or_else(|| self.image_url.is_some_and(|u| !u.is_empty())),
            primary_email_verified,
            email_verified,
            oauth_providers,
            enterprise_connections,
            locale: self.locale.filter(|l| !l.is_empty()),
            legal_accepted_at: self.legal_accepted_at.flatten(),
            mfa_enabled,
            totp_enabled: self.totp_enabled.flatten().unwrap_or(false),
            backup_code_enabled: self.backup_code_enabled.flatten().unwrap_or(false),
            passkey_count: self.passkeys.as_ref().map_or(0, |p| p.len() as i64),
            public_metadata: object_or_null(self.public_metadata),
            private_metadata: object_or_null(self.private_metadata),
            unsafe_metadata: object_or_null(self.unsafe_metadata),
            raw_json,
            sealed: None,
            organizations: crate::user::no_organizations(),
            column_gaps,
        })
    }

    /// The keys of [`User::column_gaps`]: fields with a column that would not give back this
    /// user's JSON. An optional field (a name, a sign-in time) whose column is empty reads as
    /// `null`, so only its absent key is a gap; a field the user always has a column value
    /// for (`created_at`, flags) is a gap when its key is absent or `null`.
    fn column_gaps(&self) -> Vec<&'static str> {
        // Times the index's millisecond column holds exactly (its nanoseconds fit an i64).
        let time = |ms: &Keyed<i64>| ms.is_none_or(|ms| ms.is_some_and(|ms| ms.abs() > MAX_MS));
        let mut gaps = Vec::new();
        let optional = [
            ("external_id", self.external_id.is_none()),
            ("first_name", self.first_name.is_none()),
            ("last_name", self.last_name.is_none()),
            ("last_sign_in_at", time(&self.last_sign_in_at)),
            ("last_active_at", time(&self.last_active_at)),
            ("legal_accepted_at", time(&self.legal_accepted_at)),
        ];
        let defaulted = [
            (
                "created_at",
                self.created_at.flatten().is_none() || time(&self.created_at),
            ),
            (
                "updated_at",
                self.updated_at.flatten().is_none() || time(&self.updated_at),
            ),
            ("banned", self.banned.flatten().is_none()),
            ("locked", self.locked.flatten().is_none()),
            (
                "two_factor_enabled",
                self.two_factor_enabled.flatten().is_none(),
            ),
            (
                "password_enabled",
                self.password_enabled.flatten().is_none(),
            ),
            ("has_image", self.has_image.flatten().is_none()),
            ("totp_enabled", self.totp_enabled.flatten().is_none()),
            (
                "backup_code_enabled",
                self.backup_code_enabled.flatten().is_none(),
            ),
        ];
        for (key, gap) in optional.into_iter().chain(defaulted) {
            if gap {
                gaps.push(key);
            }
        }
        gaps
    }
}

#[cfg(test)]
mod tests;
