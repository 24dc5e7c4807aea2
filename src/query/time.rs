//! Filters that move with time: the predicates comparing with a relative date (`now-30d`), the
//! users whose values such a predicate can cross between two instants, and the instants at which
//! one user's match changes.
//!
//! A predicate `last_active_at < now-30d` changes its answer for a user only when "now" passes
//! the user's value plus 30 days. Between two instants `from` and `to`, the users who can move are
//! those holding a value in `[from-30d, to-30d]` (a range query on the index, so a tick reads the
//! users near the boundary, not the population), and each of them moves at instants computed from
//! their own values. Evaluating the filter at those instants in order finds every change, with
//! its exact time, even when a long pause let one user enter and leave again.

use super::ast::{DateValue, FieldPath, Filter, Op, Predicate, Value};
use super::eval::{core_date, matches, metadata_leaves};
use crate::user::User;

/// A path compared with "now" plus `offset` milliseconds.
#[derive(Debug, Clone, PartialEq)]
pub struct RelativeBound {
    pub path: FieldPath,
    pub offset: i64,
    /// Inside `org[...]`: the path is relative to one membership.
    pub in_org: bool,
}

/// Every distinct (path, offset) of the filter's relative dates.
pub fn relative_bounds(filter: &Filter) -> Vec<RelativeBound> {
    let mut bounds = Vec::new();
    collect(filter, false, &mut bounds);
    bounds
}

/// Whether the filter's answer can change with time alone.
pub fn is_time_driven(filter: &Filter) -> bool {
    !relative_bounds(filter).is_empty()
}

fn collect(filter: &Filter, in_org: bool, out: &mut Vec<RelativeBound>) {
    match filter {
        Filter::And(items) | Filter::Or(items) => {
            items.iter().for_each(|item| collect(item, in_org, out));
        }
        Filter::Not(inner) => collect(inner, in_org, out),
        Filter::Org(inner) => collect(inner, true, out),
        Filter::Segment { .. } => {}
        Filter::Predicate(predicate) => {
            for offset in relative_offsets(&predicate.op) {
                let bound = RelativeBound {
                    path: predicate.path.clone(),
                    offset,
                    in_org,
                };
                if !out.contains(&bound) {
                    out.push(bound);
                }
            }
        }
    }
}

fn relative_offsets(op: &Op) -> Vec<i64> {
    let values: Vec<&Value> = match op {
        Op::Compare(_, value) => vec![value],
        Op::Between(low, high) => vec![low, high],
        Op::In(values) => values.iter().collect(),
        Op::Exists | Op::StartsWith(_) | Op::Matches(_) | Op::Sealed(_) => Vec::new(),
    };
    values
        .into_iter()
        .filter_map(|value| match value {
            Value::Date(DateValue::Relative(offset)) => Some(*offset),
            _ => None,
        })
        .collect()
}

/// A filter matching (at least) every user whose answer to `filter` can change between `from`
/// (exclusive) and `to` (inclusive): for each relative bound, its path between `from + offset`
/// and `to + offset + 1`. `None` when the filter has no relative date.
pub fn crossing_window(filter: &Filter, from: i64, to: i64) -> Option<Filter> {
    let bounds = relative_bounds(filter);
    if bounds.is_empty() {
        return None;
    }
    let at = |ms: i64| Value::Date(DateValue::Absolute(ms));
    let ranges = bounds.into_iter().map(|bound| {
        let predicate = Filter::Predicate(Predicate {
            path: bound.path,
            op: Op::Between(
                at(from.saturating_add(bound.offset)),
                at(to.saturating_add(bound.offset).saturating_add(1)),
            ),
            position: 0,
        });
        if bound.in_org {
            Filter::Org(Box::new(predicate))
        } else {
            predicate
        }
    });
    Some(Filter::Or(ranges.collect()))
}

/// The instants in `(from, to]` at which `user`'s answer to `filter` may change: one either side
/// of each value of a relatively bounded path, shifted by the bound's offset. Sorted, distinct.
pub fn crossing_instants(filter: &Filter, user: &User, from: i64, to: i64) -> Vec<i64> {
    let mut instants = Vec::new();
    for bound in relative_bounds(filter) {
        for value in values_at(&bound.path, user) {
            for edge in [value.floor(), value.ceil()] {
                let edge = edge as i64;
                for step in [0, 1] {
                    let instant = edge.saturating_sub(bound.offset).saturating_add(step);
                    if from < instant && instant <= to {
                        instants.push(instant);
                    }
                }
            }
        }
    }
    instants.sort_unstable();
    instants.dedup();
    instants
}

/// The user's values at `path` that a date can be compared with: a core date, or metadata
/// numbers (memberships' too, all of them: inside brackets each is one membership's).
fn values_at(path: &FieldPath, user: &User) -> Vec<f64> {
    match path {
        FieldPath::Core(field) => core_date(user, *field)
            .map(|ms| ms as f64)
            .into_iter()
            .collect(),
        FieldPath::Metadata { namespace, keys } => metadata_leaves(user.metadata(*namespace), keys)
            .into_iter()
            .filter_map(|leaf| leaf.as_f64())
            .filter(|value| value.is_finite())
            .collect(),
    }
}

/// Every change of `user`'s answer to `filter` as time moves from `from` to `to`: `(instant,
/// matches after it)`, in time order. Empty when the answer at `to` is the one at `from` and
/// nothing happened in between.
pub fn membership_changes(filter: &Filter, user: &User, from: i64, to: i64) -> Vec<(i64, bool)> {
    let mut changes = Vec::new();
    let mut state = matches(filter, user, from);
    for instant in crossing_instants(filter, user, from, to) {
        let now = matches(filter, user, instant);
        if now != state {
            changes.push((instant, now));
            state = now;
        }
    }
    changes
}

/// The filter with every relative date fixed at `now_ms`: what a saved segment means at its
/// own clock, for readers that evaluate at another instant.
pub fn pinned(filter: &Filter, now_ms: i64) -> Filter {
    let pin = |value: &Value| match value {
        Value::Date(date @ DateValue::Relative(_)) => {
            Value::Date(DateValue::Absolute(date.resolve(now_ms)))
        }
        other => other.clone(),
    };
    match filter {
        Filter::And(items) => Filter::And(items.iter().map(|f| pinned(f, now_ms)).collect()),
        Filter::Or(items) => Filter::Or(items.iter().map(|f| pinned(f, now_ms)).collect()),
        Filter::Not(inner) => Filter::Not(Box::new(pinned(inner, now_ms))),
        Filter::Org(inner) => Filter::Org(Box::new(pinned(inner, now_ms))),
        segment @ Filter::Segment { .. } => segment.clone(),
        Filter::Predicate(predicate) => {
            let op = match &predicate.op {
                Op::Compare(cmp, value) => Op::Compare(*cmp, pin(value)),
                Op::Between(low, high) => Op::Between(pin(low), pin(high)),
                Op::In(values) => Op::In(values.iter().map(pin).collect()),
                other => other.clone(),
            };
            Filter::Predicate(Predicate {
                op,
                ..predicate.clone()
            })
        }
    }
}

#[cfg(test)]
mod tests;
