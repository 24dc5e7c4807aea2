//! The organizations' part of the backfill (docs/ORGANIZATIONS.md, "Backfill and reconcile"),
//! run after the users' walks and before the backfill counts as complete, so readiness waits
//! for users, organizations and memberships alike.
//!
//! Clerk lists organizations and the instance's memberships by offset only, oldest first
//! (`order_by=+created_at`, so creations during the walk land at the end). A deletion during
//! the walk shifts later pages left and can hide one membership, so a last pass lists the
//! organizations again and, for each whose `members_count` differs from the memberships the
//! index holds for it, lists its members through `/organizations/{id}/memberships` and
//! replaces what is held (memberships it no longer lists are deleted). Every phase moves an
//! offset that is checkpointed with its page, so a restart resumes it.

use std::collections::HashSet;
use std::sync::Arc;

use super::destination::ChangeDestination;
use super::state::{OrgPhase, SyncState};
use crate::change::{Change, ChangeSource, MembershipChange, OrganizationChange};
use crate::clerk::{ClerkApiError, ClerkClient, ORGANIZATION_PAGE_LIMIT};
use crate::clock::now_ms;
use crate::error::Error;
use crate::organization::Organization;

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

/// Copies every organization and membership; returns when the last phase is done, or an error
/// after the client's own retries (the caller tries again from the checkpoint). Cancelled by
/// dropping it.
pub async fn copy_organizations(
    clerk: &ClerkClient,
    destination: &ChangeDestination,
    state: &mut SyncState,
) -> Result<(), Error> {
    let limit = ORGANIZATION_PAGE_LIMIT;
    while !state.organizations.complete {
        let offset = state.organizations.offset as usize;
        match state.organizations.phase {
            OrgPhase::Organizations => {
                let page = match clerk.list_organizations(offset, limit).await {
                    Err(error) if offset == 0 && not_enabled(&error) => {
                        tracing::info!(%error, "clerk lists no organizations for this instance; the index holds none");
                        state.organizations.unavailable = true;
                        state.organizations.complete = true;
                        destination.queue(Vec::new(), Some(state)).await?;
                        continue;
                    }
                    other => other?,
                };
                report_rejected(&page.rejected);
                state.organizations.organizations_seen += page.items.len() as u64;
                let changes = page
                    .items
                    .into_iter()
                    .map(|organization| {
                        Change::Organization(OrganizationChange::Upsert {
                            organization: Arc::new(organization),
                            source: ChangeSource::Backfill,
                        })
                    })
                    .collect();
                advance(state, page.len, limit, OrgPhase::Memberships);
                destination.queue(changes, Some(state)).await?;
            }
            OrgPhase::Memberships => {
                let page = clerk.list_memberships(offset, limit).await?;
                report_rejected(&page.rejected);
                state.organizations.memberships_seen += page.items.len() as u64;
                let changes = page
                    .items
                    .into_iter()
                    .map(|parsed| {
                        Change::Membership(MembershipChange::Upsert {
                            membership: Arc::new(parsed.membership),
                            organization: Some(Arc::new(parsed.organization)),
                            source: ChangeSource::Backfill,
                        })
                    })
                    .collect();
                let last = page.len < limit;
                advance(state, page.len, limit, OrgPhase::Verify);
                if last {
                    // The counts of the last pass are read from the index: wait for it.
                    let recorded = destination.record(changes, Some(state)).await?;
                    destination.applied(recorded).await?;
                } else {
                    destination.queue(changes, Some(state)).await?;
                }
            }
            OrgPhase::Verify => {
                let page = clerk.list_organizations(offset, limit).await?;
                let mut changes = Vec::new();
                for organization in &page.items {
                    changes.extend(
                        relist_if_counts_differ(clerk, destination, organization, state).await?,
                    );
                }
                let done = page.len < limit;
                state.organizations.offset += page.len as u64;
                if done {
                    state.organizations.complete = true;
                    tracing::info!(
                        organizations = state.organizations.organizations_seen,
                        memberships = state.organizations.memberships_seen,
                        relisted = state.organizations.organizations_relisted,
                        "organizations copied"
                    );
                }
                destination.queue(changes, Some(state)).await?;
            }
        }
    }
    Ok(())
}

/// Moves the offset past a page of `len`; a short page ends the phase.
fn advance(state: &mut SyncState, len: usize, limit: usize, next: OrgPhase) {
    if len < limit {
        state.organizations.phase = next;
        state.organizations.offset = 0;
    } else {
        state.organizations.offset += len as u64;
    }
}

fn report_rejected(rejected: &[crate::clerk::OrganizationParseError]) {
    if let Some(first) = rejected.first() {
        tracing::warn!(count = rejected.len(), error = %first, "clerk listed organizations or memberships that could not be read; they are skipped");
    }
}

/// The changes that make the memberships held for `organization` what Clerk lists, when its
/// `members_count` differs from what the index holds (nothing otherwise).
async fn relist_if_counts_differ(
    clerk: &ClerkClient,
    destination: &ChangeDestination,
    organization: &Organization,
    state: &mut SyncState,
) -> Result<Vec<Change>, Error> {
    let Some(expected) = organization.members_count else {
        return Ok(Vec::new());
    };
    let held = destination
        .local_index()
        .snapshot()
        .memberships_in(&organization.id)?;
    if held.len() as i64 == expected {
        return Ok(Vec::new());
    }
    state.organizations.organizations_relisted += 1;
    let limit = ORGANIZATION_PAGE_LIMIT;
    let mut listed = Vec::new();
    let mut offset = 0;
    loop {
        let page = clerk
            .list_organization_memberships(&organization.id, offset, limit)
            .await?;
        report_rejected(&page.rejected);
        offset += page.len;
        listed.extend(page.items);
        if page.len < limit {
            break;
        }
    }
    let ids: HashSet<&str> = listed.iter().map(|p| p.membership.id.as_str()).collect();
    let deleted_at_ms = now_ms();
    let mut changes: Vec<Change> = held
        .into_iter()
        .filter(|membership| !ids.contains(membership.id.as_str()))
        .map(|membership| {
            Change::Membership(MembershipChange::Delete {
                membership: Arc::new(membership),
                deleted_at_ms,
                source: ChangeSource::Backfill,
            })
        })
        .collect();
    changes.extend(listed.into_iter().map(|parsed| {
        Change::Membership(MembershipChange::Upsert {
            membership: Arc::new(parsed.membership),
            organization: Some(Arc::new(parsed.organization)),
            source: ChangeSource::Backfill,
        })
    }));
    Ok(changes)
}
