//! Numeric, date and keyword (ordinal) ranges over fast columns.
//!
//! tantivy's own fast-field range query reads a compressed column (3-5 ns per value) and turns
//! each matching row of an optional column (a key not every user has) back into a doc id with a
//! select that costs ~20 ns; at a million users `points >= 2000` took ~8 ms on one core and
//! `last_sign_in_at >= ...` ~15 ms. Here a range is first judged per segment against the column's
//! min/max (no doc, every doc, or a real check), then answered from the decoded column of the
//! [`ColumnCache`]: a branch-free scan, or one array read per candidate when earlier clauses
//! left few (see `bitset.rs`, which evaluates the conjunction).
//!
//! Columns this does not handle (several numeric columns for one path, multi-valued arrays) fall
//! back to tantivy's range query, so results never depend on the plan.

use std::fmt;
use std::ops::{Bound, RangeInclusive};
use std::sync::Arc;

use tantivy::columnar::{Column, ColumnIndex, ColumnType, MonotonicallyMappableToU64, StrColumn};
use tantivy::query::{EnableScoring, Query, Weight};
use tantivy::{DocId, SegmentReader};

use super::bits::Bits;
use super::column_cache::{ColumnCache, OpenedColumns, numeric_key, opened_bytes};
use super::dates::date_of_millis;
use super::decoded_column::{DecodedColumn, OffsetRange};

/// The bounds of one range, in the terms of the filter.
#[derive(Debug, Clone)]
pub enum RangeBounds {
    /// Metadata numbers: compared with whichever numeric column (i64, u64, f64) holds the path.
    Number { low: Bound<f64>, high: Bound<f64> },
    /// Milliseconds since the epoch, against a date column.
    Date { low: Bound<i64>, high: Bound<i64> },
    /// Strings of a keyword column, ranged over its ordinals (each segment's dictionary maps the
    /// bounds to ordinals once).
    Ordinals {
        low: Bound<Vec<u8>>,
        high: Bound<Vec<u8>>,
    },
}

/// One range predicate on a fast column.
pub struct ColumnRange {
    /// The fast-field name as tantivy resolves it (`created_at`, `public_metadata.points`).
    pub column: String,
    pub bounds: RangeBounds,
    /// tantivy's own query for the same range, used where a segment's columns are not plain.
    pub fallback: Box<dyn Query>,
}

impl Clone for ColumnRange {
    fn clone(&self) -> Self {
        ColumnRange {
            column: self.column.clone(),
            bounds: self.bounds.clone(),
            fallback: self.fallback.box_clone(),
        }
    }
}

impl fmt::Debug for ColumnRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ColumnRange")
            .field("column", &self.column)
            .field("bounds", &self.bounds)
            .finish()
    }
}

/// `base AND range AND range ...`; `base` is every other clause of the conjunction.
#[derive(Debug)]
pub struct ColumnFilterQuery {
    pub base: Option<Box<dyn Query>>,
    pub ranges: Vec<ColumnRange>,
    pub cache: Arc<ColumnCache>,
}

impl Clone for ColumnFilterQuery {
    fn clone(&self) -> Self {
        ColumnFilterQuery {
            base: self.base.as_ref().map(|q| q.box_clone()),
            ranges: self.ranges.clone(),
            cache: self.cache.clone(),
        }
    }
}

impl ColumnFilterQuery {
    pub(super) fn range_weights(
        &self,
        enable_scoring: EnableScoring<'_>,
    ) -> tantivy::Result<Vec<RangeWeight>> {
        self.ranges
            .iter()
            .map(|range| {
                Ok(RangeWeight {
                    column: range.column.clone(),
                    bounds: range.bounds.clone(),
                    fallback: range.fallback.weight(enable_scoring)?,
                })
            })
            .collect()
    }
}

/// A [`ColumnRange`] ready to resolve per segment.
pub(super) struct RangeWeight {
    column: String,
    bounds: RangeBounds,
    pub fallback: Box<dyn Weight>,
}

/// What one range is in one segment.
pub(super) enum Resolved {
    NoDoc,
    EveryDoc,
    Check(ColumnCheck),
    /// Not a plain column here: tantivy's range query, as one more clause.
    Fallback,
}

