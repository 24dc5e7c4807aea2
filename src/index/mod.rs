//! Everything that touches tantivy: the schema, user documents, query compilation, sorting, the
//! one writer task and searches over immutable snapshots.
//!
//! Readers never see the `IndexWriter`: they take the latest [`Snapshot`] (a tantivy `Searcher`
//! plus the freshness stamp and sync state of the commit it shows) from a watch channel that the
//! writer task updates after every commit. All calls here block; async callers use
//! `spawn_blocking`.

mod bitset;
mod catalog;
mod column_cache;
mod column_filter;
mod compile;
mod document;
mod export;
mod facets;
mod fast_terms;
mod schema;
mod search;
mod sort;
mod writer;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tantivy::store::{Compressor, ZstdCompressor};
use tantivy::{IndexReader, IndexSettings, ReloadPolicy, Searcher};
use tokio::sync::watch;

pub use catalog::PathTypes;
pub use export::IdOrderedMatches;
pub use facets::{
    Calendar, FacetKind, FacetOutcome, FacetSpec, FacetValue, Facets, HistogramBucket,
    StatsOutcome, TermsOutcome,
};
pub use schema::Fields;
pub use search::{SearchHit, StoredUser};
pub use sort::SortCursor;
pub use writer::{ChangeObserver, IndexWriterTask, Previous, Sealer, WriterHandle, WriterStats};

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

/// What went wrong inside the index.
#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    #[error("index error: {0}")]
    Tantivy(#[from] tantivy::TantivyError),
    #[error("cannot open the index directory {path}: {message}")]
    Directory { path: String, message: String },
    #[error("the index commit payload is unreadable: {0}")]
    Payload(String),
    #[error("the index writer has stopped")]
    WriterStopped,
    #[error("index i/o error: {0}")]
    Io(#[from] std::io::Error),
    #[error("reading stored users: {0}")]
    Read(String),
    #[error("recording the change's side effects: {0}")]
    Observer(String),
    #[error("sealing sensitive values: {0}")]
    Seal(String),
    /// The request cannot be answered as asked (the message says why).
    #[error("{0}")]
    InvalidRequest(String),
}

/// Which state of the index answered a request.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Freshness {
    /// Increases by one per commit; survives restarts.
    pub generation: u64,
    /// The newest `updated_at` of any applied user, ms since the epoch.
    pub newest_updated_at_ms: i64,
    pub user_count: u64,
}

/// What each commit stores next to the data, so index and checkpoint never disagree.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct CommitPayload {
    format: u32,
    generation: u64,
    newest_updated_at_ms: i64,
    /// Owned by `sync`: where backfill and reconcile stand. Opaque here.
    #[serde(default)]
    sync_state: serde_json::Value,
    /// Deleted user ids, kept in the commit with the deletion itself, so a late update can never
    /// bring back a user whose deletion was acknowledged.
    #[serde(default)]
    tombstones: std::collections::BTreeMap<String, Tombstone>,
    /// The last saved-segment event whose change this commit holds (0: none yet).
    #[serde(default)]
    event_sequence: u64,
    /// [`IndexConfig::sealing`] of the process that wrote the index.
    #[serde(default)]
    sealing: String,
}

/// `[deleted_at_ms, recorded_at_ms]`: when Clerk deleted the user (orders it against updates),
/// and when this index learned of it (retention counts from here, so a replayed old deletion is
/// still protected for the whole retry window).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
struct Tombstone(i64, i64);

/// An immutable view of one commit.
pub struct Snapshot {
    pub searcher: Searcher,
    pub fields: Arc<Fields>,
    pub freshness: Freshness,
    pub sync_state: serde_json::Value,
    /// Tombstones held at this commit.
    pub tombstone_count: usize,
    /// The last saved-segment event whose change this snapshot holds: watching from here sees
    /// every membership change after it.
    pub event_sequence: u64,
}

/// A handle on the index for readers. Cheap to clone.
#[derive(Clone)]
pub struct UserIndex {
    fields: Arc<Fields>,
    snapshots: watch::Receiver<Arc<Snapshot>>,
}

