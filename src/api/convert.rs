//! Proto -> domain: filters in either spelling, sort specs; domain -> proto: freshness.

use super::proto;
use crate::error::Error;
use crate::index::{
    Calendar, FacetKind, FacetOutcome, FacetSpec, FacetValue, Facets, Freshness, HistogramBucket,
    Snapshot,
};
use crate::query::ast::{CmpOp, Op, Predicate};
use crate::query::sort::SortSpec;
use crate::query::{
    DateValue, Filter, FilterError, FilterLimits, Value, parse_date_value, parse_filter,
    parse_path, validate,
};
use crate::sync::SyncState;

/// The filter of a request; `None` (no filter, or an empty expression) means every user.
pub fn filter_from_proto(
    spec: Option<proto::FilterSpec>,
    limits: &FilterLimits,
) -> Result<Option<Filter>, Error> {
    let Some(spec) = spec.and_then(|s| s.spec) else {
        return Ok(None);
    };
    match spec {
        proto::filter_spec::Spec::Expression(text) if text.trim().is_empty() => Ok(None),
        proto::filter_spec::Spec::Expression(text) => Ok(Some(parse_filter(&text, limits)?)),
        proto::filter_spec::Spec::Tree(tree) => {
            let mut counter = 0;
            let filter = tree_to_filter(tree, &mut counter, false)?;
            Ok(Some(validate(filter, limits)?))
        }
    }
}

/// `in_org`: inside an `org` node, where a path without `org.` is read as a membership's.
fn tree_to_filter(
    node: proto::Filter,
    counter: &mut usize,
    in_org: bool,
) -> Result<Filter, FilterError> {
    let Some(node) = node.node else {
        return Err(FilterError::general(
            "a structured filter node is empty: set all, any, negate, predicate or org",
        ));
    };
    Ok(match node {
        proto::filter::Node::All(list) => Filter::And(
            list.filters
                .into_iter()
                .map(|f| tree_to_filter(f, counter, in_org))
                .collect::<Result<_, _>>()?,
        ),
        proto::filter::Node::Any(list) => Filter::Or(
            list.filters
                .into_iter()
                .map(|f| tree_to_filter(f, counter, in_org))
                .collect::<Result<_, _>>()?,
        ),
        proto::filter::Node::Negate(inner) => {
            Filter::Not(Box::new(tree_to_filter(*inner, counter, in_org)?))
        }
        proto::filter::Node::Predicate(predicate) => {
            *counter += 1;
            Filter::Predicate(predicate_from_proto(predicate, *counter, in_org)?)
        }
        proto::filter::Node::Org(inner) => {
            if in_org {
                return Err(FilterError::general(
                    "an org node cannot hold another: its paths are already those of one membership",
                ));
            }
            Filter::Org(Box::new(tree_to_filter(*inner, counter, true)?))
        }
        proto::filter::Node::Segment(name) => {
            if in_org {
                return Err(FilterError::general(
                    "a segment node cannot be inside an org node: a segment holds users, not memberships",
                ));
            }
            Filter::Segment { name, position: 0 }
        }
    })
}

