//! One fast column decoded into an offset per doc (2, 4 or 8 bytes, whatever the column's span
//! needs): ranges become branch-free (and, with AVX2, vector) scans (of 2-byte buckets first
//! where the offsets take 8, see `buckets.rs`), candidate checks one array read, and facets
//! count ordinals straight from the filter's bitmap words.

use std::ops::RangeInclusive;

use tantivy::DocId;
use tantivy::columnar::{Column, ColumnIndex};

use super::bits::Bits;
use super::buckets::Buckets;
use super::parallel::{count_parts, split_words};
use super::range_scan::{retain_words, scan_words};

/// The values of every doc, as offsets from the column's minimum in the narrowest width that
/// holds them (`points` between 0 and 10,000 take 2 bytes per user, dates 8).
enum Offsets {
    U16(Vec<u16>),
    U32(Vec<u32>),
    U64(Vec<u64>),
}

/// One column, decoded: the value of every doc.
pub struct DecodedColumn {
    min: u64,
    max: u64,
    /// `value - min` of each doc; 0 where the doc has none.
    offsets: Offsets,
    /// One bit per doc holding a value; `None` when every doc holds one.
    present: Option<Vec<u64>>,
    /// The 8-byte offsets shifted down to 2 bytes, which range scans read first.
    buckets: Option<Buckets>,
}

/// A range of the column's u64 values, in the offsets of one decoded column.
#[derive(Debug, Clone, Copy)]
pub struct OffsetRange {
    low: u64,
    span: u64,
    /// Docs without a value read offset 0, which this range holds: check presence too.
    check_presence: bool,
}

impl DecodedColumn {
    /// `None` for multi-valued columns, which stay in the index.
    pub fn decode(column: &Column<u64>, max_doc: DocId) -> Option<DecodedColumn> {
        let (min, max) = (column.min_value(), column.max_value());
        let mut values = vec![0u64; max_doc as usize];
        let present = match &column.index {
            ColumnIndex::Full => {
                let rows = column.values.num_vals().min(max_doc) as usize;
                column.values.get_range(0, &mut values[..rows]);
                for value in &mut values[..rows] {
                    *value -= min;
                }
                None
            }
            ColumnIndex::Optional(optional) => {
                let mut row_values = vec![0; column.values.num_vals() as usize];
                column.values.get_range(0, &mut row_values);
                let mut present = vec![0u64; (max_doc as usize).div_ceil(64)];
                let (mut docs, mut rows) = (Vec::new(), Vec::new());
                let all: Vec<DocId> = (0..max_doc).collect();
                for chunk in all.chunks(1 << 16) {
                    docs.clear();
                    rows.clear();
                    optional.rank_if_exists_batch(chunk, &mut docs, &mut rows);
                    for (&doc, &row) in docs.iter().zip(&rows) {
                        values[doc as usize] = row_values[row as usize] - min;
                        present[doc as usize / 64] |= 1 << (doc % 64);
                    }
                }
                Some(present)
            }
            ColumnIndex::Empty { .. } => Some(vec![0; (max_doc as usize).div_ceil(64)]),
            ColumnIndex::Multivalued(_) => return None,
        };
        let mut buckets = None;
        let offsets = match width(min, max) {
            2 => Offsets::U16(values.into_iter().map(|v| v as u16).collect()),
            4 => Offsets::U32(values.into_iter().map(|v| v as u32).collect()),
            _ => {
                buckets = Buckets::build(&values, max - min, present.as_deref());
                Offsets::U64(values)
            }
        };
        Some(DecodedColumn {
            min,
            max,
            offsets,
            present,
            buckets,
        })
    }

    /// What [`DecodedColumn::decode`] of `column` takes, in bytes.
    pub fn size_of(column: &Column<u64>, max_doc: DocId) -> usize {
        let presence = match column.index {
            ColumnIndex::Full => 0,
            _ => (max_doc as usize).div_ceil(64) * 8,
        };
        // 8-byte offsets may keep 2-byte buckets beside them.
        let width = match width(column.min_value(), column.max_value()) {
            8 => 10,
            width => width,
        };
        max_doc as usize * width + presence
    }

    pub fn bytes(&self) -> usize {
        let values = match &self.offsets {
            Offsets::U16(v) => v.len() * 2,
            Offsets::U32(v) => v.len() * 4,
            Offsets::U64(v) => v.len() * 8,
        };
        values
            + self.present.as_ref().map_or(0, |p| p.len() * 8)
            + self.buckets.as_ref().map_or(0, Buckets::bytes)
    }

    /// The smallest and largest u64 value of the column.
    pub fn bounds(&self) -> (u64, u64) {
        (self.min, self.max)
    }

