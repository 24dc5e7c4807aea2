//! The initial copy: every Clerk user, walked as several ranges of creation times at once (see
//! [`walk_all`]), 500 per page. Pages stream into the [`ChangeDestination`] without waiting for
//! each commit; each carries the checkpoint after it (every walk's cursor), so whatever commit
//! lands last holds cursors consistent with the data, and a restart resumes every walk. The
//! last walk has no end, so users created during the backfill are copied too.
//! Organizations and memberships are copied first (`org_walk.rs`), so each user is composed
//! with its memberships when it arrives; the backfill counts as complete after both.
//! In cluster mode the lease holder runs it into the change log, with the cursors in the shared
//! checkpoint, so a new holder resumes where the last one stopped.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::destination::ChangeDestination;
use super::org_walk::{OrgWalk, walk_organizations};
use super::partitions::{PageSink, WalkPlan, note_rejected, walk_all};
use super::progress::BackfillProgress;
use super::state::SyncState;
use super::walk::{Partitions, WalkPage};
use crate::change::{Change, ChangeSource, UserChange};
use crate::clerk::ClerkClient;
use crate::clock::now_ms;
use crate::error::Error;

/// Runs the backfill to completion.
pub struct Backfill {
    pub clerk: ClerkClient,
    pub destination: ChangeDestination,
    pub progress: Arc<BackfillProgress>,
    pub plan: WalkPlan,
}

impl Backfill {
    /// Copies every user, retrying failed pages (after the client's own retries) until it is
    /// done or `cancel` fires. Returns whether the backfill is complete; the caller decides what
    /// that makes ready.
    pub async fn run(&self, cancel: CancellationToken) -> bool {
        let mut state = self.destination.state();
        if state.backfill.complete {
            self.progress.saw(&state.backfill);
            tracing::info!(
                users = state.backfill.users_seen,
                "backfill already complete"
            );
            return true;
        }
        if state.backfill.started_at_ms.is_none() {
            state.backfill.started_at_ms = Some(now_ms());
        } else {
            let walks = &state.backfill.partitions.walks;
            tracing::info!(
                users_seen = state.backfill.users_seen,
                walks = walks.len(),
                unfinished = walks.iter().filter(|w| !w.done).count(),
                "resuming backfill from the checkpoint"
            );
        }
        let counted = tokio::select! {
            _ = cancel.cancelled() => return false,
            counted = self.clerk.count_users() => counted,
        };
        match counted {
            Ok(total) => {
                self.progress.set_total(total);
                state.backfill.users_total = total;
            }
            Err(error) => {
                tracing::warn!(%error, "could not count clerk users; progress will show no total")
            }
        }
        let reporter = tokio::spawn(report_progress(self.progress.clone(), cancel.clone()));
        let done = loop {
            tokio::select! {
                _ = cancel.cancelled() => break false,
                result = self.copy_pages(&mut state) => match result {
                    Ok(()) => break true,
                    Err(error) => {
                        tracing::error!(%error, "backfill page failed after retries; trying again in 10 s from the last checkpoint");
                        // What was handed on before the failure is in the checkpoint; what
                        // was not is listed again.
                        let (started_at_ms, total) = (state.backfill.started_at_ms, state.backfill.users_total);
                        state = self.destination.state();
                        state.backfill.started_at_ms = state.backfill.started_at_ms.or(started_at_ms);
                        state.backfill.users_total = total;
                        tokio::select! {
                            _ = cancel.cancelled() => break false,
                            _ = tokio::time::sleep(Duration::from_secs(10)) => {}
                        }
                    }
                }
            }
        };
        reporter.abort();
        if done {
            tracing::info!(users = state.backfill.users_seen, "backfill complete");
        }
        done
    }

    async fn copy_pages(&self, state: &mut SyncState) -> Result<(), Error> {
        if state.backfill.partitions.walks.is_empty() {
            state.backfill.partitions =
                Partitions::begin(&self.clerk, state.backfill.users_total).await?;
        }
        // Organizations and memberships first: each user is then indexed once, composed with
        // its memberships as it arrives, instead of once more for every membership (at 1M
        // users in 100k organizations, 233 s instead of 428 s; bench/ORG-RESULTS.md).
        // Commits by size and merges once at the end instead of level by level as the index
        // grows (`index/writer/bulk.rs`), sized by the users still to come; ready, below,
        // means merged.
        let expected = (state.backfill.users_total).saturating_sub(state.backfill.users_seen);
        (self.destination)
            .begin_bulk_load((expected > 0).then_some(expected))
            .await?;
        walk_organizations(&self.clerk, &self.destination, state, OrgWalk::Backfill).await?;
        let sink = BackfillSink {
            destination: &self.destination,
            progress: &self.progress,
        };
        walk_all(&self.clerk, self.plan, &sink, state).await?;
        self.destination.finish_bulk_load().await?;
        state.backfill.complete = true;
        state.backfill.completed_at_ms = Some(now_ms());
        // Waited for: readiness must mean "durably in the index".
        self.destination.record(Vec::new(), Some(state)).await?;
        Ok(())
    }
}

/// Hands each page to the destination with the checkpoint after it.
struct BackfillSink<'a> {
    destination: &'a ChangeDestination,
    progress: &'a BackfillProgress,
}

impl PageSink for BackfillSink<'_> {
    const SPAN: &'static str = "backfill.page";

    fn partitions(state: &mut SyncState) -> &mut Partitions {
        &mut state.backfill.partitions
    }

    async fn page(&self, state: &mut SyncState, _walk: usize, page: WalkPage) -> Result<(), Error> {
        state.backfill.users_seen += (page.users.len() + page.rejected.len()) as u64;
        note_rejected(state, page.rejected);
        let changes: Vec<Change> = page
            .users
            .into_iter()
            .map(|user| {
                Change::User(UserChange::Upsert {
                    user: Arc::new(user),
                    source: ChangeSource::Backfill,
                })
            })
            .collect();
        self.progress.page_done(state.backfill.users_seen);
        self.destination.queue(changes, Some(state)).await
    }
}

async fn report_progress(progress: Arc<BackfillProgress>, cancel: CancellationToken) {
    let started = tokio::time::Instant::now();
    let mut ticks = tokio::time::interval(Duration::from_secs(2));
    ticks.tick().await;
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = ticks.tick() => {}
        }
        let seen = progress.users_seen();
        let total = progress.users_total();
        let rate = seen as f64 / started.elapsed().as_secs_f64().max(0.001);
        tracing::info!(
            users_seen = seen,
            users_total = total,
            users_per_second = rate as u64,
            "backfill progress"
        );
    }
}
