//! Predicates on the JSON fields: user metadata, the user's memberships (`org.*`), and one
//! membership's slot inside `org[...]` (docs/ORGANIZATIONS.md).

use std::ops::Bound;

use tantivy::Term;
use tantivy::columnar::NumericalValue;
use tantivy::query::{AllQuery, BooleanQuery, EmptyQuery, InvertedIndexRangeQuery, Occur, Query};
use tantivy::schema::Field;

use super::super::engine::{ColumnRange, RangeBounds};
use super::super::schema::ORG_SLOTS;
use super::{AFTER_ALL_STRINGS, Compiler, NumberUse, any_of, not, range, term_query};
use crate::query::ast::{CmpOp, Filter, Op, Value};
use crate::query::eval::{Number, Resolved};
use crate::user::{MetadataNamespace, encode_metadata_path, push_escaped_key};

/// A path in one of the JSON fields: the field, and the path spelled from its name
/// (`public_metadata.plan`, `org_slots.0.role`), which names its column and its `present` and
/// `nulls` terms.
struct JsonPath {
    field: Field,
    encoded: String,
    /// Where the path inside the field starts in `encoded`.
    inner: usize,
}

impl JsonPath {
    fn inner(&self) -> &str {
        &self.encoded[self.inner..]
    }
}

