//! Every user matching a filter, in id order, from one snapshot, a chunk at a time.
//!
//! The matches are found once (one pass of the query over each segment), with each match's id
//! ordinal from the `id` fast column: 12 bytes per match, so a million matches hold ~12 MB while
//! the export runs. Ordinals are sorted per segment (a segment's ordinals follow id order), ids
//! are resolved from the column's dictionary a block at a time, and the segments are merged by
//! id. Nothing is re-searched per chunk, unlike paging with search-after.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::sync::Arc;

use tantivy::columnar::StrColumn;
use tantivy::query::EnableScoring;
use tantivy::{DocAddress, DocId, DocSet, TERMINATED};

use super::compile::compile;
use super::{IndexError, Snapshot};
use crate::query::Filter;

/// Ids resolved per segment at a time.
const RESOLVE_BATCH: usize = 256;

/// An export in progress. Holds its snapshot, so later commits do not change what it returns.
pub struct IdOrderedMatches {
    snapshot: Arc<Snapshot>,
    segments: Vec<SegmentMatches>,
    total: u64,
    sent: u64,
}

struct SegmentMatches {
    ordinal: u32,
    ids: StrColumn,
    /// `(id ordinal, doc)`, sorted.
    hits: Vec<(u64, DocId)>,
    next: usize,
    resolved: VecDeque<(String, DocId)>,
}

impl SegmentMatches {
    /// Makes sure the head is resolved, unless the segment is exhausted.
    fn fill(&mut self) -> Result<(), IndexError> {
        if !self.resolved.is_empty() || self.next >= self.hits.len() {
            return Ok(());
        }
        let end = (self.next + RESOLVE_BATCH).min(self.hits.len());
        let batch = &self.hits[self.next..end];
        let ords: Vec<u64> = batch.iter().map(|(ord, _)| *ord).collect();
        let mut docs = batch.iter().map(|(_, doc)| *doc);
        let resolved = &mut self.resolved;
        let mut invalid = false;
        self.ids
            .dictionary()
            .sorted_ords_to_term_cb(&ords, |bytes| {
                let doc = docs.next().expect("one doc per ordinal");
                match std::str::from_utf8(bytes) {
                    Ok(id) => resolved.push_back((id.to_string(), doc)),
                    Err(_) => invalid = true,
                }
            })?;
        if invalid {
            return Err(IndexError::Read(
                "a user id in the index is not UTF-8".into(),
            ));
        }
        self.next = end;
        Ok(())
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

    /// The next `n` users (fewer at the end): their ids and where their documents are.
    pub fn next_chunk(&mut self, n: usize) -> Result<Vec<(String, DocAddress)>, IndexError> {
        let mut chunk = Vec::with_capacity(n.min(self.remaining() as usize));
        // The segments' heads, moved into a min-heap by id: one comparison per level per user,
        // not one per segment. Heads not taken go back to their segments at the end.
        let mut heads = BinaryHeap::with_capacity(self.segments.len());
        for (i, segment) in self.segments.iter_mut().enumerate() {
            segment.fill()?;
            if let Some((id, doc)) = segment.resolved.pop_front() {
                heads.push(Reverse((id, i, doc)));
            }
        }
        while chunk.len() < n {
            let Some(Reverse((id, i, doc))) = heads.pop() else {
                break;
            };
            let segment = &mut self.segments[i];
            chunk.push((id, DocAddress::new(segment.ordinal, doc)));
            segment.fill()?;
            if let Some((id, doc)) = segment.resolved.pop_front() {
                heads.push(Reverse((id, i, doc)));
            }
        }
        for Reverse((id, i, doc)) in heads {
            self.segments[i].resolved.push_front((id, doc));
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
        let query = compile(&self.fields, filter, now_ms);
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
            segments.push(SegmentMatches {
                ordinal: ordinal as u32,
                ids,
                hits,
                next: 0,
                resolved: VecDeque::new(),
            });
        }
        Ok(IdOrderedMatches {
            snapshot: self.clone(),
            segments,
            total,
            sent: 0,
        })
    }
}
