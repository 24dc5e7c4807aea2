//! The fake's organizations and memberships: organizations in `created_at` order with an id
//! index, memberships in `created_at` order, and Clerk's JSON made when a page is answered (the
//! organization's `members_count` as it is now, the member's `public_user_data` from the user).

use std::collections::HashMap;

use serde_json::{Value, json};

use super::generator::Population;
use super::org_generator::{
    ADMIN_PERMISSIONS, MEMBER_PERMISSIONS, generate_organization, membership_id,
    organization_count, organization_json,
};
use super::random::clerk_id;
use super::store::UserStore;

#[derive(Debug, Clone)]
pub(super) struct StoredOrganization {
    pub id: String,
    pub created_at: i64,
    /// Clerk's JSON without `members_count` (added when answered).
    pub json: Value,
}

#[derive(Debug, Clone)]
pub(super) struct StoredMembership {
    pub id: String,
    pub organization_id: String,
    pub user_id: String,
    pub admin: bool,
    pub created_at: i64,
    pub updated_at: i64,
    pub public_metadata: Value,
    pub private_metadata: Value,
}

#[derive(Debug, Default)]
pub(super) struct OrgStore {
    organizations: Vec<StoredOrganization>,
    positions: HashMap<String, usize>,
    memberships: Vec<StoredMembership>,
    members_count: HashMap<String, usize>,
}

impl OrgStore {
    /// The population's organizations (none unless it has them); member `i` is the `i`-th user
    /// in `created_at` order.
    pub fn generate(population: &Population, users: &UserStore) -> OrgStore {
        let mut store = OrgStore::default();
        if !population.organizations || users.len() < population.count {
            return store;
        }
        let ids = users.ids();
        for index in 0..organization_count(population) {
            let org = generate_organization(population, index);
            let day = 86_400_000;
            for (k, &member) in org.members.iter().enumerate() {
                let user_id = &ids[member];
                let joined = users
                    .get(user_id)
                    .map_or(org.created_at, |u| u.created_at.max(org.created_at))
                    + (k as i64 % 30) * day;
                let joined = joined.min(population.anchor_ms - 1);
                store.memberships.push(StoredMembership {
                    id: membership_id(population, index, k),
                    organization_id: org.id.clone(),
                    user_id: user_id.clone(),
                    admin: k < org.admins,
                    created_at: joined,
                    updated_at: joined,
                    public_metadata: json!({ "title": if k < org.admins { "Owner" } else { "Member" } }),
                    private_metadata: json!({}),
                });
            }
            store.organizations.push(StoredOrganization {
                id: org.id.clone(),
                created_at: org.created_at,
                json: organization_json(&org, 0),
            });
        }
        store.reindex();
        store
    }

    fn reindex(&mut self) {
        self.organizations
            .sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
        self.positions = (self.organizations.iter().enumerate())
            .map(|(i, o)| (o.id.clone(), i))
            .collect();
        self.memberships
            .sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
        self.members_count.clear();
        for membership in &self.memberships {
            *self
                .members_count
                .entry(membership.organization_id.clone())
                .or_default() += 1;
        }
    }

    /// Organizations in ascending `created_at` order.
    pub fn organizations(&self) -> &[StoredOrganization] {
        &self.organizations
    }

    /// Memberships in ascending `created_at` order.
    pub fn memberships(&self) -> &[StoredMembership] {
        &self.memberships
    }

    pub fn organization(&self, id: &str) -> Option<&StoredOrganization> {
        self.positions.get(id).map(|&i| &self.organizations[i])
    }

    pub fn members_count(&self, organization_id: &str) -> usize {
        self.members_count
            .get(organization_id)
            .copied()
            .unwrap_or(0)
    }

    /// The membership of `user_id` in `organization_id`.
    pub fn membership_of(&self, organization_id: &str, user_id: &str) -> Option<&StoredMembership> {
        self.memberships
            .iter()
            .find(|m| m.organization_id == organization_id && m.user_id == user_id)
    }

    /// Adds a membership (at the end: it is the newest); `None` when the organization is
    /// unknown or the user is already a member.
    pub fn add_membership(
        &mut self,
        organization_id: &str,
        user_id: &str,
        admin: bool,
        now_ms: i64,
    ) -> Option<StoredMembership> {
        if self.organization(organization_id).is_none()
            || self.membership_of(organization_id, user_id).is_some()
        {
            return None;
        }
        let membership = StoredMembership {
            id: {
                use rand::SeedableRng;
                let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(now_ms as u64);
                clerk_id(&mut rng, "orgmem", self.memberships.len())
            },
            organization_id: organization_id.to_string(),
            user_id: user_id.to_string(),
            admin,
            created_at: now_ms,
            updated_at: now_ms,
            public_metadata: json!({}),
            private_metadata: json!({}),
        };
        self.memberships.push(membership.clone());
        self.reindex();
        Some(membership)
    }