fn predicate_from_proto(
    predicate: proto::Predicate,
    number: usize,
    in_org: bool,
) -> Result<Predicate, FilterError> {
    let proto::Predicate {
        path: path_text,
        op,
        values,
    } = predicate;
    let context = |message: String| {
        FilterError::general(format!("predicate {number} ({path_text}): {message}"))
    };
    let path = match path_text.trim() {
        relative if in_org && !relative.starts_with("org.") => {
            parse_path(&format!("org.{relative}"))
        }
        text => parse_path(text),
    }
    .map_err(|e| context(e.message))?;
    let values: Vec<Value> = values
        .into_iter()
        .map(value_from_proto)
        .collect::<Result<_, _>>()
        .map_err(context)?;
    let operator = proto::Operator::try_from(op).unwrap_or(proto::Operator::Unspecified);
    let exactly = |n: usize, values: Vec<Value>| -> Result<Vec<Value>, FilterError> {
        if values.len() == n {
            Ok(values)
        } else {
            Err(context(format!(
                "{} needs {n} value(s), got {}",
                operator.as_str_name(),
                values.len()
            )))
        }
    };
    let single = |values: Vec<Value>| exactly(1, values).map(|mut v| v.remove(0));
    let string = |values: Vec<Value>| match single(values)? {
        Value::String(s) => Ok(s),
        _ => Err(context(format!(
            "{} needs a string value",
            operator.as_str_name()
        ))),
    };
    let compare = |cmp: CmpOp, values: Vec<Value>| single(values).map(|v| Op::Compare(cmp, v));
    let op = match operator {
        proto::Operator::Eq => compare(CmpOp::Eq, values)?,
        proto::Operator::Ne => compare(CmpOp::Ne, values)?,
        proto::Operator::Lt => compare(CmpOp::Lt, values)?,
        proto::Operator::Lte => compare(CmpOp::Lte, values)?,
        proto::Operator::Gt => compare(CmpOp::Gt, values)?,
        proto::Operator::Gte => compare(CmpOp::Gte, values)?,
        proto::Operator::In => Op::In(values),
        proto::Operator::Exists => {
            exactly(0, values)?;
            Op::Exists
        }
        proto::Operator::StartsWith => Op::StartsWith(string(values)?),
        proto::Operator::Matches => Op::Matches(string(values)?),
        proto::Operator::Between => {
            let mut both = exactly(2, values)?;
            let high = both.pop().expect("two values");
            Op::Between(both.pop().expect("two values"), high)
        }
        proto::Operator::Unspecified => return Err(context("the operator is not set".into())),
    };
    Ok(Predicate {
        path,
        op,
        position: 0,
    })
}

fn value_from_proto(value: proto::Value) -> Result<Value, String> {
    use proto::value::Kind;
    Ok(match value.kind.ok_or("a value has no kind set")? {
        Kind::String(s) => Value::String(s),
        Kind::Integer(i) => Value::Integer(i),
        Kind::Number(f) => Value::Float(f),
        Kind::Boolean(b) => Value::Bool(b),
        Kind::Null(_) => Value::Null,
        Kind::DateMs(ms) => Value::Date(DateValue::Absolute(ms)),
        Kind::Date(text) => Value::Date(parse_date_value(&text).ok_or_else(|| {
            format!("\"{text}\" is not a date: use RFC 3339, YYYY-MM-DD or now-30d")
        })?),
    })
}

/// The sort of a request; by id when absent.
pub fn sort_from_proto(sort: Option<proto::SortSpec>) -> Result<SortSpec, Error> {
    let Some(sort) = sort.filter(|s| !s.path.trim().is_empty()) else {
        return Ok(SortSpec::by_id());
    };
    let path = parse_path(sort.path.trim())?;
    if let crate::query::FieldPath::Core(field) = &path
        && !field.sortable()
    {
        return Err(Error::invalid(
            "sort.path",
            format!(
                "cannot sort by {}: it holds several values per user; sort by primary_email or a single-valued field",
                field.name()
            ),
        ));
    }
    Ok(SortSpec {
        path,
        descending: sort.descending,
    })
}

/// Facets per request, at most.
pub const MAX_FACETS: usize = 20;

