//! Organizations and memberships in the writer (docs/ORGANIZATIONS.md).
//!
//! Each organization and membership is a document of its own, versioned by its `updated_at`
//! with tombstones for deletions, as users are. A user's document carries copies of its
//! memberships and their organizations ([`membership_view`]s); whenever a user, one of its
//! memberships or one of its organizations changes, the user is composed again from what the
//! index holds (the last commit, then what changed since) and re-indexed in the same commit, so
//! a reader never sees a member out of step with its organization.
//!
//! Re-indexing a user needs the user whole. A user changed since the last commit is kept whole
//! only while an observer wants previous states, so when a membership reaches a user held only
//! by its version, what is pending is committed first and the user read back from that commit.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::Ordering;

use serde_json::Value;
use tantivy::Term;
use tokio::time::Instant;

use super::super::document::{membership_document, organization_document, user_document};
use super::super::payload::Tombstone;
use super::{IndexWriterTask, Pending};
use crate::change::{ChangeSource, MembershipChange, OrganizationChange, UserChange};
use crate::organization::{Membership, Organization, membership_view, sort_memberships};
use crate::user::{User, no_organizations};

/// The parts of an organization its members' documents copy.
fn copied_parts(org: &Organization) -> impl PartialEq + '_ {
    (
        &org.name,
        &org.slug,
        org.created_at,
        org.members_count,
        &org.public_metadata,
        &org.private_metadata,
    )
}

impl IndexWriterTask {
    fn latest(&self) -> Arc<super::super::snapshot::Snapshot> {
        self.publish.borrow().clone()
    }

    /// The organization the index holds: pending changes first, then the last commit.
    fn held_organization(&self, id: &str) -> Option<Arc<Organization>> {
        if let Some(pending) = self.orgs.organizations.get(id) {
            return pending.clone();
        }
        match self.latest().organization(id) {
            Ok(org) => org.map(Arc::new),
            Err(error) => {
                tracing::error!(organization_id = %id, %error, "could not read an organization");
                None
            }
        }
    }

    fn held_membership(&self, id: &str) -> Option<Arc<Membership>> {
        if let Some(pending) = self.orgs.memberships.get(id) {
            return pending.clone();
        }
        match self.latest().membership(id) {
            Ok(membership) => membership.map(Arc::new),
            Err(error) => {
                tracing::error!(membership_id = %id, %error, "could not read a membership");
                None
            }
        }
    }

    /// Memberships from the last commit, updated by what changed since (`pending` names the
    /// changed ones).
    fn current_memberships(
        &self,
        committed: Result<Vec<Membership>, super::super::error::IndexError>,
        pending: Option<&HashSet<String>>,
    ) -> Vec<Arc<Membership>> {
        let mut by_id: HashMap<String, Arc<Membership>> = committed
            .unwrap_or_else(|error| {
                tracing::error!(%error, "could not read memberships");
                Vec::new()
            })
            .into_iter()
            .map(|m| (m.id.clone(), Arc::new(m)))
            .collect();
        for id in pending.into_iter().flatten() {
            match self.orgs.memberships.get(id) {
                Some(Some(membership)) => {
                    by_id.insert(id.clone(), membership.clone());
                }
                _ => {
                    by_id.remove(id);
                }
            }
        }
        let mut memberships: Vec<_> = by_id.into_values().collect();
        sort_memberships(&mut memberships);
        memberships
    }

    /// `user` with the memberships the index holds for it, in slot order.
    pub(super) fn with_organizations(&self, user: Arc<User>) -> Arc<User> {
        let snapshot = self.latest();
        let views = if !snapshot.holds_organizations() && self.orgs.is_empty() {
            no_organizations()
        } else {
            let memberships = self.current_memberships(
                snapshot.memberships_of_user(&user.id),
                self.orgs.by_user.get(&user.id),
            );
            let mut organizations: HashMap<String, Option<Arc<Organization>>> = HashMap::new();
            let views = memberships
                .iter()
                .map(|membership| {
                    let org = organizations
                        .entry(membership.organization_id.clone())
                        .or_insert_with(|| self.held_organization(&membership.organization_id));
                    membership_view(membership, org.as_deref())
                })
                .collect();
            Arc::new(Value::Array(views))
        };
        if views == user.organizations {
            return user;
        }
        let mut composed = (*user).clone();
        composed.organizations = views;
        Arc::new(composed)
    }

