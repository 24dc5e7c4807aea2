//! Watching a segment: the retained events after a sequence, then live ones as their commits
//! succeed; a watcher that falls behind the live feed catches up from the retained log.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::Arc;

use tokio::sync::{broadcast, mpsc};

use super::core::{Core, lock};
use super::error::SegmentError;
use super::model::{EventKind, SegmentEvent};
use super::service::Segments;
use crate::query::{Filter, parse_filter};

/// Whether the watcher may see the members of a segment with this filter (its scopes cover
/// every field the filter tests). Asked again at every definition change the watch carries.
pub type MayWatch = Box<dyn Fn(&Filter) -> bool + Send + Sync>;

/// The filter a `SegmentUpdated` event saved (the one in force now if the log no longer holds
/// it): a definition is only ever retained with its event.
fn definition_filter(core: &Core, name: &str, sequence: u64) -> Option<Filter> {
    match core.retained_definitions.get(&sequence) {
        Some(definition) => expanded(core, &definition.filter),
        None => core.segments.get(name).map(|c| c.filter.clone()),
    }
}

/// A saved definition's filter with the segments it refers to (as they are now) expanded: what
/// a watcher's scopes must cover.
fn expanded(core: &Core, text: &str) -> Option<Filter> {
    let raw = parse_filter(text, &core.limits.stored()).ok()?;
    Some(core.expand(&raw, None, None).unwrap_or(raw))
}

/// The filter in force for `name` just after `sequence`.
fn filter_at(core: &Core, name: &str, sequence: u64) -> Option<Filter> {
    let saved = core
        .retained_definitions
        .range(..=sequence)
        .rev()
        .find(|(_, definition)| definition.name == name);
    match saved {
        Some((_, definition)) => expanded(core, &definition.filter),
        None => core.segments.get(name).map(|c| c.filter.clone()),
    }
}

fn denied(name: &str) -> SegmentError {
    SegmentError::Denied(format!(
        "segment {name:?} now tests fields this key's scopes do not cover; the watch ends"
    ))
}

/// Which segments a watch follows.
#[derive(Debug, Clone)]
pub enum Selection {
    /// These (each must exist when the watch starts). A definition the watcher may not read
    /// ends the watch with [`SegmentError::Denied`]; the watch ends after the last of them is
    /// deleted.
    Named(BTreeSet<String>),
    /// Every segment, now and later, whose definition the watcher may read at each event;
    /// events of the others are left out. Ends only when the watcher goes away.
    Readable,
}

impl Selection {
    fn holds(&self, segment: &str) -> bool {
        match self {
            Selection::Named(names) => names.contains(segment),
            Selection::Readable => true,
        }
    }
}

impl Segments {
    /// Streams a segment's events: the retained ones after `after` (if given), then live ones.
    /// Ends after a `SegmentDeleted` event, with an error if the watcher fell so far behind
    /// that the log dropped events it had not seen, and with [`SegmentError::Denied`] before
    /// the first event of a definition `may_watch` refuses (a key may not keep watching a
    /// segment whose filter was changed to test fields it cannot read). Ends at once when the
    /// receiver is dropped, without waiting for an event to fail to send.
    pub fn watch(
        &self,
        name: &str,
        after: Option<u64>,
        may_watch: MayWatch,
    ) -> Result<mpsc::Receiver<Result<Arc<SegmentEvent>, SegmentError>>, SegmentError> {
        let names = BTreeSet::from([name.to_string()]);
        self.watch_many(Selection::Named(names), after, may_watch)
    }

