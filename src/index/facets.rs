//! Facets: value counts, numeric stats and histograms, date histograms — over one snapshot.
//! Terms over plain string columns are counted from decoded ordinals (`fast_terms.rs`); the rest
//! is computed by tantivy's aggregation module in one pass (plus exact follow-ups where the first
//! pass could be approximate).
//!
//! What is ours: choosing the fast column a path lives in, merging buckets whose keys are the
//! same number in different column types (a JSON path can be i64 in one segment and f64 in
//! another), rolling calendar days up into ISO weeks and months (tantivy's date histogram has
//! fixed intervals only), and the "missing" bucket, which is a count with our own `EXISTS`
//! semantics rather than tantivy's.

use std::collections::HashMap;

use serde_json::json;
use tantivy::aggregation::agg_req::Aggregations;
use tantivy::aggregation::agg_result::{
    AggregationResult, AggregationResults, BucketEntry, BucketResult, MetricResult,
};
use tantivy::aggregation::metric::PercentileValues;
use tantivy::aggregation::{AggContextParams, AggregationCollector, AggregationLimitsGuard, Key};
use tantivy::collector::Count;
use time::{Date, Duration, OffsetDateTime};

use super::compile::compile;
use super::error::IndexError;
use super::snapshot::Snapshot;
use crate::query::Filter;
use crate::query::ast::{CoreKind, FieldPath, Op, Predicate};
use crate::user::encode_metadata_path;

/// Distinct values a terms facet enumerates. Beyond this, counts stay exact (a second pass
/// recounts the returned values) but the number of distinct values becomes a lower bound.
pub const TERMS_ENUMERATION_LIMIT: u32 = 10_000;
/// Buckets any one histogram may produce.
const BUCKET_LIMIT: u32 = 20_000;
const MEMORY_LIMIT: u64 = 512 << 20;

/// One facet to compute.
#[derive(Debug, Clone, PartialEq)]
pub struct FacetSpec {
    pub name: String,
    pub path: FieldPath,
    pub kind: FacetKind,
}

