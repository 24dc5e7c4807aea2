//! `clerkindex.v1.Sync`: freshness and repair on demand.

use std::sync::Arc;

use tonic::{Request, Response, Status};

use super::convert::freshness_parts_to_proto;
use super::proto;
use super::proto::sync_server::Sync as SyncApi;
use crate::auth::{Scope, Sensitive};
use crate::error::Error;
use crate::sync::{
    ClusterView, ReconcileRun, Reconciler, SyncMonitor, SyncStatus, WebhookOutcome, reseal_all,
};

/// Reports where sync stands, runs reconciles and re-seals on demand.
pub struct SyncService {
    pub monitor: SyncMonitor,
    pub reconciler: Arc<Reconciler>,
    /// The sensitive paths and their key ring, if configured.
    pub sensitive: Option<Arc<Sensitive>>,
}

impl SyncService {
    /// The service behind `auth`: every call carries its [`crate::auth::Caller`].
    pub fn into_server(
        self,
        auth: super::auth::Authenticate,
    ) -> tonic::service::interceptor::InterceptedService<
        proto::sync_server::SyncServer<Self>,
        super::auth::Authenticate,
    > {
        let server = proto::sync_server::SyncServer::new(self)
            .accept_compressed(tonic::codec::CompressionEncoding::Gzip)
            .send_compressed(tonic::codec::CompressionEncoding::Gzip);
        tonic::service::interceptor::InterceptedService::new(server, auth)
    }
}

fn run_to_proto(run: &ReconcileRun) -> proto::ReconcileRun {
    let ReconcileRun {
        started_at_ms,
        finished_at_ms,
        users_listed,
        upserts,
        deletes,
        organizations_listed,
        memberships_listed,
        organizations_relisted,
    } = run.clone();
    proto::ReconcileRun {
        started_at_ms,
        finished_at_ms,
        users_listed,
        upserts,
        deletes,
        organizations_listed,
        memberships_listed,
        organizations_relisted,
    }
}

fn status_to_proto(status: SyncStatus, cluster: Option<ClusterView>) -> proto::SyncStatus {
    let SyncStatus {
        freshness,
        log_sequence,
        tombstones,
        unreadable_users,
        lag_ms,
        backfill,
        reconcile,
        webhooks: _,
        writer,
        replica,
        instance,
        rate_limit,
    } = status.clone();
    proto::SyncStatus {
        freshness: Some(freshness_parts_to_proto(freshness, log_sequence)),
        backfill: Some(proto::BackfillStatus {
            complete: backfill.complete,
            users_seen: backfill.users_seen,
            users_total: backfill.users_total,
            started_at_ms: backfill.started_at_ms,
            completed_at_ms: backfill.completed_at_ms,
        }),
        last_catch_up: reconcile.state.last_catch_up.as_ref().map(run_to_proto),
        last_sweep: reconcile.state.last_sweep.as_ref().map(run_to_proto),
        catch_up_watermark_ms: reconcile.state.watermark_updated_at_ms,
        sweep_in_progress: reconcile.state.sweep.is_some(),
        webhooks: Some(proto::WebhookCounts {
            applied: status.webhooks(WebhookOutcome::Applied),
            duplicate: status.webhooks(WebhookOutcome::Duplicate),
            ignored_type: status.webhooks(WebhookOutcome::Ignored),
            bad_signature: status.webhooks(WebhookOutcome::BadSignature),
            malformed: status.webhooks(WebhookOutcome::Malformed),
            failed: status.webhooks(WebhookOutcome::Failed),
            foreign_instance: status.webhooks(WebhookOutcome::ForeignInstance),
        }),
        writer: Some(proto::WriterCounts {
            applied: writer.applied,
            ignored_stale: writer.ignored_stale,
            ignored_deleted: writer.ignored_deleted,
            commits: writer.commits,
            commit_failures: writer.commit_failures,
            paused: writer.paused.as_ref().map(|pause| proto::WriterPause {
                reason: pause.reason.clone(),
                since_ms: pause.since_ms,
            }),
        }),
        lag_ms,
        tombstones,
        unreadable_users,
        clerk: Some(proto::ClerkInstance {
            instance_id: instance.as_ref().map(|i| i.id.clone()).unwrap_or_default(),
            environment_type: instance.map(|i| i.environment_type).unwrap_or_default(),
            requests_per_10s: (f64::from(rate_limit.requests) * 10.0 / rate_limit.per.as_secs_f64())
                .round() as u32,
        }),
        cluster: replica.map(|replica| {
            let cluster = cluster.unwrap_or_default();
            proto::ClusterStatus {
                replica_id: replica.replica_id,
                holds_sync_lease: replica.holds_sync_lease,
                sync_lease_holder: cluster.sync_lease_holder,
                committed_sequence: replica.committed_sequence,
                log_sequence: cluster.log_sequence,
            }
        }),
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
        let status = self.monitor.status();
        let cluster = self.monitor.cluster_view().await;
        Ok(Response::new(status_to_proto(status, cluster)))
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
        if !self.monitor.status().backfill.complete {
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
            Error::FailedPrecondition(
                "no sensitive paths are configured: nothing to re-encrypt".into(),
            )
        })?;
        let done = reseal_all(sensitive, &self.monitor.destination).await?;
        Ok(Response::new(proto::ReencryptSensitiveResponse {
            users_resealed: done.users,
            active_key_id: sensitive.ring().active_id().to_string(),
            generation: done.generation,
        }))
    }
}