impl RangeWeight {
    pub fn resolve(
        &self,
        reader: &SegmentReader,
        cache: &ColumnCache,
    ) -> tantivy::Result<Resolved> {
        let (column, column_type, range) = match &self.bounds {
            RangeBounds::Ordinals { low, high } => {
                let strings = string_column(reader, cache, &self.column)?;
                let Some(strings) = strings.as_ref() else {
                    return Ok(Resolved::NoDoc);
                };
                let (low, high) = strings
                    .dictionary()
                    .term_bounds_to_ord(low.as_ref(), high.as_ref())?;
                let Some(range) = inclusive(low, high) else {
                    return Ok(Resolved::NoDoc);
                };
                (strings.ords().clone(), ColumnType::Str, range)
            }
            numeric => {
                let types: &[ColumnType] = match numeric {
                    RangeBounds::Date { .. } => &[ColumnType::DateTime],
                    _ => &[ColumnType::I64, ColumnType::U64, ColumnType::F64],
                };
                let columns = numeric_columns(reader, cache, &self.column, types)?;
                if columns.len() > 1 {
                    return Ok(Resolved::Fallback);
                }
                let Some((column, column_type)) = columns.first().cloned() else {
                    return Ok(Resolved::NoDoc);
                };
                let Some(range) = u64_range(numeric, column_type) else {
                    return Ok(Resolved::NoDoc);
                };
                (column, column_type, range)
            }
        };
        let (min, max) = (column.min_value(), column.max_value());
        if *range.end() < min || *range.start() > max || column.values.num_vals() == 0 {
            return Ok(Resolved::NoDoc);
        }
        match &column.index {
            ColumnIndex::Full if *range.start() <= min && *range.end() >= max => {
                Ok(Resolved::EveryDoc)
            }
            ColumnIndex::Full | ColumnIndex::Optional(_) => {
                let estimate = estimate(&column, &range);
                let decoded = cache
                    .get(
                        reader.segment_id(),
                        &self.column,
                        column_type,
                        &column,
                        reader.max_doc(),
                    )
                    .map(|decoded| {
                        let offsets = decoded.offset_range(&range);
                        (decoded, offsets)
                    });
                let decoded = match decoded {
                    Some((_, None)) => return Ok(Resolved::NoDoc),
                    Some((decoded, Some(offsets))) => Some((decoded, offsets)),
                    None => None,
                };
                Ok(Resolved::Check(ColumnCheck {
                    column,
                    range,
                    decoded,
                    estimate,
                }))
            }
            ColumnIndex::Empty { .. } => Ok(Resolved::NoDoc),
            ColumnIndex::Multivalued(_) => Ok(Resolved::Fallback),
        }
    }
}

/// The columns named `name` of `reader` among `types`, opened once per segment.
pub(super) fn numeric_columns(
    reader: &SegmentReader,
    cache: &ColumnCache,
    name: &str,
    types: &[ColumnType],
) -> tantivy::Result<Arc<OpenedColumns>> {
    let open = || {
        reader
            .fast_fields()
            .u64_lenient_for_type_all(Some(types), name)
    };
    let bytes = |columns: &OpenedColumns| {
        (columns.iter())
            .map(|(column, _)| opened_bytes(column.values.num_vals()))
            .sum()
    };
    kept_open(reader, cache, numeric_key(name, types), open, bytes)
}

/// The string column `name` of `reader` (`None` when it has none), opened once per segment.
pub(super) fn string_column(
    reader: &SegmentReader,
    cache: &ColumnCache,
    name: &str,
) -> tantivy::Result<Arc<Option<StrColumn>>> {
    let mut what = b"string:".to_vec();
    what.extend_from_slice(name.as_bytes());
    // Handles, the ordinals' block index and the dictionary's block index.
    let bytes = |column: &Option<StrColumn>| {
        let terms = column.as_ref().map_or(0, |c| c.num_terms());
        opened_bytes(reader.max_doc()) + terms / 8
    };
    kept_open(
        reader,
        cache,
        what,
        || reader.fast_fields().str(name),
        bytes,
    )
}

/// What `open` gives, kept in `cache` under `what` for `reader`'s segment from first use (or
/// made for this query alone when it does not fit).
pub(super) fn kept_open<T: Send + Sync + 'static>(
    reader: &SegmentReader,
    cache: &ColumnCache,
    what: Vec<u8>,
    open: impl Fn() -> tantivy::Result<T>,
    bytes: impl FnOnce(&T) -> usize,
) -> tantivy::Result<Arc<T>> {
    let mut failed = None;
    let kept = cache.opened(reader.segment_id(), what, || match open() {
        Ok(value) => {
            let size = bytes(&value);
            Some((value, size))
        }
        Err(error) => {
            failed = Some(error);
            None
        }
    });
    match (kept, failed) {
        (Some(value), _) => Ok(value),
        (None, Some(error)) => Err(error),
        // Over the cache's budget.
        (None, None) => open().map(Arc::new),
    }
}

