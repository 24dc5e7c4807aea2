//! Keeping the index in step with Clerk: the initial backfill (resumable from the checkpoint
//! the index keeps in its commit payload) and Svix-signed webhooks.

mod backfill;
mod state;
mod webhook;

pub use backfill::{Backfill, BackfillProgress};
pub use state::{BackfillState, SyncState, now_ms};
pub use webhook::{WEBHOOK_PATH, WebhookCounters, WebhookReceiver};