impl Compiler<'_> {
    /// A predicate on a metadata or `org.*` path.
    pub(super) fn metadata_predicate(
        &self,
        namespace: MetadataNamespace,
        keys: &[String],
        op: &Op,
    ) -> Box<dyn Query> {
        self.metadata(&self.json_path(namespace, keys), op)
    }

    /// `org[P]`: any slot `k` that holds a membership and satisfies `P` read at slot `k`.
    pub(super) fn correlated(&self, inner: &Filter) -> Box<dyn Query> {
        if self.org_slots == 0 {
            return Box::new(EmptyQuery);
        }
        any_of(
            (0..self.org_slots)
                .map(|slot| {
                    let at_slot = Compiler {
                        slot: Some(slot),
                        ..*self
                    };
                    let matches = at_slot.filter(inner);
                    // A value at slot `k` means a membership there: asking for the slot too
                    // is needed only when `P` can hold for a missing value (`NOT`, `!=`, null).
                    if needs_a_value(inner) {
                        return matches;
                    }
                    let held = self.present(&format!("{ORG_SLOTS}.{slot}"));
                    Box::new(BooleanQuery::new(vec![
                        (Occur::Must, held),
                        (Occur::Must, matches),
                    ])) as Box<dyn Query>
                })
                .collect(),
        )
    }

    /// Where a metadata path lives: its own JSON field, or the current slot's for `org.*`
    /// inside `org[...]`.
    fn json_path(&self, namespace: MetadataNamespace, keys: &[String]) -> JsonPath {
        match (namespace, self.slot) {
            (MetadataNamespace::Org, Some(slot)) => {
                let mut encoded = format!("{ORG_SLOTS}.{slot}");
                for key in keys {
                    encoded.push('.');
                    push_escaped_key(&mut encoded, key);
                }
                JsonPath {
                    field: self.fields.org_slots,
                    encoded,
                    inner: ORG_SLOTS.len() + 1,
                }
            }
            _ => JsonPath {
                field: self.fields.metadata(namespace),
                encoded: encode_metadata_path(namespace, keys),
                inner: namespace.field_name().len() + 1,
            },
        }
    }

    // ---- metadata -----------------------------------------------------------------------------

    fn json_term(&self, path: &JsonPath) -> Term {
        Term::from_field_json_path(path.field, path.inner(), false)
    }

    fn json_str_term(&self, path: &JsonPath, value: &str) -> Term {
        let mut term = self.json_term(path);
        term.append_type_and_str(value);
        term
    }

    /// The term of a JSON number: as the inverted index stores it, or as a range bound. Range
    /// bounds are always f64: tantivy's fast-column range reads the type of one bound and
    /// assumes the other has it too, and converts f64 bounds correctly to i64/u64 columns.
    fn json_number_term(&self, path: &JsonPath, number: Number, usage: NumberUse) -> Term {
        let mut term = self.json_term(path);
        if usage == NumberUse::RangeBound {
            term.append_type_and_fast_value(number.as_f64());
            return term;
        }
        let normalized = match number {
            Number::I64(i) => NumericalValue::I64(i),
            Number::U64(u) => NumericalValue::U64(u),
            Number::F64(f) => NumericalValue::F64(f),
        }
        .normalize();
        match normalized {
            NumericalValue::I64(i) => term.append_type_and_fast_value(i),
            NumericalValue::U64(u) => term.append_type_and_fast_value(u),
            NumericalValue::F64(f) => term.append_type_and_fast_value(f),
        }
        term
    }

    /// The inverted-index bounds of every string under one path.
    fn json_str_bounds(&self, path: &JsonPath) -> (Term, Term) {
        let low = self.json_str_term(path, "");
        let mut high = self.json_str_term(path, "");
        high.append_bytes(&[AFTER_ALL_STRINGS]);
        (low, high)
    }

    fn metadata_equals(&self, path: &JsonPath, value: &Value) -> Box<dyn Query> {
        match value.resolve(self.now_ms) {
            Resolved::Str(s) => term_query(self.json_str_term(path, s)),
            Resolved::Num(n) => term_query(self.json_number_term(path, n, NumberUse::Stored)),
            Resolved::Bool(b) => {
                let mut term = self.json_term(path);
                term.append_type_and_fast_value(b);
                term_query(term)
            }
            Resolved::Null => term_query(Term::from_field_text(self.fields.nulls, &path.encoded)),
        }
    }

    fn metadata_range<'v>(
        &self,
        path: &JsonPath,
        low: Bound<&'v Value>,
        high: Bound<&'v Value>,
    ) -> Box<dyn Query> {
        let now_ms = self.now_ms;
        let resolved = |b: Bound<&'v Value>| -> Bound<Resolved<'v>> {
            match b {
                Bound::Included(v) => Bound::Included(v.resolve(now_ms)),
                Bound::Excluded(v) => Bound::Excluded(v.resolve(now_ms)),
                Bound::Unbounded => Bound::Unbounded,
            }
        };
        let (low, high) = (resolved(low), resolved(high));
        let sample = match (&low, &high) {
            (Bound::Included(v) | Bound::Excluded(v), _)
            | (_, Bound::Included(v) | Bound::Excluded(v)) => v.clone(),
            _ => return Box::new(AllQuery),
        };
        match sample {
            Resolved::Num(_) => {
                let to_term = |b: &Bound<Resolved>| match b {
                    Bound::Included(Resolved::Num(n)) => {
                        Bound::Included(self.json_number_term(path, *n, NumberUse::RangeBound))
                    }
                    Bound::Excluded(Resolved::Num(n)) => {
                        Bound::Excluded(self.json_number_term(path, *n, NumberUse::RangeBound))
                    }
                    _ => Bound::Unbounded,
                };
                let to_f64 = |b: &Bound<Resolved>| match b {
                    Bound::Included(Resolved::Num(n)) => Bound::Included(n.as_f64()),
                    Bound::Excluded(Resolved::Num(n)) => Bound::Excluded(n.as_f64()),
                    _ => Bound::Unbounded,
                };
                // The name sorts and facets open the column by, too (one cached copy; keys
                // with dots escaped as fast-field names need).
                self.column_range(ColumnRange {
                    column: path.encoded.clone(),
                    bounds: RangeBounds::Number {
                        low: to_f64(&low),
                        high: to_f64(&high),
                    },
                    fallback: range(to_term(&low), to_term(&high)),
                })
            }
            Resolved::Str(_) => {
                let (all_low, all_high) = self.json_str_bounds(path);
                let to_term = |b: Bound<Resolved>, default: Bound<Term>| match b {
                    Bound::Included(Resolved::Str(s)) => {
                        Bound::Included(self.json_str_term(path, s))
                    }
                    Bound::Excluded(Resolved::Str(s)) => {
                        Bound::Excluded(self.json_str_term(path, s))
                    }
                    _ => default,
                };
                Box::new(InvertedIndexRangeQuery::new(
                    to_term(low, Bound::Included(all_low)),
                    to_term(high, Bound::Included(all_high)),
                ))
            }
            // Validation rejects ordering on booleans and null.
            Resolved::Bool(_) | Resolved::Null => Box::new(EmptyQuery),
        }
    }

    fn metadata(&self, path: &JsonPath, op: &Op) -> Box<dyn Query> {
        match op {
            Op::Compare(CmpOp::Eq, v) => self.metadata_equals(path, v),
            Op::Compare(CmpOp::Ne, v) => not(self.metadata_equals(path, v)),
            Op::Compare(cmp, v) => {
                let (low, high) = match cmp {
                    CmpOp::Lt => (Bound::Unbounded, Bound::Excluded(v)),
                    CmpOp::Lte => (Bound::Unbounded, Bound::Included(v)),
                    CmpOp::Gt => (Bound::Excluded(v), Bound::Unbounded),
                    _ => (Bound::Included(v), Bound::Unbounded),
                };
                self.metadata_range(path, low, high)
            }
            Op::In(values) => any_of(
                values
                    .iter()
                    .map(|v| self.metadata_equals(path, v))
                    .collect(),
            ),
            Op::Exists => self.present(&path.encoded),
            Op::StartsWith(prefix) => {
                let low = self.json_str_term(path, prefix);
                let mut high = low.clone();
                high.append_bytes(&[AFTER_ALL_STRINGS]);
                Box::new(InvertedIndexRangeQuery::new(
                    Bound::Included(low),
                    Bound::Included(high),
                ))
            }
            Op::Matches(_) | Op::Sealed(_) => Box::new(EmptyQuery),
            Op::Between(low, high) => {
                self.metadata_range(path, Bound::Included(low), Bound::Included(high))
            }
        }
    }
}

/// Whether `filter` holds only for a membership with a value at one of its paths: then
/// `org[filter]` at slot `k` needs no separate test that slot `k` holds a membership.
fn needs_a_value(filter: &Filter) -> bool {
    let not_null = |value: &Value| !matches!(value, Value::Null);
    match filter {
        Filter::And(items) => items.iter().any(needs_a_value),
        Filter::Or(items) => !items.is_empty() && items.iter().all(needs_a_value),
        Filter::Not(_) | Filter::Org(_) | Filter::Segment { .. } => false,
        Filter::Predicate(predicate) => match &predicate.op {
            Op::Compare(CmpOp::Ne, _) => false,
            Op::Compare(_, value) => not_null(value),
            Op::In(values) => !values.is_empty() && values.iter().all(not_null),
            Op::Between(low, high) => not_null(low) && not_null(high),
            Op::Exists | Op::StartsWith(_) | Op::Matches(_) => true,
            Op::Sealed(_) => false,
        },
    }
}
