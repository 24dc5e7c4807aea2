//! One walk through the Clerk users created in a range of times, oldest first, that cannot wedge
//! on Clerk's cursor edge cases.
//!
//! A walk pages with `starting_after=<id of the last element Clerk sent>` (parsed or not), under
//! one `created_at_after`/`created_at_before` query kept the same across pages, as Clerk asks.
//! It remembers the newest creation time it has seen and the ids seen at exactly that time, so
//! whenever the cursor fails it can **resume** from that time with a new query and drop what it
//! has already seen:
//! - a cursor Clerk refuses (a 4xx: its user was deleted), or answers with an empty page after
//!   a full one (which may be the end, or a deleted cursor: resuming tells which);
//! - a cursor Clerk ignores (the same page twice: nothing new on a full page);
//! - a run of users created in the same millisecond longer than a page (a bulk import): there
//!   the walk pages by offset, which stays as small as the run; each offset page must start
//!   with a user already seen (the walk steps back when deletions moved users up), and a resume
//!   inside the run jumps past the users seen instead of re-reading them.
//!
//! The walk never asks for a large offset, and every page either moves the newest time seen,
//! grows the offset inside one millisecond, or ends the walk; [`MAX_TIE_OFFSET`] bounds the rest.

use std::collections::HashSet;

use serde::{Deserialize, Serialize};

use crate::clerk::{ClerkApiError, ClerkClient, CreatedPage, PageCursor, RejectedUser, UserPage};
use crate::user::User;

/// Ids remembered at the newest creation time: more users created in one millisecond than this
/// may be listed twice after a resume (harmless: applying a user twice changes nothing).
const MAX_TIE_IDS: usize = 10_000;

/// The deepest offset a walk uses inside one millisecond before it gives up with an error.
pub const MAX_TIE_OFFSET: u64 = 1_000_000;

/// Where one walk stands; stored in the sync checkpoint, so a restart resumes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WalkCursor {
    /// The walk lists users created at `from` or later ...
    pub from: i64,
    /// ... and before `until`; `None`: no end (users created during the walk are listed too).
    pub until: Option<i64>,
    /// The current query's `created_at_after` and `created_at_before`, fixed while its cursor
    /// is used (a split narrows `until`, not the query).
    pub query_after: i64,
    pub query_before: Option<i64>,
    pub cursor: PageCursor,
    /// The newest creation time listed, and the ids listed at exactly that time.
    pub reached: Option<i64>,
    pub tie: Vec<String>,
    /// Every user created before this has been listed.
    pub settled: i64,
    /// The last answer was an empty page after a cursor, and the walk resumed to check it.
    pub checking: bool,
    pub listed: u64,
    pub done: bool,
    /// While the walk pages a tie by offset with checks (a jump after a resume, or the next
    /// page overlapping the last): how far to step back if this page does not start with a
    /// user already seen.
    #[serde(default)]
    pub probing: Option<u64>,
    /// Jumps into the current tie landed too far even from its start: page it by offset from
    /// the start until the walk moves on.
    #[serde(default)]
    pub sequential: bool,
    /// How many of the tie's users seen are no longer listed before its first user not seen
    /// (deleted since), as last measured: where the next jump aims.
    #[serde(default)]
    pub tie_shift: i64,
}

/// What one page brought: the users to apply, and what it settled.
#[derive(Debug, Default)]
pub struct WalkPage {
    /// Users listed for the first time in this walk.
    pub users: Vec<User>,
    /// Elements listed for the first time that did not parse.
    pub rejected: Vec<RejectedUser>,
    /// Every user created in `settled_from..settled_until` has now been listed; `seen` are the
    /// ids listed in that range (by this page or, at its start, by the pages before).
    /// `settled_until: None`: the walk ended with no upper bound.
    pub settled_from: i64,
    pub settled_until: Option<i64>,
    pub seen: Vec<String>,
}

impl WalkPage {
    /// Whether this page settled any range.
    pub fn settles(&self) -> bool {
        self.settled_until
            .is_none_or(|until| until > self.settled_from)
    }
}

/// A walk that cannot move on.
#[derive(Debug, thiserror::Error)]
#[error(
    "clerk lists more than {MAX_TIE_OFFSET} users created at {created_at} ms, or ignores both \
     the cursor and the offset; the walk cannot get past them"
)]
pub struct WalkStuck {
    pub created_at: i64,
}

