//! The store's shared state, held by the writer-side observer and the service alike: compiled
//! definitions, the retained events, sequence numbers, and the log file; and the rules for
//! recording a definition (with the membership difference a new filter makes).

use std::collections::{BTreeMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::broadcast;

use super::error::SegmentError;
use super::history::Histories;
use super::log::{LogFile, Record};
use super::model::{EventKind, SavedSegment, SegmentEvent, SegmentStats, SegmentsConfig};
use crate::index::{IndexError, Snapshot, UserIndex};
use crate::query::time::is_time_driven;
use crate::query::{Filter, FilterError, FilterLimits, expand, parse_filter, references};

pub(super) struct Compiled {
    pub(super) definition: SavedSegment,
    /// The filter evaluated: `raw` with every `IN SEGMENT` reference expanded.
    pub(super) filter: Filter,
    /// The filter as saved (references kept).
    pub(super) raw: Filter,
    /// The filter holds a relative time: ticks re-evaluate it.
    pub(super) time_driven: bool,
    /// The event that saved this definition.
    pub(super) sequence: u64,
}

/// Shared by the observer (on the writer thread) and the service.
pub(super) struct Core {
    pub(super) file: LogFile,
    pub(super) config: SegmentsConfig,
    pub(super) segments: BTreeMap<String, Compiled>,
    pub(super) retained: VecDeque<Arc<SegmentEvent>>,
    /// The definitions saved by the `SegmentUpdated` events in `retained`.
    pub(super) retained_definitions: BTreeMap<u64, SavedSegment>,
    /// Sequence numbers up to here are no longer in `retained`.
    pub(super) evicted_through: u64,
    /// Events after this sequence are kept past the retained window (up to
    /// `config.held_events_max`): a destination has not delivered them yet.
    pub(super) hold: Option<u64>,
    /// The last sequence number handed out, and the last one committed.
    pub(super) assigned: u64,
    pub(super) committed: u64,
    /// Recorded since the last commit, not yet written.
    pub(super) pending: Vec<Record>,
    /// Written and fsynced for the commit in progress: `(records, file length before)`.
    pub(super) written: Option<(Vec<Record>, u64)>,
    pub(super) live: broadcast::Sender<Arc<SegmentEvent>>,
    pub(super) limits: FilterLimits,
    /// The segments' clock: relative times are evaluated at this instant (see `time.rs`).
    pub(super) clock_ms: i64,
    /// The latest ticks, `(sequence, at_ms)`: the clock in force at a snapshot's sequence.
    pub(super) ticks: VecDeque<(u64, i64)>,
    /// Each segment's size and moves per day and hour (`history.rs`), and where it is saved.
    pub(super) history: Histories,
    pub(super) dir: PathBuf,
    pub(super) stats: Arc<SegmentStats>,
}

/// Ticks remembered for [`Core::clock_at`]: far more than a reader's snapshot can lag.
const TICKS_KEPT: usize = 1_024;

impl Core {
    pub(super) fn record(&mut self, event: SegmentEvent, definition: Option<SavedSegment>) {
        self.pending.push(Record::Event {
            event,
            definition,
            size: None,
        });
    }

    pub(super) fn next_sequence(&mut self) -> u64 {
        self.assigned += 1;
        self.assigned
    }

    pub(super) fn retain(&mut self, event: Arc<SegmentEvent>) {
        self.retained.push_back(event);
        self.trim();
    }

    /// Evicts the oldest events past the retained window, except those the hold keeps (events
    /// after it, up to the held maximum).
    pub(super) fn trim(&mut self) {
        while self.retained.len() > self.config.retained_events {
            let Some(oldest) = self.retained.front().map(|e| e.sequence) else {
                return;
            };
            let held = self.hold.is_some_and(|hold| oldest > hold);
            if held && self.retained.len() <= self.config.held_events_max {
                return;
            }
            self.retained.pop_front();
            self.evicted_through = self.evicted_through.max(oldest);
            self.retained_definitions.remove(&oldest);
        }
    }

    /// `raw` (the definition of `saved_as`, if any) with its segment references expanded
    /// through the saved definitions, `replacing` one of them with a new filter (the one being
    /// saved).
    pub(super) fn expand(
        &self,
        raw: &Filter,
        saved_as: Option<&str>,
        replacing: Option<(&str, &Filter)>,
    ) -> Result<Filter, FilterError> {
        let saved = |name: &str| match replacing {
            Some((replaced, filter)) if replaced == name => Some(filter.clone()),
            _ => self.segments.get(name).map(|c| c.raw.clone()),
        };
        expand(raw, saved_as, &saved, &self.limits.stored())
    }

    /// The segments whose filters refer to `name`, directly or through others.
    pub(super) fn dependents(&self, name: &str) -> Vec<String> {
        let mut found: Vec<String> = Vec::new();
        loop {
            let before = found.len();
            for (other, compiled) in &self.segments {
                let refers = references(&compiled.raw)
                    .iter()
                    .any(|r| r == name || found.contains(r));
                if refers && other != name && !found.contains(other) {
                    found.push(other.clone());
                }
            }
            if found.len() == before {
                return found;
            }
        }
    }

    /// The clock in force for a snapshot whose events end at `sequence`.
    pub(super) fn clock_at(&self, sequence: u64) -> i64 {
        match self.ticks.iter().rev().find(|(at, _)| *at <= sequence) {
            Some((_, clock)) => *clock,
            None => self
                .ticks
                .front()
                .map_or(self.clock_ms, |(_, clock)| *clock),
        }
    }

    /// Applies a record to the in-memory state (on load, and once its commit succeeded).
    pub(super) fn apply(&mut self, record: Record, publish: bool) {
        match record {
            Record::Horizon { evicted_through } => {
                self.evicted_through = self.evicted_through.max(evicted_through);
            }
            Record::Tick { sequence, at_ms } => {
                self.assigned = self.assigned.max(sequence);
                self.committed = self.committed.max(sequence);
                self.clock_ms = self.clock_ms.max(at_ms);
                self.ticks.push_back((sequence, self.clock_ms));
                if self.ticks.len() > TICKS_KEPT {
                    self.ticks.pop_front();
                }
            }
            Record::Event {
                event,
                definition,
                size,
            } => {
                self.assigned = self.assigned.max(event.sequence);
                self.committed = self.committed.max(event.sequence);
                let days = self.config.history_days;
                self.history.record(&event, size, days);
                let mut saved = None;
                match (event.kind, definition) {
                    (EventKind::SegmentUpdated, Some(definition)) => {
                        let parsed = parse_filter(&definition.filter, &self.limits.stored())
                            .and_then(|raw| {
                                Ok((self.expand(&raw, Some(&definition.name), None)?, raw))
                            });
                        match parsed {
                            Ok((filter, raw)) => {
                                saved = Some(definition.clone());
                                self.segments.insert(
                                    definition.name.clone(),
                                    Compiled {
                                        definition,
                                        time_driven: is_time_driven(&filter),
                                        filter,
                                        raw,
                                        sequence: event.sequence,
                                    },
                                );
                            }
                            Err(error) => tracing::error!(
                                segment = %definition.name,
                                %error,
                                "a saved segment's filter no longer parses; it is skipped"
                            ),
                        }
                    }
                    (EventKind::SegmentDeleted, _) => {
                        self.segments.remove(&event.segment);
                    }
                    _ => {}
                }
                if event.sequence <= self.evicted_through {
                    return;
                }
                if let Some(definition) = saved {
                    self.retained_definitions.insert(event.sequence, definition);
                }
                let event = Arc::new(event);
                self.retain(event.clone());
                if publish && matches!(event.kind, EventKind::Entered | EventKind::Exited) {
                    self.stats.events.fetch_add(1, Ordering::Relaxed);
                    if event.cause == "time" {
                        self.stats.time_events.fetch_add(1, Ordering::Relaxed);
                    }
                }
                if publish {
                    let _ = self.live.send(event);
                }
            }
        }
    }

    /// The file's contents after compaction: the horizon, the definitions saved before it,
    /// and the retained events.
    pub(super) fn compacted(&self) -> Vec<Record> {
        let first_retained = self.retained.front().map_or(u64::MAX, |e| e.sequence);
        let mut records = vec![Record::Horizon {
            evicted_through: self.evicted_through,
        }];
        let mut pinned: Vec<&Compiled> = self
            .segments
            .values()
            .filter(|c| c.sequence < first_retained)
            .collect();
        pinned.sort_by_key(|c| c.sequence);
        for compiled in pinned {
            let mut event = segment_event(
                compiled.sequence,
                &compiled.definition.name,
                EventKind::SegmentUpdated,
                compiled.definition.updated_ms,
            );
            event.recorded_at_ms = compiled.definition.updated_ms;
            records.push(Record::Event {
                event,
                definition: Some(compiled.definition.clone()),
                size: None,
            });
        }
        for event in &self.retained {
            records.push(Record::Event {
                event: (**event).clone(),
                definition: self.retained_definitions.get(&event.sequence).cloned(),
                size: None,
            });
        }
        if let Some(&(sequence, at_ms)) = self.ticks.back() {
            records.push(Record::Tick { sequence, at_ms });
        }
        // In sequence order (the horizon first): start-up cuts the file at the first record
        // past the index's checkpoint.
        records.sort_by_key(|record| record.sequence().unwrap_or(0));
        records
    }
}

/// Opens the log and returns the store's shared state. `index` is the freshly opened index: its
/// last commit says which logged events belong to committed changes.
pub(super) fn open_core(
    dir: &Path,
    index: &UserIndex,
    config: SegmentsConfig,
    limits: FilterLimits,
) -> Result<Core, SegmentError> {
    let snapshot = index.snapshot();
    // A brand-new (or rebuilt) index has no checkpoint: keep the log as it is.
    let checkpoint = (snapshot.freshness.generation > 0).then_some(snapshot.event_sequence);
    let (file, records) = LogFile::open(dir, checkpoint)?;
    let history = Histories::load(dir)?;
    let (live, _) = broadcast::channel(4096);
    let hold = config.initial_hold;
    let mut core = Core {
        file,
        config,
        segments: BTreeMap::new(),
        retained: VecDeque::new(),
        retained_definitions: BTreeMap::new(),
        evicted_through: 0,
        hold,
        assigned: 0,
        committed: 0,
        pending: Vec::new(),
        written: None,
        live,
        limits,
        // Until a tick is read back: a store that never ticked starts its clock now.
        clock_ms: i64::MIN,
        ticks: VecDeque::new(),
        history,
        dir: dir.to_path_buf(),
        stats: Arc::default(),
    };
    for record in records {
        core.apply(record, false);
    }
    if core.clock_ms == i64::MIN {
        core.clock_ms = core.config.tick_instant();
    }
    tracing::info!(
        segments = core.segments.len(),
        retained_events = core.retained.len(),
        last_sequence = core.committed,
        "saved segments loaded"
    );
    Ok(core)
}

pub(super) fn lock(core: &Mutex<Core>) -> MutexGuard<'_, Core> {
    core.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Refuses to delete a segment others refer to.
pub(super) fn check_unreferenced(core: &Core, name: &str) -> Result<(), SegmentError> {
    let by: Vec<String> = (core.segments.iter())
        .filter(|(other, c)| *other != name && references(&c.raw).iter().any(|r| r == name))
        .map(|(other, _)| other.clone())
        .collect();
    if by.is_empty() {
        Ok(())
    } else {
        Err(SegmentError::Referenced {
            name: name.to_string(),
            by,
        })
    }
}

/// Valid names: 1-64 of `a-z`, `0-9`, `-`, `_`, starting with a letter or digit.
pub(super) fn check_name(name: &str) -> Result<(), SegmentError> {
    match name_problem("segment", name) {
        None => Ok(()),
        Some(problem) => Err(SegmentError::invalid("name", problem)),
    }
}

/// What is wrong with `name` as the name of a `kind` (a segment, a destination), if anything:
/// names are 1-64 of `a-z`, `0-9`, `-`, `_`, starting with a letter or digit.
pub fn name_problem(kind: &str, name: &str) -> Option<String> {
    let valid = (1..=64).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
        && name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric());
    if valid {
        return None;
    }
    // A name far too long is described, not repeated.
    let named = match name.len() {
        0..=80 => format!("{name:?}"),
        n => format!("of {n} bytes"),
    };
    Some(format!(
        "{kind} name {named}: use 1-64 lower-case letters, digits, '-' and '_', starting with a letter or digit"
    ))
}

