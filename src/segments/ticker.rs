//! The task that ticks: every `time_resolution`, on the writer thread (ordered with changes),
//! the clock moves to the current instant rounded down to the resolution; the first tick after
//! start-up catches up on the time the process was down. In cluster mode the sync lease holder
//! publishes the ticks into the change log instead, and each replica applies them in log order.

use tokio_util::sync::CancellationToken;

use super::core::lock;
use super::error::SegmentError;
use super::history::{Bucket, Granularity};
use super::model::SegmentMetrics;
use super::service::Segments;
use super::tick::advance;
use crate::clock::SequenceClock;
use crate::cluster::ChangeLog;
use std::sync::atomic::Ordering;

/// The longest way one tick commit moves the clock.
const CATCH_UP_STEP_MS: i64 = 86_400_000;

impl Segments {
    /// Moves the clock to now (rounded down to the resolution) and returns the membership
    /// events that made. Without a time-driven segment nothing needs the clock, and nothing is
    /// committed (the next edit moves it).
    pub async fn tick(&self) -> Result<usize, SegmentError> {
        match self.tick_due() {
            Some(to) => self.tick_to(to).await,
            None => Ok(0),
        }
    }

    /// Where a tick would move the clock, when a time-driven segment exists and the clock is
    /// behind now.
    pub fn tick_due(&self) -> Option<i64> {
        let core = lock(&self.core);
        let to = core.config.tick_instant();
        (to > core.clock_ms && core.segments.values().any(|c| c.time_driven)).then_some(to)
    }

    /// Moves the clock to `to` (nothing when it is there already), on the writer thread.
    /// A long way (after a restart or a pause) is taken a day at a time, each step committed
    /// on its own: a step's events are one day's crossings, not the whole pause's.
    pub async fn tick_to(&self, to: i64) -> Result<usize, SegmentError> {
        let mut events = 0;
        loop {
            let from = self.clock_ms();
            if from >= to {
                return Ok(events);
            }
            events += self
                .step_to(from.saturating_add(CATCH_UP_STEP_MS).min(to))
                .await?;
        }
    }

    async fn step_to(&self, to: i64) -> Result<usize, SegmentError> {
        let core = self.core.clone();
        let started = std::time::Instant::now();
        let (events, work) = self
            .writer
            .exclusive(move |snapshot| {
                let began = std::time::Instant::now();
                let events = advance(&mut lock(&core), snapshot, to);
                (events, began.elapsed())
            })
            .await?;
        let events = events?;
        let stats = lock(&self.core).stats.clone();
        stats.ticks.fetch_add(1, Ordering::Relaxed);
        let micros = started.elapsed().as_micros() as u64;
        stats.tick_micros.fetch_add(micros, Ordering::Relaxed);
        let work = work.as_micros() as u64;
        stats.tick_work_micros.fetch_add(work, Ordering::Relaxed);
        tracing::debug!(
            events,
            took_ms = started.elapsed().as_millis() as u64,
            clock_ms = to,
            "segments ticked"
        );
        Ok(events)
    }

    /// Ticks every `time_resolution` until cancelled (when `enabled`: a process whose ticks
    /// come from elsewhere runs nothing).
    pub async fn run_ticks(self, cancel: CancellationToken, enabled: bool) {
        if !enabled {
            return;
        }
        let every = lock(&self.core).config.time_resolution;
        loop {
            if let Err(error) = self.tick().await {
                tracing::warn!(%error, "time-driven segments could not tick; retrying");
            }
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tokio::time::sleep(every) => {}
            }
        }
    }

    /// Cluster mode, while this replica holds the sync lease: publishes a tick into the change
    /// log every `time_resolution` (when a time-driven segment exists); every replica applies
    /// it at the same position of the log ([`Segments::tick_to`]), so they agree on the events.
    pub async fn publish_ticks(self, log: ChangeLog, cancel: CancellationToken) {
        let every = lock(&self.core).config.time_resolution;
        loop {
            if let Some(to) = self.tick_due()
                && let Err(error) = log.publish_tick(to).await
            {
                tracing::warn!(%error, "could not publish a segment tick; retrying");
            }
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tokio::time::sleep(every) => {}
            }
        }
    }

    /// A segment's history at `granularity` up to now, and its size.
    pub fn history(
        &self,
        name: &str,
        granularity: Granularity,
    ) -> Result<(Vec<Bucket>, u64), SegmentError> {
        let core = lock(&self.core);
        if !core.segments.contains_key(name) {
            return Err(SegmentError::NotFound(name.to_string()));
        }
        let now = core.config.clock.now_ms();
        let days = core.config.history_days;
        Ok(core.history.view(name, granularity, now, days))
    }

    /// The store's numbers now, for metrics.
    pub fn metrics(&self) -> SegmentMetrics {
        let core = lock(&self.core);
        let time_driven = core.segments.values().filter(|c| c.time_driven).count() as u64;
        let lag_ms = (core.config.clock.now_ms() - core.clock_ms).max(0);
        let stats = &core.stats;
        SegmentMetrics {
            segments: core.segments.len() as u64,
            time_driven,
            events: stats.events.load(Ordering::Relaxed),
            time_events: stats.time_events.load(Ordering::Relaxed),
            ticks: stats.ticks.load(Ordering::Relaxed),
            tick_seconds: stats.tick_micros.load(Ordering::Relaxed) as f64 / 1e6,
            tick_work_seconds: stats.tick_work_micros.load(Ordering::Relaxed) as f64 / 1e6,
            clock_lag_seconds: if time_driven > 0 {
                lag_ms as f64 / 1000.0
            } else {
                0.0
            },
        }
    }

    /// The segments' clock now.
    pub fn clock_ms(&self) -> i64 {
        lock(&self.core).clock_ms
    }

    /// The clock in force at each snapshot, for readers answering for saved segments.
    pub fn sequence_clock(&self) -> SequenceClock {
        let core = self.core.clone();
        std::sync::Arc::new(move |sequence| lock(&core).clock_at(sequence))
    }
}
