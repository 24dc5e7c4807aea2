//! Watching a segment: the retained events after a sequence, then live ones as their commits
//! succeed; a watcher that falls behind the live feed catches up from the retained log.

use std::collections::VecDeque;
use std::sync::Arc;

use tokio::sync::{broadcast, mpsc};

use super::core::{backlog, lock};
use super::error::SegmentError;
use super::model::{EventKind, SegmentEvent};
use super::service::Segments;

impl Segments {
    /// Streams a segment's events: the retained ones after `after` (if given), then live ones.
    /// Ends after a `SegmentDeleted` event, or with an error if the watcher fell so far behind
    /// that the log dropped events it had not seen.
    pub fn watch(
        &self,
        name: &str,
        after: Option<u64>,
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
                    let deleted = event.kind == EventKind::SegmentDeleted;
                    if sink.send(Ok(event)).await.is_err() || deleted {
                        return;
                    }
                }
                let next = tokio::select! {
                    next = live.recv() => next,
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
