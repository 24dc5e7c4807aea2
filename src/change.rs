//! The one change type every source produces (backfill, webhooks, reconcile, write-through,
//! re-sealing, the cluster's change log) and the index writer applies.
//!
//! [`Change`] is what travels: [`UserChange`]s, [`OrganizationChange`]s and
//! [`MembershipChange`]s (a new kind is a new variant, and the compiler then lists every place
//! that must handle it: the writer, the change log's format, the observers). Each kind keeps its
//! own version clock (`updated_at`); ids of the three kinds never collide (`user_`, `org_`,
//! `orgmem_`), so one key space serves them all.

use std::sync::Arc;

use crate::organization::{Membership, Organization};
use crate::user::User;

/// Any change to what the index holds.
#[derive(Debug, Clone)]
pub enum Change {
    User(UserChange),
    Organization(OrganizationChange),
    Membership(MembershipChange),
}

impl From<OrganizationChange> for Change {
    fn from(change: OrganizationChange) -> Change {
        Change::Organization(change)
    }
}

impl From<MembershipChange> for Change {
    fn from(change: MembershipChange) -> Change {
        Change::Membership(change)
    }
}

impl From<UserChange> for Change {
    fn from(change: UserChange) -> Change {
        Change::User(change)
    }
}

impl Change {
    pub fn source(&self) -> ChangeSource {
        match self {
            Change::User(change) => change.source(),
            Change::Organization(change) => change.source(),
            Change::Membership(change) => change.source(),
        }
    }

    /// What the change is about, unique across kinds (the change log keeps one message per
    /// key): a user's, an organization's or a membership's id.
    pub fn key(&self) -> &str {
        match self {
            Change::User(change) => change.user_id(),
            Change::Organization(change) => change.organization_id(),
            Change::Membership(change) => &change.membership().id,
        }
    }

    /// Whether this change, arriving after `held` (the latest change recorded under the same
    /// key), changes what an index holds. See [`UserChange::supersedes`]; organizations and
    /// memberships follow the same rules by their `updated_at`.
    pub fn supersedes(&self, held: &Change) -> bool {
        match (self, held) {
            (Change::User(change), Change::User(held)) => change.supersedes(held),
            (Change::Organization(change), Change::Organization(held)) => {
                versioned_supersedes(change.versioned(), held.versioned())
            }
            (Change::Membership(change), Change::Membership(held)) => {
                versioned_supersedes(change.versioned(), held.versioned())
            }
            // Keys of different kinds never meet.
            _ => true,
        }
    }
}

/// What [`versioned_supersedes`] compares: an upsert's `updated_at` and JSON, or a deletion's
/// time and source.
#[derive(Debug, Clone, Copy)]
pub enum Versioned<'a> {
    Upsert {
        updated_at: i64,
        raw_json: &'a str,
        source: ChangeSource,
    },
    Delete {
        deleted_at_ms: i64,
        source: ChangeSource,
    },
}

/// [`UserChange::supersedes`]'s rules for kinds versioned by `updated_at` alone.
pub fn versioned_supersedes(change: Versioned, held: Versioned) -> bool {
    match (change, held) {
        (
            Versioned::Upsert {
                updated_at,
                raw_json,
                ..
            },
            Versioned::Upsert {
                updated_at: held,
                raw_json: held_json,
                ..
            },
        ) => updated_at > held || (updated_at == held && raw_json != held_json),
        (
            Versioned::Upsert {
                updated_at, source, ..
            },
            Versioned::Delete {
                deleted_at_ms,
                source: held_source,
            },
        ) => (held_source.is_listing() && source.is_listing()) || updated_at > deleted_at_ms,
        (Versioned::Delete { .. }, Versioned::Upsert { .. }) => true,
        (
            Versioned::Delete {
                deleted_at_ms,
                source,
            },
            Versioned::Delete {
                deleted_at_ms: held,
                source: held_source,
            },
        ) => deleted_at_ms > held || (held_source.is_listing() && !source.is_listing()),
    }
}

/// A change to an organization: its name, slug, metadata or `members_count`, which reaches
/// every member's document.
#[derive(Debug, Clone)]
pub enum OrganizationChange {
    /// Insert or replace an organization. Ignored when the index holds a newer `updated_at`.
    Upsert {
        organization: Arc<Organization>,
        source: ChangeSource,
    },
    /// Remove an organization (and, with it, the copies on its members' documents), as of
    /// `deleted_at_ms`. Its memberships stay until deleted themselves: Clerk announces each.
    Delete {
        organization_id: String,
        deleted_at_ms: i64,
        source: ChangeSource,
    },
}

