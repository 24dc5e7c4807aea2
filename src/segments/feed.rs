//! The store as a feed for deliverers (destinations): committed events after a position read in
//! pages, a wake-up when more are committed, a hold on retention for events not yet delivered,
//! and a consistent snapshot of segments' members to resync from.

use std::collections::BTreeSet;
use std::sync::Arc;

use tokio::sync::broadcast;

use super::core::{Core, lock, member_ids};
use super::error::SegmentError;
use super::model::SegmentEvent;
use super::service::Segments;

/// A page of committed events of some segments.
#[derive(Debug, Clone, PartialEq)]
pub struct FeedPage {
    pub events: Vec<Arc<SegmentEvent>>,
    /// Every committed event up to here was looked at: a deliverer that sent `events` has
    /// delivered through this sequence (the events of other segments are not its concern).
    pub through: u64,
}

/// Members of segments at one log position.
#[derive(Debug, Clone, PartialEq)]
pub struct MembersSnapshot {
    /// `(segment, member ids in id order)`; segments that no longer exist are left out.
    pub segments: Vec<(String, Vec<String>)>,
    /// The snapshot holds every event up to here and none after.
    pub sequence: u64,
}

impl Segments {
    /// Keeps events after `hold` past the retained window (up to the held maximum), or lets
    /// them go (`None`); evicts at once what is no longer held.
    pub fn set_retention_hold(&self, hold: Option<u64>) {
        let mut core = lock(&self.core);
        core.hold = hold;
        core.trim();
    }

    /// `(evicted_through, committed)`: the retained events are those after the first, up to
    /// the second.
    pub fn retained_range(&self) -> (u64, u64) {
        let core = lock(&self.core);
        (core.evicted_through, core.committed)
    }

    /// The committed events of `names` after `after`, at most `max` of them; `OutOfRange` when
    /// some after `after` are no longer retained.
    pub fn events_after(
        &self,
        names: &BTreeSet<String>,
        after: u64,
        max: usize,
    ) -> Result<FeedPage, SegmentError> {
        let core = lock(&self.core);
        page(&core, names, after, max)
    }

    /// How many committed events of `names` there are after `after`, and when the oldest of
    /// them was recorded (a destination's lag).
    pub fn undelivered(&self, names: &BTreeSet<String>, after: u64) -> (usize, Option<i64>) {
        let core = lock(&self.core);
        let start = core.retained.partition_point(|e| e.sequence <= after);
        let mut pending = core
            .retained
            .range(start..)
            .filter(|e| e.sequence <= core.committed && names.contains(&e.segment));
        let Some(oldest) = pending.next() else {
            return (0, None);
        };
        (1 + pending.count(), Some(oldest.recorded_at_ms))
    }

    /// A receiver that gets every committed event (or lags): for waking up when there is more.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<SegmentEvent>> {
        lock(&self.core).live.subscribe()
    }

    /// The members of `names` now, with the log position they are exact at, computed on the
    /// writer thread between two changes (so no event is half in it).
    pub async fn members_snapshot(
        &self,
        names: BTreeSet<String>,
    ) -> Result<MembersSnapshot, SegmentError> {
        let core = self.core.clone();
        self.writer
            .exclusive(move |snapshot| {
                let core = lock(&core);
                let mut segments = Vec::new();
                for name in names {
                    if let Some(compiled) = core.segments.get(&name) {
                        let ids = member_ids(snapshot, &compiled.filter, core.clock_ms)?;
                        segments.push((name, ids));
                    }
                }
                Ok(MembersSnapshot {
                    segments,
                    sequence: core.assigned,
                })
            })
            .await?
    }
}

fn page(
    core: &Core,
    names: &BTreeSet<String>,
    after: u64,
    max: usize,
) -> Result<FeedPage, SegmentError> {
    if after < core.evicted_through {
        return Err(SegmentError::OutOfRange(format!(
            "events after sequence {after} are no longer retained (the log starts after {})",
            core.evicted_through
        )));
    }
    let start = core.retained.partition_point(|e| e.sequence <= after);
    let mut events = Vec::new();
    let mut through = core.committed.max(after);
    for event in core.retained.range(start..) {
        if event.sequence > core.committed {
            break;
        }
        if !names.contains(&event.segment) {
            continue;
        }
        if events.len() == max {
            // Everything before this one was looked at.
            through = event.sequence - 1;
            break;
        }
        events.push(event.clone());
    }
    Ok(FeedPage { events, through })
}
