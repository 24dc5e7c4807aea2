//! Terms facets over single-valued string columns, counted from decoded ordinals.
//!
//! tantivy's terms aggregation reads each matching doc's ordinal through the column's presence
//! index (a rank per doc, ~10 ns for a key not every user has) and hashes it into a bucket map:
//! ~5 ms for 600k matching users. Most segmentation facets are over low-cardinality strings
//! (plan, tier, country), whose ordinals decode to two bytes per user in the column cache; a
//! facet is then one pass over the filter's matches into a plain array of counts per ordinal,
//! and only ordinals that were hit are turned back into strings.
//!
//! Applies when, in every segment, the path has only a string column, with at most one value per
//! user and at most [`MAX_TERMS`] distinct values; anything else goes to the aggregation.

use std::collections::HashMap;

use tantivy::columnar::{Column, ColumnIndex, ColumnType, StrColumn};
use tantivy::query::{EnableScoring, Query};
use tantivy::{Searcher, SegmentReader};

use super::bitset::matching_bits;
use super::column_cache::ColumnCache;
use super::decoded_column::DecodedColumn;
use super::ordinal_bits::{MAX_VALUES, OrdinalBits};
use super::parallel::map_segments;

/// Distinct values per segment above which the aggregation is used instead.
pub const MAX_TERMS: u64 = 10_000;

/// One facet's column in one segment.
struct Ordinals {
    dictionary: StrColumn,
    column: Column<u64>,
    decoded: Option<std::sync::Arc<DecodedColumn>>,
    /// A bitmap per value, for a column of few values ([`OrdinalBits`]).
    bits: Option<std::sync::Arc<OrdinalBits>>,
}

/// The string column of `name` in one segment, if counting ordinals applies there:
/// `Some(None)` when the segment has no value at the path, `None` when it does not apply (other
/// value types, several values per user, too many distinct values).
fn plain_strings(reader: &SegmentReader, name: &str) -> tantivy::Result<Option<Option<StrColumn>>> {
    let fast = reader.fast_fields();
    let handles = fast.dynamic_column_handles(name)?;
    if handles.iter().any(|h| h.column_type() != ColumnType::Str) {
        return Ok(None);
    }
    Ok(match fast.str(name)? {
        None => Some(None),
        Some(column)
            if matches!(column.ords().index, ColumnIndex::Multivalued(_))
                || column.num_terms() as u64 > MAX_TERMS =>
        {
            None
        }
        Some(column) => Some(Some(column)),
    })
}

impl Ordinals {
    fn open(
        cache: &ColumnCache,
        reader: &SegmentReader,
        name: &str,
    ) -> tantivy::Result<Option<Self>> {
        let Some(Some(dictionary)) = plain_strings(reader, name)? else {
            return Ok(None);
        };
        // A column without any value (no user of the segment has one): nothing to count.
        if dictionary.num_terms() == 0 {
            return Ok(None);
        }
        let column = dictionary.ords().clone();
        let decoded = cache.get(
            reader.segment_id(),
            name,
            ColumnType::Str,
            &column,
            reader.max_doc(),
        );
        let bits = match &decoded {
            Some(decoded) if dictionary.num_terms() <= MAX_VALUES => {
                let mut what = b"ordinal-bits:".to_vec();
                what.extend_from_slice(name.as_bytes());
                // Sized up front: bitmaps that cannot be kept would be built again by every
                // facet, a pass over the segment each time; the match-by-match count is cheaper.
                let size = OrdinalBits::size_of(dictionary.num_terms(), reader.max_doc());
                cache.made(reader.segment_id(), what, size, || {
                    let bits = OrdinalBits::build(decoded, dictionary.num_terms())?;
                    let bytes = bits.bytes();
                    Some((bits, bytes))
                })
            }
            _ => None,
        };
        Ok(Some(Ordinals {
            dictionary,
            column,
            decoded,
            bits,
        }))
    }
}

