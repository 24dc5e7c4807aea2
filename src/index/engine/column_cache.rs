//! Decoded copies of the fast columns that ranges filter on, sorts read and string facets count
//! (their ordinals), one per (segment, column).
//!
//! tantivy stores a column compressed (bit-packed, or as piecewise lines for values that grow
//! with the doc id, like `created_at`), and a key that not every user has as rows plus a
//! presence index. Reading such a column costs 3-5 ns per value, and mapping a matching row back
//! to its doc ~20 ns. Decoded into one offset per doc (2, 4 or 8 bytes, whatever the column's
//! span needs), a range is a branch-free scan at about a nanosecond per doc and a candidate check
//! is one array read.
//!
//! Segments are immutable, so a decoded column never goes stale; it is dropped when the cache
//! needs room (least recently used first), and as soon as a new snapshot no longer holds its
//! segment (merged away): under steady writes, merges replace segments every few seconds, and
//! keeping their columns until the budget forces them out held the whole budget in dead copies.
//! The budget bounds the memory (2-8 bytes per user per cached column, plus a bit per user for
//! optional columns); a column that does not fit is read from the index instead.
//!
//! Beside the columns it keeps, per segment, the docs of terms that match many of them as
//! bitmaps (a bit per user): a filter clause like `banned = false` or `plan = "pro"` then costs
//! a copy of its bits instead of decoding hundreds of thousands of postings, as Lucene's query
//! cache keeps the doc sets of frequent filter clauses.

use std::any::Any;
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tantivy::DocId;
use tantivy::columnar::{Column, ColumnType};
use tantivy::index::SegmentId;
use tantivy_sstable::{Dictionary, VoidSSTable};

use super::bits::Bits;
use super::decoded_column::DecodedColumn;
use super::decoded_terms::DecodedTerms;
use super::sort_order::SortOrder;

/// What an entry holds: a column's values, or a string column's terms.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
enum Kind {
    Values,
    Terms,
    /// A segment's user documents (every document without a `kind`).
    UserDocs,
    /// A segment's live documents when `deleted` of them are deleted. Deletes only add to a
    /// segment's deleted set, so the count names its version.
    AliveDocs {
        deleted: u32,
    },
    /// A decoded column's docs by value.
    SortOrder,
    /// The docs of a term's postings (deleted ones included).
    TermDocs,
    /// tantivy's handles of a column (their block index deserialized), named by
    /// [`numeric_key`] or another prefix per kind of column.
    Opened,
}

/// What an opened column is counted as before it is opened.
const OPENED_BYTES: usize = 256;

/// The size counted for an opened column of `values` values: handles into the mapped index and
/// a block index of ~32 bytes per 512 values.
pub fn opened_bytes(values: u32) -> usize {
    OPENED_BYTES + values as usize / 16
}

/// The name [`ColumnCache::opened`] keeps the numeric columns `name` among `types` under.
pub fn numeric_key(name: &str, types: &[ColumnType]) -> Vec<u8> {
    let mut what = b"numeric:".to_vec();
    what.extend(types.iter().map(|t| t.to_code()));
    what.push(b':');
    what.extend_from_slice(name.as_bytes());
    what
}

/// tantivy's numeric columns of one name, each with its type.
pub type OpenedColumns = Vec<(Column<u64>, ColumnType)>;

/// The segment, the column's name (or the term's bytes), its type and what is kept of it.
type Key = (SegmentId, Vec<u8>, ColumnType, Kind);

struct Entry {
    value: Arc<dyn Any + Send + Sync>,
    bytes: usize,
    last_used: u64,
}

#[derive(Default)]
struct Entries {
    map: HashMap<Key, Entry>,
    bytes: usize,
    clock: u64,
}

/// The decoded columns, bounded by a byte budget. Shared by every snapshot.
pub struct ColumnCache {
    budget: AtomicUsize,
    entries: Mutex<Entries>,
}

impl std::fmt::Debug for ColumnCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        f.debug_struct("ColumnCache")
            .field("budget", &self.budget.load(Ordering::Relaxed))
            .field("columns", &entries.map.len())
            .field("bytes", &entries.bytes)
            .finish()
    }
}