/// The longest segment description, in bytes: every `ListSegments` answer carries them all.
pub const MAX_DESCRIPTION_BYTES: usize = 4096;

pub(super) fn check_description(description: &str) -> Result<(), SegmentError> {
    if description.len() > MAX_DESCRIPTION_BYTES {
        return Err(SegmentError::invalid(
            "description",
            format!(
                "the description is {} bytes; at most {MAX_DESCRIPTION_BYTES} are kept",
                description.len()
            ),
        ));
    }
    Ok(())
}

/// The ids matching `filter` on `snapshot`, in id order.
pub(super) fn member_ids(
    snapshot: &Arc<Snapshot>,
    filter: &Filter,
    now: i64,
) -> Result<Vec<String>, IndexError> {
    let mut export = snapshot.export(Some(filter), None, now)?;
    let total = export.total() as usize;
    Ok(export
        .next_chunk(total)?
        .into_iter()
        .map(|m| m.id)
        .collect())
}

pub(super) fn segment_event(sequence: u64, name: &str, kind: EventKind, now: i64) -> SegmentEvent {
    SegmentEvent {
        sequence,
        segment: name.to_string(),
        kind,
        user_id: String::new(),
        change_time_ms: now,
        recorded_at_ms: now,
        cause: "segment_edit".into(),
    }
}

