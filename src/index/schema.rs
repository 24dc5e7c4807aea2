//! The tantivy schema: one document per user, and one per organization and per membership
//! (docs/ORGANIZATIONS.md). Organization and membership documents carry a `kind` term and only
//! their own few fields; every user query runs over the documents without a `kind`.
//!
//! Choices baked into the index files (TANTIVY-NOTES.md): string fast fields are uncompressed
//! (`columnar-zstd-compression` is off in Cargo.toml); dates are fast-only with millisecond
//! precision (indexed date terms would cost ~70 MB per million users and truncate to seconds);
//! metadata objects are JSON fields with the raw tokenizer, indexed and fast, so any path can be
//! matched exactly, ranged, sorted and aggregated. `EXISTS` and `= null` are answered from two
//! keyword fields of precomputed paths, because tantivy records neither nulls nor empty arrays.

use std::sync::Arc;

use tantivy::schema::{
    BytesOptions, DateOptions, DateTimePrecision, Field, IndexRecordOption, JsonObjectOptions,
    NumericOptions, Schema, TextFieldIndexing, TextOptions,
};
use tantivy::tokenizer::{
    LowerCaser, RawTokenizer, RemoveLongFilter, SimpleTokenizer, TextAnalyzer,
};

use super::engine::ColumnCache;
use crate::query::CoreField;
use crate::user::MetadataNamespace;

/// Exact strings.
pub const RAW: &str = "raw";
/// Exact strings, lower-cased (emails, usernames, domains).
pub const LOWERCASE: &str = "lowercase";
/// Words for `MATCHES`: split at non-alphanumerics, lower-cased, long words dropped.
pub const WORDS: &str = "words";

/// The JSON field of users' memberships by slot.
pub const ORG_SLOTS: &str = "org_slots";
/// The `kind` of organization documents.
pub const KIND_ORGANIZATION: &str = "organization";
/// The `kind` of membership documents.
pub const KIND_MEMBERSHIP: &str = "membership";

/// Memory for decoded range columns unless configured otherwise.
pub const DEFAULT_COLUMN_CACHE_BYTES: usize = 256 << 20;

/// Handles of every field, resolved once.
#[derive(Debug, Clone)]
pub struct Fields {
    pub schema: Schema,
    pub id: Field,
    pub external_id: Field,
    pub username: Field,
    pub first_name: Field,
    pub last_name: Field,
    pub email: Field,
    pub primary_email: Field,
    pub email_domain: Field,
    pub phone: Field,
    pub created_at: Field,
    pub updated_at: Field,
    pub last_sign_in_at: Field,
    pub last_active_at: Field,
    pub banned: Field,
    pub locked: Field,
    pub two_factor_enabled: Field,
    pub password_enabled: Field,
    pub has_image: Field,
    pub primary_email_verified: Field,
    pub email_verified: Field,
    pub oauth_providers: Field,
    pub enterprise_connection: Field,
    pub locale: Field,
    pub legal_accepted_at: Field,
    pub mfa_enabled: Field,
    pub totp_enabled: Field,
    pub backup_code_enabled: Field,
    pub passkey_count: Field,
    pub public_metadata: Field,
    pub private_metadata: Field,
    pub unsafe_metadata: Field,
    /// Words of first and last name, for `name MATCHES`.
    pub name_words: Field,
    pub first_name_words: Field,
    pub last_name_words: Field,
    pub email_words: Field,
    pub username_words: Field,
    /// Every path (core field names and encoded metadata paths) holding a value.
    pub present: Field,
    /// Every metadata path holding an explicit `null`.
    pub nulls: Field,
    /// `{path}\u{1f}{json type}` for every metadata path, for the field catalog.
    pub field_types: Field,
    /// On a user: the core fields whose column does not give back its Clerk JSON (their key is
    /// absent, or `null` where the column holds a default) and the metadata namespaces that are
    /// not objects (`User::column_gaps`): projections read those from the stored user.
    pub gaps: Field,
    /// The user's Clerk JSON, in the zstd-compressed doc store (sensitive values removed).
    pub raw_json: Field,
    /// The user's sealed (encrypted) sensitive values, stored beside `raw_json`.
    pub sealed: Field,
    /// Blind-index tokens of the sensitive values, for `=`/`IN` on sensitive paths.
    pub blind: Field,
    /// `organization` or `membership` on those documents; users have none.
    pub kind: Field,
    /// The id of an organization or membership document.
    pub entity_id: Field,
    /// A membership document's user id.
    pub member_user: Field,
    /// A membership document's organization id.
    pub member_org: Field,
    /// An organization's Clerk JSON, or a membership's as `clerk::parse_membership` keeps it.
    pub entity_json: Field,
    /// On a user: its memberships as `org.*` paths address them (`organization::membership_view`).
    pub org: Field,
    /// On a user: the same memberships numbered in slot order, `{"0": view, "1": view}`, so
    /// `org[...]` can ask one membership for everything (docs/ORGANIZATIONS.md).
    pub org_slots: Field,
    /// On a user: the same memberships, stored (the user's previous state for segment events).
    pub org_json: Field,
    /// On a user: how many organizations it belongs to.
    pub org_count: Field,
    /// On an organization or membership: its `created_at` (ms), which the organizations' walks
    /// compare page by page with what Clerk lists (`sync::org_walk`).
    pub entity_created_at: Field,
    /// Decoded range columns, shared by every snapshot (not part of the schema).
    pub columns: Arc<ColumnCache>,
}

