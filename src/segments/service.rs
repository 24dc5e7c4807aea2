//! The service-side half of the store: list, read, create, update and delete definitions.
//! Edits run on the writer thread ([`crate::index::WriterHandle::exclusive`]), so they are
//! ordered with changes; in cluster mode they go through the shared bucket (`shared.rs`).

use std::sync::{Arc, Mutex};

use tokio_util::sync::CancellationToken;

use super::core::{
    Core, check_description, check_name, check_unreferenced, lock, record_definition, segment_event,
};
use super::error::SegmentError;
use super::model::{EventKind, SavedSegment};
use super::observer::SegmentsHandle;
use super::tick::advance;
use crate::clock::now_ms;
use crate::index::WriterHandle;
use crate::query::{Filter, FilterError, to_text};

/// The service-side half: definitions, counts, watches.
#[derive(Clone)]
pub struct Segments {
    pub(super) core: Arc<Mutex<Core>>,
    pub(super) writer: WriterHandle,
    /// Ends every watch (the server is stopping).
    pub(super) shutdown: CancellationToken,
    /// Cluster mode: the definitions every replica shares (see [`shared`]).
    pub(super) shared: Option<crate::cluster::SegmentBucket>,
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
        check_description(&description)?;
        let text = to_text(&filter)
            .map_err(|e| SegmentError::invalid("filter", format!("filter: {e}")))?;
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
                    return Err(SegmentError::TooMany(core.config.max_segments));
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
                let to = core.config.tick_instant();
                advance(&mut core, snapshot, to)?;
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
        if let Some(description) = &description {
            check_description(description)?;
        }
        let text = filter
            .as_ref()
            .map(to_text)
            .transpose()
            .map_err(|e| SegmentError::invalid("filter", format!("filter: {e}")))?;
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
                let (mut definition, mut new_filter) =
                    (current.definition.clone(), current.filter.clone());
                let to = core.config.tick_instant();
                advance(&mut core, snapshot, to)?;
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

    /// `filter` with its `IN SEGMENT` references expanded: as a query (`saved_as` `None`), or
    /// as it would be saved under `saved_as` (a reference back to it is then a cycle).
    pub fn expand(&self, filter: &Filter, saved_as: Option<&str>) -> Result<Filter, FilterError> {
        lock(&self.core).expand(filter, saved_as, saved_as.map(|name| (name, filter)))
    }

    pub async fn delete(&self, name: String) -> Result<(), SegmentError> {
        check_unreferenced(&lock(&self.core), &name)?;
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
                check_unreferenced(&core, &name)?;
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
}
