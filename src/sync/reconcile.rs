//! Periodic repairs of what webhooks missed.
//!
//! - **Catch-up** lists users by `-updated_at` (offset paging: Clerk's cursor needs `created_at`
//!   order, and its list has no `updated_at` filter) down to the watermark and applies them; the
//!   writer ignores what the index already has. The next watermark is this run's start minus an
//!   overlap, so updates made during a run are listed again next time rather than missed. Then
//!   it lists sign-ins and activity by their own times (see [`ActivityWalk`]), and fetches again
//!   by id the users a listing could not parse. When the updated users go deeper than the
//!   offset cap (Clerk's large offsets get slow and time out), it stops there and runs a sweep.
//! - **Sweep** (see [`sweep`]) walks every Clerk user and compares it with the index: deletes
//!   what Clerk no longer has, applies what the index lacks or holds in an older state. A
//!   finished sweep moves the catch-up watermarks to its start: everything before is repaired.
//! - Organizations and memberships follow the users in both: a catch-up lists those created
//!   since its watermark (see [`super::org_catch_up`]), a sweep compares them all (see
//!   [`super::org_walk`]).
//!
//! Both share the client's rate limiter with everything else and run one at a time. In cluster
//! mode only the sync lease holder runs them, into the change log (see [`ChangeDestination`]).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;

use super::activity::ActivityWalk;
use super::destination::ChangeDestination;
use super::org_catch_up::catch_up_organizations;
use super::org_walk::{OrgWalk, walk_organizations};
use super::partitions::{WalkPlan, note_rejected};
use super::state::{ReconcileRun, SyncState};
use super::sweep::sweep;
use crate::change::{Change, ChangeSource, UserChange};
use crate::clerk::{ActivityField, ClerkApiError, ClerkClient};
use crate::clock::now_ms;
use crate::error::Error;
use crate::user::{User, UserVersion};

/// Unreadable users fetched again by id per catch-up (the rest wait for the next one).
const REFETCH_PER_CATCH_UP: usize = 100;

/// Updates made up to this long before a catch-up started are listed again by the next one.
const WATERMARK_OVERLAP_MS: i64 = 60_000;

/// When the periodic runs happen.
#[derive(Debug, Clone, Copy)]
pub struct ReconcileSchedule {
    pub catch_up_every: Duration,
    pub sweep_every: Duration,
}

impl Default for ReconcileSchedule {
    fn default() -> Self {
        ReconcileSchedule {
            catch_up_every: Duration::from_secs(5 * 60),
            sweep_every: Duration::from_secs(6 * 3600),
        }
    }
}

/// Finished and failed runs since start, for metrics.
#[derive(Debug, Default)]
pub struct ReconcileStats {
    pub catch_ups: AtomicU64,
    pub catch_up_failures: AtomicU64,
    pub sweeps: AtomicU64,
    pub sweep_failures: AtomicU64,
}