#[derive(Debug, Clone, PartialEq)]
pub enum FacetKind {
    Terms { size: usize, include_missing: bool },
    Stats { percentiles: Vec<f64> },
    Histogram { interval: f64, offset: f64 },
    DateHistogram(Calendar),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Calendar {
    Day,
    /// ISO weeks, Monday to Sunday.
    Week,
    Month,
}

/// A bucket's value.
#[derive(Debug, Clone, PartialEq)]
pub enum FacetValue {
    Str(String),
    Int(i64),
    Float(f64),
    Bool(bool),
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct TermsOutcome {
    /// Most frequent first, ties by value.
    pub buckets: Vec<(FacetValue, u64)>,
    /// Value occurrences not in `buckets`.
    pub other_count: u64,
    pub distinct_values: u64,
    pub distinct_exact: bool,
    /// Matching users without a value, when asked for.
    pub missing: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct StatsOutcome {
    pub count: u64,
    pub min: f64,
    pub max: f64,
    pub avg: f64,
    pub sum: f64,
    /// `(percent, value)` in the order asked.
    pub percentiles: Vec<(f64, f64)>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct HistogramBucket {
    /// The bucket's lower bound (ms since the epoch for dates).
    pub key: f64,
    /// RFC 3339 for date buckets.
    pub key_as_string: Option<String>,
    pub count: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub enum FacetOutcome {
    Terms(TermsOutcome),
    Stats(StatsOutcome),
    Histogram(Vec<HistogramBucket>),
    DateHistogram(Vec<HistogramBucket>),
}

/// The answer to one facet request.
#[derive(Debug, Clone, PartialEq)]
pub struct Facets {
    pub matched: u64,
    pub results: Vec<(String, FacetOutcome)>,
}

/// How a path's values are stored, which decides the facets it supports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ColumnKind {
    Keyword,
    Bool,
    Date,
    /// A metadata path: strings, numbers and booleans side by side.
    Json,
}

fn column(path: &FieldPath) -> Result<(String, ColumnKind), String> {
    match path {
        FieldPath::Core(field) => {
            let kind = match field.kind() {
                CoreKind::Keyword { .. } if field.facetable() => ColumnKind::Keyword,
                CoreKind::Bool => ColumnKind::Bool,
                CoreKind::Date => ColumnKind::Date,
                _ => {
                    return Err(format!(
                        "`{}` cannot be faceted (it has no column of values; facet on `email_domain` or a keyword field instead)",
                        field.name()
                    ));
                }
            };
            Ok((field.name().to_string(), kind))
        }
        FieldPath::Metadata { namespace, keys } => {
            if keys.is_empty() {
                return Err(format!(
                    "facet on a path inside `{}`, not on the whole object",
                    namespace.short_name()
                ));
            }
            Ok((encode_metadata_path(*namespace, keys), ColumnKind::Json))
        }
    }
}

impl FacetSpec {
    /// Whether this facet can be computed; the message says why not.
    pub fn check(&self) -> Result<(), String> {
        let (_, column) = column(&self.path)?;
        let path = self.path.to_string();
        match (&self.kind, column) {
            (
                FacetKind::Terms { size, .. },
                ColumnKind::Keyword | ColumnKind::Bool | ColumnKind::Json,
            ) => {
                if *size == 0 || *size > 1000 {
                    return Err(format!("facet `{}`: size must be 1 to 1000", self.name));
                }
                Ok(())
            }
            (FacetKind::Terms { .. }, ColumnKind::Date) => Err(format!(
                "facet `{}`: `{path}` is a date; use a date histogram",
                self.name
            )),
            (FacetKind::Stats { percentiles }, ColumnKind::Json | ColumnKind::Date) => {
                if percentiles.iter().any(|p| !(0.0..=100.0).contains(p)) {
                    return Err(format!(
                        "facet `{}`: percentiles must be between 0 and 100",
                        self.name
                    ));
                }
                Ok(())
            }
            (FacetKind::Histogram { interval, offset }, ColumnKind::Json) => {
                if !(interval.is_finite() && *interval > 0.0 && offset.is_finite()) {
                    return Err(format!(
                        "facet `{}`: a histogram needs a positive interval",
                        self.name
                    ));
                }
                Ok(())
            }
            (FacetKind::DateHistogram(_), ColumnKind::Date) => Ok(()),
            (FacetKind::DateHistogram(_), _) => Err(format!(
                "facet `{}`: date histograms work on the date fields (created_at, updated_at, last_sign_in_at, last_active_at)",
                self.name
            )),
            (_, _) => Err(format!(
                "facet `{}`: `{path}` holds no numbers; use a terms facet",
                self.name
            )),
        }
    }
}

/// The aggregation requests for one facet, named `{index}` and `{index}.x` for extras.
fn requests(spec: &FacetSpec, slot: usize, into: &mut serde_json::Map<String, serde_json::Value>) {
    let (field, _) = column(&spec.path).expect("facet specs are checked before use");
    match &spec.kind {
        FacetKind::Terms { .. } => {
            into.insert(
                slot.to_string(),
                json!({"terms": {
                    "field": field,
                    "size": TERMS_ENUMERATION_LIMIT,
                    "segment_size": TERMS_ENUMERATION_LIMIT,
                    "show_term_doc_count_error": true,
                    "order": {"_count": "desc"},
                }}),
            );
        }
        FacetKind::Stats { percentiles } => {
            into.insert(slot.to_string(), json!({"stats": {"field": field}}));
            if !percentiles.is_empty() {
                into.insert(
                    format!("{slot}.p"),
                    json!({"percentiles": {"field": field, "percents": percentiles, "keyed": false}}),
                );
            }
        }
        FacetKind::Histogram { interval, offset } => {
            into.insert(
                slot.to_string(),
                json!({"histogram": {
                    "field": field, "interval": interval, "offset": offset, "min_doc_count": 1,
                }}),
            );
        }
        FacetKind::DateHistogram(_) => {
            into.insert(
                slot.to_string(),
                json!({"date_histogram": {
                    "field": field, "fixed_interval": "1d", "min_doc_count": 1,
                }}),
            );
        }
    }
}

fn aggregation_error(error: tantivy::TantivyError) -> IndexError {
    match error {
        tantivy::TantivyError::AggregationError(e) => IndexError::InvalidRequest(format!(
            "the facets ask for too much at once ({e}); use fewer facets, a larger interval or a narrower filter"
        )),
        other => IndexError::Tantivy(other),
    }
}

impl Snapshot {
    /// Computes `specs` (each already [`FacetSpec::check`]ed) over the users matching `filter`.
    pub fn facets(
        &self,
        filter: Option<&Filter>,
        specs: &[FacetSpec],
        now_ms: i64,
    ) -> Result<Facets, IndexError> {
        if let Some(problem) = specs.iter().find_map(|s| s.check().err()) {
            return Err(IndexError::InvalidRequest(problem));
        }
        let query = compile(&self.fields, filter, now_ms);
        // Terms over plain string columns are counted from decoded ordinals (fast_terms.rs);
        // everything else goes to tantivy's aggregations.
        let string_columns: Vec<Option<String>> = specs
            .iter()
            .map(|spec| match (&spec.kind, column(&spec.path)) {
                (FacetKind::Terms { .. }, Ok((name, ColumnKind::Keyword | ColumnKind::Json))) => {
                    Some(name)
                }
                _ => None,
            })
            .collect();
        let (mut counted, counted_matched) = if string_columns.iter().any(Option::is_some) {
            self.string_term_counts(query.as_ref(), &string_columns)?
        } else {
            (vec![None; specs.len()], 0)
        };
        let mut request = serde_json::Map::new();
        for (slot, spec) in specs.iter().enumerate() {
            if counted[slot].is_none() {
                requests(spec, slot, &mut request);
            }
        }
        let (matched, mut results) = if request.is_empty() {
            let matched = if counted.iter().any(Option::is_some) {
                counted_matched as usize
            } else {
                self.searcher.search(&query, &Count)?
            };
            (matched, AggregationResults::default())
        } else {
            let aggregations: Aggregations = serde_json::from_value(request.into())
                .map_err(|e| IndexError::InvalidRequest(format!("facet request: {e}")))?;
            let collector = AggregationCollector::from_aggs(aggregations, self.agg_context());
            self.searcher
                .search(&query, &(Count, collector))
                .map_err(aggregation_error)?
        };
        let mut outcomes = Vec::with_capacity(specs.len());
        for (slot, spec) in specs.iter().enumerate() {
            let (_, kind) = column(&spec.path).expect("checked");
            let main = results.0.remove(&slot.to_string());
            let outcome = match &spec.kind {
                FacetKind::Terms {
                    size,
                    include_missing,
                } => {
                    let mut terms = match counted[slot].take() {
                        Some(counts) => counted_terms(counts, *size),
                        None => self.terms_outcome(main, kind, *size, &query, spec)?,
                    };
                    if *include_missing {
                        terms.missing = Some(self.count_missing(filter, &spec.path, now_ms)?);
                    }
                    FacetOutcome::Terms(terms)
                }
                FacetKind::Stats { percentiles } => {
                    let extra = results.0.remove(&format!("{slot}.p"));
                    FacetOutcome::Stats(stats_outcome(main, extra, percentiles, kind))
                }
                FacetKind::Histogram { .. } => FacetOutcome::Histogram(
                    histogram_buckets(main)
                        .into_iter()
                        .map(|b| HistogramBucket {
                            key: key_f64(&b.key),
                            key_as_string: None,
                            count: b.doc_count,
                        })
                        .collect(),
                ),
                FacetKind::DateHistogram(calendar) => FacetOutcome::DateHistogram(
                    calendar_buckets(histogram_buckets(main), *calendar),
                ),
            };
            outcomes.push((spec.name.clone(), outcome));
        }
        Ok(Facets {
            matched: matched as u64,
            results: outcomes,
        })
    }

    fn agg_context(&self) -> AggContextParams {
        AggContextParams::new(
            AggregationLimitsGuard::new(
                Some(MEMORY_LIMIT),
                Some(BUCKET_LIMIT.max(TERMS_ENUMERATION_LIMIT * 4)),
            ),
            Default::default(),
        )
    }

    fn count_missing(
        &self,
        filter: Option<&Filter>,
        path: &FieldPath,
        now_ms: i64,
    ) -> Result<u64, IndexError> {
        let exists = Filter::Predicate(Predicate {
            path: path.clone(),
            op: Op::Exists,
            position: 0,
        });
        let without = Filter::Not(Box::new(exists));
        let combined = match filter {
            Some(filter) => Filter::And(vec![filter.clone(), without]),
            None => without,
        };
        self.count(Some(&combined), now_ms)
    }

    fn terms_outcome(
        &self,
        result: Option<AggregationResult>,
        kind: ColumnKind,
        size: usize,
        query: &dyn tantivy::query::Query,
        spec: &FacetSpec,
    ) -> Result<TermsOutcome, IndexError> {
        let Some(AggregationResult::BucketResult(BucketResult::Terms {
            buckets,
            sum_other_doc_count,
            doc_count_error_upper_bound,
        })) = result
        else {
            return Ok(TermsOutcome {
                distinct_exact: true,
                ..TermsOutcome::default()
            });
        };
        let enumerated = buckets.len();
        let mut counts: Vec<(FacetValue, u64)> = Vec::with_capacity(buckets.len());
        let mut positions: HashMap<ValueKey, usize> = HashMap::new();
        for bucket in buckets {
            let value = facet_value(&bucket, kind);
            match positions.get(&ValueKey::of(&value)) {
                Some(&at) => counts[at].1 += bucket.doc_count,
                None => {
                    positions.insert(ValueKey::of(&value), counts.len());
                    counts.push((value, bucket.doc_count));
                }
            }
        }
        counts.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| value_cmp(&a.0, &b.0)));
        let distinct_exact =
            enumerated < TERMS_ENUMERATION_LIMIT as usize && sum_other_doc_count == 0;
        let distinct_values = counts.len() as u64;
        let mut other_count = sum_other_doc_count;
        for (_, count) in counts.iter().skip(size) {
            other_count += count;
        }
        counts.truncate(size);
        if doc_count_error_upper_bound.unwrap_or(0) > 0 {
            // Some segment held more distinct values than were enumerated: the counts above may
            // be short. Recount the returned string values exactly.
            self.recount_strings(&mut counts, &mut other_count, query, spec)?;
        }
        Ok(TermsOutcome {
            buckets: counts,
            other_count,
            distinct_values,
            distinct_exact,
            missing: None,
        })
    }

    fn recount_strings(
        &self,
        counts: &mut [(FacetValue, u64)],
        other_count: &mut u64,
        query: &dyn tantivy::query::Query,
        spec: &FacetSpec,
    ) -> Result<(), IndexError> {
        let strings: Vec<String> = counts
            .iter()
            .filter_map(|(v, _)| match v {
                FacetValue::Str(s) => Some(s.clone()),
                _ => None,
            })
            .collect();
        if strings.is_empty() {
            return Ok(());
        }
        let (field, _) = column(&spec.path).expect("checked");
        let request = json!({"exact": {"terms": {
            "field": field, "size": strings.len(), "segment_size": strings.len(), "include": strings,
        }}});
        let aggregations: Aggregations = serde_json::from_value(request)
            .map_err(|e| IndexError::InvalidRequest(format!("facet request: {e}")))?;
        let collector = AggregationCollector::from_aggs(aggregations, self.agg_context());
        let mut results = self
            .searcher
            .search(query, &collector)
            .map_err(aggregation_error)?;
        if let Some(AggregationResult::BucketResult(BucketResult::Terms { buckets, .. })) =
            results.0.remove("exact")
        {
            let exact: HashMap<String, u64> = buckets
                .into_iter()
                .filter_map(|b| match b.key {
                    Key::Str(s) => Some((s, b.doc_count)),
                    _ => None,
                })
                .collect();
            for (value, count) in counts.iter_mut() {
                if let FacetValue::Str(s) = value
                    && let Some(&true_count) = exact.get(s.as_str())
                {
                    // The occurrences the first pass missed were counted in `other`.
                    *other_count = other_count.saturating_sub(true_count.saturating_sub(*count));
                    *count = true_count;
                }
            }
            counts.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| value_cmp(&a.0, &b.0)));
        }
        Ok(())
    }
}

