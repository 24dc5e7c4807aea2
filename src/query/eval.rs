//! The in-memory matcher: evaluates a filter against one [`User`] directly.
//!
//! This is the reference semantics of the filter language. The index compiles the same AST to
//! tantivy queries, and a property test holds the two to the same answers; saved segments use
//! this matcher to decide who entered or left a segment on each change.

use std::cmp::Ordering;

use serde_json::Value as Json;

use super::ast::{CmpOp, CoreField, CoreKind, FieldPath, Filter, Op, Predicate, Value};
use crate::user::{MetadataNamespace, User, has_value};

/// Whether `user` matches `filter`, with relative dates resolved against `now_ms`.
pub fn matches(filter: &Filter, user: &User, now_ms: i64) -> bool {
    matches_in(filter, user, None, now_ms)
}

/// [`matches`], with `org.*` paths reading only `membership` (one membership view) when given:
/// inside `org[...]`.
fn matches_in(filter: &Filter, user: &User, membership: Option<&Json>, now_ms: i64) -> bool {
    match filter {
        Filter::And(parts) => parts
            .iter()
            .all(|f| matches_in(f, user, membership, now_ms)),
        Filter::Or(parts) => parts
            .iter()
            .any(|f| matches_in(f, user, membership, now_ms)),
        Filter::Not(inner) => !matches_in(inner, user, membership, now_ms),
        Filter::Predicate(predicate) => predicate_matches(predicate, user, membership, now_ms),
        Filter::Org(inner) => user.organizations.as_array().is_some_and(|views| {
            views
                .iter()
                .any(|view| matches_in(inner, user, Some(view), now_ms))
        }),
        // Expanded before evaluation; a reference left in matches nobody.
        Filter::Segment { .. } => false,
    }
}

/// A JSON number the way tantivy's inverted index normalizes it: whole floats become integers.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Number {
    I64(i64),
    U64(u64),
    F64(f64),
}

impl Number {
    pub fn from_f64(value: f64) -> Number {
        if value.fract() == 0.0 && value >= i64::MIN as f64 && value <= i64::MAX as f64 {
            Number::I64(value as i64)
        } else if value.fract() == 0.0 && value >= 0.0 && value <= u64::MAX as f64 {
            Number::U64(value as u64)
        } else {
            Number::F64(value)
        }
    }

    pub fn from_json(number: &serde_json::Number) -> Number {
        if let Some(i) = number.as_i64() {
            Number::I64(i)
        } else if let Some(u) = number.as_u64() {
            Number::U64(u)
        } else {
            Number::from_f64(number.as_f64().unwrap_or(f64::NAN))
        }
    }

    pub fn as_f64(self) -> f64 {
        match self {
            Number::I64(i) => i as f64,
            Number::U64(u) => u as f64,
            Number::F64(f) => f,
        }
    }
}

/// A filter value with dates resolved, as it is compared with metadata.
#[derive(Debug, Clone, PartialEq)]
pub enum Resolved<'a> {
    Str(&'a str),
    Num(Number),
    Bool(bool),
    Null,
}

impl Value {
    /// Dates become epoch milliseconds: in metadata a date literal compares with numbers.
    pub fn resolve(&self, now_ms: i64) -> Resolved<'_> {
        match self {
            Value::String(s) => Resolved::Str(s),
            Value::Integer(i) => Resolved::Num(Number::I64(*i)),
            Value::Float(f) => Resolved::Num(Number::from_f64(*f)),
            Value::Bool(b) => Resolved::Bool(*b),
            Value::Null => Resolved::Null,
            Value::Date(d) => Resolved::Num(Number::I64(d.resolve(now_ms))),
        }
    }
}

fn predicate_matches(
    predicate: &Predicate,
    user: &User,
    membership: Option<&Json>,
    now_ms: i64,
) -> bool {
    if let Op::Sealed(tokens) = &predicate.op {
        // Tokens bind path and value: the user holds one of them or does not match.
        return user
            .sealed
            .as_ref()
            .is_some_and(|sealed| tokens.iter().any(|t| sealed.tokens.contains(t)));
    }
    match &predicate.path {
        FieldPath::Metadata { namespace, keys } => {
            let root = match (namespace, membership) {
                (MetadataNamespace::Org, Some(view)) => view,
                _ => user.metadata(*namespace),
            };
            metadata_matches(root, keys, &predicate.op, now_ms)
        }
        FieldPath::Core(field) => core_matches(user, *field, &predicate.op, now_ms),
    }
}