impl ReconcileStats {
    fn count<T, E>(&self, result: &Result<T, E>, done: &AtomicU64, failed: &AtomicU64) {
        let counter = if result.is_ok() { done } else { failed };
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// Runs catch-ups and sweeps, on a schedule or on demand.
pub struct Reconciler {
    clerk: ClerkClient,
    destination: ChangeDestination,
    plan: WalkPlan,
    /// The deepest offset of the `-updated_at` listing; deeper, a sweep takes over.
    max_offset: u64,
    /// One run at a time; holds nothing but the turn.
    turn: Mutex<()>,
    pub stats: Arc<ReconcileStats>,
}

impl Reconciler {
    pub fn new(
        clerk: ClerkClient,
        destination: ChangeDestination,
        plan: WalkPlan,
        max_offset: u64,
    ) -> Self {
        Reconciler {
            clerk,
            destination,
            plan,
            max_offset,
            turn: Mutex::new(()),
            stats: Arc::default(),
        }
    }

    /// Lists users updated since the watermark and applies them.
    #[tracing::instrument(name = "reconcile.catch_up", skip_all, err(Display))]
    pub async fn catch_up(&self) -> Result<ReconcileRun, Error> {
        let result = self.run_catch_up().await;
        let stats = &self.stats;
        stats.count(&result, &stats.catch_ups, &stats.catch_up_failures);
        result
    }

    async fn run_catch_up(&self) -> Result<ReconcileRun, Error> {
        let _turn = self.turn.lock().await;
        self.destination.check_copies_from_clerk().await?;
        let mut state = self.destination.state();
        let started_at_ms = now_ms();
        let watermark = watermark_of(&state);
        let mut run = ReconcileRun {
            started_at_ms,
            ..ReconcileRun::default()
        };
        let page_size = self.plan.page_size;
        let mut offset = 0;
        let too_deep = loop {
            if offset >= self.max_offset {
                break true;
            }
            let mut page = self
                .clerk
                .list_users_recently_updated(offset, page_size)
                .await?;
            let len = page.len();
            offset += len as u64;
            run.users_listed += len as u64;
            note_rejected(&mut state, std::mem::take(&mut page.rejected));
            let reached_watermark = page.users.iter().any(|u| u.updated_at < watermark);
            let changes: Vec<Change> = page
                .users
                .into_iter()
                .filter(|u| u.updated_at >= watermark)
                .map(|user| upsert(user).into())
                .collect();
            run.upserts += changes.len() as u64;
            if !changes.is_empty() {
                self.destination.queue(changes, None).await?;
            }
            if reached_watermark || len < page_size as usize {
                break false;
            }
        };
        // Sign-ins and activity change no `updated_at`: they are listed by their own times.
        // What this run queued is not committed yet, so it is remembered here.
        let mut queued = HashMap::new();
        for field in [ActivityField::SignIn, ActivityField::Active] {
            let since = activity_watermark_of(&state, field);
            let (listed, applied, rejected) =
                self.catch_up_activity(field, since, &mut queued).await?;
            note_rejected(&mut state, rejected);
            run.users_listed += listed;
            run.upserts += applied;
        }
        run.upserts += self.refetch_unreadable(&mut state).await?;
        if organizations_held(&state) {
            let since = match state.reconcile.watermark_org_created_ms {
                0 => watermark,
                stored => stored,
            };
            let orgs =
                catch_up_organizations(&self.clerk, &self.destination, since, self.max_offset)
                    .await?;
            run.organizations_listed = orgs.organizations_listed;
            run.memberships_listed = orgs.memberships_listed;
            run.upserts += orgs.upserts;
            if !orgs.too_deep {
                state.reconcile.watermark_org_created_ms = started_at_ms - WATERMARK_OVERLAP_MS;
            }
        }
        run.finished_at_ms = now_ms();
        let next = started_at_ms - WATERMARK_OVERLAP_MS;
        if !too_deep {
            state.reconcile.watermark_updated_at_ms = next;
        }
        state.reconcile.watermark_sign_in_ms = next;
        state.reconcile.watermark_active_ms = next;
        state.reconcile.last_catch_up = Some(run.clone());
        self.destination.record(Vec::new(), Some(&state)).await?;
        tracing::info!(
            listed = run.users_listed,
            applied = run.upserts,
            "catch-up done"
        );
        if too_deep {
            tracing::warn!(
                max_offset = self.max_offset,
                "more users were updated since the last catch-up than it lists by offset; running a sweep to repair the rest"
            );
            let swept = self.sweep_in_turn().await;
            self.stats
                .count(&swept, &self.stats.sweeps, &self.stats.sweep_failures);
            swept?;
        }
        Ok(run)
    }

    /// Fetches again by id (a few per run) the users a listing could not parse; those that
    /// still do not parse wait for the next run, those Clerk no longer has are dropped (the
    /// sweep deletes them).
    async fn refetch_unreadable(&self, state: &mut SyncState) -> Result<u64, Error> {
        let take = state.unreadable.len().min(REFETCH_PER_CATCH_UP);
        let ids: Vec<String> = state.unreadable.drain(..take).collect();
        let mut changes: Vec<Change> = Vec::new();
        let mut still = Vec::new();
        for (i, id) in ids.iter().enumerate() {
            match self.clerk.get_user(id).await {
                Ok(Some(user)) => changes.push(upsert(user).into()),
                Ok(None) => {}
                Err(error @ ClerkApiError::Decode { .. }) => {
                    tracing::warn!(user_id = %id, %error, "a clerk user still cannot be parsed; trying again at the next catch-up");
                    still.push(id.clone());
                }
                Err(error) => {
                    still.extend(ids[i..].iter().cloned());
                    state.unreadable.extend(still);
                    return Err(error.into());
                }
            }
        }
        state.unreadable.extend(still);
        let applied = changes.len() as u64;
        if !changes.is_empty() {
            self.destination.queue(changes, None).await?;
        }
        Ok(applied)
    }

    /// Lists the users whose `field` is after `since` and applies those newer than both the
    /// index's copy and what this run already `queued`; returns how many were listed and
    /// applied, and the listed users that did not parse.
    async fn catch_up_activity(
        &self,
        field: ActivityField,
        since: i64,
        queued: &mut HashMap<String, UserVersion>,
    ) -> Result<(u64, u64, Vec<crate::clerk::RejectedUser>), Error> {
        let mut walk = ActivityWalk::new(field, since, self.plan.page_size);
        let mut applied = 0;
        while let Some(users) = walk.next(&self.clerk).await? {
            let users = users
                .into_iter()
                .filter(|u| queued.get(&u.id).is_none_or(|held| *held < u.version()));
            let changes: Vec<Change> = newer_than_indexed(&self.destination, users.collect())
                .await?
                .into_iter()
                .map(|user| {
                    queued.insert(user.id.clone(), user.version());
                    upsert(user).into()
                })
                .collect();
            applied += changes.len() as u64;
            if !changes.is_empty() {
                self.destination.queue(changes, None).await?;
            }
        }
        Ok((walk.listed, applied, walk.rejected))
    }

    /// Compares every Clerk user with the index; resumes an interrupted sweep.
    #[tracing::instrument(name = "reconcile.sweep", skip_all, err(Display))]
    pub async fn sweep(&self) -> Result<ReconcileRun, Error> {
        let result = self.run_sweep().await;
        let stats = &self.stats;
        stats.count(&result, &stats.sweeps, &stats.sweep_failures);
        result
    }

    async fn run_sweep(&self) -> Result<ReconcileRun, Error> {
        let _turn = self.turn.lock().await;
        self.sweep_in_turn().await
    }

    /// A sweep, by a caller holding the turn.
    async fn sweep_in_turn(&self) -> Result<ReconcileRun, Error> {
        self.destination.check_copies_from_clerk().await?;
        let state = self.destination.state();
        // Users swept before a restart: only their organizations' part is left to resume.
        let users_swept = state.reconcile.org_sweep.as_ref().map(|o| o.started_at_ms);
        let (mut state, mut run) = match users_swept {
            Some(started_at_ms) => (
                state,
                ReconcileRun {
                    started_at_ms,
                    ..ReconcileRun::default()
                },
            ),
            None => sweep(&self.clerk, &self.destination, self.plan).await?,
        };
        if organizations_held(&state) {
            walk_organizations(&self.clerk, &self.destination, &mut state, OrgWalk::Sweep).await?;
            let orgs = state.reconcile.org_sweep.take().unwrap_or_default();
            run.organizations_listed = orgs.organizations_seen;
            run.memberships_listed = orgs.memberships_seen;
            run.organizations_relisted = orgs.organizations_relisted;
            run.upserts += orgs.upserts;
            run.deletes += orgs.deletes;
            run.finished_at_ms = now_ms();
            let repaired = orgs.started_at_ms - WATERMARK_OVERLAP_MS;
            let watermark = &mut state.reconcile.watermark_org_created_ms;
            *watermark = (*watermark).max(repaired);
        }
        let reconcile = &mut state.reconcile;
        if users_swept.is_none() {
            // Every user listed by the sweep is now as new in the index as in Clerk:
            // catch-ups need not look further back than its start.
            let repaired = run.started_at_ms - WATERMARK_OVERLAP_MS;
            for watermark in [
                &mut reconcile.watermark_updated_at_ms,
                &mut reconcile.watermark_sign_in_ms,
                &mut reconcile.watermark_active_ms,
            ] {
                *watermark = (*watermark).max(repaired);
            }
        }
        reconcile.last_sweep = Some(run.clone());
        self.destination.record(Vec::new(), Some(&state)).await?;
        tracing::info!(
            listed = run.users_listed,
            deleted = run.deletes,
            applied = run.upserts,
            "sweep done"
        );
        Ok(run)
    }

    /// Runs catch-ups and sweeps on `schedule` until cancelled. A sweep interrupted by a restart
    /// is resumed first.
    pub async fn run_periodically(
        self: Arc<Self>,
        schedule: ReconcileSchedule,
        cancel: CancellationToken,
    ) {
        let mut state = self.destination.state();
        if state.reconcile.watermark_updated_at_ms == 0 {
            state.reconcile.watermark_updated_at_ms = watermark_of(&state);
            if let Err(error) = self.destination.record(Vec::new(), Some(&state)).await {
                tracing::error!(%error, "could not store the first reconcile watermark");
            }
        }
        // A run is raced against shutdown: dropping it mid-way is safe, since everything it
        // applied went through the writer with its cursor, and a sweep resumes from there.
        let reconcile = self.destination.state().reconcile;
        if reconcile.sweep.is_some() || reconcile.org_sweep.is_some() {
            tokio::select! {
                _ = cancel.cancelled() => return,
                result = self.sweep() => if let Err(error) = result {
                    tracing::error!(%error, "resumed sweep failed");
                }
            }
        }
        let mut catch_up = tokio::time::interval(schedule.catch_up_every);
        let mut sweep = tokio::time::interval(schedule.sweep_every);
        catch_up.tick().await;
        sweep.tick().await;
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = catch_up.tick() => {
                    tokio::select! {
                        _ = cancel.cancelled() => return,
                        result = self.catch_up() => if let Err(error) = result {
                            tracing::error!(%error, "catch-up failed; retrying at the next interval");
                        }
                    }
                }
                _ = sweep.tick() => {
                    tokio::select! {
                        _ = cancel.cancelled() => return,
                        result = self.sweep() => if let Err(error) = result {
                            tracing::error!(%error, "sweep failed; it resumes at the next interval");
                        }
                    }
                }
            }
        }
    }
}

