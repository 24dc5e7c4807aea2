//! Cluster mode's change log on NATS JetStream: the one stream every replica publishes verified
//! changes to and consumes into its own index.
//!
//! One subject per user (`<name>.changes.<user id>`) with `MaxMsgsPerSubject=1`, so the stream
//! is a compacted latest-state log a new replica replays instead of scanning Clerk; the webhook's
//! `svix-id` is the `Nats-Msg-Id`, so the same delivery published by two replicas is stored once.
//! This module owns the NATS client and the message format; what a replica does with the
//! messages is `sync`'s (see `sync::Replicator`). No consensus of our own: publishing is a
//! compare-and-set on the user's subject, so the log keeps each user's newest state by the index
//! writer's rules (newest `updated_at`, deletions final), and every replica's writer applies the
//! same rules, so the order in which replicas see changes does not matter.

mod coordination;
mod message;
mod segments;

use std::time::Duration;

use async_nats::jetstream::{self, consumer, stream};

pub use coordination::{Coordination, LeaseRevision};
pub use message::{decode, encode};
pub use segments::{SegmentBucket, Stored};

use crate::user::UserChange;

/// Where the cluster's NATS is and what this replica is called in it.
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    /// `nats://host:4222` (several comma-separated; credentials in the URL if needed).
    pub url: String,
    /// Prefix of the stream and subjects, so several deployments can share one NATS.
    pub name: String,
    /// This replica's durable consumer name; stable across restarts (the pod name).
    pub replica_id: String,
    /// How long JetStream remembers message ids for deduplication.
    pub duplicate_window: Duration,
    /// How long the sync lease outlives its holder's last renewal (renewed every third of it).
    pub lease_ttl: Duration,
    /// Copies NATS keeps of the stream and buckets (3 on a three-node NATS cluster).
    pub stream_replicas: usize,
}

impl ClusterConfig {
    pub fn new(url: impl Into<String>, replica_id: impl Into<String>) -> Self {
        ClusterConfig {
            url: url.into(),
            name: "clerk-index".into(),
            replica_id: replica_id.into(),
            duplicate_window: Duration::from_secs(120),
            lease_ttl: Duration::from_secs(15),
            stream_replicas: 1,
        }
    }

    fn stream_name(&self) -> String {
        format!("{}-changes", self.name)
    }

    fn subject_prefix(&self) -> String {
        format!("{}.changes", self.name)
    }

    /// Checks the names NATS will accept, with messages that say which setting is wrong.
    pub fn validate(&self) -> Result<(), String> {
        let token = |value: &str, what: &str| {
            if value.is_empty()
                || !value
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            {
                Err(format!(
                    "{what} must be letters, digits, '-' or '_' (got {value:?})"
                ))
            } else {
                Ok(())
            }
        };
        token(&self.name, "--cluster-name")?;
        token(&self.replica_id, "--replica-id")?;
        if !(1..=5).contains(&self.stream_replicas) {
            return Err(format!(
                "--cluster-stream-replicas must be 1 to 5, as NATS allows (got {})",
                self.stream_replicas
            ));
        }
        if self.lease_ttl < Duration::from_secs(1) {
            return Err(format!(
                "--sync-lease-ttl-secs must be at least 1 (got {} ms)",
                self.lease_ttl.as_millis()
            ));
        }
        if !self.url.starts_with("nats://") && !self.url.starts_with("tls://") {
            return Err(format!(
                "--cluster must be a nats:// or tls:// URL (got {:?})",
                crate::redact::mask_url(&self.url)
            ));
        }
        Ok(())
    }
}

/// What went wrong with the change log.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("cannot reach NATS at {url}: {message}")]
    Connect { url: String, message: String },
    #[error("jetstream {action}: {message}")]
    JetStream {
        action: &'static str,
        message: String,
    },
    #[error("change log message {sequence} is unreadable: {message}")]
    Message { sequence: u64, message: String },
}

fn jetstream_error(action: &'static str) -> impl Fn(String) -> ClusterError {
    move |message| ClusterError::JetStream { action, message }
}

/// The connected change log. Cheap to clone.
#[derive(Clone)]
pub struct ChangeLog {
    jetstream: jetstream::Context,
    /// Shared: the handle carries the stream's whole info.
    stream: std::sync::Arc<stream::Stream>,
    coordination: Coordination,
    segments: SegmentBucket,
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
    /// The log already holds this state or a newer one (`UserChange::supersedes`): nothing new
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
        config.validate().map_err(|message| ClusterError::Connect {
            url: crate::redact::mask_url(&config.url),
            message,
        })?;
        let client = async_nats::ConnectOptions::new()
            .name(format!("clerk-index {}", config.replica_id))
            .connection_timeout(Duration::from_secs(5))
            .connect(config.url.as_str())
            .await
            .map_err(|e| ClusterError::Connect {
                url: crate::redact::mask_url(&config.url),
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
        Ok(ChangeLog {
            jetstream,
            stream: std::sync::Arc::new(stream),
            coordination,
            segments,
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
        change: &UserChange,
        message_id: Option<&str>,
    ) -> Result<Published, ClusterError> {
        let (mut headers, payload) = encode(change);
        if let Some(id) = message_id.filter(|id| !id.is_empty()) {
            headers.insert("Nats-Msg-Id", id);
        }
        let subject = format!(
            "{}.{}",
            self.config.subject_prefix(),
            message::subject_token(change.user_id())
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
            change.user_id()
        )))
    }

    /// The latest message on a user's subject: its sequence and change (or why it is unreadable,
    /// in which case anything may replace it).
    async fn latest(
        &self,
        subject: &str,
    ) -> Result<Option<(u64, Result<UserChange, String>)>, ClusterError> {
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_nats_would_refuse_are_refused_by_name_and_passwords_never_shown() {
        let config = |url: &str, id: &str| ClusterConfig::new(url, id).validate();
        assert_eq!(config("nats://127.0.0.1:4222", "clerk-index-0"), Ok(()));
        assert_eq!(config("tls://a:4222,tls://b:4222", "r_1"), Ok(()));
        assert!(
            config("nats://h:4222", "pod.0")
                .unwrap_err()
                .contains("--replica-id")
        );
        assert!(
            config("nats://h:4222", "")
                .unwrap_err()
                .contains("--replica-id")
        );
        let mut replicated = ClusterConfig::new("nats://h:4222", "r");
        replicated.stream_replicas = 3;
        assert_eq!(replicated.validate(), Ok(()));
        replicated.stream_replicas = 7;
        assert!(
            replicated
                .validate()
                .unwrap_err()
                .contains("--cluster-stream-replicas")
        );
        let mut short = ClusterConfig::new("nats://h:4222", "r");
        short.lease_ttl = Duration::from_millis(500);
        assert!(
            short
                .validate()
                .unwrap_err()
                .contains("--sync-lease-ttl-secs")
        );
        let error = config("http://app:s3cret@h:4222", "r").unwrap_err();
        assert!(
            error.contains("--cluster") && !error.contains("s3cret"),
            "{error}"
        );
        assert_eq!(
            crate::redact::mask_url("nats://app:s3cret@a:4222,nats://token@b:4222,nats://c:4222"),
            "nats://app:***@a:4222,nats://***@b:4222,nats://c:4222"
        );
    }
}
