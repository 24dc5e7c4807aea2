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
