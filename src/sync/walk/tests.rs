//! The walk against an in-memory listing that misbehaves in each way Clerk might.

use std::collections::HashMap;

use super::*;
use crate::clerk::{ListedKey, RejectedUser, UserParseError, user_from_json};

/// How the listing answers a `starting_after` naming a user it no longer has.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Gone {
    Refuse,
    EmptyPage,
    FirstPage,
}

struct Listing {
    /// `(id, created_at)`, sorted as Clerk lists them.
    users: Vec<(String, i64)>,
    gone: Gone,
    /// `created_at_after` includes its bound.
    inclusive_after: bool,
    ignore_cursor: bool,
    /// Ids whose JSON does not parse.
    broken: Vec<String>,
}

impl Listing {
    fn new(times: &[i64]) -> Listing {
        let mut users: Vec<(String, i64)> = times
            .iter()
            .enumerate()
            .map(|(i, t)| (format!("user_{i:05}"), *t))
            .collect();
        users.sort_by(|a, b| (a.1, &a.0).cmp(&(b.1, &b.0)));
        Listing {
            users,
            gone: Gone::Refuse,
            inclusive_after: false,
            ignore_cursor: false,
            broken: Vec::new(),
        }
    }

    fn delete(&mut self, id: &str) {
        self.users.retain(|(u, _)| u != id);
    }