/// The values at a metadata path. Arrays are transparent at every level, as in the index.
pub fn metadata_leaves<'a>(root: &'a Json, keys: &[String]) -> Vec<&'a Json> {
    let mut current = vec![root];
    for key in keys {
        let mut next = Vec::new();
        for value in current {
            collect_key(value, key, &mut next);
        }
        current = next;
    }
    let mut leaves = Vec::new();
    for value in current {
        flatten(value, &mut leaves);
    }
    leaves
}

fn collect_key<'a>(value: &'a Json, key: &str, out: &mut Vec<&'a Json>) {
    match value {
        Json::Object(map) => {
            if let Some(child) = map.get(key) {
                out.push(child);
            }
        }
        Json::Array(items) => items.iter().for_each(|item| collect_key(item, key, out)),
        _ => {}
    }
}

fn flatten<'a>(value: &'a Json, out: &mut Vec<&'a Json>) {
    match value {
        Json::Array(items) => items.iter().for_each(|item| flatten(item, out)),
        other => out.push(other),
    }
}

fn leaf_equals(leaf: &Json, value: &Resolved) -> bool {
    match (leaf, value) {
        (Json::String(s), Resolved::Str(q)) => s == q,
        (Json::Number(n), Resolved::Num(q)) => Number::from_json(n) == *q,
        (Json::Bool(b), Resolved::Bool(q)) => b == q,
        (Json::Null, Resolved::Null) => true,
        _ => false,
    }
}

/// Orders a leaf against a value of the same class; other pairs have no order (match nothing).
fn leaf_cmp(leaf: &Json, value: &Resolved) -> Option<Ordering> {
    match (leaf, value) {
        (Json::String(s), Resolved::Str(q)) => Some(s.as_str().cmp(q)),
        (Json::Number(n), Resolved::Num(q)) => {
            Number::from_json(n).as_f64().partial_cmp(&q.as_f64())
        }
        _ => None,
    }
}

fn ordering_holds(cmp: CmpOp, ordering: Ordering) -> bool {
    match cmp {
        CmpOp::Eq => ordering == Ordering::Equal,
        CmpOp::Ne => ordering != Ordering::Equal,
        CmpOp::Lt => ordering == Ordering::Less,
        CmpOp::Lte => ordering != Ordering::Greater,
        CmpOp::Gt => ordering == Ordering::Greater,
        CmpOp::Gte => ordering != Ordering::Less,
    }
}

fn metadata_matches(root: &Json, keys: &[String], op: &Op, now_ms: i64) -> bool {
    let leaves = metadata_leaves(root, keys);
    let any_equal = |value: &Value| {
        let resolved = value.resolve(now_ms);
        leaves.iter().any(|leaf| leaf_equals(leaf, &resolved))
    };
    match op {
        Op::Compare(CmpOp::Eq, value) => any_equal(value),
        Op::Compare(CmpOp::Ne, value) => !any_equal(value),
        Op::Compare(cmp, value) => {
            let resolved = value.resolve(now_ms);
            leaves
                .iter()
                .any(|leaf| leaf_cmp(leaf, &resolved).is_some_and(|o| ordering_holds(*cmp, o)))
        }
        Op::In(values) => values.iter().any(any_equal),
        Op::Exists => leaves.iter().any(|leaf| has_value(leaf)),
        Op::StartsWith(prefix) => leaves.iter().any(|leaf| {
            leaf.as_str()
                .is_some_and(|s| s.starts_with(prefix.as_str()))
        }),
        Op::Matches(_) | Op::Sealed(_) => false,
        Op::Between(low, high) => {
            let (low, high) = (low.resolve(now_ms), high.resolve(now_ms));
            leaves.iter().any(|leaf| {
                leaf_cmp(leaf, &low).is_some_and(|o| o != Ordering::Less)
                    && leaf_cmp(leaf, &high).is_some_and(|o| o != Ordering::Greater)
            })
        }
    }
}

