//! Where and how the index lives: directory, writer memory, commit policy, caches, tombstone
//! retention and the sealing fingerprint.

use std::path::PathBuf;
use std::time::Duration;

use super::schema;

/// Where and how the index lives.
#[derive(Debug, Clone)]
pub struct IndexConfig {
    pub dir: PathBuf,
    /// The writer's total indexing memory budget.
    pub writer_memory_bytes: usize,
    pub writer_threads: usize,
    /// Changes nobody waits for (backfill pages) are committed at least this often...
    pub commit_interval: Duration,
    /// ...or once this many are pending. Changes someone waits for are committed at once,
    /// together with everything that queued up meanwhile (group commit).
    pub commit_max_changes: usize,
    /// Memory for decoded range and sort columns (`column_cache.rs`).
    pub column_cache_bytes: usize,
    /// How long a deleted user's tombstone is kept. Svix retries a delivery for ~28 h, so a late
    /// `user.updated` can arrive that long after the `user.deleted` that should win.
    pub tombstone_retention: Duration,
    /// Identifies how sensitive values are sealed (which paths, which blind-index key; empty:
    /// none). An index sealed differently is rebuilt: it may hold in plaintext a path that is
    /// sensitive now, or tokens no filter can match.
    pub sealing: String,
}

impl IndexConfig {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        IndexConfig {
            dir: dir.into(),
            writer_memory_bytes: 256 << 20,
            writer_threads: 2,
            commit_interval: Duration::from_secs(2),
            commit_max_changes: 100_000,
            column_cache_bytes: schema::DEFAULT_COLUMN_CACHE_BYTES,
            tombstone_retention: Duration::from_secs(72 * 3600),
            sealing: String::new(),
        }
    }
}
