//! Where sync stands, stored in the index's commit payload next to the data it describes.

use serde::{Deserialize, Serialize};

use super::walk::Partitions;

/// Ids of listed users that could not be parsed, kept to fetch again by id: at most this many.
pub const MAX_UNREADABLE_IDS: usize = 10_000;

/// Everything `sync` needs to resume after a restart.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SyncState {
    #[serde(default)]
    pub backfill: BackfillState,
    #[serde(default)]
    pub reconcile: ReconcileState,
    /// The organizations' part of the backfill.
    #[serde(default)]
    pub organizations: OrgWalkState,
    /// Cluster mode: the last change-log sequence this index holds; a restart consumes from the
    /// next one.
    #[serde(default)]
    pub stream_sequence: u64,
    /// Users Clerk listed that could not be parsed: fetched again by id by the next catch-up
    /// (at most [`MAX_UNREADABLE_IDS`]).
    #[serde(default)]
    pub unreadable: Vec<String>,
    /// The index writer's loss count when this state was read (never stored): a checkpoint
    /// made from it is refused once streamed changes were lost since (`index::Checkpoint`).
    #[serde(skip)]
    pub epoch: u64,
}

/// Where the periodic repairs stand.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ReconcileState {
    /// Catch-up lists users updated at or after this (ms); 0 = not set yet.
    pub watermark_updated_at_ms: i64,
    /// Catch-up lists users who signed in after this (ms); 0 = not set yet.
    #[serde(default)]
    pub watermark_sign_in_ms: i64,
    /// Catch-up lists users active after this (ms; Clerk keeps activity to the day); 0 = not
    /// set yet.
    #[serde(default)]
    pub watermark_active_ms: i64,
    pub last_catch_up: Option<ReconcileRun>,
    pub last_sweep: Option<ReconcileRun>,
    /// A sweep in progress, resumed after a restart.
    pub sweep: Option<SweepCursor>,
    /// Catch-up lists organizations and memberships created at or after this (ms); 0 = not
    /// set yet.
    #[serde(default)]
    pub watermark_org_created_ms: i64,
    /// The organizations' part of a sweep in progress, resumed after a restart.
    #[serde(default)]
    pub org_sweep: Option<OrgWalkState>,
}

/// One finished catch-up or sweep.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ReconcileRun {
    pub started_at_ms: i64,
    pub finished_at_ms: i64,
    pub users_listed: u64,
    pub upserts: u64,
    pub deletes: u64,
    #[serde(default)]
    pub organizations_listed: u64,
    #[serde(default)]
    pub memberships_listed: u64,
    #[serde(default)]
    pub organizations_relisted: u64,
}

/// How far a sweep has compared Clerk with the index: its walks, and what it changed so far.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SweepCursor {
    pub started_at_ms: i64,
    #[serde(default)]
    pub partitions: Partitions,
    #[serde(default)]
    pub upserts: u64,
    pub deletes: u64,
}

/// Progress of the initial copy of every Clerk user.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct BackfillState {
    pub complete: bool,
    /// The walks over creation times and where each stands.
    #[serde(default)]
    pub partitions: Partitions,
    pub users_seen: u64,
    /// Clerk's `/users/count` when the backfill started (0 if unknown).
    #[serde(default)]
    pub users_total: u64,
    pub started_at_ms: Option<i64>,
    pub completed_at_ms: Option<i64>,
}

/// Where a walk over Clerk's organizations and memberships (the backfill's, or a sweep's)
/// stands (see `sync::org_walk`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct OrgWalkState {
    pub complete: bool,
    /// When the walk began (ms): what Clerk created later is not judged by it.
    #[serde(default)]
    pub started_at_ms: i64,
    /// The `created_at` of the last element of the phase's previous page (0 before the first):
    /// what the index holds between it and the current page's last is compared with the page.
    #[serde(default)]
    pub boundary_ms: i64,
    /// The ids listed at exactly `boundary_ms` (they may continue on the next page).
    #[serde(default)]
    pub boundary_ids: Vec<String>,
    #[serde(default)]
    pub upserts: u64,
    #[serde(default)]
    pub deletes: u64,
    #[serde(default)]
    pub phase: OrgPhase,
    /// The offset of the next page of the current phase's listing.
    #[serde(default)]
    pub offset: u64,
    #[serde(default)]
    pub organizations_seen: u64,
    #[serde(default)]
    pub memberships_seen: u64,
    /// Organizations whose members were listed again because their count differed.
    #[serde(default)]
    pub organizations_relisted: u64,
    /// Clerk refused to list organizations (they are not enabled for the instance).
    #[serde(default)]
    pub unavailable: bool,
}

/// The three passes, in order.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OrgPhase {
    #[default]
    Organizations,
    Memberships,
    Verify,
}

impl SyncState {
    /// Remembers listed users that could not be parsed, to fetch again by id.
    pub fn note_unreadable(&mut self, ids: impl IntoIterator<Item = String>) {
        for id in ids {
            if self.unreadable.len() >= MAX_UNREADABLE_IDS {
                break;
            }
            if !self.unreadable.contains(&id) {
                self.unreadable.push(id);
            }
        }
    }

    /// Reads the state from a commit payload; a missing or foreign payload means "from scratch".
    pub fn from_payload(value: &serde_json::Value) -> SyncState {
        serde_json::from_value(value.clone()).unwrap_or_default()
    }

    /// The change-log sequence a commit payload's state holds, read without parsing the rest
    /// (every cluster-mode read checks it).
    pub fn log_sequence_of(payload: &serde_json::Value) -> u64 {
        payload
            .get("stream_sequence")
            .and_then(serde_json::Value::as_u64)
            .unwrap_or(0)
    }

    pub fn to_payload(&self) -> serde_json::Value {
        serde_json::to_value(self).expect("sync state serializes")
    }
}
