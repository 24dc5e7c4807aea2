//! Sort semantics, shared by the index's sort collector and the in-memory reference.
//!
//! Values of different JSON types can sit under one metadata path, so keys are ordered by type
//! class first (booleans, then numbers and dates, then strings) and by value within a class;
//! users without a value come last in both directions. Arrays sort by their smallest element
//! ascending and their largest descending (as Elasticsearch does). Ties break by id ascending.

use std::cmp::Ordering;

use serde::{Deserialize, Serialize};

use super::ast::{CoreField, CoreKind, FieldPath};
use super::eval::{Number, core_bool, core_date, core_integer, core_strings, metadata_leaves};
use crate::user::User;

/// What to sort by.
#[derive(Debug, Clone, PartialEq)]
pub struct SortSpec {
    pub path: FieldPath,
    pub descending: bool,
}

impl SortSpec {
    /// The default: by id ascending, the only order that is also the tie-break.
    pub fn by_id() -> Self {
        SortSpec {
            path: FieldPath::Core(CoreField::Id),
            descending: false,
        }
    }
}

/// One user's sort key, comparable across index segments.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum SortValue {
    Bool(bool),
    Num(f64),
    Str(String),
    Missing,
}

impl SortValue {
    fn class(&self) -> u8 {
        match self {
            SortValue::Bool(_) => 0,
            SortValue::Num(_) => 1,
            SortValue::Str(_) => 2,
            SortValue::Missing => 3,
        }
    }

    /// Natural ascending order of two present values (class, then value).
    fn natural_cmp(&self, other: &SortValue) -> Ordering {
        self.class()
            .cmp(&other.class())
            .then_with(|| match (self, other) {
                (SortValue::Bool(a), SortValue::Bool(b)) => a.cmp(b),
                (SortValue::Num(a), SortValue::Num(b)) => a.total_cmp(b),
                (SortValue::Str(a), SortValue::Str(b)) => a.cmp(b),
                _ => Ordering::Equal,
            })
    }

    /// Order in a result list: missing values last in both directions.
    pub fn list_cmp(&self, other: &SortValue, descending: bool) -> Ordering {
        match (self, other) {
            (SortValue::Missing, SortValue::Missing) => Ordering::Equal,
            (SortValue::Missing, _) => Ordering::Greater,
            (_, SortValue::Missing) => Ordering::Less,
            _ if descending => other.natural_cmp(self),
            _ => self.natural_cmp(other),
        }
    }
}

/// Order of two hits `(key, id)` in a result list.
pub fn hit_cmp(a: (&SortValue, &str), b: (&SortValue, &str), descending: bool) -> Ordering {
    a.0.list_cmp(b.0, descending).then_with(|| a.1.cmp(b.1))
}

/// The sort key of a user, exactly as the index computes it.
pub fn sort_value(user: &User, path: &FieldPath, descending: bool) -> SortValue {
    let candidates: Vec<SortValue> = match path {
        FieldPath::Core(field) => match field.kind() {
            CoreKind::Keyword { .. } | CoreKind::TextOnly => core_strings(user, *field)
                .into_iter()
                .map(SortValue::Str)
                .collect(),
            CoreKind::Date => core_date(user, *field)
                .map(|ms| SortValue::Num(ms as f64))
                .into_iter()
                .collect(),
            CoreKind::Integer => core_integer(user, *field)
                .map(|n| SortValue::Num(n as f64))
                .into_iter()
                .collect(),
            CoreKind::Bool => core_bool(user, *field)
                .map(SortValue::Bool)
                .into_iter()
                .collect(),
        },
        FieldPath::Metadata { namespace, keys } => metadata_leaves(user.metadata(*namespace), keys)
            .into_iter()
            .filter_map(|leaf| match leaf {
                serde_json::Value::Bool(b) => Some(SortValue::Bool(*b)),
                serde_json::Value::Number(n) => Some(SortValue::Num(Number::from_json(n).as_f64())),
                serde_json::Value::String(s) => Some(SortValue::Str(s.clone())),
                _ => None,
            })
            .collect(),
    };
    let best = if descending {
        candidates.into_iter().max_by(|a, b| a.natural_cmp(b))
    } else {
        candidates.into_iter().min_by(|a, b| a.natural_cmp(b))
    };
    best.unwrap_or(SortValue::Missing)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_sorts_last_in_both_directions_and_classes_order() {
        let mut values = vec![
            SortValue::Missing,
            SortValue::Str("a".into()),
            SortValue::Num(2.0),
            SortValue::Bool(true),
            SortValue::Num(-1.0),
        ];
        values.sort_by(|a, b| a.list_cmp(b, false));
        assert_eq!(
            values,
            vec![
                SortValue::Bool(true),
                SortValue::Num(-1.0),
                SortValue::Num(2.0),
                SortValue::Str("a".into()),
                SortValue::Missing
            ]
        );
        values.sort_by(|a, b| a.list_cmp(b, true));
        assert_eq!(
            values,
            vec![
                SortValue::Str("a".into()),
                SortValue::Num(2.0),
                SortValue::Num(-1.0),
                SortValue::Bool(true),
                SortValue::Missing
            ]
        );
    }
}
