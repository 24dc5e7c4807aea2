//! Compiles the filter AST to tantivy queries with exactly the semantics of `query::eval`.
//!
//! - Numeric equality is a term lookup on the normalized number (tantivy indexes `50.0` as the
//!   integer 50), so it costs one posting list; numeric ranges go through the fast column, which
//!   compares ints and floats alike (TANTIVY-NOTES pitfall 2).
//! - String ranges and prefixes walk the term dictionary with both bounds set, so they never run
//!   into other paths or types (pitfall 8).
//! - `EXISTS` and `= null` are term lookups on the precomputed `present`/`nulls` fields.
//! - A negation is `all AND NOT x`, since a query of only `MustNot` clauses matches nothing
//!   (pitfall 9).

use std::ops::Bound;

use tantivy::Term;
use tantivy::query::{
    AllQuery, BooleanQuery, EmptyQuery, InvertedIndexRangeQuery, Occur, Query, RangeQuery,
    TermQuery,
};
use tantivy::schema::{Field, IndexRecordOption};

use super::engine::{BitsetQuery, ColumnFilterQuery, ColumnRange, RangeBounds, date_of_millis};
use super::schema::Fields;
use crate::query::CoreField;
use crate::query::ast::{CmpOp, CoreKind, FieldPath, Filter, Op, Predicate, Value};
use crate::query::eval::text_tokens;

/// Beyond the last byte of any UTF-8 string: the upper bound of "every string with this prefix".
const AFTER_ALL_STRINGS: u8 = 0xFF;

/// Compiles `filter` (or "every user" for `None`) with relative dates resolved at `now_ms`.
/// `org_slots` is the most memberships any user of the index has: how many slots `org[...]`
/// asks (docs/ORGANIZATIONS.md).
pub fn compile(
    fields: &Fields,
    filter: Option<&Filter>,
    now_ms: i64,
    org_slots: usize,
) -> Box<dyn Query> {
    match filter {
        // Through the bitset engine too: it keeps every answer within the users.
        None => Box::new(BitsetQuery::new(Box::new(AllQuery), fields.columns.clone())),
        // Evaluated as per-segment bitmaps (bitset.rs); the tree below only says what matches.
        Some(filter) => Box::new(BitsetQuery::new(
            Compiler {
                fields,
                now_ms,
                org_slots,
                slot: None,
            }
            .filter(filter),
            fields.columns.clone(),
        )),
    }
}

mod json;

#[derive(Clone, Copy)]
struct Compiler<'a> {
    fields: &'a Fields,
    now_ms: i64,
    org_slots: usize,
    /// Inside `org[...]`: the membership slot `org.*` paths read.
    slot: Option<usize>,
}

fn term_query(term: Term) -> Box<dyn Query> {
    Box::new(TermQuery::new(term, IndexRecordOption::Basic))
}

fn not(query: Box<dyn Query>) -> Box<dyn Query> {
    Box::new(BooleanQuery::new(vec![
        (Occur::Must, Box::new(AllQuery)),
        (Occur::MustNot, query),
    ]))
}

fn any_of(queries: Vec<Box<dyn Query>>) -> Box<dyn Query> {
    if queries.len() == 1 {
        return queries.into_iter().next().expect("one query");
    }
    Box::new(BooleanQuery::new(
        queries.into_iter().map(|q| (Occur::Should, q)).collect(),
    ))
}

fn range(lower: Bound<Term>, upper: Bound<Term>) -> Box<dyn Query> {
    Box::new(RangeQuery::new(lower, upper))
}

fn bounds_for<T: Clone>(cmp: CmpOp, value: T) -> (Bound<T>, Bound<T>) {
    match cmp {
        CmpOp::Lt => (Bound::Unbounded, Bound::Excluded(value)),
        CmpOp::Lte => (Bound::Unbounded, Bound::Included(value)),
        CmpOp::Gt => (Bound::Excluded(value), Bound::Unbounded),
        CmpOp::Gte => (Bound::Included(value), Bound::Unbounded),
        CmpOp::Eq | CmpOp::Ne => (Bound::Included(value.clone()), Bound::Included(value)),
    }
}