/// The facets of a `FacetUsers` request, checked.
pub fn facets_from_proto(requests: Vec<proto::FacetRequest>) -> Result<Vec<FacetSpec>, Error> {
    if requests.is_empty() {
        return Err(Error::invalid(
            "facets",
            "facets: ask for at least one facet",
        ));
    }
    if requests.len() > MAX_FACETS {
        return Err(Error::invalid(
            "facets",
            format!(
                "facets: at most {MAX_FACETS} per request, got {}",
                requests.len()
            ),
        ));
    }
    let mut specs: Vec<FacetSpec> = Vec::with_capacity(requests.len());
    for (number, request) in requests.into_iter().enumerate() {
        let label = if request.name.is_empty() {
            format!("facet {}", number + 1)
        } else {
            format!("facet `{}`", request.name)
        };
        let path = parse_path(request.path.trim()).map_err(|e| {
            Error::invalid(
                format!("facets[{number}].path"),
                format!("{label}: {}", e.message),
            )
        })?;
        let name = if request.name.is_empty() {
            path.to_string()
        } else {
            request.name
        };
        if specs.iter().any(|s| s.name == name) {
            return Err(Error::invalid(
                format!("facets[{number}].name"),
                format!("{label}: two facets are named `{name}`; give them distinct names"),
            ));
        }
        use proto::facet_request::Kind;
        let kind = match request.kind {
            None => FacetKind::Terms {
                size: 10,
                include_missing: false,
            },
            Some(Kind::Terms(terms)) => FacetKind::Terms {
                size: if terms.size == 0 {
                    10
                } else {
                    terms.size as usize
                },
                include_missing: terms.include_missing,
            },
            Some(Kind::Stats(stats)) => FacetKind::Stats {
                percentiles: stats.percentiles,
            },
            Some(Kind::Histogram(histogram)) => FacetKind::Histogram {
                interval: histogram.interval,
                offset: histogram.offset,
            },
            Some(Kind::DateHistogram(histogram)) => {
                let calendar = match proto::CalendarInterval::try_from(histogram.interval) {
                    Ok(proto::CalendarInterval::Day) => Calendar::Day,
                    Ok(proto::CalendarInterval::Week) => Calendar::Week,
                    Ok(proto::CalendarInterval::Month) => Calendar::Month,
                    _ => {
                        return Err(Error::invalid(
                            format!("facets[{number}].date_histogram.interval"),
                            format!(
                                "{label}: set the date histogram's interval (day, week or month)"
                            ),
                        ));
                    }
                };
                FacetKind::DateHistogram(calendar)
            }
        };
        let spec = FacetSpec { name, path, kind };
        spec.check()?;
        specs.push(spec);
    }
    Ok(specs)
}

fn facet_value_to_proto(value: FacetValue) -> proto::Value {
    use proto::value::Kind;
    proto::Value {
        kind: Some(match value {
            FacetValue::Str(s) => Kind::String(s),
            FacetValue::Int(i) => Kind::Integer(i),
            FacetValue::Float(f) => Kind::Number(f),
            FacetValue::Bool(b) => Kind::Boolean(b),
        }),
    }
}

fn histogram_to_proto(buckets: Vec<HistogramBucket>) -> proto::HistogramResult {
    proto::HistogramResult {
        buckets: buckets
            .into_iter()
            .map(|b| proto::HistogramBucket {
                key: b.key,
                key_as_string: b.key_as_string.unwrap_or_default(),
                count: b.count,
            })
            .collect(),
    }
}

pub fn facets_to_proto(facets: Facets, specs: &[FacetSpec]) -> Vec<proto::FacetResult> {
    use proto::facet_result::Result as Outcome;
    facets
        .results
        .into_iter()
        .zip(specs)
        .map(|((name, outcome), spec)| proto::FacetResult {
            name,
            path: spec.path.to_string(),
            result: Some(match outcome {
                FacetOutcome::Terms(terms) => Outcome::Terms(proto::TermsResult {
                    buckets: terms
                        .buckets
                        .into_iter()
                        .map(|(value, count)| proto::TermBucket {
                            value: Some(facet_value_to_proto(value)),
                            count,
                        })
                        .collect(),
                    other_count: terms.other_count,
                    distinct_values: terms.distinct_values,
                    distinct_values_exact: terms.distinct_exact,
                    missing: terms.missing.unwrap_or(0),
                }),
                FacetOutcome::Stats(stats) => Outcome::Stats(proto::NumericStats {
                    count: stats.count,
                    min: stats.min,
                    max: stats.max,
                    avg: stats.avg,
                    sum: stats.sum,
                    percentiles: stats
                        .percentiles
                        .into_iter()
                        .map(|(percent, value)| proto::Percentile { percent, value })
                        .collect(),
                }),
                FacetOutcome::Histogram(buckets) => Outcome::Histogram(histogram_to_proto(buckets)),
                FacetOutcome::DateHistogram(buckets) => {
                    Outcome::DateHistogram(histogram_to_proto(buckets))
                }
            }),
        })
        .collect()
}

/// The freshness stamp of the snapshot that answered.
pub fn freshness_to_proto(snapshot: &Snapshot) -> proto::Freshness {
    freshness_parts_to_proto(
        snapshot.freshness,
        SyncState::log_sequence_of(&snapshot.sync_state),
    )
}