    /// The user whole as the index holds it, committing first if it is held only by version.
    /// `None` when the index holds no such user (or the commit failed: the writer is paused).
    fn whole_user(&mut self, user_id: &str) -> Option<Arc<User>> {
        match self.pending_users.get(user_id) {
            Some(Pending::User(user)) => return Some(user.clone()),
            Some(Pending::Deleted) => return None,
            Some(Pending::Version(_)) => {
                self.commit();
                if self.paused.is_some() {
                    return None;
                }
            }
            None => {}
        }
        match self.latest().stored_user(user_id) {
            Ok(user) => user.map(Arc::new),
            Err(error) => {
                tracing::error!(%user_id, %error, "could not read a user to compose it again");
                None
            }
        }
    }

    /// Composes a held user again and re-indexes it if its memberships read differently.
    fn recompose(&mut self, user_id: &str, source: ChangeSource) {
        let Some(user) = self.whole_user(user_id) else {
            return;
        };
        let composed = self.with_organizations(user.clone());
        if Arc::ptr_eq(&composed, &user) {
            return;
        }
        self.writer
            .delete_term(Term::from_field_text(self.fields.id, user_id));
        if let Err(error) = self
            .writer
            .add_document(user_document(&self.fields, &composed))
        {
            tracing::error!(%user_id, %error, "could not re-index a user");
            return;
        }
        let change = UserChange::Upsert {
            user: composed.clone(),
            source,
        };
        self.notify(&change);
        self.whole_users_pending = true;
        self.pending_users
            .insert(user_id.to_string(), Pending::User(composed));
        self.count_applied();
    }

    pub(super) fn count_applied(&mut self) {
        self.pending_changes += 1;
        self.pending_since.get_or_insert_with(Instant::now);
    }

    fn tombstone(&mut self, id: &str, deleted_at_ms: i64, source: ChangeSource) {
        self.payload
            .tombstones
            .entry(id.to_string())
            .and_modify(|held| held.merge(deleted_at_ms, source))
            .or_insert_with(|| Tombstone::new(deleted_at_ms, source));
    }

    fn hidden(&self, id: &str, updated_at: i64, source: ChangeSource) -> bool {
        let hidden = self
            .payload
            .tombstones
            .get(id)
            .is_some_and(|tombstone| tombstone.hides_version(updated_at, source));
        if hidden {
            self.stats.ignored_deleted.fetch_add(1, Ordering::Relaxed);
        }
        hidden
    }

    /// Whether an upsert (`updated_at`, `raw_json`) changes nothing over the held version: older,
    /// or the same state again. Counted as stale.
    fn stale(&self, held: Option<(i64, &str)>, updated_at: i64, raw_json: &str) -> bool {
        let stale = held.is_some_and(|(held_at, held_json)| {
            held_at > updated_at || (held_at == updated_at && held_json == raw_json)
        });
        if stale {
            self.stats.ignored_stale.fetch_add(1, Ordering::Relaxed);
        }
        stale
    }

    /// Replaces the document of an organization or membership; false if tantivy refused it.
    fn replace_entity(&mut self, id: &str, doc: tantivy::TantivyDocument) -> bool {
        self.writer
            .delete_term(Term::from_field_text(self.fields.entity_id, id));
        match self.writer.add_document(doc) {
            Ok(_) => true,
            Err(error) => {
                tracing::error!(%id, %error, "could not index an organization or membership");
                false
            }
        }
    }

    /// Re-indexes every member of an organization, committing in bounded batches.
    fn recompose_members(&mut self, organization_id: &str, source: ChangeSource) {
        let members = self.members_of(organization_id);
        self.recompose_users(members.iter().map(|m| m.user_id.clone()), source);
    }

    /// The memberships of one organization as they stand, pending changes included.
    fn members_of(&self, organization_id: &str) -> Vec<Arc<Membership>> {
        let committed = self.latest().memberships_in(organization_id);
        self.current_memberships(committed, self.orgs.by_org.get(organization_id))
    }

