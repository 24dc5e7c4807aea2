//! Saved segments: named filters, the Entered/Exited events of users crossing them, and the
//! bounded, persisted log those events are kept in.
//!
//! Every change the index writer applies reaches [`SegmentsObserver`] with the user's previous
//! state; each segment's filter is evaluated on both versions with the in-memory matcher, and a
//! difference is an event. Events get increasing sequence numbers, are appended to the log and
//! fsynced before the index commit that holds their change (the commit records the last
//! sequence, so after a crash log and index agree), and go to live watchers once that commit
//! succeeded. Segment edits run on the writer thread too ([`crate::index::WriterHandle::exclusive`]),
//! so they are ordered with changes; an edited filter emits the membership difference, computed
//! with the index on the snapshot of that moment.

mod log;
mod shared;

use std::collections::{BTreeMap, VecDeque};
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};

use serde::{Deserialize, Serialize};
use tokio::sync::{broadcast, mpsc};
use tokio_util::sync::CancellationToken;

use crate::change::UserChange;
use crate::clock::now_ms;
use crate::index::{
    ChangeObserver, IndexError, Previous, Snapshot, UserIndex, WriteError, WriterHandle,
};
use crate::query::eval::matches;
use crate::query::{Filter, FilterLimits, parse_filter, to_text};
use log::{LogError, LogFile, Record};

/// A saved segment as stored and returned.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SavedSegment {
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// The filter's text form.
    pub filter: String,
    pub version: u64,
    pub created_ms: i64,
    pub updated_ms: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    Entered,
    Exited,
    /// The segment was created or its definition changed.
    SegmentUpdated,
    SegmentDeleted,
}

/// One membership change (or segment-level change).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SegmentEvent {
    pub sequence: u64,
    pub segment: String,
    pub kind: EventKind,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub user_id: String,
    pub change_time_ms: i64,
    pub recorded_at_ms: i64,
    pub cause: String,
}

