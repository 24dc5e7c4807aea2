//! The one filter AST both spellings (text and protobuf) compile to, and its vocabulary: core
//! fields, metadata paths, operators and values.

use crate::user::MetadataNamespace;

/// A boolean combination of predicates.
#[derive(Debug, Clone, PartialEq)]
pub enum Filter {
    And(Vec<Filter>),
    Or(Vec<Filter>),
    Not(Box<Filter>),
    Predicate(Predicate),
    /// `org[...]`: one and the same membership satisfies the inner filter, whose paths are
    /// all `org.*` (written relative to the membership inside the brackets).
    Org(Box<Filter>),
    /// `IN SEGMENT "name"`: the user is in a saved segment. Replaced by the segment's filter
    /// ([`crate::query::expand`]) before anything evaluates it; evaluated unexpanded, it matches
    /// nobody.
    Segment {
        name: String,
        position: usize,
    },
}

impl Filter {
    /// The same filter with every position set to 0: what two texts of one filter share.
    pub fn unplaced(&self) -> Filter {
        match self {
            Filter::And(items) => Filter::And(items.iter().map(Filter::unplaced).collect()),
            Filter::Or(items) => Filter::Or(items.iter().map(Filter::unplaced).collect()),
            Filter::Not(inner) => Filter::Not(Box::new(inner.unplaced())),
            Filter::Org(inner) => Filter::Org(Box::new(inner.unplaced())),
            Filter::Predicate(p) => Filter::Predicate(Predicate {
                position: 0,
                ..p.clone()
            }),
            Filter::Segment { name, .. } => Filter::Segment {
                name: name.clone(),
                position: 0,
            },
        }
    }
}

/// `path op value(s)`, with the character position it was parsed at (0 for structured filters).
#[derive(Debug, Clone, PartialEq)]
pub struct Predicate {
    pub path: FieldPath,
    pub op: Op,
    pub position: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Op {
    Compare(CmpOp, Value),
    In(Vec<Value>),
    Exists,
    StartsWith(String),
    Matches(String),
    /// Inclusive at both ends.
    Between(Value, Value),
    /// The path's sealed (sensitive) value equals one of the values these blind-index tokens
    /// stand for. Made from `=`/`IN` on a sensitive path by `auth::sensitive` after parsing;
    /// never parsed, printed or stored.
    Sealed(Vec<String>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CmpOp {
    Eq,
    Ne,
    Lt,
    Lte,
    Gt,
    Gte,
}

impl CmpOp {
    pub fn symbol(self) -> &'static str {
        match self {
            CmpOp::Eq => "=",
            CmpOp::Ne => "!=",
            CmpOp::Lt => "<",
            CmpOp::Lte => "<=",
            CmpOp::Gt => ">",
            CmpOp::Gte => ">=",
        }
    }
}

/// A literal. Dates stay dates until evaluation so `now-30d` means "30 days before the query runs".
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    String(String),
    Integer(i64),
    Float(f64),
    Bool(bool),
    Null,
    Date(DateValue),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DateValue {
    /// Milliseconds since the epoch.
    Absolute(i64),
    /// Milliseconds relative to "now" (`now-30d` is `-2_592_000_000`).
    Relative(i64),
}

impl DateValue {
    pub fn resolve(self, now_ms: i64) -> i64 {
        match self {
            DateValue::Absolute(ms) => ms,
            DateValue::Relative(offset) => now_ms.saturating_add(offset),
        }
    }
}

/// What a predicate addresses.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum FieldPath {
    Core(CoreField),
    Metadata {
        namespace: MetadataNamespace,
        keys: Vec<String>,
    },
}

/// The typed top-level user fields filters can address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CoreField {
    Id,
    ExternalId,
    Username,
    FirstName,
    LastName,
    /// First and last name together; only for `MATCHES` and `EXISTS`.
    Name,
    /// Any of the user's email addresses.
    Email,
    PrimaryEmail,
    /// The domain of any of the user's email addresses.
    EmailDomain,
    /// Any of the user's phone numbers.
    Phone,
    CreatedAt,
    UpdatedAt,
    LastSignInAt,
    LastActiveAt,
    Banned,
    Locked,
    TwoFactorEnabled,
    PasswordEnabled,
    HasImage,
    /// The primary email address is verified.
    PrimaryEmailVerified,
    /// Any email address is verified.
    EmailVerified,
    /// Any of the user's OAuth providers (`oauth_google`, from `external_accounts`).
    OauthProviders,
    /// Any enterprise (SAML/OIDC) connection id the user signs in through.
    EnterpriseConnection,
    Locale,
    LegalAcceptedAt,
    /// `mfa_enabled_at` is set (and later than `mfa_disabled_at`).
    MfaEnabled,
    TotpEnabled,
    BackupCodeEnabled,
    /// How many passkeys the user has registered.
    PasskeyCount,
    /// How many organizations the user is a member of (0 for none).
    OrgCount,
}

