//! Checks a parsed or structured filter once, before it is compiled or evaluated: limits, and
//! which operators and values each core field accepts. Core date values are normalized to dates.
//!
//! Metadata paths have no declared types, so a value of the "wrong" type there is not an error:
//! it simply matches nothing (DESIGN.md). Operators that can never make sense are errors.

use super::ast::{CmpOp, CoreKind, DateValue, FieldPath, Filter, Op, Predicate, Value};
use super::error::{FilterError, FilterLimits};
use super::lexer::parse_date_literal;

/// Validates and normalizes a filter.
pub fn validate(filter: Filter, limits: &FilterLimits) -> Result<Filter, FilterError> {
    let mut predicates = 0;
    let filter = walk(filter, 0, limits, &mut predicates)?;
    if predicates > limits.max_predicates {
        return Err(FilterError::general(format!(
            "the filter has {predicates} predicates; the limit is {}",
            limits.max_predicates
        )));
    }
    Ok(filter)
}

fn walk(
    filter: Filter,
    depth: usize,
    limits: &FilterLimits,
    predicates: &mut usize,
) -> Result<Filter, FilterError> {
    if depth > limits.max_depth {
        return Err(FilterError::general(format!(
            "the filter nests deeper than {} levels",
            limits.max_depth
        )));
    }
    let mut children = |parts: Vec<Filter>, name: &str| -> Result<Vec<Filter>, FilterError> {
        if parts.is_empty() {
            return Err(FilterError::general(format!(
                "an empty {name} has no meaning: give it at least one filter"
            )));
        }
        parts
            .into_iter()
            .map(|f| walk(f, depth + 1, limits, predicates))
            .collect()
    };
    Ok(match filter {
        Filter::And(parts) => Filter::And(children(parts, "AND")?),
        Filter::Or(parts) => Filter::Or(children(parts, "OR")?),
        Filter::Not(inner) => Filter::Not(Box::new(walk(*inner, depth + 1, limits, predicates)?)),
        Filter::Org(inner) => {
            if let Some(position) = outside_membership(&inner) {
                return Err(FilterError::at(
                    position,
                    "inside org[...] every path is one of a membership (role, public.plan, ...), and org[...] does not nest",
                ));
            }
            Filter::Org(Box::new(walk(*inner, depth + 1, limits, predicates)?))
        }
        Filter::Predicate(predicate) => {
            *predicates += 1;
            Filter::Predicate(check_predicate(predicate, limits)?)
        }
        segment @ Filter::Segment { .. } => segment,
    })
}

/// The position of the first predicate inside an `org[...]` that is not about a membership.
fn outside_membership(filter: &Filter) -> Option<usize> {
    match filter {
        Filter::And(parts) | Filter::Or(parts) => parts.iter().find_map(outside_membership),
        Filter::Not(inner) => outside_membership(inner),
        Filter::Org(_) => Some(0),
        Filter::Segment { position, .. } => Some(*position),
        Filter::Predicate(predicate) => match &predicate.path {
            FieldPath::Metadata {
                namespace: crate::user::MetadataNamespace::Org,
                ..
            } => None,
            _ => Some(predicate.position),
        },
    }
}