fn upsert(user: User) -> UserChange {
    UserChange::Upsert {
        user: Arc::new(user),
        source: ChangeSource::Reconcile,
    }
}

/// The users of `users` the index does not hold, or holds in an older state.
async fn newer_than_indexed(
    destination: &ChangeDestination,
    users: Vec<User>,
) -> Result<Vec<User>, Error> {
    let snapshot = destination.local_index().snapshot();
    tokio::task::spawn_blocking(move || {
        let mut newer = Vec::with_capacity(users.len());
        for user in users {
            match snapshot.version_of(&user.id)? {
                Some(held) if held >= user.version() => {}
                _ => newer.push(user),
            }
        }
        Ok(newer)
    })
    .await
    .map_err(|e| Error::Internal(e.to_string()))?
}

/// Whether the backfill copied organizations (an instance without them has none to repair).
fn organizations_held(state: &SyncState) -> bool {
    state.organizations.complete && !state.organizations.unavailable
}

/// Where the sign-in or activity catch-up starts: its stored watermark, or the one of the
/// `updated_at` catch-up before it has stored its own. Activity is kept to the day by Clerk, so
/// its walk starts at the beginning of the watermark's day.
fn activity_watermark_of(state: &SyncState, field: ActivityField) -> i64 {
    const DAY_MS: i64 = 86_400_000;
    let stored = match field {
        ActivityField::SignIn => state.reconcile.watermark_sign_in_ms,
        ActivityField::Active => state.reconcile.watermark_active_ms,
    };
    let watermark = if stored == 0 {
        watermark_of(state)
    } else {
        stored
    };
    match field {
        ActivityField::SignIn => watermark,
        ActivityField::Active => watermark - watermark.rem_euclid(DAY_MS) - 1,
    }
}

/// Where a catch-up stops: the stored watermark, or, before the first catch-up stored one, when
/// the backfill began (a catch-up triggered right after the backfill must not list everyone).
fn watermark_of(state: &SyncState) -> i64 {
    match state.reconcile.watermark_updated_at_ms {
        0 => state.backfill.started_at_ms.unwrap_or(0) - WATERMARK_OVERLAP_MS,
        stored => stored,
    }
}