/// The outcome of exact counts of every string value.
fn counted_terms(counts: super::engine::TermCounts, size: usize) -> TermsOutcome {
    let mut buckets: Vec<(FacetValue, u64)> = counts
        .into_iter()
        .map(|(value, count)| (FacetValue::Str(value), count))
        .collect();
    buckets.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| value_cmp(&a.0, &b.0)));
    let distinct_values = buckets.len() as u64;
    let other_count = buckets.iter().skip(size).map(|(_, count)| count).sum();
    buckets.truncate(size);
    TermsOutcome {
        buckets,
        other_count,
        distinct_values,
        distinct_exact: true,
        missing: None,
    }
}

/// Hashable identity of a value: numbers equal as numbers (5 and 5.0 are one bucket).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum ValueKey {
    Str(String),
    Num(u64),
    Bool(bool),
}

impl ValueKey {
    fn of(value: &FacetValue) -> ValueKey {
        match value {
            FacetValue::Str(s) => ValueKey::Str(s.clone()),
            FacetValue::Int(i) => ValueKey::Num((*i as f64).to_bits()),
            FacetValue::Float(f) => ValueKey::Num(f.to_bits()),
            FacetValue::Bool(b) => ValueKey::Bool(*b),
        }
    }
}

fn value_rank(value: &FacetValue) -> u8 {
    match value {
        FacetValue::Bool(_) => 0,
        FacetValue::Int(_) | FacetValue::Float(_) => 1,
        FacetValue::Str(_) => 2,
    }
}

