//! Walks over Clerk's organizations and memberships (docs/ORGANIZATIONS.md, "Backfill and
//! reconcile"): the backfill's, run before the users' walks (each user is then indexed once,
//! with its memberships; readiness waits for users, organizations and memberships alike), and
//! a sweep's, run after the users' sweep. Both are the same three phases:
//!
//! 1. **Organizations**, by offset, oldest first (`order_by=+created_at`, so creations during
//!    the walk land at the end).
//! 2. **Memberships** of the whole instance, the same way.
//! 3. **Verify**: the organizations again; each whose `members_count` differs from the
//!    memberships the index holds for it has its members listed through
//!    `/organizations/{id}/memberships`, and what is held is made what Clerk lists.
//!
//! In the first two phases each page is compared with what the index holds in the same span of
//! `created_at` (from the previous page's last element to this page's last, or to the walk's
//! start after the last page): what Clerk listed and the index lacks or holds older is applied;
//! what the index holds and the page did not list is asked of Clerk by id (a hundred per
//! request), and deleted only when Clerk does not have it. A deletion in Clerk during the walk
//! shifts later pages left and can hide one element: held, it is found by id; not held, the
//! verify pass finds its organization's count wrong. Every page moves an offset that is
//! checkpointed with its changes, so a restart resumes the walk.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use super::destination::ChangeDestination;
use super::state::{OrgPhase, OrgWalkState, SyncState};
use crate::change::{Change, ChangeSource, MembershipChange, OrganizationChange};
use crate::clerk::{
    ClerkApiError, ClerkClient, IDS_PER_FILTER, ListPage, ORGANIZATION_PAGE_LIMIT, ParsedMembership,
};
use crate::clock::now_ms;
use crate::error::Error;
use crate::index::Snapshot;
use crate::organization::{Membership, Organization};

/// Which walk: where its state lives and what its changes say they come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OrgWalk {
    /// In `SyncState::organizations`.
    Backfill,
    /// In `ReconcileState::org_sweep`.
    Sweep,
}

impl OrgWalk {
    fn of(self, state: &mut SyncState) -> &mut OrgWalkState {
        match self {
            OrgWalk::Backfill => &mut state.organizations,
            OrgWalk::Sweep => state
                .reconcile
                .org_sweep
                .get_or_insert_with(Default::default),
        }
    }

    fn source(self) -> ChangeSource {
        match self {
            OrgWalk::Backfill => ChangeSource::Backfill,
            OrgWalk::Sweep => ChangeSource::Reconcile,
        }
    }
}

/// Whether Clerk's answer says the instance has no organizations to list: organizations not
/// enabled (Clerk answers 403 or 404 there, or 422 for an unsupported parameter). Every other
/// error is retried by the caller.
fn not_enabled(error: &ClerkApiError) -> bool {
    matches!(
        error,
        ClerkApiError::Api {
            status: 403 | 404 | 422,
            ..
        }
    )
}

