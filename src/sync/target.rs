//! Where backfill and reconcile put what they copy from Clerk, and where their checkpoint
//! ([`SyncState`]) lives:
//! - single mode: the local index, with the checkpoint in its commit payload next to the data;
//! - cluster mode, on the replica holding the sync lease: the change log (every replica applies
//!   it), with the checkpoint in the shared KV key, written only while this replica's lease term
//!   lasts (a write that finds someone else's checkpoint ends the term).
//!
//! And where every replica reads where sync stands ([`SyncStateView`]): the commit payload, or
//! the shared checkpoint as last polled.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures_util::StreamExt;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::backfill::BackfillProgress;
use super::replicate::Replicator;
use super::state::SyncState;
use crate::cluster::{ChangeLog, Coordination};
use crate::error::Error;
use crate::index::{Snapshot, UserIndex, WriterHandle};
use crate::user::UserChange;

/// Changes published to the log at once by the lease holder.
const PUBLISH_CONCURRENCY: usize = 64;

/// How long a comparison waits for this replica's index to hold what it published.
const LOCAL_APPLY_TIMEOUT: Duration = Duration::from_secs(60);

/// The destination of backfill and reconcile.
#[derive(Clone)]
pub enum SyncTarget {
    Index {
        writer: WriterHandle,
        index: UserIndex,
    },
    Log(Arc<LogTarget>),
}

impl SyncTarget {
    /// Where sync stands.
    pub async fn state(&self) -> Result<SyncState, Error> {
        match self {
            SyncTarget::Index { index, .. } => {
                Ok(SyncState::from_payload(&index.snapshot().sync_state))
            }
            SyncTarget::Log(log) => log.state().await,
        }
    }

    /// Records changes, and with `state` the checkpoint that follows them, without waiting for
    /// the local index to commit them.
    pub async fn submit(
        &self,
        changes: Vec<UserChange>,
        state: Option<&SyncState>,
    ) -> Result<(), Error> {
        self.record(changes, state, false).await
    }

    /// Records changes and the checkpoint and waits until they are durable: committed to the
    /// index, or acknowledged by JetStream and the shared checkpoint.
    pub async fn apply(
        &self,
        changes: Vec<UserChange>,
        state: Option<&SyncState>,
    ) -> Result<(), Error> {
        self.record(changes, state, true).await
    }

    async fn record(
        &self,
        changes: Vec<UserChange>,
        state: Option<&SyncState>,
        wait_for_commit: bool,
    ) -> Result<(), Error> {
        let payload = state.map(SyncState::to_payload);
        match self {
            SyncTarget::Index { writer, .. } if wait_for_commit => {
                writer.apply(changes, payload).await?;
                Ok(())
            }
            SyncTarget::Index { writer, .. } => Ok(writer.submit(changes, payload).await?),
            // Acknowledged publishes are durable: there is nothing more to wait for.
            SyncTarget::Log(log) => log.record(changes, state).await,
        }
    }

    /// The index to compare Clerk with; in cluster mode, once it holds everything this replica
    /// published.
    pub async fn snapshot(&self) -> Result<Arc<Snapshot>, Error> {
        match self {
            SyncTarget::Index { index, .. } => Ok(index.snapshot()),
            SyncTarget::Log(log) => log.snapshot().await,
        }
    }
}

/// Cluster mode's destination: the change log, while this replica holds the sync lease.
pub struct LogTarget {
    log: Arc<ChangeLog>,
    replicator: Arc<Replicator>,
    index: UserIndex,
    term: std::sync::Mutex<Option<Term>>,
    /// The newest sequence published for sync, which comparisons wait for locally.
    published: AtomicU64,
}

/// One lease term: the checkpoint as this replica last read or wrote it.
struct Term {
    state: SyncState,
    revision: u64,
    /// Cancelled when the term ends because the checkpoint moved on without us.
    ended: CancellationToken,
}

impl LogTarget {
    pub fn new(log: Arc<ChangeLog>, replicator: Arc<Replicator>, index: UserIndex) -> Arc<Self> {
        Arc::new(LogTarget {
            log,
            replicator,
            index,
            term: std::sync::Mutex::new(None),
            published: AtomicU64::new(0),
        })
    }

    pub fn coordination(&self) -> &Coordination {
        self.log.coordination()
    }

    pub fn log(&self) -> &ChangeLog {
        &self.log
    }

    /// Starts a lease term: reads the shared checkpoint to resume from. `ended` is cancelled if
    /// the term ends early (another replica wrote the checkpoint).
    pub async fn begin(&self, ended: CancellationToken) -> Result<(), Error> {
        let (value, revision) = self
            .coordination()
            .checkpoint()
            .await
            .map_err(|e| Error::Unavailable(e.to_string()))?;
        let state = value
            .map(|value| SyncState::from_payload(&value))
            .unwrap_or_default();
        *self.term.lock().expect("term lock") = Some(Term {
            state,
            revision,
            ended,
        });
        Ok(())
    }