/// Records `definition` (its filter `raw`, as saved) as its segment's new state, and when its
/// filter changes what the segment holds, the Entered/Exited events of the users whose
/// membership that changes; the same for every segment built on it (`IN SEGMENT`), whose
/// meaning changes with it (each gets a `SegmentUpdated` event too, so their watchers' scopes
/// are checked again). Every event is timed at the definition's `updated_ms` (the same on every
/// replica in cluster mode).
pub(super) fn record_definition(
    core: &mut Core,
    snapshot: &Arc<Snapshot>,
    definition: SavedSegment,
    raw: &Filter,
) -> Result<(), SegmentError> {
    let (name, time) = (definition.name.clone(), definition.updated_ms);
    let invalid =
        |e: FilterError| SegmentError::invalid("filter", format!("filter: {}", e.message));
    let filter = core
        .expand(raw, Some(&name), Some((&name, raw)))
        .map_err(invalid)?;
    let mut updates = vec![(definition, filter)];
    for dependent in core.dependents(&name) {
        let compiled = &core.segments[&dependent];
        let expanded =
            (core.expand(&compiled.raw, Some(&dependent), Some((&name, raw)))).map_err(invalid)?;
        if expanded.unplaced() != compiled.filter.unplaced() {
            updates.push((compiled.definition.clone(), expanded));
        }
    }
    for (definition, filter) in updates {
        record_one(core, snapshot, definition, &filter, time)?;
    }
    Ok(())
}

