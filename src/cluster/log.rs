//! The change log: the one stream every replica publishes verified changes to and consumes into
//! its own index, with compare-and-set publishing so it keeps each key's newest state.

use std::time::Duration;

use async_nats::jetstream::{self, consumer, stream};

use super::config::ClusterConfig;
use super::coordination::Coordination;
use super::destinations::DestinationBucket;
use super::error::{ClusterError, jetstream_error};
use super::message::{MessageError, decode, encode, subject_token};
use super::segments::SegmentBucket;
use crate::change::Change;
use crate::redact::mask_url;

/// The connected change log. Cheap to clone.
#[derive(Clone)]
pub struct ChangeLog {
    jetstream: jetstream::Context,
    /// Shared: the handle carries the stream's whole info.
    stream: std::sync::Arc<stream::Stream>,
    coordination: Coordination,
    segments: SegmentBucket,
    destinations: DestinationBucket,
    config: ClusterConfig,
}

/// Where a published change landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Published {
    /// The change's sequence; for a superseded change, the sequence of the state the log keeps.
    pub sequence: u64,
    pub outcome: Outcome,
}

/// What publishing did to the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The change is now the user's latest state.
    Stored,
    /// JetStream already held a message with this id: nothing new was stored.
    Duplicate,
    /// The log already holds this state or a newer one (`Change::supersedes`): nothing new
    /// was stored, so a late or repeated change cannot overwrite a newer one.
    Superseded,
}

impl Outcome {
    pub fn name(self) -> &'static str {
        match self {
            Outcome::Stored => "stored",
            Outcome::Duplicate => "duplicate",
            Outcome::Superseded => "superseded",
        }
    }
}

/// How often a publish re-reads the user's latest state after losing a race for it.
const PUBLISH_ATTEMPTS: usize = 16;

impl ChangeLog {
    /// Connects and creates (or updates) the stream. An unreachable NATS fails the start (the
    /// orchestrator restarts the pod), with the URL, password masked, in the message.
    pub async fn connect(config: ClusterConfig) -> Result<ChangeLog, ClusterError> {
        config.validate()?;
        let client = async_nats::ConnectOptions::new()
            .name(format!("clerk-index {}", config.replica_id))
            .connection_timeout(Duration::from_secs(5))
            .connect(config.url.as_str())
            .await
            .map_err(|e| ClusterError::Connect {
                url: mask_url(&config.url),
                message: e.to_string(),
            })?;
        let jetstream = jetstream::new(client);
        let stream_config = stream::Config {
            name: config.stream_name(),
            subjects: vec![format!("{}.>", config.subject_prefix())],
            max_messages_per_subject: 1,
            storage: stream::StorageType::File,
            duplicate_window: config.duplicate_window,
            discard: stream::DiscardPolicy::Old,
            num_replicas: config.stream_replicas,
            ..Default::default()
        };
        // Update first: a stream made by an older version gets the current settings.
        if jetstream.update_stream(&stream_config).await.is_err() {
            jetstream
                .create_stream(stream_config.clone())
                .await
                .map_err(|e| jetstream_error("create stream")(e.to_string()))?;
        }
        let stream = jetstream
            .get_stream(&stream_config.name)
            .await
            .map_err(|e| jetstream_error("open stream")(e.to_string()))?;
        let coordination = Coordination::open(&jetstream, &config).await?;
        let segments = SegmentBucket::open(&jetstream, &config).await?;
        let destinations = DestinationBucket::open(&jetstream, &config).await?;
        Ok(ChangeLog {
            jetstream,
            stream: std::sync::Arc::new(stream),
            coordination,
            segments,
            destinations,
            config,
        })
    }
}