/// `[low, high]` of ordinals as one inclusive range; `None` when empty.
fn inclusive(low: Bound<u64>, high: Bound<u64>) -> Option<RangeInclusive<u64>> {
    let low = match low {
        Bound::Included(ord) => ord,
        Bound::Excluded(ord) => ord.checked_add(1)?,
        Bound::Unbounded => 0,
    };
    let high = match high {
        Bound::Included(ord) => ord,
        Bound::Excluded(ord) => ord.checked_sub(1)?,
        Bound::Unbounded => u64::MAX,
    };
    (low <= high).then_some(low..=high)
}

/// The inclusive range of the column's u64 representation holding exactly the values within
/// `bounds`; `None` when none can.
fn u64_range(bounds: &RangeBounds, column_type: ColumnType) -> Option<RangeInclusive<u64>> {
    match (bounds.clone(), column_type) {
        (RangeBounds::Date { low, high }, _) => {
            let to_u64 = |ms: i64| date_of_millis(ms).to_u64();
            let low = match low {
                Bound::Unbounded => 0,
                Bound::Included(ms) => to_u64(ms),
                Bound::Excluded(ms) => to_u64(ms).checked_add(1)?,
            };
            let high = match high {
                Bound::Unbounded => u64::MAX,
                Bound::Included(ms) => to_u64(ms),
                Bound::Excluded(ms) => to_u64(ms).checked_sub(1)?,
            };
            (low <= high).then_some(low..=high)
        }
        (RangeBounds::Number { low, high }, ColumnType::F64) => {
            // -0.0 and 0.0 are equal numbers with adjacent representations: a bound at zero
            // takes the one that keeps both in (or both out of) the range.
            let zero = |x: f64, negative: bool| match (x == 0.0, negative) {
                (true, true) => -0.0f64,
                (true, false) => 0.0f64,
                (false, _) => x,
            };
            let low = match low {
                Bound::Unbounded => 0,
                Bound::Included(x) => zero(x, true).to_u64(),
                Bound::Excluded(x) => zero(x, false).to_u64().checked_add(1)?,
            };
            let high = match high {
                Bound::Unbounded => u64::MAX,
                Bound::Included(x) => zero(x, false).to_u64(),
                Bound::Excluded(x) => zero(x, true).to_u64().checked_sub(1)?,
            };
            (low <= high).then_some(low..=high)
        }
        (RangeBounds::Number { low, high }, ColumnType::I64 | ColumnType::U64) => {
            // The integers within the bounds, in i128 so both column types share the rounding.
            let low = match low {
                Bound::Unbounded => i128::MIN,
                Bound::Included(x) => x.ceil() as i128,
                Bound::Excluded(x) => (x.floor() as i128).saturating_add(1),
            };
            let high = match high {
                Bound::Unbounded => i128::MAX,
                Bound::Included(x) => x.floor() as i128,
                Bound::Excluded(x) => (x.ceil() as i128).saturating_sub(1),
            };
            let (min, max) = if column_type == ColumnType::I64 {
                (i64::MIN as i128, i64::MAX as i128)
            } else {
                (0, u64::MAX as i128)
            };
            let (low, high) = (low.max(min), high.min(max));
            if low > high {
                return None;
            }
            Some(if column_type == ColumnType::I64 {
                (low as i64).to_u64()..=(high as i64).to_u64()
            } else {
                low as u64..=high as u64
            })
        }
        _ => None,
    }
}

/// How many rows of `column` fall in `range`, assuming values spread evenly over min..max.
fn estimate(column: &Column<u64>, range: &RangeInclusive<u64>) -> u32 {
    let (min, max) = (column.min_value(), column.max_value());
    let rows = column.values.num_vals();
    if max <= min {
        return rows;
    }
    let low = (*range.start()).max(min);
    let high = (*range.end()).min(max);
    let fraction = (high - low) as f64 / (max - min) as f64;
    ((rows as f64 * fraction).ceil() as u32).clamp(1, rows)
}

/// A range checked against a full or optional (single-valued) column.
pub(super) struct ColumnCheck {
    column: Column<u64>,
    range: RangeInclusive<u64>,
    /// The column decoded, with `range` in its offsets, when the cache holds (or made room for)
    /// it.
    decoded: Option<(Arc<DecodedColumn>, OffsetRange)>,
    /// Estimated matching docs, for ordering the checks.
    pub estimate: u32,
}

