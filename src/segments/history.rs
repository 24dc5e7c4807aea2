//! Each segment's history: its size, and how many users entered and exited, per day (kept for
//! `history_days`) and per hour (the last [`HOURS_KEPT`]), counted from its committed events
//! at the time they were recorded.
//!
//! The numbers outlive the event log's retention: `history.json` holds them through a sequence
//! number, written before every compaction of the log, and on start-up the events after that
//! number (which the log still holds) are counted again.

use std::collections::{BTreeMap, VecDeque};
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::log::LogError;
use super::model::{EventKind, SegmentEvent};

const DAY_MS: i64 = 86_400_000;
const HOUR_MS: i64 = 3_600_000;
/// Hourly buckets kept: the last week.
pub const HOURS_KEPT: usize = 7 * 24;

/// One period of one segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bucket {
    pub start_ms: i64,
    pub entered: u64,
    pub exited: u64,
    /// Members at the end of the period (or now, for the current one).
    pub size: u64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct SegmentHistory {
    pub size: u64,
    pub days: VecDeque<Bucket>,
    pub hours: VecDeque<Bucket>,
}

/// Days or hours.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Granularity {
    Day,
    Hour,
}

/// Every segment's history, counted through `through`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Histories {
    pub through: u64,
    pub segments: BTreeMap<String, SegmentHistory>,
}

impl Histories {
    fn path(dir: &Path) -> PathBuf {
        dir.join("history.json")
    }

    /// The saved histories (empty when none were saved yet).
    pub fn load(dir: &Path) -> Result<Histories, LogError> {
        let path = Histories::path(dir);
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| LogError::Damaged {
                path: path.display().to_string(),
                line: 1,
                message: e.to_string(),
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Histories::default()),
            Err(e) => Err(io_error(&path, e)),
        }
    }

    /// Writes the histories atomically (aside, fsync, rename, fsync the directory).
    pub fn save(&self, dir: &Path) -> Result<(), LogError> {
        let path = Histories::path(dir);
        let aside = path.with_extension("json.writing");
        let bytes = serde_json::to_vec(self).expect("histories serialize");
        let write = || -> std::io::Result<()> {
            let mut file = File::create(&aside)?;
            file.write_all(&bytes)?;
            file.sync_all()?;
            std::fs::rename(&aside, &path)?;
            File::open(dir)?.sync_all()
        };
        write().map_err(|e| io_error(&path, e))
    }

    /// Counts one committed event (once: events at or before `through` are already counted).
    /// `size` is the segment's size right after a definition event.
    pub fn record(&mut self, event: &SegmentEvent, size: Option<u64>, days_kept: usize) {
        if event.sequence <= self.through {
            return;
        }
        self.through = event.sequence;
        if event.kind == EventKind::SegmentDeleted {
            self.segments.remove(&event.segment);
            return;
        }
        let history = self.segments.entry(event.segment.clone()).or_default();
        let (entered, exited) = match event.kind {
            EventKind::Entered => {
                history.size += 1;
                (1, 0)
            }
            EventKind::Exited => {
                history.size = history.size.saturating_sub(1);
                (0, 1)
            }
            _ => {
                if let Some(size) = size {
                    history.size = size;
                }
                (0, 0)
            }
        };
        let at = event.recorded_at_ms;
        let size = history.size;
        add(
            &mut history.days,
            at,
            DAY_MS,
            entered,
            exited,
            size,
            days_kept,
        );
        add(
            &mut history.hours,
            at,
            HOUR_MS,
            entered,
            exited,
            size,
            HOURS_KEPT,
        );
    }

    /// A segment's size as counted.
    pub fn size_of(&self, name: &str) -> u64 {
        self.segments.get(name).map_or(0, |h| h.size)
    }

    /// A segment's buckets over the last `days_kept` days (or [`HOURS_KEPT`] hours) up to the
    /// one holding `now_ms`, with the periods nothing happened in filled in (their size carried
    /// over): at most that many, however long ago the segment last moved.
    pub fn view(
        &self,
        name: &str,
        granularity: Granularity,
        now_ms: i64,
        days_kept: usize,
    ) -> (Vec<Bucket>, u64) {
        let Some(history) = self.segments.get(name) else {
            return (Vec::new(), 0);
        };
        let (kept, width, count) = match granularity {
            Granularity::Day => (&history.days, DAY_MS, days_kept),
            Granularity::Hour => (&history.hours, HOUR_MS, HOURS_KEPT),
        };
        let last = now_ms.div_euclid(width) * width;
        let first = last - width * (count as i64 - 1);
        let mut out: Vec<Bucket> = Vec::new();
        for bucket in kept {
            if bucket.start_ms < first {
                // Before the window: only its size carries into the window's first period.
                out = vec![Bucket {
                    start_ms: first,
                    entered: 0,
                    exited: 0,
                    size: bucket.size,
                }];
                continue;
            }
            if out.last().is_some_and(|b| b.start_ms == bucket.start_ms) {
                out.pop();
            }
            fill(&mut out, bucket.start_ms, width);
            out.push(*bucket);
        }
        fill(&mut out, last + width, width);
        (out, history.size)
    }
}

