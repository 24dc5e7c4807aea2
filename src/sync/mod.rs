//! Keeping the index in step with Clerk: the initial backfill (resumable from its checkpoint),
//! Svix-signed webhooks, periodic reconciles, write-through metadata updates and re-sealing,
//! all writing through one [`ChangeDestination`] (the local index, or in cluster mode the change
//! log, which each replica's [`Replicator`] follows and one lease holder copies Clerk into).
//! [`SyncMonitor`] reads where it all stands. This file only declares and re-exports.

mod activity;
mod backfill;
mod destination;
mod instance;
mod leader;
mod log_destination;
mod org_catch_up;
mod org_walk;
mod partitions;
mod progress;
mod reconcile;
mod recorded;
mod replicate;
mod reseal;
mod state;
mod status;
mod sweep;
mod walk;
mod webhook;
mod write_through;

pub use backfill::Backfill;
pub use destination::ChangeDestination;
pub use instance::learn_instance;
pub use leader::SyncLease;
pub use log_destination::LogDestination;
pub use partitions::WalkPlan;
pub use progress::BackfillProgress;
pub use reconcile::{ReconcileSchedule, ReconcileStats, Reconciler};
pub use recorded::{LOCAL_APPLY_TIMEOUT, Recorded};
pub use replicate::Replicator;
pub use reseal::{Resealed, reseal_all};
pub use state::{BackfillState, OrgPhase, OrgWalkState, ReconcileRun, ReconcileState, SyncState};
pub use status::{
    BackfillStatus, ClusterView, ReconcileStatus, ReplicaStatus, SyncMonitor, SyncStatus,
    WriterCounts,
};
pub use webhook::{WebhookAnswer, WebhookCounters, WebhookDetail, WebhookOutcome, WebhookReceiver};
pub use write_through::{MetadataPatch, WriteThrough};
