//! Every user matching a filter, in id order, from one snapshot, a chunk at a time.
//!
//! Each segment's matches are found by one pass of the query, with each match's id ordinal from
//! the `id` fast column, and held as `(ordinal, doc)` pairs (8 bytes each) in **windows**: a
//! window is the next [`EXPORT_WINDOW`] / segments (at least [`MIN_SEGMENT_WINDOW`]) matches in
//! id order. When a segment's window is used up, the query runs over that segment again for the
//! next one (a doc's ordinal follows its id), so an export of ten million users holds about a
//! million matches at a time, and an export smaller than that runs the query once. Selecting a
//! window keeps at most twice its size. Segments are merged by id through a heap of their heads.
//! Ids are read from the segment's decoded id dictionary (`DecodedTerms`, cached beside the
//! decoded columns): one slice per id, no allocation until the id is returned. When the cache
//! cannot hold it, the ids of a window's matches alone are resolved from the column's dictionary
//! when the window is loaded, in one sorted pass. Nothing is re-searched per chunk, unlike paging
//! with search-after.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::Arc;

use tantivy::columnar::StrColumn;
use tantivy::query::{EnableScoring, Weight};
use tantivy::{DocAddress, DocId, DocSet, Executor, SegmentReader, TERMINATED};

use super::compile::compile;
use super::engine::{DecodedTerms, enter};
use super::error::IndexError;
use super::field_values::{Row, ValueColumns};
use super::snapshot::Snapshot;
use crate::query::Filter;

/// The matches an export holds at a time, across its segments.
pub const EXPORT_WINDOW: usize = 1 << 20;
/// The fewest users of a chunk written on one thread while others write the rest.
const PART: usize = 1024;
/// The most threads one chunk is written on.
const MAX_PARTS: usize = 4;
/// The smallest window of one segment, so an index of many segments does not re-run its query
/// every few thousand users.
pub const MIN_SEGMENT_WINDOW: usize = 1 << 14;

/// An export in progress. Holds its snapshot, so later commits do not change what it returns.
pub struct IdOrderedMatches {
    snapshot: Arc<Snapshot>,
    /// The filter's query, run again over a segment for its next window.
    weight: Box<dyn Weight>,
    /// Paths read from columns for every user returned.
    values: Option<ValueColumns>,
    segments: Vec<SegmentMatches>,
    /// The next match of each segment's window to return.
    cursors: Vec<usize>,
    total: u64,
    sent: u64,
    /// Windows loaded after the first one of each segment.
    reloads: u64,
}

struct SegmentMatches {
    ordinal: u32,
    /// How many matches a window of this segment holds.
    window: usize,
    /// The window: `(id ordinal, doc)`, sorted.
    hits: Vec<(u32, DocId)>,
    /// Matches of this segment after the window.
    after_window: u64,
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
}

/// Where the ids of a segment's matches are read.
enum SegmentIds {
    /// The segment's whole id dictionary, by ordinal.
    Dictionary(Arc<DecodedTerms>),
    /// The ids of the window's matches alone, by position in `hits`.
    Window(DecodedTerms),
}

impl SegmentIds {
    fn of_window(
        dictionary: Option<Arc<DecodedTerms>>,
        hits: &[(u32, DocId)],
        column: &StrColumn,
    ) -> Result<SegmentIds, IndexError> {
        if let Some(terms) = dictionary {
            return Ok(SegmentIds::Dictionary(terms));
        }
        let ords: Vec<u64> = hits.iter().map(|(ord, _)| u64::from(*ord)).collect();
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
        Ok(SegmentIds::Window(terms))
    }
}

impl SegmentMatches {
    /// The id of the window's match `i`.
    fn id(&self, i: usize) -> &str {
        match &self.ids {
            SegmentIds::Dictionary(terms) => terms.term(u64::from(self.hits[i].0)),
            SegmentIds::Window(terms) => terms.term(i as u64),
        }
    }

