//! Keeping the index in step with Clerk: the initial backfill (resumable from the checkpoint
//! the index keeps in its commit payload), Svix-signed webhooks and write-through metadata
//! updates.

mod backfill;
mod leader;
mod reconcile;
mod replicate;
mod sink;
mod state;
mod target;
mod webhook;
mod write_through;

pub use backfill::{Backfill, BackfillProgress};
pub use leader::SyncLease;
pub use reconcile::{ReconcileSchedule, ReconcileStats, Reconciler};
pub use replicate::Replicator;
pub use sink::{ChangeSink, Recorded};
pub use state::{BackfillState, ReconcileRun, ReconcileState, SyncState, now_ms};
pub use target::{LogTarget, SyncStateView, SyncTarget, follow_shared_state};
pub use webhook::{WebhookAnswer, WebhookCounters, WebhookDetail, WebhookOutcome, WebhookReceiver};
pub use write_through::{MetadataPatch, WriteThrough};