/// One segment's new state (`filter` expanded) and the membership difference it makes.
fn record_one(
    core: &mut Core,
    snapshot: &Arc<Snapshot>,
    definition: SavedSegment,
    filter: &Filter,
    time: i64,
) -> Result<(), SegmentError> {
    let now = core.clock_ms;
    let (changes, size) = match core.segments.get(&definition.name) {
        Some(current) if current.filter.unplaced() != filter.unplaced() => {
            let before = member_ids(snapshot, &current.filter, now)?;
            let after = member_ids(snapshot, filter, now)?;
            (membership_diff(&before, &after), after.len() as u64)
        }
        // The size stays what the history counted.
        Some(_) => (Vec::new(), core.history.size_of(&definition.name)),
        None => (Vec::new(), snapshot.count(Some(filter), now)?),
    };
    let name = definition.name.clone();
    let sequence = core.next_sequence();
    let mut event = segment_event(sequence, &name, EventKind::SegmentUpdated, time);
    event.recorded_at_ms = core.config.clock.now_ms();
    core.pending.push(Record::Event {
        event,
        definition: Some(definition),
        size: Some(size),
    });
    for (user_id, kind) in changes {
        let sequence = core.next_sequence();
        let mut event = segment_event(sequence, &name, kind, time);
        event.user_id = user_id;
        core.record(event, None);
    }
    Ok(())
}

/// Users in `after` but not `before` entered; the reverse exited. Both lists are sorted.
pub(super) fn membership_diff(before: &[String], after: &[String]) -> Vec<(String, EventKind)> {
    let mut changes = Vec::new();
    let (mut i, mut j) = (0, 0);
    while i < before.len() || j < after.len() {
        match (before.get(i), after.get(j)) {
            (Some(b), Some(a)) if b == a => {
                i += 1;
                j += 1;
            }
            (Some(b), Some(a)) if b < a => {
                changes.push((b.clone(), EventKind::Exited));
                i += 1;
            }
            (Some(b), None) => {
                changes.push((b.clone(), EventKind::Exited));
                i += 1;
            }
            (_, Some(a)) => {
                changes.push((a.clone(), EventKind::Entered));
                j += 1;
            }
            (None, None) => break,
        }
    }
    changes
}
