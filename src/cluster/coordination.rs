//! What replicas agree on besides the change log, each in a JetStream KV bucket (no consensus of
//! our own):
//! - **the sync lease** (`<name>-lease`, key `sync`): the replica that holds it is the one that
//!   copies from Clerk (backfill and reconcile). Taking it is a create (fails while anyone holds
//!   it); keeping it is an update that names the revision the holder last wrote, so two replicas
//!   can never both extend it. The bucket's `max_age` is the lease TTL: a holder that stops
//!   renewing (killed, partitioned) loses it when its last renewal expires, and another replica's
//!   create succeeds. A clean shutdown deletes it at once.
//! - **the sync checkpoint** (`<name>-sync`, key `checkpoint`): where the shared backfill and
//!   the reconciles stand, so a new lease holder resumes instead of starting over. Written only
//!   with the revision the writer last read or wrote: a holder that lost the lease without
//!   noticing cannot overwrite its successor's progress (its write fails and it stops).

use std::time::Duration;

use async_nats::jetstream::{self, kv};
use bytes::Bytes;

use super::config::ClusterConfig;
use super::error::{ClusterError, jetstream_error};

const LEASE_KEY: &str = "sync";
const CHECKPOINT_KEY: &str = "checkpoint";

/// The lease and checkpoint buckets.
#[derive(Clone)]
pub struct Coordination {
    lease: kv::Store,
    shared: kv::Store,
    replica_id: String,
    ttl: Duration,
}

/// Opens a KV bucket holding one value per key, creating or updating its stream in the KV layout
/// NATS documents (stream `KV_<bucket>` on `$KV.<bucket>.>`), so NATS tools see a KV bucket.
/// The stream is made here rather than by `async-nats`' bucket creation, which first reads the
/// account's limits in a shape nats-server 2.9 does not send.
pub(super) async fn open_bucket(
    jetstream: &jetstream::Context,
    cluster: &ClusterConfig,
    bucket: String,
    description: &str,
    max_age: Duration,
) -> Result<kv::Store, ClusterError> {
    let config = jetstream::stream::Config {
        name: format!("KV_{bucket}"),
        description: Some(description.into()),
        subjects: vec![format!("$KV.{bucket}.>")],
        max_messages_per_subject: 1,
        max_age,
        storage: jetstream::stream::StorageType::File,
        allow_rollup: true,
        deny_delete: true,
        allow_direct: true,
        discard: jetstream::stream::DiscardPolicy::New,
        num_replicas: cluster.stream_replicas,
        ..Default::default()
    };
    if jetstream.update_stream(&config).await.is_err() {
        jetstream
            .create_stream(config)
            .await
            .map_err(|e| jetstream_error("create a KV bucket")(format!("{bucket}: {e}")))?;
    }
    jetstream
        .get_key_value(bucket.as_str())
        .await
        .map_err(|e| jetstream_error("open a KV bucket")(format!("{bucket}: {e}")))
}

/// A held lease: the revision its holder last wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaseRevision(pub u64);

impl Coordination {
    pub(super) async fn open(
        jetstream: &jetstream::Context,
        config: &ClusterConfig,
    ) -> Result<Coordination, ClusterError> {
        let lease = open_bucket(
            jetstream,
            config,
            format!("{}-lease", config.name),
            "which clerk-index replica copies from Clerk",
            config.lease_ttl,
        )
        .await?;
        let shared = open_bucket(
            jetstream,
            config,
            format!("{}-sync", config.name),
            "where the clerk-index backfill and reconciles stand",
            Duration::ZERO,
        )
        .await?;
        Ok(Coordination {
            lease,
            shared,
            replica_id: config.replica_id.clone(),
            ttl: config.lease_ttl,
        })
    }

