//! Top-N by any fast field, ties broken by id, with search-after paging.
//!
//! Inside a segment every key is a small integer pair `(class, value)` whose order equals the
//! global order: booleans as 0/1, numbers through tantivy's order-preserving f64 -> u64 map, and
//! strings as `2 * ordinal + 1` in the segment's dictionary. A search-after cursor string that is
//! not in a segment's dictionary becomes the even number `2 * first_ordinal_after_it`, which sits
//! exactly between its neighbours, so the cursor comparison needs no string work per document.
//! Only each segment's top `limit` hits are turned back into strings and merged.

use std::cmp::Ordering;
use std::io;
use std::sync::Arc;

use tantivy::collector::{Collector, SegmentCollector};
use tantivy::columnar::{
    Column, ColumnType, DynamicColumn, MonotonicallyMappableToU64, NumericalType, StrColumn,
};
use tantivy::index::SegmentId;
use tantivy::{
    DateTime, DocAddress, DocId, Score, SegmentOrdinal, SegmentReader, f64_to_u64, u64_to_f64,
    u64_to_i64,
};
use tantivy_sstable::{Dictionary, VoidSSTable};

use super::column_cache::{ColumnCache, opened_bytes};
use super::column_filter::{kept_open, numeric_columns, string_column};
use super::decoded_column::DecodedColumn;
use super::decoded_terms::DecodedTerms;

use crate::query::sort::{SortSpec, SortValue, hit_cmp};
use crate::query::{CoreField, FieldPath};
use crate::user::encode_metadata_path;

/// Where a page starts: strictly after this hit.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SortCursor {
    pub value: SortValue,
    pub id: String,
}

/// One sorted hit.
#[derive(Debug, Clone)]
pub struct Hit {
    pub value: SortValue,
    pub id: String,
    pub address: DocAddress,
}

/// Collects the first `limit` hits after `after` in `spec` order.
pub struct TopHits {
    pub spec: SortSpec,
    pub after: Option<SortCursor>,
    pub limit: usize,
    /// Where a single numeric or date sort column is read from decoded.
    pub cache: Arc<ColumnCache>,
}

type LocalKey = (u8, u64);
const MISSING: LocalKey = (3, 0);

enum SubColumn {
    Bool(Column<bool>),
    Num(Column<f64>),
    Date(Column<DateTime>),
    Str(StrColumn),
}

fn local_cmp(a: LocalKey, b: LocalKey, descending: bool) -> Ordering {
    match (a.0 == MISSING.0, b.0 == MISSING.0) {
        (true, true) => Ordering::Equal,
        (true, false) => Ordering::Greater,
        (false, true) => Ordering::Less,
        _ if descending => b.cmp(&a),
        _ => a.cmp(&b),
    }
}

/// `2 * ord + 1` for a string in the dictionary; `2 * next_ord` between two entries.
fn half_ordinal(dictionary: &Dictionary<VoidSSTable>, text: &str) -> io::Result<u64> {
    Ok(match dictionary.term_ord_or_next(text.as_bytes())? {
        tantivy_sstable::TermOrdHit::Exact(ord) => 2 * ord + 1,
        tantivy_sstable::TermOrdHit::Next(ord) => 2 * ord.min(dictionary.num_terms() as u64),
    })
}

pub(super) fn column_name(path: &FieldPath) -> String {
    match path {
        FieldPath::Core(field) => field.name().to_string(),
        FieldPath::Metadata { namespace, keys } => encode_metadata_path(*namespace, keys),
    }
}

/// The decoded form of the one numeric or date column of `name`, if the cache can hold it.
fn decoded_sort_column(
    reader: &SegmentReader,
    cache: &ColumnCache,
    name: &str,
) -> tantivy::Result<Option<(Arc<DecodedColumn>, ColumnType)>> {
    let types = [
        ColumnType::I64,
        ColumnType::U64,
        ColumnType::F64,
        ColumnType::DateTime,
    ];
    // Kept open in the column cache: opening it deserializes its block index again, ~10% of a
    // top-50 page's CPU when every page did it.
    let columns = numeric_columns(reader, cache, name, &types)?;
    let [(column, column_type)] = columns.as_slice() else {
        return Ok(None);
    };
    let column_type = *column_type;
    Ok(cache
        .get(
            reader.segment_id(),
            name,
            column_type,
            column,
            reader.max_doc(),
        )
        .map(|decoded| (decoded, column_type)))
}

