//! Filters evaluated as bitmaps, one bit per doc of a segment.
//!
//! A segmentation filter typically combines a handful of clauses that each match a large share
//! of the users (`plan = "pro"`, `NOT banned`, `created_at >= ...`). tantivy's query tree answers
//! them doc by doc through `advance`/`seek` (3-5 ns per doc per clause, and a full column scan per
//! range in a dense intersection). Here the compiled query tree is evaluated once per segment
//! into bitmaps instead: a term's postings are decoded block by block straight into bits, `AND`,
//! `OR` and `NOT` are word-wise operations, and a range either filters the candidates found so
//! far (one column read each) or scans its decoded column when most docs are still candidates.
//! Counting is a popcount. The leaves are the very queries `compile` builds, so the matches are
//! the same; only the order of work changes.
//!
//! Cost per segment is proportional to the postings read plus `max_doc / 64` words per boolean
//! node: ~16k words at a million users, a few microseconds.
//!
//! Every answer is about users: "every document" ([`AllQuery`], the base of a `NOT`) is every
//! document without a `kind` term (organizations and memberships have one, see `schema.rs`), and
//! whatever a query matches is kept within it.

use std::sync::Arc;

use tantivy::InvertedIndexReader;
use tantivy::postings::TermInfo;
use tantivy::query::{
    AllQuery, BooleanQuery, EmptyQuery, EnableScoring, Explanation, Occur, Query, Scorer,
    TermQuery, Weight,
};
use tantivy::schema::IndexRecordOption;
use tantivy::{
    COLLECT_BLOCK_BUFFER_LEN, DocId, DocSet, Score, SegmentReader, TERMINATED, TantivyError, Term,
};

use super::bits::{Bits, Operand, is_sparse_share};
use super::column_cache::ColumnCache;
use super::column_filter::{ColumnFilterQuery, RangeWeight, Resolved};

/// A column filter on its own (not inside a boolean query) is a one-leaf bitset query.
impl Query for ColumnFilterQuery {
    fn weight(&self, enable_scoring: EnableScoring<'_>) -> tantivy::Result<Box<dyn Weight>> {
        BitsetQuery::new(Box::new(self.clone()), self.cache.clone()).weight(enable_scoring)
    }
}

/// Wraps a compiled query so that it is evaluated as bitmaps.
#[derive(Debug)]
pub struct BitsetQuery {
    root: Box<dyn Query>,
    cache: Arc<ColumnCache>,
}

impl BitsetQuery {
    pub fn new(root: Box<dyn Query>, cache: Arc<ColumnCache>) -> BitsetQuery {
        BitsetQuery { root, cache }
    }
}

impl Clone for BitsetQuery {
    fn clone(&self) -> Self {
        BitsetQuery {
            root: self.root.box_clone(),
            cache: self.cache.clone(),
        }
    }
}

impl Query for BitsetQuery {
    fn weight(&self, enable_scoring: EnableScoring<'_>) -> tantivy::Result<Box<dyn Weight>> {
        Ok(Box::new(BitsetWeight {
            root: Node::plan(self.root.as_ref(), enable_scoring)?,
            cache: self.cache.clone(),
        }))
    }
}

/// The query tree, ready to evaluate per segment.
enum Node {
    All,
    Nothing,
    Term(Term),
    /// Every `all` and none of `none`; with `all` empty, any of `any` (and none of `none`).
    Boolean {
        all: Vec<Node>,
        any: Vec<Node>,
        none: Vec<Node>,
    },
    Ranges {
        base: Option<Box<Node>>,
        ranges: Vec<RangeWeight>,
    },
    /// Any other query: its own scorer, read into bits.
    Other(Box<dyn Weight>),
}