impl WalkCursor {
    /// A walk over users created in `from..until`.
    pub fn new(from: i64, until: Option<i64>) -> WalkCursor {
        WalkCursor {
            from,
            until,
            // `_after` may be exclusive: one millisecond earlier lists `from` either way.
            query_after: from - 1,
            query_before: until,
            cursor: PageCursor::Start,
            reached: None,
            tie: Vec::new(),
            settled: from,
            checking: false,
            listed: 0,
            done: false,
            probing: None,
            sequential: false,
            tie_shift: 0,
        }
    }

    /// The request for the next page.
    pub fn request(&self) -> CreatedPage {
        CreatedPage {
            after: Some(self.query_after),
            before: self.query_before,
            cursor: self.cursor.clone(),
        }
    }

    /// A new query from the newest time listed (its ties come first and are dropped).
    fn resume(&mut self) {
        self.query_after = self.reached.unwrap_or(self.from) - 1;
        self.query_before = self.until;
        self.cursor = PageCursor::Start;
    }

    /// Clerk refused the cursor (a 4xx): its user may have been deleted. `false` when the walk
    /// was not using a cursor, so the error is Clerk's answer to the query itself.
    pub fn cursor_refused(&mut self) -> bool {
        if !matches!(self.cursor, PageCursor::After(_)) {
            return false;
        }
        self.resume();
        true
    }

    /// Whether creation time `t` is in this walk's range.
    fn in_range(&self, t: i64) -> bool {
        t >= self.from && self.until.is_none_or(|until| t < until)
    }

