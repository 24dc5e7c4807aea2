//! Where every change goes to become durable, chosen once at start:
//! - one process: the local index writer, with the sync checkpoint in the commit payload next
//!   to the data it describes;
//! - cluster mode: the change log (see [`LogDestination`]), from which every replica's index
//!   follows, with the sync checkpoint in the shared KV key while this replica holds the lease.
//!
//! Every source writes through a [`ChangeDestination`]: webhooks, backfill, reconcile,
//! write-through and re-sealing. A write returns once the changes are durable (committed, or
//! acknowledged by JetStream), or, for bulk loads, once queued; [`ChangeDestination::applied`]
//! is the one wait for this replica's index to hold what was recorded.

use std::sync::Arc;

use super::log_destination::LogDestination;
use super::recorded::{LOCAL_APPLY_TIMEOUT, Recorded};
use super::state::SyncState;
use crate::change::Change;
use crate::error::Error;
use crate::index::{Checkpoint, Snapshot, UserIndex, WriterHandle};

/// The durable destination of changes. Cheap to clone.
#[derive(Clone)]
pub struct ChangeDestination {
    to: To,
}

#[derive(Clone)]
enum To {
    Index {
        writer: WriterHandle,
        index: UserIndex,
    },
    Log(Arc<LogDestination>),
}

impl ChangeDestination {
    /// One process: changes go straight to this index's writer.
    pub fn index(writer: WriterHandle, index: UserIndex) -> ChangeDestination {
        ChangeDestination {
            to: To::Index { writer, index },
        }
    }

    /// Cluster mode: changes go to the change log.
    pub fn log(log: Arc<LogDestination>) -> ChangeDestination {
        ChangeDestination { to: To::Log(log) }
    }

    /// Cluster mode's destination, for the lease and status; `None` in one process.
    pub fn cluster(&self) -> Option<&Arc<LogDestination>> {
        match &self.to {
            To::Index { .. } => None,
            To::Log(log) => Some(log),
        }
    }

    /// This replica's index.
    pub fn local_index(&self) -> &UserIndex {
        match &self.to {
            To::Index { index, .. } => index,
            To::Log(log) => log.index(),
        }
    }

    /// Records `changes` and, with `checkpoint`, the sync state that follows them; returns once
    /// they are durable.
    pub async fn record(
        &self,
        changes: Vec<Change>,
        checkpoint: Option<&SyncState>,
    ) -> Result<Recorded, Error> {
        self.write(changes, checkpoint, None, true).await
    }

    /// Like [`ChangeDestination::record`], but returns once the changes are queued: bulk loads
    /// (backfill pages) do not wait for each commit. Each batch carries the checkpoint after it,
    /// so whichever commit lands last holds a checkpoint consistent with its data.
    pub async fn queue(
        &self,
        changes: Vec<Change>,
        checkpoint: Option<&SyncState>,
    ) -> Result<(), Error> {
        self.write(changes, checkpoint, None, false).await?;
        Ok(())
    }

    /// Records one delivered change durably; `delivery_id` (a webhook's `svix-id`) lets the
    /// change log store a delivery made to two replicas once.
    pub async fn record_delivery(
        &self,
        change: Change,
        delivery_id: &str,
    ) -> Result<Recorded, Error> {
        self.write(vec![change], None, Some(delivery_id), true)
            .await
    }

    async fn write(
        &self,
        changes: Vec<Change>,
        checkpoint: Option<&SyncState>,
        delivery_id: Option<&str>,
        wait: bool,
    ) -> Result<Recorded, Error> {
        match &self.to {
            To::Index { writer, index } => {
                let payload = checkpoint.map(|state| Checkpoint {
                    state: state.to_payload(),
                    epoch: state.epoch,
                });
                let generation = if wait {
                    writer.apply(changes, payload).await?
                } else {
                    writer.submit(changes, payload).await?;
                    index.snapshot().freshness.generation
                };
                Ok(Recorded::Committed { generation })
            }
            // Acknowledged publishes are durable: there is nothing more to wait for.
            To::Log(log) => log.record(changes, checkpoint, delivery_id).await,
        }
    }

    /// Starts a bulk load (the backfill) of about `expected` users, when known: the local
    /// index commits by size and merges small segments only until
    /// [`ChangeDestination::finish_bulk_load`]. Cluster mode: nothing (each replica's index
    /// follows the change log with its usual commits and merges).
    pub async fn begin_bulk_load(&self, expected: Option<u64>) -> Result<(), Error> {
        match &self.to {
            To::Index { writer, .. } => Ok(writer.begin_bulk_load(expected).await?),
            To::Log(_) => Ok(()),
        }
    }

    /// Ends a bulk load: what is queued is committed, and the local index is merged once into
    /// its serving layout before this returns.
    pub async fn finish_bulk_load(&self) -> Result<(), Error> {
        match &self.to {
            To::Index { writer, .. } => writer
                .finish_bulk_load()
                .await
                .map(drop)
                .map_err(Into::into),
            To::Log(_) => Ok(()),
        }
    }

    /// Waits until this replica's index holds what was recorded (at most
    /// [`LOCAL_APPLY_TIMEOUT`]); returns the index generation that does.
    pub async fn applied(&self, recorded: Recorded) -> Result<u64, Error> {
        match (&self.to, recorded) {
            (_, Recorded::Committed { generation }) => Ok(generation),
            (To::Log(log), Recorded::Logged { sequence, .. }) => {
                tokio::time::timeout(LOCAL_APPLY_TIMEOUT, log.replicator().wait_for(sequence))
                    .await
                    .map_err(|_| {
                        Error::Unavailable(format!(
                            "the change log has the change (sequence {sequence}), but this \
                             replica has not applied it within {} s",
                            LOCAL_APPLY_TIMEOUT.as_secs()
                        ))
                    })
            }
            (To::Index { .. }, Recorded::Logged { .. }) => Err(Error::Internal(
                "a change log sequence was given to a destination without a change log".into(),
            )),
        }
    }

    /// This replica's index once it holds everything recorded through this destination (what
    /// a sweep compares Clerk with).
    pub async fn snapshot(&self) -> Result<Arc<Snapshot>, Error> {
        match &self.to {
            To::Index { index, .. } => Ok(index.snapshot()),
            To::Log(log) => {
                self.applied(log.published()).await?;
                Ok(log.index().snapshot())
            }
        }
    }

    /// Where sync stands: the commit payload, or in cluster mode the checkpoint of this
    /// replica's lease term (the shared one, as last read, when it holds none).
    pub fn state(&self) -> SyncState {
        match &self.to {
            To::Index { index, writer } => {
                // The epoch first: a loss between the two reads only makes it look older.
                let epoch = writer.losses();
                SyncState {
                    epoch,
                    ..SyncState::from_payload(&index.snapshot().sync_state)
                }
            }
            To::Log(log) => log.state(),
        }
    }

    /// `Ok` when this replica may copy from Clerk now: always in one process; in cluster mode
    /// only while it holds the sync lease (the error names the replica that does).
    pub async fn check_copies_from_clerk(&self) -> Result<(), Error> {
        match &self.to {
            To::Index { .. } => Ok(()),
            To::Log(log) => log.check_holding().await,
        }
    }
}
