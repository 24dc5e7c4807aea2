//! Which threads search a query's segments.
//!
//! A query alone spreads its segments over the index's search threads: its answer comes sooner.
//! While other queries are being searched too, each query reads its segments on its own thread:
//! the cores are busy either way, and handing every query's segments to the pool and waiting
//! for them adds only wake-ups and thread switches (at 8 callers of the count mix, the kernel
//! switching threads was 12% of the server's CPU). Work run [`on_this_thread`] (a short query
//! answered on the async thread that received it) never waits for the pool.
//!
//! A query alone on a large segment splits it too: its range scans and facet counts run in
//! parts of [`PART_WORDS`] words on threads of their own ([`split_words`], [`map_parts`]), so
//! one segment of millions of docs does not leave the other cores idle while one thread reads
//! it (a layout of fewer segments than cores, or one large segment beside small ones, as a
//! month of merges makes). Measured on a million users in one segment, two cores: a count of
//! six broad ranges 1.8 -> 1.4 ms, a facet under three 1.6 -> 1.2 ms (p50, compiled client).

use std::cell::Cell;
use std::sync::LazyLock;
use std::sync::atomic::{AtomicUsize, Ordering};

use tantivy::collector::Collector;
use tantivy::query::{EnableScoring, Query};
use tantivy::{Executor, Index, Searcher};

/// Queries whose segments are being read now, in this process.
static SEARCHING: AtomicUsize = AtomicUsize::new(0);

/// One query counted in [`SEARCHING`] while it lives; a query read on the calling thread marks
/// that thread [`on_this_thread`] until then, so its segments are not split either.
pub struct Searching {
    mark_before: Option<bool>,
}

impl Drop for Searching {
    fn drop(&mut self) {
        SEARCHING.fetch_sub(1, Ordering::Relaxed);
        if let Some(mark) = self.mark_before {
            ON_THIS_THREAD.set(mark);
        }
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
    let executor = executor_beside(others, index);
    let mark_before = match executor {
        Executor::SingleThread => Some(ON_THIS_THREAD.replace(true)),
        Executor::ThreadPool(_) => None,
    };
    (Searching { mark_before }, executor)
}

/// Words (of 64 docs) per part when one segment's scan is split across threads: 262,144 docs,
/// a few hundred microseconds of a range scan, so a part costs far more than handing it over.
/// Under test, a part is 256 docs, so the engine's tests read their segments in parts.
#[cfg(not(test))]
pub const PART_WORDS: usize = 1 << 12;
#[cfg(test)]
pub const PART_WORDS: usize = 4;

/// The threads that parts of one segment's scans run on: as many as the search threads.
static PART_POOL: LazyLock<Option<Executor>> = LazyLock::new(|| {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get().min(4));
    (threads > 1)
        .then(|| Executor::multi_thread(threads, "segment-part-").ok())
        .flatten()
});

/// `work(first_word, words)` over `words` (one bit per doc of a segment): in parts of
/// [`PART_WORDS`] on the part threads when the segment is larger than one part and this query is
/// the only one being searched (the cores would otherwise be busy with others), whole on this
/// thread otherwise. The parts are disjoint, so each writes only its own words.
pub fn split_words(words: &mut [u64], work: impl Fn(usize, &mut [u64]) + Sync) {
    let pool = match &*PART_POOL {
        Some(pool) if words.len() > PART_WORDS && splittable() => pool,
        _ => return work(0, words),
    };
    let parts = (words.chunks_mut(PART_WORDS).enumerate()).map(|(i, part)| (i * PART_WORDS, part));
    let done = pool.map(
        |(first, part)| {
            work(first, part);
            Ok(())
        },
        parts,
    );
    if done.is_err() {
        // Only a failed handover (the work itself cannot fail): do it all here.
        work(0, words);
    }
}