impl UserIndex {
    /// Opens (or creates) the index and returns the read handle and the writer task, which the
    /// caller must start with [`IndexWriterTask::spawn`].
    pub fn open(config: &IndexConfig) -> Result<(UserIndex, IndexWriterTask), IndexError> {
        std::fs::create_dir_all(&config.dir).map_err(|e| IndexError::Directory {
            path: config.dir.display().to_string(),
            message: e.to_string(),
        })?;
        let fields = Arc::new(Fields::build());
        fields.columns.set_budget(config.column_cache_bytes);
        let mut index = match open_or_create(config, &fields) {
            Err(IndexError::Tantivy(tantivy::TantivyError::SchemaError(message))) => {
                // The index is a mirror of Clerk: an index written by a version with another
                // schema is rebuilt (backfilled again) rather than served wrongly.
                tracing::warn!(
                    dir = %config.dir.display(),
                    %message,
                    "the index on disk has an older schema; removing it to rebuild from Clerk"
                );
                remove_contents(&config.dir)?;
                open_or_create(config, &fields)?
            }
            other => other?,
        };
        if let Some(text) = index.load_metas()?.payload {
            let written: CommitPayload =
                serde_json::from_str(&text).map_err(|e| IndexError::Payload(e.to_string()))?;
            if written.sealing != config.sealing {
                tracing::warn!(
                    dir = %config.dir.display(),
                    "the index on disk was sealed with other sensitive paths or another blind-index key; removing it to rebuild from Clerk"
                );
                drop(index);
                remove_contents(&config.dir)?;
                index = open_or_create(config, &fields)?;
            }
        }
        schema::register_tokenizers(&index);
        // Segments are searched in parallel: scans (ranges over columns, facets) take about half
        // as long on two cores.
        let search_threads = std::thread::available_parallelism().map_or(1, |n| n.get().min(4));
        if search_threads > 1 {
            index.set_multithread_executor(search_threads)?;
        }
        let payload: CommitPayload = match index.load_metas()?.payload {
            Some(text) => {
                serde_json::from_str(&text).map_err(|e| IndexError::Payload(e.to_string()))?
            }
            None => CommitPayload {
                format: 1,
                sealing: config.sealing.clone(),
                ..CommitPayload::default()
            },
        };
        let reader: IndexReader = index
            .reader_builder()
            .reload_policy(ReloadPolicy::Manual)
            .try_into()?;
        let first = Arc::new(snapshot_of(&reader, &fields, &payload));
        let (publish, snapshots) = watch::channel(first);
        let writer = index
            .writer_with_num_threads(config.writer_threads.max(1), config.writer_memory_bytes)?;
        let task = IndexWriterTask::new(writer, reader, fields.clone(), publish, payload, config);
        Ok((UserIndex { fields, snapshots }, task))
    }

    /// The latest committed state.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.snapshots.borrow().clone()
    }

    /// The first snapshot for which `ready` holds (the newest, if it already does), waiting at
    /// most `timeout` for it.
    pub async fn snapshot_when(
        &self,
        ready: impl Fn(&Snapshot) -> bool,
        timeout: Duration,
    ) -> Option<Arc<Snapshot>> {
        let current = self.snapshot();
        if ready(&current) {
            return Some(current);
        }
        let mut snapshots = self.snapshots.clone();
        let reached = tokio::time::timeout(timeout, snapshots.wait_for(|s| ready(s))).await;
        match reached {
            Ok(Ok(snapshot)) => Some(snapshot.clone()),
            _ => None,
        }
    }

    /// Notified after every commit.
    pub fn subscribe(&self) -> watch::Receiver<Arc<Snapshot>> {
        self.snapshots.clone()
    }

    pub fn fields(&self) -> &Arc<Fields> {
        &self.fields
    }
}

fn open_or_create(config: &IndexConfig, fields: &Fields) -> Result<tantivy::Index, IndexError> {
    let directory = tantivy::directory::MmapDirectory::open(&config.dir).map_err(|e| {
        IndexError::Directory {
            path: config.dir.display().to_string(),
            message: e.to_string(),
        }
    })?;
    let settings = IndexSettings {
        docstore_compression: Compressor::Zstd(ZstdCompressor::default()),
        ..IndexSettings::default()
    };
    Ok(tantivy::Index::builder()
        .schema(fields.schema.clone())
        .settings(settings)
        .open_or_create(directory)?)
}

fn snapshot_of(reader: &IndexReader, fields: &Arc<Fields>, payload: &CommitPayload) -> Snapshot {
    let searcher = reader.searcher();
    Snapshot {
        freshness: Freshness {
            generation: payload.generation,
            newest_updated_at_ms: payload.newest_updated_at_ms,
            user_count: searcher.num_docs(),
        },
        searcher,
        fields: fields.clone(),
        sync_state: payload.sync_state.clone(),
        tombstone_count: payload.tombstones.len(),
        event_sequence: payload.event_sequence,
    }
}

#[cfg(test)]
mod facet_tests;
#[cfg(test)]
pub(crate) mod tests;

/// Empties a directory.
fn remove_contents(dir: &std::path::Path) -> Result<(), IndexError> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            std::fs::remove_dir_all(&path)?;
        } else {
            std::fs::remove_file(&path)?;
        }
    }
    Ok(())
}
