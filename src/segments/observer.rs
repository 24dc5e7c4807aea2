//! The writer-side half of the store: sees every change the index writer applies, with the
//! user's previous state, evaluates every segment's filter on both, and records the
//! differences as events that become durable with the commit holding their change.

use std::path::Path;
use std::sync::{Arc, Mutex};

use super::core::{Core, lock, open_core};
use super::error::SegmentError;
use super::log::Record;
use super::model::{EventKind, SegmentEvent, SegmentsConfig};
use crate::change::UserChange;
use crate::index::{ChangeObserver, Previous, UserIndex, WriteError};
use crate::query::FilterLimits;
use crate::query::eval::matches;

/// The writer-side half: sees every applied change.
pub struct SegmentsObserver {
    pub(super) core: Arc<Mutex<Core>>,
}

impl ChangeObserver for SegmentsObserver {
    fn wants_previous(&self) -> bool {
        !lock(&self.core).segments.is_empty()
    }

    fn observe(&mut self, previous: Previous, change: &UserChange) {
        let mut core = lock(&self.core);
        if core.segments.is_empty() {
            return;
        }
        let (current, change_time) = match change {
            UserChange::Upsert { user, .. } => (Some(user), user.updated_at),
            UserChange::Delete { deleted_at_ms, .. } => (None, *deleted_at_ms),
        };
        // Relative times are evaluated at the segments' clock, which ticks move: a user's
        // membership is always its filter at that clock, whatever changed it.
        let (now, clock) = (core.config.clock.now_ms(), core.clock_ms);
        let mut events = Vec::new();
        for compiled in core.segments.values() {
            let was = previous
                .as_ref()
                .is_some_and(|u| matches(&compiled.filter, u, clock));
            let is = current.is_some_and(|u| matches(&compiled.filter, u, clock));
            if was != is {
                events.push((
                    compiled.definition.name.clone(),
                    if is {
                        EventKind::Entered
                    } else {
                        EventKind::Exited
                    },
                ));
            }
        }
        for (segment, kind) in events {
            let sequence = core.next_sequence();
            core.record(
                SegmentEvent {
                    sequence,
                    segment,
                    kind,
                    user_id: change.user_id().to_string(),
                    change_time_ms: change_time,
                    recorded_at_ms: now,
                    cause: change.source().name().to_string(),
                },
                None,
            );
        }
    }

    fn prepare_commit(&mut self) -> Result<u64, WriteError> {
        let mut core = lock(&self.core);
        let records = std::mem::take(&mut core.pending);
        if records.is_empty() {
            core.written = Some((Vec::new(), 0));
            return Ok(core.committed);
        }
        let before = core.file.append(&records).map_err(WriteError::observer)?;
        let last = records
            .iter()
            .filter_map(Record::sequence)
            .max()
            .unwrap_or(core.committed);
        core.written = Some((records, before));
        Ok(last)
    }

    fn committed(&mut self) {
        let mut core = lock(&self.core);
        let Some((records, _)) = core.written.take() else {
            return;
        };
        for record in records {
            core.apply(record, true);
        }
        let window = core.config.retained_events.max(core.retained.len());
        if core.file.records > 2 * window + core.segments.len() + 1_000 {
            // The history is saved first: compaction drops the events it was counted from.
            if let Err(error) = core.history.save(&core.dir) {
                tracing::error!(%error, "could not save the segments' history; the log is not compacted");
                return;
            }
            let records = core.compacted();
            if let Err(error) = core.file.rewrite(&records) {
                tracing::error!(%error, "could not compact the segment log; it keeps growing");
            }
        }
    }

    fn rolled_back(&mut self) {
        let mut core = lock(&self.core);
        core.pending.clear();
        if let Some((records, before)) = core.written.take()
            && !records.is_empty()
            && let Err(error) = core.file.truncate(before, records.len())
        {
            tracing::error!(%error, "could not cut rolled-back events off the segment log");
        }
        core.assigned = core.committed;
    }
}

/// Opens the store. Give the observer to the index writer task before spawning it, then make
/// the service half with [`Segments::new`].
pub fn open(
    dir: &Path,
    index: &UserIndex,
    config: SegmentsConfig,
    limits: FilterLimits,
) -> Result<(SegmentsObserver, SegmentsHandle), SegmentError> {
    let core = Arc::new(Mutex::new(open_core(dir, index, config, limits)?));
    Ok((
        SegmentsObserver { core: core.clone() },
        SegmentsHandle { core },
    ))
}

/// The store before the writer runs.
pub struct SegmentsHandle {
    pub(super) core: Arc<Mutex<Core>>,
}