    /// `range` in this column's offsets; `None` when no value can be in it.
    pub fn offset_range(&self, range: &RangeInclusive<u64>) -> Option<OffsetRange> {
        if *range.end() < self.min || *range.start() > self.max {
            return None;
        }
        let low = range.start().max(&self.min) - self.min;
        let high = range.end().min(&self.max) - self.min;
        (low <= high).then_some(OffsetRange {
            low,
            span: high - low,
            check_presence: low == 0 && self.present.is_some(),
        })
    }

    #[inline]
    fn has(&self, doc: DocId) -> bool {
        match &self.present {
            None => true,
            Some(bits) => bits[doc as usize / 64] & (1 << (doc % 64)) != 0,
        }
    }

    #[inline]
    fn offset(&self, doc: DocId) -> u64 {
        match &self.offsets {
            Offsets::U16(v) => v[doc as usize] as u64,
            Offsets::U32(v) => v[doc as usize] as u64,
            Offsets::U64(v) => v[doc as usize],
        }
    }

    /// The column's u64 value of `doc`, if it has one.
    #[inline]
    pub fn value(&self, doc: DocId) -> Option<u64> {
        self.has(doc).then(|| self.offset(doc) + self.min)
    }

    /// Adds one to `counts[value]` for the value of each doc of `docs` (one bit per doc) that has
    /// one (for columns of small values, such as string ordinals). Dense words of matches, the
    /// common case under broad filters, count without branching per doc.
    pub fn count_bits(&self, docs: &[u64], counts: &mut [u32]) {
        if counts.is_empty() {
            // No value to count into (a column without values): every doc is absent.
            return;
        }
        // In parts across threads when the segment is large and the query alone.
        count_parts(docs, counts, |first, docs, counts| {
            self.count_bits_part(first, docs, counts)
        });
    }

    /// [`Self::count_bits`] of the docs of `docs`, the words from `first` on.
    fn count_bits_part(&self, first: usize, docs: &[u64], counts: &mut [u32]) {
        fn count<T: Copy + Into<u64>>(
            offsets: &[T],
            min: u64,
            present: Option<&[u64]>,
            docs: &[u64],
            counts: &mut [u32],
        ) {
            // Dense words count into four interleaved tables: consecutive docs often hold the
            // same value, and one table would make each increment wait for the previous one.
            let n = counts.len();
            let mut lanes = vec![0u32; 4 * n];
            // Docs without a value read offset 0: counted as `min`, then taken back.
            let mut absent = 0u32;
            for (index, &word) in docs.iter().enumerate() {
                if let Some(present) = present {
                    absent += (word & !present[index]).count_ones();
                }
                let base = index * 64;
                if word.count_ones() >= 16 && base + 64 <= offsets.len() {
                    // Dense: every doc of the word adds its bit, without branching on it.
                    for (i, four) in offsets[base..base + 64].chunks_exact(4).enumerate() {
                        let bits = (word >> (4 * i)) as u32;
                        lanes[(four[0].into() + min) as usize] += bits & 1;
                        lanes[n + (four[1].into() + min) as usize] += (bits >> 1) & 1;
                        lanes[2 * n + (four[2].into() + min) as usize] += (bits >> 2) & 1;
                        lanes[3 * n + (four[3].into() + min) as usize] += (bits >> 3) & 1;
                    }
                    continue;
                }
                let mut rest = word;
                while rest != 0 {
                    let bit = rest.trailing_zeros() as usize;
                    rest &= rest - 1;
                    counts[(offsets[base + bit].into() + min) as usize] += 1;
                }
            }
            for lane in lanes.chunks_exact(n.max(1)) {
                for (count, add) in counts.iter_mut().zip(lane) {
                    *count += add;
                }
            }
            if absent > 0 {
                counts[min as usize] -= absent;
            }
        }
        let present = self.present.as_deref().map(|present| &present[first..]);
        let from = first * 64;
        match &self.offsets {
            Offsets::U16(v) => count(&v[from..], self.min, present, docs, counts),
            Offsets::U32(v) => count(&v[from..], self.min, present, docs, counts),
            Offsets::U64(v) => count(&v[from..], self.min, present, docs, counts),
        }
    }

    /// Whether `doc` holds a value in `range`.
    #[inline]
    pub fn matches(&self, doc: DocId, range: &OffsetRange) -> bool {
        self.offset(doc).wrapping_sub(range.low) <= range.span
            && (!range.check_presence || self.has(doc))
    }

