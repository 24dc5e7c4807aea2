//! Filters on sensitive paths: `=`, `!=` and `IN` become blind-index token lookups (the only
//! form in which they reach the index); anything else is refused, naming the path, never a value.

use super::seal::{Sensitive, canonical_number};
use crate::query::ast::{CmpOp, FieldPath, Filter, Op, Predicate, Value};
use crate::user::encode_metadata_path;

/// A predicate on a sensitive path that cannot be evaluated, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path} is a sensitive path: {reason}")]
pub struct SensitiveFilterError {
    pub path: String,
    pub reason: &'static str,
}

impl Sensitive {
    /// `filter` with every predicate on a sensitive path turned into a token lookup: `=` and
    /// `IN` match a token, `!=` is the negation. Other operators are refused (the values are
    /// not in the index to compare or scan); errors name the path, never a value.
    pub fn seal_filter(&self, filter: Filter) -> Result<Filter, SensitiveFilterError> {
        Ok(match filter {
            Filter::And(parts) => Filter::And(
                parts
                    .into_iter()
                    .map(|p| self.seal_filter(p))
                    .collect::<Result<_, _>>()?,
            ),
            Filter::Or(parts) => Filter::Or(
                parts
                    .into_iter()
                    .map(|p| self.seal_filter(p))
                    .collect::<Result<_, _>>()?,
            ),
            Filter::Not(inner) => Filter::Not(Box::new(self.seal_filter(*inner)?)),
            Filter::Org(inner) => Filter::Org(Box::new(self.seal_filter(*inner)?)),
            Filter::Predicate(predicate) if self.covers(&predicate.path) => {
                let FieldPath::Metadata { namespace, keys } = &predicate.path else {
                    unreachable!("only metadata paths are sensitive");
                };
                let path = encode_metadata_path(*namespace, keys);
                let tokens = |values: &[Value]| -> Result<Vec<String>, SensitiveFilterError> {
                    values
                        .iter()
                        .map(|value| {
                            normalize_literal(value)
                                .map(|normalized| self.token(&path, &normalized))
                                .ok_or_else(|| SensitiveFilterError {
                                    path: predicate.path.to_string(),
                                    reason: "compare it with a string, number, boolean or null",
                                })
                        })
                        .collect()
                };
                let sealed = |tokens: Vec<String>| {
                    Filter::Predicate(Predicate {
                        path: predicate.path.clone(),
                        op: Op::Sealed(tokens),
                        position: predicate.position,
                    })
                };
                match &predicate.op {
                    Op::Compare(CmpOp::Eq, value) => sealed(tokens(std::slice::from_ref(value))?),
                    Op::Compare(CmpOp::Ne, value) => {
                        Filter::Not(Box::new(sealed(tokens(std::slice::from_ref(value))?)))
                    }
                    Op::In(values) => sealed(tokens(values)?),
                    _ => {
                        return Err(SensitiveFilterError {
                            path: predicate.path.to_string(),
                            reason: "it can be filtered only with =, != or IN",
                        });
                    }
                }
            }
            other => other,
        })
    }

    /// Whether `filter` tests a sensitive path.
    pub fn touches(&self, filter: &Filter) -> bool {
        match filter {
            Filter::And(parts) | Filter::Or(parts) => parts.iter().any(|p| self.touches(p)),
            Filter::Not(inner) | Filter::Org(inner) => self.touches(inner),
            Filter::Predicate(predicate) => self.covers(&predicate.path),
            Filter::Segment { .. } => false,
        }
    }
}

/// The same for a filter literal; dates have no stored form to compare with.
fn normalize_literal(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(format!("s{s}")),
        Value::Integer(i) => Some(format!("n{}", canonical_number(*i as f64))),
        Value::Float(f) => Some(format!("n{}", canonical_number(*f))),
        Value::Bool(b) => Some(format!("b{b}")),
        Value::Null => Some("z".into()),
        Value::Date(_) => None,
    }
}