    fn page(&self, request: &CreatedPage, limit: usize) -> Result<UserPage, ()> {
        let selected: Vec<&(String, i64)> = self
            .users
            .iter()
            .filter(|(_, t)| match request.after {
                Some(after) if self.inclusive_after => *t >= after,
                Some(after) => *t > after,
                None => true,
            })
            .filter(|(_, t)| request.before.is_none_or(|b| *t < b))
            .collect();
        let start = match &request.cursor {
            PageCursor::Start => 0,
            PageCursor::Offset(n) => *n as usize,
            PageCursor::After(_) if self.ignore_cursor => 0,
            PageCursor::After(id) => match selected.iter().position(|(u, _)| u == id) {
                Some(p) => p + 1,
                None => match self.gone {
                    Gone::Refuse => return Err(()),
                    Gone::EmptyPage => selected.len(),
                    Gone::FirstPage => 0,
                },
            },
        };
        let mut page = UserPage::default();
        for (id, t) in selected.into_iter().skip(start).take(limit) {
            page.keys.push(ListedKey {
                id: Some(id.clone()),
                created_at: Some(*t),
            });
            if self.broken.contains(id) {
                page.rejected.push(RejectedUser {
                    id: Some(id.clone()),
                    error: UserParseError::Malformed("test".into()),
                });
            } else {
                let json = format!(r#"{{"id":"{id}","created_at":{t}}}"#);
                page.users.push(user_from_json(&json).unwrap());
            }
        }
        Ok(page)
    }
}

/// What a whole walk produced.
#[derive(Default)]
struct Outcome {
    listed: HashMap<String, usize>,
    rejected: Vec<String>,
    /// The settled ranges in order, and the ids settled in them.
    ranges: Vec<(i64, Option<i64>)>,
    seen: Vec<String>,
    requests: usize,
}

/// Walks `listing`; `between` runs after each page (to delete users mid-walk).
fn walk(
    listing: &mut Listing,
    mut cursor: WalkCursor,
    limit: usize,
    mut between: impl FnMut(&mut Listing, &WalkCursor),
) -> Outcome {
    let mut outcome = Outcome::default();
    while !cursor.done {
        outcome.requests += 1;
        assert!(outcome.requests < 10_000, "the walk loops");
        let page = match listing.page(&cursor.request(), limit) {
            Ok(page) => page,
            Err(()) => {
                assert!(cursor.cursor_refused(), "only a cursor is refused");
                continue;
            }
        };
        let page = cursor.advance(page, limit).unwrap();
        if page.settles() {
            outcome.ranges.push((page.settled_from, page.settled_until));
        }
        for user in page.users {
            *outcome.listed.entry(user.id).or_default() += 1;
        }
        outcome
            .rejected
            .extend(page.rejected.into_iter().filter_map(|r| r.id));
        outcome.seen.extend(page.seen);
        between(listing, &cursor);
    }
    outcome
}

fn assert_each_once(outcome: &Outcome, listing: &Listing, from: i64, until: Option<i64>) {
    let expected: Vec<&String> = listing
        .users
        .iter()
        .filter(|(id, t)| {
            *t >= from && until.is_none_or(|u| *t < u) && !listing.broken.contains(id)
        })
        .map(|(id, _)| id)
        .collect();
    for id in &expected {
        assert_eq!(outcome.listed.get(*id), Some(&1), "{id} listed once");
    }
    assert_eq!(outcome.listed.len(), expected.len(), "nothing else listed");
    // The settled ranges tile the whole range, and every user is settled exactly once.
    let mut at = from;
    for (start, end) in &outcome.ranges {
        assert_eq!(*start, at, "settled ranges are contiguous");
        at = end.unwrap_or(i64::MAX);
    }
    assert_eq!(at, until.unwrap_or(i64::MAX), "the whole range is settled");
    let mut seen = outcome.seen.clone();
    seen.sort();
    let mut all: Vec<String> = listing
        .users
        .iter()
        .filter(|(_, t)| *t >= from && until.is_none_or(|u| *t < u))
        .map(|(id, _)| id.clone())
        .collect();
    all.sort();
    assert_eq!(seen, all, "every user is settled once");
}

#[test]
fn a_plain_walk_lists_everyone_once_with_a_cursor() {
    let mut listing = Listing::new(&(0..95).map(|i| 1000 + i * 7).collect::<Vec<_>>());
    let outcome = walk(&mut listing, WalkCursor::new(0, None), 10, |_, _| {});
    assert_each_once(&outcome, &listing, 0, None);
    assert_eq!(outcome.requests, 10);
}

#[test]
fn a_deleted_cursor_user_resumes_from_its_time_however_clerk_answers() {
    for gone in [Gone::Refuse, Gone::EmptyPage, Gone::FirstPage] {
        for inclusive_after in [false, true] {
            let mut listing = Listing::new(&(0..95).map(|i| 1000 + i * 7).collect::<Vec<_>>());
            listing.gone = gone;
            listing.inclusive_after = inclusive_after;
            let mut deleted = Vec::new();
            let outcome = walk(&mut listing, WalkCursor::new(0, None), 10, |l, c| {
                // Delete the cursor's user after every third page.
                if let PageCursor::After(id) = &c.cursor
                    && c.listed % 30 == 0
                {
                    deleted.push(id.clone());
                    l.delete(&id.clone());
                }
            });
            assert!(!deleted.is_empty());
            for id in &deleted {
                assert_eq!(
                    outcome.listed.get(id),
                    Some(&1),
                    "{gone:?}: {id} was listed before"
                );
            }
            assert_eq!(
                outcome.listed.len(),
                listing.users.len() + deleted.len(),
                "{gone:?} inclusive={inclusive_after}: everyone once"
            );
            assert!(outcome.listed.values().all(|n| *n == 1));
        }
    }
}

#[test]
fn a_tie_run_longer_than_a_page_is_paged_by_offset_after_a_resume() {
    // 35 users created in the same millisecond, between others.
    let mut times: Vec<i64> = (0..10).map(|i| 100 + i).collect();
    times.extend(std::iter::repeat_n(500, 35));
    times.extend((0..10).map(|i| 900 + i));
    for gone in [Gone::Refuse, Gone::EmptyPage, Gone::FirstPage] {
        let mut listing = Listing::new(&times);
        listing.gone = gone;
        let mut deleted = None;
        let outcome = walk(&mut listing, WalkCursor::new(0, None), 10, |l, c| {
            // Delete the cursor user once, in the middle of the tie run.
            if deleted.is_none()
                && c.reached == Some(500)
                && let PageCursor::After(id) = &c.cursor
            {
                deleted = Some(id.clone());
                l.delete(&id.clone());
            }
        });
        let deleted = deleted.expect("the cursor was deleted inside the run");
        assert_eq!(outcome.listed.get(&deleted), Some(&1));
        assert_eq!(outcome.listed.len(), 55, "{gone:?}");
        assert!(outcome.listed.values().all(|n| *n == 1), "{gone:?}");
    }
}

#[test]
fn a_cursor_clerk_ignores_still_gets_through() {
    let mut listing = Listing::new(&(0..45).map(|i| 1000 + i).collect::<Vec<_>>());
    listing.ignore_cursor = true;
    let outcome = walk(&mut listing, WalkCursor::new(0, None), 10, |_, _| {});
    assert_each_once(&outcome, &listing, 0, None);
    assert!(outcome.requests <= 12, "{} requests", outcome.requests);
}

#[test]
fn an_unparseable_user_is_skipped_reported_and_the_walk_goes_on() {
    let mut listing = Listing::new(&(0..30).map(|i| 1000 + i).collect::<Vec<_>>());
    // The last element of the first page: the cursor is its raw id.
    let broken = listing.users[9].0.clone();
    listing.broken.push(broken.clone());
    let outcome = walk(&mut listing, WalkCursor::new(0, None), 10, |_, _| {});
    assert_each_once(&outcome, &listing, 0, None);
    assert_eq!(outcome.rejected, vec![broken]);
    // Three full pages, an empty one after the cursor, and the new query that confirms the end.
    assert_eq!(outcome.requests, 5);
}

#[test]
fn a_range_walk_stops_at_its_end_and_a_split_continues_from_there() {
    let mut listing = Listing::new(&(0..100).map(|i| i * 10).collect::<Vec<_>>());
    let mut first = WalkCursor::new(0, None);
    let mut second = None;
    let outcome = walk(&mut listing, first.clone(), 10, |_, c| {
        if second.is_none() && c.listed == 20 {
            first = c.clone();
            second = Some(first.split_at(first.split_point(990).unwrap()));
        }
    });
    // The walk above ran with the unsplit cursor; run the split halves instead.
    let _ = outcome;
    let split = second.unwrap();
    let at = split.from;
    assert!(at > 190 && at < 1000, "split at {at}");
    let rest_of_first = walk(&mut listing, first, 10, |_, _| {});
    let rest = walk(&mut listing, split, 10, |_, _| {});
    assert_eq!(rest_of_first.listed.len() + rest.listed.len(), 80);
    assert!(
        rest_of_first
            .listed
            .keys()
            .all(|id| !rest.listed.contains_key(id))
    );
    assert_each_once(&rest, &listing, at, None);
}

#[test]
fn remaining_estimate_follows_what_was_found() {
    let mut cursor = WalkCursor::new(0, Some(1000));
    assert_eq!(cursor.remaining_estimate(0.5, 999), 500.0);
    cursor.reached = Some(100);
    cursor.listed = 200;
    assert_eq!(cursor.remaining_estimate(0.5, 999), 1800.0);
}

#[test]
fn a_resume_inside_a_long_tie_jumps_past_the_users_seen_instead_of_rereading_them() {
    // 1,000 users created in one millisecond, between others, in pages of 10.
    let mut times: Vec<i64> = (0..30).map(|i| 100 + i).collect();
    times.extend(std::iter::repeat_n(500, 1_000));
    times.extend((0..30).map(|i| 900 + i));
    for gone in [Gone::Refuse, Gone::EmptyPage, Gone::FirstPage] {
        let mut listing = Listing::new(&times);
        listing.gone = gone;
        let mut deleted = Vec::new();
        let mut next = 50;
        let outcome = walk(&mut listing, WalkCursor::new(0, None), 10, |l, c| {
            // Delete the last user listed (the cursor's, or the one an offset page must start
            // with) each time another 50 of the run are listed.
            if c.reached == Some(500)
                && c.listed >= next
                && let Some(id) = c.tie.last()
            {
                next += 50;
                deleted.push(id.clone());
                l.delete(&id.clone());
            }
        });
        assert!(deleted.len() >= 15, "{gone:?}");
        for id in &deleted {
            assert_eq!(outcome.listed.get(id), Some(&1), "{gone:?}: {id}");
        }
        assert_eq!(outcome.listed.len(), 1_060, "{gone:?}");
        assert!(outcome.listed.values().all(|n| *n == 1), "{gone:?}");
        // A resume costs a few pages, not a pass over the users seen (~50 pages each: 1,106
        // requests in all when the walk re-read the run by offset).
        assert!(
            outcome.requests < 106 + 4 * deleted.len(),
            "{gone:?}: {} requests for {} deletions",
            outcome.requests,
            deleted.len()
        );
    }
}

#[test]
fn a_jump_that_lands_past_unseen_users_steps_back_until_it_does_not() {
    let mut times: Vec<i64> = (0..5).map(|i| 100 + i).collect();
    times.extend(std::iter::repeat_n(500, 400));
    times.extend((0..5).map(|i| 900 + i));
    for burst in [15, 45, 200, 290] {
        let mut listing = Listing::new(&times);
        let mut deleted = Vec::new();
        let outcome = walk(&mut listing, WalkCursor::new(0, None), 10, |l, c| {
            // Once 300 of the run are listed, delete `burst` users seen at its start and the
            // cursor's user: the seen users now end well before the count remembered.
            if deleted.is_empty()
                && c.tie.len() >= 300
                && let PageCursor::After(id) = &c.cursor
            {
                for seen in c.tie.iter().take(burst) {
                    deleted.push(seen.clone());
                    l.delete(&seen.clone());
                }
                deleted.push(id.clone());
                l.delete(&id.clone());
            }
        });
        assert_eq!(deleted.len(), burst + 1);
        assert_eq!(outcome.listed.len(), 410, "burst {burst}");
        assert!(outcome.listed.values().all(|n| *n == 1), "burst {burst}");
        // 41 pages hold everyone; stepping back costs a few more, never a page per user seen.
        assert!(outcome.requests < 70, "burst {burst}: {}", outcome.requests);
    }
}

#[test]
fn users_seen_deleted_while_a_tie_is_paged_by_offset_do_not_make_it_skip_any() {
    let mut times: Vec<i64> = (0..5).map(|i| 100 + i).collect();
    times.extend(std::iter::repeat_n(500, 300));
    times.extend((0..5).map(|i| 900 + i));
    for inclusive_after in [false, true] {
        let mut listing = Listing::new(&times);
        listing.inclusive_after = inclusive_after;
        let mut deleted: Vec<String> = Vec::new();
        let outcome = walk(&mut listing, WalkCursor::new(0, None), 10, |l, c| {
            match &c.cursor {
                // Once 150 of the run are listed, the cursor's user goes: the walk resumes.
                PageCursor::After(id) if c.tie.len() >= 150 && deleted.is_empty() => {
                    deleted.push(id.clone());
                    l.delete(&id.clone());
                }
                // While it pages by offset, a user it has seen goes after every page, so the
                // users not seen yet move up past the next offset.
                PageCursor::Offset(_) => {
                    if let Some(id) = c.tie.iter().find(|id| !deleted.contains(id)) {
                        deleted.push(id.clone());
                        l.delete(&id.clone());
                    }
                }
                _ => {}
            }
        });
        assert!(deleted.len() > 10, "inclusive={inclusive_after}");
        for id in &deleted {
            assert_eq!(outcome.listed.get(id), Some(&1), "{id}");
        }
        assert_eq!(outcome.listed.len(), 310, "inclusive={inclusive_after}");
        assert!(outcome.listed.values().all(|n| *n == 1));
    }
}

#[test]
fn a_checkpoint_written_before_tie_jumps_still_resumes() {
    let mut stored = serde_json::to_value(WalkCursor::new(5, Some(9))).unwrap();
    for added in ["probing", "sequential", "tie_shift"] {
        stored.as_object_mut().unwrap().remove(added).unwrap();
    }
    let cursor: WalkCursor = serde_json::from_value(stored).unwrap();
    assert_eq!(cursor, WalkCursor::new(5, Some(9)));
}