impl ColumnCache {
    pub fn new(budget_bytes: usize) -> ColumnCache {
        ColumnCache {
            budget: AtomicUsize::new(budget_bytes),
            entries: Mutex::new(Entries::default()),
        }
    }

    pub fn set_budget(&self, budget_bytes: usize) {
        self.budget.store(budget_bytes, Ordering::Relaxed);
    }

    pub fn budget(&self) -> usize {
        self.budget.load(Ordering::Relaxed)
    }

    /// Bytes held now.
    pub fn bytes(&self) -> usize {
        self.entries.lock().unwrap_or_else(|e| e.into_inner()).bytes
    }

    /// Drops the entries of segments not in `live` (the segments of the newest snapshot, each
    /// with its count of deleted docs), and live-doc bitsets of older versions of a segment. A
    /// query still reading an older snapshot may decode a dropped entry again; the next
    /// snapshot drops it once more.
    pub fn keep_segments(&self, live: &[(SegmentId, u32)]) {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        let mut freed = 0;
        entries.map.retain(|(segment, _, _, kind), entry| {
            let keep = live.iter().any(|(id, deleted)| {
                id == segment
                    && match kind {
                        Kind::AliveDocs { deleted: kept } => kept == deleted,
                        _ => true,
                    }
            });
            if !keep {
                freed += entry.bytes;
            }
            keep
        });
        entries.bytes -= freed;
    }

    /// The decoded form of `column` of `segment`, decoding it on first use; `None` when it is
    /// multi-valued or larger than the whole budget.
    pub fn get(
        &self,
        segment: SegmentId,
        name: &str,
        column_type: ColumnType,
        column: &Column<u64>,
        max_doc: DocId,
    ) -> Option<Arc<DecodedColumn>> {
        let key = (segment, name.as_bytes().to_vec(), column_type, Kind::Values);
        self.get_or_decode(key, DecodedColumn::size_of(column, max_doc), || {
            DecodedColumn::decode(column, max_doc).map(|decoded| {
                let bytes = decoded.bytes();
                (decoded, bytes)
            })
        })
    }

    /// The terms of the string column `name` of `segment` by ordinal, decoded on first use;
    /// `None` when they do not fit in the budget or are not UTF-8.
    pub fn terms(
        &self,
        segment: SegmentId,
        name: &str,
        dictionary: &Dictionary<VoidSSTable>,
    ) -> std::io::Result<Option<Arc<DecodedTerms>>> {
        let key = (
            segment,
            name.as_bytes().to_vec(),
            ColumnType::Str,
            Kind::Terms,
        );
        // The dictionary's compressed size is a lower bound on the decoded one.
        let estimate =
            dictionary.num_terms() * 4 + dictionary.sstable_slice.num_bytes().get_bytes() as usize;
        let mut failed = None;
        let terms = self.get_or_decode(key, estimate, || match DecodedTerms::decode(dictionary) {
            Ok(terms) => terms.map(|terms| {
                let bytes = terms.bytes();
                (terms, bytes)
            }),
            Err(error) => {
                failed = Some(error);
                None
            }
        });
        match failed {
            Some(error) => Err(error),
            None => Ok(terms),
        }
    }

    /// The docs of `segment` in the order of their values in `decoded` (the decoded column
    /// `name`), sorted on first use; `None` when it does not fit in the budget.
    pub fn sort_order(
        &self,
        segment: SegmentId,
        name: &str,
        decoded: &DecodedColumn,
    ) -> Option<Arc<SortOrder>> {
        let key = (
            segment,
            name.as_bytes().to_vec(),
            ColumnType::U64,
            Kind::SortOrder,
        );
        let max_doc = decoded.max_doc();
        self.get_or_decode(key, SortOrder::size_of(max_doc), || {
            let order = SortOrder::build(decoded, max_doc);
            let bytes = order.bytes();
            Some((order, bytes))
        })
    }

