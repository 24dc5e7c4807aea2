//! The segment log file: one JSON record per line, appended and fsynced before the index commit
//! that holds the changes behind them, so after a crash the log never holds less than the index
//! (records beyond the index's checkpoint are cut off at start-up: their changes were not
//! committed, and will be applied again, with the same events, when they are redelivered).
//!
//! Records are saved-segment definitions, deletions, membership events and time ticks. The file is
//! compacted once it holds twice the retained window: the current definitions, a horizon
//! record saying which sequence numbers are gone, and the retained events.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::model::{SavedSegment, SegmentEvent};

/// One line of the log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "record", rename_all = "snake_case")]
pub enum Record {
    /// An event; segment-level events (`segment_updated`) carry the new definition.
    Event {
        #[serde(flatten)]
        event: SegmentEvent,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        definition: Option<SavedSegment>,
        /// The segment's size right after a definition event (for its history).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        size: Option<u64>,
    },
    /// Events up to and including this sequence number are no longer retained.
    Horizon { evicted_through: u64 },
    /// The segments' clock reached `at_ms` (a time tick, after the events it caused): relative
    /// times are evaluated there from this sequence number on.
    Tick { sequence: u64, at_ms: i64 },
}

impl Record {
    pub fn sequence(&self) -> Option<u64> {
        match self {
            Record::Event { event, .. } => Some(event.sequence),
            Record::Tick { sequence, .. } => Some(*sequence),
            Record::Horizon { .. } => None,
        }
    }
}

/// The open log file.
pub struct LogFile {
    path: PathBuf,
    file: File,
    /// Bytes known to be durable.
    len: u64,
    /// Records in the file (for deciding when to compact).
    pub records: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error("segment log {path}: {message}")]
    Io { path: String, message: String },
    #[error("segment log {path} is damaged at line {line}: {message}")]
    Damaged {
        path: String,
        line: usize,
        message: String,
    },
}

impl LogFile {
    fn io(&self, error: std::io::Error) -> LogError {
        io_error(&self.path, error)
    }

    /// Opens (or creates) the log and reads every record up to and including `checkpoint`
    /// (all of them for `None`). A torn last line and records past the checkpoint are cut off.
    pub fn open(dir: &Path, checkpoint: Option<u64>) -> Result<(LogFile, Vec<Record>), LogError> {
        std::fs::create_dir_all(dir).map_err(|e| io_error(dir, e))?;
        let path = dir.join("events.jsonl");
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(&path)
            .map_err(|e| io_error(&path, e))?;
        let mut records = Vec::new();
        let mut keep_len = 0u64;
        let mut reader = BufReader::new(&mut file);
        let mut line = String::new();
        let mut number = 0;
        loop {
            line.clear();
            let read = reader
                .read_line(&mut line)
                .map_err(|e| io_error(&path, e))?;
            if read == 0 {
                break;
            }
            number += 1;
            if !line.ends_with('\n') {
                tracing::warn!(path = %path.display(), line = number, "cutting off a torn last record of the segment log");
                break;
            }
            let record: Record =
                serde_json::from_str(line.trim_end()).map_err(|e| LogError::Damaged {
                    path: path.display().to_string(),
                    line: number,
                    message: e.to_string(),
                })?;
            if let (Some(sequence), Some(checkpoint)) = (record.sequence(), checkpoint)
                && sequence > checkpoint
            {
                tracing::warn!(
                    path = %path.display(),
                    sequence,
                    checkpoint,
                    "cutting off segment events of changes the index never committed"
                );
                break;
            }
            keep_len += read as u64;
            records.push(record);
        }
        drop(reader);
        let total = file.metadata().map_err(|e| io_error(&path, e))?.len();
        if total > keep_len {
            file.set_len(keep_len).map_err(|e| io_error(&path, e))?;
            file.sync_all().map_err(|e| io_error(&path, e))?;
        }
        file.seek(SeekFrom::End(0))
            .map_err(|e| io_error(&path, e))?;
        let count = records.len();
        Ok((
            LogFile {
                path,
                file,
                len: keep_len,
                records: count,
            },
            records,
        ))
    }

    /// Appends and fsyncs; returns the length before, for [`LogFile::truncate`].
    pub fn append(&mut self, records: &[Record]) -> Result<u64, LogError> {
        let before = self.len;
        if records.is_empty() {
            return Ok(before);
        }
        let mut bytes = Vec::new();
        for record in records {
            serde_json::to_writer(&mut bytes, record).expect("records serialize");
            bytes.push(b'\n');
        }
        let written = self
            .file
            .write_all(&bytes)
            .and_then(|()| self.file.sync_data());
        if let Err(error) = written {
            // Leave no partial records behind.
            let _ = self.file.set_len(before);
            return Err(self.io(error));
        }
        self.len += bytes.len() as u64;
        self.records += records.len();
        Ok(before)
    }

    /// Cuts the file back to `len` (undoing appends whose commit failed).
    pub fn truncate(&mut self, len: u64, records: usize) -> Result<(), LogError> {
        self.file.set_len(len).map_err(|e| self.io(e))?;
        self.file.sync_all().map_err(|e| self.io(e))?;
        self.len = len;
        self.records = self.records.saturating_sub(records);
        Ok(())
    }

    /// Replaces the file with `records`, atomically (write aside, fsync, rename, fsync dir).
    pub fn rewrite(&mut self, records: &[Record]) -> Result<(), LogError> {
        let aside = self.path.with_extension("jsonl.compacting");
        let mut bytes = Vec::new();
        for record in records {
            serde_json::to_writer(&mut bytes, record).expect("records serialize");
            bytes.push(b'\n');
        }
        let mut file = File::create(&aside).map_err(|e| self.io(e))?;
        file.write_all(&bytes)
            .and_then(|()| file.sync_all())
            .map_err(|e| self.io(e))?;
        std::fs::rename(&aside, &self.path).map_err(|e| self.io(e))?;
        if let Some(dir) = self.path.parent() {
            File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(|e| self.io(e))?;
        }
        self.file = OpenOptions::new()
            .read(true)
            .append(true)
            .open(&self.path)
            .map_err(|e| self.io(e))?;
        self.len = bytes.len() as u64;
        self.records = records.len();
        Ok(())
    }
}

fn io_error(path: &Path, error: std::io::Error) -> LogError {
    LogError::Io {
        path: path.display().to_string(),
        message: error.to_string(),
    }
}
