//! The filter engine: compiled queries evaluated as per-segment bitmaps over decoded columns,
//! top-N by any fast field, and terms facets counted from decoded ordinals.
//!
//! Contract: every answer here is the answer the compiled tantivy query gives; only the order
//! of work changes (postings decoded block by block into bits, ranges checked against decoded
//! columns, boolean nodes as word-wise operations). The property tests in `index/tests.rs` run
//! the same filters with the column cache on and off and compare with the in-memory matcher,
//! which enforces it. Nothing here parses filters or knows the schema's field names; the index
//! compiles, and calls in with tantivy queries and column names.

mod bits;
mod bitset;
#[cfg(test)]
mod bitset_tests;
mod buckets;
mod column_cache;
mod column_filter;
mod dates;
mod decoded_column;
mod decoded_terms;
mod fast_terms;
mod ordinal_bits;
mod parallel;
mod range_scan;
mod sort;
mod sort_order;
mod sort_walk;

pub use bitset::BitsetQuery;
pub use column_cache::ColumnCache;
pub use column_filter::{ColumnFilterQuery, ColumnRange, RangeBounds};
pub use dates::date_of_millis;
pub use decoded_terms::DecodedTerms;
pub use fast_terms::{TermCounts, string_term_counts};
pub use parallel::{enter, on_this_thread, search};
pub use sort::{SortCursor, TopHits};