fn value_cmp(a: &FacetValue, b: &FacetValue) -> std::cmp::Ordering {
    let number = |v: &FacetValue| match v {
        FacetValue::Int(i) => *i as f64,
        FacetValue::Float(f) => *f,
        _ => 0.0,
    };
    value_rank(a)
        .cmp(&value_rank(b))
        .then_with(|| match (a, b) {
            (FacetValue::Str(x), FacetValue::Str(y)) => x.cmp(y),
            (FacetValue::Bool(x), FacetValue::Bool(y)) => x.cmp(y),
            _ => number(a).total_cmp(&number(b)),
        })
}

/// A whole float is an integer, as the inverted index and our matcher treat it.
fn number_value(f: f64) -> FacetValue {
    if f.fract() == 0.0 && f.abs() < 9.0e15 {
        FacetValue::Int(f as i64)
    } else {
        FacetValue::Float(f)
    }
}

fn facet_value(bucket: &BucketEntry, kind: ColumnKind) -> FacetValue {
    let as_bool = matches!(kind, ColumnKind::Bool)
        || (kind == ColumnKind::Json
            && !matches!(bucket.key, Key::Str(_))
            && matches!(bucket.key_as_string.as_deref(), Some("true" | "false")));
    if as_bool {
        return FacetValue::Bool(key_f64(&bucket.key) != 0.0);
    }
    match &bucket.key {
        Key::Str(s) => FacetValue::Str(s.clone()),
        Key::I64(i) => FacetValue::Int(*i),
        Key::U64(u) => i64::try_from(*u).map_or(FacetValue::Float(*u as f64), FacetValue::Int),
        Key::F64(f) => number_value(*f),
    }
}