    /// Re-indexes users, committing in bounded batches.
    fn recompose_users(&mut self, user_ids: impl Iterator<Item = String>, source: ChangeSource) {
        let user_ids: std::collections::BTreeSet<String> = user_ids.collect();
        for user_id in user_ids {
            if self.paused.is_some() {
                return;
            }
            if self.pending_changes >= self.config.commit_max_changes {
                self.commit();
            }
            self.recompose(&user_id, source);
        }
    }

    pub(super) fn apply_organization_change(&mut self, change: OrganizationChange) {
        let source = change.source();
        match change {
            OrganizationChange::Upsert { organization, .. } => {
                self.upsert_organization(organization, source);
            }
            OrganizationChange::Delete {
                organization_id,
                deleted_at_ms,
                ..
            } => {
                self.writer.delete_term(Term::from_field_text(
                    self.fields.entity_id,
                    &organization_id,
                ));
                self.orgs
                    .organizations
                    .insert(organization_id.clone(), None);
                self.tombstone(&organization_id, deleted_at_ms, source);
                // Clerk deletes an organization's memberships with it.
                let members = self.members_of(&organization_id);
                for membership in &members {
                    let id_term = Term::from_field_text(self.fields.entity_id, &membership.id);
                    self.writer.delete_term(id_term);
                    self.orgs.put_membership(membership, None);
                    self.tombstone(&membership.id, deleted_at_ms, source);
                }
                self.stats.applied.fetch_add(1, Ordering::Relaxed);
                self.count_applied();
                self.recompose_users(members.iter().map(|m| m.user_id.clone()), source);
            }
        }
    }

    fn upsert_organization(&mut self, organization: Arc<Organization>, source: ChangeSource) {
        if self.hidden(&organization.id, organization.updated_at, source) {
            return;
        }
        let held = self.held_organization(&organization.id);
        let held_version = held.as_ref().map(|h| (h.updated_at, &*h.raw_json));
        if self.stale(
            held_version,
            organization.updated_at,
            &organization.raw_json,
        ) {
            return;
        }
        let doc = organization_document(&self.fields, &organization);
        if !self.replace_entity(&organization.id, doc) {
            return;
        }
        self.orgs
            .organizations
            .insert(organization.id.clone(), Some(organization.clone()));
        self.stats.applied.fetch_add(1, Ordering::Relaxed);
        self.count_applied();
        let copies_change =
            held.is_none_or(|held| copied_parts(&held) != copied_parts(&organization));
        if copies_change {
            self.recompose_members(&organization.id, source);
        }
    }

    pub(super) fn apply_membership_change(&mut self, change: MembershipChange) {
        let source = change.source();
        match change {
            MembershipChange::Upsert {
                membership,
                organization,
                ..
            } => {
                // The organization a membership carries fills in one the index does not hold;
                // a held one changes by its own events and listings (else every join would
                // re-index every member for the new `members_count`).
                if let Some(organization) = organization
                    && self.held_organization(&organization.id).is_none()
                {
                    self.upsert_organization(organization, source);
                }
                if self.hidden(&membership.id, membership.updated_at, source) {
                    return;
                }
                let held = self.held_membership(&membership.id);
                let held_version = held.as_ref().map(|h| (h.updated_at, &*h.raw_json));
                if self.stale(held_version, membership.updated_at, &membership.raw_json) {
                    return;
                }
                let doc = membership_document(&self.fields, &membership);
                if !self.replace_entity(&membership.id, doc) {
                    return;
                }
                self.orgs
                    .put_membership(&membership, Some(membership.clone()));
                self.stats.applied.fetch_add(1, Ordering::Relaxed);
                self.count_applied();
                self.recompose(&membership.user_id, source);
            }
            MembershipChange::Delete {
                membership,
                deleted_at_ms,
                ..
            } => {
                let id_term = Term::from_field_text(self.fields.entity_id, &membership.id);
                self.writer.delete_term(id_term);
                self.orgs.put_membership(&membership, None);
                self.tombstone(&membership.id, deleted_at_ms, source);
                self.stats.applied.fetch_add(1, Ordering::Relaxed);
                self.count_applied();
                self.recompose(&membership.user_id, source);
            }
        }
    }
}
