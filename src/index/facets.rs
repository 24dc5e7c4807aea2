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
use tantivy::aggregation::agg_result::{AggregationResult, AggregationResults, BucketResult};
use tantivy::aggregation::{AggContextParams, AggregationCollector, AggregationLimitsGuard, Key};
use tantivy::collector::Count;

use super::compile::compile;
use super::engine::{search, string_term_counts};
use super::error::IndexError;
use super::facet_results::*;
use super::facet_spec::*;
use super::snapshot::Snapshot;
use crate::query::Filter;
use crate::query::ast::{FieldPath, Op, Predicate};

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
            return Err(problem);
        }
        let query = compile(&self.fields, filter, now_ms, self.org_slots);
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
            string_term_counts(
                &self.searcher,
                &self.fields.columns,
                query.as_ref(),
                &string_columns,
            )?
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
                search(&self.searcher, &query, &Count)?
            };
            (matched, AggregationResults::default())
        } else {
            let aggregations: Aggregations = serde_json::from_value(request.into())
                .map_err(|e| IndexError::InvalidRequest(format!("facet request: {e}")))?;
            let collector = AggregationCollector::from_aggs(aggregations, self.agg_context());
            search(&self.searcher, &query, &(Count, collector)).map_err(aggregation_error)?
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
        let mut results = search(&self.searcher, query, &collector).map_err(aggregation_error)?;
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
