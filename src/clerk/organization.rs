//! Clerk's organization and organization-membership objects, parsed leniently (as users are:
//! every field optional but the ids, unknown fields kept in the raw JSON).
//!
//! Shapes: `components.schemas.Organization` and `OrganizationMembership` in the Backend API spec
//! `2026-05-12`, and the `organization.*` / `organizationMembership.*` webhook payloads, whose
//! membership carries the organization as of the event and the member in `public_user_data`.

use std::sync::Arc;

use serde::Deserialize;
use serde_json::Value;
use serde_json::value::RawValue;

use crate::organization::{Membership, Organization, is_clerk_id};
use crate::user::is_user_id;

/// `components.schemas.Organization`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct ClerkOrganization {
    pub object: Option<String>,
    pub id: Option<String>,
    pub name: Option<String>,
    pub slug: Option<String>,
    pub image_url: Option<String>,
    pub has_image: Option<bool>,
    pub members_count: Option<i64>,
    pub missing_member_with_elevated_permissions: Option<bool>,
    pub pending_invitations_count: Option<i64>,
    pub max_allowed_memberships: Option<i64>,
    pub admin_delete_enabled: Option<bool>,
    pub public_metadata: Value,
    pub private_metadata: Value,
    pub created_by: Option<String>,
    pub created_at: Option<i64>,
    pub updated_at: Option<i64>,
}

/// `public_user_data` on a membership: the member.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct ClerkPublicUserData {
    pub user_id: Option<String>,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub image_url: Option<String>,
    pub has_image: Option<bool>,
    pub identifier: Option<String>,
}

/// `components.schemas.OrganizationMembership`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct ClerkMembership<'a> {
    pub object: Option<String>,
    pub id: Option<String>,
    pub role: Option<String>,
    pub role_name: Option<String>,
    pub permissions: Option<Vec<String>>,
    pub public_metadata: Value,
    pub private_metadata: Value,
    #[serde(borrow)]
    pub organization: Option<&'a RawValue>,
    pub public_user_data: Option<ClerkPublicUserData>,
    pub created_at: Option<i64>,
    pub updated_at: Option<i64>,
}

/// Why a Clerk organization or membership could not be used. Messages never quote a value.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum OrganizationParseError {
    #[error("clerk {object} json is malformed: {reason}")]
    Malformed {
        object: &'static str,
        reason: String,
    },
    #[error("clerk {object} has no {field}")]
    Missing {
        object: &'static str,
        field: &'static str,
    },
    /// An id not shaped like Clerk's (never repeated: it may be anything).
    #[error("clerk {object} has a {field} of {len} bytes that is not a Clerk id")]
    InvalidId {
        object: &'static str,
        field: &'static str,
        len: usize,
    },
}

const ORGANIZATION: &str = "organization";
const MEMBERSHIP: &str = "organization membership";

fn malformed(object: &'static str, error: &serde_json::Error) -> OrganizationParseError {
    OrganizationParseError::Malformed {
        object,
        reason: format!("at line {} column {}", error.line(), error.column()),
    }
}

/// `id` when present and shaped like a Clerk id with `prefix` (`user_` for users).
fn checked_id(
    id: Option<String>,
    object: &'static str,
    field: &'static str,
    prefix: &str,
) -> Result<String, OrganizationParseError> {
    let id = id
        .filter(|id| !id.is_empty())
        .ok_or(OrganizationParseError::Missing { object, field })?;
    let valid = if prefix == "user_" {
        is_user_id(&id)
    } else {
        is_clerk_id(&id, prefix)
    };
    if valid {
        Ok(id)
    } else {
        Err(OrganizationParseError::InvalidId {
            object,
            field,
            len: id.len(),
        })
    }
}

/// Metadata is an object; anything else (null, a missing key) reads as an empty one.
fn object_or_empty(value: Value) -> Value {
    match value {
        Value::Object(_) => value,
        _ => Value::Object(Default::default()),
    }
}

