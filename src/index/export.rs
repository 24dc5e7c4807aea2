//! Every user matching a filter, in id order, from one snapshot, a chunk at a time.
//!
//! The matches are found once (one pass of the query over each segment), with each match's id
//! ordinal from the `id` fast column: 12 bytes per match, so a million matches hold ~12 MB while
//! the export runs. Ordinals are sorted per segment (a segment's ordinals follow id order) and
//! the segments are merged by id through a heap of their heads. Ids are read from the segment's
//! decoded id dictionary (`DecodedTerms`, cached beside the decoded columns): one slice per id,
//! no allocation until the id is returned. When the cache cannot hold it, the ids of the matches
//! alone are resolved from the column's dictionary up front, in one sorted pass. Nothing is
//! re-searched per chunk, unlike paging with search-after.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::Arc;

use tantivy::columnar::StrColumn;
use tantivy::query::EnableScoring;
use tantivy::{DocAddress, DocId, DocSet, TERMINATED};

use super::compile::compile;
use super::engine::DecodedTerms;
use super::error::IndexError;
use super::field_values::{Slot, ValueColumns};
use super::snapshot::Snapshot;
use crate::query::Filter;

/// An export in progress. Holds its snapshot, so later commits do not change what it returns.
pub struct IdOrderedMatches {
    snapshot: Arc<Snapshot>,
    /// Paths read from columns for every user returned.
    values: Option<ValueColumns>,
    segments: Vec<SegmentMatches>,
    /// The next match of each segment to return.
    cursors: Vec<usize>,
    total: u64,
    sent: u64,
}

struct SegmentMatches {
    ordinal: u32,
    /// `(id ordinal, doc)`, sorted.
    hits: Vec<(u64, DocId)>,
    ids: SegmentIds,
    /// With [`IdOrderedMatches::with_values`]: the type bits of each path for each hit, in
    /// `hits` order (`ValueColumns::kinds`).
    kinds: Vec<u8>,
}

/// One user of an export.
#[derive(Debug, Clone, PartialEq)]
pub struct ExportMatch {
    pub id: String,
    /// Where its stored document is.
    pub address: DocAddress,
    /// With [`IdOrderedMatches::with_values`]: what each path holds, from the columns.
    pub slots: Vec<Slot>,
}

/// Where the ids of a segment's matches are read.
enum SegmentIds {
    /// The segment's whole id dictionary, by ordinal.
    Dictionary(Arc<DecodedTerms>),
    /// The ids of the matches alone, by position in `hits`.
    Matches(DecodedTerms),
}

impl SegmentMatches {
    fn new(
        ordinal: u32,
        hits: Vec<(u64, DocId)>,
        decoded: Option<Arc<DecodedTerms>>,
        column: &StrColumn,
    ) -> Result<Self, IndexError> {
        let ids = match decoded {
            Some(terms) => SegmentIds::Dictionary(terms),
            None => {
                let ords: Vec<u64> = hits.iter().map(|(ord, _)| *ord).collect();
                let mut terms = DecodedTerms::default();
                let mut valid = true;
                column.dictionary().sorted_ords_to_term_cb(&ords, |bytes| {
                    valid &= terms.push(bytes);
                })?;
                if !valid {
                    return Err(IndexError::Read(
                        "a user id in the index is not UTF-8".into(),
                    ));
                }
                SegmentIds::Matches(terms)
            }
        };
        Ok(SegmentMatches {
            ordinal,
            hits,
            ids,
            kinds: Vec::new(),
        })
    }

    /// The id of match `i`.
    fn id(&self, i: usize) -> &str {
        match &self.ids {
            SegmentIds::Dictionary(terms) => terms.term(self.hits[i].0),
            SegmentIds::Matches(terms) => terms.term(i as u64),
        }
    }
}

impl IdOrderedMatches {
    /// Users not yet returned.
    pub fn remaining(&self) -> u64 {
        self.total - self.sent
    }

    /// All users this export returns in total.
    pub fn total(&self) -> u64 {
        self.total
    }

    pub fn snapshot(&self) -> &Arc<Snapshot> {
        &self.snapshot
    }

