//! Which threads search a query's segments.
//!
//! A query alone spreads its segments over the index's search threads: its answer comes sooner.
//! While other queries are being searched too, each query reads its segments on its own thread:
//! the cores are busy either way, and handing every query's segments to the pool and waiting
//! for them adds only wake-ups and thread switches (at 8 callers of the count mix, the kernel
//! switching threads was 12% of the server's CPU). Work run [`on_this_thread`] (a short query
//! answered on the async thread that received it) never waits for the pool.

use std::cell::Cell;
use std::sync::atomic::{AtomicUsize, Ordering};

use tantivy::collector::Collector;
use tantivy::query::{EnableScoring, Query};
use tantivy::{Executor, Index, Searcher};

/// Queries whose segments are being read now, in this process.
static SEARCHING: AtomicUsize = AtomicUsize::new(0);

/// One query counted in [`SEARCHING`] while it lives.
pub struct Searching;

impl Drop for Searching {
    fn drop(&mut self) {
        SEARCHING.fetch_sub(1, Ordering::Relaxed);
    }
}

thread_local! {
    /// Set while this thread runs work that must not wait for the pool.
    static ON_THIS_THREAD: Cell<bool> = const { Cell::new(false) };
}

/// Runs `work` with every query in it searched on this thread alone.
pub fn on_this_thread<R>(work: impl FnOnce() -> R) -> R {
    struct Reset(bool);
    impl Drop for Reset {
        fn drop(&mut self) {
            ON_THIS_THREAD.set(self.0);
        }
    }
    let _reset = Reset(ON_THIS_THREAD.replace(true));
    work()
}

/// Counts this query in and picks its executor: the index's pool when no other query is being
/// searched (and the work may wait for it), the calling thread otherwise.
pub fn enter(index: &Index) -> (Searching, Executor) {
    let others = SEARCHING.fetch_add(1, Ordering::Relaxed);
    let others = match ON_THIS_THREAD.get() {
        true => others.max(1),
        false => others,
    };
    (Searching, executor_beside(others, index))
}

/// The executor of a query that starts while `others` are being searched.
fn executor_beside(others: usize, index: &Index) -> Executor {
    match others {
        0 => index.search_executor().clone(),
        _ => Executor::single_thread(),
    }
}

/// `f` applied to each segment's `args`, as [`Executor::map`] on the executor picked for this
/// query.
pub fn map_segments<A, R, F>(
    index: &Index,
    f: F,
    args: impl Iterator<Item = A>,
) -> tantivy::Result<Vec<R>>
where
    A: Send,
    R: Send,
    F: Sized + Sync + Fn(A) -> tantivy::Result<R>,
{
    let (_searching, executor) = enter(index);
    executor.map(f, args)
}

/// `searcher.search(query, collector)`, on the executor picked for this query.
pub fn search<C: Collector>(
    searcher: &Searcher,
    query: &dyn Query,
    collector: &C,
) -> tantivy::Result<C::Fruit> {
    let scoring = match collector.requires_scoring() {
        true => EnableScoring::enabled_from_searcher(searcher),
        false => EnableScoring::disabled_from_searcher(searcher),
    };
    let (_searching, executor) = enter(searcher.index());
    searcher.search_with_executor(query, collector, &executor, scoring)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_query_alone_uses_the_pool_and_one_among_others_its_own_thread() {
        let mut index = Index::create_in_ram(tantivy::schema::Schema::builder().build());
        index.set_multithread_executor(2).unwrap();
        let pooled = |executor: &Executor| matches!(executor, Executor::ThreadPool(_));
        // Other tests of this process may be searching at the same time as this one, so the
        // choice is checked apart from the process-wide count.
        assert!(pooled(&executor_beside(0, &index)));
        assert!(!pooled(&executor_beside(3, &index)));
        {
            let (_first, _) = enter(&index);
            let (_second, executor) = enter(&index);
            assert!(!pooled(&executor), "a second query reads on its own thread");
        }
        let segments = map_segments(&index, |n: u32| Ok(n * 2), 0..4).unwrap();
        assert_eq!(segments, vec![0, 2, 4, 6]);
    }

    #[test]
    fn work_on_this_thread_never_uses_the_pool_and_the_mark_ends_with_it() {
        let mut index = Index::create_in_ram(tantivy::schema::Schema::builder().build());
        index.set_multithread_executor(2).unwrap();
        let caller = std::thread::current().id();
        let threads = on_this_thread(|| {
            assert!(
                on_this_thread(|| ON_THIS_THREAD.get()),
                "nested calls keep the mark"
            );
            assert!(
                ON_THIS_THREAD.get(),
                "an inner call leaves the outer mark set"
            );
            map_segments(&index, |_: u32| Ok(std::thread::current().id()), 0..8).unwrap()
        });
        assert!(threads.iter().all(|thread| *thread == caller));
        assert!(!ON_THIS_THREAD.get(), "the mark ends with the work");
        let panicked = std::panic::catch_unwind(|| on_this_thread(|| panic!("work failed")));
        assert!(panicked.is_err());
        assert!(!ON_THIS_THREAD.get(), "the mark ends with failed work too");
    }
}