fn key_f64(key: &Key) -> f64 {
    match key {
        Key::Str(_) => f64::NAN,
        Key::I64(i) => *i as f64,
        Key::U64(u) => *u as f64,
        Key::F64(f) => *f,
    }
}

fn histogram_buckets(result: Option<AggregationResult>) -> Vec<BucketEntry> {
    match result {
        Some(AggregationResult::BucketResult(BucketResult::Histogram { buckets })) => match buckets
        {
            tantivy::aggregation::agg_result::BucketEntries::Vec(v) => v,
            tantivy::aggregation::agg_result::BucketEntries::HashMap(m) => {
                let mut v: Vec<BucketEntry> = m.into_values().collect();
                v.sort_by(|a, b| key_f64(&a.key).total_cmp(&key_f64(&b.key)));
                v
            }
        },
        _ => Vec::new(),
    }
}

/// Dates come back from tantivy in nanoseconds for date columns.
const NANOS_PER_MS: f64 = 1_000_000.0;

fn stats_outcome(
    main: Option<AggregationResult>,
    percentiles: Option<AggregationResult>,
    asked: &[f64],
    kind: ColumnKind,
) -> StatsOutcome {
    let scale = |v: f64| {
        if kind == ColumnKind::Date {
            v / NANOS_PER_MS
        } else {
            v
        }
    };
    let mut outcome = StatsOutcome::default();
    if let Some(AggregationResult::MetricResult(MetricResult::Stats(stats))) = main {
        outcome.count = stats.count;
        let sum_scale = if kind == ColumnKind::Date {
            stats.sum / NANOS_PER_MS
        } else {
            stats.sum
        };
        outcome.sum = sum_scale;
        outcome.min = stats.min.map(scale).unwrap_or(0.0);
        outcome.max = stats.max.map(scale).unwrap_or(0.0);
        outcome.avg = stats.avg.map(scale).unwrap_or(0.0);
    }
    if let Some(AggregationResult::MetricResult(MetricResult::Percentiles(result))) = percentiles {
        let values: Vec<(f64, f64)> = match result.values {
            PercentileValues::Vec(entries) => {
                entries.into_iter().map(|e| (e.key, e.value)).collect()
            }
            PercentileValues::HashMap(map) => map
                .into_iter()
                .filter_map(|(k, v)| k.parse::<f64>().ok().map(|k| (k, v)))
                .collect(),
        };
        outcome.percentiles = asked
            .iter()
            .map(|p| {
                let value = values
                    .iter()
                    .find(|(k, _)| (k - p).abs() < 1e-9)
                    .map_or(f64::NAN, |(_, v)| *v);
                (
                    *p,
                    if value.is_nan() || outcome.count == 0 {
                        0.0
                    } else {
                        scale(value)
                    },
                )
            })
            .collect();
    }
    outcome
}