/// Whether `name` can be counted here: a string-only, single-valued, low-cardinality column in
/// every segment.
fn applicable(searcher: &Searcher, name: &str) -> tantivy::Result<bool> {
    for reader in searcher.segment_readers() {
        if plain_strings(reader, name)?.is_none() {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Per column: every value with its number of matching users.
pub type TermCounts = Vec<(String, u64)>;

/// Counts the values of each of `columns` over the users `query` matches, for the columns this
/// applies to (`None` for the others), and the number of matching users.
pub fn string_term_counts(
    searcher: &Searcher,
    cache: &ColumnCache,
    query: &dyn Query,
    columns: &[Option<String>],
) -> tantivy::Result<(Vec<Option<TermCounts>>, u64)> {
    let wanted: Vec<bool> = columns
        .iter()
        .map(|name| match name {
            Some(name) => applicable(searcher, name),
            None => Ok(false),
        })
        .collect::<tantivy::Result<_>>()?;
    if !wanted.contains(&true) {
        return Ok((vec![None; columns.len()], 0));
    }
    let weight = query.weight(EnableScoring::disabled_from_searcher(searcher))?;
    let readers = searcher.segment_readers();
    let per_segment = map_segments(
        searcher.index(),
        |reader: &SegmentReader| -> tantivy::Result<(Vec<Option<TermCounts>>, u64)> {
            let ordinals = columns
                .iter()
                .zip(&wanted)
                .map(|(name, &wanted)| match (name, wanted) {
                    (Some(name), true) => Ordinals::open(cache, reader, name),
                    _ => Ok(None),
                })
                .collect::<tantivy::Result<Vec<_>>>()?;
            let mut counts: Vec<Vec<u32>> = ordinals
                .iter()
                .map(|o| match o {
                    Some(o) => vec![0; o.dictionary.num_terms()],
                    None => Vec::new(),
                })
                .collect();
            let docs = matching_bits(weight.as_ref(), reader, cache)?;
            let matched = docs.len();
            for (ordinals, counts) in ordinals.iter().zip(&mut counts) {
                // Few matches (kept as doc ids) are counted one by one.
                match (ordinals, docs.dense_words()) {
                    (
                        Some(Ordinals {
                            bits: Some(bits), ..
                        }),
                        Some(words),
                    ) => bits.count(words, counts),
                    (
                        Some(Ordinals {
                            decoded: Some(decoded),
                            ..
                        }),
                        Some(words),
                    ) => decoded.count_bits(words, counts),
                    (Some(o), _) => {
                        for doc in docs.docs() {
                            if let Some(ord) = o.column.first(doc) {
                                counts[ord as usize] += 1;
                            }
                        }
                    }
                    (None, _) => {}
                }
            }
            let mut resolved = Vec::with_capacity(columns.len());
            for (ordinals, counts) in ordinals.iter().zip(counts) {
                let Some(o) = ordinals else {
                    resolved.push(None);
                    continue;
                };
                let hit: Vec<u64> = (0..counts.len() as u64)
                    .filter(|&ord| counts[ord as usize] > 0)
                    .collect();
                let mut values = Vec::with_capacity(hit.len());
                o.dictionary
                    .dictionary()
                    .sorted_ords_to_term_cb(&hit, |bytes| {
                        values.push(String::from_utf8_lossy(bytes).into_owned())
                    })?;
                resolved.push(Some(
                    values
                        .into_iter()
                        .zip(hit.iter().map(|&ord| counts[ord as usize] as u64))
                        .collect(),
                ));
            }
            Ok((resolved, matched))
        },
        readers.iter(),
    )?;
    let mut merged: Vec<Option<HashMap<String, u64>>> =
        wanted.iter().map(|&w| w.then(HashMap::new)).collect();
    let mut matched = 0;
    for segment in per_segment {
        let (columns, segment_matched) = segment;
        matched += segment_matched;
        for (into, counts) in merged.iter_mut().zip(columns) {
            if let (Some(into), Some(counts)) = (into, counts) {
                for (value, count) in counts {
                    *into.entry(value).or_default() += count;
                }
            }
        }
    }
    Ok((
        merged
            .into_iter()
            .map(|m| m.map(|m| m.into_iter().collect()))
            .collect(),
        matched,
    ))
}
