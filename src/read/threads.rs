//! Which thread runs a read's index work.
//!
//! Index work runs on a blocking thread, off the async threads, in an `index.query` span of its
//! own. Handing it over and taking the answer back costs two thread switches, though, and a
//! count over a million users takes about a third of a millisecond: at 8 callers of the bench's
//! counts the switching was a fifth of the server's CPU per count. So [`Costs`] learns what each
//! filter costs (for a search page: its filter, sort, size and mask): the first time one is seen
//! it runs on a blocking thread and its time is
//! kept; a filter whose last run took at most [`INLINE_BUDGET`] runs on the async thread that
//! received it, on that thread alone (never waiting for the search pool), and its time is kept
//! again, so a filter that grew slow (more users, an evicted column) goes back to a blocking
//! thread after one run.

use std::collections::HashMap;
use std::fmt::{Debug, Write as _};
use std::hash::{BuildHasher, Hasher, RandomState};
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::error::Error;
use crate::index::{Snapshot, on_this_thread};

/// Work whose last run took at most this long runs on the async thread that asked for it.
pub const INLINE_BUDGET: Duration = Duration::from_millis(1);

/// The most filters whose cost is kept; past it the memory starts over (each entry is a hash
/// and a duration: ~100 KB at most).
pub const REMEMBERED_COSTS: usize = 4096;

/// The last time each filter took, by a keyed hash of the filter (a caller cannot pick
/// filters that collide; a collision would only run one filter on the other's thread).
#[derive(Default)]
pub struct Costs {
    last: Mutex<HashMap<u64, Duration>>,
    hasher: RandomState,
}

impl Costs {
    /// The key of the work `kind` (e.g. "count") over `filter`.
    pub fn key(&self, kind: &str, filter: &impl Debug) -> u64 {
        struct HashWrite<H>(H);
        impl<H: Hasher> std::fmt::Write for HashWrite<H> {
            fn write_str(&mut self, text: &str) -> std::fmt::Result {
                self.0.write(text.as_bytes());
                Ok(())
            }
        }
        let mut hasher = HashWrite(self.hasher.build_hasher());
        // Writing into a hasher cannot fail.
        let _ = write!(hasher, "{kind}\0{filter:?}");
        hasher.0.finish()
    }

    fn cheap(&self, key: u64) -> bool {
        let last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        last.get(&key).is_some_and(|took| *took <= INLINE_BUDGET)
    }

    fn record(&self, key: u64, took: Duration) {
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        if last.len() >= REMEMBERED_COSTS && !last.contains_key(&key) {
            last.clear();
        }
        last.insert(key, took);
    }

    /// `work` on `snapshot`: on this thread when the work of `key` was cheap the last time,
    /// otherwise on a blocking thread; its time is kept either way.
    pub async fn run<T: Send + 'static>(
        self: &Arc<Self>,
        key: u64,
        snapshot: Arc<Snapshot>,
        work: impl FnOnce(&Snapshot) -> Result<T, Error> + Send + 'static,
    ) -> Result<T, Error> {
        if self.cheap(key) {
            let span = query_span(&snapshot, true);
            let started = Instant::now();
            // A panic answers the call as one on a blocking thread does, not by unwinding
            // through the connection's task.
            let answer = span.in_scope(|| {
                std::panic::catch_unwind(AssertUnwindSafe(|| on_this_thread(|| work(&snapshot))))
                    .unwrap_or_else(|_| Err(Error::Internal("index work panicked".into())))
            });
            self.record(key, started.elapsed());
            return answer;
        }
        let costs = self.clone();
        blocking(snapshot, move |snapshot| {
            let started = Instant::now();
            let answer = work(snapshot);
            costs.record(key, started.elapsed());
            answer
        })
        .await
    }
}

/// A child of the call's span, timing the index work apart from waiting and encoding.
fn query_span(snapshot: &Snapshot, inline: bool) -> tracing::Span {
    tracing::info_span!(
        "index.query",
        generation = snapshot.freshness.generation as i64,
        inline
    )
}

/// Runs index work off the async threads.
pub(super) async fn blocking<T: Send + 'static>(
    snapshot: Arc<Snapshot>,
    work: impl FnOnce(&Snapshot) -> Result<T, Error> + Send + 'static,
) -> Result<T, Error> {
    let span = query_span(&snapshot, false);
    tokio::task::spawn_blocking(move || span.in_scope(|| work(&snapshot)))
        .await
        .map_err(|e| Error::Internal(format!("index task failed: {e}")))?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_filter_is_cheap_only_after_a_run_within_the_budget() {
        let costs = Costs::default();
        let key = costs.key("count", &"public.plan = \"pro\"");
        assert_eq!(key, costs.key("count", &"public.plan = \"pro\""));
        assert_ne!(key, costs.key("facets", &"public.plan = \"pro\""));
        assert_ne!(key, costs.key("count", &"public.plan = \"team\""));
        assert!(
            !costs.cheap(key),
            "an unseen filter runs on a blocking thread"
        );
        costs.record(key, INLINE_BUDGET);
        assert!(costs.cheap(key));
        costs.record(key, INLINE_BUDGET + Duration::from_micros(1));
        assert!(!costs.cheap(key), "one slow run sends it back");
    }

    #[tokio::test(flavor = "current_thread")]
    async fn cheap_work_runs_on_the_asking_thread_and_slow_work_goes_back() {
        // Built outside the runtime: the shared fixture starts its own.
        let fixture = tokio::task::spawn_blocking(crate::index::tests::fixture)
            .await
            .unwrap();
        let costs = Arc::new(Costs::default());
        let key = costs.key("count", &"everyone");
        let here = std::thread::current().id();
        let ran_on = |costs: &Arc<Costs>| {
            let snapshot = fixture.index.snapshot();
            let costs = costs.clone();
            async move {
                let work = |snapshot: &Snapshot| {
                    let counted = snapshot.count(None, 0)?;
                    Ok((std::thread::current().id(), counted))
                };
                costs.run(key, snapshot, work).await.unwrap()
            }
        };
        let (first, counted) = ran_on(&costs).await;
        assert_ne!(first, here, "unseen work runs on a blocking thread");
        assert_eq!(counted, fixture.index.snapshot().freshness.user_count);
        assert!(
            costs.last.lock().unwrap().contains_key(&key),
            "its time was kept"
        );
        // (Set, not measured: a busy test machine may hold any thread past the budget.)
        costs.record(key, Duration::ZERO);
        assert_eq!(
            ran_on(&costs).await.0,
            here,
            "cheap work runs where it was asked"
        );
        let failed = costs.run(key, fixture.index.snapshot(), |_| -> Result<(), Error> {
            panic!("index work failed")
        });
        assert!(
            matches!(failed.await, Err(Error::Internal(_))),
            "a panic inline answers with an internal error"
        );
        costs.record(key, INLINE_BUDGET * 2);
        assert_ne!(
            ran_on(&costs).await.0,
            here,
            "slow work goes back to a blocking thread"
        );
    }

    #[test]
    fn the_memory_is_bounded() {
        let costs = Costs::default();
        for n in 0..REMEMBERED_COSTS as u64 * 3 {
            costs.record(n, Duration::ZERO);
            assert!(costs.last.lock().unwrap().len() <= REMEMBERED_COSTS);
        }
        costs.record(u64::MAX, Duration::ZERO);
        assert!(
            costs.cheap(u64::MAX),
            "the newest cost is kept when the memory starts over"
        );
    }
}