/// How a core field is typed, which decides the operators and values it accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CoreKind {
    /// Exact strings; `case_insensitive` ones are lower-cased on both sides.
    Keyword {
        case_insensitive: bool,
        text: bool,
    },
    /// Only tokenized text (`name`).
    TextOnly,
    Date,
    Bool,
    /// A whole number every user has (a count, 0 when there is nothing to count).
    Integer,
}

impl CoreField {
    pub const ALL: [CoreField; 30] = [
        CoreField::Id,
        CoreField::ExternalId,
        CoreField::Username,
        CoreField::FirstName,
        CoreField::LastName,
        CoreField::Name,
        CoreField::Email,
        CoreField::PrimaryEmail,
        CoreField::EmailDomain,
        CoreField::Phone,
        CoreField::CreatedAt,
        CoreField::UpdatedAt,
        CoreField::LastSignInAt,
        CoreField::LastActiveAt,
        CoreField::Banned,
        CoreField::Locked,
        CoreField::TwoFactorEnabled,
        CoreField::PasswordEnabled,
        CoreField::HasImage,
        CoreField::PrimaryEmailVerified,
        CoreField::EmailVerified,
        CoreField::OauthProviders,
        CoreField::EnterpriseConnection,
        CoreField::Locale,
        CoreField::LegalAcceptedAt,
        CoreField::MfaEnabled,
        CoreField::TotpEnabled,
        CoreField::BackupCodeEnabled,
        CoreField::PasskeyCount,
        CoreField::OrgCount,
    ];

    pub fn name(self) -> &'static str {
        match self {
            CoreField::Id => "id",
            CoreField::ExternalId => "external_id",
            CoreField::Username => "username",
            CoreField::FirstName => "first_name",
            CoreField::LastName => "last_name",
            CoreField::Name => "name",
            CoreField::Email => "email",
            CoreField::PrimaryEmail => "primary_email",
            CoreField::EmailDomain => "email_domain",
            CoreField::Phone => "phone",
            CoreField::CreatedAt => "created_at",
            CoreField::UpdatedAt => "updated_at",
            CoreField::LastSignInAt => "last_sign_in_at",
            CoreField::LastActiveAt => "last_active_at",
            CoreField::Banned => "banned",
            CoreField::Locked => "locked",
            CoreField::TwoFactorEnabled => "two_factor_enabled",
            CoreField::PasswordEnabled => "password_enabled",
            CoreField::HasImage => "has_image",
            CoreField::PrimaryEmailVerified => "primary_email_verified",
            CoreField::EmailVerified => "email_verified",
            CoreField::OauthProviders => "oauth_providers",
            CoreField::EnterpriseConnection => "enterprise_connection",
            CoreField::Locale => "locale",
            CoreField::LegalAcceptedAt => "legal_accepted_at",
            CoreField::MfaEnabled => "mfa_enabled",
            CoreField::TotpEnabled => "totp_enabled",
            CoreField::BackupCodeEnabled => "backup_code_enabled",
            CoreField::PasskeyCount => "passkey_count",
            CoreField::OrgCount => "org_count",
        }
    }

    pub fn parse(name: &str) -> Option<CoreField> {
        let alias = match name {
            "email_address" => "email",
            "phone_number" => "phone",
            other => other,
        };
        CoreField::ALL.into_iter().find(|f| f.name() == alias)
    }

    pub fn kind(self) -> CoreKind {
        use CoreField::*;
        match self {
            Id | ExternalId | Phone => CoreKind::Keyword {
                case_insensitive: false,
                text: false,
            },
            FirstName | LastName => CoreKind::Keyword {
                case_insensitive: false,
                text: true,
            },
            Username | Email => CoreKind::Keyword {
                case_insensitive: true,
                text: true,
            },
            PrimaryEmail | EmailDomain | OauthProviders | Locale => CoreKind::Keyword {
                case_insensitive: true,
                text: false,
            },
            EnterpriseConnection => CoreKind::Keyword {
                case_insensitive: false,
                text: false,
            },
            Name => CoreKind::TextOnly,
            CreatedAt | UpdatedAt | LastSignInAt | LastActiveAt | LegalAcceptedAt => CoreKind::Date,
            Banned | Locked | TwoFactorEnabled | PasswordEnabled | HasImage
            | PrimaryEmailVerified | EmailVerified | MfaEnabled | TotpEnabled
            | BackupCodeEnabled => CoreKind::Bool,
            PasskeyCount | OrgCount => CoreKind::Integer,
        }
    }

    /// Whether the field can be a sort key.
    pub fn sortable(self) -> bool {
        !matches!(
            self,
            CoreField::Name
                | CoreField::Email
                | CoreField::EmailDomain
                | CoreField::Phone
                | CoreField::OauthProviders
                | CoreField::EnterpriseConnection
        )
    }

    /// Whether the field has a column of values to facet on.
    pub fn facetable(self) -> bool {
        !matches!(self, CoreField::Name | CoreField::Email | CoreField::Phone)
    }
}
