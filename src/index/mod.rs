//! Everything that touches tantivy: the schema, user documents, query compilation, the filter
//! engine, the one writer task and searches over immutable snapshots.
//!
//! Readers never see the `IndexWriter`: they take the latest [`Snapshot`] (a tantivy `Searcher`
//! plus the freshness stamp and sync state of the commit it shows) from a watch channel that the
//! writer task updates after every commit. All calls here block; async callers use
//! `spawn_blocking`. This file only declares and re-exports: the items live in the files below.

mod catalog;
mod compile;
mod config;
mod document;
mod engine;
mod error;
mod export;
mod facet_results;
mod facet_spec;
mod facets;
mod field_values;
mod open;
mod organizations;
pub mod paths;
mod payload;
mod schema;
mod search;
mod snapshot;
mod writer;
mod writer_stats;

pub use catalog::PathTypes;
pub use config::{ColumnCacheBudget, IndexConfig, auto_writer_memory_here};
pub use engine::{SortCursor, on_this_thread};
pub use error::{IndexError, WriteError};
pub use export::{ExportMatch, IdOrderedMatches};
pub use facet_spec::{
    Calendar, FacetKind, FacetOutcome, FacetSpec, FacetValue, Facets, HistogramBucket,
    MAX_PERCENTILES, StatsOutcome, TermsOutcome,
};
pub use field_values::{Cell, Cells, Row, Slot, ValueColumns, ValuePath, push_json_str};
pub use schema::Fields;
pub use search::{SearchHit, StoredUser};
pub use snapshot::{Freshness, Snapshot, UserIndex};
pub use writer::{
    ChangeObserver, Checkpoint, IndexWriterTask, Previous, Sealer, WriterHandle, WriterThread,
};
pub use writer_stats::{Pause, WriterStats};

#[cfg(test)]
mod export_tests;
#[cfg(test)]
mod facet_tests;
#[cfg(test)]
pub(crate) mod org_tests;
#[cfg(test)]
pub(crate) mod sandbox;
#[cfg(test)]
pub(crate) mod tests;