/// Whether two raw values of `decoded` compare as their sort keys do. The key is a monotonic
/// function of the raw value (the u64 forms of i64, f64 and dates preserve order), so this asks
/// whether it is also one to one: f64 keys are the values themselves, date columns are core
/// fields written from whole milliseconds (metadata strings never become dates), and integers
/// convert to f64 exactly up to 2^53.
fn raw_order_is_key_order(decoded: &DecodedColumn, column_type: ColumnType) -> bool {
    const EXACT: u64 = 1 << 53;
    let (min, max) = decoded.bounds();
    match column_type {
        ColumnType::F64 | ColumnType::DateTime => true,
        ColumnType::U64 => max <= EXACT,
        ColumnType::I64 => u64_to_i64(min) >= -(EXACT as i64) && u64_to_i64(max) <= EXACT as i64,
        _ => false,
    }
}

/// The sort columns of `path` in `reader`, opened once per segment.
fn sub_columns(
    reader: &SegmentReader,
    cache: &ColumnCache,
    path: &FieldPath,
) -> tantivy::Result<Arc<Vec<SubColumn>>> {
    let name = column_name(path);
    let mut what = b"sort:".to_vec();
    what.extend_from_slice(name.as_bytes());
    let bytes = |columns: &Vec<SubColumn>| columns.len() * opened_bytes(reader.max_doc());
    kept_open(
        reader,
        cache,
        what,
        || open_sub_columns(reader, path),
        bytes,
    )
}

fn open_sub_columns(reader: &SegmentReader, path: &FieldPath) -> tantivy::Result<Vec<SubColumn>> {
    let fast = reader.fast_fields();
    let name = column_name(path);
    let mut columns = Vec::new();
    for handle in fast.dynamic_column_handles(&name)? {
        let column = handle.open()?;
        match column {
            DynamicColumn::Bool(c) => columns.push(SubColumn::Bool(c)),
            DynamicColumn::Str(c) => columns.push(SubColumn::Str(c)),
            DynamicColumn::DateTime(c) => columns.push(SubColumn::Date(c)),
            numeric @ (DynamicColumn::I64(_) | DynamicColumn::U64(_) | DynamicColumn::F64(_)) => {
                if let Some(DynamicColumn::F64(c)) = numeric.coerce_numerical(NumericalType::F64) {
                    columns.push(SubColumn::Num(c));
                }
            }
            _ => {}
        }
    }
    Ok(columns)
}

impl Collector for TopHits {
    type Fruit = io::Result<Vec<Hit>>;
    type Child = SegmentTopHits;

    fn for_segment(
        &self,
        segment: SegmentOrdinal,
        reader: &SegmentReader,
    ) -> tantivy::Result<SegmentTopHits> {
        // Both kept open in the column cache: opening a column deserializes its block index,
        // ~10% of a top-50 page's time when done again by every page.
        let ids = (*string_column(reader, &self.cache, CoreField::Id.name())?)
            .clone()
            .ok_or_else(|| {
                tantivy::TantivyError::SchemaError("the id fast field is missing".into())
            })?;
        let columns = sub_columns(reader, &self.cache, &self.spec.path)?;
        let decoded = match columns.as_slice() {
            [SubColumn::Num(_) | SubColumn::Date(_)] => {
                decoded_sort_column(reader, &self.cache, &column_name(&self.spec.path))?
            }
            _ => None,
        };
        let after = match &self.after {
            None => None,
            Some(cursor) => {
                let key = match &cursor.value {
                    SortValue::Bool(b) => (0, u64::from(*b)),
                    SortValue::Num(f) => (1, f64_to_u64(*f)),
                    SortValue::Str(s) => {
                        let dictionary = columns.iter().find_map(|c| match c {
                            SubColumn::Str(c) => Some(c.dictionary()),
                            _ => None,
                        });
                        (
                            2,
                            match dictionary {
                                Some(d) => half_ordinal(d, s)?,
                                None => 0,
                            },
                        )
                    }
                    SortValue::Missing => MISSING,
                };
                Some((key, half_ordinal(ids.dictionary(), &cursor.id)?))
            }
        };
        Ok(SegmentTopHits {
            segment,
            segment_id: reader.segment_id(),
            max_doc: reader.max_doc(),
            ids,
            columns,
            decoded,
            after,
            descending: self.spec.descending,
            limit: self.limit,
            hits: Vec::new(),
            threshold: None,
            raw_threshold: None,
        })
    }

