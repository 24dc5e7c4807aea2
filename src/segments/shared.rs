//! Cluster mode: the segment definitions live in the cluster's KV bucket, so every replica
//! evaluates the same ones. An edit is a compare-and-set on the bucket (a version mismatch or a
//! concurrent edit is caught there, whichever replica took the other call), then installed in
//! this replica's store at once (read-your-writes); every replica follows the bucket
//! ([`Segments::follow_shared`]) and installs what the others saved, computing the
//! Entered/Exited events on its own index. [`Segments::publish_events`] sends those events to the
//! cluster's events stream with a message id made of the event itself, so each is stored once.

use std::collections::BTreeMap;
use std::sync::Mutex;

use bytes::Bytes;
use futures_util::StreamExt;
use tokio_util::sync::CancellationToken;

use super::core::{Core, check_name, lock, record_definition, segment_event};
use super::error::SegmentError;
use super::model::{EventKind, SavedSegment};
use super::service::Segments;
use crate::clock::now_ms;
use crate::cluster::{ClusterError, SegmentBucket, Stored};
use crate::query::{parse_filter, references};

fn unavailable(error: ClusterError) -> SegmentError {
    SegmentError::Unavailable(error.to_string())
}

/// Whether every segment `definition` refers to is installed.
fn references_installed(core: &Mutex<Core>, definition: &SavedSegment) -> bool {
    let core = lock(core);
    parse_filter(&definition.filter, &core.limits.stored()).is_ok_and(|filter| {
        references(&filter)
            .iter()
            .all(|r| core.segments.contains_key(r))
    })
}

fn to_bytes(definition: &SavedSegment) -> Bytes {
    Bytes::from(serde_json::to_vec(definition).expect("a segment definition serializes"))
}

impl Segments {
    pub(super) async fn create_shared(
        &self,
        bucket: &SegmentBucket,
        name: String,
        description: String,
        filter: String,
    ) -> Result<SavedSegment, SegmentError> {
        let max = lock(&self.core).config.max_segments;
        if self.list().len() >= max {
            return Err(SegmentError::TooMany(max));
        }
        let now = now_ms();
        let definition = SavedSegment {
            name: name.clone(),
            description,
            filter,
            version: 1,
            created_ms: now,
            updated_ms: now,
        };
        let revision = match bucket.get(&name).await.map_err(unavailable)? {
            Some(Stored::Value(..)) => return Err(SegmentError::AlreadyExists(name)),
            Some(Stored::Deleted(revision)) => revision,
            None => 0,
        };
        let saved = bucket
            .put(&name, to_bytes(&definition), revision)
            .await
            .map_err(unavailable)?;
        if saved.is_none() {
            return Err(SegmentError::AlreadyExists(name));
        }
        self.install(definition.clone()).await?;
        Ok(definition)
    }

    pub(super) async fn update_shared(
        &self,
        bucket: &SegmentBucket,
        name: String,
        description: Option<String>,
        filter: Option<String>,
        expected_version: u64,
    ) -> Result<SavedSegment, SegmentError> {
        loop {
            let (current, revision) = match bucket.get(&name).await.map_err(unavailable)? {
                Some(Stored::Value(bytes, revision)) => {
                    let current: SavedSegment = serde_json::from_slice(&bytes).map_err(|e| {
                        SegmentError::Unavailable(format!("segment {name:?} is unreadable: {e}"))
                    })?;
                    (current, revision)
                }
                _ => return Err(SegmentError::NotFound(name)),
            };
            if expected_version != 0 && current.version != expected_version {
                return Err(SegmentError::VersionMismatch {
                    name,
                    expected: expected_version,
                    actual: current.version,
                });
            }
            let mut definition = current.clone();
            definition.version += 1;
            definition.updated_ms = now_ms().max(current.updated_ms + 1);
            if let Some(description) = &description {
                definition.description = description.clone();
            }
            if let Some(filter) = &filter {
                definition.filter = filter.clone();
            }
            // Another replica saved it in between: read it again (and check the version again).
            if bucket
                .put(&name, to_bytes(&definition), revision)
                .await
                .map_err(unavailable)?
                .is_some()
            {
                self.install(definition.clone()).await?;
                return Ok(definition);
            }
        }
    }

    pub(super) async fn delete_shared(
        &self,
        bucket: &SegmentBucket,
        name: String,
    ) -> Result<(), SegmentError> {
        loop {
            let revision = match bucket.get(&name).await.map_err(unavailable)? {
                Some(Stored::Value(_, revision)) => revision,
                _ => return Err(SegmentError::NotFound(name)),
            };
            if bucket.delete(&name, revision).await.map_err(unavailable)? {
                return self.uninstall(name).await;
            }
        }
    }

    /// Makes this replica's store hold `definition` as saved in the bucket. A definition older
    /// than the one installed (a late watch delivery after this replica's own edit) is ignored.
    async fn install(&self, definition: SavedSegment) -> Result<(), SegmentError> {
        check_name(&definition.name)?;
        let limits = lock(&self.core).limits;
        let filter = parse_filter(&definition.filter, &limits.stored())
            .map_err(|e| SegmentError::invalid("filter", format!("filter: {e}")))?;
        // A segment built on one this replica has not installed yet waits for it (the bucket
        // delivers the latest revision of each key, so a referenced segment edited after its
        // referrer was saved arrives after it).
        if let Some(missing) = (references(&filter).into_iter())
            .find(|name| !lock(&self.core).segments.contains_key(name))
        {
            return Err(SegmentError::NotFound(missing));
        }
        let core = self.core.clone();
        self.writer
            .exclusive(move |snapshot| {
                let mut core = lock(&core);
                let installed = core.segments.get(&definition.name).map(|c| &c.definition);
                if installed.is_some_and(|c| *c == definition || c.version > definition.version) {
                    return Ok(());
                }
                // The clock moves only by the log's ticks here, the same on every replica.
                record_definition(&mut core, snapshot, definition, &filter)
            })
            .await?
    }

