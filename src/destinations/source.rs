//! Where destinations read segment events from: this process's segment log (single mode), or
//! in cluster mode the shared segment events stream, whose sequences every replica agrees on
//! (each replica's own log numbers events differently). Both answer the same questions: a page
//! of a destination's events after its position, the newest position, a members snapshot to
//! resync from, and how far behind a destination is.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::Deserialize;

use crate::clock::now_ms;
use crate::cluster::DestinationBucket;
use crate::segments::{EventKind, FeedPage, MembersSnapshot, SegmentError, SegmentEvent, Segments};

/// Stream messages looked at per read in cluster mode (every segment's, filtered here).
const SHARED_READ: usize = 1_000;

/// An event as `Segments::publish_events` puts it in the stream.
#[derive(Deserialize)]
struct Published {
    segment: String,
    kind: String,
    user_id: String,
    change_time_ms: i64,
    #[serde(default)]
    cause: String,
}

pub(super) enum Source {
    Local(Segments),
    Shared {
        segments: Segments,
        bucket: Box<DestinationBucket>,
        /// The newest stream sequence seen by a read (for lag between reads).
        last: AtomicU64,
    },
}

impl Source {
    pub(super) fn shared(segments: Segments, bucket: DestinationBucket) -> Source {
        Source::Shared {
            segments,
            bucket: Box::new(bucket),
            last: AtomicU64::new(0),
        }
    }

    pub(super) fn segments(&self) -> &Segments {
        match self {
            Source::Local(segments) | Source::Shared { segments, .. } => segments,
        }
    }

    pub(super) fn is_shared(&self) -> bool {
        matches!(self, Source::Shared { .. })
    }

    /// Up to `limit` events of `names` after `after`; `OutOfRange` when events after it are
    /// gone (the destination has a gap).
    pub(super) async fn page(
        &self,
        names: &BTreeSet<String>,
        after: u64,
        limit: usize,
    ) -> Result<FeedPage, SegmentError> {
        let (bucket, last) = match self {
            Source::Local(segments) => return segments.events_after(names, after, limit),
            Source::Shared { bucket, last, .. } => (bucket, last),
        };
        let read = (bucket.read_events(after, SHARED_READ).await)
            .map_err(|e| SegmentError::Unavailable(e.to_string()))?;
        last.fetch_max(read.last, Ordering::Relaxed);
        if after < read.last && after + 1 < read.first {
            return Err(SegmentError::OutOfRange(format!(
                "the segment events stream starts at {} now; this destination delivered through {after}",
                read.first
            )));
        }
        let mut page = FeedPage {
            events: Vec::new(),
            through: read.through,
        };
        for (sequence, stored_ms, payload) in read.messages {
            let Ok(event) = serde_json::from_slice::<Published>(&payload) else {
                tracing::warn!(
                    sequence,
                    "a segment events stream message does not parse; skipped"
                );
                continue;
            };
            if !names.contains(&event.segment) {
                continue;
            }
            let kind = match event.kind.as_str() {
                "entered" => EventKind::Entered,
                "exited" => EventKind::Exited,
                _ => continue,
            };
            page.events.push(Arc::new(SegmentEvent {
                sequence,
                segment: event.segment,
                kind,
                user_id: event.user_id,
                change_time_ms: event.change_time_ms,
                recorded_at_ms: stored_ms,
                cause: event.cause,
            }));
            if page.events.len() >= limit {
                page.through = sequence;
                break;
            }
        }
        Ok(page)
    }

    /// The position a new destination starts from: everything before now counts as delivered.
    pub(super) async fn head(&self) -> Result<u64, SegmentError> {
        match self {
            Source::Local(segments) => Ok(segments.retained_range().1),
            Source::Shared { bucket, last, .. } => {
                let head = (bucket.last_event_sequence().await)
                    .map_err(|e| SegmentError::Unavailable(e.to_string()))?;
                last.fetch_max(head, Ordering::Relaxed);
                Ok(head)
            }
        }
    }

    /// The members of `names` and the position to continue after. In cluster mode the members
    /// are this replica's and the position is the stream's newest before they were taken, so
    /// events published meanwhile may repeat what the snapshot already holds.
    pub(super) async fn snapshot(
        &self,
        names: BTreeSet<String>,
    ) -> Result<MembersSnapshot, SegmentError> {
        match self {
            Source::Local(segments) => segments.members_snapshot(names).await,
            Source::Shared { segments, .. } => {
                let head = self.head().await?;
                let mut snapshot = segments.members_snapshot(names).await?;
                snapshot.sequence = head;
                Ok(snapshot)
            }
        }
    }

    /// Undelivered events after `after` and the age of the oldest (seconds). In cluster mode:
    /// stream messages of every segment behind the newest one this replica has read, and the
    /// time since `behind_since_ms` (when its delivering task last saw it caught up).
    pub(super) fn lag(
        &self,
        names: &BTreeSet<String>,
        after: u64,
        behind_since_ms: Option<i64>,
    ) -> (u64, f64) {
        let age = |at: Option<i64>| at.map_or(0.0, |at| ((now_ms() - at).max(0) as f64) / 1000.0);
        match self {
            Source::Local(segments) => {
                let (count, oldest) = segments.undelivered(names, after);
                (count as u64, age(oldest))
            }
            Source::Shared { last, .. } => {
                let behind = last.load(Ordering::Relaxed).saturating_sub(after);
                let since = if behind == 0 { None } else { behind_since_ms };
                (behind, age(since))
            }
        }
    }
}