    fn requires_scoring(&self) -> bool {
        false
    }

    /// Merges the segments' top hits. Ids are resolved only for the hits that can still make
    /// the page (every value better than the `limit`-th, and its ties), not for every segment's
    /// whole top `limit`: each lookup decodes a dictionary block.
    fn merge_fruits(
        &self,
        fruits: Vec<io::Result<SegmentHits>>,
    ) -> tantivy::Result<io::Result<Vec<Hit>>> {
        let descending = self.spec.descending;
        let mut segments = Vec::new();
        for fruit in fruits {
            match fruit {
                Ok(segment) => segments.push(segment),
                Err(e) => return Ok(Err(e)),
            }
        }
        let mut candidates: Vec<(usize, PendingHit)> = segments
            .iter_mut()
            .enumerate()
            .flat_map(|(i, segment)| segment.hits.drain(..).map(move |hit| (i, hit)))
            .collect();
        let by_value = |a: &SortValue, b: &SortValue| hit_cmp((a, ""), (b, ""), descending);
        candidates.sort_by(|a, b| by_value(&a.1.value, &b.1.value));
        if candidates.len() > self.limit {
            let last = self
                .limit
                .checked_sub(1)
                .map(|i| candidates[i].1.value.clone());
            match last {
                Some(last) => {
                    candidates.retain(|c| by_value(&c.1.value, &last) != Ordering::Greater)
                }
                None => candidates.clear(),
            }
        }
        let searched_docs = segments.iter().map(|s| s.max_doc as usize).sum();
        let mut all = Vec::with_capacity(candidates.len());
        for (i, segment) in segments.iter().enumerate() {
            let mut mine: Vec<&PendingHit> = candidates
                .iter()
                .filter(|c| c.0 == i)
                .map(|c| &c.1)
                .collect();
            if mine.is_empty() {
                continue;
            }
            mine.sort_by_key(|hit| hit.id_ord);
            let ords: Vec<u64> = mine.iter().map(|hit| hit.id_ord).collect();
            let mut ids = Vec::with_capacity(ords.len());
            let read = match decoded_ids(&self.cache, segment, searched_docs) {
                Some(decoded) => {
                    for &ord in ords.iter().take_while(|&&ord| ord < decoded.len() as u64) {
                        ids.push(decoded.term(ord).to_string());
                    }
                    Ok(true)
                }
                None => segment
                    .ids
                    .dictionary()
                    .sorted_ords_to_term_cb(&ords, |bytes| {
                        ids.push(String::from_utf8_lossy(bytes).into_owned())
                    }),
            };
            match read {
                Ok(true) if ids.len() == ords.len() => {}
                Ok(_) => {
                    return Ok(Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "reading ids: an id ordinal is missing",
                    )));
                }
                Err(e) => return Ok(Err(io::Error::new(e.kind(), format!("reading ids: {e}")))),
            }
            all.extend(mine.into_iter().zip(ids).map(|(hit, id)| Hit {
                value: hit.value.clone(),
                id,
                address: hit.address,
            }));
        }
        all.sort_by(|a, b| hit_cmp((&a.value, &a.id), (&b.value, &b.id), descending));
        all.truncate(self.limit);
        Ok(Ok(all))
    }
}

/// What a user's id takes decoded, about (`user_` and 27 characters, and where it ends).
const DECODED_ID_BYTES: usize = 36;