    /// Keeps the docs of `bits` holding a value in `range`.
    pub fn retain(&self, bits: &mut Bits, range: &OffsetRange) {
        if bits.sparse_docs().is_some() {
            return bits.retain(|doc| self.matches(doc, range));
        }
        split_words(bits.words_mut(), |first, words| {
            let from = first * 64;
            match &self.offsets {
                Offsets::U16(v) => retain_words(&v[from..], range.low, range.span, words),
                Offsets::U32(v) => retain_words(&v[from..], range.low, range.span, words),
                Offsets::U64(v) => retain_words(&v[from..], range.low, range.span, words),
            }
            self.drop_absent(range, first, words);
        });
    }

    /// The docs the column was decoded for.
    pub fn max_doc(&self) -> DocId {
        (match &self.offsets {
            Offsets::U16(v) => v.len(),
            Offsets::U32(v) => v.len(),
            Offsets::U64(v) => v.len(),
        }) as DocId
    }

    /// The docs holding a value in `range`, scanned in parts across threads when the segment
    /// is large and the query alone.
    pub fn scan(&self, range: &OffsetRange) -> Bits {
        let mut bits = Bits::empty(self.max_doc());
        split_words(bits.words_mut(), |first, words| {
            let (low, span, from) = (range.low, range.span, first * 64);
            match &self.offsets {
                Offsets::U16(v) => scan_words(&v[from..], low, span, words),
                Offsets::U32(v) => scan_words(&v[from..], low, span, words),
                Offsets::U64(v) => match &self.buckets {
                    Some(buckets) => buckets.scan(v, low, span, words, first),
                    None => scan_words(&v[from..], low, span, words),
                },
            }
            self.drop_absent(range, first, words);
        });
        bits
    }

    /// Docs without a value read offset 0: clears them when `range` holds 0 (`words` are the
    /// ones from `first` on).
    fn drop_absent(&self, range: &OffsetRange, first: usize, words: &mut [u64]) {
        if let (true, Some(present)) = (range.check_presence, &self.present) {
            for (word, present) in words.iter_mut().zip(&present[first..]) {
                *word &= present;
            }
        }
    }
}

/// Bytes per doc of the offsets of values between `min` and `max`.
fn width(min: u64, max: u64) -> usize {
    match max.saturating_sub(min) {
        amplitude if amplitude <= u16::MAX as u64 => 2,
        amplitude if amplitude <= u32::MAX as u64 => 4,
        _ => 8,
    }
}

#[cfg(test)]
pub(super) mod tests {
    use tantivy::columnar::MonotonicallyMappableToU64;
    use tantivy::schema::{NumericOptions, Schema};
    use tantivy::{Index, TantivyDocument};

    use super::*;

    /// One segment whose `n` column holds `values` (None: no value), and that column.
    pub(in crate::index::engine) fn segment(values: &[Option<i64>]) -> (Index, String) {
        let mut schema = Schema::builder();
        let n = schema.add_i64_field("n", NumericOptions::default().set_fast());
        let index = Index::create_in_ram(schema.build());
        let mut writer = index.writer_with_num_threads(1, 15 << 20).unwrap();
        for value in values {
            let mut doc = TantivyDocument::new();
            if let Some(v) = value {
                doc.add_i64(n, *v);
            }
            writer.add_document(doc).unwrap();
        }
        writer.commit().unwrap();
        (index, "n".to_string())
    }

    #[test]
    fn decoded_columns_hold_every_value_and_scan_like_the_column() {
        let values: Vec<Option<i64>> = (0..5000i64)
            .map(|i| (i % 3 != 0).then_some((i * 7919) % 100_000 - 50_000))
            .collect();
        let (index, name) = segment(&values);
        let searcher = index.reader().unwrap().searcher();
        let reader = searcher.segment_reader(0);
        let (column, _) = reader
            .fast_fields()
            .u64_lenient_for_type(None, &name)
            .unwrap()
            .unwrap();
        let decoded = DecodedColumn::decode(&column, reader.max_doc()).unwrap();
        assert!(matches!(decoded.offsets, Offsets::U32(_)));
        for (doc, value) in values.iter().enumerate() {
            assert_eq!(decoded.value(doc as DocId), value.map(|v| v.to_u64()));
        }
        for (low, high) in [
            (-50_000i64, 49_999i64),
            (-10, 10),
            (0, 0),
            (-50_000, -49_000),
        ] {
            let range = low.to_u64()..=high.to_u64();
            let offsets = decoded.offset_range(&range).unwrap();
            let scanned = decoded.scan(&offsets);
            for (doc, value) in values.iter().enumerate() {
                let want = value.is_some_and(|v| (low..=high).contains(&v));
                assert_eq!(
                    scanned.contains(doc as DocId),
                    want,
                    "doc {doc} in {low}..={high}"
                );
                assert_eq!(decoded.matches(doc as DocId, &offsets), want);
            }
        }
        assert!(
            decoded
                .offset_range(&(60_000i64.to_u64()..=u64::MAX))
                .is_none()
        );
    }
}
