//! Keeping the index in step with Clerk. For now: the initial backfill, resumable from the
//! checkpoint the index keeps in its commit payload.

mod backfill;
mod state;

pub use backfill::{Backfill, BackfillProgress};
pub use state::{BackfillState, SyncState, now_ms};