/// The ids of `segment`'s dictionary decoded in the column cache (the entry exports read too),
/// when the ids of every segment the page reads (`searched_docs`) take at most a quarter of the
/// cache's budget: a million users with the default budget, not ten million, whose pages read
/// the dictionary rather than push the decoded columns out. Through the sstable, each id copies
/// its block and walks its deltas: 20% of a top-50 page's server time at a million users
/// (`bench/profile-top50-2026-12-08.txt`).
fn decoded_ids(
    cache: &ColumnCache,
    segment: &SegmentHits,
    searched_docs: usize,
) -> Option<Arc<DecodedTerms>> {
    if 4 * searched_docs * DECODED_ID_BYTES > cache.budget() {
        return None;
    }
    let dictionary = segment.ids.dictionary();
    cache
        .terms(segment.segment_id, CoreField::Id.name(), dictionary)
        .ok()
        .flatten()
}

/// One segment's top hits, values resolved, ids still ordinals.
pub struct SegmentHits {
    segment_id: SegmentId,
    max_doc: DocId,
    ids: StrColumn,
    hits: Vec<PendingHit>,
}

struct PendingHit {
    value: SortValue,
    id_ord: u64,
    address: DocAddress,
}

/// The per-segment half of [`TopHits`].
pub struct SegmentTopHits {
    segment: SegmentOrdinal,
    segment_id: SegmentId,
    max_doc: DocId,
    ids: StrColumn,
    columns: Arc<Vec<SubColumn>>,
    /// The one numeric or date column, decoded: one array read per doc instead of a rank and an
    /// unpack (and, for integers, a conversion to f64 through another column layer).
    decoded: Option<(Arc<DecodedColumn>, ColumnType)>,
    after: Option<(LocalKey, u64)>,
    descending: bool,
    limit: usize,
    /// `(key, id half-ordinal, doc)`, pruned to `limit` whenever it doubles.
    hits: Vec<(LocalKey, u64, DocId)>,
    /// Once `limit` hits are kept: the worst kept key. A document with a worse key cannot
    /// enter, so it is dropped before its id is even read.
    threshold: Option<LocalKey>,
    /// The threshold as the decoded column's raw value, when raw values order exactly as keys
    /// do: most docs are then dropped on one array read and one comparison.
    raw_threshold: Option<u64>,
}

impl SegmentTopHits {
    pub(super) fn limit(&self) -> usize {
        self.limit
    }

    pub(super) fn descending(&self) -> bool {
        self.descending
    }

    /// The decoded sort column, when its raw values order as the sort keys do.
    pub(super) fn ordered_column(&self) -> Option<Arc<DecodedColumn>> {
        let (decoded, column_type) = self.decoded.as_ref()?;
        raw_order_is_key_order(decoded, *column_type).then(|| decoded.clone())
    }

    fn key(&self, doc: DocId) -> LocalKey {
        if let Some((decoded, column_type)) = &self.decoded {
            let Some(value) = decoded.value(doc) else {
                return MISSING;
            };
            let number = match column_type {
                ColumnType::I64 => u64_to_i64(value) as f64,
                ColumnType::F64 => u64_to_f64(value),
                ColumnType::DateTime => DateTime::from_u64(value).into_timestamp_millis() as f64,
                _ => value as f64,
            };
            return (1, f64_to_u64(number));
        }
        let mut best: Option<LocalKey> = None;
        let mut offer = |key: LocalKey| {
            best = Some(match best {
                None => key,
                Some(current)
                    if (self.descending && key > current)
                        || (!self.descending && key < current) =>
                {
                    key
                }
                Some(current) => current,
            });
        };
        for column in self.columns.iter() {
            match column {
                SubColumn::Bool(c) => c.values_for_doc(doc).for_each(|b| offer((0, u64::from(b)))),
                SubColumn::Num(c) => c
                    .values_for_doc(doc)
                    .for_each(|f| offer((1, f64_to_u64(f)))),
                SubColumn::Date(c) => c
                    .values_for_doc(doc)
                    .for_each(|d| offer((1, f64_to_u64(d.into_timestamp_millis() as f64)))),
                SubColumn::Str(c) => c.term_ords(doc).for_each(|ord| offer((2, 2 * ord + 1))),
            }
        }
        best.unwrap_or(MISSING)
    }