impl ChangeLog {
    /// Publishes a change and waits for JetStream's acknowledgement: after it, the change is
    /// stored (replicated, with a clustered NATS) and every replica will apply it. `message_id`
    /// deduplicates (the webhook's `svix-id`).
    ///
    /// The stream keeps one message per user, so it must never keep an older state than one it
    /// was given: the user's latest message is read first, a change that does not supersede it
    /// is not published, and the publish expects that message to still be the latest
    /// (`Nats-Expected-Last-Subject-Sequence`), re-reading when another publisher won the race.
    /// That makes the log agree with every replica's index under any delivery order.
    pub async fn publish(
        &self,
        change: &Change,
        message_id: Option<&str>,
    ) -> Result<Published, ClusterError> {
        let (mut headers, payload) = encode(change);
        if let Some(id) = message_id.filter(|id| !id.is_empty()) {
            headers.insert("Nats-Msg-Id", id);
        }
        let subject = format!(
            "{}.{}",
            self.config.subject_prefix(),
            subject_token(change.key())
        );
        for _ in 0..PUBLISH_ATTEMPTS {
            let expected = match self.latest(&subject).await? {
                None => 0,
                Some((sequence, Ok(held))) if !change.supersedes(&held) => {
                    return Ok(Published {
                        sequence,
                        outcome: Outcome::Superseded,
                    });
                }
                Some((sequence, _)) => sequence,
            };
            let message = jetstream::message::PublishMessage::build()
                .headers(headers.clone())
                .payload(payload.clone())
                .expected_last_subject_sequence(expected);
            let acked = self
                .jetstream
                .send_publish(subject.clone(), message)
                .await
                .map_err(|e| jetstream_error("publish")(e.to_string()))?
                .await;
            match acked {
                Ok(ack) => {
                    return Ok(Published {
                        sequence: ack.sequence,
                        outcome: if ack.duplicate {
                            Outcome::Duplicate
                        } else {
                            Outcome::Stored
                        },
                    });
                }
                Err(error)
                    if error.kind() == jetstream::context::PublishErrorKind::WrongLastSequence => {}
                Err(error) => {
                    return Err(jetstream_error("publish acknowledgement")(
                        error.to_string(),
                    ));
                }
            }
        }
        Err(jetstream_error("publish")(format!(
            "user {} changed concurrently {PUBLISH_ATTEMPTS} times in a row",
            change.key()
        )))
    }

    /// Publishes a segment tick (see `segments/tick.rs`): every replica moves its time-driven
    /// segments to `at_ms` when it reaches this position of the log, so all of them record the
    /// same events. One tick per instant is stored (the message id), and only the latest is
    /// kept.
    pub async fn publish_tick(&self, at_ms: i64) -> Result<u64, ClusterError> {
        let (mut headers, payload) = super::message::encode_tick(at_ms);
        headers.insert("Nats-Msg-Id", format!("segment-tick.{at_ms}").as_str());
        let subject = format!(
            "{}.{}",
            self.config.subject_prefix(),
            super::message::TICK_TOKEN
        );
        let ack = self
            .jetstream
            .publish_with_headers(subject, headers, payload)
            .await
            .map_err(|e| jetstream_error("publish a tick")(e.to_string()))?
            .await
            .map_err(|e| jetstream_error("tick acknowledgement")(e.to_string()))?;
        Ok(ack.sequence)
    }

    /// The latest message on a user's subject: its sequence and change (or why it is unreadable,
    /// in which case anything may replace it).
    async fn latest(
        &self,
        subject: &str,
    ) -> Result<Option<(u64, Result<Change, MessageError>)>, ClusterError> {
        match self.stream.get_last_raw_message_by_subject(subject).await {
            Ok(message) => Ok(Some((
                message.sequence,
                decode(Some(&message.headers), &message.payload),
            ))),
            Err(error) if error.kind() == stream::LastRawMessageErrorKind::NoMessageFound => {
                Ok(None)
            }
            Err(error) => Err(jetstream_error("read the user's latest change")(
                error.to_string(),
            )),
        }
    }

    /// The sequence of the newest message in the stream (0 when empty).
    pub async fn last_sequence(&self) -> Result<u64, ClusterError> {
        let mut stream = stream::Stream::clone(&self.stream);
        let info = stream
            .info()
            .await
            .map_err(|e| jetstream_error("stream info")(e.to_string()))?;
        Ok(info.state.last_sequence)
    }

    /// This replica's durable consumer, (re)created to deliver from `from_sequence` on: the
    /// index, not the consumer, knows what is durably applied, so a restart starts over from it.
    pub async fn consumer_from(
        &self,
        from_sequence: u64,
    ) -> Result<consumer::Consumer<consumer::pull::Config>, ClusterError> {
        let name = format!("replica-{}", self.config.replica_id);
        // Absent on a first start; any other problem shows up when creating it.
        let _ = self.stream.delete_consumer(&name).await;
        let deliver_policy = if from_sequence <= 1 {
            consumer::DeliverPolicy::All
        } else {
            consumer::DeliverPolicy::ByStartSequence {
                start_sequence: from_sequence,
            }
        };
        self.stream
            .create_consumer(consumer::pull::Config {
                durable_name: Some(name),
                description: Some("a clerk-index replica's copy of the change log".into()),
                deliver_policy,
                ack_policy: consumer::AckPolicy::None,
                ..Default::default()
            })
            .await
            .map_err(|e| jetstream_error("create consumer")(e.to_string()))
    }

    pub fn config(&self) -> &ClusterConfig {
        &self.config
    }

    /// The sync lease and checkpoint.
    pub fn coordination(&self) -> &Coordination {
        &self.coordination
    }

    /// Saved segment definitions and events.
    pub fn segments(&self) -> &SegmentBucket {
        &self.segments
    }

    /// Destinations and their positions in the segment events stream.
    pub fn destinations(&self) -> &DestinationBucket {
        &self.destinations
    }
}