fn keyword(tokenizer: &str, fast: bool) -> TextOptions {
    let options = TextOptions::default().set_indexing_options(
        TextFieldIndexing::default()
            .set_tokenizer(tokenizer)
            .set_index_option(IndexRecordOption::Basic),
    );
    if fast {
        options.set_fast(tokenizer)
    } else {
        options
    }
}

fn words() -> TextOptions {
    TextOptions::default().set_indexing_options(
        TextFieldIndexing::default()
            .set_tokenizer(WORDS)
            .set_index_option(IndexRecordOption::Basic),
    )
}

impl Fields {
    pub fn build() -> Fields {
        let mut b = Schema::builder();
        let date = DateOptions::default()
            .set_fast()
            .set_precision(DateTimePrecision::Milliseconds);
        let boolean = NumericOptions::default().set_indexed().set_fast();
        let json = JsonObjectOptions::default()
            .set_indexing_options(
                TextFieldIndexing::default()
                    .set_tokenizer(RAW)
                    .set_index_option(IndexRecordOption::Basic),
            )
            .set_fast(RAW);
        let id = b.add_text_field("id", keyword(RAW, true));
        let external_id = b.add_text_field("external_id", keyword(RAW, true));
        let username = b.add_text_field("username", keyword(LOWERCASE, true));
        let first_name = b.add_text_field("first_name", keyword(RAW, true));
        let last_name = b.add_text_field("last_name", keyword(RAW, true));
        let email = b.add_text_field("email", keyword(LOWERCASE, false));
        let primary_email = b.add_text_field("primary_email", keyword(LOWERCASE, true));
        let email_domain = b.add_text_field("email_domain", keyword(LOWERCASE, true));
        let phone = b.add_text_field("phone", keyword(RAW, false));
        let created_at = b.add_date_field("created_at", date.clone());
        let updated_at = b.add_date_field("updated_at", date.clone());
        let last_sign_in_at = b.add_date_field("last_sign_in_at", date.clone());
        let last_active_at = b.add_date_field("last_active_at", date.clone());
        let legal_accepted_at = b.add_date_field("legal_accepted_at", date);
        let banned = b.add_bool_field("banned", boolean.clone());
        let locked = b.add_bool_field("locked", boolean.clone());
        let two_factor_enabled = b.add_bool_field("two_factor_enabled", boolean.clone());
        let password_enabled = b.add_bool_field("password_enabled", boolean.clone());
        let has_image = b.add_bool_field("has_image", boolean.clone());
        let primary_email_verified = b.add_bool_field("primary_email_verified", boolean.clone());
        let email_verified = b.add_bool_field("email_verified", boolean.clone());
        let mfa_enabled = b.add_bool_field("mfa_enabled", boolean.clone());
        let totp_enabled = b.add_bool_field("totp_enabled", boolean.clone());
        let backup_code_enabled = b.add_bool_field("backup_code_enabled", boolean);
        let integer = NumericOptions::default().set_indexed().set_fast();
        let passkey_count = b.add_i64_field("passkey_count", integer.clone());
        let oauth_providers = b.add_text_field("oauth_providers", keyword(LOWERCASE, true));
        let enterprise_connection = b.add_text_field("enterprise_connection", keyword(RAW, true));
        let locale = b.add_text_field("locale", keyword(LOWERCASE, true));
        let public_metadata =
            b.add_json_field(MetadataNamespace::Public.field_name(), json.clone());
        let private_metadata =
            b.add_json_field(MetadataNamespace::Private.field_name(), json.clone());
        let unsafe_metadata =
            b.add_json_field(MetadataNamespace::Unsafe.field_name(), json.clone());
        let org = b.add_json_field(MetadataNamespace::Org.field_name(), json.clone());
        let org_slots = b.add_json_field(ORG_SLOTS, json);
        let name_words = b.add_text_field("name_words", words());
        let first_name_words = b.add_text_field("first_name_words", words());
        let last_name_words = b.add_text_field("last_name_words", words());
        let email_words = b.add_text_field("email_words", words());
        let username_words = b.add_text_field("username_words", words());
        let present = b.add_text_field("present", keyword(RAW, false));
        let nulls = b.add_text_field("nulls", keyword(RAW, false));
        let field_types = b.add_text_field("field_types", keyword(RAW, false));
        let gaps = b.add_text_field("gaps", keyword(RAW, false));
        let raw_json = b.add_bytes_field("raw_json", BytesOptions::default().set_stored());
        let sealed = b.add_bytes_field("sealed", BytesOptions::default().set_stored());
        // Stored too (keyed hashes, nothing readable), so a stored user is re-indexed whole
        // when one of its organizations changes.
        let blind = b.add_text_field("blind", keyword(RAW, false).set_stored());
        let kind = b.add_text_field("kind", keyword(RAW, false));
        let entity_id = b.add_text_field("entity_id", keyword(RAW, false));
        let member_user = b.add_text_field("member_user", keyword(RAW, false));
        let member_org = b.add_text_field("member_org", keyword(RAW, false));
        let entity_json = b.add_bytes_field("entity_json", BytesOptions::default().set_stored());
        let org_json = b.add_bytes_field("org_json", BytesOptions::default().set_stored());
        let org_count = b.add_i64_field("org_count", integer.clone());
        let entity_created_at = b.add_i64_field("entity_created_at", integer);
        Fields {
            kind,
            entity_id,
            member_user,
            member_org,
            entity_json,
            org,
            org_slots,
            org_json,
            org_count,
            entity_created_at,
            schema: b.build(),
            id,
            external_id,
            username,
            first_name,
            last_name,
            email,
            primary_email,
            email_domain,
            phone,
            created_at,
            updated_at,
            last_sign_in_at,
            last_active_at,
            banned,
            locked,
            two_factor_enabled,
            password_enabled,
            has_image,
            primary_email_verified,
            email_verified,
            oauth_providers,
            enterprise_connection,
            locale,
            legal_accepted_at,
            mfa_enabled,
            totp_enabled,
            backup_code_enabled,
            passkey_count,
            public_metadata,
            private_metadata,
            unsafe_metadata,
            name_words,
            first_name_words,
            last_name_words,
            email_words,
            username_words,
            present,
            nulls,
            field_types,
            gaps,
            raw_json,
            sealed,
            blind,
            columns: Arc::new(ColumnCache::new(DEFAULT_COLUMN_CACHE_BYTES)),
        }
    }

