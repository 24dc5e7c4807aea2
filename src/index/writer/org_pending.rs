//! What the writer holds of organizations and memberships between two commits.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use crate::organization::{Membership, Organization};

/// Organizations and memberships changed since the last commit.
#[derive(Default)]
pub(super) struct OrgPending {
    /// `None`: deleted.
    pub(super) organizations: HashMap<String, Option<Arc<Organization>>>,
    /// `None`: deleted.
    pub(super) memberships: HashMap<String, Option<Arc<Membership>>>,
    /// The memberships above, by user and by organization.
    pub(super) by_user: HashMap<String, HashSet<String>>,
    pub(super) by_org: HashMap<String, HashSet<String>>,
}

impl OrgPending {
    pub(super) fn clear(&mut self) {
        *self = OrgPending::default();
    }

    pub(super) fn is_empty(&self) -> bool {
        self.organizations.is_empty() && self.memberships.is_empty()
    }

    pub(super) fn put_membership(
        &mut self,
        membership: &Arc<Membership>,
        state: Option<Arc<Membership>>,
    ) {
        self.memberships.insert(membership.id.clone(), state);
        self.by_user
            .entry(membership.user_id.clone())
            .or_default()
            .insert(membership.id.clone());
        self.by_org
            .entry(membership.organization_id.clone())
            .or_default()
            .insert(membership.id.clone());
    }
}