    /// Moves past `page` (the answer to [`WalkCursor::request`] with page size `limit`) and
    /// returns what it brought for the first time.
    pub fn advance(&mut self, page: UserPage, limit: usize) -> Result<WalkPage, WalkStuck> {
        if let (Some(step), PageCursor::Offset(at)) = (self.probing, &self.cursor) {
            let at = *at;
            if !self.lands_in_seen_tie(&page) {
                // Users not seen yet may lie before `at`: nothing on this page can be trusted
                // to settle anything. Step back twice as far, down to the start of the tie.
                let step = step.saturating_mul(2);
                let back = at.saturating_sub(step);
                if back == 0 {
                    self.cursor = PageCursor::Start;
                    self.probing = None;
                    self.sequential = true;
                } else {
                    self.cursor = PageCursor::Offset(back);
                    self.probing = Some(step);
                }
                return Ok(WalkPage {
                    settled_from: self.settled,
                    settled_until: Some(self.settled),
                    ..WalkPage::default()
                });
            }
            self.probing = None;
        }
        self.measure_tie_shift(&page);
        let full = page.len() >= limit;
        let mut beyond = false;
        let mut fresh_ids: HashSet<String> = HashSet::new();
        let mut fresh_timed: Vec<(String, i64)> = Vec::new();
        let mut untimed_fresh: Vec<String> = Vec::new();
        {
            let tie: HashSet<&str> = self.tie.iter().map(String::as_str).collect();
            for key in &page.keys {
                let Some(id) = key.id.as_deref() else {
                    continue;
                };
                match key.created_at {
                    Some(t) if !self.in_range(t) => {
                        beyond |= self.until.is_some_and(|until| t >= until)
                    }
                    Some(t) => {
                        let new = match self.reached {
                            None => true,
                            Some(reached) => t > reached || (t == reached && !tie.contains(id)),
                        };
                        if new && fresh_ids.insert(id.to_string()) {
                            fresh_timed.push((id.to_string(), t));
                        }
                    }
                    // Without a creation time the element cannot be placed: listed, never
                    // kept at the boundary.
                    None => {
                        if fresh_ids.insert(id.to_string()) {
                            untimed_fresh.push(id.to_string());
                        }
                    }
                }
            }
        }
        let previous_settled = self.settled;
        // The ids this page settles: those before the newest time, and the old boundary's ids
        // once the newest time moves past them.
        let mut seen: Vec<String> = Vec::new();
        let moved = !fresh_timed.is_empty();
        for (id, t) in fresh_timed {
            match self.reached {
                Some(reached) if t < reached => seen.push(id),
                Some(reached) if t == reached => {
                    if self.tie.len() < MAX_TIE_IDS {
                        self.tie.push(id);
                    }
                }
                _ => {
                    seen.append(&mut self.tie);
                    self.tie_shift = 0;
                    self.reached = Some(t);
                    self.settled = t;
                    self.tie.push(id);
                }
            }
        }
        let untimed = !untimed_fresh.is_empty();
        seen.extend(untimed_fresh);
        self.listed += fresh_ids.len() as u64;

        let last_id = page.keys.iter().rev().find_map(|k| k.id.clone());
        let next = if beyond {
            None
        } else if page.is_empty() {
            match (&self.cursor, self.checking) {
                // Maybe the end, maybe a cursor whose user was deleted: a new query tells.
                (PageCursor::After(_), false) => {
                    self.checking = true;
                    self.resume();
                    Some(())
                }
                _ => None,
            }
        } else if !moved && !untimed {
            // Nothing new on this page.
            if !full {
                None
            } else {
                match &self.cursor {
                    // The cursor was ignored, or restarted the listing: resume.
                    PageCursor::After(_) => self.resume(),
                    // More users created in one millisecond than a page holds. After a
                    // resume inside a long run, jump to just before the first user not seen
                    // yet rather than re-reading the run page by page: Clerk lists a run in a
                    // stable order, so the ids seen are the run's first ones (less those
                    // deleted since), and a jump is kept only where it lands on one of them.
                    PageCursor::Start => {
                        let listed = self.tie.len() as i64 - self.tie_shift;
                        let page_len = page.len() as u64;
                        let jump = (listed - page_len as i64).max(0) as u64;
                        if !self.sequential && jump >= 2 * page_len {
                            self.cursor = PageCursor::Offset(jump);
                            self.probing = Some(page_len);
                        } else {
                            self.next_offset(0, page_len)?;
                        }
                    }
                    PageCursor::Offset(offset) => self.next_offset(*offset, page.len() as u64)?,
                }
                Some(())
            }
        } else if !full {
            None
        } else {
            self.checking = false;
            // Still inside the tie this query began at (not one reached on this page).
            let last_in_tie = self.reached.is_some_and(|reached| {
                self.query_after == reached - 1
                    && page
                        .keys
                        .last()
                        .is_some_and(|k| k.created_at == Some(reached) && k.id.is_some())
            });
            match (&self.cursor, last_id) {
                // Paging a tie by offset: stay on offsets to its end, as a cursor's user
                // deleted there would send the walk back to the tie's start.
                (PageCursor::Offset(offset), Some(_)) if last_in_tie => {
                    self.next_offset(*offset, page.len() as u64)?
                }
                (_, Some(id)) => {
                    self.sequential = false;
                    self.cursor = PageCursor::After(id);
                }
                (_, None) => self.resume(),
            }
            Some(())
        };

        let users: Vec<User> = page
            .users
            .into_iter()
            .filter(|u| fresh_ids.contains(&u.id))
            .collect();
        let rejected: Vec<RejectedUser> = page
            .rejected
            .into_iter()
            .filter(|r| r.id.as_ref().is_some_and(|id| fresh_ids.contains(id)))
            .collect();
        let settled_until = if next.is_none() {
            self.done = true;
            // Every id still held at the boundary is settled with the rest of the range.
            seen.append(&mut self.tie);
            self.until
        } else {
            Some(self.settled)
        };
        Ok(WalkPage {
            users,
            rejected,
            settled_from: previous_settled,
            settled_until,
            seen,
        })
    }

    /// Pages on by offset inside a tie after the page of `page_len` at offset `at`. The next
    /// page starts with this one's last user, which must come back (as a user seen): when
    /// users before it were deleted in between, it does not, and the walk steps back instead
    /// of skipping the users that moved up. Pages follow without the check past [`MAX_TIE_IDS`]
    /// (the ids are no longer kept) and once checks failed back to the tie's start (Clerk may
    /// not list a tie in a stable order): plain offsets always end.
    fn next_offset(&mut self, at: u64, page_len: u64) -> Result<(), WalkStuck> {
        let checked = page_len > 1 && self.tie.len() < MAX_TIE_IDS && !self.sequential;
        let next = at + page_len - u64::from(checked);
        if next > MAX_TIE_OFFSET {
            return Err(WalkStuck {
                created_at: self.reached.unwrap_or(self.from),
            });
        }
        self.cursor = PageCursor::Offset(next);
        self.probing = checked.then_some(1);
        Ok(())
    }

