//! A time tick: moves the segments' clock forward and records the Entered/Exited events of the
//! users whose time-driven segments (filters with `now-30d` and the like) changed their answer
//! as it moved.
//!
//! Only users holding a value near a moving boundary can change, so each time-driven segment
//! asks the index for the users whose relatively bounded paths lie in the window the clock
//! swept (`crossing_window`), and evaluates those users at the instants their own values cross
//! (`membership_changes`). A tick that finds nobody reads no stored user. The events carry each
//! user's crossing instant as their change time and cause `time`; they are ordered by that
//! instant, then segment, then user. The tick record follows them in the log, so after a crash
//! the clock and the events are both there or both gone, and the crossings missed while the
//! process was down are found, once, by the first tick after start-up.

use std::collections::HashMap;
use std::sync::Arc;

use super::core::{Core, member_ids};
use super::error::SegmentError;
use super::log::Record;
use super::model::{EventKind, SegmentEvent};
use crate::index::Snapshot;
use crate::query::time::{crossing_window, membership_changes};
use crate::user::User;

/// Moves the clock to `to` (nothing when it is already there), recording the events of every
/// crossing in between and the tick itself. Returns the number of membership events.
pub(super) fn advance(
    core: &mut Core,
    snapshot: &Arc<Snapshot>,
    to: i64,
) -> Result<usize, SegmentError> {
    let from = core.clock_ms;
    if to <= from {
        return Ok(0);
    }
    let mut users: HashMap<String, Option<Arc<User>>> = HashMap::new();
    let mut changes: Vec<(i64, String, String, EventKind)> = Vec::new();
    for compiled in core.segments.values().filter(|c| c.time_driven) {
        let Some(window) = crossing_window(&compiled.filter, from, to) else {
            continue;
        };
        for id in member_ids(snapshot, &window, from)? {
            let user = match users.get(&id) {
                Some(user) => user.clone(),
                None => {
                    let user = snapshot.stored_user(&id)?.map(Arc::new);
                    users.insert(id.clone(), user.clone());
                    user
                }
            };
            let Some(user) = user else { continue };
            for (instant, is) in membership_changes(&compiled.filter, &user, from, to) {
                let kind = if is {
                    EventKind::Entered
                } else {
                    EventKind::Exited
                };
                changes.push((instant, compiled.definition.name.clone(), id.clone(), kind));
            }
        }
    }
    changes.sort_by(|a, b| (a.0, &a.1, &a.2).cmp(&(b.0, &b.1, &b.2)));
    let recorded_at_ms = core.config.clock.now_ms();
    let count = changes.len();
    for (instant, segment, user_id, kind) in changes {
        let sequence = core.next_sequence();
        core.record(
            SegmentEvent {
                sequence,
                segment,
                kind,
                user_id,
                change_time_ms: instant,
                recorded_at_ms,
                cause: "time".into(),
            },
            None,
        );
    }
    let sequence = core.next_sequence();
    core.pending.push(Record::Tick {
        sequence,
        at_ms: to,
    });
    Ok(count)
}
