//! Cluster mode: one replica's copy of the change log. Consumes the stream from the sequence
//! after the last one its index committed (stored in the commit payload, so a restart resumes
//! exactly there and a wiped replica replays everything) and applies each change through the
//! index writer, whose ordering rules (newest `updated_at` wins, tombstones) make the order of
//! the log irrelevant.
//!
//! Batches: what is ready is applied together. While the consumer reports messages still pending
//! after a batch, the replica is behind (a bootstrap): the batch is queued for the writer's size-
//! and age-based commits. When none are pending it is caught up: the batch is committed at once,
//! so a webhook on any replica is searchable on all of them within a commit.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use futures_util::StreamExt;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::state::SyncState;
use crate::change::Change;
use crate::cluster::{ChangeLog, decode, decode_tick};
use crate::index::{Checkpoint, UserIndex, WriterHandle};
use crate::segments::Segments;

/// Messages applied in one writer command at most.
const BATCH: usize = 512;

/// Messages asked for in one pull request.
const PULL_BATCH: usize = 2_048;

/// Consumes the change log into the local index.
pub struct Replicator {
    log: ChangeLog,
    writer: WriterHandle,
    index: UserIndex,
    /// The last sequence handed to the writer (committed or not).
    applied: AtomicU64,
    /// The last sequence known to be committed.
    committed: watch::Sender<u64>,
    /// Messages that could not be read (skipped, logged).
    unreadable: AtomicU64,
    /// The saved segments segment ticks move (set once they exist).
    segments: OnceLock<Segments>,
}

impl Replicator {
    pub fn new(log: ChangeLog, writer: WriterHandle, index: UserIndex) -> Arc<Replicator> {
        let committed = SyncState::from_payload(&index.snapshot().sync_state).stream_sequence;
        Arc::new(Replicator {
            log,
            writer,
            index,
            applied: AtomicU64::new(committed),
            committed: watch::Sender::new(committed),
            unreadable: AtomicU64::new(0),
            segments: OnceLock::new(),
        })
    }

    /// Segment ticks in the log move these segments' clock, in log order.
    pub fn tick_segments(&self, segments: Segments) {
        let _ = self.segments.set(segments);
    }

    /// The sync state to commit once the log is applied through `last`.
    fn checkpoint(&self, last: u64, epoch: u64) -> Checkpoint {
        let mut state = SyncState::from_payload(&self.index.snapshot().sync_state);
        state.stream_sequence = last;
        Checkpoint {
            state: state.to_payload(),
            epoch,
        }
    }

    /// Change-log messages that could not be read and were skipped.
    pub fn unreadable(&self) -> u64 {
        self.unreadable.load(Ordering::Relaxed)
    }

    /// The last change-log sequence this replica's index has committed.
    pub fn committed(&self) -> u64 {
        *self.committed.borrow()
    }

    /// Waits until the index holds every change up to `sequence`; returns the index generation
    /// that does.
    pub async fn wait_for(&self, sequence: u64) -> u64 {
        let mut committed = self.committed.subscribe();
        let _ = committed.wait_for(|c| *c >= sequence).await;
        self.index.snapshot().freshness.generation
    }

    /// Waits until the index holds everything the log held when this was called: the replica's
    /// readiness. Retries while NATS is unreachable.
    pub async fn catch_up(&self, cancel: &CancellationToken) {
        let target = loop {
            match self.log.last_sequence().await {
                Ok(last) => break last,
                Err(error) => {
                    tracing::warn!(%error, "cannot read the change log's length; retrying");
                    tokio::select! {
                        _ = cancel.cancelled() => return,
                        _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                    }
                }
            }
        };
        tracing::info!(
            from = self.committed(),
            to = target,
            "catching up with the change log"
        );
        tokio::select! {
            _ = cancel.cancelled() => {}
            _ = self.wait_for(target) => {
                tracing::info!(sequence = target, "caught up with the change log");
            }
        }
    }