    /// The bitset of `segment`'s user documents, made by `make` on first use; `None` when
    /// it does not fit in the budget or `make` failed.
    pub fn user_docs(
        &self,
        segment: SegmentId,
        max_doc: DocId,
        make: impl FnOnce() -> Option<Bits>,
    ) -> Option<Arc<Bits>> {
        let key = (segment, b"kind".to_vec(), ColumnType::Bool, Kind::UserDocs);
        let bytes = (max_doc as usize).div_ceil(64) * 8;
        self.get_or_decode(key, bytes, || make().map(|bits| (bits, bytes)))
    }

    /// The live docs of `segment` while `deleted` of its docs are deleted, made by `make` on
    /// first use; `None` when they do not fit in the budget or `make` failed.
    pub fn alive_docs(
        &self,
        segment: SegmentId,
        max_doc: DocId,
        deleted: u32,
        make: impl FnOnce() -> Option<Bits>,
    ) -> Option<Arc<Bits>> {
        let key = (
            segment,
            Vec::new(),
            ColumnType::Bool,
            Kind::AliveDocs { deleted },
        );
        let bytes = (max_doc as usize).div_ceil(64) * 8;
        self.get_or_decode(key, bytes, || make().map(|bits| (bits, bytes)))
    }

    /// The docs of the term `term` (its field id and serialized value) in `segment`, deleted
    /// ones included, made by `make` on first use; `None` when they do not fit in the budget or
    /// `make` failed.
    pub fn term_docs(
        &self,
        segment: SegmentId,
        term: Vec<u8>,
        max_doc: DocId,
        make: impl FnOnce() -> Option<Bits>,
    ) -> Option<Arc<Bits>> {
        let key = (segment, term, ColumnType::Bytes, Kind::TermDocs);
        let bytes = (max_doc as usize).div_ceil(64) * 8;
        self.get_or_decode(key, bytes, || make().map(|bits| (bits, bytes)))
    }

    /// What `open` makes of tantivy's columns of `segment` (`what` names it and the column:
    /// one name per kind of value kept), kept from first use: opening a column deserializes
    /// its block index, which every query would do again. `None` when `open` failed.
    pub fn opened<T: Send + Sync + 'static>(
        &self,
        segment: SegmentId,
        what: Vec<u8>,
        open: impl FnOnce() -> Option<(T, usize)>,
    ) -> Option<Arc<T>> {
        self.made(segment, what, OPENED_BYTES, open)
    }

    /// `make`'s value for `segment`, kept; `None` (not built) when `estimate` is over budget.
    pub fn made<T: Send + Sync + 'static>(
        &self,
        segment: SegmentId,
        what: Vec<u8>,
        estimate: usize,
        make: impl FnOnce() -> Option<(T, usize)>,
    ) -> Option<Arc<T>> {
        let key = (segment, what, ColumnType::Bytes, Kind::Opened);
        self.get_or_decode(key, estimate, make)
    }

    /// The entry of `key`, decoding it with `decode` (which also says its size) when absent.
    /// Nothing is decoded when `estimate` exceeds the budget; what does not fit after decoding is
    /// returned without being kept.
    fn get_or_decode<T: Send + Sync + 'static>(
        &self,
        key: Key,
        estimate: usize,
        decode: impl FnOnce() -> Option<(T, usize)>,
    ) -> Option<Arc<T>> {
        {
            let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
            entries.clock += 1;
            let now = entries.clock;
            if let Some(entry) = entries.map.get_mut(&key) {
                entry.last_used = now;
                return entry.value.clone().downcast().ok();
            }
        }
        let budget = self.budget.load(Ordering::Relaxed);
        // Refuse before spending the time.
        if estimate > budget {
            return None;
        }
        let (decoded, size) = decode()?;
        let decoded = Arc::new(decoded);
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(entry) = entries.map.get(&key) {
            return entry.value.clone().downcast().ok();
        }
        while entries.bytes + size > budget {
            let Some(oldest) = entries
                .map
                .iter()
                .min_by_key(|(_, entry)| entry.last_used)
                .map(|(key, _)| key.clone())
            else {
                break;
            };
            if let Some(entry) = entries.map.remove(&oldest) {
                entries.bytes -= entry.bytes;
            }
        }
        if entries.bytes + size > budget {
            return Some(decoded);
        }
        entries.clock += 1;
        let last_used = entries.clock;
        entries.bytes += size;
        entries.map.insert(
            key,
            Entry {
                value: decoded.clone(),
                bytes: size,
                last_used,
            },
        );
        Some(decoded)
    }
}