/// Parses one Clerk organization, keeping its JSON verbatim.
pub fn parse_organization(raw: &RawValue) -> Result<Organization, OrganizationParseError> {
    let wire: ClerkOrganization =
        serde_json::from_str(raw.get()).map_err(|e| malformed(ORGANIZATION, &e))?;
    let id = checked_id(wire.id, ORGANIZATION, "id", "org_")?;
    let created_at = wire.created_at.unwrap_or(0);
    Ok(Organization {
        id,
        name: wire.name,
        slug: wire.slug,
        members_count: wire.members_count,
        created_at,
        updated_at: wire.updated_at.unwrap_or(created_at),
        public_metadata: object_or_empty(wire.public_metadata),
        private_metadata: object_or_empty(wire.private_metadata),
        raw_json: Arc::from(raw.get()),
    })
}

/// A membership, and the organization it carried (as of the event or the listing: possibly
/// older than a version of the organization already held).
#[derive(Debug, Clone, PartialEq)]
pub struct ParsedMembership {
    pub membership: Membership,
    pub organization: Organization,
}

/// Parses one Clerk organization membership. The member comes from `public_user_data.user_id`
/// and the organization from `organization.id`, both required; the stored JSON leaves both
/// nested objects out (each has a source of its own).
pub fn parse_membership(raw: &RawValue) -> Result<ParsedMembership, OrganizationParseError> {
    let mut wire: ClerkMembership =
        serde_json::from_str(raw.get()).map_err(|e| malformed(MEMBERSHIP, &e))?;
    let id = checked_id(wire.id.take(), MEMBERSHIP, "id", "orgmem_")?;
    let organization = wire
        .organization
        .take()
        .ok_or(OrganizationParseError::Missing {
            object: MEMBERSHIP,
            field: "organization",
        })
        .and_then(parse_organization)?;
    let user_id = checked_id(
        wire.public_user_data.take().and_then(|data| data.user_id),
        MEMBERSHIP,
        "public_user_data.user_id",
        "user_",
    )?;
    let mut stored: serde_json::Map<String, Value> =
        serde_json::from_str(raw.get()).map_err(|e| malformed(MEMBERSHIP, &e))?;
    stored.remove("organization");
    stored.remove("public_user_data");
    stored.insert("organization_id".into(), organization.id.clone().into());
    stored.insert("user_id".into(), user_id.clone().into());
    let membership = membership_from_wire(
        wire,
        id,
        organization.id.clone(),
        user_id,
        Value::Object(stored).to_string(),
    );
    Ok(ParsedMembership {
        membership,
        organization,
    })
}

fn membership_from_wire(
    wire: ClerkMembership,
    id: String,
    organization_id: String,
    user_id: String,
    stored: String,
) -> Membership {
    let created_at = wire.created_at.unwrap_or(0);
    Membership {
        id,
        organization_id,
        user_id,
        role: wire.role,
        permissions: wire.permissions.unwrap_or_default(),
        created_at,
        updated_at: wire.updated_at.unwrap_or(created_at),
        public_metadata: object_or_empty(wire.public_metadata),
        private_metadata: object_or_empty(wire.private_metadata),
        raw_json: Arc::from(stored),
    }
}

/// The ids [`parse_membership`] adds to the JSON it keeps.
#[derive(Deserialize)]
struct StoredIds {
    organization_id: Option<String>,
    user_id: Option<String>,
}

