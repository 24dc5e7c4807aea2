//! Walking the users who signed in, or were active, since a watermark: Clerk's list ordered by
//! `-last_sign_in_at` (or `-last_active_at`) with `<field>_after=<watermark>`, paged by time
//! rather than by offset (the next page asks for `<field>_before` the oldest time seen, and the
//! ids already seen at that time are skipped), so offsets do not grow with the population, as
//! Clerk warns they get slower and eventually time out.
//!
//! Where paging by time cannot move on, it pages by offset within the last window instead: a run
//! of users sharing one time that is longer than a page (`last_active_at` is kept to the day, so
//! a day's active users share it), or a server that ignores `_before`. Offsets are capped: a walk
//! that would go deeper stops there (the sweep repairs what it did not reach).

use std::collections::HashSet;

use crate::clerk::{ActivityField, ClerkApiError, ClerkClient, RejectedUser};
use crate::user::User;

/// The deepest offset an activity walk pages to.
pub const MAX_ACTIVITY_OFFSET: u64 = 100_000;

/// One walk over the users whose `field` is after `since`, latest first.
pub(super) struct ActivityWalk {
    field: ActivityField,
    since: i64,
    page_size: u32,
    /// The next page holds users whose time is before this (exclusive).
    before: Option<i64>,
    /// Paging by offset within `before`'s window (time paging could not move on).
    offset: Option<u64>,
    /// Every id the walk returned, so no user is returned twice.
    seen: HashSet<String>,
    /// Users Clerk listed, whether new to this walk or not.
    pub listed: u64,
    /// Listed elements that did not parse, for the caller to fetch again by id later.
    pub rejected: Vec<RejectedUser>,
    done: bool,
}

impl ActivityWalk {
    pub(super) fn new(field: ActivityField, since: i64, page_size: u32) -> ActivityWalk {
        ActivityWalk {
            field,
            since,
            page_size,
            before: None,
            offset: None,
            seen: HashSet::new(),
            listed: 0,
            rejected: Vec::new(),
            done: false,
        }
    }

    /// The next users of the walk (each once); `None` when it is over.
    pub(super) async fn next(
        &mut self,
        clerk: &ClerkClient,
    ) -> Result<Option<Vec<User>>, ClerkApiError> {
        if self.done {
            return Ok(None);
        }
        let page = clerk
            .list_users_by_activity(
                self.field,
                self.since,
                self.before,
                self.offset.unwrap_or(0),
                self.page_size,
            )
            .await?;
        let len = page.len() as u64;
        self.listed += len;
        let full = len >= u64::from(self.page_size);
        let oldest = page.users.iter().filter_map(|u| self.field.of(u)).min();
        // As many as the sync state remembers (it keeps at most 10,000 ids to fetch again).
        let room = 10_000usize.saturating_sub(self.rejected.len());
        self.rejected.extend(page.rejected.into_iter().take(room));
        let fresh: Vec<User> = page
            .users
            .into_iter()
            .filter(|user| self.seen.insert(user.id.clone()))
            .collect();
        self.done = !full;
        match (self.offset, oldest) {
            _ if self.done => {}
            // Within an offset walk: on to the next page of the same window.
            (Some(offset), _) => self.offset = Some(offset + len),
            // Nothing new at this time: a run of equal times longer than a page, or `_before`
            // ignored. Page the same window by offset from here on.
            (None, _) if fresh.is_empty() => self.offset = Some(len),
            // On to the users at or before the oldest time seen (the ones seen are skipped).
            (None, Some(oldest)) => self.before = Some(oldest.saturating_add(1)),
            (None, None) => self.done = true,
        }
        if self
            .offset
            .is_some_and(|offset| offset > MAX_ACTIVITY_OFFSET)
        {
            tracing::warn!(
                field = self.field.name(),
                max = MAX_ACTIVITY_OFFSET,
                "the activity catch-up reached its deepest offset; the sweep repairs the rest"
            );
            self.done = true;
        }
        Ok(Some(fresh))
    }
}