fn check_predicate(
    mut predicate: Predicate,
    limits: &FilterLimits,
) -> Result<Predicate, FilterError> {
    let at = |message: String| FilterError::at(predicate.position, message);
    let path = predicate.path.to_string();
    if let Op::In(values) = &predicate.op {
        if values.is_empty() {
            return Err(at(format!("{path} IN needs at least one value")));
        }
        if values.len() > limits.max_in_values {
            return Err(at(format!(
                "an IN list may hold at most {} values",
                limits.max_in_values
            )));
        }
    }
    for value in op_values(&predicate.op) {
        if let Value::Float(f) = value
            && !f.is_finite()
        {
            return Err(at(format!("{f} is not a finite number")));
        }
    }
    match &predicate.path {
        FieldPath::Metadata { keys, .. } => {
            if keys.iter().any(String::is_empty) {
                return Err(at(format!("{path} has an empty key")));
            }
            match &predicate.op {
                Op::Matches(_) => {
                    return Err(at(format!(
                        "MATCHES works on the text fields (name, first_name, last_name, email, username); use = or STARTS WITH on {path}"
                    )));
                }
                Op::Compare(cmp, value) if is_ordering(*cmp) => {
                    check_orderable(&path, value).map_err(at)?
                }
                Op::Between(low, high) => {
                    check_orderable(&path, low).map_err(at)?;
                    check_orderable(&path, high).map_err(at)?;
                    if value_class(low) != value_class(high) {
                        return Err(at(format!(
                            "BETWEEN on {path} needs two bounds of the same type"
                        )));
                    }
                }
                _ => {}
            }
        }
        FieldPath::Core(field) => {
            let name = field.name();
            let kind = field.kind();
            match (&predicate.op, kind) {
                (Op::Exists, _) => {}
                (Op::Matches(text), CoreKind::TextOnly | CoreKind::Keyword { text: true, .. }) => {
                    if crate::query::eval::text_tokens(text).is_empty() {
                        return Err(at(format!("MATCHES on {name} needs at least one word")));
                    }
                }
                (Op::Matches(_), _) => {
                    return Err(at(format!(
                        "{name} is not a text field: MATCHES works on name, first_name, last_name, email and username"
                    )));
                }
                (_, CoreKind::TextOnly) => {
                    return Err(at(format!("{name} supports only MATCHES and EXISTS")));
                }
                (Op::StartsWith(_), CoreKind::Keyword { .. }) => {}
                (Op::StartsWith(_), _) => {
                    return Err(at(format!(
                        "STARTS WITH needs a string field; {name} is not one"
                    )));
                }
                (op, CoreKind::Keyword { .. }) => {
                    let ordering = matches!(op, Op::Between(..))
                        || matches!(op, Op::Compare(c, _) if is_ordering(*c));
                    for value in op_values(op) {
                        match value {
                            Value::String(_) => {}
                            Value::Null if !ordering => {}
                            other => {
                                return Err(at(format!(
                                    "{name} holds strings; {} is not a string",
                                    describe(other)
                                )));
                            }
                        }
                    }
                }
                (op, CoreKind::Bool) => {
                    if !matches!(op, Op::Compare(CmpOp::Eq | CmpOp::Ne, _) | Op::In(_)) {
                        return Err(at(format!("{name} is true or false: use =, != or IN")));
                    }
                    if let Some(bad) = op_values(op)
                        .into_iter()
                        .find(|v| !matches!(v, Value::Bool(_)))
                    {
                        return Err(at(format!(
                            "{name} is true or false; {} is neither",
                            describe(bad)
                        )));
                    }
                }
                (op, CoreKind::Integer) => {
                    let ordering = matches!(op, Op::Between(..))
                        || matches!(op, Op::Compare(c, _) if is_ordering(*c));
                    if let Some(bad) = op_values(op).into_iter().find(|v| match v {
                        Value::Integer(_) | Value::Float(_) => false,
                        Value::Null => ordering,
                        _ => true,
                    }) {
                        return Err(at(format!(
                            "{name} is a whole number; {} is not a number",
                            describe(bad)
                        )));
                    }
                }
                (_, CoreKind::Date) => {
                    let ordering = matches!(predicate.op, Op::Between(..))
                        || matches!(predicate.op, Op::Compare(c, _) if is_ordering(c));
                    for value in op_values_mut(&mut predicate.op) {
                        *value = match std::mem::replace(value, Value::Null) {
                            Value::Date(d) => Value::Date(d),
                            Value::Integer(ms) => Value::Date(DateValue::Absolute(ms)),
                            Value::String(s) => match parse_date_literal(&s) {
                                Some(ms) => Value::Date(DateValue::Absolute(ms)),
                                None => {
                                    return Err(at(format!(
                                        "\"{s}\" is not a date: use RFC 3339, YYYY-MM-DD, epoch milliseconds or now-30d"
                                    )));
                                }
                            },
                            Value::Null if !ordering => Value::Null,
                            other => {
                                return Err(at(format!(
                                    "{name} is a date; {} is not",
                                    describe(&other)
                                )));
                            }
                        };
                    }
                }
            }
        }
    }
    Ok(predicate)
}

