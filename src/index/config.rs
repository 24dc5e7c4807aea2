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
    /// During a bulk load (the backfill), changes nobody waits for are committed once as many
    /// are pending as the writer's memory holds (`writer/bulk.rs`), never fewer than this, and
    /// this many when the load's size is unknown...
    pub bulk_commit_changes: usize,
    /// ...or once they are this old.
    pub bulk_commit_interval: Duration,
    /// How many segments of about equal size a bulk load is merged into at its end.
    pub serving_segments: usize,
    /// Memory for decoded range and sort columns (`column_cache.rs`).
    pub column_cache: ColumnCacheBudget,
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
            bulk_commit_changes: 200_000,
            bulk_commit_interval: Duration::from_secs(120),
            serving_segments: serving_segments(),
            column_cache: ColumnCacheBudget::Auto,
            tombstone_retention: Duration::from_secs(72 * 3600),
            sealing: String::new(),
        }
    }
}

/// Two segments per core searching (at most 7: tantivy's log merge policy merges 8 of a size
/// together), so each core has work for a query and none waits on one large segment.
fn serving_segments() -> usize {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get().min(4));
    (2 * cores).clamp(2, 7)
}

/// How much memory decoded columns may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColumnCacheBudget {
    /// This many bytes.
    Fixed(usize),
    /// Sized from the users held and the memory the process may use ([`auto_column_cache`]),
    /// again after every commit.
    Auto,
}

impl ColumnCacheBudget {
    /// The budget for an index of `users` users.
    pub fn bytes(self, users: u64) -> usize {
        match self {
            ColumnCacheBudget::Fixed(bytes) => bytes,
            ColumnCacheBudget::Auto => auto_column_cache(users, memory_limit()),
        }
    }
}

/// Bytes of decoded columns per user the automatic budget allows: what the benchmark's mix
/// holds (a few range and sort columns at 2-8 bytes, a sort order at 4, ids at ~31, facet
/// ordinals at 2) with room for as much again.
pub const AUTO_BYTES_PER_USER: u64 = 96;

/// The automatic column budget: [`AUTO_BYTES_PER_USER`] per user, at least the fixed default
/// (256 MiB), and at most a quarter of `memory_limit` (the container's limit, or the machine's
/// memory) when that is larger than the default.
pub fn auto_column_cache(users: u64, memory_limit: Option<u64>) -> usize {
    let floor = schema::DEFAULT_COLUMN_CACHE_BYTES as u64;
    let wanted = users.saturating_mul(AUTO_BYTES_PER_USER).max(floor);
    let ceiling = memory_limit.map_or(u64::MAX, |limit| (limit / 4).max(floor));
    usize::try_from(wanted.min(ceiling)).unwrap_or(usize::MAX)
}

/// The automatic writer budget (`--writer-memory-mb auto`): half the memory limit, at most
/// 1 GiB and at least 256 MiB. Only a bulk load fills it (its commits hold as many users as it
/// does, `writer/bulk.rs`); steady-state commits every two seconds hold far less.
pub fn auto_writer_memory(memory_limit: Option<u64>) -> usize {
    const FLOOR: u64 = 256 << 20;
    const CEILING: u64 = 1 << 30;
    let half = memory_limit.map_or(CEILING, |limit| limit / 2);
    usize::try_from(half.clamp(FLOOR, CEILING)).unwrap_or(usize::MAX)
}

/// The automatic writer budget for this process's memory limit.
pub fn auto_writer_memory_here() -> usize {
    auto_writer_memory(memory_limit())
}

/// The memory this process may use: its cgroup's limit (v2, then v1), else the machine's.
fn memory_limit() -> Option<u64> {
    static LIMIT: std::sync::OnceLock<Option<u64>> = std::sync::OnceLock::new();
    *LIMIT.get_or_init(|| {
        let read = |path: &str| std::fs::read_to_string(path).ok();
        let cgroup = read("/sys/fs/cgroup/memory.max")
            .or_else(|| read("/sys/fs/cgroup/memory/memory.limit_in_bytes"))
            .and_then(|text| text.trim().parse::<u64>().ok())
            // cgroup v1 writes "no limit" as a number near 2^63.
            .filter(|&bytes| bytes < 1 << 60);
        cgroup.or_else(|| {
            let meminfo = read("/proc/meminfo")?;
            let line = meminfo.lines().find(|l| l.starts_with("MemTotal:"))?;
            let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
            Some(kib * 1024)
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_automatic_column_budget_grows_with_the_users_within_the_memory_limit() {
        let mib = |n: u64| (n << 20) as usize;
        let default = schema::DEFAULT_COLUMN_CACHE_BYTES;
        assert_eq!(auto_column_cache(0, None), default);
        assert_eq!(
            auto_column_cache(1_000_000, Some(8 << 30)),
            default,
            "96 MB < 256 MiB"
        );
        assert_eq!(auto_column_cache(10_000_000, Some(8 << 30)), 960_000_000);
        assert_eq!(
            auto_column_cache(10_000_000, Some(2 << 30)),
            mib(512),
            "a quarter of 2 GiB"
        );
        assert_eq!(
            auto_column_cache(10_000_000, Some(512 << 20)),
            default,
            "never below 256 MiB"
        );
        assert_eq!(ColumnCacheBudget::Fixed(5).bytes(10_000_000), 5);
        assert!(ColumnCacheBudget::Auto.bytes(0) >= default);
    }

    #[test]
    fn the_automatic_writer_budget_is_half_the_memory_limit_within_256_mib_and_1_gib() {
        let mib = |n: usize| n << 20;
        assert_eq!(auto_writer_memory(None), mib(1024));
        assert_eq!(auto_writer_memory(Some(8 << 30)), mib(1024));
        assert_eq!(auto_writer_memory(Some(2 << 30)), mib(1024));
        assert_eq!(auto_writer_memory(Some(1 << 30)), mib(512));
        assert_eq!(auto_writer_memory(Some(256 << 20)), mib(256));
    }
}