/// Runs (or resumes) `walk` to its end; returns an error after the client's own retries (the
/// caller tries again from the checkpoint). Cancelled by dropping it.
pub async fn walk_organizations(
    clerk: &ClerkClient,
    destination: &ChangeDestination,
    state: &mut SyncState,
    walk: OrgWalk,
) -> Result<(), Error> {
    let limit = ORGANIZATION_PAGE_LIMIT;
    let source = walk.source();
    if walk.of(state).started_at_ms == 0 {
        walk.of(state).started_at_ms = now_ms();
    }
    while !walk.of(state).complete {
        let offset = walk.of(state).offset as usize;
        match walk.of(state).phase {
            OrgPhase::Organizations => {
                let page = match clerk.list_organizations(offset, limit).await {
                    Err(error) if offset == 0 && not_enabled(&error) => {
                        tracing::info!(%error, "clerk lists no organizations for this instance; the index holds none");
                        let w = walk.of(state);
                        w.unavailable = true;
                        w.complete = true;
                        destination.queue(Vec::new(), Some(state)).await?;
                        continue;
                    }
                    other => other?,
                };
                report_rejected(&page.rejected);
                let len = page.len;
                let snapshot = destination.snapshot().await?;
                let w = walk.of(state);
                w.organizations_seen += page.items.len() as u64;
                let last = len < limit;
                let changes =
                    compare_organizations(clerk, &snapshot, w, page, last, source).await?;
                advance(w, len, limit, OrgPhase::Memberships);
                record(destination, changes, state, last).await?;
            }
            OrgPhase::Memberships => {
                let page = clerk.list_memberships(offset, limit).await?;
                report_rejected(&page.rejected);
                let len = page.len;
                let last = len < limit;
                let snapshot = destination.snapshot().await?;
                let w = walk.of(state);
                w.memberships_seen += page.items.len() as u64;
                let changes = compare_memberships(clerk, &snapshot, w, page, last, source).await?;
                advance(w, len, limit, OrgPhase::Verify);
                record(destination, changes, state, last).await?;
            }
            OrgPhase::Verify => {
                let page = clerk.list_organizations(offset, limit).await?;
                let snapshot = destination.snapshot().await?;
                let len = page.len;
                let differing = {
                    let snapshot = snapshot.clone();
                    blocking(move || counts_differ(&snapshot, page.items)).await?
                };
                let w = walk.of(state);
                let mut changes = Vec::new();
                for organization in &differing {
                    changes.extend(relist(clerk, &snapshot, organization, w, source).await?);
                }
                w.offset += len as u64;
                if len < limit {
                    w.complete = true;
                    tracing::info!(
                        ?walk,
                        organizations = w.organizations_seen,
                        memberships = w.memberships_seen,
                        relisted = w.organizations_relisted,
                        upserts = w.upserts,
                        deletes = w.deletes,
                        "organizations walked"
                    );
                }
                destination.queue(changes, Some(state)).await?;
            }
        }
    }
    Ok(())
}

/// Queues a page's changes with the checkpoint; after a phase's last page, waits until they
/// are applied (the next phase compares with the index).
async fn record(
    destination: &ChangeDestination,
    changes: Vec<Change>,
    state: &SyncState,
    last: bool,
) -> Result<(), Error> {
    if last {
        let recorded = destination.record(changes, Some(state)).await?;
        destination.applied(recorded).await?;
    } else {
        destination.queue(changes, Some(state)).await?;
    }
    Ok(())
}

/// Moves the offset past a page of `len`; a short page ends the phase.
fn advance(w: &mut OrgWalkState, len: usize, limit: usize, next: OrgPhase) {
    if len < limit {
        w.phase = next;
        w.offset = 0;
        w.boundary_ms = 0;
        w.boundary_ids.clear();
    } else {
        w.offset += len as u64;
    }
}

fn report_rejected(rejected: &[crate::clerk::OrganizationParseError]) {
    if let Some(first) = rejected.first() {
        tracing::warn!(count = rejected.len(), error = %first, "clerk listed organizations or memberships that could not be read; they are skipped");
    }
}

/// The span of `created_at` a page covers (see the module's comment), and the ids listed in
/// it; moves the walk's boundary to the page's end.
fn span_of<'a>(
    w: &mut OrgWalkState,
    listed: impl Iterator<Item = (&'a str, i64)> + Clone,
    last: bool,
) -> (i64, i64, HashSet<String>) {
    let end = listed.clone().map(|(_, at)| at).max();
    let until = match (last, end) {
        (true, end) => w.started_at_ms.max(end.unwrap_or(0)),
        (false, end) => end.unwrap_or(w.boundary_ms),
    };
    let from = w.boundary_ms;
    let mut seen: HashSet<String> = w.boundary_ids.drain(..).collect();
    seen.extend(listed.clone().map(|(id, _)| id.to_string()));
    w.boundary_ms = until;
    w.boundary_ids = (listed.filter(|(_, at)| *at == until))
        .map(|(id, _)| id.to_string())
        .collect();
    (from, until, seen)
}

/// Whether the index needs `(updated_at, raw_json)` over what it holds (the writer's own test).
fn newer(held: Option<(i64, &str)>, updated_at: i64, raw_json: &str) -> bool {
    held.is_none_or(|(at, json)| at < updated_at || (at == updated_at && json != raw_json))
}

