//! Where sync stands, stored in the index's commit payload next to the data it describes.

use serde::{Deserialize, Serialize};

/// Everything `sync` needs to resume after a restart.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SyncState {
    #[serde(default)]
    pub backfill: BackfillState,
}

/// Progress of the initial copy of every Clerk user.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct BackfillState {
    pub complete: bool,
    /// The id of the last user of the last applied page (`starting_after`).
    pub last_user_id: Option<String>,
    /// Set once Clerk refused cursor paging: the offset of the next page.
    pub offset: Option<u64>,
    pub users_seen: u64,
    pub started_at_ms: Option<i64>,
    pub completed_at_ms: Option<i64>,
}

impl SyncState {
    /// Reads the state from a commit payload; a missing or foreign payload means "from scratch".
    pub fn from_payload(value: &serde_json::Value) -> SyncState {
        serde_json::from_value(value.clone()).unwrap_or_default()
    }

    pub fn to_payload(&self) -> serde_json::Value {
        serde_json::to_value(self).expect("sync state serializes")
    }
}

pub use crate::clock::now_ms;