fn is_ordering(cmp: CmpOp) -> bool {
    matches!(cmp, CmpOp::Lt | CmpOp::Lte | CmpOp::Gt | CmpOp::Gte)
}

fn check_orderable(path: &str, value: &Value) -> Result<(), String> {
    match value {
        Value::Null => Err(format!(
            "null has no order: use {path} = null or {path} EXISTS"
        )),
        Value::Bool(_) => Err(format!(
            "booleans have no order: use {path} = true or = false"
        )),
        _ => Ok(()),
    }
}

/// Numbers and dates compare with each other; strings with strings.
fn value_class(value: &Value) -> u8 {
    match value {
        Value::String(_) => 0,
        Value::Integer(_) | Value::Float(_) | Value::Date(_) => 1,
        Value::Bool(_) => 2,
        Value::Null => 3,
    }
}

fn describe(value: &Value) -> String {
    match value {
        Value::String(s) => format!("\"{s}\""),
        Value::Integer(i) => i.to_string(),
        Value::Float(f) => f.to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Null => "null".into(),
        Value::Date(_) => "a date".into(),
    }
}

fn op_values(op: &Op) -> Vec<&Value> {
    match op {
        Op::Compare(_, v) => vec![v],
        Op::In(values) => values.iter().collect(),
        Op::Between(low, high) => vec![low, high],
        Op::Exists | Op::StartsWith(_) | Op::Matches(_) | Op::Sealed(_) => Vec::new(),
    }
}

fn op_values_mut(op: &mut Op) -> Vec<&mut Value> {
    match op {
        Op::Compare(_, v) => vec![v],
        Op::In(values) => values.iter_mut().collect(),
        Op::Between(low, high) => vec![low, high],
        Op::Exists | Op::StartsWith(_) | Op::Matches(_) | Op::Sealed(_) => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use crate::query::{FilterLimits, parse_filter};

    fn error(text: &str) -> String {
        parse_filter(text, &FilterLimits::default())
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn core_fields_reject_values_of_the_wrong_type() {
        assert!(error("banned = \"yes\"").contains("true or false"));
        assert!(error("banned > true").contains("=, != or IN"));
        assert!(error("created_at > \"yesterday\"").contains("not a date"));
        assert!(error("created_at STARTS WITH \"2024\"").contains("STARTS WITH"));
        assert!(error("email = 5").contains("strings"));
        assert!(error("public.plan MATCHES \"pro\"").contains("MATCHES"));
        assert!(error("name = \"Ann\"").contains("only MATCHES"));
        assert!(error("name MATCHES \"  \"").contains("at least one word"));
        assert!(error("public.x > null").contains("null has no order"));
        assert!(error("public.x BETWEEN 1 AND \"z\"").contains("same type"));
        assert!(error("public.x = 1e999").contains("finite"));
        assert!(error("passkey_count = \"two\"").contains("whole number"));
        assert!(error("passkey_count > null").contains("whole number"));
        assert!(error("passkey_count STARTS WITH \"1\"").contains("STARTS WITH"));
        assert!(error("passkey_count MATCHES \"1\"").contains("not a text field"));
    }

    #[test]
    fn dates_accept_strings_and_epoch_milliseconds() {
        for text in [
            "created_at > \"2024-01-01\"",
            "created_at > 1704067200000",
            "last_sign_in_at = null",
            "created_at < now",
        ] {
            parse_filter(text, &FilterLimits::default()).unwrap_or_else(|e| panic!("{text}: {e}"));
        }
    }

    #[test]
    fn error_positions_point_at_the_predicate() {
        let e = parse_filter("public.a = 1 AND banned = 3", &FilterLimits::default()).unwrap_err();
        assert_eq!(e.position, Some(17));
    }
}