/// The string values of a keyword core field, lower-cased where the field is case-insensitive.
pub fn core_strings(user: &User, field: CoreField) -> Vec<String> {
    let one = |v: &Option<String>| v.iter().cloned().collect::<Vec<_>>();
    let values = match field {
        CoreField::Id => vec![user.id.clone()],
        CoreField::ExternalId => one(&user.external_id),
        CoreField::Username => one(&user.username),
        CoreField::FirstName => one(&user.first_name),
        CoreField::LastName => one(&user.last_name),
        CoreField::Email => user.emails.clone(),
        CoreField::PrimaryEmail => one(&user.primary_email),
        CoreField::EmailDomain => user.email_domains(),
        CoreField::Phone => user.phone_numbers.clone(),
        CoreField::OauthProviders => user.oauth_providers.clone(),
        CoreField::EnterpriseConnection => user.enterprise_connections.clone(),
        CoreField::Locale => one(&user.locale),
        CoreField::Name => user
            .first_name
            .iter()
            .chain(user.last_name.iter())
            .cloned()
            .collect(),
        _ => Vec::new(),
    };
    match field.kind() {
        CoreKind::Keyword {
            case_insensitive: true,
            ..
        } => values.into_iter().map(|v| v.to_lowercase()).collect(),
        _ => values,
    }
}

pub fn core_date(user: &User, field: CoreField) -> Option<i64> {
    match field {
        CoreField::CreatedAt => Some(user.created_at),
        CoreField::UpdatedAt => Some(user.updated_at),
        CoreField::LastSignInAt => user.last_sign_in_at,
        CoreField::LastActiveAt => user.last_active_at,
        CoreField::LegalAcceptedAt => user.legal_accepted_at,
        _ => None,
    }
}

pub fn core_bool(user: &User, field: CoreField) -> Option<bool> {
    match field {
        CoreField::Banned => Some(user.banned),
        CoreField::Locked => Some(user.locked),
        CoreField::TwoFactorEnabled => Some(user.two_factor_enabled),
        CoreField::PasswordEnabled => Some(user.password_enabled),
        CoreField::HasImage => Some(user.has_image),
        CoreField::PrimaryEmailVerified => Some(user.primary_email_verified),
        CoreField::EmailVerified => Some(user.email_verified),
        CoreField::MfaEnabled => Some(user.mfa_enabled),
        CoreField::TotpEnabled => Some(user.totp_enabled),
        CoreField::BackupCodeEnabled => Some(user.backup_code_enabled),
        _ => None,
    }
}

pub fn core_integer(user: &User, field: CoreField) -> Option<i64> {
    match field {
        CoreField::PasskeyCount => Some(user.passkey_count),
        CoreField::OrgCount => Some(user.org_count()),
        _ => None,
    }
}

/// Whether a core field holds a value (`EXISTS`).
pub fn core_exists(user: &User, field: CoreField) -> bool {
    match field.kind() {
        CoreKind::Keyword { .. } | CoreKind::TextOnly => !core_strings(user, field).is_empty(),
        CoreKind::Date => core_date(user, field).is_some(),
        CoreKind::Bool => true,
        CoreKind::Integer => core_integer(user, field).is_some(),
    }
}

/// The words of a text, as the index's `words` tokenizer makes them: split at every character
/// that is not alphanumeric, lower-cased, words of 40 bytes or more dropped.
pub fn text_tokens(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty() && w.len() < 40)
        .map(str::to_lowercase)
        .collect()
}