    /// Removes a segment deleted from the bucket, if this replica has it.
    async fn uninstall(&self, name: String) -> Result<(), SegmentError> {
        let core = self.core.clone();
        self.writer
            .exclusive(move |_snapshot| {
                let mut core = lock(&core);
                if core.segments.contains_key(&name) {
                    let sequence = core.next_sequence();
                    core.record(
                        segment_event(sequence, &name, EventKind::SegmentDeleted, now_ms()),
                        None,
                    );
                }
                Ok(())
            })
            .await?
    }

    /// Cluster mode: installs what the bucket holds and every later edit, until cancelled. First
    /// uploads segments saved on this replica before cluster mode that the cluster never had.
    pub async fn follow_shared(self, cancel: CancellationToken) {
        let Some(bucket) = self.shared.clone() else {
            return;
        };
        for (definition, _) in self.list() {
            if let Ok(None) = bucket.get(&definition.name).await {
                tracing::info!(segment = %definition.name, "sharing a segment saved before cluster mode");
                let _ = bucket.put(&definition.name, to_bytes(&definition), 0).await;
            }
        }
        // Definitions waiting for a segment they refer to, by name.
        let mut waiting: BTreeMap<String, SavedSegment> = BTreeMap::new();
        while !cancel.is_cancelled() {
            match bucket.watch().await {
                Ok(watch) => {
                    let mut watch = std::pin::pin!(watch);
                    loop {
                        let next = tokio::select! {
                            _ = cancel.cancelled() => return,
                            next = watch.next() => next,
                        };
                        match next {
                            Some(Ok((name, stored))) => {
                                self.apply_stored(name, stored, &mut waiting).await
                            }
                            Some(Err(error)) => {
                                tracing::warn!(%error, "segment definitions watch failed");
                                break;
                            }
                            None => break,
                        }
                    }
                }
                Err(error) => tracing::warn!(%error, "cannot watch the segment definitions"),
            }
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tokio::time::sleep(std::time::Duration::from_secs(1)) => {}
            }
        }
    }

    async fn apply_stored(
        &self,
        name: String,
        stored: Stored,
        waiting: &mut BTreeMap<String, SavedSegment>,
    ) {
        waiting.remove(&name);
        let result = match stored {
            Stored::Value(bytes, _) => match serde_json::from_slice::<SavedSegment>(&bytes) {
                Ok(definition) if definition.name == name => {
                    self.install_or_wait(definition, waiting).await
                }
                Ok(_) | Err(_) => Err(SegmentError::Unavailable(
                    "its stored definition is unreadable".into(),
                )),
            },
            Stored::Deleted(_) => self.uninstall(name.clone()).await,
        };
        if let Err(error) = result {
            tracing::error!(segment = %name, %error, "could not install a shared segment definition");
        }
        // What waited may now find what it refers to (passes until one installs nothing more).
        loop {
            let ready: Vec<SavedSegment> = (waiting.values())
                .filter(|d| references_installed(&self.core, d))
                .cloned()
                .collect();
            let before = waiting.len();
            for definition in ready {
                waiting.remove(&definition.name);
                let ready_name = definition.name.clone();
                if let Err(error) = self.install_or_wait(definition, waiting).await {
                    tracing::error!(segment = %ready_name, %error, "could not install a shared segment definition");
                }
            }
            if waiting.len() >= before {
                break;
            }
        }
    }

    /// Installs `definition`, or keeps it in `waiting` while a segment it refers to is missing.
    async fn install_or_wait(
        &self,
        definition: SavedSegment,
        waiting: &mut BTreeMap<String, SavedSegment>,
    ) -> Result<(), SegmentError> {
        match self.install(definition.clone()).await {
            Err(SegmentError::NotFound(missing)) => {
                tracing::info!(segment = %definition.name, %missing, "a shared segment waits for one it refers to");
                waiting.insert(definition.name.clone(), definition);
                Ok(())
            }
            other => other,
        }
    }

    /// Cluster mode: publishes this replica's Entered/Exited events to the cluster's events
    /// stream until cancelled. Events this replica misses (it fell behind by more than the live
    /// channel holds, or was down) are published by the replicas that did not.
    pub async fn publish_events(self, cancel: CancellationToken) {
        let Some(bucket) = self.shared.clone() else {
            return;
        };
        let mut live = lock(&self.core).live.subscribe();
        loop {
            let event = tokio::select! {
                _ = cancel.cancelled() => return,
                event = live.recv() => event,
            };
            let event = match event {
                Ok(event) => event,
                Err(tokio::sync::broadcast::error::RecvError::Lagged(missed)) => {
                    tracing::warn!(
                        missed,
                        "segment events were not published from this replica"
                    );
                    continue;
                }
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
            };
            let kind = match event.kind {
                EventKind::Entered => "entered",
                EventKind::Exited => "exited",
                EventKind::SegmentUpdated | EventKind::SegmentDeleted => continue,
            };
            // The same on every replica that computed it; the local sequence is not.
            let message_id = format!(
                "{}.{kind}.{}.{}",
                event.segment, event.user_id, event.change_time_ms
            );
            let payload = serde_json::json!({
                "segment": event.segment,
                "kind": kind,
                "user_id": event.user_id,
                "change_time_ms": event.change_time_ms,
                "cause": event.cause,
            });
            let payload = Bytes::from(payload.to_string());
            if let Err(error) = bucket
                .publish_event(&event.segment, kind, &message_id, payload)
                .await
            {
                tracing::warn!(%error, segment = %event.segment, "could not publish a segment event");
            }
        }
    }
}