    /// [`Segments::watch`] over several segments, or every readable one, on one stream in
    /// sequence order.
    pub fn watch_many(
        &self,
        selection: Selection,
        after: Option<u64>,
        may_watch: MayWatch,
    ) -> Result<mpsc::Receiver<Result<Arc<SegmentEvent>, SegmentError>>, SegmentError> {
        let (sink, events) = mpsc::channel(256);
        let (mut live, replay, mut last_sent) = {
            let core = lock(&self.core);
            if let Selection::Named(names) = &selection
                && let Some(missing) = names.iter().find(|n| !core.segments.contains_key(*n))
            {
                return Err(SegmentError::NotFound(missing.clone()));
            }
            let live = core.live.subscribe();
            match after {
                None => (live, Vec::new(), core.committed),
                Some(after) => {
                    if after > core.committed {
                        return Err(SegmentError::OutOfRange(format!(
                            "sequence {after} is ahead of the log, which is at {}",
                            core.committed
                        )));
                    }
                    (live, backlog(&core, &selection, after)?, after)
                }
            }
        };
        // The definitions the first events sent are under must be readable too.
        if let Selection::Named(names) = &selection {
            let start = lock(&self.core);
            for name in names {
                if filter_at(&start, name, last_sent).is_some_and(|filter| !may_watch(&filter)) {
                    return Err(denied(name));
                }
            }
        }
        let core = self.core.clone();
        let shutdown = self.shutdown.clone();
        tokio::spawn(async move {
            let mut pending: VecDeque<Arc<SegmentEvent>> = replay.into();
            // Whether each segment's definition in force may be read (`Readable` only).
            let mut readable_now: HashMap<String, bool> = HashMap::new();
            // Named segments not deleted yet.
            let mut remaining = match &selection {
                Selection::Named(names) => names.len(),
                Selection::Readable => usize::MAX,
            };
            loop {
                while let Some(event) = pending.pop_front() {
                    if event.sequence <= last_sent {
                        continue;
                    }
                    last_sent = event.sequence;
                    let updated = event.kind == EventKind::SegmentUpdated;
                    let readable = match &selection {
                        Selection::Named(_) if !updated => true,
                        Selection::Named(_) => {
                            let filter =
                                definition_filter(&lock(&core), &event.segment, event.sequence);
                            filter.is_none_or(|filter| may_watch(&filter))
                        }
                        // Asked once per definition of each segment.
                        Selection::Readable => match readable_now.get(&event.segment) {
                            Some(readable) if !updated => *readable,
                            _ => {
                                let core = lock(&core);
                                let filter = if updated {
                                    definition_filter(&core, &event.segment, event.sequence)
                                } else {
                                    filter_at(&core, &event.segment, event.sequence)
                                };
                                let readable = filter.is_none_or(|filter| may_watch(&filter));
                                readable_now.insert(event.segment.clone(), readable);
                                readable
                            }
                        },
                    };
                    match &selection {
                        _ if readable => {}
                        Selection::Readable => continue,
                        Selection::Named(_) => {
                            let _ = sink.send(Err(denied(&event.segment))).await;
                            return;
                        }
                    }
                    let deleted = event.kind == EventKind::SegmentDeleted;
                    if sink.send(Ok(event)).await.is_err() {
                        return;
                    }
                    if deleted {
                        remaining -= 1;
                        if remaining == 0 {
                            return;
                        }
                    }
                }
                let next = tokio::select! {
                    next = live.recv() => next,
                    // The watcher went away: let go of its subscription now, not at the next
                    // event of these segments.
                    () = sink.closed() => return,
                    () = shutdown.cancelled() => {
                        let _ = sink
                            .send(Err(SegmentError::Unavailable(
                                "the server is shutting down: watch again from the last sequence".into(),
                            )))
                            .await;
                        return;
                    }
                };
                match next {
                    Ok(event) if selection.holds(&event.segment) => pending.push_back(event),
                    Ok(_) => {}
                    Err(broadcast::error::RecvError::Lagged(_)) => {
                        // Fell behind the live feed: catch up from the retained log.
                        let caught_up = backlog(&lock(&core), &selection, last_sent);
                        match caught_up {
                            Ok(events) => pending.extend(events),
                            Err(error) => {
                                let _ = sink.send(Err(error)).await;
                                return;
                            }
                        }
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                }
            }
        });
        Ok(events)
    }
}

/// The retained events of the selected segments after `after`, or why they are gone.
fn backlog(
    core: &Core,
    selection: &Selection,
    after: u64,
) -> Result<Vec<Arc<SegmentEvent>>, SegmentError> {
    if after < core.evicted_through {
        return Err(SegmentError::OutOfRange(format!(
            "events after sequence {after} are no longer retained (the log starts after {}): list the segments' members again and watch from the event_sequence that listing returns",
            core.evicted_through
        )));
    }
    Ok(core
        .retained
        .iter()
        .filter(|e| e.sequence > after && selection.holds(&e.segment))
        .cloned()
        .collect())
}