    /// Where a page of the current tie's query (from its start or an offset) shows the first
    /// user of the tie not seen yet, learns how many seen users are listed before it.
    fn measure_tie_shift(&mut self, page: &UserPage) {
        let at = match self.cursor {
            PageCursor::Start => 0,
            PageCursor::Offset(at) => at,
            PageCursor::After(_) => return,
        };
        let Some(reached) = self.reached else {
            return;
        };
        if self.query_after != reached - 1 {
            return;
        }
        let tie: HashSet<&str> = self.tie.iter().map(String::as_str).collect();
        let first_new = page.keys.iter().position(|key| {
            key.created_at == Some(reached) && key.id.as_deref().is_some_and(|id| !tie.contains(id))
        });
        if let Some(p) = first_new {
            self.tie_shift = self.tie.len() as i64 - (at + p as u64) as i64;
        }
    }

    /// Whether the first element of `page` is a user of the current tie already seen, so that
    /// every user before it has been seen too.
    fn lands_in_seen_tie(&self, page: &UserPage) -> bool {
        page.keys.first().is_some_and(|key| {
            key.created_at.is_some()
                && key.created_at == self.reached
                && key
                    .id
                    .as_deref()
                    .is_some_and(|id| self.tie.iter().any(|t| t == id))
        })
    }

    /// Users this walk has yet to list, estimated from how densely it found them so far
    /// (`fallback_density` users per millisecond before it has found any); `newest` stands in
    /// for an open end.
    pub fn remaining_estimate(&self, fallback_density: f64, newest: i64) -> f64 {
        let start = self.reached.unwrap_or(self.from);
        let end = self.until.unwrap_or(newest + 1);
        let walked = (start - self.from) as f64;
        let density = if self.listed >= 100 && walked > 0.0 {
            self.listed as f64 / walked
        } else {
            fallback_density
        };
        density * (end - start).max(0) as f64
    }

    /// Splits the rest of the range at `at` (which must lie after the newest time listed and
    /// before `until`): this walk stops before it, the returned one starts there.
    pub fn split_at(&mut self, at: i64) -> WalkCursor {
        debug_assert!(self.reached.unwrap_or(self.from) < at);
        let rest = WalkCursor::new(at, self.until);
        self.until = Some(at);
        rest
    }

    /// Where to split the rest of this walk in two, if it is wide enough to split.
    pub fn split_point(&self, newest: i64) -> Option<i64> {
        let start = self.reached.map_or(self.from, |r| r + 1);
        let end = self.until.unwrap_or(newest + 1);
        (end - start >= 2).then(|| start + (end - start) / 2)
    }
}

/// The walks of one backfill or sweep, as stored in the checkpoint.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Partitions {
    pub walks: Vec<WalkCursor>,
    /// The newest creation time when the walk began (the open end's stand-in for estimates).
    pub newest_ms: i64,
    /// Users per millisecond over the whole range when it began (estimates before a walk has
    /// found any users).
    pub density: f64,
}

impl Partitions {
    /// Starts walking everything: one walk from the oldest user on, to be split by the workers.
    pub async fn begin(clerk: &ClerkClient, total: u64) -> Result<Partitions, ClerkApiError> {
        let oldest = clerk.created_at_edge(false).await?;
        let newest = clerk.created_at_edge(true).await?;
        let (from, newest) = match (oldest, newest) {
            (Some(oldest), Some(newest)) => (oldest, newest.max(oldest)),
            // No users (or no creation times): one walk over everything finds out.
            _ => (EARLIEST_MS, EARLIEST_MS),
        };
        let density = total.max(1) as f64 / (newest - from + 1) as f64;
        Ok(Partitions {
            walks: vec![WalkCursor::new(from, None)],
            newest_ms: newest,
            density,
        })
    }

    pub fn done(&self) -> bool {
        !self.walks.is_empty() && self.walks.iter().all(|w| w.done)
    }

    pub fn listed(&self) -> u64 {
        self.walks.iter().map(|w| w.listed).sum()
    }
}

/// Before any Clerk user (about 137,000 BC), yet far enough from `i64::MIN` for tantivy's
/// millisecond-to-nanosecond conversion.
pub const EARLIEST_MS: i64 = -(1 << 42);

#[cfg(test)]
mod tests;
