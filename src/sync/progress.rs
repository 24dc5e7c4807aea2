//! The backfill's live numbers and the service's readiness, shared by the backfill, the
//! cluster's checkpoint follower, `/readyz` and the status.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use super::state::BackfillState;

/// Live backfill numbers, for readiness, logs and status.
#[derive(Debug, Default)]
pub struct BackfillProgress {
    users_seen: AtomicU64,
    /// Clerk's `/users/count` at the start, 0 if unknown.
    users_total: AtomicU64,
    pub(super) pages: AtomicU64,
    /// The service is ready: the first backfill is in the index (in cluster mode: the shared
    /// backfill is complete and this replica has caught up with the log).
    ready: AtomicBool,
}

impl BackfillProgress {
    /// Takes in what a checkpoint says (numbers only grow).
    pub fn saw(&self, state: &BackfillState) {
        self.users_seen
            .fetch_max(state.users_seen, Ordering::Relaxed);
        self.users_total
            .fetch_max(state.users_total, Ordering::Relaxed);
    }

    pub(super) fn set_total(&self, total: u64) {
        self.users_total.store(total, Ordering::Relaxed);
    }

    pub(super) fn page_done(&self, users_seen: u64) {
        self.users_seen.store(users_seen, Ordering::Relaxed);
        self.pages.fetch_add(1, Ordering::Relaxed);
    }

    pub fn users_seen(&self) -> u64 {
        self.users_seen.load(Ordering::Relaxed)
    }

    pub fn users_total(&self) -> u64 {
        self.users_total.load(Ordering::Relaxed)
    }

    pub fn set_ready(&self) {
        self.ready.store(true, Ordering::Relaxed);
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed)
    }
}
