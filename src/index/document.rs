//! Turns a domain [`User`], [`Organization`] or [`Membership`] into a tantivy document.

use tantivy::TantivyDocument;
use tantivy::schema::Value;
use tantivy::schema::document::{ReferenceValue, ReferenceValueLeaf};

use super::engine::date_of_millis;
use super::paths::{json_path_facts, metadata_path_facts, metadata_path_types};
use super::schema::{Fields, KIND_MEMBERSHIP, KIND_ORGANIZATION, ORG_SLOTS};
use crate::organization::{Membership, Organization};
use crate::query::CoreField;
use crate::query::eval::core_exists;
use crate::user::{MetadataNamespace, User};

/// The document for one user.
pub fn user_document(fields: &Fields, user: &User) -> TantivyDocument {
    let mut doc = TantivyDocument::default();
    doc.add_text(fields.id, &user.id);
    let optional_text = |doc: &mut TantivyDocument, field, value: &Option<String>| {
        if let Some(value) = value {
            doc.add_text(field, value);
        }
    };
    optional_text(&mut doc, fields.external_id, &user.external_id);
    optional_text(&mut doc, fields.username, &user.username);
    optional_text(&mut doc, fields.username_words, &user.username);
    optional_text(&mut doc, fields.first_name, &user.first_name);
    optional_text(&mut doc, fields.first_name_words, &user.first_name);
    optional_text(&mut doc, fields.name_words, &user.first_name);
    optional_text(&mut doc, fields.last_name, &user.last_name);
    optional_text(&mut doc, fields.last_name_words, &user.last_name);
    optional_text(&mut doc, fields.name_words, &user.last_name);
    optional_text(&mut doc, fields.primary_email, &user.primary_email);
    for email in &user.emails {
        doc.add_text(fields.email, email);
        doc.add_text(fields.email_words, email);
    }
    for domain in user.email_domains() {
        doc.add_text(fields.email_domain, &domain);
    }
    for phone in &user.phone_numbers {
        doc.add_text(fields.phone, phone);
    }
    doc.add_date(fields.created_at, date_of_millis(user.created_at));
    doc.add_date(fields.updated_at, date_of_millis(user.updated_at));
    if let Some(ms) = user.last_sign_in_at {
        doc.add_date(fields.last_sign_in_at, date_of_millis(ms));
    }
    if let Some(ms) = user.last_active_at {
        doc.add_date(fields.last_active_at, date_of_millis(ms));
    }
    doc.add_bool(fields.banned, user.banned);
    doc.add_bool(fields.locked, user.locked);
    doc.add_bool(fields.two_factor_enabled, user.two_factor_enabled);
    doc.add_bool(fields.password_enabled, user.password_enabled);
    doc.add_bool(fields.has_image, user.has_image);
    doc.add_bool(fields.primary_email_verified, user.primary_email_verified);
    doc.add_bool(fields.email_verified, user.email_verified);
    doc.add_bool(fields.mfa_enabled, user.mfa_enabled);
    doc.add_bool(fields.totp_enabled, user.totp_enabled);
    doc.add_bool(fields.backup_code_enabled, user.backup_code_enabled);
    doc.add_i64(fields.passkey_count, user.passkey_count);
    for provider in &user.oauth_providers {
        doc.add_text(fields.oauth_providers, provider);
    }
    for connection in &user.enterprise_connections {
        doc.add_text(fields.enterprise_connection, connection);
    }
    optional_text(&mut doc, fields.locale, &user.locale);
    if let Some(ms) = user.legal_accepted_at {
        doc.add_date(fields.legal_accepted_at, date_of_millis(ms));
    }
    for field in CoreField::ALL {
        if core_exists(user, field) {
            doc.add_text(fields.present, field.name());
        }
    }
    for namespace in MetadataNamespace::ALL {
        let metadata = user.metadata(namespace);
        if metadata.is_object() {
            doc.add_field_value(fields.metadata(namespace), PlainJson(metadata));
        }
        let (present, nulls) = metadata_path_facts(namespace, metadata);
        for path in present {
            doc.add_text(fields.present, path);
        }
        for path in nulls {
            doc.add_text(fields.nulls, path);
        }
        for entry in metadata_path_types(namespace, metadata) {
            doc.add_text(fields.field_types, entry);
        }
        if !metadata.is_object() {
            doc.add_text(fields.gaps, namespace.field_name());
        }
    }
    for key in &user.column_gaps {
        doc.add_text(fields.gaps, key);
    }
    add_organizations(fields, user, &mut doc);
    doc.add_bytes(fields.raw_json, user.raw_json.as_bytes());
    if let Some(sealed) = &user.sealed {
        doc.add_bytes(fields.sealed, sealed.values.as_bytes());
        for token in &sealed.tokens {
            doc.add_text(fields.blind, token);
        }
    }
    doc
}

