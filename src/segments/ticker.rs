//! The task that ticks: every `time_resolution`, on the writer thread (ordered with changes),
//! the clock moves to the current instant rounded down to the resolution; the first tick after
//! start-up catches up on the time the process was down.

use tokio_util::sync::CancellationToken;

use super::core::lock;
use super::error::SegmentError;
use super::service::Segments;
use super::tick::advance;
use crate::clock::SequenceClock;

impl Segments {
    /// Moves the clock to now (rounded down to the resolution) and returns the membership
    /// events that made. Without a time-driven segment nothing needs the clock, and nothing is
    /// committed (the next edit moves it).
    pub async fn tick(&self) -> Result<usize, SegmentError> {
        let (to, needed) = {
            let core = lock(&self.core);
            let to = core.config.tick_instant();
            let needed = to > core.clock_ms && core.segments.values().any(|c| c.time_driven);
            (to, needed)
        };
        if !needed {
            return Ok(0);
        }
        let core = self.core.clone();
        let started = std::time::Instant::now();
        let events = self
            .writer
            .exclusive(move |snapshot| advance(&mut lock(&core), snapshot, to))
            .await??;
        tracing::debug!(
            events,
            took_ms = started.elapsed().as_millis() as u64,
            clock_ms = to,
            "segments ticked"
        );
        Ok(events)
    }

    /// Ticks every `time_resolution` until cancelled.
    pub async fn run_ticks(self, cancel: CancellationToken) {
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