/// Rolls tantivy's daily buckets (keys in ms) up into calendar buckets and fills the empty ones
/// between the first and the last.
fn calendar_buckets(days: Vec<BucketEntry>, calendar: Calendar) -> Vec<HistogramBucket> {
    let mut totals: Vec<(Date, u64)> = Vec::new();
    for day in days {
        let ms = key_f64(&day.key) as i64;
        let Ok(at) = OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000) else {
            continue;
        };
        let start = calendar_start(at.date(), calendar);
        match totals.last_mut() {
            Some((last, count)) if *last == start => *count += day.doc_count,
            _ => totals.push((start, day.doc_count)),
        }
    }
    let mut buckets = Vec::with_capacity(totals.len());
    let mut expected = totals.first().map(|(d, _)| *d);
    for (start, count) in totals {
        while let Some(gap) = expected.filter(|e| *e < start) {
            if buckets.len() >= BUCKET_LIMIT as usize {
                break;
            }
            buckets.push(date_bucket(gap, 0));
            expected = Some(next_start(gap, calendar));
        }
        buckets.push(date_bucket(start, count));
        expected = Some(next_start(start, calendar));
    }
    buckets
}

fn calendar_start(date: Date, calendar: Calendar) -> Date {
    match calendar {
        Calendar::Day => date,
        Calendar::Week => {
            date - Duration::days(i64::from(date.weekday().number_days_from_monday()))
        }
        Calendar::Month => date.replace_day(1).expect("day 1 exists"),
    }
}

fn next_start(start: Date, calendar: Calendar) -> Date {
    match calendar {
        Calendar::Day => start + Duration::days(1),
        Calendar::Week => start + Duration::days(7),
        Calendar::Month => {
            let (year, month) = match start.month() {
                time::Month::December => (start.year() + 1, time::Month::January),
                m => (start.year(), m.next()),
            };
            Date::from_calendar_date(year, month, 1).expect("day 1 exists")
        }
    }
}

fn date_bucket(start: Date, count: u64) -> HistogramBucket {
    let at = start.midnight().assume_utc();
    HistogramBucket {
        key: (at.unix_timestamp() * 1000) as f64,
        key_as_string: at
            .format(&time::format_description::well_known::Rfc3339)
            .ok(),
        count,
    }
}
