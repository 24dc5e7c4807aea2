//! Walks every Clerk user as several [`WalkCursor`]s over disjoint ranges of creation times at
//! once, so a backfill or sweep is bound by Clerk's rate limit rather than by its latency.
//!
//! The ranges split adaptively: the first walk covers everything; whenever a worker is free,
//! it takes the walk with the most users left (estimated from how densely that walk found users
//! so far, so a skewed population stays balanced) and splits the rest of its range in half.
//! Every walk's cursor lives in the sync checkpoint, and each page is handed on with the whole
//! state under one lock, so whichever checkpoint lands last holds every walk's cursor as of the
//! pages before it: a restart resumes every walk. The client's rate limiter keeps the total
//! under Clerk's limit.

use std::future::Future;

use futures_util::future::try_join_all;
use tokio::sync::Mutex;
use tracing::Instrument;

use super::state::SyncState;
use super::walk::{Partitions, WalkPage};
use crate::clerk::{ClerkApiError, ClerkClient};
use crate::error::Error;

/// What a partitioned walk does with each page. It runs with the state locked, so the changes
/// it hands on and the checkpoint it hands on with them are in step across walks.
pub trait PageSink: Sync {
    /// The name of each page's span (`backfill.page`, `sweep.page`), under which its Clerk
    /// request is traced.
    const SPAN: &'static str;

    /// The walks inside the state.
    fn partitions(state: &mut SyncState) -> &mut Partitions;

    /// Takes one page of walk `walk` (whose cursor in `state` is already past it).
    fn page(
        &self,
        state: &mut SyncState,
        walk: usize,
        page: WalkPage,
    ) -> impl Future<Output = Result<(), Error>> + Send;
}

/// How to run a partitioned walk.
#[derive(Debug, Clone, Copy)]
pub struct WalkPlan {
    pub page_size: u32,
    /// Walks in flight at once.
    pub concurrency: usize,
}

struct Shared {
    state: SyncState,
    busy: Vec<bool>,
}

/// Walks until every partition is done, handing each page to `sink`. `state` holds the
/// partitions (begun, or resumed from a checkpoint) and, on return, where they stand, which is
/// also the last checkpoint handed on, even after an error.
pub async fn walk_all<S: PageSink>(
    clerk: &ClerkClient,
    plan: WalkPlan,
    sink: &S,
    state: &mut SyncState,
) -> Result<(), Error> {
    let walks = S::partitions(state).walks.len();
    let shared = Mutex::new(Shared {
        state: std::mem::take(state),
        busy: vec![false; walks],
    });
    let workers = (0..plan.concurrency.max(1)).map(|worker| {
        let span = tracing::info_span!("walk.worker", worker);
        work(clerk, plan, sink, &shared).instrument(span)
    });
    let result = try_join_all(workers).await.map(|_| ());
    *state = shared.into_inner().state;
    result
}

/// One worker: claims a walk (or splits one), walks it to its end, and again.
async fn work<S: PageSink>(
    clerk: &ClerkClient,
    plan: WalkPlan,
    sink: &S,
    shared: &Mutex<Shared>,
) -> Result<(), Error> {
    let limit = plan.page_size as usize;
    loop {
        let (walk, mut request) = {
            let mut shared = shared.lock().await;
            let Some(walk) = claim::<S>(&mut shared, plan.page_size) else {
                return Ok(());
            };
            (walk, S::partitions(&mut shared.state).walks[walk].request())
        };
        loop {
            let span = tracing::info_span!("walk.page", otel.name = S::SPAN, walk);
            let listed = clerk
                .list_users_created(&request, plan.page_size)
                .instrument(span.clone())
                .await;
            let mut shared = shared.lock().await;
            let Shared { state, busy } = &mut *shared;
            let cursor = &mut S::partitions(state).walks[walk];
            let page = match listed {
                Ok(page) => page,
                Err(error) if cursor_refused(&error) && cursor.cursor_refused() => {
                    tracing::warn!(%error, "clerk refused a cursor (its user may be deleted); resuming from its creation time");
                    request = cursor.request();
                    continue;
                }
                Err(error) => {
                    busy[walk] = false;
                    return Err(Error::Clerk(error));
                }
            };
            let page = match cursor.advance(page, limit) {
                Ok(page) => page,
                Err(stuck) => {
                    busy[walk] = false;
                    return Err(Error::Internal(stuck.to_string()));
                }
            };
            let done = cursor.done;
            request = cursor.request();
            let handed = sink.page(state, walk, page).instrument(span).await;
            if done || handed.is_err() {
                busy[walk] = false;
            }
            handed?;
            if done {
                break;
            }
        }
    }
}

/// A 4xx that may be Clerk's answer to a `starting_after` whose user no longer exists.
fn cursor_refused(error: &ClerkApiError) -> bool {
    matches!(error.status(), Some(400 | 404 | 422))
}

/// The walk this worker takes next: one nobody walks, or the second half of the busiest one.
fn claim<S: PageSink>(shared: &mut Shared, page_size: u32) -> Option<usize> {
    let Shared { state, busy } = shared;
    let partitions = S::partitions(state);
    busy.resize(partitions.walks.len(), false);
    if let Some(free) = (0..busy.len()).find(|&i| !busy[i] && !partitions.walks[i].done) {
        busy[free] = true;
        return Some(free);
    }
    let (newest, density) = (partitions.newest_ms, partitions.density);
    let (busiest, remaining) = partitions
        .walks
        .iter()
        .enumerate()
        .filter(|(i, w)| busy[*i] && !w.done)
        .map(|(i, w)| (i, w.remaining_estimate(density, newest)))
        .max_by(|a, b| a.1.total_cmp(&b.1))?;
    // Splitting a walk with little left costs more requests than it saves.
    if remaining < 2.0 * f64::from(page_size) {
        return None;
    }
    let at = partitions.walks[busiest].split_point(newest)?;
    let rest = partitions.walks[busiest].split_at(at);
    tracing::debug!(
        split = busiest,
        at,
        remaining = remaining as u64,
        "splitting a walk"
    );
    partitions.walks.push(rest);
    busy.push(true);
    Some(busy.len() - 1)
}

/// Logs listed users that could not be parsed (their id and what is wrong, never a value) and
/// keeps their ids to fetch again by id.
pub(super) fn note_rejected(state: &mut SyncState, rejected: Vec<crate::clerk::RejectedUser>) {
    for user in &rejected {
        tracing::warn!(user_id = user.id.as_deref().unwrap_or("(none)"), error = %user.error, "a clerk user could not be parsed; skipped, and fetched again by id at the next catch-up");
    }
    state.note_unreadable(rejected.into_iter().filter_map(|r| r.id));
}
