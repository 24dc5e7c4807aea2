//! The writer's commits: success publishes a snapshot and answers the waiters; failure rolls
//! back, puts the committed payload back, and pauses the writer until a retry commits.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use tokio::time::Instant;

use super::super::error::WriteError;
use super::super::payload::CommitPayload;
use super::super::snapshot::Snapshot;
use super::{Command, FIRST_RETRY, IndexWriterTask, MAX_RETRY, now_ms};

/// Commits between two prunings of the mapped-file cache.
const PRUNE_EVERY: u64 = 64;

impl IndexWriterTask {
    /// Prunes the mapped-file cache of `directory` as commits replace files.
    pub(in crate::index) fn with_directory(
        mut self,
        directory: tantivy::directory::MmapDirectory,
    ) -> Self {
        self.directory = Some(directory);
        self
    }

    /// Whether what is pending is a commit's worth: `commit_max_changes` changes, or older
    /// than `commit_interval` (during a bulk load, its commit size and `bulk_commit_interval`).
    pub(super) fn commit_due(&self) -> bool {
        let (changes, interval) = self.commit_limits();
        self.pending_changes >= changes
            || (self.pending_since).is_some_and(|since| since.elapsed() >= interval)
    }

    /// The bulk limits apply only while every pending user is kept as its version: users kept
    /// whole (when saved segments want previous states, or organization members) cost their
    /// parsed JSON each, so a window with one of them commits at the usual limits, which bound
    /// how many are held as before the bulk load.
    pub(super) fn commit_limits(&self) -> (usize, std::time::Duration) {
        match self.bulk_load.filter(|_| !self.whole_users_pending) {
            Some(changes) => (changes, self.config.bulk_commit_interval),
            None => (self.config.commit_max_changes, self.config.commit_interval),
        }
    }

    /// Answers a command that arrives while paused: waiters get the pause, and changes nobody
    /// waits for are dropped and counted as lost.
    pub(super) fn refuse(&mut self, command: Command) {
        let paused = || {
            let reason = self.stats.paused().map_or_else(String::new, |p| p.reason);
            Err(WriteError::Paused(reason.into()))
        };
        match command {
            Command::Apply { ack: Some(ack), .. } | Command::Exclusive { ack, .. } => {
                let _ = ack.send(paused());
            }
            Command::Bulk { ack, .. } => {
                let _ = ack.send(paused().map(|_: u64| Vec::new()));
            }
            Command::Apply {
                changes,
                checkpoint,
                ack: None,
            } => {
                if !changes.is_empty() || checkpoint.is_some() {
                    self.stats.lost();
                }
            }
            Command::Close => {}
        }
    }

    /// Commits what is pending (or nothing, to retry out of a pause) and answers the waiters.
    pub(super) fn commit(&mut self) {
        let started = std::time::Instant::now();
        self.payload.generation += 1;
        self.payload.format = 1;
        let span = tracing::info_span!(
            "index.commit",
            generation = self.payload.generation as i64,
            changes = self.pending_changes as i64,
            waiting = self.waiting.len() as i64,
            error = tracing::field::Empty,
        );
        let _in_span = span.enter();
        let result = self.try_commit();
        let waiting = std::mem::take(&mut self.waiting);
        match result {
            Ok(()) => {
                if let Some(observer) = self.observer.as_mut() {
                    observer.committed();
                }
                self.stats.commits.fetch_add(1, Ordering::Relaxed);
                self.stats
                    .commit_seconds
                    .observe(started.elapsed().as_secs_f64());
                let generation = self.payload.generation;
                tracing::debug!(
                    generation,
                    changes = self.pending_changes,
                    took_ms = started.elapsed().as_millis() as u64,
                    "index committed"
                );
                self.prune_mapped_files();
                if self.paused.take().is_some() {
                    self.stats.resume();
                    tracing::info!(generation, "index commits succeed again; writes resumed");
                }
                for ack in waiting {
                    let _ = ack.send(Ok(generation));
                }
            }
            Err(error) => {
                span.record("error", tracing::field::display(&error));
                self.roll_back(&error);
                for ack in waiting {
                    let _ = ack.send(Err(error.clone()));
                }
            }
        }
        self.pending_users.clear();
        self.whole_users_pending = false;
        self.orgs.clear();
        self.pending_changes = 0;
        self.pending_since = None;
        self.unacknowledged_pending = false;
    }

    /// Undoes a failed commit: the index and the payload go back to the last commit, and the
    /// writer pauses until a retry commits.
    fn roll_back(&mut self, error: &WriteError) {
        if let Some(observer) = self.observer.as_mut() {
            observer.rolled_back();
        }
        self.stats.commit_failures.fetch_add(1, Ordering::Relaxed);
        if let Err(rollback) = self.writer.rollback() {
            tracing::error!(error = %rollback, "index rollback failed");
        }
        match serde_json::from_str::<CommitPayload>(&self.committed_payload) {
            Ok(payload) => self.payload = payload,
            Err(parse) => tracing::error!(error = %parse, "could not restore the commit payload"),
        }
        if self.unacknowledged_pending {
            self.stats.lost();
        }
        let wait = self
            .paused
            .map_or(FIRST_RETRY, |(_, wait)| (wait * 2).min(MAX_RETRY));
        self.paused = Some((Instant::now() + wait, wait));
        self.stats.pause(error.to_string());
        tracing::error!(
            %error,
            retry_in_ms = wait.as_millis() as u64,
            "index commit failed; rolled back, refusing writes until a retry commits"
        );
    }

    /// tantivy's `MmapDirectory` remembers every file it ever mapped (a path and a weak
    /// reference) and forgets the dead ones only when asked for its cache info. Commits and
    /// merges replace files all the time: at 200 webhooks/s that was ~4 MiB more memory a
    /// minute, for as long as the process ran. Asking every [`PRUNE_EVERY`] commits keeps it
    /// to the files of live segments.
    fn prune_mapped_files(&mut self) {
        if let Some(directory) = &self.directory
            && self.payload.generation.is_multiple_of(PRUNE_EVERY)
        {
            let _ = directory.get_cache_info();
        }
    }

    fn prune_tombstones(&mut self) {
        let oldest_kept = now_ms() - self.config.tombstone_retention.as_millis() as i64;
        self.payload
            .tombstones
            .retain(|_, tombstone| tombstone.1 >= oldest_kept);
    }

    fn try_commit(&mut self) -> Result<(), WriteError> {
        self.prune_tombstones();
        if let Some(observer) = self.observer.as_mut() {
            self.payload.event_sequence = observer.prepare_commit()?;
        }
        let payload = serde_json::to_string(&self.payload).map_err(WriteError::commit)?;
        let mut prepared = self.writer.prepare_commit().map_err(WriteError::commit)?;
        prepared.set_payload(&payload);
        prepared.commit().map_err(WriteError::commit)?;
        // Durable from here on, whatever follows.
        self.committed_payload = payload;
        self.reader.reload().map_err(WriteError::commit)?;
        let snapshot = Snapshot::of(&self.reader, &self.fields, &self.payload);
        let users = snapshot.freshness.user_count;
        (self.fields.columns).set_budget(self.config.column_cache.bytes(users));
        self.publish.send_replace(Arc::new(snapshot));
        Ok(())
    }
}
