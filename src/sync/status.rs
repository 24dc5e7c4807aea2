//! Where sync stands, read in one place: [`SyncMonitor::status`] gathers the index's freshness,
//! the writer's, webhooks' and reconciles' counters, the backfill's progress and the cluster
//! replica's position into one [`SyncStatus`] snapshot. The Sync service and `/metrics` both
//! read it, so every number has one source and the domain never imports telemetry.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use super::destination::ChangeDestination;
use super::progress::BackfillProgress;
use super::reconcile::ReconcileStats;
use super::state::{ReconcileState, SyncState};
use super::webhook::{WebhookCounters, WebhookOutcome};
use crate::clerk::rate_limit::RateLimit;
use crate::clerk::{ClerkClient, Instance};
use crate::index::{Freshness, Pause, WriterStats};

/// The first copy from Clerk.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BackfillStatus {
    pub complete: bool,
    pub users_seen: u64,
    pub users_total: u64,
    /// Pages this process applied since start.
    pub pages: u64,
    pub started_at_ms: i64,
    pub completed_at_ms: i64,
}

/// Reconcile runs: the persisted state and the counts since start.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ReconcileStatus {
    pub state: ReconcileState,
    pub catch_ups: u64,
    pub catch_up_failures: u64,
    pub sweeps: u64,
    pub sweep_failures: u64,
}

/// What the index writer did with the changes it was given, since start.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WriterCounts {
    pub applied: u64,
    pub ignored_stale: u64,
    pub ignored_deleted: u64,
    pub commits: u64,
    pub commit_failures: u64,
    /// Why writes are paused after a failed commit, if they are.
    pub paused: Option<Pause>,
}

/// Cluster mode: this replica's place in the cluster, as it knows it without asking NATS.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReplicaStatus {
    pub replica_id: String,
    pub holds_sync_lease: bool,
    /// The last change-log sequence this replica's index has committed.
    pub committed_sequence: u64,
    /// Change-log messages this replica could not read and skipped.
    pub unreadable_messages: u64,
}

/// Cluster mode: what only NATS knows (asked on demand).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClusterView {
    /// The replica holding the sync lease; empty when none does or it cannot be read.
    pub sync_lease_holder: String,
    /// The newest sequence in the change log (0 when it cannot be read).
    pub log_sequence: u64,
}

/// Everything known about sync at one moment.
#[derive(Debug, Clone, PartialEq)]
pub struct SyncStatus {
    pub freshness: Freshness,
    /// Cluster mode: the last change-log sequence the index's last commit holds.
    pub log_sequence: u64,
    pub tombstones: u64,
    /// Listed users that could not be parsed, waiting to be fetched again by id.
    pub unreadable_users: u64,
    /// Time since the newest change the index is known to hold was made in Clerk.
    pub lag_ms: i64,
    pub backfill: BackfillStatus,
    pub reconcile: ReconcileStatus,
    pub webhooks: Vec<(WebhookOutcome, u64)>,
    pub writer: WriterCounts,
    pub replica: Option<ReplicaStatus>,
    /// The Clerk instance, once `GET /v1/instance` has answered.
    pub instance: Option<Instance>,
    /// The rate limit this process keeps to.
    pub rate_limit: RateLimit,
}

impl SyncStatus {
    /// Deliveries that ended with `outcome`.
    pub fn webhooks(&self, outcome: WebhookOutcome) -> u64 {
        self.webhooks
            .iter()
            .find(|(o, _)| *o == outcome)
            .map_or(0, |(_, count)| *count)
    }
}

/// Reads the status of every part of sync. Cheap to clone.
#[derive(Clone)]
pub struct SyncMonitor {
    pub destination: ChangeDestination,
    pub writer: Arc<WriterStats>,
    pub backfill: Arc<BackfillProgress>,
    pub webhooks: Arc<WebhookCounters>,
    pub reconcile: Arc<ReconcileStats>,
    pub clerk: ClerkClient,
}

impl SyncMonitor {
    /// Everything this process knows now, without waiting on anything.
    pub fn status(&self) -> SyncStatus {
        let snapshot = self.destination.local_index().snapshot();
        let state = self.destination.state();
        let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        let progress = &self.backfill;
        SyncStatus {
            freshness: snapshot.freshness,
            log_sequence: SyncState::log_sequence_of(&snapshot.sync_state),
            tombstones: snapshot.tombstone_count as u64,
            unreadable_users: state.unreadable.len() as u64,
            instance: self.clerk.known_instance().get().cloned(),
            rate_limit: self.clerk.rate_limit(),
            lag_ms: self
                .webhooks
                .freshness_lag_ms(snapshot.freshness.newest_updated_at_ms),
            backfill: BackfillStatus {
                complete: state.backfill.complete || progress.is_ready(),
                users_seen: state.backfill.users_seen.max(progress.users_seen()),
                users_total: state.backfill.users_total.max(progress.users_total()),
                pages: load(&progress.pages),
                started_at_ms: state.backfill.started_at_ms.unwrap_or_default(),
                completed_at_ms: state.backfill.completed_at_ms.unwrap_or_default(),
            },
            reconcile: ReconcileStatus {
                state: state.reconcile,
                catch_ups: load(&self.reconcile.catch_ups),
                catch_up_failures: load(&self.reconcile.catch_up_failures),
                sweeps: load(&self.reconcile.sweeps),
                sweep_failures: load(&self.reconcile.sweep_failures),
            },
            webhooks: WebhookOutcome::ALL
                .iter()
                .map(|outcome| (*outcome, self.webhooks.get(*outcome)))
                .collect(),
            writer: WriterCounts {
                applied: load(&self.writer.applied),
                ignored_stale: load(&self.writer.ignored_stale),
                ignored_deleted: load(&self.writer.ignored_deleted),
                commits: load(&self.writer.commits),
                commit_failures: load(&self.writer.commit_failures),
                paused: self.writer.paused(),
            },
            replica: self.destination.cluster().map(|log| ReplicaStatus {
                replica_id: log.coordination().replica_id().to_string(),
                holds_sync_lease: log.holding(),
                committed_sequence: log.replicator().committed(),
                unreadable_messages: log.replicator().unreadable(),
            }),
        }
    }

    /// Cluster mode: the lease holder and the log's length, asked of NATS; `None` in one
    /// process.
    pub async fn cluster_view(&self) -> Option<ClusterView> {
        let log = self.destination.cluster()?;
        Some(ClusterView {
            sync_lease_holder: log
                .coordination()
                .holder()
                .await
                .ok()
                .flatten()
                .unwrap_or_default(),
            log_sequence: log.log().last_sequence().await.unwrap_or_default(),
        })
    }
}