fn core_matches(user: &User, field: CoreField, op: &Op, now_ms: i64) -> bool {
    if let Op::Exists = op {
        return core_exists(user, field);
    }
    if let Op::Matches(text) = op {
        let words: Vec<String> = core_strings(user, field)
            .iter()
            .flat_map(|v| text_tokens(v))
            .collect();
        return text_tokens(text).iter().all(|t| words.contains(t));
    }
    match field.kind() {
        CoreKind::Keyword {
            case_insensitive, ..
        } => {
            let values = core_strings(user, field);
            let norm = |s: &str| {
                if case_insensitive {
                    s.to_lowercase()
                } else {
                    s.to_string()
                }
            };
            let equal = |v: &Value| match v {
                Value::String(q) => values.contains(&norm(q)),
                Value::Null => values.is_empty(),
                _ => false,
            };
            let cmp_any = |v: &Value, test: &dyn Fn(Ordering) -> bool| match v {
                Value::String(q) => values.iter().any(|s| test(s.as_str().cmp(&norm(q)))),
                _ => false,
            };
            match op {
                Op::Compare(CmpOp::Eq, v) => equal(v),
                Op::Compare(CmpOp::Ne, v) => !equal(v),
                Op::Compare(cmp, v) => cmp_any(v, &|o| ordering_holds(*cmp, o)),
                Op::In(vs) => vs.iter().any(equal),
                Op::StartsWith(prefix) => {
                    let prefix = norm(prefix);
                    values.iter().any(|s| s.starts_with(&prefix))
                }
                Op::Between(low, high) => match (low, high) {
                    (Value::String(l), Value::String(h)) => {
                        let (l, h) = (norm(l), norm(h));
                        values
                            .iter()
                            .any(|s| s.as_str() >= l.as_str() && s.as_str() <= h.as_str())
                    }
                    _ => false,
                },
                Op::Exists | Op::Matches(_) | Op::Sealed(_) => unreachable!("handled above"),
            }
        }
        CoreKind::Date => {
            let date = core_date(user, field);
            let ms = |v: &Value| match v {
                Value::Date(d) => Some(d.resolve(now_ms)),
                _ => None,
            };
            let equal = |v: &Value| match v {
                Value::Null => date.is_none(),
                other => date.is_some() && date == ms(other),
            };
            match op {
                Op::Compare(CmpOp::Eq, v) => equal(v),
                Op::Compare(CmpOp::Ne, v) => !equal(v),
                Op::Compare(cmp, v) => match (date, ms(v)) {
                    (Some(d), Some(q)) => ordering_holds(*cmp, d.cmp(&q)),
                    _ => false,
                },
                Op::In(vs) => vs.iter().any(equal),
                Op::Between(low, high) => match (date, ms(low), ms(high)) {
                    (Some(d), Some(l), Some(h)) => l <= d && d <= h,
                    _ => false,
                },
                _ => false,
            }
        }
        CoreKind::Bool => {
            let value = core_bool(user, field);
            let equal = |v: &Value| matches!(v, Value::Bool(b) if Some(*b) == value);
            match op {
                Op::Compare(CmpOp::Eq, v) => equal(v),
                Op::Compare(CmpOp::Ne, v) => !equal(v),
                Op::In(vs) => vs.iter().any(equal),
                _ => false,
            }
        }
        CoreKind::Integer => {
            let value = core_integer(user, field);
            let number = |v: &Value| match v {
                Value::Integer(i) => Some(*i as f64),
                Value::Float(f) => Some(*f),
                _ => None,
            };
            let equal = |v: &Value| match v {
                Value::Null => value.is_none(),
                other => value.is_some_and(|n| number(other) == Some(n as f64)),
            };
            match op {
                Op::Compare(CmpOp::Eq, v) => equal(v),
                Op::Compare(CmpOp::Ne, v) => !equal(v),
                Op::Compare(cmp, v) => match (value, number(v)) {
                    (Some(n), Some(q)) => (n as f64)
                        .partial_cmp(&q)
                        .is_some_and(|o| ordering_holds(*cmp, o)),
                    _ => false,
                },
                Op::In(vs) => vs.iter().any(equal),
                Op::Between(low, high) => match (value, number(low), number(high)) {
                    (Some(n), Some(l), Some(h)) => l <= n as f64 && n as f64 <= h,
                    _ => false,
                },
                _ => false,
            }
        }
        CoreKind::TextOnly => false,
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use serde_json::json;

    use super::*;
    use crate::query::{FilterLimits, parse_filter};

    fn user(public: Json) -> User {
        User {
            id: "user_1".into(),
            external_id: None,
            username: Some("Ann_S".into()),
            first_name: Some("Ann".into()),
            last_name: Some("Smith-Jones".into()),
            primary_email: Some("Ann@Example.com".into()),
            emails: vec!["Ann@Example.com".into(), "ann@work.io".into()],
            phone_numbers: vec![],
            created_at: 1_000,
            updated_at: 2_000,
            last_sign_in_at: None,
            last_active_at: Some(5_000),
            banned: false,
            locked: false,
            two_factor_enabled: true,
            password_enabled: true,
            has_image: false,
            primary_email_verified: true,
            email_verified: true,
            oauth_providers: vec!["oauth_google".into()],
            enterprise_connections: Vec::new(),
            locale: Some("fr-FR".into()),
            legal_accepted_at: None,
            mfa_enabled: true,
            totp_enabled: false,
            backup_code_enabled: false,
            passkey_count: 2,
            public_metadata: public,
            private_metadata: Json::Null,
            unsafe_metadata: json!({}),
            raw_json: Arc::from("{}"),
            sealed: None,
            organizations: crate::user::no_organizations(),
            column_gaps: Vec::new(),
        }
    }

    fn check(user: &User, text: &str) -> bool {
        matches(
            &parse_filter(text, &FilterLimits::default()).unwrap(),
            user,
            10_000,
        )
    }

    #[test]
    fn arrays_match_when_any_element_matches() {
        let u = user(
            json!({"genres": ["sci-fi", "poetry"], "orgs": [{"role": "admin"}, {"role": "member"}]}),
        );
        assert!(check(&u, "public.genres = \"poetry\""));
        assert!(check(&u, "public.orgs.role = \"member\""));
        assert!(!check(&u, "public.genres = \"fiction\""));
        assert!(check(&u, "public.genres != \"fiction\""));
        assert!(
            !check(&u, "public.genres != \"poetry\""),
            "!= is NOT =, so any matching element excludes"
        );
    }

    #[test]
    fn numbers_compare_across_int_and_float_and_types_never_mix() {
        let u = user(json!({"score": 50.0, "points": 7, "tier": "3"}));
        assert!(check(&u, "public.score = 50"));
        assert!(check(&u, "public.points = 7.0"));
        assert!(check(&u, "public.points > 6.5 AND public.points < 7.5"));
        assert!(
            !check(&u, "public.tier > 2"),
            "a string never compares with a number"
        );
        assert!(!check(&u, "public.tier = 3"));
        assert!(check(&u, "public.tier = \"3\""));
    }

    #[test]
    fn exists_and_null_follow_elasticsearch() {
        let u = user(json!({"a": null, "b": [], "c": [null], "d": 0, "e": {}, "f": {"g": false}}));
        for (text, expected) in [
            ("public.a EXISTS", false),
            ("public.b EXISTS", false),
            ("public.c EXISTS", false),
            ("public.d EXISTS", true),
            ("public.e EXISTS", false),
            ("public.f EXISTS", true),
            ("public.missing EXISTS", false),
            ("public.a = null", true),
            ("public.c = null", true),
            ("public.missing = null", false),
            ("NOT public.a EXISTS", true),
        ] {
            assert_eq!(check(&u, text), expected, "{text}");
        }
    }

    #[test]
    fn core_fields_follow_their_types() {
        let u = user(json!({}));
        for (text, expected) in [
            ("email = \"ANN@example.COM\"", true),
            ("email_domain = \"work.io\"", true),
            ("username = \"ann_s\"", true),
            ("first_name = \"ann\"", false),
            ("name MATCHES \"smith ann\"", true),
            ("name MATCHES \"jones\"", true),
            ("name MATCHES \"bob\"", false),
            ("email MATCHES \"work\"", true),
            ("last_sign_in_at = null", true),
            ("last_sign_in_at EXISTS", false),
            ("created_at < now", true),
            ("created_at BETWEEN 1000 AND 1000", true),
            ("last_active_at > now-1s", false),
            ("two_factor_enabled = true", true),
            ("banned != false", false),
            ("email STARTS WITH \"ANN@\"", true),
            ("primary_email > \"ann@a\"", true),
            ("external_id = null", true),
            ("primary_email_verified = true", true),
            ("oauth_providers = \"OAUTH_GOOGLE\"", true),
            ("oauth_providers IN [\"oauth_github\"]", false),
            ("enterprise_connection EXISTS", false),
            ("locale = \"fr-fr\"", true),
            ("legal_accepted_at = null", true),
            ("mfa_enabled = true AND totp_enabled = false", true),
        ] {
            assert_eq!(check(&u, text), expected, "{text}");
        }
    }
}
