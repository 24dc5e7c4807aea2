//! What readers hold: an immutable [`Snapshot`] of one commit (a tantivy `Searcher` with the
//! freshness stamp and sync state of that commit), and the [`UserIndex`] handle that hands out
//! the latest one. The writer task publishes a new snapshot after every commit.

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tantivy::{IndexReader, Searcher};
use tokio::sync::watch;

use super::payload::CommitPayload;
use super::schema::Fields;

/// Which state of the index answered a request.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Freshness {
    /// Increases by one per commit; survives restarts.
    pub generation: u64,
    /// The newest `updated_at` of any applied user, ms since the epoch.
    pub newest_updated_at_ms: i64,
    pub user_count: u64,
}

/// An immutable view of one commit.
pub struct Snapshot {
    pub searcher: Searcher,
    pub fields: Arc<Fields>,
    pub freshness: Freshness,
    pub sync_state: serde_json::Value,
    /// Tombstones held at this commit.
    pub tombstone_count: usize,
    /// The last saved-segment event whose change this snapshot holds: watching from here sees
    /// every membership change after it.
    pub event_sequence: u64,
    /// Live organization and membership documents.
    pub other_docs: u64,
    /// The most memberships any user document holds: the slots `org[...]` asks.
    pub org_slots: usize,
}

/// The largest `org_count` of any document (deleted ones too: an upper bound is enough).
fn most_memberships(searcher: &Searcher) -> usize {
    searcher
        .segment_readers()
        .iter()
        .filter_map(|segment| segment.fast_fields().i64("org_count").ok())
        .map(|column| column.max_value())
        .max()
        .map_or(0, |max| max.max(0) as usize)
}

/// Live documents with a `kind` (organizations and memberships): one pass over their postings.
fn other_kinds(searcher: &Searcher, fields: &Fields) -> tantivy::Result<u64> {
    let mut count = 0;
    for segment in searcher.segment_readers() {
        let inverted = segment.inverted_index(fields.kind)?;
        let mut terms = inverted.terms().stream()?;
        while let Some((_, info)) = terms.next() {
            if !segment.has_deletes() {
                count += u64::from(info.doc_freq);
                continue;
            }
            let mut postings = inverted
                .read_postings_from_terminfo(info, tantivy::schema::IndexRecordOption::Basic)?;
            let mut doc = tantivy::DocSet::doc(&postings);
            while doc != tantivy::TERMINATED {
                count += u64::from(!segment.is_deleted(doc));
                doc = tantivy::DocSet::advance(&mut postings);
            }
        }
    }
    Ok(count)
}

impl Snapshot {
    /// The snapshot of the commit `reader` shows, whose payload is `payload`.
    pub(super) fn of(
        reader: &IndexReader,
        fields: &Arc<Fields>,
        payload: &CommitPayload,
    ) -> Snapshot {
        let searcher = reader.searcher();
        let live: Vec<_> = searcher
            .segment_readers()
            .iter()
            .map(|segment| (segment.segment_id(), segment.num_deleted_docs()))
            .collect();
        fields.columns.keep_segments(&live);
        let others = other_kinds(&searcher, fields).unwrap_or_else(|error| {
            tracing::error!(%error, "could not count organization and membership documents");
            0
        });
        Snapshot {
            freshness: Freshness {
                generation: payload.generation,
                newest_updated_at_ms: payload.newest_updated_at_ms,
                user_count: searcher.num_docs().saturating_sub(others),
            },
            other_docs: others,
            org_slots: most_memberships(&searcher),
            searcher,
            fields: fields.clone(),
            sync_state: payload.sync_state.clone(),
            tombstone_count: payload.tombstones.len(),
            event_sequence: payload.event_sequence,
        }
    }
}

/// A handle on the index for readers. Cheap to clone.
#[derive(Clone)]
pub struct UserIndex {
    fields: Arc<Fields>,
    snapshots: watch::Receiver<Arc<Snapshot>>,
}

impl UserIndex {
    pub(super) fn new(fields: Arc<Fields>, snapshots: watch::Receiver<Arc<Snapshot>>) -> Self {
        UserIndex { fields, snapshots }
    }

    /// The latest committed state.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.snapshots.borrow().clone()
    }

    /// The first snapshot for which `ready` holds (the newest, if it already does), waiting at
    /// most `timeout` for it.
    pub async fn snapshot_when(
        &self,
        ready: impl Fn(&Snapshot) -> bool,
        timeout: Duration,
    ) -> Option<Arc<Snapshot>> {
        let current = self.snapshot();
        if ready(&current) {
            return Some(current);
        }
        let mut snapshots = self.snapshots.clone();
        let reached = tokio::time::timeout(timeout, snapshots.wait_for(|s| ready(s))).await;
        match reached {
            Ok(Ok(snapshot)) => Some(snapshot.clone()),
            _ => None,
        }
    }

    /// Notified after every commit.
    pub fn subscribe(&self) -> watch::Receiver<Arc<Snapshot>> {
        self.snapshots.clone()
    }

    pub fn fields(&self) -> &Arc<Fields> {
        &self.fields
    }
}