impl Node {
    fn plan(query: &dyn Query, enable_scoring: EnableScoring<'_>) -> tantivy::Result<Node> {
        if query.downcast_ref::<AllQuery>().is_some() {
            return Ok(Node::All);
        }
        if query.downcast_ref::<EmptyQuery>().is_some() {
            return Ok(Node::Nothing);
        }
        if let Some(term) = query.downcast_ref::<TermQuery>() {
            return Ok(Node::Term(term.term().clone()));
        }
        if let Some(inner) = query.downcast_ref::<BitsetQuery>() {
            return Node::plan(inner.root.as_ref(), enable_scoring);
        }
        if let Some(boolean) = query.downcast_ref::<BooleanQuery>() {
            let (mut all, mut any, mut none) = (Vec::new(), Vec::new(), Vec::new());
            for (occur, clause) in boolean.clauses() {
                let node = Node::plan(clause.as_ref(), enable_scoring)?;
                match occur {
                    Occur::Must => all.push(node),
                    Occur::Should => any.push(node),
                    Occur::MustNot => none.push(node),
                }
            }
            // With a required clause, optional ones only score.
            if !all.is_empty() {
                any.clear();
            }
            return Ok(Node::Boolean { all, any, none });
        }
        if let Some(filter) = query.downcast_ref::<ColumnFilterQuery>() {
            let base = match &filter.base {
                Some(base) => Some(Box::new(Node::plan(base.as_ref(), enable_scoring)?)),
                None => None,
            };
            return Ok(Node::Ranges {
                base,
                ranges: filter.range_weights(enable_scoring)?,
            });
        }
        Ok(Node::Other(query.weight(enable_scoring)?))
    }

    /// The node's docs, borrowed from the cache where it keeps them (a frequent term): an
    /// operand of `AND`/`OR`/`NOT` is only read, and copying its bits would cost as much as
    /// the operation.
    fn operand(&self, reader: &SegmentReader, cache: &ColumnCache) -> tantivy::Result<Operand> {
        match self {
            Node::Term(term) => term_bits(reader, term, cache),
            _ => self.eval(reader, cache).map(Operand::Owned),
        }
    }

    fn eval(&self, reader: &SegmentReader, cache: &ColumnCache) -> tantivy::Result<Bits> {
        let max_doc = reader.max_doc();
        match self {
            Node::All => match holds_other_kinds(reader)? {
                true => cached_user_docs(reader, cache).map(|docs| Bits::clone(&docs)),
                false => Ok(Bits::full(max_doc)),
            },
            Node::Nothing => Ok(Bits::none(max_doc)),
            Node::Term(term) => term_bits(reader, term, cache).map(Operand::into_owned),
            Node::Boolean { all, any, none } => {
                let mut bits = if !all.is_empty() {
                    fold(all, reader, cache, Bits::and, Bits::and_of)?
                } else if !any.is_empty() {
                    fold(any, reader, cache, Bits::or, Bits::or_of)?
                } else {
                    // Only exclusions match nothing, as in tantivy.
                    return Ok(Bits::none(max_doc));
                };
                for node in none {
                    bits.and_not(&*node.operand(reader, cache)?);
                }
                Ok(bits)
            }
            Node::Ranges { base, ranges } => {
                let mut bits = match base {
                    Some(base) => Some(base.eval(reader, cache)?),
                    None => None,
                };
                let mut checks = Vec::new();
                for range in ranges {
                    match range.resolve(reader, cache)? {
                        Resolved::NoDoc => return Ok(Bits::none(max_doc)),
                        Resolved::EveryDoc => {}
                        Resolved::Check(check) => checks.push(check),
                        Resolved::Fallback => {
                            let other = scorer_bits(range.fallback.scorer(reader, 1.0)?, max_doc);
                            match &mut bits {
                                Some(bits) => bits.and(&other),
                                None => bits = Some(other),
                            }
                        }
                    }
                }
                checks.sort_by_key(|check| check.estimate);
                for check in checks {
                    bits = Some(match bits {
                        // Few candidates left: check each; otherwise scan the column.
                        Some(mut bits) if bits.len() * 4 < max_doc as u64 => {
                            check.retain(&mut bits);
                            bits
                        }
                        Some(mut bits) => {
                            bits.and(&check.scan_bits(max_doc));
                            bits
                        }
                        None => check.scan_bits(max_doc),
                    });
                }
                Ok(bits.unwrap_or_else(|| Bits::full(max_doc)))
            }
            Node::Other(weight) => Ok(scorer_bits(weight.scorer(reader, 1.0)?, max_doc)),
        }
    }
}

