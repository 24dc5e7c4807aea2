//! Turning tantivy's aggregation results into facet outcomes: numbers equal as numbers share a
//! bucket whatever their column type, values are ordered the same way in every answer, stats
//! and percentiles are read back in milliseconds for dates, and daily buckets roll up into
//! calendar weeks and months with the empty ones filled in.

use tantivy::aggregation::Key;
use tantivy::aggregation::agg_result::{
    AggregationResult, BucketEntry, BucketResult, MetricResult,
};
use tantivy::aggregation::metric::PercentileValues;
use time::{Date, Duration, OffsetDateTime};

use super::engine::TermCounts;
use super::facet_spec::{
    BUCKET_LIMIT, Calendar, ColumnKind, FacetValue, HistogramBucket, StatsOutcome, TermsOutcome,
};

/// The outcome of exact counts of every string value.
pub(super) fn counted_terms(counts: TermCounts, size: usize) -> TermsOutcome {
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
pub(super) enum ValueKey {
    Str(String),
    Num(u64),
    Bool(bool),
}

impl ValueKey {
    pub(super) fn of(value: &FacetValue) -> ValueKey {
        match value {
            FacetValue::Str(s) => ValueKey::Str(s.clone()),
            FacetValue::Int(i) => ValueKey::Num((*i as f64).to_bits()),
            FacetValue::Float(f) => ValueKey::Num(f.to_bits()),
            FacetValue::Bool(b) => ValueKey::Bool(*b),
        }
    }
}

pub(super) fn value_rank(value: &FacetValue) -> u8 {
    match value {
        FacetValue::Bool(_) => 0,
        FacetValue::Int(_) | FacetValue::Float(_) => 1,
        FacetValue::Str(_) => 2,
    }
}

pub(super) fn value_cmp(a: &FacetValue, b: &FacetValue) -> std::cmp::Ordering {
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
pub(super) fn number_value(f: f64) -> FacetValue {
    if f.fract() == 0.0 && f.abs() < 9.0e15 {
        FacetValue::Int(f as i64)
    } else {
        FacetValue::Float(f)
    }
}

pub(super) fn facet_value(bucket: &BucketEntry, kind: ColumnKind) -> FacetValue {
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

pub(super) fn key_f64(key: &Key) -> f64 {
    match key {
        Key::Str(_) => f64::NAN,
        Key::I64(i) => *i as f64,
        Key::U64(u) => *u as f64,
        Key::F64(f) => *f,
    }
}

pub(super) fn histogram_buckets(result: Option<AggregationResult>) -> Vec<BucketEntry> {
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
pub(super) const NANOS_PER_MS: f64 = 1_000_000.0;

pub(super) fn stats_outcome(
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
        let mut values: Vec<(f64, f64)> = match result.values {
            PercentileValues::Vec(entries) => {
                entries.into_iter().map(|e| (e.key, e.value)).collect()
            }
            PercentileValues::HashMap(map) => map
                .into_iter()
                .filter_map(|(k, v)| k.parse::<f64>().ok().map(|k| (k, v)))
                .collect(),
        };
        // Sorted once and searched per percentile: not a scan per percentile.
        values.sort_by(|a, b| a.0.total_cmp(&b.0));
        outcome.percentiles = asked
            .iter()
            .map(|p| {
                let from = values.partition_point(|(k, _)| *k < p - 1e-9);
                let value = values
                    .get(from)
                    .filter(|(k, _)| (k - p).abs() < 1e-9)
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
pub(super) fn calendar_buckets(days: Vec<BucketEntry>, calendar: Calendar) -> Vec<HistogramBucket> {
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

pub(super) fn calendar_start(date: Date, calendar: Calendar) -> Date {
    match calendar {
        Calendar::Day => date,
        Calendar::Week => {
            date - Duration::days(i64::from(date.weekday().number_days_from_monday()))
        }
        Calendar::Month => date.replace_day(1).expect("day 1 exists"),
    }
}

pub(super) fn next_start(start: Date, calendar: Calendar) -> Date {
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

pub(super) fn date_bucket(start: Date, count: u64) -> HistogramBucket {
    let at = start.midnight().assume_utc();
    HistogramBucket {
        key: (at.unix_timestamp() * 1000) as f64,
        key_as_string: at
            .format(&time::format_description::well_known::Rfc3339)
            .ok(),
        count,
    }
}
