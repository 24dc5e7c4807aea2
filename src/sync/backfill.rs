//! The initial copy: every Clerk user, oldest first, 500 per page, with `starting_after` cursor
//! paging (offset paging if Clerk refuses the cursor). Pages stream into the
//! [`ChangeDestination`] without waiting for each commit; each carries the cursor after it, so whatever commit lands
//! last holds a cursor consistent with the data, and a restart resumes there. Users created
//! during the walk are appended at the end of the ascending order, so the walk sees them too.
//! In cluster mode the lease holder runs it into the change log, with the cursor in the shared
//! checkpoint, so a new holder resumes where the last one stopped.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::destination::ChangeDestination;
use super::progress::BackfillProgress;
use super::state::SyncState;
use crate::change::{Change, ChangeSource, UserChange};
use crate::clerk::{ClerkApiError, ClerkClient, PageCursor};
use crate::clock::now_ms;
use crate::error::Error;

/// Runs the backfill to completion.
pub struct Backfill {
    pub clerk: ClerkClient,
    pub destination: ChangeDestination,
    pub progress: Arc<BackfillProgress>,
    pub page_size: u32,
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
            tracing::info!(users_seen = state.backfill.users_seen, after = ?state.backfill.last_user_id, "resuming backfill from the checkpoint");
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
                        tracing::error!(%error, "backfill page failed after retries; trying again in 10 s");
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
        loop {
            let cursor = match state.backfill.offset {
                Some(offset) => PageCursor::Offset(offset),
                None => PageCursor::After(state.backfill.last_user_id.clone()),
            };
            // One span per page: its Clerk request and its hand-over to the writer.
            let span = tracing::info_span!(
                "backfill.page",
                users_seen_before = state.backfill.users_seen as i64,
                users = tracing::field::Empty,
            );
            let listed = self
                .clerk
                .list_users_page(&cursor, self.page_size)
                .instrument(span.clone())
                .await;
            let page = match listed {
                Ok(page) => page,
                Err(error) if cursor_refused(&cursor, &error) => {
                    tracing::warn!(%error, "clerk refused cursor paging; continuing with offset paging");
                    state.backfill.offset = Some(state.backfill.users_seen);
                    continue;
                }
                Err(error) => return Err(Error::Clerk(error)),
            };
            let count = page.len as u64;
            span.record("users", count as i64);
            state.backfill.users_seen += count;
            if let Some(last) = page.users.last() {
                state.backfill.last_user_id = Some(last.id.clone());
            }
            if let Some(offset) = state.backfill.offset.as_mut() {
                *offset += count;
            }
            let last_page = count < u64::from(self.page_size);
            if last_page {
                state.backfill.complete = true;
                state.backfill.completed_at_ms = Some(now_ms());
            }
            let changes = page
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
            if last_page {
                // The last page is waited for: readiness must mean "durably in the index".
                self.destination
                    .record(changes, Some(state))
                    .instrument(span)
                    .await?;
                return Ok(());
            }
            self.destination
                .queue(changes, Some(state))
                .instrument(span)
                .await?;
        }
    }
}

/// A cursor Clerk will not accept (an old API version, or the cursor user was deleted).
fn cursor_refused(cursor: &PageCursor, error: &ClerkApiError) -> bool {
    matches!(cursor, PageCursor::After(Some(_))) && matches!(error.status(), Some(400 | 422))
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
