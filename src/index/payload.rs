//! What each commit stores next to the data (tantivy's commit payload): the generation, the
//! sync checkpoint, tombstones and the segment-event sequence, so index and checkpoint never
//! disagree after a crash.

use serde::{Deserialize, Serialize};

/// What each commit stores next to the data, so index and checkpoint never disagree.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(super) struct CommitPayload {
    pub(super) format: u32,
    pub(super) generation: u64,
    pub(super) newest_updated_at_ms: i64,
    /// Owned by `sync`: where backfill and reconcile stand. Opaque here.
    #[serde(default)]
    pub(super) sync_state: serde_json::Value,
    /// Deleted user, organization and membership ids, kept in the commit with the deletion itself, so a late update can never
    /// bring back a user whose deletion was acknowledged.
    #[serde(default)]
    pub(super) tombstones: std::collections::BTreeMap<String, Tombstone>,
    /// The last saved-segment event whose change this commit holds (0: none yet).
    #[serde(default)]
    pub(super) event_sequence: u64,
    /// [`crate::index::IndexConfig::sealing`] of the process that wrote the index.
    #[serde(default)]
    pub(super) sealing: String,
}

/// `[deleted_at_ms, recorded_at_ms, from_listing]`: when Clerk deleted the user (orders it
/// against updates), when this index learned of it (retention counts from here, so a replayed
/// old deletion is still protected for the whole retry window), and whether only a sweep's
/// listing said so (then any later listing that shows the user overrides it: a listing glitch
/// must not hide a user for days, while a `user.deleted` beats every stale upsert).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct Tombstone(
    pub i64,
    pub i64,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")] pub bool,
);

impl Tombstone {
    pub(super) fn new(deleted_at_ms: i64, source: crate::change::ChangeSource) -> Tombstone {
        Tombstone(deleted_at_ms, crate::clock::now_ms(), source.is_listing())
    }

    /// A second deletion of the same user: the later time, retention from now, and final once
    /// anything but a listing said so.
    pub(super) fn merge(&mut self, deleted_at_ms: i64, source: crate::change::ChangeSource) {
        *self = Tombstone(
            self.0.max(deleted_at_ms),
            crate::clock::now_ms(),
            self.2 && source.is_listing(),
        );
    }

    /// Whether this deletion keeps `user` (arriving from `source`) out of the index.
    pub(super) fn hides(
        &self,
        user: &crate::user::User,
        source: crate::change::ChangeSource,
    ) -> bool {
        self.hides_version(user.updated_at, source)
    }

    /// Whether this deletion keeps a state last updated at `updated_at` (arriving from `source`)
    /// out of the index: users, organizations and memberships alike.
    pub(super) fn hides_version(
        &self,
        updated_at: i64,
        source: crate::change::ChangeSource,
    ) -> bool {
        if self.2 && source.is_listing() {
            return false;
        }
        self.0 >= updated_at
    }
}
