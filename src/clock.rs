//! Wall-clock time in Clerk's unit (milliseconds since the epoch), and the clocks that can stand
//! in for it.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

/// Now, in milliseconds since the epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// A clock: the system's, or one a test sets (time-driven segments are tested across 30 days
/// without waiting for them).
#[derive(Clone, Default)]
pub struct Clock {
    fake: Option<Arc<AtomicI64>>,
}

impl Clock {
    /// The system clock.
    pub fn system() -> Clock {
        Clock { fake: None }
    }

    /// A clock that stands at `start_ms` until [`Clock::set`] or [`Clock::advance`] moves it.
    pub fn fake(start_ms: i64) -> Clock {
        Clock {
            fake: Some(Arc::new(AtomicI64::new(start_ms))),
        }
    }

    pub fn now_ms(&self) -> i64 {
        match &self.fake {
            Some(fake) => fake.load(Ordering::SeqCst),
            None => now_ms(),
        }
    }

    /// Moves a fake clock to `ms` (the system clock ignores this).
    pub fn set(&self, ms: i64) {
        if let Some(fake) = &self.fake {
            fake.store(ms, Ordering::SeqCst);
        }
    }

    /// Moves a fake clock forward by `ms`.
    pub fn advance(&self, ms: i64) {
        if let Some(fake) = &self.fake {
            fake.fetch_add(ms, Ordering::SeqCst);
        }
    }
}

impl std::fmt::Debug for Clock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.fake {
            Some(fake) => write!(f, "Clock::fake({})", fake.load(Ordering::SeqCst)),
            None => f.write_str("Clock::system()"),
        }
    }
}

/// The instant relative times (`now-30d`) of saved segments are evaluated at, for a snapshot
/// whose segment events end at a given sequence number: the segments' own clock, which moves in
/// ticks recorded with their events, so a listing and the events after it agree.
pub type SequenceClock = Arc<dyn Fn(u64) -> i64 + Send + Sync>;