#[cfg(test)]
mod tests {
    use tantivy::Index;
    use tantivy::schema::Schema;

    use super::*;
    use crate::index::engine::decoded_column::tests::segment;

    #[test]
    fn the_cache_keeps_the_recently_used_columns_within_its_budget() {
        let (index, name) = segment(&vec![Some(1); 1000]);
        let searcher = index.reader().unwrap().searcher();
        let reader = searcher.segment_reader(0);
        let (column, column_type) = reader
            .fast_fields()
            .u64_lenient_for_type(None, &name)
            .unwrap()
            .unwrap();
        let one = DecodedColumn::decode(&column, 1000).unwrap().bytes();
        let cache = ColumnCache::new(one * 2);
        let id = reader.segment_id();
        let get = |name: &str| cache.get(id, name, column_type, &column, 1000).unwrap();
        let first = get("a");
        assert!(
            Arc::ptr_eq(&first, &get("a")),
            "a second use is served from the cache"
        );
        get("b");
        get("a");
        get("c"); // evicts b, the least recently used
        assert_eq!(cache.bytes(), one * 2);
        assert!(Arc::ptr_eq(&first, &get("a")));
        // A column larger than the whole budget is not decoded at all.
        let tiny = ColumnCache::new(10);
        assert!(tiny.get(id, "a", column_type, &column, 1000).is_none());
    }

    #[test]
    fn columns_of_segments_merged_away_are_dropped_at_once() {
        let (index, name) = segment(&vec![Some(1); 1000]);
        let searcher = index.reader().unwrap().searcher();
        let reader = searcher.segment_reader(0);
        let (column, column_type) = reader
            .fast_fields()
            .u64_lenient_for_type(None, &name)
            .unwrap()
            .unwrap();
        let cache = ColumnCache::new(1 << 20);
        let live = reader.segment_id();
        let gone = SegmentId::generate_random();
        cache.get(live, "a", column_type, &column, 1000).unwrap();
        cache.get(gone, "a", column_type, &column, 1000).unwrap();
        cache.get(gone, "b", column_type, &column, 1000).unwrap();
        let one = cache.bytes() / 3;
        cache.keep_segments(&[(live, 0)]);
        assert_eq!(cache.bytes(), one, "only the live segment's column is left");
        let kept = cache.get(live, "a", column_type, &column, 1000).unwrap();
        cache.keep_segments(&[(live, 0)]);
        assert!(Arc::ptr_eq(
            &kept,
            &cache.get(live, "a", column_type, &column, 1000).unwrap()
        ));
        cache.keep_segments(&[]);
        assert_eq!(cache.bytes(), 0);
    }

