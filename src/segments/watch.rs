//! Watching a segment: the retained events after a sequence, then live ones as their commits
//! succeed; a watcher that falls behind the live feed catches up from the retained log.

use std::collections::VecDeque;
use std::sync::Arc;

use tokio::sync::{broadcast, mpsc};

use super::core::{Core, backlog, lock};
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
        Some(definition) => parse_filter(&definition.filter, &core.limits.stored()).ok(),
        None => core.segments.get(name).map(|c| c.filter.clone()),
    }
}

/// The filter in force for `name` just after `sequence`.
fn filter_at(core: &Core, name: &str, sequence: u64) -> Option<Filter> {
    let saved = core
        .retained_definitions
        .range(..=sequence)
        .rev()
        .find(|(_, definition)| definition.name == name);
    match saved {
        Some((_, definition)) => parse_filter(&definition.filter, &core.limits.stored()).ok(),
        None => core.segments.get(name).map(|c| c.filter.clone()),
    }
}

fn denied(name: &str) -> SegmentError {
    SegmentError::Denied(format!(
        "segment {name:?} now tests fields this key's scopes do not cover; the watch ends"
    ))
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
        let (sink, events) = mpsc::channel(256);
        let (mut live, replay, mut last_sent) = {
            let core = lock(&self.core);
            if !core.segments.contains_key(name) {
                return Err(SegmentError::NotFound(name.to_string()));
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
                    (live, backlog(&core, name, after)?, after)
                }
            }
        };
        // The definition the first event sent is under must be readable too.
        let start = lock(&self.core);
        if filter_at(&start, name, last_sent).is_some_and(|filter| !may_watch(&filter)) {
            return Err(denied(name));
        }
        drop(start);
        let core = self.core.clone();
        let name = name.to_string();
        let shutdown = self.shutdown.clone();
        tokio::spawn(async move {
            let mut pending: VecDeque<Arc<SegmentEvent>> = replay.into();
            loop {
                while let Some(event) = pending.pop_front() {
                    if event.sequence <= last_sent {
                        continue;
                    }
                    last_sent = event.sequence;
                    if event.kind == EventKind::SegmentUpdated {
                        let filter = definition_filter(&lock(&core), &name, event.sequence);
                        if filter.is_some_and(|filter| !may_watch(&filter)) {
                            let _ = sink.send(Err(denied(&name))).await;
                            return;
                        }
                    }
                    let deleted = event.kind == EventKind::SegmentDeleted;
                    if sink.send(Ok(event)).await.is_err() || deleted {
                        return;
                    }
                }
                let next = tokio::select! {
                    next = live.recv() => next,
                    // The watcher went away: let go of its subscription now, not at the next
                    // event of this segment.
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
                    Ok(event) if event.segment == name => pending.push_back(event),
                    Ok(_) => {}
                    Err(broadcast::error::RecvError::Lagged(_)) => {
                        // Fell behind the live feed: catch up from the retained log.
                        let caught_up = backlog(&lock(&core), &name, last_sent);
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
