//! Saved segments in cluster mode: the definitions live in a KV bucket (`<name>-segments`, one
//! key per segment, the definition's JSON as value), so every replica evaluates the same ones;
//! and membership events go to the stream `<name>-segment-events` on subjects
//! `<name>.segments.<segment>.<kind>`, for other systems to consume. Every replica publishes the
//! events it computes with a message id derived from the event itself, so JetStream stores each
//! once however many replicas saw it. This module only moves bytes; `segments` owns their meaning.

use std::time::Duration;

use async_nats::jetstream::{self, kv, stream};
use bytes::Bytes;
use futures_util::StreamExt;

use super::config::ClusterConfig;
use super::error::{ClusterError, jetstream_error};

/// How long the events stream keeps events for consumers.
const EVENT_RETENTION: Duration = Duration::from_secs(7 * 24 * 3600);

/// A definition as the bucket holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stored {
    /// The latest value and its revision.
    Value(Bytes, u64),
    /// Deleted, at this revision.
    Deleted(u64),
}

/// The definitions bucket and the events stream.
#[derive(Clone)]
pub struct SegmentBucket {
    store: kv::Store,
    jetstream: jetstream::Context,
    subject_prefix: String,
}

impl SegmentBucket {
    pub(super) async fn open(
        jetstream: &jetstream::Context,
        config: &ClusterConfig,
    ) -> Result<SegmentBucket, ClusterError> {
        let store = super::coordination::open_bucket(
            jetstream,
            config,
            format!("{}-segments", config.name),
            "clerk-index saved segment definitions",
            Duration::ZERO,
        )
        .await?;
        let subject_prefix = format!("{}.segments", config.name);
        let events = stream::Config {
            name: format!("{}-segment-events", config.name),
            description: Some("clerk-index segment membership events".into()),
            subjects: vec![format!("{subject_prefix}.>")],
            max_age: EVENT_RETENTION,
            storage: stream::StorageType::File,
            duplicate_window: config.duplicate_window,
            num_replicas: config.stream_replicas,
            ..Default::default()
        };
        if jetstream.update_stream(&events).await.is_err() {
            jetstream
                .create_stream(events)
                .await
                .map_err(|e| jetstream_error("create the segment events stream")(e.to_string()))?;
        }
        Ok(SegmentBucket {
            store,
            jetstream: jetstream.clone(),
            subject_prefix,
        })
    }

    /// A segment's definition; `None` if it was never saved (or its history is gone).
    pub async fn get(&self, name: &str) -> Result<Option<Stored>, ClusterError> {
        let entry = self
            .store
            .entry(name)
            .await
            .map_err(|e| jetstream_error("read a segment")(e.to_string()))?;
        Ok(entry.map(|entry| match entry.operation {
            kv::Operation::Put => Stored::Value(entry.value, entry.revision),
            kv::Operation::Delete | kv::Operation::Purge => Stored::Deleted(entry.revision),
        }))
    }

    /// Saves a definition if the segment is still at `revision` (0: never saved); `None` when
    /// it changed meanwhile.
    pub async fn put(
        &self,
        name: &str,
        value: Bytes,
        revision: u64,
    ) -> Result<Option<u64>, ClusterError> {
        match self.store.update(name, value, revision).await {
            Ok(revision) => Ok(Some(revision)),
            Err(error) if error.kind() == kv::UpdateErrorKind::WrongLastRevision => Ok(None),
            Err(error) => Err(jetstream_error("save a segment")(error.to_string())),
        }
    }

    /// Deletes a segment if it is still at `revision`; `false` when it changed meanwhile.
    pub async fn delete(&self, name: &str, revision: u64) -> Result<bool, ClusterError> {
        match self
            .store
            .delete_expect_revision(name, Some(revision))
            .await
        {
            Ok(()) => Ok(true),
            Err(error) if error.kind() == kv::DeleteErrorKind::WrongLastRevision => Ok(false),
            Err(error) => Err(jetstream_error("delete a segment")(error.to_string())),
        }
    }

    /// Every definition's latest state (deletions included), then every change as it happens.
    /// Ends with an error when the connection does; the caller starts again.
    pub async fn watch(
        &self,
    ) -> Result<
        impl futures_util::Stream<Item = Result<(String, Stored), ClusterError>> + use<>,
        ClusterError,
    > {
        let watch = self
            .store
            .watch_with_history(">")
            .await
            .map_err(|e| jetstream_error("watch the segments")(e.to_string()))?;
        Ok(watch.map(|entry| {
            let entry = entry.map_err(|e| jetstream_error("watch the segments")(e.to_string()))?;
            let stored = match entry.operation {
                kv::Operation::Put => Stored::Value(entry.value, entry.revision),
                kv::Operation::Delete | kv::Operation::Purge => Stored::Deleted(entry.revision),
            };
            Ok((entry.key, stored))
        }))
    }

    /// Publishes one event on `<name>.segments.<segment>.<kind>`; `message_id` makes the copies
    /// other replicas publish of the same event collapse into one.
    pub async fn publish_event(
        &self,
        segment: &str,
        kind: &str,
        message_id: &str,
        payload: Bytes,
    ) -> Result<(), ClusterError> {
        let message = jetstream::message::PublishMessage::build()
            .payload(payload)
            .message_id(message_id);
        self.jetstream
            .send_publish(format!("{}.{segment}.{kind}", self.subject_prefix), message)
            .await
            .map_err(|e| jetstream_error("publish a segment event")(e.to_string()))?
            .await
            .map_err(|e| jetstream_error("publish a segment event")(e.to_string()))?;
        Ok(())
    }
}
