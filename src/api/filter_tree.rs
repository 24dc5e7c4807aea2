//! Domain -> proto for checked filters: the structured tree of a filter (the normalized form a
//! structured builder shows) and the warnings `ValidateFilter` reports.

use super::proto;
use crate::query::ast::{CmpOp, DateValue, Filter, Op, Value};
use crate::query::value_text;
use crate::read::{FilterWarning, WarningCode};

/// The filter's structured form; `tree_to_filter` reads it back to the same filter.
pub fn filter_to_tree(filter: &Filter) -> proto::Filter {
    use proto::filter::Node;
    let list = |items: &[Filter]| proto::FilterList {
        filters: items.iter().map(filter_to_tree).collect(),
    };
    let node = match filter {
        Filter::And(items) => Node::All(list(items)),
        Filter::Or(items) => Node::Any(list(items)),
        Filter::Not(inner) => Node::Negate(Box::new(filter_to_tree(inner))),
        Filter::Org(inner) => Node::Org(Box::new(filter_to_tree(inner))),
        Filter::Segment { name, .. } => Node::Segment(name.clone()),
        Filter::Predicate(predicate) => {
            let (op, values) = match &predicate.op {
                Op::Compare(cmp, value) => (compare_operator(*cmp), vec![value_to_proto(value)]),
                Op::In(values) => (
                    proto::Operator::In,
                    values.iter().map(value_to_proto).collect(),
                ),
                Op::Exists => (proto::Operator::Exists, Vec::new()),
                Op::StartsWith(prefix) => (
                    proto::Operator::StartsWith,
                    vec![value_to_proto(&Value::String(prefix.clone()))],
                ),
                Op::Matches(text) => (
                    proto::Operator::Matches,
                    vec![value_to_proto(&Value::String(text.clone()))],
                ),
                Op::Between(low, high) => (
                    proto::Operator::Between,
                    vec![value_to_proto(low), value_to_proto(high)],
                ),
                // Made from `=`/`IN` after authorization; never in a filter shown back.
                Op::Sealed(_) => (proto::Operator::Unspecified, Vec::new()),
            };
            Node::Predicate(proto::Predicate {
                path: predicate.path.to_string(),
                op: op as i32,
                values,
            })
        }
    };
    proto::Filter { node: Some(node) }
}

fn compare_operator(cmp: CmpOp) -> proto::Operator {
    match cmp {
        CmpOp::Eq => proto::Operator::Eq,
        CmpOp::Ne => proto::Operator::Ne,
        CmpOp::Lt => proto::Operator::Lt,
        CmpOp::Lte => proto::Operator::Lte,
        CmpOp::Gt => proto::Operator::Gt,
        CmpOp::Gte => proto::Operator::Gte,
    }
}

fn value_to_proto(value: &Value) -> proto::Value {
    use proto::value::Kind;
    let kind = match value {
        Value::String(s) => Kind::String(s.clone()),
        Value::Integer(i) => Kind::Integer(*i),
        Value::Float(f) => Kind::Number(*f),
        Value::Bool(b) => Kind::Boolean(*b),
        Value::Null => Kind::Null(true),
        Value::Date(DateValue::Absolute(ms)) => Kind::DateMs(*ms),
        Value::Date(DateValue::Relative(_)) => Kind::Date(value_text(value)),
    };
    proto::Value { kind: Some(kind) }
}

pub fn warning_to_proto(warning: FilterWarning) -> proto::FilterWarning {
    use proto::filter_warning::Code;
    let code = match warning.code {
        WarningCode::UnknownPath => Code::UnknownPath,
        WarningCode::TypeMismatch => Code::TypeMismatch,
        WarningCode::TimeDriven => Code::TimeDriven,
    };
    proto::FilterWarning {
        code: code as i32,
        path: warning.path,
        position: u32::try_from(warning.position).unwrap_or(u32::MAX),
        message: warning.message,
        suggestions: warning.suggestions,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::query::{FilterLimits, parse_filter};

    /// Every construct goes to the tree and back to the same filter.
    #[test]
    fn the_tree_reads_back_as_the_same_filter() {
        let limits = FilterLimits::default();
        for text in [
            r#"public.tier = "gold" AND NOT (banned = true OR created_at > now-30d)"#,
            r#"email_domain IN ["a.com", "b.io"] AND public.points BETWEEN 1.5 AND 20"#,
            r#"org[role = "org:admin" AND public.plan EXISTS] AND org_count >= 2"#,
            r#"username STARTS WITH "ann" AND name MATCHES "ann smith" AND public.x = null"#,
            "created_at < 2024-05-01 AND last_active_at >= now-12h",
        ] {
            let filter = parse_filter(text, &limits).unwrap();
            let spec = proto::FilterSpec {
                spec: Some(proto::filter_spec::Spec::Tree(filter_to_tree(&filter))),
            };
            let back = super::super::convert::filter_from_proto(Some(spec), &limits)
                .unwrap()
                .unwrap();
            assert_eq!(back.unplaced(), filter.unplaced(), "{text}");
        }
    }
}
