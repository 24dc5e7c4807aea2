//! Cluster mode's change log on NATS JetStream: the one stream every replica publishes verified
//! changes to and consumes into its own index.
//!
//! One subject per user (`<name>.changes.<user id>`) with `MaxMsgsPerSubject=1`, so the stream
//! is a compacted latest-state log a new replica replays instead of scanning Clerk; the webhook's
//! `svix-id` is the `Nats-Msg-Id`, so the same delivery published by two replicas is stored once.
//! This module owns the NATS client and the message format; what a replica does with the
//! messages is `sync`'s (see `sync::Replicator`). This file only declares and re-exports. No consensus of our own: publishing is a
//! compare-and-set on the user's subject, so the log keeps each user's newest state by the index
//! writer's rules (newest `updated_at`, deletions final), and every replica's writer applies the
//! same rules, so the order in which replicas see changes does not matter.

mod config;
mod coordination;
mod destinations;
mod error;
mod log;
mod message;
mod segments;

pub use config::{ClusterConfig, ClusterConfigError};
pub use coordination::{Coordination, LeaseRevision};
pub use destinations::{DestinationBucket, StreamRead};
pub use error::ClusterError;
pub use log::{ChangeLog, Outcome, Published};
pub use message::{MessageError, decode, decode_tick, encode};
pub use segments::{SegmentBucket, Stored};
