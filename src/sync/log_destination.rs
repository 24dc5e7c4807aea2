//! Cluster mode's [`super::ChangeDestination`]: the change log on JetStream.
//!
//! Any replica publishes what it receives (webhooks, write-through); a publish is acknowledged
//! once JetStream has it, and every replica's [`Replicator`] applies it. What is copied from
//! Clerk (backfill, reconcile) is published only by the replica holding the sync lease, during
//! its lease term, with the sync checkpoint in the shared KV key: written compare-and-set with
//! the revision of the current term, so a write that finds someone else's checkpoint ends the
//! term instead of overwriting a successor's progress.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::progress::BackfillProgress;
use super::recorded::Recorded;
use super::replicate::Replicator;
use super::state::SyncState;
use crate::change::{Change, ChangeSource, UserChange};
use crate::cluster::{ChangeLog, Coordination, Outcome};
use crate::error::Error;
use crate::index::{Sealer, UserIndex};

/// Changes published to the log at once.
const PUBLISH_CONCURRENCY: usize = 64;

/// The change log as a destination, with this replica's lease term and view of the shared
/// checkpoint.
pub struct LogDestination {
    log: ChangeLog,
    replicator: Arc<Replicator>,
    index: UserIndex,
    term: Mutex<Option<Term>>,
    /// The newest sequence this replica published, which comparisons wait for locally.
    published: AtomicU64,
    /// The shared checkpoint as last read (every replica follows it; the holder writes it).
    shared: watch::Sender<SyncState>,
    /// Seals sensitive values before they are published.
    sealer: Option<Arc<dyn Sealer>>,
}

/// One lease term: the checkpoint as this replica last read or wrote it.
struct Term {
    state: SyncState,
    revision: u64,
    /// Cancelled when the term ends because the checkpoint moved on without us.
    ended: CancellationToken,
}

impl LogDestination {
    /// `sealer` seals sensitive values before a change is published (every replica opens them
    /// with the same key ring).
    pub fn new(
        log: ChangeLog,
        replicator: Arc<Replicator>,
        index: UserIndex,
        sealer: Option<Arc<dyn Sealer>>,
    ) -> Arc<Self> {
        Arc::new(LogDestination {
            log,
            replicator,
            index,
            sealer,
            term: Mutex::new(None),
            published: AtomicU64::new(0),
            shared: watch::Sender::new(SyncState::default()),
        })
    }

    pub fn coordination(&self) -> &Coordination {
        self.log.coordination()
    }

    pub fn log(&self) -> &ChangeLog {
        &self.log
    }

    pub fn replicator(&self) -> &Arc<Replicator> {
        &self.replicator
    }

    pub fn index(&self) -> &UserIndex {
        &self.index
    }

    /// The shared checkpoint as last read, notified when it changes.
    pub fn shared_state(&self) -> watch::Receiver<SyncState> {
        self.shared.subscribe()
    }

    fn lock_term(&self) -> std::sync::MutexGuard<'_, Option<Term>> {
        self.term
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Starts a lease term: reads the shared checkpoint to resume from. `ended` is cancelled if
    /// the term ends early (another replica wrote the checkpoint).
    pub async fn begin(&self, ended: CancellationToken) -> Result<(), Error> {
        let (value, revision) = self.coordination().checkpoint().await?;
        let state = value
            .map(|value| SyncState::from_payload(&value))
            .unwrap_or_default();
        *self.lock_term() = Some(Term {
            state,
            revision,
            ended,
        });
        Ok(())
    }

    /// Ends the lease term: nothing more is copied from Clerk until the next one.
    pub fn end(&self) {
        if let Some(term) = self.lock_term().take() {
            term.ended.cancel();
        }
    }

    /// Whether this replica is in a lease term.
    pub fn holding(&self) -> bool {
        self.lock_term().is_some()
    }

    /// The checkpoint of this replica's term, or the shared one as last read.
    pub(super) fn state(&self) -> SyncState {
        match self.lock_term().as_ref() {
            Some(term) => term.state.clone(),
            None => self.shared.borrow().clone(),
        }
    }

    /// The newest sequence this replica published.
    pub(super) fn published(&self) -> Recorded {
        Recorded::Logged {
            sequence: self.published.load(Ordering::Relaxed),
            outcome: Outcome::Stored,
        }
    }