async fn compare_organizations(
    clerk: &ClerkClient,
    snapshot: &Arc<Snapshot>,
    w: &mut OrgWalkState,
    page: ListPage<Organization>,
    last: bool,
    source: ChangeSource,
) -> Result<Vec<Change>, Error> {
    let listed = page.items.iter().map(|o| (o.id.as_str(), o.created_at));
    let (from, until, seen) = span_of(w, listed, last);
    let (mut found, missing) = {
        let snapshot = snapshot.clone();
        blocking(move || {
            let missing: Vec<String> = (snapshot.organizations_created_between(from, until)?)
                .into_iter()
                .filter(|held| !seen.contains(&held.id))
                .map(|held| held.id)
                .collect();
            Ok((newer_organizations(&snapshot, page.items)?, missing))
        })
        .await?
    };
    let mut deleted = Vec::new();
    for ids in missing.chunks(IDS_PER_FILTER) {
        let answer = clerk.organizations_with_ids(ids).await?;
        let complete = answer.rejected.is_empty();
        let present: HashSet<&str> = answer.items.iter().map(|o| o.id.as_str()).collect();
        if complete {
            deleted.extend(
                ids.iter()
                    .filter(|id| !present.contains(id.as_str()))
                    .cloned(),
            );
        }
        let snapshot = snapshot.clone();
        found.extend(blocking(move || newer_organizations(&snapshot, answer.items)).await?);
    }
    w.upserts += found.len() as u64;
    w.deletes += deleted.len() as u64;
    let deleted_at_ms = now_ms();
    let mut changes: Vec<Change> = (deleted.into_iter())
        .map(|organization_id| {
            Change::Organization(OrganizationChange::Delete {
                organization_id,
                deleted_at_ms,
                source,
            })
        })
        .collect();
    changes.extend(found.into_iter().map(|organization| {
        Change::Organization(OrganizationChange::Upsert {
            organization: Arc::new(organization),
            source,
        })
    }));
    Ok(changes)
}

pub(super) fn newer_organizations(
    snapshot: &Snapshot,
    listed: Vec<Organization>,
) -> Result<Vec<Organization>, Error> {
    let mut newer_ones = Vec::with_capacity(listed.len());
    for organization in listed {
        let held = snapshot.organization(&organization.id)?;
        let held = held.as_ref().map(|h| (h.updated_at, &*h.raw_json));
        if newer(held, organization.updated_at, &organization.raw_json) {
            newer_ones.push(organization);
        }
    }
    Ok(newer_ones)
}

async fn compare_memberships(
    clerk: &ClerkClient,
    snapshot: &Arc<Snapshot>,
    w: &mut OrgWalkState,
    page: ListPage<ParsedMembership>,
    last: bool,
    source: ChangeSource,
) -> Result<Vec<Change>, Error> {
    let listed = (page.items.iter()).map(|p| (p.membership.id.as_str(), p.membership.created_at));
    let (from, until, seen) = span_of(w, listed, last);
    let (mut found, missing) = {
        let snapshot = snapshot.clone();
        blocking(move || {
            let missing: Vec<Membership> = (snapshot.memberships_created_between(from, until)?)
                .into_iter()
                .filter(|held| !seen.contains(&held.id))
                .collect();
            Ok((newer_memberships(&snapshot, page.items)?, missing))
        })
        .await?
    };
    // Asked of Clerk by organization, a hundred users at a time.
    let mut by_org: BTreeMap<String, Vec<Membership>> = BTreeMap::new();
    for held in missing {
        by_org
            .entry(held.organization_id.clone())
            .or_default()
            .push(held);
    }
    let mut deleted = Vec::new();
    for (organization_id, held) in by_org {
        for held in held.chunks(IDS_PER_FILTER) {
            let users: Vec<String> = held.iter().map(|m| m.user_id.clone()).collect();
            let answer = clerk
                .organization_memberships_of(&organization_id, &users)
                .await?;
            let present: HashSet<&str> = (answer.items.iter())
                .map(|p| p.membership.id.as_str())
                .collect();
            if answer.rejected.is_empty() {
                deleted.extend(
                    (held.iter())
                        .filter(|m| !present.contains(m.id.as_str()))
                        .cloned(),
                );
            }
            let snapshot = snapshot.clone();
            found.extend(blocking(move || newer_memberships(&snapshot, answer.items)).await?);
        }
    }
    w.upserts += found.len() as u64;
    w.deletes += deleted.len() as u64;
    Ok(membership_changes(deleted, found, source))
}

