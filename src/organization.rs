//! The domain view of Clerk organizations and organization memberships (docs/ORGANIZATIONS.md).
//!
//! `clerk/` turns Clerk's wire JSON into these; the index will keep each as its own document
//! (the source of truth, with its own `updated_at` clock) and copy what filters need onto the
//! member's user document. Nothing here knows about HTTP, protobuf or tantivy.

use std::sync::Arc;

use serde_json::Value;

/// Longest organization or membership id accepted (Clerk's are ~30 bytes).
pub const MAX_ORGANIZATION_ID_BYTES: usize = 128;

/// A Clerk organization.
#[derive(Debug, Clone, PartialEq)]
pub struct Organization {
    pub id: String,
    pub name: Option<String>,
    pub slug: Option<String>,
    /// As Clerk reports it on the organization (it may lag behind the memberships held).
    pub members_count: Option<i64>,
    /// Milliseconds since the epoch.
    pub created_at: i64,
    pub updated_at: i64,
    pub public_metadata: Value,
    pub private_metadata: Value,
    /// The organization's Clerk JSON, verbatim.
    pub raw_json: Arc<str>,
}

/// A user's membership in an organization: role, permissions and its own metadata.
#[derive(Debug, Clone, PartialEq)]
pub struct Membership {
    pub id: String,
    pub organization_id: String,
    pub user_id: String,
    /// `org:admin`, `org:member` or a custom role key.
    pub role: Option<String>,
    pub permissions: Vec<String>,
    pub created_at: i64,
    pub updated_at: i64,
    pub public_metadata: Value,
    pub private_metadata: Value,
    /// The membership's Clerk JSON without the nested organization and user data (those have
    /// sources of their own), serialized once.
    pub raw_json: Arc<str>,
}

/// The keys of a membership view (see [`membership_view`]) that filters address as `org.<key>`.
pub const VIEW_KEYS: [&str; 11] = [
    "id",
    "slug",
    "name",
    "role",
    "permissions",
    "created_at",
    "members_count",
    "public",
    "private",
    "membership",
    "membership_id",
];

/// Why `org.<keys>` names nothing a membership view holds (`None`: it names something).
pub fn org_path_error(keys: &[String]) -> Option<String> {
    let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
    match keys.as_slice() {
        [] => None,
        ["membership", rest @ ..] => match rest.first() {
            None | Some(&("public" | "private" | "created_at")) => None,
            Some(_) => Some(
                "org.membership has public, private and created_at (as in org.membership.public.seat)"
                    .into(),
            ),
        },
        [first, ..] if VIEW_KEYS.contains(first) => None,
        _ => Some(format!(
            "unknown organization path: org. is followed by one of {}",
            VIEW_KEYS.join(", ")
        )),
    }
}

/// One of a user's memberships as the user's document holds it: the JSON object `org.*` paths
/// address (`org.role`, `org.public.plan`, `org.membership.private.seat`), made of the
/// membership and its organization's current state. `id`, `slug`, `name`, `created_at`,
/// `members_count` and `public`/`private` are the organization's; `role` and `permissions` the
/// membership's; `membership` holds the membership's own `public`/`private` metadata and its
/// `created_at`. An organization the index does not hold (yet) leaves its keys out.
pub fn membership_view(membership: &Membership, organization: Option<&Organization>) -> Value {
    let mut view = serde_json::Map::new();
    view.insert("id".into(), membership.organization_id.clone().into());
    if let Some(org) = organization {
        if let Some(slug) = &org.slug {
            view.insert("slug".into(), slug.clone().into());
        }
        if let Some(name) = &org.name {
            view.insert("name".into(), name.clone().into());
        }
        view.insert("created_at".into(), org.created_at.into());
        if let Some(count) = org.members_count {
            view.insert("members_count".into(), count.into());
        }
        view.insert("public".into(), org.public_metadata.clone());
        view.insert("private".into(), org.private_metadata.clone());
    }
    if let Some(role) = &membership.role {
        view.insert("role".into(), role.clone().into());
    }
    view.insert(
        "permissions".into(),
        Value::Array(
            membership
                .permissions
                .iter()
                .cloned()
                .map(Value::from)
                .collect(),
        ),
    );
    view.insert("membership_id".into(), membership.id.clone().into());
    view.insert(
        "membership".into(),
        serde_json::json!({
            "created_at": membership.created_at,
            "public": membership.public_metadata,
            "private": membership.private_metadata,
        }),
    );
    Value::Object(view)
}

/// A user's memberships in slot order: oldest membership first (then by id), so a membership
/// keeps its slot while newer ones come and go after it.
pub fn sort_memberships(memberships: &mut [Arc<Membership>]) {
    memberships.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
}

/// Whether `id` is shaped like a Clerk id with this prefix (`org_`, `orgmem_`): the prefix, then
/// letters, digits and underscores, bounded in length.
pub fn is_clerk_id(id: &str, prefix: &str) -> bool {
    id.len() <= MAX_ORGANIZATION_ID_BYTES
        && id.strip_prefix(prefix).is_some_and(|rest| {
            !rest.is_empty() && rest.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_need_their_prefix_and_stay_bounded() {
        assert!(is_clerk_id("org_2g7np7Hrk0SN6kj5EDMLDaKNL0S", "org_"));
        assert!(is_clerk_id("orgmem_2g7np7Hrk0SN6kj5EDMLDaKNL0S", "orgmem_"));
        assert!(
            !is_clerk_id("orgmem_2g7np7", "org_"),
            "a prefix is matched whole"
        );
        assert!(!is_clerk_id("org_", "org_"));
        assert!(!is_clerk_id("org_a b", "org_"));
        assert!(!is_clerk_id(&format!("org_{}", "a".repeat(200)), "org_"));
    }
}