/// Reads a membership back from the JSON [`parse_membership`] kept ([`Membership::raw_json`]:
/// Clerk's membership without its nested objects, with `organization_id` and `user_id`).
pub fn parse_stored_membership(json: &str) -> Result<Membership, OrganizationParseError> {
    let wire: ClerkMembership =
        serde_json::from_str(json).map_err(|e| malformed(MEMBERSHIP, &e))?;
    let ids: StoredIds = serde_json::from_str(json).map_err(|e| malformed(MEMBERSHIP, &e))?;
    let id = checked_id(wire.id.clone(), MEMBERSHIP, "id", "orgmem_")?;
    let organization_id = checked_id(ids.organization_id, MEMBERSHIP, "organization_id", "org_")?;
    let user_id = checked_id(ids.user_id, MEMBERSHIP, "user_id", "user_")?;
    Ok(membership_from_wire(
        wire,
        id,
        organization_id,
        user_id,
        json.to_string(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn example_data(name: &str) -> String {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../shared/clerk/examples")
            .join(name);
        let event: Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
        event["data"].to_string()
    }

    fn raw(json: &str) -> &RawValue {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn clerk_example_organizations_parse() {
        let json = example_data("spec-organization.updated.json");
        let org = parse_organization(raw(&json)).unwrap();
        assert_eq!(org.id, "org_2g7np7Hrk0SN6kj5EDMLDaKNL0S");
        assert_eq!(org.slug.as_deref(), Some("acme-corp-updated"));
        assert_eq!(org.name.as_deref(), Some("Acme Corp Updated"));
        assert_eq!(org.members_count, Some(3));
        assert_eq!(org.updated_at, 1_716_883_500_000);
        assert_eq!(org.public_metadata["department"], "engineering");
        assert_eq!(org.private_metadata["internal_id"], "ORG-123");
        let created = example_data("spec-organization.created.json");
        assert!(parse_organization(raw(&created)).is_ok());
    }

    #[test]
    fn clerk_example_memberships_parse_without_their_nested_objects() {
        for name in [
            "spec-organizationMembership.created.json",
            "spec-organizationMembership.updated.json",
            "spec-organizationMembership.deleted.json",
        ] {
            let json = example_data(name);
            let parsed = parse_membership(raw(&json)).unwrap();
            let membership = &parsed.membership;
            assert_eq!(
                membership.id, "orgmem_2g7np7Hrk0SN6kj5EDMLDaKNL0S",
                "{name}"
            );
            assert_eq!(
                membership.organization_id,
                "org_2g7np7Hrk0SN6kj5EDMLDaKNL0S"
            );
            assert_eq!(membership.user_id, "user_2h8op3Isl1QR7tKu5FGNfaLKEoU");
            assert!(
                membership
                    .role
                    .as_deref()
                    .is_some_and(|r| r.starts_with("org:"))
            );
            let stored: Value = serde_json::from_str(&membership.raw_json).unwrap();
            assert!(
                stored.get("organization").is_none() && stored.get("public_user_data").is_none()
            );
            assert_eq!(stored["organization_id"], "org_2g7np7Hrk0SN6kj5EDMLDaKNL0S");
            assert_eq!(parsed.organization.id, "org_2g7np7Hrk0SN6kj5EDMLDaKNL0S");
        }
        let created = parse_membership(raw(&example_data(
            "spec-organizationMembership.created.json",
        )))
        .unwrap();
        assert_eq!(
            created.membership.permissions,
            vec!["org:posts:read", "org:posts:write"]
        );
    }

    #[test]
    fn lenient_but_not_without_ids() {
        // Only the ids are required; metadata of the wrong kind reads as empty.
        let org = parse_organization(raw(r#"{"id":"org_1","public_metadata":null}"#)).unwrap();
        assert_eq!(org.public_metadata, serde_json::json!({}));
        assert_eq!(org.updated_at, 0);
        assert_eq!(
            parse_organization(raw(r#"{"name":"x"}"#)),
            Err(OrganizationParseError::Missing {
                object: ORGANIZATION,
                field: "id"
            })
        );
        let without_user = r#"{"id":"orgmem_1","organization":{"id":"org_1"}}"#;
        assert!(matches!(
            parse_membership(raw(without_user)),
            Err(OrganizationParseError::Missing {
                field: "public_user_data.user_id",
                ..
            })
        ));
        let bad_user = r#"{"id":"orgmem_1","organization":{"id":"org_1"},"public_user_data":{"user_id":"sess_1"}}"#;
        assert!(matches!(
            parse_membership(raw(bad_user)),
            Err(OrganizationParseError::InvalidId { len: 6, .. })
        ));
        let error = parse_organization(raw(r#"{"id":"org_1","members_count":"secret-ish"}"#))
            .unwrap_err()
            .to_string();
        assert!(!error.contains("secret-ish"), "{error}");
    }
}