/// `nodes` (at least one) combined by a commutative operation: `apply` in place into bits a
/// node made for this query, or `of` into new bits when the first two are both kept in the
/// cache (a copy of the first would cost as much as the operation).
fn fold(
    nodes: &[Node],
    reader: &SegmentReader,
    cache: &ColumnCache,
    apply: fn(&mut Bits, &Bits),
    of: fn(&Bits, &Bits) -> Bits,
) -> tantivy::Result<Bits> {
    let first = nodes[0].operand(reader, cache)?;
    let Some(second) = nodes.get(1) else {
        return Ok(first.into_owned());
    };
    let mut bits = Operand::combine(first, second.operand(reader, cache)?, apply, of);
    for node in &nodes[2..] {
        apply(&mut bits, &*node.operand(reader, cache)?);
    }
    Ok(bits)
}

/// The name of the field that marks documents other than users.
const KIND_FIELD: &str = "kind";

/// Whether a segment holds documents other than users (organizations, memberships).
fn holds_other_kinds(reader: &SegmentReader) -> tantivy::Result<bool> {
    let Ok(kind) = reader.schema().get_field(KIND_FIELD) else {
        return Ok(false);
    };
    Ok(reader.inverted_index(kind)?.terms().num_terms() > 0)
}

/// Every user document of a segment (deleted ones included: the alive bitset is applied apart).
pub fn user_docs(reader: &SegmentReader) -> tantivy::Result<Bits> {
    let mut bits = Bits::full(reader.max_doc());
    let Ok(kind) = reader.schema().get_field(KIND_FIELD) else {
        return Ok(bits);
    };
    let inverted = reader.inverted_index(kind)?;
    let mut terms = inverted.terms().stream()?;
    while let Some((_, info)) = terms.next() {
        for_each_block(&inverted, info, |docs| {
            docs.iter().for_each(|&d| bits.remove(d))
        })?;
    }
    Ok(bits)
}

/// `each` block of the postings of the term `info` describes, in doc order.
fn for_each_block(
    inverted: &InvertedIndexReader,
    info: &TermInfo,
    mut each: impl FnMut(&[DocId]),
) -> tantivy::Result<()> {
    let mut postings =
        inverted.read_block_postings_from_terminfo(info, IndexRecordOption::Basic)?;
    loop {
        let docs = postings.docs();
        if docs.is_empty() {
            return Ok(());
        }
        each(docs);
        postings.advance();
    }
}

/// The segment's user documents, kept in `cache` (a segment's documents never change).
fn cached_user_docs(reader: &SegmentReader, cache: &ColumnCache) -> tantivy::Result<Arc<Bits>> {
    let mut failed = None;
    let made = cache.user_docs(reader.segment_id(), reader.max_doc(), || {
        user_docs(reader).map_err(|e| failed = Some(e)).ok()
    });
    match (made, failed) {
        (Some(bits), _) => Ok(bits),
        (None, Some(error)) => Err(error),
        // Over the cache's budget: made for this query alone.
        (None, None) => user_docs(reader).map(Arc::new),
    }
}

/// `bits` kept within the segment's user documents.
fn only_users(
    mut bits: Bits,
    reader: &SegmentReader,
    cache: &ColumnCache,
) -> tantivy::Result<Bits> {
    if holds_other_kinds(reader)? {
        let docs = cached_user_docs(reader, cache)?;
        bits.and(&docs);
    }
    Ok(bits)
}

