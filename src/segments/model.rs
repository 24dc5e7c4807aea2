//! What segments are made of: saved definitions, the events of users crossing them, and the
//! store's settings.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::clock::Clock;

/// A saved segment as stored and returned.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SavedSegment {
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// The filter's text form.
    pub filter: String,
    pub version: u64,
    pub created_ms: i64,
    pub updated_ms: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    Entered,
    Exited,
    /// The segment was created or its definition changed.
    SegmentUpdated,
    SegmentDeleted,
}

/// One membership change (or segment-level change).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SegmentEvent {
    pub sequence: u64,
    pub segment: String,
    pub kind: EventKind,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub user_id: String,
    pub change_time_ms: i64,
    pub recorded_at_ms: i64,
    pub cause: String,
}

/// What the store counts for metrics.
#[derive(Debug, Default)]
pub struct SegmentStats {
    /// Entered/Exited events committed, and those of them time caused.
    pub events: std::sync::atomic::AtomicU64,
    pub time_events: std::sync::atomic::AtomicU64,
    /// Time ticks applied, and the time they took (microseconds).
    pub ticks: std::sync::atomic::AtomicU64,
    pub tick_micros: std::sync::atomic::AtomicU64,
    /// Of that, the time spent evaluating on the writer thread (not waiting for it).
    pub tick_work_micros: std::sync::atomic::AtomicU64,
}

/// The store's numbers at one moment.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SegmentMetrics {
    pub segments: u64,
    pub time_driven: u64,
    pub events: u64,
    pub time_events: u64,
    pub ticks: u64,
    pub tick_seconds: f64,
    pub tick_work_seconds: f64,
    /// How far the clock is behind now (0 without a time-driven segment).
    pub clock_lag_seconds: f64,
}

/// Settings of the segments store.
#[derive(Debug, Clone)]
pub struct SegmentsConfig {
    /// Events kept for replay (`WatchSegment` with `after_sequence`).
    pub retained_events: usize,
    pub max_segments: usize,
    /// How often segments with relative times (`now-30d`) are re-evaluated; their clock moves
    /// in steps of this size.
    pub time_resolution: Duration,
    /// What "now" is (a test's fake clock moves time-driven segments).
    pub clock: Clock,
    /// Days of per-day history kept for each segment.
    pub history_days: usize,
    /// Most events kept while a destination holds retention back (past it, the destination
    /// has a gap).
    pub held_events_max: usize,
    /// The retention hold in force from start-up (the slowest destination's position), so the
    /// log read back is not cut to the window before destinations start.
    pub initial_hold: Option<u64>,
}

impl Default for SegmentsConfig {
    fn default() -> Self {
        SegmentsConfig {
            retained_events: 100_000,
            max_segments: 1_000,
            time_resolution: Duration::from_secs(60),
            clock: Clock::system(),
            history_days: 90,
            held_events_max: 1_000_000,
            initial_hold: None,
        }
    }
}

impl SegmentsConfig {
    /// Now, rounded down to the resolution: where the next tick moves the clock.
    pub fn tick_instant(&self) -> i64 {
        let step = (self.time_resolution.as_millis() as i64).max(1);
        self.clock.now_ms().div_euclid(step) * step
    }
}
