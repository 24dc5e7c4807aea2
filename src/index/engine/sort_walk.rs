//! Top-N from a per-segment sort order.
//!
//! [`TopHits`] as a tantivy collector sees every matching doc: a top-50 under a filter matching
//! a quarter of a million users reads a quarter of a million sort keys. When the sort column is
//! decoded (one numeric or date column, held by the column cache) its docs are also kept sorted
//! by value, beside the decoded column. A page then takes the filter's matches as a bitmap and
//! walks that order from the best end, testing each doc against the bitmap, and stops once it
//! holds the page and the next value is worse than the page's last: about `limit * max_doc /
//! matches` steps. A filter that matches few docs is cheaper to read match by match, so the walk
//! is taken only when it is expected to be shorter; a page after a cursor reads every match as
//! before. The hits go through the same per-segment collector and merge either way.

use std::io;

use tantivy::collector::{Collector, SegmentCollector};
use tantivy::query::{EnableScoring, Query, Weight};
use tantivy::{DocId, Searcher, SegmentOrdinal, SegmentReader};

use super::bits::Bits;
use super::bitset::matching_bits;
use super::decoded_column::DecodedColumn;
use super::parallel::map_segments;
use super::sort::{Hit, SegmentHits, SegmentTopHits, TopHits, column_name};
use super::sort_order::SortOrder;

impl SegmentTopHits {
    /// Offers the docs of `bits` to the collector from the best end of `order`, until the page
    /// is full and the next value is worse than its last (`decoded` holds the values `order` was
    /// built from, whose raw order is the sort order).
    pub(super) fn walk(&mut self, order: &SortOrder, decoded: &DecodedColumn, bits: &Bits) {
        let limit = self.limit();
        let mut taken = 0;
        let mut last: Option<u64> = None;
        let docs: Box<dyn Iterator<Item = &DocId>> = match self.descending() {
            true => Box::new(order.by_value.iter().rev()),
            false => Box::new(order.by_value.iter()),
        };
        for &doc in docs {
            if !bits.contains(doc) {
                continue;
            }
            let value = decoded.value(doc);
            // Ties with the page's last value may still enter it (ties go by id).
            if taken >= limit && value != last {
                return;
            }
            self.collect(doc, 0.0);
            taken += 1;
            if taken <= limit {
                last = value;
            }
        }
        if taken < limit {
            for &doc in &order.missing {
                if bits.contains(doc) {
                    self.collect(doc, 0.0);
                }
            }
        }
    }
}

impl TopHits {
    /// The page for `query` on `searcher`, as `searcher.search(query, self)` finds it, each
    /// segment read by whichever of the walk and the matches is expected to be shorter.
    pub fn search(
        &self,
        searcher: &Searcher,
        query: &dyn Query,
    ) -> tantivy::Result<io::Result<Vec<Hit>>> {
        let weight = query.weight(EnableScoring::disabled_from_searcher(searcher))?;
        let segments = searcher.segment_readers().iter().enumerate();
        let fruits = map_segments(
            searcher.index(),
            |(ordinal, reader)| self.segment(ordinal as SegmentOrdinal, reader, weight.as_ref()),
            segments,
        )?;
        self.merge_fruits(fruits)
    }

    fn segment(
        &self,
        ordinal: SegmentOrdinal,
        reader: &SegmentReader,
        weight: &dyn Weight,
    ) -> tantivy::Result<io::Result<SegmentHits>> {
        let mut child = self.for_segment(ordinal, reader)?;
        let walkable = match (&self.after, child.ordered_column()) {
            (None, Some(decoded)) => self
                .cache
                .sort_order(reader.segment_id(), &column_name(&self.spec.path), &decoded)
                .map(|order| (order, decoded)),
            _ => None,
        };
        let Some((order, decoded)) = walkable else {
            return self.collect_segment(weight, ordinal, reader);
        };
        let bits = matching_bits(weight, reader, &self.cache)?;
        let (matches, max_doc) = (bits.len(), u64::from(reader.max_doc()));
        // Expected steps of the walk against reading each match.
        if (self.limit as u64).saturating_mul(max_doc) < matches.saturating_mul(matches) {
            child.walk(&order, &decoded, &bits);
        } else {
            for doc in bits.docs() {
                child.collect(doc, 0.0);
            }
        }
        Ok(child.harvest())
    }
}