/// A term's docs (deleted ones included). A rare one (at most one doc in
/// [`SPARSE_SHARE`](super::bits::SPARSE_SHARE)) is its postings decoded into doc ids; a frequent
/// one is kept in the cache as bits, as its postings take longer to decode than its bits to
/// copy.
fn term_bits(reader: &SegmentReader, term: &Term, cache: &ColumnCache) -> tantivy::Result<Operand> {
    let max_doc = reader.max_doc();
    let inverted = reader.inverted_index(term.field())?;
    let Some(info) = inverted.get_term_info(term)? else {
        return Ok(Operand::Owned(Bits::none(max_doc)));
    };
    if is_sparse_share(u64::from(info.doc_freq), max_doc) {
        // A rare term: its doc ids, without a bit per doc of the segment.
        let mut docs = Vec::with_capacity(info.doc_freq as usize);
        for_each_block(&inverted, &info, |block| docs.extend_from_slice(block))?;
        return Ok(Operand::Owned(Bits::of_sorted(max_doc, docs)));
    }
    let decode = || -> tantivy::Result<Bits> {
        let mut bits = Bits::empty(max_doc);
        for_each_block(&inverted, &info, |docs| bits.insert_sorted(docs))?;
        Ok(bits)
    };
    let mut key = term.field().field_id().to_be_bytes().to_vec();
    key.extend_from_slice(term.serialized_value_bytes());
    let mut failed = None;
    let cached = cache.term_docs(reader.segment_id(), key, max_doc, || {
        decode().map_err(|error| failed = Some(error)).ok()
    });
    match (cached, failed) {
        (Some(bits), _) => Ok(Operand::Cached(bits)),
        (None, Some(error)) => Err(error),
        // Over the cache's budget.
        (None, None) => decode().map(Operand::Owned),
    }
}

/// A scorer's docs: as doc ids when it expects few, otherwise as bits.
fn scorer_bits(mut scorer: Box<dyn Scorer>, max_doc: DocId) -> Bits {
    let mut doc = scorer.doc();
    if is_sparse_share(u64::from(scorer.size_hint()), max_doc) {
        let mut docs = Vec::new();
        while doc != TERMINATED {
            docs.push(doc);
            doc = scorer.advance();
        }
        return Bits::of_sorted(max_doc, docs);
    }
    let mut bits = Bits::empty(max_doc);
    while doc != TERMINATED {
        bits.insert(doc);
        doc = scorer.advance();
    }
    bits
}

struct BitsetWeight {
    root: Node,
    cache: Arc<ColumnCache>,
}

impl Weight for BitsetWeight {
    fn scorer(&self, reader: &SegmentReader, _boost: Score) -> tantivy::Result<Box<dyn Scorer>> {
        let bits = only_users(self.root.eval(reader, &self.cache)?, reader, &self.cache)?;
        Ok(Box::new(BitsDocSet::new(bits)))
    }

    fn count(&self, reader: &SegmentReader) -> tantivy::Result<u32> {
        // One term without deletes: its document frequency, without reading postings.
        if let (Node::Term(term), false) = (&self.root, reader.has_deletes())
            && !holds_other_kinds(reader)?
        {
            return Ok(reader.inverted_index(term.field())?.doc_freq(term)?);
        }
        let mut bits = only_users(self.root.eval(reader, &self.cache)?, reader, &self.cache)?;
        drop_deleted(&mut bits, reader, &self.cache);
        Ok(bits.len() as u32)
    }

    fn explain(&self, reader: &SegmentReader, doc: DocId) -> tantivy::Result<Explanation> {
        if doc < reader.max_doc()
            && only_users(self.root.eval(reader, &self.cache)?, reader, &self.cache)?.contains(doc)
        {
            Ok(Explanation::new("BitsetQuery", 1.0))
        } else {
            Err(TantivyError::InvalidArgument(format!(
                "document {doc} does not match"
            )))
        }
    }
}