    /// `Ok` while this replica holds the sync lease; otherwise why not, naming the holder.
    pub(super) async fn check_holding(&self) -> Result<(), Error> {
        if self.holding() {
            return Ok(());
        }
        let holder = match self.coordination().holder().await {
            Ok(Some(holder)) => format!("replica {holder:?} holds it"),
            Ok(None) => "no replica holds it right now".into(),
            Err(error) => format!("its holder is unknown ({error})"),
        };
        Err(Error::FailedPrecondition(format!(
            "only the replica holding the sync lease copies from Clerk, and {holder}"
        )))
    }

    /// Publishes `changes` (at most [`PUBLISH_CONCURRENCY`] at once) and stores `checkpoint`.
    /// What sync copied from Clerk, and any checkpoint, is recorded only during a lease term.
    pub(super) async fn record(
        &self,
        changes: Vec<Change>,
        checkpoint: Option<&SyncState>,
        delivery_id: Option<&str>,
    ) -> Result<Recorded, Error> {
        let copied = changes.iter().any(|change| {
            matches!(
                change.source(),
                ChangeSource::Backfill | ChangeSource::Reconcile
            )
        });
        if copied || checkpoint.is_some() {
            self.check_holding().await?;
        }
        let changes = match &self.sealer {
            Some(sealer) => changes
                .into_iter()
                .map(|change| seal(sealer.as_ref(), change))
                .collect::<Result<Vec<_>, _>>()?,
            None => changes,
        };
        let log = &self.log;
        let mut published = futures_util::stream::iter(changes)
            .map(|change| async move { log.publish(&change, delivery_id).await })
            .buffer_unordered(PUBLISH_CONCURRENCY);
        let mut last: Option<Recorded> = None;
        while let Some(result) = published.next().await {
            let done = result?;
            self.published.fetch_max(done.sequence, Ordering::Relaxed);
            last = Some(match last {
                Some(Recorded::Logged { sequence, outcome }) => Recorded::Logged {
                    sequence: sequence.max(done.sequence),
                    outcome: if outcome == Outcome::Stored {
                        outcome
                    } else {
                        done.outcome
                    },
                },
                _ => Recorded::Logged {
                    sequence: done.sequence,
                    outcome: done.outcome,
                },
            });
        }
        if let Some(state) = checkpoint {
            self.store_checkpoint(state).await?;
        }
        Ok(last.unwrap_or_else(|| self.published()))
    }
}

/// `change` with its user's sensitive values sealed.
fn seal(sealer: &dyn Sealer, change: Change) -> Result<Change, Error> {
    let Change::User(UserChange::Upsert { user, source }) = change else {
        return Ok(change);
    };
    let user = sealer.seal(user)?;
    Ok(Change::User(UserChange::Upsert { user, source }))
}

impl LogDestination {
    async fn store_checkpoint(&self, state: &SyncState) -> Result<(), Error> {
        let mut shared = state.clone();
        // Which log sequence an index holds is each replica's own business.
        shared.stream_sequence = 0;
        let revision = match self.lock_term().as_ref() {
            Some(term) => term.revision,
            None => return Err(term_ended()),
        };
        let stored = self
            .coordination()
            .store_checkpoint(&shared.to_payload(), revision)
            .await?;
        let mut term = self.lock_term();
        match (stored, term.as_mut()) {
            (Some(revision), Some(term)) => {
                term.state = shared.clone();
                term.revision = revision;
                self.shared.send_replace(shared);
                Ok(())
            }
            _ => {
                tracing::warn!(
                    "the sync checkpoint was written by another replica: this one no longer holds the sync lease"
                );
                if let Some(term) = term.take() {
                    term.ended.cancel();
                }
                Err(term_ended())
            }
        }
    }

    /// Keeps the shared checkpoint (and the backfill numbers in `progress`) up to date, reading
    /// it every second until cancelled.
    pub async fn follow_shared_state(
        &self,
        progress: Arc<BackfillProgress>,
        cancel: CancellationToken,
    ) {
        let mut failing = false;
        loop {
            match self.coordination().checkpoint().await {
                Ok((value, _)) => {
                    failing = false;
                    let state = value
                        .map(|value| SyncState::from_payload(&value))
                        .unwrap_or_default();
                    progress.saw(&state.backfill);
                    self.shared.send_if_modified(|current| {
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
}

fn term_ended() -> Error {
    Error::FailedPrecondition("this replica's sync lease term ended".into())
}