/// `part(first_word, words)` over parts of `words` as [`split_words`] splits them, each giving
/// an answer; the answers in order.
pub fn map_parts<R: Send>(words: &[u64], part: impl Fn(usize, &[u64]) -> R + Sync) -> Vec<R> {
    let pool = match &*PART_POOL {
        Some(pool) if words.len() > PART_WORDS && splittable() => pool,
        _ => return vec![part(0, words)],
    };
    let parts = (words.chunks(PART_WORDS).enumerate()).map(|(i, words)| (i * PART_WORDS, words));
    match pool.map(|(first, words)| Ok(part(first, words)), parts) {
        Ok(answers) => answers,
        Err(_) => vec![part(0, words)],
    }
}

/// A part's own counts are made only for at most this many values (256 KiB each); more (a
/// facet over a column of many distinct values) are counted whole, so the parts never hold
/// more than a few times the segment's counts.
const MOST_SPLIT_COUNTS: usize = 1 << 16;

/// Adds `part(first_word, words, counts)` over parts of `words` into `counts`: each part into
/// counts of its own, added up after, when [`map_parts`] splits them and there are few values;
/// straight into `counts` otherwise.
pub fn count_parts(
    words: &[u64],
    counts: &mut [u32],
    part: impl Fn(usize, &[u64], &mut [u32]) + Sync,
) {
    if counts.len() > MOST_SPLIT_COUNTS || words.len() <= PART_WORDS || !splittable() {
        return part(0, words, counts);
    }
    let values = counts.len();
    let parts = map_parts(words, |first, words| {
        let mut counts = vec![0u32; values];
        part(first, words, &mut counts);
        counts
    });
    for part in parts {
        for (count, add) in counts.iter_mut().zip(part) {
            *count += add;
        }
    }
}

/// Whether work on this thread may be split across the part threads: not while other queries
/// are being searched, nor for work that must stay on this thread.
fn splittable() -> bool {
    // Under test, other tests of the process search at the same time: split whatever they do.
    !ON_THIS_THREAD.get() && (cfg!(test) || SEARCHING.load(Ordering::Relaxed) <= 1)
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
    fn large_segments_are_read_in_parts_and_never_on_a_thread_that_must_keep_its_work() {
        let parts = std::sync::Mutex::new(Vec::new());
        let mut words = vec![0u64; PART_WORDS * 3 + 1];
        split_words(&mut words, |first, part| {
            parts.lock().unwrap().push((first, part.len()));
            for (i, word) in part.iter_mut().enumerate() {
                *word = (first + i) as u64;
            }
        });
        let mut parts = parts.into_inner().unwrap();
        parts.sort();
        if PART_POOL.is_some() {
            let want: Vec<(usize, usize)> = (0..4).map(|i| (i * PART_WORDS, PART_WORDS)).collect();
            assert_eq!(parts[..3], want[..3]);
            assert_eq!(parts[3], (3 * PART_WORDS, 1));
        }
        assert!(words.iter().enumerate().all(|(i, &w)| w == i as u64));
        let sums = map_parts(&words, |first, part| (first, part.iter().sum::<u64>()));
        assert_eq!(
            sums.iter().map(|(_, sum)| sum).sum::<u64>(),
            words.iter().sum::<u64>()
        );
        assert!(sums.is_sorted(), "answers in the order of the parts");
        let whole = on_this_thread(|| map_parts(&words, |first, part| (first, part.len())));
        assert_eq!(whole, [(0, words.len())]);
        // Counts add up alike in parts; many values are counted whole, in one call.
        let count = |first: usize, part: &[u64], counts: &mut [u32]| {
            for (i, &word) in part.iter().enumerate() {
                counts[(first + i) % counts.len()] += word as u32;
            }
        };
        let (mut split, mut whole) = (vec![0u32; 5], vec![0u32; 5]);
        count_parts(&words, &mut split, count);
        count(0, &words, &mut whole);
        assert_eq!(split, whole);
        let calls = AtomicUsize::new(0);
        let mut many = vec![0u32; MOST_SPLIT_COUNTS + 1];
        count_parts(&words, &mut many, |first, part, counts| {
            calls.fetch_add(1, Ordering::Relaxed);
            assert_eq!((first, part.len()), (0, words.len()));
            count(first, part, counts);
        });
        assert_eq!(calls.into_inner(), 1);
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