    /// Follows the log until cancelled, reconnecting after errors.
    pub async fn run(self: Arc<Self>, cancel: CancellationToken) {
        while !cancel.is_cancelled() {
            if let Err(error) = self.follow(&cancel).await {
                tracing::warn!(%error, "change log consumer failed; resuming in 1 s");
                tokio::select! {
                    _ = cancel.cancelled() => return,
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
            }
        }
    }

    async fn follow(&self, cancel: &CancellationToken) -> Result<(), String> {
        // From what the index holds, not what was handed to the writer: a failed commit may
        // have lost batches streamed without waiting (their checkpoints carry this epoch).
        let epoch = self.writer.losses();
        let committed = SyncState::log_sequence_of(&self.index.snapshot().sync_state);
        self.applied.store(committed, Ordering::Relaxed);
        let from = committed + 1;
        let consumer = self
            .log
            .consumer_from(from)
            .await
            .map_err(|e| e.to_string())?;
        let messages = consumer
            .stream()
            .max_messages_per_batch(PULL_BATCH)
            .heartbeat(Duration::from_secs(15))
            .messages()
            .await
            .map_err(|e| format!("consume: {e}"))?;
        let mut batches = std::pin::pin!(messages.ready_chunks(BATCH));
        // Queued for the writer but not yet known to be committed.
        let mut uncommitted = false;
        loop {
            let batch = tokio::select! {
                _ = cancel.cancelled() => return Ok(()),
                // A pause after queued batches: the backlog is done, so commit it now.
                _ = tokio::time::sleep(Duration::from_millis(50)), if uncommitted => {
                    self.writer.flush().await.map_err(|e| format!("index: {e}"))?;
                    self.committed.send_replace(self.applied.load(Ordering::Relaxed));
                    uncommitted = false;
                    continue;
                }
                batch = batches.next() => match batch {
                    Some(batch) => batch,
                    None => return Err("the consumer ended".into()),
                },
            };
            let mut changes: Vec<Change> = Vec::with_capacity(batch.len());
            let mut last = None;
            // Messages the log holds beyond this batch: more to come, so no commit yet.
            let mut behind = false;
            for message in batch {
                let message = message.map_err(|e| format!("receive: {e}"))?;
                let info = message
                    .info()
                    .map_err(|e| format!("message metadata: {e}"))?;
                let sequence = info.stream_sequence;
                behind = info.pending > 0;
                if let Some(at_ms) = decode_tick(message.headers.as_ref(), &message.payload) {
                    // What came before the tick is applied first, then the tick, so every
                    // replica evaluates its segments at the same position of the log.
                    if let Some(segments) = self.segments.get() {
                        if let Some(last) = last {
                            let checkpoint = self.checkpoint(last, epoch);
                            (self
                                .writer
                                .apply(std::mem::take(&mut changes), Some(checkpoint)))
                            .await
                            .map_err(|e| format!("index: {e}"))?;
                            self.applied.store(last, Ordering::Relaxed);
                        }
                        segments
                            .tick_to(at_ms)
                            .await
                            .map_err(|e| format!("segment tick: {e}"))?;
                    }
                    last = Some(sequence);
                    continue;
                }
                match decode(message.headers.as_ref(), &message.payload) {
                    Ok(change) => changes.push(change),
                    Err(error) => {
                        self.unreadable.fetch_add(1, Ordering::Relaxed);
                        tracing::error!(sequence, %error, "skipping an unreadable change log message");
                    }
                }
                last = Some(sequence);
            }
            let Some(last) = last else { continue };
            let checkpoint = self.checkpoint(last, epoch);
            if behind {
                self.writer
                    .submit(changes, Some(checkpoint))
                    .await
                    .map_err(|e| format!("index: {e}"))?;
                self.applied.store(last, Ordering::Relaxed);
                uncommitted = true;
            } else {
                self.writer
                    .apply(changes, Some(checkpoint))
                    .await
                    .map_err(|e| format!("index: {e}"))?;
                self.applied.store(last, Ordering::Relaxed);
                self.committed.send_replace(last);
                uncommitted = false;
            }
        }
    }
}