pub(super) fn newer_memberships(
    snapshot: &Snapshot,
    listed: Vec<ParsedMembership>,
) -> Result<Vec<ParsedMembership>, Error> {
    let mut newer_ones = Vec::with_capacity(listed.len());
    for parsed in listed {
        let held = snapshot.membership(&parsed.membership.id)?;
        let held = held.as_ref().map(|h| (h.updated_at, &*h.raw_json));
        let membership = &parsed.membership;
        if newer(held, membership.updated_at, &membership.raw_json) {
            newer_ones.push(parsed);
        }
    }
    Ok(newer_ones)
}

/// Deletions of `deleted`, then upserts of `found` (each with its organization).
pub(super) fn membership_changes(
    deleted: Vec<Membership>,
    found: Vec<ParsedMembership>,
    source: ChangeSource,
) -> Vec<Change> {
    let deleted_at_ms = now_ms();
    let mut changes: Vec<Change> = (deleted.into_iter())
        .map(|membership| {
            Change::Membership(MembershipChange::Delete {
                membership: Arc::new(membership),
                deleted_at_ms,
                source,
            })
        })
        .collect();
    changes.extend(found.into_iter().map(|parsed| {
        Change::Membership(MembershipChange::Upsert {
            membership: Arc::new(parsed.membership),
            organization: Some(Arc::new(parsed.organization)),
            source,
        })
    }));
    changes
}

/// The organizations of `listed` whose `members_count` differs from the memberships the index
/// holds for them (counted from postings: no membership is read).
fn counts_differ(
    snapshot: &Snapshot,
    listed: Vec<Organization>,
) -> Result<Vec<Organization>, Error> {
    let mut differing = Vec::new();
    for organization in listed {
        let Some(expected) = organization.members_count else {
            continue;
        };
        if snapshot.membership_count_in(&organization.id)? as i64 != expected {
            differing.push(organization);
        }
    }
    Ok(differing)
}

/// The changes that make the memberships held for `organization` what Clerk lists.
async fn relist(
    clerk: &ClerkClient,
    snapshot: &Snapshot,
    organization: &Organization,
    w: &mut OrgWalkState,
    source: ChangeSource,
) -> Result<Vec<Change>, Error> {
    let held = snapshot.memberships_in(&organization.id)?;
    w.organizations_relisted += 1;
    let limit = ORGANIZATION_PAGE_LIMIT;
    let mut listed = Vec::new();
    let mut offset = 0;
    let mut complete = true;
    loop {
        let page = clerk
            .list_organization_memberships(&organization.id, offset, limit)
            .await?;
        report_rejected(&page.rejected);
        complete &= page.rejected.is_empty();
        offset += page.len;
        listed.extend(page.items);
        if page.len < limit {
            break;
        }
    }
    let ids: HashSet<String> = (listed.iter()).map(|p| p.membership.id.clone()).collect();
    // A member Clerk listed but that did not parse is not known to be gone.
    let gone: Vec<Membership> = (held.into_iter())
        .filter(|membership| complete && !ids.contains(&membership.id))
        .collect();
    let listed = newer_memberships(snapshot, listed)?;
    w.deletes += gone.len() as u64;
    w.upserts += listed.len() as u64;
    Ok(membership_changes(gone, listed, source))
}

/// Index reads off the async threads.
pub(super) async fn blocking<T: Send + 'static>(
    read: impl FnOnce() -> Result<T, Error> + Send + 'static,
) -> Result<T, Error> {
    tokio::task::spawn_blocking(read)
        .await
        .map_err(|e| Error::Internal(e.to_string()))?
}