    /// The type bits of `values`' paths for the window's matches, in `hits` order: read in
    /// doc order, one pass over their postings.
    fn kinds_of(&self, snapshot: &Snapshot, values: &ValueColumns) -> Result<Vec<u8>, IndexError> {
        let width = values.paths().len();
        let mut order: Vec<u32> = (0..self.hits.len() as u32).collect();
        order.sort_unstable_by_key(|&i| self.hits[i as usize].1);
        let docs: Vec<DocId> = order.iter().map(|&i| self.hits[i as usize].1).collect();
        let sorted = values.kinds(snapshot, self.ordinal, &docs)?;
        let mut kinds = vec![0; sorted.len()];
        for (at, &i) in order.iter().enumerate() {
            let i = i as usize;
            kinds[i * width..(i + 1) * width]
                .copy_from_slice(&sorted[at * width..(at + 1) * width]);
        }
        Ok(kinds)
    }
}

/// The `window` matches of one segment with the smallest id ordinals at or after `from`,
/// sorted, and how many matches there are at or after `from` in all. Holds at most twice the
/// window while it runs.
fn select_window(
    weight: &dyn Weight,
    reader: &SegmentReader,
    ids: &StrColumn,
    from: u64,
    window: usize,
) -> Result<(Vec<(u32, DocId)>, u64), IndexError> {
    let window = window.max(1);
    let mut hits: Vec<(u32, DocId)> = Vec::new();
    let mut matches = 0u64;
    let keep_smallest = |hits: &mut Vec<(u32, DocId)>| {
        if hits.len() > window {
            hits.select_nth_unstable(window - 1);
            hits.truncate(window);
        }
    };
    let mut scorer = weight.scorer(reader, 1.0)?;
    let mut doc = scorer.doc();
    while doc != TERMINATED {
        if !reader.is_deleted(doc)
            && let Some(ord) = ids.term_ords(doc).next()
            && ord >= from
        {
            matches += 1;
            // A segment holds fewer than 2^31 docs, so its id ordinals fit in 32 bits.
            hits.push((ord as u32, doc));
            if hits.len() >= 2 * window {
                keep_smallest(&mut hits);
            }
        }
        doc = scorer.advance();
    }
    keep_smallest(&mut hits);
    hits.sort_unstable();
    Ok((hits, matches))
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

    /// Windows loaded after the first one of each segment (the query ran again for each).
    pub fn reloads(&self) -> u64 {
        self.reloads
    }

    /// Reads `values` from the columns for every user returned. The paths' types are read
    /// for a window's matches when it is loaded (one pass over their postings per segment).
    pub fn with_values(mut self, mut values: ValueColumns) -> Result<Self, IndexError> {
        for segment in &self.segments {
            values.opened(&self.snapshot, segment.ordinal, segment.hits.len())?;
        }
        // Segment by segment, on the search threads when no other query is searching.
        let (_searching, executor) = enter(self.snapshot.searcher.index());
        let kinds = executor.map(
            |segment: &SegmentMatches| Ok(segment.kinds_of(&self.snapshot, &values)),
            self.segments.iter(),
        )?;
        for (segment, kinds) in self.segments.iter_mut().zip(kinds) {
            segment.kinds = kinds?;
        }
        self.values = Some(values);
        Ok(self)
    }

    /// The next `n` users (fewer at the end): their ids and where their documents are.
    pub fn next_chunk(&mut self, n: usize) -> Result<Vec<ExportMatch>, IndexError> {
        let (chunk, _) = self.merged(n)?;
        Ok(chunk)
    }

    /// What `each` makes of the next `n` users (fewer at the end), given each one's id, where
    /// its document is, and its values from columns (when asked for with
    /// [`Self::with_values`]; else its [`Row`] knows nothing). A chunk of many users read from
    /// columns is split over the index's search threads when no other query is being searched.
    pub fn next_chunk_with<T: Send>(
        &mut self,
        n: usize,
        each: impl Fn(String, DocAddress, &mut Row<'_>) -> Result<T, IndexError> + Sync,
    ) -> Result<Vec<T>, IndexError> {
        if self.values.is_none() || n < 2 * PART {
            return self.next_chunk_on(&Executor::single_thread(), n, each);
        }
        let (_searching, executor) = enter(self.snapshot.searcher.index());
        self.next_chunk_on(&executor, n, each)
    }

    /// [`Self::next_chunk_with`], split over the threads of `executor`.
    pub fn next_chunk_on<T: Send>(
        &mut self,
        executor: &Executor,
        n: usize,
        each: impl Fn(String, DocAddress, &mut Row<'_>) -> Result<T, IndexError> + Sync,
    ) -> Result<Vec<T>, IndexError> {
        let (mut chunk, kinds) = self.merged(n)?;
        let values = self.values.as_ref();
        let width = values.map_or(0, |values| values.paths().len());
        let write = |(first, part): (usize, &mut [ExportMatch])| {
            let mut scratch = String::new();
            let mut written = Vec::with_capacity(part.len());
            for (at, user) in part.iter_mut().enumerate() {
                let i = first + at;
                let mut row = Row {
                    values,
                    segment: user.address.segment_ord,
                    doc: user.address.doc_id,
                    kinds: &kinds[i * width..(i + 1) * width],
                    scratch: &mut scratch,
                };
                written.push(each(std::mem::take(&mut user.id), user.address, &mut row)?);
            }
            Ok::<_, IndexError>(written)
        };
        let parts = (chunk.len() / PART).clamp(1, MAX_PARTS);
        if values.is_none() || parts == 1 || matches!(executor, Executor::SingleThread) {
            return write((0, &mut chunk));
        }
        let size = chunk.len().div_ceil(parts);
        let parts = chunk.chunks_mut(size).enumerate();
        let written = executor.map(|(k, part)| Ok(write((k * size, part))), parts)?;
        let mut all = Vec::with_capacity(chunk.len());
        for part in written {
            all.extend(part?);
        }
        Ok(all)
    }

    /// The next `n` users in id order, and the type bits of their paths (`width` per user)
    /// when values are read.
    fn merged(&mut self, n: usize) -> Result<(Vec<ExportMatch>, Vec<u8>), IndexError> {
        let mut chunk = Vec::with_capacity(n.min(self.remaining() as usize));
        let mut kinds = Vec::new();
        while chunk.len() < n {
            match self.merge_into(&mut chunk, &mut kinds, n)? {
                Some(segment) => self.load_next_window(segment)?,
                None => break,
            }
        }
        self.sent += chunk.len() as u64;
        Ok((chunk, kinds))
    }

    /// Appends users in id order (and their type bits to `kinds`) until `chunk` holds `n` or
    /// every match is returned (`None`), or stops at a segment whose window is used up while it
    /// has more matches (`Some`).
    fn merge_into(
        &mut self,
        chunk: &mut Vec<ExportMatch>,
        kinds: &mut Vec<u8>,
        n: usize,
    ) -> Result<Option<usize>, IndexError> {
        let segments = &self.segments;
        let width = self
            .values
            .as_ref()
            .map_or(0, |values| values.paths().len());
        let cursors = &mut self.cursors;
        let used_up =
            |i: usize| cursors[i] == segments[i].hits.len() && segments[i].after_window > 0;
        if let Some(i) = (0..segments.len()).find(|&i| used_up(i)) {
            return Ok(Some(i));
        }
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
            kinds.extend_from_slice(&segment.kinds[cursors[i] * width..(cursors[i] + 1) * width]);
            chunk.push(ExportMatch {
                id: id.to_string(),
                address: DocAddress::new(segment.ordinal, doc),
            });
            cursors[i] += 1;
            if cursors[i] < segment.hits.len() {
                *head = Reverse((segment.id(cursors[i]), i));
            } else if segment.after_window > 0 {
                // Its next id may sort before the other heads: load it before going on.
                return Ok(Some(i));
            } else {
                std::collections::binary_heap::PeekMut::pop(head);
            }
        }
        Ok(None)
    }

    /// Runs the query over segment `i` again for the window after its current one.
    fn load_next_window(&mut self, i: usize) -> Result<(), IndexError> {
        let segment = &mut self.segments[i];
        let reader = self.snapshot.searcher.segment_reader(segment.ordinal);
        let column = reader
            .fast_fields()
            .str("id")?
            .ok_or_else(|| IndexError::Read("a segment lost its id column".into()))?;
        let from = segment
            .hits
            .last()
            .map_or(0, |(ord, _)| u64::from(*ord) + 1);
        let (hits, matches) = select_window(&*self.weight, reader, &column, from, segment.window)?;
        if matches != segment.after_window || hits.is_empty() {
            return Err(IndexError::Read(format!(
                "an export's segment held {} more matches, then {matches}",
                segment.after_window
            )));
        }
        let dictionary = match &segment.ids {
            SegmentIds::Dictionary(terms) => Some(terms.clone()),
            SegmentIds::Window(_) => None,
        };
        segment.ids = SegmentIds::of_window(dictionary, &hits, &column)?;
        segment.after_window = matches - hits.len() as u64;
        segment.hits = hits;
        if let Some(values) = &self.values {
            segment.kinds = segment.kinds_of(&self.snapshot, values)?;
        }
        self.cursors[i] = 0;
        self.reloads += 1;
        Ok(())
    }
}

impl Snapshot {
    /// The first window of one segment's matches whose id sorts after `after_id` (`None` for a
    /// segment without an id column).
    fn first_window(
        &self,
        weight: &dyn Weight,
        ordinal: u32,
        reader: &SegmentReader,
        after_id: Option<&str>,
        window: usize,
    ) -> Result<Option<SegmentMatches>, IndexError> {
        let Some(ids) = reader.fast_fields().str("id")? else {
            return Ok(None);
        };
        // Ordinals above this one belong to ids after `after_id`.
        let first_ord = match after_id {
            None => 0,
            Some(after) => match ids.dictionary().term_ord_or_next(after)? {
                tantivy_sstable::TermOrdHit::Exact(ord) => ord + 1,
                tantivy_sstable::TermOrdHit::Next(ord) => ord,
            },
        };
        let (hits, matches) = select_window(weight, reader, &ids, first_ord, window)?;
        let dictionary = match hits.is_empty() {
            true => None,
            false => (self.fields.columns).terms(reader.segment_id(), "id", ids.dictionary())?,
        };
        Ok(Some(SegmentMatches {
            ordinal,
            window,
            after_window: matches - hits.len() as u64,
            ids: SegmentIds::of_window(dictionary, &hits, &ids)?,
            hits,
            kinds: Vec::new(),
        }))
    }

    /// Starts an export of the users matching `filter` whose id sorts after `after_id`.
    pub fn export(
        self: &Arc<Self>,
        filter: Option<&Filter>,
        after_id: Option<&str>,
        now_ms: i64,
    ) -> Result<IdOrderedMatches, IndexError> {
        let segments = self.searcher.segment_readers().len().max(1);
        let window = (EXPORT_WINDOW / segments).max(MIN_SEGMENT_WINDOW);
        self.export_in_windows(filter, after_id, now_ms, window)
    }

    /// [`Self::export`] with `window` matches per segment at a time.
    pub fn export_in_windows(
        self: &Arc<Self>,
        filter: Option<&Filter>,
        after_id: Option<&str>,
        now_ms: i64,
        window: usize,
    ) -> Result<IdOrderedMatches, IndexError> {
        let query = compile(&self.fields, filter, now_ms, self.org_slots);
        let weight = query.weight(EnableScoring::disabled_from_searcher(&self.searcher))?;
        // Each segment's first window, on the search threads when no other query is searching.
        let (_searching, executor) = enter(self.searcher.index());
        let first_windows = executor.map(
            |(ordinal, reader): (usize, &SegmentReader)| {
                Ok(self.first_window(&*weight, ordinal as u32, reader, after_id, window))
            },
            self.searcher.segment_readers().iter().enumerate(),
        )?;
        let mut segments = Vec::new();
        let mut total = 0;
        for first in first_windows {
            if let Some(segment) = first? {
                total += segment.hits.len() as u64 + segment.after_window;
                segments.push(segment);
            }
        }
        Ok(IdOrderedMatches {
            snapshot: self.clone(),
            weight,
            values: None,
            cursors: vec![0; segments.len()],
            segments,
            total,
            sent: 0,
            reloads: 0,
        })
    }
}
