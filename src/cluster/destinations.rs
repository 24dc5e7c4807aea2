//! Destinations in cluster mode: their definitions and delivery positions live in a KV bucket
//! (`<name>-destinations`, one key per destination, compare-and-set on every write), and they
//! deliver from the shared segment events stream (`<name>-segment-events`), whose sequence is
//! the position every replica agrees on. This module only moves bytes; `destinations` owns their
//! meaning.

use std::time::Duration;

use async_nats::jetstream::{self, consumer, kv, stream};
use bytes::Bytes;
use futures_util::StreamExt;

use super::config::ClusterConfig;
use super::error::{ClusterError, jetstream_error};

/// How long a read waits for the messages the stream said it holds.
const READ_WAIT: Duration = Duration::from_millis(500);

/// Messages read from the events stream after a position.
#[derive(Debug, Default)]
pub struct StreamRead {
    /// Sequence, time stored (Unix milliseconds) and payload of each message, in order.
    pub messages: Vec<(u64, i64, Bytes)>,
    /// The last sequence read (the position itself when nothing was).
    pub through: u64,
    /// The stream's oldest and newest sequences when the read began.
    pub first: u64,
    pub last: u64,
}

/// The destinations bucket and a reader of the events stream.
#[derive(Clone)]
pub struct DestinationBucket {
    store: kv::Store,
    jetstream: jetstream::Context,
    events_stream: String,
    events_subject: String,
}

impl DestinationBucket {
    pub(super) async fn open(
        jetstream: &jetstream::Context,
        config: &ClusterConfig,
    ) -> Result<DestinationBucket, ClusterError> {
        let store = super::coordination::open_bucket(
            jetstream,
            config,
            format!("{}-destinations", config.name),
            "clerk-index segment destinations and their delivery positions",
            Duration::ZERO,
        )
        .await?;
        Ok(DestinationBucket {
            store,
            jetstream: jetstream.clone(),
            events_stream: format!("{}-segment-events", config.name),
            events_subject: format!("{}.segments.>", config.name),
        })
    }

    /// A destination's value and revision; `None` when there is none.
    pub async fn get(&self, name: &str) -> Result<Option<(Bytes, u64)>, ClusterError> {
        let entry = self
            .store
            .entry(name)
            .await
            .map_err(|e| jetstream_error("read a destination")(e.to_string()))?;
        Ok(entry
            .filter(|entry| entry.operation == kv::Operation::Put)
            .map(|entry| (entry.value, entry.revision)))
    }

    /// Saves a destination if it is still at `revision` (0: it must not exist); `None` when it
    /// changed meanwhile (or exists, for a create).
    pub async fn put(
        &self,
        name: &str,
        value: Bytes,
        revision: u64,
    ) -> Result<Option<u64>, ClusterError> {
        if revision == 0 {
            return match self.store.create(name, value).await {
                Ok(revision) => Ok(Some(revision)),
                Err(error) if error.kind() == kv::CreateErrorKind::AlreadyExists => Ok(None),
                Err(error) => Err(jetstream_error("create a destination")(error.to_string())),
            };
        }
        match self.store.update(name, value, revision).await {
            Ok(revision) => Ok(Some(revision)),
            Err(error) if error.kind() == kv::UpdateErrorKind::WrongLastRevision => Ok(None),
            Err(error) => Err(jetstream_error("save a destination")(error.to_string())),
        }
    }

    pub async fn delete(&self, name: &str) -> Result<(), ClusterError> {
        self.store
            .delete(name)
            .await
            .map_err(|e| jetstream_error("delete a destination")(e.to_string()))
    }

    /// Every destination's latest value (`None`: deleted) with its revision, then every change
    /// as it happens. Ends with an error when the connection does; the caller starts again.
    pub async fn watch(
        &self,
    ) -> Result<
        impl futures_util::Stream<Item = Result<(String, Option<Bytes>, u64), ClusterError>> + use<>,
        ClusterError,
    > {
        let watch = self
            .store
            .watch_with_history(">")
            .await
            .map_err(|e| jetstream_error("watch the destinations")(e.to_string()))?;
        Ok(watch.map(|entry| {
            let entry =
                entry.map_err(|e| jetstream_error("watch the destinations")(e.to_string()))?;
            let value = (entry.operation == kv::Operation::Put).then_some(entry.value);
            Ok((entry.key, value, entry.revision))
        }))
    }

    /// The newest sequence of the events stream (0 when it never held one).
    pub async fn last_event_sequence(&self) -> Result<u64, ClusterError> {
        let mut stream = self.events().await?;
        let info = stream
            .info()
            .await
            .map_err(|e| jetstream_error("read the segment events stream")(e.to_string()))?;
        Ok(info.state.last_sequence)
    }

    /// Up to `limit` messages of the events stream after sequence `after`, every segment's
    /// (the caller keeps its own), with the stream's bounds; nothing is read when `after` is
    /// older than the oldest message kept (the caller has a gap).
    pub async fn read_events(&self, after: u64, limit: usize) -> Result<StreamRead, ClusterError> {
        let failed = |e: String| jetstream_error("read the segment events stream")(e);
        let mut stream = self.events().await?;
        let state = stream.info().await.map_err(|e| failed(e.to_string()))?;
        let (first, last) = (state.state.first_sequence, state.state.last_sequence);
        let mut read = StreamRead {
            through: after,
            first,
            last,
            ..StreamRead::default()
        };
        if last <= after || after + 1 < first {
            return Ok(read);
        }
        let consumer = stream
            .create_consumer(consumer::pull::Config {
                deliver_policy: consumer::DeliverPolicy::ByStartSequence {
                    start_sequence: after + 1,
                },
                ack_policy: consumer::AckPolicy::None,
                inactive_threshold: Duration::from_secs(30),
                ..Default::default()
            })
            .await
            .map_err(|e| failed(e.to_string()))?;
        let wanted = limit.min((last - after) as usize).max(1);
        let mut batch = consumer
            .batch()
            .max_messages(wanted)
            .expires(READ_WAIT)
            .messages()
            .await
            .map_err(|e| failed(e.to_string()))?;
        while let Some(message) = batch.next().await {
            let message = message.map_err(|e| failed(e.to_string()))?;
            let info = message.info().map_err(|e| failed(e.to_string()))?;
            let (sequence, stored_ms) = (
                info.stream_sequence,
                (info.published.unix_timestamp_nanos() / 1_000_000) as i64,
            );
            read.through = read.through.max(sequence);
            read.messages
                .push((sequence, stored_ms, message.payload.clone()));
            if read.messages.len() >= wanted {
                break;
            }
        }
        drop(batch);
        let name = consumer.cached_info().name.clone();
        let _ = stream.delete_consumer(&name).await;
        Ok(read)
    }

    /// A subscription to every event as it is published (a hint to read again: it carries no
    /// stream sequence).
    pub async fn subscribe_events(&self) -> Result<async_nats::Subscriber, ClusterError> {
        self.jetstream
            .client()
            .subscribe(self.events_subject.clone())
            .await
            .map_err(|e| jetstream_error("subscribe to the segment events")(e.to_string()))
    }

    async fn events(&self) -> Result<stream::Stream, ClusterError> {
        self.jetstream
            .get_stream(&self.events_stream)
            .await
            .map_err(|e| jetstream_error("open the segment events stream")(e.to_string()))
    }
}
