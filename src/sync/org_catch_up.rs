//! The organizations' part of a catch-up. Clerk lists no organization or membership by
//! `updated_at`, so a catch-up lists both newest first by `created_at` down to its watermark
//! and applies what the index lacks or holds older: organizations and memberships whose
//! creation webhooks were missed arrive within one catch-up. Missed updates and deletions of
//! older ones are the sweep's (`org_walk`), which compares everything.

use std::sync::Arc;

use super::destination::ChangeDestination;
use super::org_walk::{blocking, membership_changes, newer_memberships, newer_organizations};
use crate::change::{Change, ChangeSource, OrganizationChange};
use crate::clerk::{ClerkClient, ORGANIZATION_PAGE_LIMIT, Order};
use crate::error::Error;

/// What one catch-up listed and applied.
#[derive(Debug, Default)]
pub(super) struct OrgCatchUp {
    pub organizations_listed: u64,
    pub memberships_listed: u64,
    pub upserts: u64,
    /// A listing reached `max_offset` before the watermark: what lies deeper waits for the
    /// sweep, and the watermark stays.
    pub too_deep: bool,
}

/// Lists organizations and memberships created at or after `since_ms`, newest first and at
/// most `max_offset` deep each, and applies those the index needs.
pub(super) async fn catch_up_organizations(
    clerk: &ClerkClient,
    destination: &ChangeDestination,
    since_ms: i64,
    max_offset: u64,
) -> Result<OrgCatchUp, Error> {
    let limit = ORGANIZATION_PAGE_LIMIT;
    let mut run = OrgCatchUp::default();
    let mut offset = 0;
    loop {
        if offset as u64 >= max_offset {
            run.too_deep = true;
            break;
        }
        let page = clerk
            .list_organizations_in(Order::NewestFirst, offset, limit)
            .await?;
        offset += page.len;
        run.organizations_listed += page.len as u64;
        let reached = page.items.iter().any(|o| o.created_at < since_ms);
        let recent: Vec<_> = (page.items.into_iter())
            .filter(|o| o.created_at >= since_ms)
            .collect();
        let snapshot = destination.snapshot().await?;
        let changes: Vec<Change> = blocking(move || newer_organizations(&snapshot, recent))
            .await?
            .into_iter()
            .map(|organization| {
                Change::Organization(OrganizationChange::Upsert {
                    organization: Arc::new(organization),
                    source: ChangeSource::Reconcile,
                })
            })
            .collect();
        run.upserts += changes.len() as u64;
        if !changes.is_empty() {
            destination.queue(changes, None).await?;
        }
        if reached || page.len < limit {
            break;
        }
    }
    let mut offset = 0;
    loop {
        if offset as u64 >= max_offset {
            run.too_deep = true;
            break;
        }
        let page = clerk
            .list_memberships_in(Order::NewestFirst, offset, limit)
            .await?;
        offset += page.len;
        run.memberships_listed += page.len as u64;
        let reached = page
            .items
            .iter()
            .any(|p| p.membership.created_at < since_ms);
        let recent: Vec<_> = (page.items.into_iter())
            .filter(|p| p.membership.created_at >= since_ms)
            .collect();
        let snapshot = destination.snapshot().await?;
        let found = blocking(move || newer_memberships(&snapshot, recent)).await?;
        run.upserts += found.len() as u64;
        if !found.is_empty() {
            let changes = membership_changes(Vec::new(), found, ChangeSource::Reconcile);
            destination.queue(changes, None).await?;
        }
        if reached || page.len < limit {
            break;
        }
    }
    Ok(run)
}