    /// Changes a member's role; `None` when there is no such membership.
    pub fn set_admin(
        &mut self,
        organization_id: &str,
        user_id: &str,
        admin: bool,
        now_ms: i64,
    ) -> Option<StoredMembership> {
        let membership = self
            .memberships
            .iter_mut()
            .find(|m| m.organization_id == organization_id && m.user_id == user_id)?;
        membership.admin = admin;
        membership.updated_at = now_ms.max(membership.updated_at + 1);
        Some(membership.clone())
    }

    /// Removes a membership by id; returns it.
    pub fn remove_membership(&mut self, id: &str) -> Option<StoredMembership> {
        let at = self.memberships.iter().position(|m| m.id == id)?;
        let removed = self.memberships.remove(at);
        self.reindex();
        Some(removed)
    }

    /// Adds an organization from its Clerk JSON (without `members_count`).
    pub fn add_organization(&mut self, json: Value) -> StoredOrganization {
        let organization = StoredOrganization {
            id: json["id"].as_str().unwrap_or_default().to_string(),
            created_at: json["created_at"].as_i64().unwrap_or(0),
            json,
        };
        self.organizations.push(organization.clone());
        self.reindex();
        organization
    }

    /// Removes an organization and its memberships; returns the organization.
    pub fn remove_organization(&mut self, id: &str) -> Option<StoredOrganization> {
        let at = *self.positions.get(id)?;
        let removed = self.organizations.remove(at);
        self.memberships.retain(|m| m.organization_id != id);
        self.reindex();
        Some(removed)
    }

    /// Replaces an organization's JSON (a metadata update); false if there is none.
    pub fn replace(&mut self, id: &str, json: Value) -> bool {
        match self.positions.get(id) {
            Some(&i) => {
                self.organizations[i].json = json;
                true
            }
            None => false,
        }
    }

    /// Every organization and membership as JSON lines (see `FakeClerk::write_organizations`).
    pub fn write_jsonl(
        &self,
        users: &UserStore,
        organizations: &mut dyn std::io::Write,
        memberships: &mut dyn std::io::Write,
    ) -> std::io::Result<()> {
        for organization in &self.organizations {
            serde_json::to_writer(
                &mut *organizations,
                &self.organization_json(organization, true),
            )?;
            organizations.write_all(b"\n")?;
        }
        for membership in &self.memberships {
            let mut json = self.membership_json(membership, users);
            json["organization"] =
                json!({"object": "organization", "id": membership.organization_id});
            serde_json::to_writer(&mut *memberships, &json)?;
            memberships.write_all(b"\n")?;
        }
        Ok(())
    }

    /// The organization's JSON as Clerk answers it, `members_count` included when asked.
    pub fn organization_json(&self, org: &StoredOrganization, with_count: bool) -> Value {
        let mut json = org.json.clone();
        if with_count {
            json["members_count"] = self.members_count(&org.id).into();
        } else if let Some(object) = json.as_object_mut() {
            object.remove("members_count");
        }
        json
    }

    /// A membership as Clerk answers it: the organization as it is now, and the member.
    pub fn membership_json(&self, membership: &StoredMembership, users: &UserStore) -> Value {
        let organization = self
            .organization(&membership.organization_id)
            .map(|org| self.organization_json(org, true))
            .unwrap_or(Value::Null);
        let user: Value = users
            .get(&membership.user_id)
            .and_then(|u| serde_json::from_str(&u.json).ok())
            .unwrap_or(Value::Null);
        let primary = user["primary_email_address_id"].as_str();
        let identifier = user["email_addresses"]
            .as_array()
            .and_then(|emails| emails.iter().find(|e| e["id"].as_str() == primary))
            .and_then(|e| e["email_address"].as_str());
        let (role, role_name, permissions) = if membership.admin {
            ("org:admin", "Admin", ADMIN_PERMISSIONS)
        } else {
            ("org:member", "Member", MEMBER_PERMISSIONS)
        };
        json!({
            "object": "organization_membership",
            "id": membership.id,
            "role": role,
            "role_name": role_name,
            "permissions": permissions,
            "public_metadata": membership.public_metadata,
            "private_metadata": membership.private_metadata,
            "organization": organization,
            "public_user_data": {
                "user_id": membership.user_id,
                "first_name": user["first_name"],
                "last_name": user["last_name"],
                "profile_image_url": user["image_url"],
                "image_url": user["image_url"].as_str().unwrap_or_default(),
                "has_image": user["has_image"].as_bool().unwrap_or(false),
                "identifier": identifier,
                "username": user["username"],
                "banned": user["banned"].as_bool().unwrap_or(false),
            },
            "created_at": membership.created_at,
            "updated_at": membership.updated_at,
        })
    }
}
