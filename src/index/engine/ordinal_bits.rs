//! One bitmap per value of a low-cardinality string column (a plan, a tier, a country), built
//! once per segment from its decoded ordinals and kept in the column cache. A terms facet over
//! such a column counts each value as the popcount of the filter's matches AND that value's
//! bitmap: a few passes over `max_doc / 64` words instead of reading the value of every matching
//! user (at 1M users and 600k matches, ~0.4 ms of a ~1 ms facet).

use super::decoded_column::DecodedColumn;
use super::parallel::count_parts;

/// Values per segment above which a facet reads each match's value instead: every value costs a
/// pass over the segment's words and `max_doc / 8` bytes of memory.
pub const MAX_VALUES: usize = 32;

/// The docs holding each value of a column in one segment.
pub struct OrdinalBits {
    /// Words per value.
    words: usize,
    /// `values × words`: value after value.
    bits: Vec<u64>,
}

impl OrdinalBits {
    /// The bitmaps of `column`'s values `0..values` (string ordinals); `None` for more than
    /// [`MAX_VALUES`] values, or a value outside `0..values`.
    pub fn build(column: &DecodedColumn, values: usize) -> Option<OrdinalBits> {
        if values == 0 || values > MAX_VALUES {
            return None;
        }
        let max_doc = column.max_doc();
        let words = (max_doc as usize).div_ceil(64);
        debug_assert_eq!(values * words * 8, Self::size_of(values, max_doc));
        let mut bits = vec![0u64; values * words];
        for doc in 0..max_doc {
            if let Some(value) = column.value(doc) {
                let value = usize::try_from(value).ok().filter(|v| *v < values)?;
                bits[value * words + doc as usize / 64] |= 1 << (doc % 64);
            }
        }
        Some(OrdinalBits { words, bits })
    }

    pub fn bytes(&self) -> usize {
        self.bits.len() * 8
    }

    /// What [`Self::build`] takes for `values` values over `max_doc` docs.
    pub fn size_of(values: usize, max_doc: u32) -> usize {
        values * (max_doc as usize).div_ceil(64) * 8
    }

    /// Adds to `counts[value]` the docs of `docs` (one bit per doc) holding each value, in
    /// parts across threads when the segment is large and the query alone.
    pub fn count(&self, docs: &[u64], counts: &mut [u32]) {
        if self.words == 0 {
            return;
        }
        count_parts(docs, counts, |first, docs, counts| {
            self.count_part(first, docs, counts)
        });
    }

    /// [`Self::count`] of the docs of `docs`, the words from `first` on.
    fn count_part(&self, first: usize, docs: &[u64], counts: &mut [u32]) {
        for (value, bits) in self.bits.chunks_exact(self.words).enumerate() {
            let Some(count) = counts.get_mut(value) else {
                break;
            };
            *count += docs
                .iter()
                .zip(&bits[first..])
                .map(|(docs, bits)| (docs & bits).count_ones())
                .sum::<u32>();
        }
    }
}