    /// How long a lease lasts without renewal.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    pub fn replica_id(&self) -> &str {
        &self.replica_id
    }

    /// Takes the lease if nobody holds it, or if it is still this replica's from before (a
    /// restart within the TTL, or a term this replica ended after failed renewals): replica
    /// ids are unique, so the lease under this replica's name is this replica's.
    pub async fn acquire(&self) -> Result<Option<LeaseRevision>, ClusterError> {
        let me = Bytes::from(self.replica_id.clone());
        match self.lease.create(LEASE_KEY, me).await {
            Ok(revision) => Ok(Some(LeaseRevision(revision))),
            Err(error) if error.kind() == kv::CreateErrorKind::AlreadyExists => Ok(self
                .held_lease()
                .await?
                .filter(|(holder, _)| *holder == self.replica_id)
                .map(|(_, revision)| revision)),
            Err(error) => Err(jetstream_error("take the sync lease")(error.to_string())),
        }
    }

    /// Extends a held lease for another TTL; `None` when it is no longer ours (it expired and
    /// another replica took it).
    pub async fn renew(&self, held: LeaseRevision) -> Result<Option<LeaseRevision>, ClusterError> {
        let me = Bytes::from(self.replica_id.clone());
        match self.lease.update(LEASE_KEY, me, held.0).await {
            Ok(revision) => Ok(Some(LeaseRevision(revision))),
            Err(error) if error.kind() == kv::UpdateErrorKind::WrongLastRevision => Ok(None),
            Err(error) => Err(jetstream_error("renew the sync lease")(error.to_string())),
        }
    }

    /// Gives the lease up (a clean shutdown), so another replica takes over without waiting for
    /// it to expire. Nothing happens if it is no longer ours.
    pub async fn release(&self, held: LeaseRevision) -> Result<(), ClusterError> {
        match self
            .lease
            .delete_expect_revision(LEASE_KEY, Some(held.0))
            .await
        {
            Ok(()) => Ok(()),
            Err(error) if error.kind() == kv::DeleteErrorKind::WrongLastRevision => Ok(()),
            Err(error) => Err(jetstream_error("release the sync lease")(error.to_string())),
        }
    }

    /// The replica holding the lease, if any.
    pub async fn holder(&self) -> Result<Option<String>, ClusterError> {
        Ok(self.held_lease().await?.map(|(holder, _)| holder))
    }

    /// The lease's holder and revision while someone holds it.
    async fn held_lease(&self) -> Result<Option<(String, LeaseRevision)>, ClusterError> {
        let entry = self
            .lease
            .entry(LEASE_KEY)
            .await
            .map_err(|e| jetstream_error("read the sync lease")(e.to_string()))?;
        Ok(entry
            .filter(|entry| entry.operation == kv::Operation::Put)
            .map(|entry| {
                let holder = String::from_utf8_lossy(&entry.value).into_owned();
                (holder, LeaseRevision(entry.revision))
            }))
    }

    /// The shared checkpoint and its revision (`None` and 0 before the first one).
    pub async fn checkpoint(&self) -> Result<(Option<serde_json::Value>, u64), ClusterError> {
        let entry = self
            .shared
            .entry(CHECKPOINT_KEY)
            .await
            .map_err(|e| jetstream_error("read the sync checkpoint")(e.to_string()))?;
        match entry {
            Some(entry) if entry.operation == kv::Operation::Put => {
                let value = serde_json::from_slice(&entry.value).map_err(|e| {
                    jetstream_error("read the sync checkpoint")(format!("not JSON: {e}"))
                })?;
                Ok((Some(value), entry.revision))
            }
            Some(entry) => Ok((None, entry.revision)),
            None => Ok((None, 0)),
        }
    }

    /// Stores the checkpoint if it is still at `revision` (what the caller last read or wrote);
    /// `None` when someone else wrote it since.
    pub async fn store_checkpoint(
        &self,
        value: &serde_json::Value,
        revision: u64,
    ) -> Result<Option<u64>, ClusterError> {
        let bytes = Bytes::from(serde_json::to_vec(value).expect("a checkpoint serializes"));
        match self.shared.update(CHECKPOINT_KEY, bytes, revision).await {
            Ok(revision) => Ok(Some(revision)),
            Err(error) if error.kind() == kv::UpdateErrorKind::WrongLastRevision => Ok(None),
            Err(error) => Err(jetstream_error("store the sync checkpoint")(
                error.to_string(),
            )),
        }
    }
}
