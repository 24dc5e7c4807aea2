//! `clerkindex.v1.Sync`: freshness and repair on demand.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use tonic::{Request, Response, Status};

use super::convert::freshness_to_proto;
use super::proto;
use super::proto::sync_server::Sync as SyncApi;
use crate::auth::sensitive::reseal_all;
use crate::auth::{Scope, Sensitive};
use crate::error::Error;
use crate::index::{UserIndex, WriterHandle};
use crate::sync::{
    BackfillProgress, LogTarget, ReconcileRun, Reconciler, Replicator, SyncStateView,
    WebhookCounters, WebhookOutcome,
};

/// Reads the counters every part of sync keeps, and runs reconciles.
pub struct SyncService {
    pub index: UserIndex,
    pub backfill: Arc<BackfillProgress>,
    pub webhooks: Arc<WebhookCounters>,
    pub reconciler: Arc<Reconciler>,
    /// Its counts, and re-sealed users go through it.
    pub writer: WriterHandle,
    /// The sensitive paths and their key ring, if configured.
    pub sensitive: Option<Arc<Sensitive>>,
    /// Where sync stands (the commit payload, or the shared checkpoint in cluster mode).
    pub state: SyncStateView,
    /// Cluster mode: the sync lease and this replica's copy of the log.
    pub cluster: Option<(Arc<LogTarget>, Arc<Replicator>)>,
}

impl SyncService {
    async fn cluster_status(&self) -> Option<proto::ClusterStatus> {
        let (target, replicator) = self.cluster.as_ref()?;
        let coordination = target.coordination();
        Some(proto::ClusterStatus {
            replica_id: coordination.replica_id().to_string(),
            holds_sync_lease: target.holding(),
            sync_lease_holder: coordination
                .holder()
                .await
                .ok()
                .flatten()
                .unwrap_or_default(),
            committed_sequence: replicator.committed(),
            log_sequence: target.log().last_sequence().await.unwrap_or_default(),
        })
    }
}

impl SyncService {
    /// The service behind `auth`: every call carries its [`crate::auth::Caller`].
    pub fn into_server(
        self,
        auth: super::Authenticate,
    ) -> tonic::service::interceptor::InterceptedService<
        proto::sync_server::SyncServer<Self>,
        super::Authenticate,
    > {
        proto::sync_server::SyncServer::with_interceptor(self, auth)
    }
}

fn run_to_proto(run: &ReconcileRun) -> proto::ReconcileRun {
    let ReconcileRun {
        started_at_ms,
        finished_at_ms,
        users_listed,
        upserts,
        deletes,
    } = run.clone();
    proto::ReconcileRun {
        started_at_ms,
        finished_at_ms,
        users_listed,
        upserts,
        deletes,
    }
}

/// The Sync service is for operators: every call needs the admin scope.
fn admin<T>(request: &Request<T>) -> Result<(), Error> {
    super::auth::caller(request)?.require(Scope::Admin, "the Sync service")?;
    Ok(())
}

#[tonic::async_trait]
impl SyncApi for SyncService {
    async fn get_sync_status(
        &self,
        request: Request<proto::GetSyncStatusRequest>,
    ) -> Result<Response<proto::SyncStatus>, Status> {
        admin(&request)?;
        let snapshot = self.index.snapshot();
        let state = self.state.current();
        let load = |counter: &std::sync::atomic::AtomicU64| counter.load(Ordering::Relaxed);
        let status = proto::SyncStatus {
            freshness: Some(freshness_to_proto(&snapshot)),
            backfill: Some(proto::BackfillStatus {
                complete: state.backfill.complete,
                users_seen: state
                    .backfill
                    .users_seen
                    .max(load(&self.backfill.users_seen)),
                users_total: load(&self.backfill.users_total).max(state.backfill.users_total),
                started_at_ms: state.backfill.started_at_ms.unwrap_or_default(),
                completed_at_ms: state.backfill.completed_at_ms.unwrap_or_default(),
            }),
            last_catch_up: state.reconcile.last_catch_up.as_ref().map(run_to_proto),
            last_sweep: state.reconcile.last_sweep.as_ref().map(run_to_proto),
            catch_up_watermark_ms: state.reconcile.watermark_updated_at_ms,
            sweep_in_progress: state.reconcile.sweep.is_some(),
            webhooks: Some(proto::WebhookCounts {
                applied: self.webhooks.get(WebhookOutcome::Applied),
                duplicate: self.webhooks.get(WebhookOutcome::Duplicate),
                ignored_type: self.webhooks.get(WebhookOutcome::Ignored),
                bad_signature: self.webhooks.get(WebhookOutcome::BadSignature),
                malformed: self.webhooks.get(WebhookOutcome::Malformed),
                failed: self.webhooks.get(WebhookOutcome::Failed),
            }),
            writer: Some(proto::WriterCounts {
                applied: load(&self.writer.stats().applied),
                ignored_stale: load(&self.writer.stats().ignored_stale),
                ignored_deleted: load(&self.writer.stats().ignored_deleted),
                commits: load(&self.writer.stats().commits),
            }),
            lag_ms: self
                .webhooks
                .freshness_lag_ms(snapshot.freshness.newest_updated_at_ms),
            tombstones: snapshot.tombstone_count as u64,
            cluster: self.cluster_status().await,
        };
        Ok(Response::new(status))
    }

    async fn trigger_reconcile(
        &self,
        request: Request<proto::TriggerReconcileRequest>,
    ) -> Result<Response<proto::TriggerReconcileResponse>, Status> {
        admin(&request)?;
        let kind = proto::ReconcileKind::try_from(request.into_inner().kind)
            .unwrap_or(proto::ReconcileKind::Unspecified);
        let (catch_up, sweep) = match kind {
            proto::ReconcileKind::CatchUp => (true, false),
            proto::ReconcileKind::Sweep => (false, true),
            proto::ReconcileKind::Both | proto::ReconcileKind::Unspecified => (true, true),
        };
        // In cluster mode the reconciler itself refuses on a replica without the sync lease.
        if !self.state.current().backfill.complete {
            return Err(Error::Unavailable(
                "the backfill is still running; reconcile after it completes".into(),
            )
            .into());
        }
        let mut response = proto::TriggerReconcileResponse::default();
        if catch_up {
            response.catch_up = Some(run_to_proto(&self.reconciler.catch_up().await?));
        }
        if sweep {
            response.sweep = Some(run_to_proto(&self.reconciler.sweep().await?));
        }
        Ok(Response::new(response))
    }

    async fn reencrypt_sensitive(
        &self,
        request: Request<proto::ReencryptSensitiveRequest>,
    ) -> Result<Response<proto::ReencryptSensitiveResponse>, Status> {
        admin(&request)?;
        let sensitive = self.sensitive.as_ref().ok_or_else(|| {
            Error::InvalidArgument(
                "no sensitive paths are configured: nothing to re-encrypt".into(),
            )
        })?;
        let done = reseal_all(sensitive, &self.index, &self.writer)
            .await
            .map_err(Error::Internal)?;
        Ok(Response::new(proto::ReencryptSensitiveResponse {
            users_resealed: done.users,
            active_key_id: sensitive.ring().active_id().to_string(),
            generation: done.generation,
        }))
    }
}