impl OrganizationChange {
    pub fn organization_id(&self) -> &str {
        match self {
            OrganizationChange::Upsert { organization, .. } => &organization.id,
            OrganizationChange::Delete {
                organization_id, ..
            } => organization_id,
        }
    }

    pub fn source(&self) -> ChangeSource {
        match self {
            OrganizationChange::Upsert { source, .. }
            | OrganizationChange::Delete { source, .. } => *source,
        }
    }

    pub fn versioned(&self) -> Versioned<'_> {
        match self {
            OrganizationChange::Upsert {
                organization,
                source,
            } => Versioned::Upsert {
                updated_at: organization.updated_at,
                raw_json: &organization.raw_json,
                source: *source,
            },
            OrganizationChange::Delete {
                deleted_at_ms,
                source,
                ..
            } => Versioned::Delete {
                deleted_at_ms: *deleted_at_ms,
                source: *source,
            },
        }
    }
}

/// A change to a user's membership in an organization.
#[derive(Debug, Clone)]
pub enum MembershipChange {
    /// Insert or replace a membership. `organization` is the organization as the membership's
    /// payload carried it, applied first as an organization upsert (by its own version).
    Upsert {
        membership: Arc<Membership>,
        organization: Option<Arc<Organization>>,
        source: ChangeSource,
    },
    /// Remove a membership, as of `deleted_at_ms` (Clerk's deletion payload is the membership
    /// as it was, which names the user whose document changes).
    Delete {
        membership: Arc<Membership>,
        deleted_at_ms: i64,
        source: ChangeSource,
    },
}

impl MembershipChange {
    pub fn membership(&self) -> &Arc<Membership> {
        match self {
            MembershipChange::Upsert { membership, .. }
            | MembershipChange::Delete { membership, .. } => membership,
        }
    }

    pub fn source(&self) -> ChangeSource {
        match self {
            MembershipChange::Upsert { source, .. } | MembershipChange::Delete { source, .. } => {
                *source
            }
        }
    }

    pub fn versioned(&self) -> Versioned<'_> {
        match self {
            MembershipChange::Upsert {
                membership, source, ..
            } => Versioned::Upsert {
                updated_at: membership.updated_at,
                raw_json: &membership.raw_json,
                source: *source,
            },
            MembershipChange::Delete {
                deleted_at_ms,
                source,
                ..
            } => Versioned::Delete {
                deleted_at_ms: *deleted_at_ms,
                source: *source,
            },
        }
    }
}

/// Where a change came from; kept for logs and, later, per-source metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeSource {
    Backfill,
    Webhook,
    Reconcile,
    WriteThrough,
    /// Re-sealing sensitive values under a new key.
    Reencrypt,
}

impl ChangeSource {
    /// Changes made from a listing of Clerk's users (the backfill, catch-ups and sweeps): a
    /// deletion made from one only says a listing did not show the user.
    pub fn is_listing(self) -> bool {
        matches!(self, ChangeSource::Backfill | ChangeSource::Reconcile)
    }

    pub fn name(self) -> &'static str {
        match self {
            ChangeSource::Backfill => "backfill",
            ChangeSource::Webhook => "webhook",
            ChangeSource::Reconcile => "reconcile",
            ChangeSource::WriteThrough => "write_through",
            ChangeSource::Reencrypt => "reencrypt",
        }
    }
}

/// The one change type every source (backfill, webhooks, reconcile, write-through) produces and
/// the index writer task applies.
#[derive(Debug, Clone)]
pub enum UserChange {
    /// Insert or replace a user. Ignored when the index holds a newer `updated_at` for the id.
    Upsert {
        user: Arc<User>,
        source: ChangeSource,
    },
    /// Remove a user, as of `deleted_at_ms`.
    Delete {
        user_id: String,
        deleted_at_ms: i64,
        source: ChangeSource,
    },
}

impl UserChange {
    pub fn user_id(&self) -> &str {
        match self {
            UserChange::Upsert { user, .. } => &user.id,
            UserChange::Delete { user_id, .. } => user_id,
        }
    }