    /// Ends the lease term: nothing more is recorded until the next one.
    pub fn end(&self) {
        if let Some(term) = self.term.lock().expect("term lock").take() {
            term.ended.cancel();
        }
    }

    /// Whether this replica is in a lease term.
    pub fn holding(&self) -> bool {
        self.term.lock().expect("term lock").is_some()
    }

    async fn state(&self) -> Result<SyncState, Error> {
        let state = self
            .term
            .lock()
            .expect("term lock")
            .as_ref()
            .map(|term| term.state.clone());
        match state {
            Some(state) => Ok(state),
            None => Err(self.not_holding().await),
        }
    }

    /// Why this replica may not copy from Clerk now, naming the replica that may.
    async fn not_holding(&self) -> Error {
        let holder = match self.coordination().holder().await {
            Ok(Some(holder)) => format!("replica {holder:?} holds it"),
            Ok(None) => "no replica holds it right now".into(),
            Err(error) => format!("its holder is unknown ({error})"),
        };
        Error::FailedPrecondition(format!(
            "only the replica holding the sync lease copies from Clerk, and {holder}"
        ))
    }

    async fn record(
        &self,
        changes: Vec<UserChange>,
        state: Option<&SyncState>,
    ) -> Result<(), Error> {
        if !self.holding() {
            return Err(self.not_holding().await);
        }
        let log = &self.log;
        let mut published = futures_util::stream::iter(changes)
            .map(|change| async move { log.publish(&change, None).await })
            .buffer_unordered(PUBLISH_CONCURRENCY);
        while let Some(result) = published.next().await {
            let sequence = result
                .map_err(|e| Error::Unavailable(e.to_string()))?
                .sequence;
            self.published.fetch_max(sequence, Ordering::Relaxed);
        }
        let Some(state) = state else { return Ok(()) };
        let mut shared = state.clone();
        // Which log sequence an index holds is each replica's own business.
        shared.stream_sequence = 0;
        let revision = match self.term.lock().expect("term lock").as_ref() {
            Some(term) => term.revision,
            None => return Err(self.not_holding_now()),
        };
        let stored = self
            .coordination()
            .store_checkpoint(&shared.to_payload(), revision)
            .await
            .map_err(|e| Error::Unavailable(e.to_string()))?;
        let mut term = self.term.lock().expect("term lock");
        match (stored, term.as_mut()) {
            (Some(revision), Some(term)) => {
                term.state = shared;
                term.revision = revision;
                Ok(())
            }
            _ => {
                tracing::warn!(
                    "the sync checkpoint was written by another replica: this one no longer holds the sync lease"
                );
                if let Some(term) = term.take() {
                    term.ended.cancel();
                }
                Err(self.not_holding_now())
            }
        }
    }

    fn not_holding_now(&self) -> Error {
        Error::FailedPrecondition("this replica's sync lease term ended".into())
    }

    async fn snapshot(&self) -> Result<Arc<Snapshot>, Error> {
        let published = self.published.load(Ordering::Relaxed);
        tokio::time::timeout(LOCAL_APPLY_TIMEOUT, self.replicator.wait_for(published))
            .await
            .map_err(|_| {
                Error::Unavailable(format!(
                    "this replica has not applied change log sequence {published} within {} s",
                    LOCAL_APPLY_TIMEOUT.as_secs()
                ))
            })?;
        Ok(self.index.snapshot())
    }
}

/// Where every replica reads where sync stands.
#[derive(Clone)]
pub enum SyncStateView {
    /// The index's commit payload (single mode).
    Index(UserIndex),
    /// The shared checkpoint, as last polled (cluster mode).
    Shared(watch::Receiver<SyncState>),
}

impl SyncStateView {
    pub fn current(&self) -> SyncState {
        match self {
            SyncStateView::Index(index) => SyncState::from_payload(&index.snapshot().sync_state),
            SyncStateView::Shared(shared) => shared.borrow().clone(),
        }
    }
}

/// Cluster mode: keeps `shared` (and the backfill numbers in `progress`) up to date with the
/// shared checkpoint, polling it every second until cancelled.
pub async fn follow_shared_state(
    coordination: Coordination,
    shared: watch::Sender<SyncState>,
    progress: Arc<BackfillProgress>,
    cancel: CancellationToken,
) {
    let mut failing = false;
    loop {
        match coordination.checkpoint().await {
            Ok((value, _)) => {
                failing = false;
                let state = value
                    .map(|value| SyncState::from_payload(&value))
                    .unwrap_or_default();
                progress
                    .users_seen
                    .fetch_max(state.backfill.users_seen, Ordering::Relaxed);
                progress
                    .users_total
                    .fetch_max(state.backfill.users_total, Ordering::Relaxed);
                shared.send_if_modified(|current| {
                    let changed = *current != state;
                    *current = state;
                    changed
                });
            }
            Err(error) if !failing => {
                failing = true;
                tracing::warn!(%error, "cannot read the shared sync checkpoint; retrying");
            }
            Err(_) => {}
        }
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
}