/// The user's memberships (docs/ORGANIZATIONS.md): each view as one object of the `org` JSON
/// field (so `org.role = "org:admin"` holds when any membership has it), the paths they hold
/// for `EXISTS` and `= null`, their count, and the views stored for the user's previous state.
fn add_organizations(fields: &Fields, user: &User, doc: &mut TantivyDocument) {
    doc.add_i64(fields.org_count, user.org_count());
    let Some(views) = user.organizations.as_array().filter(|v| !v.is_empty()) else {
        return;
    };
    for view in views {
        doc.add_field_value(fields.org, PlainJson(view));
    }
    let slots: serde_json::Map<String, serde_json::Value> = views
        .iter()
        .enumerate()
        .map(|(slot, view)| (slot.to_string(), view.clone()))
        .collect();
    let slots = serde_json::Value::Object(slots);
    doc.add_field_value(fields.org_slots, PlainJson(&slots));
    let (slot_paths, slot_nulls) = json_path_facts(ORG_SLOTS, &slots);
    for path in slot_paths {
        doc.add_text(fields.present, path);
    }
    for path in slot_nulls {
        doc.add_text(fields.nulls, path);
    }
    let (present, nulls) = metadata_path_facts(MetadataNamespace::Org, &user.organizations);
    for path in present {
        doc.add_text(fields.present, path);
    }
    for path in nulls {
        doc.add_text(fields.nulls, path);
    }
    let mut types: Vec<String> = views
        .iter()
        .flat_map(|view| metadata_path_types(MetadataNamespace::Org, view))
        .collect();
    types.sort_unstable();
    types.dedup();
    for entry in types {
        doc.add_text(fields.field_types, entry);
    }
    doc.add_bytes(fields.org_json, user.organizations.to_string().as_bytes());
}

/// The document of an organization: its id and Clerk JSON.
pub fn organization_document(fields: &Fields, organization: &Organization) -> TantivyDocument {
    let mut doc = TantivyDocument::default();
    doc.add_text(fields.kind, KIND_ORGANIZATION);
    doc.add_text(fields.entity_id, &organization.id);
    doc.add_i64(fields.entity_created_at, organization.created_at);
    doc.add_bytes(fields.entity_json, organization.raw_json.as_bytes());
    doc
}

/// The document of a membership: its id, its user's and organization's, and its JSON.
pub fn membership_document(fields: &Fields, membership: &Membership) -> TantivyDocument {
    let mut doc = TantivyDocument::default();
    doc.add_text(fields.kind, KIND_MEMBERSHIP);
    doc.add_text(fields.entity_id, &membership.id);
    doc.add_text(fields.member_user, &membership.user_id);
    doc.add_text(fields.member_org, &membership.organization_id);
    doc.add_i64(fields.entity_created_at, membership.created_at);
    doc.add_bytes(fields.entity_json, membership.raw_json.as_bytes());
    doc
}

/// A serde_json value as tantivy reads it into a document, in place (not copied into an
/// `OwnedValue` tree first), with strings kept as strings: tantivy's own impl for
/// `&serde_json::Value` turns strings that look like RFC 3339 dates into dates, which would make
/// `public.x = "2024-01-01T00:00:00Z"` miss.
#[derive(Debug, Clone, Copy)]
struct PlainJson<'a>(&'a serde_json::Value);

type PlainArray<'a> = std::iter::Map<
    std::slice::Iter<'a, serde_json::Value>,
    fn(&'a serde_json::Value) -> PlainJson<'a>,
>;
type PlainObject<'a> = std::iter::Map<
    serde_json::map::Iter<'a>,
    fn((&'a String, &'a serde_json::Value)) -> (&'a str, PlainJson<'a>),
>;

impl<'a> Value<'a> for PlainJson<'a> {
    type ArrayIter = PlainArray<'a>;
    type ObjectIter = PlainObject<'a>;

    fn as_value(&self) -> ReferenceValue<'a, Self> {
        match self.0 {
            serde_json::Value::Null => ReferenceValueLeaf::Null.into(),
            serde_json::Value::Bool(b) => ReferenceValueLeaf::Bool(*b).into(),
            serde_json::Value::Number(n) => match (n.as_i64(), n.as_u64()) {
                (Some(i), _) => ReferenceValueLeaf::I64(i).into(),
                (None, Some(u)) => ReferenceValueLeaf::U64(u).into(),
                (None, None) => ReferenceValueLeaf::F64(n.as_f64().unwrap_or(f64::NAN)).into(),
            },
            serde_json::Value::String(text) => ReferenceValueLeaf::Str(text).into(),
            serde_json::Value::Array(items) => {
                let element: fn(&'a serde_json::Value) -> PlainJson<'a> = PlainJson;
                ReferenceValue::Array(items.iter().map(element))
            }
            serde_json::Value::Object(map) => {
                let entry: fn((&'a String, &'a serde_json::Value)) -> (&'a str, PlainJson<'a>) =
                    |(key, value)| (key.as_str(), PlainJson(value));
                ReferenceValue::Object(map.iter().map(entry))
            }
        }
    }
}

#[cfg(test)]
mod tests;