pub fn freshness_parts_to_proto(freshness: Freshness, log_sequence: u64) -> proto::Freshness {
    let Freshness {
        generation,
        newest_updated_at_ms,
        user_count,
    } = freshness;
    proto::Freshness {
        generation,
        newest_updated_at_ms,
        user_count,
        log_sequence,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proto::filter::Node;
    use proto::value::Kind;

    fn predicate(path: &str, op: proto::Operator, values: Vec<Kind>) -> proto::Filter {
        proto::Filter {
            node: Some(Node::Predicate(proto::Predicate {
                path: path.into(),
                op: op as i32,
                values: values
                    .into_iter()
                    .map(|k| proto::Value { kind: Some(k) })
                    .collect(),
            })),
        }
    }

    #[test]
    fn structured_and_text_filters_compile_to_the_same_ast() {
        let tree = proto::Filter {
            node: Some(Node::All(proto::FilterList {
                filters: vec![
                    predicate(
                        "public.membership_tier",
                        proto::Operator::In,
                        vec![Kind::String("gold".into()), Kind::String("platinum".into())],
                    ),
                    proto::Filter {
                        node: Some(Node::Negate(Box::new(predicate(
                            "banned",
                            proto::Operator::Eq,
                            vec![Kind::Boolean(true)],
                        )))),
                    },
                    predicate(
                        "created_at",
                        proto::Operator::Gt,
                        vec![Kind::Date("now-30d".into())],
                    ),
                ],
            })),
        };
        let limits = FilterLimits::default();
        let structured = filter_from_proto(
            Some(proto::FilterSpec {
                spec: Some(proto::filter_spec::Spec::Tree(tree)),
            }),
            &limits,
        )
        .unwrap();
        let text = parse_filter("public.membership_tier IN [\"gold\", \"platinum\"] AND NOT banned = true AND created_at > now-30d", &limits).unwrap();
        let strip = |f: Filter| format!("{f:?}").replace(|c: char| c.is_ascii_digit(), "");
        assert_eq!(strip(structured.unwrap()), strip(text));
    }

    #[test]
    fn an_org_node_is_org_brackets_with_paths_of_one_membership() {
        let tree = proto::Filter {
            node: Some(Node::Org(Box::new(proto::Filter {
                node: Some(Node::All(proto::FilterList {
                    filters: vec![
                        predicate(
                            "role",
                            proto::Operator::Eq,
                            vec![Kind::String("org:admin".into())],
                        ),
                        predicate(
                            "org.public.plan",
                            proto::Operator::Eq,
                            vec![Kind::String("enterprise".into())],
                        ),
                    ],
                })),
            }))),
        };
        let limits = FilterLimits::default();
        let spec = |tree| {
            Some(proto::FilterSpec {
                spec: Some(proto::filter_spec::Spec::Tree(tree)),
            })
        };
        let structured = filter_from_proto(spec(tree), &limits).unwrap().unwrap();
        let text = parse_filter(
            r#"org[role = "org:admin" AND public.plan = "enterprise"]"#,
            &limits,
        )
        .unwrap();
        assert_eq!(structured.unplaced(), text.unplaced());
        let user_path = proto::Filter {
            node: Some(Node::Org(Box::new(predicate(
                "bannedx",
                proto::Operator::Exists,
                vec![],
            )))),
        };
        let error = filter_from_proto(spec(user_path), &limits).unwrap_err();
        assert!(error.to_string().contains("predicate 1"), "{error}");
    }

    #[test]
    fn structured_errors_name_the_predicate() {
        let tree = predicate(
            "public.plan",
            proto::Operator::Between,
            vec![Kind::Integer(1)],
        );
        let error = filter_from_proto(
            Some(proto::FilterSpec {
                spec: Some(proto::filter_spec::Spec::Tree(tree)),
            }),
            &FilterLimits::default(),
        )
        .unwrap_err();
        assert!(
            error
                .to_string()
                .contains("predicate 1 (public.plan): OPERATOR_BETWEEN needs 2 value(s)"),
            "{error}"
        );
    }
}