/// The live docs of `reader` that `weight` matches, as bits: taken whole from a
/// [`BitsetQuery`]'s scorer, collected from any other.
pub fn matching_bits(
    weight: &dyn Weight,
    reader: &SegmentReader,
    cache: &ColumnCache,
) -> tantivy::Result<Bits> {
    let scorer = weight.scorer(reader, 1.0)?;
    let mut bits = match scorer.downcast::<BitsDocSet>() {
        Ok(docs) => docs.bits,
        Err(scorer) => scorer_bits(scorer, reader.max_doc()),
    };
    drop_deleted(&mut bits, reader, cache);
    Ok(bits)
}

/// Clears the deleted docs of `reader` from `bits`: a word at a time with the segment's live
/// docs (kept in `cache` until the next delete), one doc at a time where they do not fit.
fn drop_deleted(bits: &mut Bits, reader: &SegmentReader, cache: &ColumnCache) {
    let Some(alive) = reader.alive_bitset() else {
        return;
    };
    let max_doc = reader.max_doc();
    let live = cache.alive_docs(
        reader.segment_id(),
        max_doc,
        reader.num_deleted_docs(),
        || {
            let mut live = Bits::empty(max_doc);
            for doc in alive.iter_alive() {
                live.insert(doc);
            }
            Some(live)
        },
    );
    match live {
        Some(live) => bits.and(&live),
        None => bits.retain(|doc| alive.is_alive(doc)),
    }
}

/// The docs of [`Bits`], in order.
pub struct BitsDocSet {
    bits: Bits,
    doc: DocId,
    size: u32,
}

impl BitsDocSet {
    pub fn new(bits: Bits) -> BitsDocSet {
        let doc = bits.next_from(0);
        let size = bits.len() as u32;
        BitsDocSet { bits, doc, size }
    }
}

impl DocSet for BitsDocSet {
    fn advance(&mut self) -> DocId {
        if self.doc != TERMINATED {
            self.doc = self.bits.next_from(self.doc + 1);
        }
        self.doc
    }

    fn seek(&mut self, target: DocId) -> DocId {
        if self.doc < target {
            self.doc = self.bits.next_from(target);
        }
        self.doc
    }

    fn fill_buffer(&mut self, buffer: &mut [DocId; COLLECT_BLOCK_BUFFER_LEN]) -> usize {
        let Some(words) = self.bits.dense_words() else {
            // Doc ids: the next ones in one copy.
            let docs = self.bits.sparse_docs().unwrap_or_default();
            let from = docs.partition_point(|&doc| doc < self.doc);
            let filled = (docs.len() - from).min(buffer.len());
            buffer[..filled].copy_from_slice(&docs[from..from + filled]);
            self.doc = docs.get(from + filled).copied().unwrap_or(TERMINATED);
            return filled;
        };
        let mut filled = 0;
        while self.doc != TERMINATED && filled < buffer.len() {
            // The rest of the current word in one go.
            let index = self.doc as usize / 64;
            let mut word = words[index] & (u64::MAX << (self.doc % 64));
            while word != 0 && filled < buffer.len() {
                buffer[filled] = index as u32 * 64 + word.trailing_zeros();
                filled += 1;
                word &= word - 1;
            }
            self.doc = if word != 0 {
                index as u32 * 64 + word.trailing_zeros()
            } else {
                self.bits.next_from((index as u32 + 1) * 64)
            };
        }
        filled
    }

    fn doc(&self) -> DocId {
        self.doc
    }

    fn size_hint(&self) -> u32 {
        self.size
    }

    fn count_including_deleted(&mut self) -> u32 {
        let from = self.doc;
        self.doc = TERMINATED;
        if from == TERMINATED {
            return 0;
        }
        let Some(words) = self.bits.dense_words() else {
            let docs = self.bits.sparse_docs().unwrap_or_default();
            return (docs.len() - docs.partition_point(|&doc| doc < from)) as u32;
        };
        // The rest of the current word, then whole words.
        let index = from as usize / 64;
        let first = (words[index] & (u64::MAX << (from % 64))).count_ones();
        let rest: u32 = words[index + 1..].iter().map(|w| w.count_ones()).sum();
        first + rest
    }
}

impl Scorer for BitsDocSet {
    fn score(&mut self) -> Score {
        1.0
    }
}