/// Appends empty buckets (carrying the size) from after the last one up to before `until`.
fn fill(out: &mut Vec<Bucket>, until: i64, width: i64) {
    while let Some(previous) = out.last().copied() {
        let start = previous.start_ms + width;
        if start >= until {
            break;
        }
        out.push(Bucket {
            start_ms: start,
            entered: 0,
            exited: 0,
            size: previous.size,
        });
    }
}

fn add(
    buckets: &mut VecDeque<Bucket>,
    at: i64,
    width: i64,
    entered: u64,
    exited: u64,
    size: u64,
    kept: usize,
) {
    let start = at.div_euclid(width) * width;
    match buckets.back_mut() {
        // Events are counted in sequence order; one recorded a little earlier than the last
        // (another thread's clock) counts in the latest period.
        Some(last) if last.start_ms >= start => {
            last.entered += entered;
            last.exited += exited;
            last.size = size;
        }
        _ => buckets.push_back(Bucket {
            start_ms: start,
            entered,
            exited,
            size,
        }),
    }
    // Periods older than `kept` periods before the newest are dropped.
    let newest = buckets.back().map_or(start, |b| b.start_ms);
    let oldest = newest - width * (kept as i64 - 1);
    while buckets.front().is_some_and(|b| b.start_ms < oldest) {
        buckets.pop_front();
    }
}

fn io_error(path: &Path, error: std::io::Error) -> LogError {
    LogError::Io {
        path: path.display().to_string(),
        message: error.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(sequence: u64, kind: EventKind, at: i64) -> SegmentEvent {
        SegmentEvent {
            sequence,
            segment: "s".into(),
            kind,
            user_id: "u".into(),
            change_time_ms: at,
            recorded_at_ms: at,
            cause: "webhook".into(),
        }
    }

    #[test]
    fn days_count_entries_and_exits_and_carry_the_size_across_quiet_days() {
        let mut h = Histories::default();
        let day0 = 100 * DAY_MS;
        h.record(&event(1, EventKind::SegmentUpdated, day0), Some(10), 90);
        h.record(&event(2, EventKind::Entered, day0 + 5), None, 90);
        h.record(&event(3, EventKind::Entered, day0 + 6), None, 90);
        h.record(&event(4, EventKind::Exited, day0 + 3 * DAY_MS), None, 90);
        // Counted once.
        h.record(&event(4, EventKind::Exited, day0 + 3 * DAY_MS), None, 90);
        let (days, size) = h.view("s", Granularity::Day, day0 + 4 * DAY_MS + 1, 90);
        assert_eq!(size, 11);
        let rows: Vec<(i64, u64, u64, u64)> = days
            .iter()
            .map(|b| ((b.start_ms - day0) / DAY_MS, b.entered, b.exited, b.size))
            .collect();
        assert_eq!(
            rows,
            vec![
                (0, 2, 0, 12),
                (1, 0, 0, 12),
                (2, 0, 0, 12),
                (3, 0, 1, 11),
                (4, 0, 0, 11)
            ]
        );
        let (hours, _) = h.view("s", Granularity::Hour, day0 + 3 * DAY_MS, 90);
        assert_eq!(hours.len(), 3 * 24 + 1);
        // A segment quiet for a year answers its window, no more, its size carried in.
        let (days, _) = h.view("s", Granularity::Day, day0 + 400 * DAY_MS, 90);
        assert_eq!(days.len(), 90);
        assert!(
            days.iter()
                .all(|b| b.size == 11 && b.entered + b.exited == 0)
        );
        let (hours, _) = h.view("s", Granularity::Hour, day0 + 400 * DAY_MS, 90);
        assert_eq!(hours.len(), HOURS_KEPT);
    }

    #[test]
    fn old_periods_are_dropped_and_a_deleted_segment_forgets_its_history() {
        let mut h = Histories::default();
        for day in 0..10 {
            h.record(
                &event(day + 1, EventKind::Entered, day as i64 * DAY_MS),
                None,
                3,
            );
        }
        let (days, size) = h.view("s", Granularity::Day, 9 * DAY_MS, 3);
        assert_eq!(size, 10);
        assert_eq!(
            days.iter().map(|b| b.start_ms / DAY_MS).collect::<Vec<_>>(),
            vec![7, 8, 9]
        );
        h.record(&event(11, EventKind::SegmentDeleted, 10 * DAY_MS), None, 3);
        assert_eq!(
            h.view("s", Granularity::Day, 10 * DAY_MS, 90),
            (Vec::new(), 0)
        );
    }

    #[test]
    fn saved_histories_load_back() {
        let dir = tempfile::tempdir().unwrap();
        let mut h = Histories::default();
        h.record(&event(1, EventKind::Entered, DAY_MS), None, 90);
        h.save(dir.path()).unwrap();
        let loaded = Histories::load(dir.path()).unwrap();
        assert_eq!(loaded.through, 1);
        assert_eq!(
            loaded.view("s", Granularity::Day, DAY_MS, 90),
            h.view("s", Granularity::Day, DAY_MS, 90)
        );
        assert_eq!(
            Histories::load(&dir.path().join("none")).unwrap().through,
            0
        );
    }
}
