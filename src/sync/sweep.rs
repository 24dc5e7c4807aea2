//! The sweep: walks every Clerk user (in parallel ranges of creation times, see [`walk_all`])
//! and merge-joins each settled range with the index users created in it:
//! - index users Clerk no longer lists are deleted, with a tombstone that says only a listing
//!   deleted them (any later listing that shows the user brings it back);
//! - Clerk users the index does not hold, or holds in an older state, are applied (repairs
//!   what every missed delivery and catch-up left stale).
//!
//! Users created after the sweep started are never deleted by it (the walk may not have reached
//! them). The walks live in the checkpoint, so a sweep resumes after a restart.

use std::collections::HashSet;
use std::sync::Arc;

use super::destination::ChangeDestination;
use super::partitions::{PageSink, WalkPlan, note_rejected, walk_all};
use super::state::{ReconcileRun, SweepCursor, SyncState};
use super::walk::{Partitions, WalkPage};
use crate::change::{Change, ChangeSource, UserChange};
use crate::clerk::ClerkClient;
use crate::clock::now_ms;
use crate::error::Error;
use crate::user::User;

/// Runs (or resumes) one sweep to its end; the finished run is recorded in the checkpoint.
pub(super) async fn sweep(
    clerk: &ClerkClient,
    destination: &ChangeDestination,
    plan: WalkPlan,
) -> Result<(SyncState, ReconcileRun), Error> {
    let mut state = destination.state();
    let cursor = state.reconcile.sweep.get_or_insert_with(|| SweepCursor {
        started_at_ms: now_ms(),
        ..SweepCursor::default()
    });
    if cursor.partitions.walks.is_empty() {
        let indexed = destination.local_index().snapshot().freshness.user_count;
        cursor.partitions = Partitions::begin(clerk, indexed).await?;
    }
    walk_all(clerk, plan, &SweepSink { destination }, &mut state).await?;
    let cursor = state.reconcile.sweep.take().unwrap_or_default();
    let run = ReconcileRun {
        started_at_ms: cursor.started_at_ms,
        finished_at_ms: now_ms(),
        users_listed: cursor.partitions.listed(),
        upserts: cursor.upserts,
        deletes: cursor.deletes,
        ..ReconcileRun::default()
    };
    Ok((state, run))
}

struct SweepSink<'a> {
    destination: &'a ChangeDestination,
}

impl PageSink for SweepSink<'_> {
    const SPAN: &'static str = "sweep.page";

    fn partitions(state: &mut SyncState) -> &mut Partitions {
        &mut state
            .reconcile
            .sweep
            .get_or_insert_with(SweepCursor::default)
            .partitions
    }

    async fn page(&self, state: &mut SyncState, _walk: usize, page: WalkPage) -> Result<(), Error> {
        let started_at_ms = state
            .reconcile
            .sweep
            .as_ref()
            .map_or_else(now_ms, |s| s.started_at_ms);
        // Only users created before the sweep began can be judged missing.
        let from = page.settled_from.min(started_at_ms);
        let until = page
            .settled_until
            .map_or(started_at_ms, |until| until.min(started_at_ms));
        let seen: HashSet<String> = page.seen.into_iter().collect();
        note_rejected(state, page.rejected);
        let snapshot = self.destination.snapshot().await?;
        let users = page.users;
        let (gone, stale) =
            tokio::task::spawn_blocking(move || -> Result<_, crate::index::IndexError> {
                let gone: Vec<String> = if until > from {
                    snapshot
                        .ids_created_between(from, until)?
                        .into_iter()
                        .filter(|id| !seen.contains(id))
                        .collect()
                } else {
                    Vec::new()
                };
                let mut stale: Vec<User> = Vec::new();
                for user in users {
                    match snapshot.version_of(&user.id)? {
                        Some(held) if held >= user.version() => {}
                        _ => stale.push(user),
                    }
                }
                Ok((gone, stale))
            })
            .await
            .map_err(|e| Error::Internal(e.to_string()))??;
        let deleted_at_ms = now_ms();
        let mut changes: Vec<Change> = gone
            .into_iter()
            .map(|user_id| {
                Change::User(UserChange::Delete {
                    user_id,
                    deleted_at_ms,
                    source: ChangeSource::Reconcile,
                })
            })
            .collect();
        let deletes = changes.len() as u64;
        let upserts = stale.len() as u64;
        changes.extend(stale.into_iter().map(|user| {
            Change::User(UserChange::Upsert {
                user: Arc::new(user),
                source: ChangeSource::Reconcile,
            })
        }));
        if let Some(cursor) = state.reconcile.sweep.as_mut() {
            cursor.deletes += deletes;
            cursor.upserts += upserts;
        }
        self.destination.queue(changes, Some(state)).await
    }
}