    #[test]
    fn opened_columns_are_opened_once_per_segment_name_and_types() {
        let (index, name) = segment(&vec![Some(1); 1000]);
        let searcher = index.reader().unwrap().searcher();
        let reader = searcher.segment_reader(0);
        let cache = ColumnCache::new(1 << 20);
        let id = reader.segment_id();
        let opens = std::cell::Cell::new(0);
        let open = |types: &[ColumnType]| {
            cache.opened(id, numeric_key(&name, types), || {
                opens.set(opens.get() + 1);
                let columns: OpenedColumns = reader
                    .fast_fields()
                    .u64_lenient_for_type_all(None, &name)
                    .ok()?;
                Some((columns, opened_bytes(1000)))
            })
        };
        let first = open(&[ColumnType::I64]).unwrap();
        assert_eq!(first.len(), 1);
        assert!(Arc::ptr_eq(&first, &open(&[ColumnType::I64]).unwrap()));
        assert_eq!(opens.get(), 1, "the second use is served from the cache");
        open(&[ColumnType::I64, ColumnType::DateTime]).unwrap();
        assert_eq!(opens.get(), 2, "another set of types is opened apart");
        assert!(cache.bytes() >= 2 * 256);
        cache.keep_segments(&[]);
        assert_eq!(cache.bytes(), 0, "dropped with their segment");
        let failed = cache.opened::<OpenedColumns>(id, numeric_key(&name, &[]), || None);
        assert!(failed.is_none(), "a failed open is not kept");
        assert_eq!(cache.bytes(), 0);
        let built = std::cell::Cell::new(0);
        let make = || {
            built.set(built.get() + 1);
            Some((vec![0u64; 4], 32))
        };
        let too_big = cache.made(id, b"bits".to_vec(), 2 << 20, make);
        assert!(too_big.is_none(), "what cannot be kept is not built");
        assert_eq!(built.get(), 0);
        assert!(cache.made(id, b"bits".to_vec(), 32, make).is_some());
        assert!(cache.made(id, b"bits".to_vec(), 32, make).is_some());
        assert_eq!(
            (built.get(), cache.bytes()),
            (1, 32),
            "built once, then kept"
        );
    }

    #[test]
    fn live_docs_of_an_older_delete_count_are_dropped_with_the_next_snapshot() {
        let cache = ColumnCache::new(1 << 20);
        let id = SegmentId::generate_random();
        let made = |deleted: u32| {
            let mut made = false;
            cache.alive_docs(id, 1000, deleted, || {
                made = true;
                Some(Bits::full(1000))
            });
            made
        };
        assert!(made(3), "first use makes the bits");
        assert!(!made(3), "the same delete count reuses them");
        assert!(made(5), "a new delete count is a new version");
        cache.keep_segments(&[(id, 5)]);
        assert_eq!(
            cache.bytes(),
            1000usize.div_ceil(64) * 8,
            "one version left"
        );
        assert!(!made(5));
        assert!(made(3));
    }

    #[test]
    fn decoded_terms_hold_a_string_columns_dictionary_by_ordinal() {
        let mut schema = Schema::builder();
        let s = schema.add_text_field("s", tantivy::schema::STRING | tantivy::schema::FAST);
        let index = Index::create_in_ram(schema.build());
        let mut writer = index.writer_with_num_threads(1, 15 << 20).unwrap();
        let words = ["pear", "apple", "é", "", "banana", "apple"];
        for word in words {
            writer.add_document(tantivy::doc!(s => word)).unwrap();
        }
        writer.commit().unwrap();
        let searcher = index.reader().unwrap().searcher();
        let reader = searcher.segment_reader(0);
        let column = reader.fast_fields().str("s").unwrap().unwrap();
        let cache = ColumnCache::new(1 << 20);
        let terms = cache
            .terms(reader.segment_id(), "s", column.dictionary())
            .unwrap()
            .unwrap();
        let mut sorted: Vec<&str> = words.to_vec();
        sorted.sort();
        sorted.dedup();
        assert_eq!(terms.len(), sorted.len());
        for (ord, word) in sorted.iter().enumerate() {
            assert_eq!(terms.term(ord as u64), *word);
        }
        for doc in 0..words.len() as DocId {
            let ord = column.term_ords(doc).next().unwrap();
            assert_eq!(terms.term(ord), words[doc as usize]);
        }
        assert_eq!(cache.bytes(), terms.bytes());
        let again = cache.terms(reader.segment_id(), "s", column.dictionary());
        assert!(Arc::ptr_eq(&terms, &again.unwrap().unwrap()));
        // Values and terms of one column are different entries.
        let ords = column.ords().clone();
        assert!(
            cache
                .get(reader.segment_id(), "s", ColumnType::Str, &ords, 6)
                .is_some()
        );
        assert!(cache.bytes() > terms.bytes());
        assert!(
            ColumnCache::new(4)
                .terms(reader.segment_id(), "s", column.dictionary())
                .unwrap()
                .is_none()
        );
    }
}