    pub fn source(&self) -> ChangeSource {
        match self {
            UserChange::Upsert { source, .. } | UserChange::Delete { source, .. } => *source,
        }
    }

    /// Whether this change, arriving after `held` (the latest state recorded for the same user),
    /// changes what an index holds: the index writer's rules, for a log that keeps one change per
    /// user. A deletion always does (unless an equal or later one is held, or it only repeats
    /// from a listing what a `user.deleted` said); an upsert must be newer than a held deletion
    /// (by `updated_at`) unless a listing shows a user only a listing had deleted, and at least
    /// as new as a held upsert (by [`crate::user::UserVersion`]) and different from it.
    pub fn supersedes(&self, held: &UserChange) -> bool {
        match (self, held) {
            (UserChange::Upsert { user, .. }, UserChange::Upsert { user: held, .. }) => {
                let (version, held_version) = (user.version(), held.version());
                version > held_version
                    || (version == held_version && user.raw_json != held.raw_json)
            }
            (
                UserChange::Upsert { user, source },
                UserChange::Delete {
                    deleted_at_ms: held,
                    source: held_source,
                    ..
                },
            ) => (held_source.is_listing() && source.is_listing()) || user.updated_at > *held,
            (UserChange::Delete { .. }, UserChange::Upsert { .. }) => true,
            (
                UserChange::Delete {
                    deleted_at_ms,
                    source,
                    ..
                },
                UserChange::Delete {
                    deleted_at_ms: held,
                    source: held_source,
                    ..
                },
            ) => deleted_at_ms > held || (held_source.is_listing() && !source.is_listing()),
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn upsert(updated_at: i64, plan: &str) -> UserChange {
        signed_in(updated_at, None, plan)
    }

    /// The user as a `session.created` carries it: signed in at `at`, `updated_at` unchanged.
    fn signed_in(updated_at: i64, at: Option<i64>, plan: &str) -> UserChange {
        let json = json!({"id": "user_1", "object": "user", "created_at": 1, "updated_at": updated_at,
            "last_sign_in_at": at, "last_active_at": at,
            "public_metadata": {"plan": plan}, "email_addresses": []});
        UserChange::Upsert {
            user: Arc::new(crate::clerk::user_from_json(&json.to_string()).unwrap()),
            source: ChangeSource::Webhook,
        }
    }

    fn delete(deleted_at_ms: i64) -> UserChange {
        UserChange::Delete {
            user_id: "user_1".into(),
            deleted_at_ms,
            source: ChangeSource::Webhook,
        }
    }

    #[test]
    fn a_change_supersedes_what_the_index_writer_would_replace_with_it() {
        // Newer wins; an equal version replaces only when it says something else.
        assert!(upsert(20, "pro").supersedes(&upsert(10, "free")));
        assert!(!upsert(10, "free").supersedes(&upsert(20, "pro")));
        assert!(upsert(10, "pro").supersedes(&upsert(10, "free")));
        assert!(!upsert(10, "free").supersedes(&upsert(10, "free")));
        // A deletion is final unless the user was changed after it.
        assert!(delete(5).supersedes(&upsert(10, "free")));
        assert!(!upsert(10, "free").supersedes(&delete(10)));
        assert!(upsert(11, "free").supersedes(&delete(10)));
        assert!(delete(11).supersedes(&delete(10)));
        assert!(!delete(10).supersedes(&delete(10)));
        assert!(!delete(9).supersedes(&delete(10)));
    }

    #[test]
    fn a_newer_sign_in_wins_at_the_same_updated_at_and_an_older_one_never_does() {
        let (before, signed, later) = (
            signed_in(10, Some(100), "pro"),
            signed_in(10, Some(200), "pro"),
            signed_in(10, Some(300), "pro"),
        );
        assert!(signed.supersedes(&before));
        assert!(
            !before.supersedes(&signed),
            "an older sign-in regresses nothing"
        );
        assert!(later.supersedes(&signed));
        assert!(
            signed.supersedes(&upsert(10, "pro")),
            "a first sign-in counts"
        );
        // A newer updated_at wins whatever its sign-in time says.
        assert!(signed_in(11, Some(100), "pro").supersedes(&later));
        // A deletion still beats a sign-in made before it.
        assert!(!signed_in(10, Some(400), "pro").supersedes(&delete(10)));
    }
}
