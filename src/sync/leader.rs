//! Cluster mode: exactly one replica at a time copies from Clerk (backfill, then the periodic
//! reconciles), the one holding the sync lease. Every replica runs [`SyncLease::run`]: it waits
//! for the lease, and while it holds it renews it every third of its TTL and runs backfill and
//! reconcile into the change log. The term ends when the lease cannot be renewed in time (so a
//! partitioned holder stops before the lease can expire under it), when another replica turns
//! out to hold it, or at shutdown, which releases it so a successor need not wait for the TTL.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::backfill::Backfill;
use super::log_destination::LogDestination;
use super::reconcile::{ReconcileSchedule, Reconciler};
use crate::cluster::{Coordination, LeaseRevision};
use crate::destinations::Destinations;
use crate::segments::Segments;

/// The lease and what its holder does.
pub struct SyncLease {
    pub destination: Arc<LogDestination>,
    pub backfill: Backfill,
    pub reconciler: Arc<Reconciler>,
    pub schedule: ReconcileSchedule,
    /// Whose time-driven segments the holder ticks, through the log.
    pub segments: Segments,
    /// The destinations the holder delivers.
    pub destinations: Option<Destinations>,
}

impl SyncLease {
    /// Takes part in the lease until `cancel` fires.
    pub async fn run(self, cancel: CancellationToken) {
        let coordination = self.destination.coordination().clone();
        let every = coordination.ttl() / 3;
        loop {
            let Some(held) = wait_for_lease(&coordination, every, &cancel).await else {
                return;
            };
            tracing::info!(
                replica = coordination.replica_id(),
                "took the sync lease: this replica copies from Clerk"
            );
            let term = cancel.child_token();
            let ticks =
                (self.segments.clone()).publish_ticks(self.destination.log().clone(), term.clone());
            let deliveries = async {
                if let Some(destinations) = &self.destinations {
                    destinations.deliver_during(term.clone()).await;
                }
            };
            let work = async {
                if let Err(error) = self.destination.begin(term.clone()).await {
                    tracing::error!(%error, "cannot read the sync checkpoint; giving the lease up");
                    term.cancel();
                    return;
                }
                if self.backfill.run(term.clone()).await {
                    self.reconciler
                        .clone()
                        .run_periodically(self.schedule, term.clone())
                        .await;
                }
            };
            let (still_held, (), (), ()) = tokio::join!(
                keep_lease(&coordination, held, &term),
                work,
                ticks,
                deliveries
            );
            self.destination.end();
            match still_held {
                Some(held) if cancel.is_cancelled() => {
                    match coordination.release(held).await {
                        Ok(()) => tracing::info!("released the sync lease"),
                        Err(error) => {
                            tracing::warn!(%error, "could not release the sync lease; it expires by itself")
                        }
                    }
                    return;
                }
                _ if cancel.is_cancelled() => return,
                Some(held) => {
                    // The work ended on its own (its checkpoint was overwritten): let the lease go.
                    let _ = coordination.release(held).await;
                }
                None => {}
            }
            tracing::warn!("this replica no longer holds the sync lease");
        }
    }
}

/// Waits until this replica holds the lease; `None` when cancelled first.
async fn wait_for_lease(
    coordination: &Coordination,
    every: Duration,
    cancel: &CancellationToken,
) -> Option<LeaseRevision> {
    let mut failing = false;
    loop {
        match coordination.acquire().await {
            Ok(Some(held)) => return Some(held),
            Ok(None) => failing = false,
            Err(error) if !failing => {
                failing = true;
                tracing::warn!(%error, "cannot reach the sync lease; retrying");
            }
            Err(_) => {}
        }
        tokio::select! {
            _ = cancel.cancelled() => return None,
            _ = tokio::time::sleep(every) => {}
        }
    }
}

/// Renews the lease every third of its TTL until `term` ends. Ends the term itself when the
/// lease is lost, or when two thirds of the TTL passed without a renewal (it may expire soon
/// and another replica take it: stopping first keeps two replicas from copying at once).
/// Returns the lease if it is still held.
async fn keep_lease(
    coordination: &Coordination,
    mut held: LeaseRevision,
    term: &CancellationToken,
) -> Option<LeaseRevision> {
    let ttl = coordination.ttl();
    let every = ttl / 3;
    let mut renewed = Instant::now();
    loop {
        tokio::select! {
            _ = term.cancelled() => return Some(held),
            _ = tokio::time::sleep(every) => {}
        }
        match coordination.renew(held).await {
            Ok(Some(revision)) => {
                held = revision;
                renewed = Instant::now();
            }
            Ok(None) => {
                tracing::warn!("another replica holds the sync lease now");
                term.cancel();
                return None;
            }
            Err(error) if renewed.elapsed() >= ttl - every => {
                tracing::warn!(%error, "could not renew the sync lease in time; stopping sync work");
                term.cancel();
                return None;
            }
            Err(error) => tracing::warn!(%error, "could not renew the sync lease; retrying"),
        }
    }
}