impl ColumnCheck {
    fn matches(&self, doc: DocId) -> bool {
        match &self.decoded {
            Some((decoded, range)) => decoded.matches(doc, range),
            None => self
                .column
                .values_for_doc(doc)
                .any(|value| self.range.contains(&value)),
        }
    }

    /// Keeps the docs of `bits` holding a value in range.
    pub fn retain(&self, bits: &mut Bits) {
        match &self.decoded {
            Some((decoded, range)) => decoded.retain(bits, range),
            None => bits.retain(|doc| self.matches(doc)),
        }
    }

    /// The docs of the segment holding a value in range.
    pub fn scan_bits(&self, max_doc: DocId) -> Bits {
        if let Some((decoded, range)) = &self.decoded {
            return decoded.scan(range);
        }
        let mut bits = Bits::empty(max_doc);
        let mut docs = Vec::new();
        self.column
            .get_docids_for_value_range(self.range.clone(), 0..max_doc, &mut docs);
        bits.insert_sorted(&docs);
        bits
    }
}

#[cfg(test)]
mod tests {
    use std::ops::Bound::{Excluded, Included, Unbounded};

    use tantivy::columnar::MonotonicallyMappableToU64;

    use super::*;

    fn number(low: Bound<f64>, high: Bound<f64>, column: ColumnType) -> Option<(u64, u64)> {
        u64_range(&RangeBounds::Number { low, high }, column).map(|r| (*r.start(), *r.end()))
    }

    #[test]
    fn integer_columns_take_the_integers_within_fractional_and_exclusive_bounds() {
        let i = |v: i64| v.to_u64();
        let i64_col = ColumnType::I64;
        assert_eq!(
            number(Included(2.5), Unbounded, i64_col),
            Some((i(3), i(i64::MAX)))
        );
        assert_eq!(
            number(Excluded(2.0), Excluded(5.0), i64_col),
            Some((i(3), i(4)))
        );
        assert_eq!(number(Excluded(2.5), Included(-0.5), i64_col), None);
        assert_eq!(
            number(Unbounded, Excluded(-3.0), i64_col),
            Some((i(i64::MIN), i(-4)))
        );
        assert_eq!(number(Included(1e30), Unbounded, i64_col), None);
        // u64 columns hold no negatives: a negative lower bound is no bound at all.
        let u64_col = ColumnType::U64;
        assert_eq!(number(Included(-7.0), Included(3.9), u64_col), Some((0, 3)));
        assert_eq!(number(Unbounded, Excluded(0.0), u64_col), None);
    }

    #[test]
    fn float_columns_treat_zero_and_minus_zero_alike_and_exclude_exactly() {
        let f = |v: f64| v.to_u64();
        let col = ColumnType::F64;
        let (low, high) = number(Included(0.0), Included(0.0), col).unwrap();
        assert!(low <= f(-0.0) && f(0.0) <= high);
        let (low, _) = number(Excluded(0.0), Unbounded, col).unwrap();
        assert!(low > f(0.0) && low <= f(f64::MIN_POSITIVE));
        let (_, high) = number(Unbounded, Excluded(1.5), col).unwrap();
        assert!(high < f(1.5) && high >= f(1.4999999999));
    }

    #[test]
    fn date_bounds_are_milliseconds_of_the_date_column() {
        let at = |ms: i64| date_of_millis(ms).to_u64();
        let range = u64_range(
            &RangeBounds::Date {
                low: Excluded(1_000),
                high: Included(5_000),
            },
            ColumnType::DateTime,
        )
        .unwrap();
        assert!(!range.contains(&at(1_000)));
        assert!(range.contains(&at(1_001)) && range.contains(&at(5_000)));
        assert!(!range.contains(&at(5_001)));
        // Bounds past what nanoseconds in an i64 hold (year 2262) saturate instead of wrapping
        // around: `< 9999-01-01` still holds every time of this century.
        let far = 253_370_764_800_000; // 9999-01-01
        let range = u64_range(
            &RangeBounds::Date {
                low: Unbounded,
                high: Excluded(far),
            },
            ColumnType::DateTime,
        )
        .unwrap();
        assert!(range.contains(&at(1_700_000_000_000)) && range.contains(&at(-far)));
        assert!(date_of_millis(far) > date_of_millis(1_700_000_000_000));
    }
}