    fn order(&self, a: &(LocalKey, u64, DocId), b: &(LocalKey, u64, DocId)) -> Ordering {
        local_cmp(a.0, b.0, self.descending).then(a.1.cmp(&b.1))
    }

    fn prune(&mut self) {
        let descending = self.descending;
        let cmp = |a: &(LocalKey, u64, DocId), b: &(LocalKey, u64, DocId)| {
            local_cmp(a.0, b.0, descending).then(a.1.cmp(&b.1))
        };
        if self.hits.len() > self.limit {
            self.hits.select_nth_unstable_by(self.limit, cmp);
            self.hits.truncate(self.limit);
        }
        if self.limit > 0 && self.hits.len() == self.limit {
            let worst = self
                .hits
                .iter()
                .max_by(|a, b| local_cmp(a.0, b.0, descending));
            self.threshold = worst.map(|h| h.0);
            self.raw_threshold = match (&self.decoded, worst) {
                (Some((decoded, column_type)), Some(&(_, _, doc)))
                    if raw_order_is_key_order(decoded, *column_type) =>
                {
                    decoded.value(doc)
                }
                _ => None,
            };
        }
    }

    fn value_of(&self, key: LocalKey) -> io::Result<SortValue> {
        Ok(match key {
            (0, b) => SortValue::Bool(b == 1),
            (1, v) => SortValue::Num(u64_to_f64(v)),
            (2, half) => {
                let column = self.columns.iter().find_map(|c| match c {
                    SubColumn::Str(c) => Some(c),
                    _ => None,
                });
                let mut text = String::new();
                if let Some(column) = column {
                    column.ord_to_str((half - 1) / 2, &mut text)?;
                }
                SortValue::Str(text)
            }
            _ => SortValue::Missing,
        })
    }
}

impl SegmentCollector for SegmentTopHits {
    type Fruit = io::Result<SegmentHits>;

    fn collect(&mut self, doc: DocId, _score: Score) {
        if let (Some(raw_threshold), Some((decoded, _))) = (self.raw_threshold, &self.decoded) {
            match decoded.value(doc) {
                // No value sorts after every value, in both directions.
                None => return,
                Some(raw) if self.descending && raw < raw_threshold => return,
                Some(raw) if !self.descending && raw > raw_threshold => return,
                Some(_) => {}
            }
        }
        let key = self.key(doc);
        if let Some(threshold) = self.threshold
            && local_cmp(key, threshold, self.descending) == Ordering::Greater
        {
            return;
        }
        let Some(id_ord) = self.ids.term_ords(doc).next() else {
            return;
        };
        let hit = (key, 2 * id_ord + 1, doc);
        if let Some((after_key, after_id)) = self.after
            && self.order(&hit, &(after_key, after_id, 0)) != Ordering::Greater
        {
            return;
        }
        self.hits.push(hit);
        if self.hits.len() >= 2 * self.limit.max(32) {
            self.prune();
        }
    }

    fn harvest(mut self) -> Self::Fruit {
        self.prune();
        let descending = self.descending;
        self.hits
            .sort_by(|a, b| local_cmp(a.0, b.0, descending).then(a.1.cmp(&b.1)));
        let hits = self
            .hits
            .iter()
            .map(|&(key, id_half, doc)| {
                let value = self
                    .value_of(key)
                    .map_err(|e| io::Error::new(e.kind(), format!("reading sort keys: {e}")))?;
                Ok(PendingHit {
                    value,
                    id_ord: (id_half - 1) / 2,
                    address: DocAddress::new(self.segment, doc),
                })
            })
            .collect::<io::Result<Vec<_>>>()?;
        Ok(SegmentHits {
            segment_id: self.segment_id,
            max_doc: self.max_doc,
            ids: self.ids,
            hits,
        })
    }
}
