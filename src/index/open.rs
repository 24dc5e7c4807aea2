//! Opening the index: create or reuse the directory, rebuild an index written with another
//! schema or sealed otherwise (it is a mirror of Clerk: rebuilding beats serving it wrong), read
//! the last commit's payload, and hand out the read handle and the writer task.

use std::sync::Arc;

use tantivy::directory::MmapDirectory;
use tantivy::store::{Compressor, ZstdCompressor};
use tantivy::{IndexReader, IndexSettings, ReloadPolicy};
use tokio::sync::watch;

use super::config::IndexConfig;
use super::error::IndexError;
use super::payload::CommitPayload;
use super::schema::{self, Fields};
use super::snapshot::{Snapshot, UserIndex};
use super::writer::IndexWriterTask;

impl UserIndex {
    /// Opens (or creates) the index and returns the read handle and the writer task, which the
    /// caller must start with [`IndexWriterTask::spawn`].
    pub fn open(config: &IndexConfig) -> Result<(UserIndex, IndexWriterTask), IndexError> {
        std::fs::create_dir_all(&config.dir).map_err(|e| IndexError::Directory {
            path: config.dir.display().to_string(),
            message: e.to_string(),
        })?;
        let fields = Arc::new(Fields::build());
        let (mut index, mut directory) = match open_or_create(config, &fields) {
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
                (index, directory) = open_or_create(config, &fields)?;
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
        let first = Arc::new(Snapshot::of(&reader, &fields, &payload));
        let users = first.freshness.user_count;
        fields.columns.set_budget(config.column_cache.bytes(users));
        let (publish, snapshots) = watch::channel(first);
        let writer = index
            .writer_with_num_threads(config.writer_threads.max(1), config.writer_memory_bytes)?;
        let task = IndexWriterTask::new(writer, reader, fields.clone(), publish, payload, config)
            .with_directory(directory);
        Ok((UserIndex::new(fields, snapshots), task))
    }
}

/// The index, and its directory (a handle on the same mmap cache, which the writer prunes).
fn open_or_create(
    config: &IndexConfig,
    fields: &Fields,
) -> Result<(tantivy::Index, MmapDirectory), IndexError> {
    let directory = MmapDirectory::open(&config.dir).map_err(|e| IndexError::Directory {
        path: config.dir.display().to_string(),
        message: e.to_string(),
    })?;
    let settings = IndexSettings {
        docstore_compression: Compressor::Zstd(ZstdCompressor::default()),
        ..IndexSettings::default()
    };
    let index = tantivy::Index::builder()
        .schema(fields.schema.clone())
        .settings(settings)
        .open_or_create(directory.clone())?;
    Ok((index, directory))
}

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