/// What can go wrong with segments; each maps to one gRPC code.
#[derive(Debug, thiserror::Error)]
pub enum SegmentError {
    #[error("{0}")]
    Invalid(String),
    #[error("no segment named {0:?}")]
    NotFound(String),
    #[error("a segment named {0:?} already exists")]
    AlreadyExists(String),
    #[error("segment {name:?} is at version {actual}, not {expected}: re-read it and retry")]
    VersionMismatch {
        name: String,
        expected: u64,
        actual: u64,
    },
    #[error("{0}")]
    OutOfRange(String),
    #[error("{0}")]
    Unavailable(String),
    #[error(transparent)]
    Index(#[from] IndexError),
    #[error(transparent)]
    Write(#[from] WriteError),
    #[error(transparent)]
    Log(#[from] LogError),
}

/// Settings of the segments store.
#[derive(Debug, Clone)]
pub struct SegmentsConfig {
    /// Events kept for replay (`WatchSegment` with `after_sequence`).
    pub retained_events: usize,
    pub max_segments: usize,
}

impl Default for SegmentsConfig {
    fn default() -> Self {
        SegmentsConfig {
            retained_events: 100_000,
            max_segments: 1_000,
        }
    }
}

struct Compiled {
    definition: SavedSegment,
    filter: Filter,
    /// The event that saved this definition.
    sequence: u64,
}

/// Shared by the observer (on the writer thread) and the service.
struct Core {
    file: LogFile,
    config: SegmentsConfig,
    segments: BTreeMap<String, Compiled>,
    retained: VecDeque<Arc<SegmentEvent>>,
    /// The definitions saved by the `SegmentUpdated` events in `retained`.
    retained_definitions: BTreeMap<u64, SavedSegment>,
    /// Sequence numbers up to here are no longer in `retained`.
    evicted_through: u64,
    /// The last sequence number handed out, and the last one committed.
    assigned: u64,
    committed: u64,
    /// Recorded since the last commit, not yet written.
    pending: Vec<Record>,
    /// Written and fsynced for the commit in progress: `(records, file length before)`.
    written: Option<(Vec<Record>, u64)>,
    live: broadcast::Sender<Arc<SegmentEvent>>,
    limits: FilterLimits,
}

impl Core {
    fn record(&mut self, event: SegmentEvent, definition: Option<SavedSegment>) {
        self.pending.push(Record::Event { event, definition });
    }

    fn next_sequence(&mut self) -> u64 {
        self.assigned += 1;
        self.assigned
    }

    fn retain(&mut self, event: Arc<SegmentEvent>) {
        self.retained.push_back(event);
        while self.retained.len() > self.config.retained_events {
            if let Some(old) = self.retained.pop_front() {
                self.evicted_through = self.evicted_through.max(old.sequence);
                self.retained_definitions.remove(&old.sequence);
            }
        }
    }

    /// Applies a record to the in-memory state (on load, and once its commit succeeded).
    fn apply(&mut self, record: Record, publish: bool) {
        match record {
            Record::Horizon { evicted_through } => {
                self.evicted_through = self.evicted_through.max(evicted_through);
            }
            Record::Event { event, definition } => {
                self.assigned = self.assigned.max(event.sequence);
                self.committed = self.committed.max(event.sequence);
                let mut saved = None;
                match (event.kind, definition) {
                    (EventKind::SegmentUpdated, Some(definition)) => {
                        match parse_filter(&definition.filter, &self.limits) {
                            Ok(filter) => {
                                saved = Some(definition.clone());
                                self.segments.insert(
                                    definition.name.clone(),
                                    Compiled {
                                        definition,
                                        filter,
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
                if publish {
                    let _ = self.live.send(event);
                }
            }
        }
    }

    /// The file's contents after compaction: the horizon, the definitions saved before it,
    /// and the retained events.
    fn compacted(&self) -> Vec<Record> {
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
            });
        }
        for event in &self.retained {
            records.push(Record::Event {
                event: (**event).clone(),
                definition: self.retained_definitions.get(&event.sequence).cloned(),
            });
        }
        records
    }
}

/// Opens the log and returns the store's shared state. `index` is the freshly opened index: its
/// last commit says which logged events belong to committed changes.
fn open_core(
    dir: &Path,
    index: &UserIndex,
    config: SegmentsConfig,
    limits: FilterLimits,
) -> Result<Core, SegmentError> {
    let snapshot = index.snapshot();
    // A brand-new (or rebuilt) index has no checkpoint: keep the log as it is.
    let checkpoint = (snapshot.freshness.generation > 0).then_some(snapshot.event_sequence);
    let (file, records) = LogFile::open(dir, checkpoint)?;
    let (live, _) = broadcast::channel(4096);
    let mut core = Core {
        file,
        config,
        segments: BTreeMap::new(),
        retained: VecDeque::new(),
        retained_definitions: BTreeMap::new(),
        evicted_through: 0,
        assigned: 0,
        committed: 0,
        pending: Vec::new(),
        written: None,
        live,
        limits,
    };
    for record in records {
        core.apply(record, false);
    }
    tracing::info!(
        segments = core.segments.len(),
        retained_events = core.retained.len(),
        last_sequence = core.committed,
        "saved segments loaded"
    );
    Ok(core)
}

/// The writer-side half: sees every applied change.
pub struct SegmentsObserver {
    core: Arc<Mutex<Core>>,
}

fn lock(core: &Mutex<Core>) -> MutexGuard<'_, Core> {
    core.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
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
        let now = now_ms();
        let mut events = Vec::new();
        for compiled in core.segments.values() {
            let was = previous
                .as_ref()
                .is_some_and(|u| matches(&compiled.filter, u, now));
            let is = current.is_some_and(|u| matches(&compiled.filter, u, now));
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
        if core.file.records > 2 * core.config.retained_events + core.segments.len() + 1_000 {
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

/// The service-side half: definitions, counts, watches.
#[derive(Clone)]
pub struct Segments {
    core: Arc<Mutex<Core>>,
    writer: WriterHandle,
    /// Ends every watch (the server is stopping).
    shutdown: CancellationToken,
    /// Cluster mode: the definitions every replica shares (see [`shared`]).
    shared: Option<crate::cluster::SegmentBucket>,
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
    core: Arc<Mutex<Core>>,
}

/// Valid names: 1-64 of `a-z`, `0-9`, `-`, `_`, starting with a letter or digit.
fn check_name(name: &str) -> Result<(), SegmentError> {
    let valid = (1..=64).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
        && name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric());
    if valid {
        Ok(())
    } else {
        Err(SegmentError::Invalid(format!(
            "segment name {name:?}: use 1-64 lower-case letters, digits, '-' and '_', starting with a letter or digit"
        )))
    }
}

/// The ids matching `filter` on `snapshot`, in id order.
fn member_ids(
    snapshot: &Arc<Snapshot>,
    filter: &Filter,
    now: i64,
) -> Result<Vec<String>, IndexError> {
    let mut export = snapshot.export(Some(filter), None, now)?;
    let total = export.total() as usize;
    Ok(export
        .next_chunk(total)?
        .into_iter()
        .map(|(id, _)| id)
        .collect())
}

impl Segments {
    pub fn new(
        handle: SegmentsHandle,
        writer: WriterHandle,
        shutdown: CancellationToken,
    ) -> Segments {
        Segments {
            core: handle.core,
            writer,
            shutdown,
            shared: None,
        }
    }

    /// Cluster mode: definitions are saved in `bucket` and followed from it.
    pub fn with_shared(mut self, bucket: crate::cluster::SegmentBucket) -> Segments {
        self.shared = Some(bucket);
        self
    }

    pub fn get(&self, name: &str) -> Result<(SavedSegment, Filter), SegmentError> {
        let core = lock(&self.core);
        core.segments
            .get(name)
            .map(|c| (c.definition.clone(), c.filter.clone()))
            .ok_or_else(|| SegmentError::NotFound(name.to_string()))
    }

    /// Every segment with its parsed filter, by name.
    pub fn list(&self) -> Vec<(SavedSegment, Filter)> {
        lock(&self.core)
            .segments
            .values()
            .map(|c| (c.definition.clone(), c.filter.clone()))
            .collect()
    }

    /// The last committed event sequence.
    pub fn last_sequence(&self) -> u64 {
        lock(&self.core).committed
    }

    pub async fn create(
        &self,
        name: String,
        description: String,
        filter: Filter,
    ) -> Result<SavedSegment, SegmentError> {
        check_name(&name)?;
        let text = to_text(&filter).map_err(|e| SegmentError::Invalid(format!("filter: {e}")))?;
        if let Some(bucket) = &self.shared {
            return self.create_shared(bucket, name, description, text).await;
        }
        let core = self.core.clone();
        self.writer
            .exclusive(move |snapshot| {
                let mut core = lock(&core);
                if core.segments.contains_key(&name) {
                    return Err(SegmentError::AlreadyExists(name));
                }
                if core.segments.len() >= core.config.max_segments {
                    return Err(SegmentError::Invalid(format!(
                        "at most {} segments can be saved",
                        core.config.max_segments
                    )));
                }
                let now = now_ms();
                let definition = SavedSegment {
                    name: name.clone(),
                    description,
                    filter: text,
                    version: 1,
                    created_ms: now,
                    updated_ms: now,
                };
                record_definition(&mut core, snapshot, definition.clone(), &filter)?;
                Ok(definition)
            })
            .await?
    }

    /// Changes a segment's description and/or filter. A new filter emits Entered/Exited events
    /// for every user whose membership it changes.
    pub async fn update(
        &self,
        name: String,
        description: Option<String>,
        filter: Option<Filter>,
        expected_version: u64,
    ) -> Result<SavedSegment, SegmentError> {
        let text = filter
            .as_ref()
            .map(to_text)
            .transpose()
            .map_err(|e| SegmentError::Invalid(format!("filter: {e}")))?;
        if let Some(bucket) = &self.shared {
            return self
                .update_shared(bucket, name, description, text, expected_version)
                .await;
        }
        let core = self.core.clone();
        self.writer
            .exclusive(move |snapshot| {
                let mut core = lock(&core);
                let current = core
                    .segments
                    .get(&name)
                    .ok_or_else(|| SegmentError::NotFound(name.clone()))?;
                if expected_version != 0 && current.definition.version != expected_version {
                    return Err(SegmentError::VersionMismatch {
                        name,
                        expected: expected_version,
                        actual: current.definition.version,
                    });
                }
                let mut definition = current.definition.clone();
                let mut new_filter = current.filter.clone();
                definition.version += 1;
                definition.updated_ms = now_ms();
                if let Some(description) = description {
                    definition.description = description;
                }
                if let (Some(text), Some(filter)) = (text, filter) {
                    definition.filter = text;
                    new_filter = filter;
                }
                record_definition(&mut core, snapshot, definition.clone(), &new_filter)?;
                Ok(definition)
            })
            .await?
    }

    pub async fn delete(&self, name: String) -> Result<(), SegmentError> {
        if let Some(bucket) = &self.shared {
            return self.delete_shared(bucket, name).await;
        }
        let core = self.core.clone();
        self.writer
            .exclusive(move |_snapshot| {
                let mut core = lock(&core);
                if !core.segments.contains_key(&name) {
                    return Err(SegmentError::NotFound(name));
                }
                let now = now_ms();
                let sequence = core.next_sequence();
                core.record(
                    segment_event(sequence, &name, EventKind::SegmentDeleted, now),
                    None,
                );
                Ok(())
            })
            .await?
    }

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

/// The retained events of `name` after `after`, or why they are gone.
fn backlog(core: &Core, name: &str, after: u64) -> Result<Vec<Arc<SegmentEvent>>, SegmentError> {
    if after < core.evicted_through {
        return Err(SegmentError::OutOfRange(format!(
            "events after sequence {after} are no longer retained (the log starts after {}): list the segment's members again and watch from the event_sequence that listing returns",
            core.evicted_through
        )));
    }
    Ok(core
        .retained
        .iter()
        .filter(|e| e.sequence > after && e.segment == name)
        .cloned()
        .collect())
}

fn segment_event(sequence: u64, name: &str, kind: EventKind, now: i64) -> SegmentEvent {
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

/// Records `definition` as its segment's new state, and when its filter differs from the one in
/// force, the Entered/Exited events of the users whose membership that changes; every event is
/// timed at the definition's `updated_ms` (the same on every replica in cluster mode).
fn record_definition(
    core: &mut Core,
    snapshot: &Arc<Snapshot>,
    definition: SavedSegment,
    filter: &Filter,
) -> Result<(), SegmentError> {
    let changes = match core.segments.get(&definition.name) {
        Some(current) if current.definition.filter != definition.filter => {
            let now = now_ms();
            let before = member_ids(snapshot, &current.filter, now)?;
            let after = member_ids(snapshot, filter, now)?;
            membership_diff(&before, &after)
        }
        _ => Vec::new(),
    };
    let (name, time) = (definition.name.clone(), definition.updated_ms);
    let sequence = core.next_sequence();
    core.record(
        segment_event(sequence, &name, EventKind::SegmentUpdated, time),
        Some(definition),
    );
    for (user_id, kind) in changes {
        let sequence = core.next_sequence();
        let mut event = segment_event(sequence, &name, kind, time);
        event.user_id = user_id;
        core.record(event, None);
    }
    Ok(())
}

/// Users in `after` but not `before` entered; the reverse exited. Both lists are sorted.
fn membership_diff(before: &[String], after: &[String]) -> Vec<(String, EventKind)> {
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

#[cfg(test)]
mod tests;
