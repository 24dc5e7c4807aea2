//! What the index writer did, and whether it is writing: counters for the status and metrics,
//! and the pause after a failed commit (a full disk, an I/O error) that the writer retries out
//! of by itself.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::clock::now_ms;

/// The first retry of a paused writer; each failed retry doubles it, up to [`MAX_RETRY`].
pub(super) const FIRST_RETRY: Duration = Duration::from_secs(1);
pub(super) const MAX_RETRY: Duration = Duration::from_secs(10);

/// Why the writer is paused, and since when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pause {
    pub reason: String,
    pub since_ms: i64,
}

/// What the writer did with the changes it was given, since start.
#[derive(Debug)]
pub struct WriterStats {
    pub applied: AtomicU64,
    /// Upserts older than the `updated_at` the index already held.
    pub ignored_stale: AtomicU64,
    /// Upserts of users deleted later than (or when) the upsert's `updated_at`.
    pub ignored_deleted: AtomicU64,
    pub commits: AtomicU64,
    /// Commits that failed (each rolled back what it held).
    pub commit_failures: AtomicU64,
    /// Seconds per successful commit (prepare, fsync, reader reload).
    pub commit_seconds: prometheus_client::metrics::histogram::Histogram,
    /// Failed commits that discarded checkpointed changes nobody waited for, and such changes
    /// refused while paused: a producer whose checkpoint was read before the last of these must
    /// start again from the committed one (see [`super::Checkpoint`]).
    losses: AtomicU64,
    paused: Mutex<Option<Pause>>,
}

impl Default for WriterStats {
    fn default() -> Self {
        WriterStats {
            applied: AtomicU64::default(),
            ignored_stale: AtomicU64::default(),
            ignored_deleted: AtomicU64::default(),
            commits: AtomicU64::default(),
            commit_failures: AtomicU64::default(),
            commit_seconds: crate::latency::latency_histogram(),
            losses: AtomicU64::default(),
            paused: Mutex::new(None),
        }
    }
}

impl WriterStats {
    /// Why writes are paused now, if they are.
    pub fn paused(&self) -> Option<Pause> {
        self.paused
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub(super) fn pause(&self, reason: String) {
        let mut paused = self.paused.lock().unwrap_or_else(|e| e.into_inner());
        let since_ms = paused.as_ref().map_or_else(now_ms, |p| p.since_ms);
        *paused = Some(Pause { reason, since_ms });
    }

    pub(super) fn resume(&self) {
        *self.paused.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }

    /// How many times checkpointed changes were discarded since start.
    pub fn losses(&self) -> u64 {
        self.losses.load(Ordering::SeqCst)
    }

    pub(super) fn lost(&self) {
        self.losses.fetch_add(1, Ordering::SeqCst);
    }
}