    pub fn metadata(&self, namespace: MetadataNamespace) -> Field {
        match namespace {
            MetadataNamespace::Public => self.public_metadata,
            MetadataNamespace::Private => self.private_metadata,
            MetadataNamespace::Unsafe => self.unsafe_metadata,
            MetadataNamespace::Org => self.org,
        }
    }

    /// The indexed (and, where sortable, fast) field of a core field; `None` for `name`.
    pub fn core(&self, field: CoreField) -> Option<Field> {
        Some(match field {
            CoreField::Id => self.id,
            CoreField::ExternalId => self.external_id,
            CoreField::Username => self.username,
            CoreField::FirstName => self.first_name,
            CoreField::LastName => self.last_name,
            CoreField::Name => return None,
            CoreField::Email => self.email,
            CoreField::PrimaryEmail => self.primary_email,
            CoreField::EmailDomain => self.email_domain,
            CoreField::Phone => self.phone,
            CoreField::CreatedAt => self.created_at,
            CoreField::UpdatedAt => self.updated_at,
            CoreField::LastSignInAt => self.last_sign_in_at,
            CoreField::LastActiveAt => self.last_active_at,
            CoreField::Banned => self.banned,
            CoreField::Locked => self.locked,
            CoreField::TwoFactorEnabled => self.two_factor_enabled,
            CoreField::PasswordEnabled => self.password_enabled,
            CoreField::HasImage => self.has_image,
            CoreField::PrimaryEmailVerified => self.primary_email_verified,
            CoreField::EmailVerified => self.email_verified,
            CoreField::OauthProviders => self.oauth_providers,
            CoreField::EnterpriseConnection => self.enterprise_connection,
            CoreField::Locale => self.locale,
            CoreField::LegalAcceptedAt => self.legal_accepted_at,
            CoreField::MfaEnabled => self.mfa_enabled,
            CoreField::TotpEnabled => self.totp_enabled,
            CoreField::BackupCodeEnabled => self.backup_code_enabled,
            CoreField::PasskeyCount => self.passkey_count,
            CoreField::OrgCount => self.org_count,
        })
    }

    /// The `MATCHES` field of a text-capable core field.
    pub fn words(&self, field: CoreField) -> Option<Field> {
        match field {
            CoreField::Name => Some(self.name_words),
            CoreField::FirstName => Some(self.first_name_words),
            CoreField::LastName => Some(self.last_name_words),
            CoreField::Email => Some(self.email_words),
            CoreField::Username => Some(self.username_words),
            _ => None,
        }
    }
}

/// Registers the tokenizers the schema names, for indexing and for fast fields.
pub fn register_tokenizers(index: &tantivy::Index) {
    let lowercase = || {
        TextAnalyzer::builder(RawTokenizer::default())
            .filter(LowerCaser)
            .build()
    };
    index.tokenizers().register(LOWERCASE, lowercase());
    index.tokenizers().register(
        WORDS,
        TextAnalyzer::builder(SimpleTokenizer::default())
            .filter(RemoveLongFilter::limit(40))
            .filter(LowerCaser)
            .build(),
    );
    index
        .fast_field_tokenizer()
        .register(LOWERCASE, lowercase());
}