/// What a number's term is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum NumberUse {
    /// Looked up in the inverted index, as documents store it.
    Stored,
    /// The bound of a range over a fast column.
    RangeBound,
}

impl Compiler<'_> {
    fn filter(&self, filter: &Filter) -> Box<dyn Query> {
        match filter {
            Filter::And(parts) => {
                let mut clauses: Vec<(Occur, Box<dyn Query>)> = parts
                    .iter()
                    .map(|part| match part {
                        Filter::Not(inner) => (Occur::MustNot, self.filter(inner)),
                        other => (Occur::Must, self.filter(other)),
                    })
                    .collect();
                // Column ranges are planned together with the rest (column_filter.rs).
                let mut ranges = Vec::new();
                clauses.retain(
                    |(occur, query)| match query.downcast_ref::<ColumnFilterQuery>() {
                        Some(filter) if *occur == Occur::Must && filter.base.is_none() => {
                            ranges.extend(filter.ranges.iter().cloned());
                            false
                        }
                        _ => true,
                    },
                );
                let base: Option<Box<dyn Query>> = match clauses.len() {
                    0 => None,
                    1 if clauses[0].0 == Occur::Must => clauses.pop().map(|(_, query)| query),
                    _ => {
                        if clauses.iter().all(|(occur, _)| *occur == Occur::MustNot) {
                            clauses.push((Occur::Must, Box::new(AllQuery)));
                        }
                        Some(Box::new(BooleanQuery::new(clauses)))
                    }
                };
                match (base, ranges.is_empty()) {
                    (Some(base), true) => base,
                    (base, _) => Box::new(ColumnFilterQuery {
                        base,
                        ranges,
                        cache: self.fields.columns.clone(),
                    }),
                }
            }
            Filter::Or(parts) => any_of(parts.iter().map(|p| self.filter(p)).collect()),
            Filter::Not(inner) => not(self.filter(inner)),
            Filter::Predicate(predicate) => self.predicate(predicate),
            Filter::Org(inner) => self.correlated(inner),
            // References are expanded before compiling; one left in matches nobody.
            Filter::Segment { .. } => Box::new(EmptyQuery),
        }
    }

    fn column_range(&self, range: ColumnRange) -> Box<dyn Query> {
        Box::new(ColumnFilterQuery {
            base: None,
            ranges: vec![range],
            cache: self.fields.columns.clone(),
        })
    }

    fn predicate(&self, predicate: &Predicate) -> Box<dyn Query> {
        if let Op::Sealed(tokens) = &predicate.op {
            return any_of(
                tokens
                    .iter()
                    .map(|token| term_query(Term::from_field_text(self.fields.blind, token)))
                    .collect(),
            );
        }
        match &predicate.path {
            FieldPath::Metadata { namespace, keys } => {
                self.metadata_predicate(*namespace, keys, &predicate.op)
            }
            FieldPath::Core(field) => self.core(*field, &predicate.op),
        }
    }

    fn present(&self, path: &str) -> Box<dyn Query> {
        term_query(Term::from_field_text(self.fields.present, path))
    }

    // ---- core fields --------------------------------------------------------------------------

    fn core(&self, field: CoreField, op: &Op) -> Box<dyn Query> {
        if let Op::Exists = op {
            return self.present(field.name());
        }
        if let Op::Matches(text) = op {
            let Some(words) = self.fields.words(field) else {
                return Box::new(EmptyQuery);
            };
            let clauses = text_tokens(text)
                .into_iter()
                .map(|token| {
                    (
                        Occur::Must,
                        term_query(Term::from_field_text(words, &token)),
                    )
                })
                .collect::<Vec<_>>();
            return Box::new(BooleanQuery::new(clauses));
        }
        let Some(indexed) = self.fields.core(field) else {
            return Box::new(EmptyQuery);
        };
        match field.kind() {
            CoreKind::Keyword {
                case_insensitive, ..
            } => self.keyword(field, indexed, case_insensitive, op),
            CoreKind::Date => self.date(field, indexed, op),
            CoreKind::Integer => self.integer(field, indexed, op),
            CoreKind::Bool => {
                // Every user holds exactly one value of each core boolean (Clerk's, false when
                // absent), so `= false` is the complement of `= true`: its postings are then the
                // few users with `true` rather than the many with `false` (`banned = false`
                // decoded ~99% of all postings).
                let is_true = || term_query(Term::from_field_bool(indexed, true));
                let equals = |v: &Value| match v {
                    Value::Bool(true) => is_true(),
                    Value::Bool(false) => not(is_true()),
                    _ => Box::new(EmptyQuery) as Box<dyn Query>,
                };
                match op {
                    Op::Compare(CmpOp::Eq, v) => equals(v),
                    Op::Compare(CmpOp::Ne, Value::Bool(false)) => is_true(),
                    Op::Compare(CmpOp::Ne, v) => not(equals(v)),
                    Op::In(values) => any_of(values.iter().map(equals).collect()),
                    _ => Box::new(EmptyQuery),
                }
            }
            CoreKind::TextOnly => Box::new(EmptyQuery),
        }
    }

    fn keyword(
        &self,
        field: CoreField,
        indexed: Field,
        case_insensitive: bool,
        op: &Op,
    ) -> Box<dyn Query> {
        let norm = |s: &str| {
            if case_insensitive {
                s.to_lowercase()
            } else {
                s.to_string()
            }
        };
        let text_term = |s: &str| Term::from_field_text(indexed, &norm(s));
        let equals = |v: &Value| match v {
            Value::String(s) => term_query(text_term(s)),
            Value::Null => not(self.present(field.name())),
            _ => Box::new(EmptyQuery) as Box<dyn Query>,
        };
        let all_low = Term::from_field_text(indexed, "");
        let mut all_high = Term::from_field_text(indexed, "");
        all_high.append_bytes(&[AFTER_ALL_STRINGS]);
        // A field with a column of values is ranged over the column's ordinals in one pass;
        // walking the term dictionary would union one posting list per matching value (tens of
        // thousands for an email prefix).
        let fast = self.fields.schema.get_field_entry(indexed).is_fast();
        let string_range = |low: Bound<Term>, high: Bound<Term>| -> Box<dyn Query> {
            let low = if let Bound::Unbounded = low {
                Bound::Included(all_low.clone())
            } else {
                low
            };
            let high = if let Bound::Unbounded = high {
                Bound::Included(all_high.clone())
            } else {
                high
            };
            if fast {
                let bytes = |b: &Bound<Term>| match b {
                    Bound::Included(t) => Bound::Included(t.serialized_value_bytes().to_vec()),
                    Bound::Excluded(t) => Bound::Excluded(t.serialized_value_bytes().to_vec()),
                    Bound::Unbounded => Bound::Unbounded,
                };
                self.column_range(ColumnRange {
                    column: field.name().to_string(),
                    bounds: RangeBounds::Ordinals {
                        low: bytes(&low),
                        high: bytes(&high),
                    },
                    fallback: Box::new(RangeQuery::new(low, high)),
                })
            } else {
                Box::new(InvertedIndexRangeQuery::new(low, high))
            }
        };
        match op {
            Op::Compare(CmpOp::Eq, v) => equals(v),
            Op::Compare(CmpOp::Ne, v) => not(equals(v)),
            Op::Compare(cmp, Value::String(s)) => {
                let (low, high) = bounds_for(*cmp, text_term(s));
                string_range(low, high)
            }
            Op::In(values) => any_of(values.iter().map(equals).collect()),
            Op::StartsWith(prefix) => {
                let low = text_term(prefix);
                let mut high = low.clone();
                high.append_bytes(&[AFTER_ALL_STRINGS]);
                string_range(Bound::Included(low), Bound::Included(high))
            }
            Op::Between(Value::String(l), Value::String(h)) => {
                string_range(Bound::Included(text_term(l)), Bound::Included(text_term(h)))
            }
            _ => Box::new(EmptyQuery),
        }
    }

    fn date(&self, field: CoreField, indexed: Field, op: &Op) -> Box<dyn Query> {
        let millis = |v: &Value| match v {
            Value::Date(d) => Some(d.resolve(self.now_ms)),
            _ => None,
        };
        let date_range = |low: Bound<i64>, high: Bound<i64>| {
            let term = |ms: i64| Term::from_field_date(indexed, date_of_millis(ms));
            self.column_range(ColumnRange {
                column: field.name().to_string(),
                bounds: RangeBounds::Date { low, high },
                fallback: range(low.map(term), high.map(term)),
            })
        };
        let equals = |v: &Value| match (v, millis(v)) {
            (Value::Null, _) => not(self.present(field.name())),
            (_, Some(ms)) => date_range(Bound::Included(ms), Bound::Included(ms)),
            _ => Box::new(EmptyQuery) as Box<dyn Query>,
        };
        match op {
            Op::Compare(CmpOp::Eq, v) => equals(v),
            Op::Compare(CmpOp::Ne, v) => not(equals(v)),
            Op::Compare(cmp, v) => match millis(v) {
                Some(ms) => {
                    let (low, high) = bounds_for(*cmp, ms);
                    date_range(low, high)
                }
                None => Box::new(EmptyQuery),
            },
            Op::In(values) => any_of(values.iter().map(equals).collect()),
            Op::Between(l, h) => match (millis(l), millis(h)) {
                (Some(l), Some(h)) => date_range(Bound::Included(l), Bound::Included(h)),
                _ => Box::new(EmptyQuery),
            },
            _ => Box::new(EmptyQuery),
        }
    }

    fn integer(&self, field: CoreField, indexed: Field, op: &Op) -> Box<dyn Query> {
        let number = |v: &Value| match v {
            Value::Integer(i) => Some(*i as f64),
            Value::Float(f) => Some(*f),
            _ => None,
        };
        let number_range = |low: Bound<f64>, high: Bound<f64>| -> Box<dyn Query> {
            // The whole numbers within the bounds, for tantivy's own range over the terms.
            let low_int = match low {
                Bound::Included(x) => x.ceil(),
                Bound::Excluded(x) => x.floor() + 1.0,
                Bound::Unbounded => i64::MIN as f64,
            };
            let high_int = match high {
                Bound::Included(x) => x.floor(),
                Bound::Excluded(x) => x.ceil() - 1.0,
                Bound::Unbounded => i64::MAX as f64,
            };
            if low_int > high_int {
                return Box::new(EmptyQuery);
            }
            let term = |x: f64| Bound::Included(Term::from_field_i64(indexed, x as i64));
            self.column_range(ColumnRange {
                column: field.name().to_string(),
                bounds: RangeBounds::Number { low, high },
                fallback: range(term(low_int), term(high_int)),
            })
        };
        let equals = |v: &Value| match (v, number(v)) {
            (Value::Null, _) => not(self.present(field.name())),
            (_, Some(n)) => number_range(Bound::Included(n), Bound::Included(n)),
            _ => Box::new(EmptyQuery) as Box<dyn Query>,
        };
        match op {
            Op::Compare(CmpOp::Eq, v) => equals(v),
            Op::Compare(CmpOp::Ne, v) => not(equals(v)),
            Op::Compare(cmp, v) => match number(v) {
                Some(n) => {
                    let (low, high) = bounds_for(*cmp, n);
                    number_range(low, high)
                }
                None => Box::new(EmptyQuery),
            },
            Op::In(values) => any_of(values.iter().map(equals).collect()),
            Op::Between(l, h) => match (number(l), number(h)) {
                (Some(l), Some(h)) => number_range(Bound::Included(l), Bound::Included(h)),
                _ => Box::new(EmptyQuery),
            },
            _ => Box::new(EmptyQuery),
        }
    }
}