    /// Reads `values` from the columns for every user returned. The paths' types are read
    /// here, once for all the matches (one pass over their postings per segment).
    pub fn with_values(mut self, mut values: ValueColumns) -> Result<Self, IndexError> {
        let width = values.paths().len();
        for segment in &mut self.segments {
            let mut order: Vec<u32> = (0..segment.hits.len() as u32).collect();
            order.sort_unstable_by_key(|&i| segment.hits[i as usize].1);
            let docs: Vec<DocId> = order.iter().map(|&i| segment.hits[i as usize].1).collect();
            let sorted = values.kinds(&self.snapshot, segment.ordinal, &docs)?;
            segment.kinds = vec![0; sorted.len()];
            for (at, &i) in order.iter().enumerate() {
                let i = i as usize;
                segment.kinds[i * width..(i + 1) * width]
                    .copy_from_slice(&sorted[at * width..(at + 1) * width]);
            }
        }
        self.values = Some(values);
        Ok(self)
    }

    /// The next `n` users (fewer at the end): their ids, where their documents are, and
    /// their values from columns if asked for.
    pub fn next_chunk(&mut self, n: usize) -> Result<Vec<ExportMatch>, IndexError> {
        let mut chunk = Vec::with_capacity(n.min(self.remaining() as usize));
        let segments = &self.segments;
        let snapshot = &self.snapshot;
        let values = &mut self.values;
        let cursors = &mut self.cursors;
        // The segments' heads in a min-heap by id: one comparison per level per user, not one
        // per segment.
        let mut heads: BinaryHeap<Reverse<(&str, usize)>> = segments
            .iter()
            .enumerate()
            .filter(|(i, segment)| cursors[*i] < segment.hits.len())
            .map(|(i, segment)| Reverse((segment.id(cursors[i]), i)))
            .collect();
        while chunk.len() < n {
            let Some(mut head) = heads.peek_mut() else {
                break;
            };
            let Reverse((id, i)) = *head;
            let segment = &segments[i];
            let doc = segment.hits[cursors[i]].1;
            let slots = match values {
                None => Vec::new(),
                Some(values) => {
                    let width = values.paths().len();
                    let kinds = &segment.kinds[cursors[i] * width..(cursors[i] + 1) * width];
                    (kinds.iter().enumerate())
                        .map(|(p, &kind)| values.slot(snapshot, segment.ordinal, p, doc, kind))
                        .collect::<Result<_, _>>()?
                }
            };
            chunk.push(ExportMatch {
                id: id.to_string(),
                address: DocAddress::new(segment.ordinal, doc),
                slots,
            });
            cursors[i] += 1;
            if cursors[i] < segment.hits.len() {
                *head = Reverse((segment.id(cursors[i]), i));
            } else {
                std::collections::binary_heap::PeekMut::pop(head);
            }
        }
        self.sent += chunk.len() as u64;
        Ok(chunk)
    }
}

impl Snapshot {
    /// Starts an export of the users matching `filter` whose id sorts after `after_id`.
    pub fn export(
        self: &Arc<Self>,
        filter: Option<&Filter>,
        after_id: Option<&str>,
        now_ms: i64,
    ) -> Result<IdOrderedMatches, IndexError> {
        let query = compile(&self.fields, filter, now_ms, self.org_slots);
        let weight = query.weight(EnableScoring::disabled_from_searcher(&self.searcher))?;
        let mut segments = Vec::new();
        let mut total = 0;
        for (ordinal, reader) in self.searcher.segment_readers().iter().enumerate() {
            let Some(ids) = reader.fast_fields().str("id")? else {
                continue;
            };
            // Ordinals above this one belong to ids after `after_id`.
            let first_ord = match after_id {
                None => 0,
                Some(after) => match ids.dictionary().term_ord_or_next(after)? {
                    tantivy_sstable::TermOrdHit::Exact(ord) => ord + 1,
                    tantivy_sstable::TermOrdHit::Next(ord) => ord,
                },
            };
            let mut hits = Vec::new();
            let mut scorer = weight.scorer(reader, 1.0)?;
            let mut doc = scorer.doc();
            while doc != TERMINATED {
                if !reader.is_deleted(doc)
                    && let Some(ord) = ids.term_ords(doc).next()
                    && ord >= first_ord
                {
                    hits.push((ord, doc));
                }
                doc = scorer.advance();
            }
            hits.sort_unstable();
            total += hits.len() as u64;
            let decoded = match hits.is_empty() {
                true => None,
                false => self
                    .fields
                    .columns
                    .terms(reader.segment_id(), "id", ids.dictionary())?,
            };
            segments.push(SegmentMatches::new(ordinal as u32, hits, decoded, &ids)?);
        }
        Ok(IdOrderedMatches {
            snapshot: self.clone(),
            values: None,
            cursors: vec![0; segments.len()],
            segments,
            total,
            sent: 0,
        })
    }
}
