//! `IN SEGMENT "name"`: composing saved segments. A reference is replaced by the referenced
//! segment's filter (its own references expanded too), so everything downstream (the index,
//! the in-memory matcher, scopes, time bounds) sees plain filters. A reference to a segment
//! that does not exist, or one that leads back to where it started, is an error.

use super::ast::Filter;
use super::error::{FilterError, FilterLimits};
use super::validate::validate;

/// `filter` with every segment reference replaced by the segment's filter as `saved` returns
/// it (`None`: no such segment), then checked against `limits` (an expansion can outgrow
/// them). `saved_as`: the segment `filter` is the definition of (a reference back to it is a
/// cycle).
pub fn expand(
    filter: &Filter,
    saved_as: Option<&str>,
    saved: &dyn Fn(&str) -> Option<Filter>,
    limits: &FilterLimits,
) -> Result<Filter, FilterError> {
    if references(filter).is_empty() {
        return Ok(filter.clone());
    }
    let mut through: Vec<String> = saved_as.into_iter().map(String::from).collect();
    let expanded = inline(filter, saved, &mut through)?;
    validate(expanded, limits).map_err(|e| {
        FilterError::general(format!(
            "with the segments it refers to expanded, the filter is too large: {}",
            e.message
        ))
    })
}

/// The names the filter refers to directly, in order, once each.
pub fn references(filter: &Filter) -> Vec<String> {
    let mut names = Vec::new();
    collect(filter, &mut names);
    names
}

fn collect(filter: &Filter, names: &mut Vec<String>) {
    match filter {
        Filter::And(items) | Filter::Or(items) => items.iter().for_each(|f| collect(f, names)),
        Filter::Not(inner) | Filter::Org(inner) => collect(inner, names),
        Filter::Predicate(_) => {}
        Filter::Segment { name, .. } => {
            if !names.contains(name) {
                names.push(name.clone());
            }
        }
    }
}

/// `through`: the segments being expanded, outermost first (a cycle returns to one of them).
fn inline(
    filter: &Filter,
    saved: &dyn Fn(&str) -> Option<Filter>,
    through: &mut Vec<String>,
) -> Result<Filter, FilterError> {
    let all = |items: &[Filter], through: &mut Vec<String>| {
        items
            .iter()
            .map(|item| inline(item, saved, through))
            .collect::<Result<Vec<_>, _>>()
    };
    Ok(match filter {
        Filter::And(items) => Filter::And(all(items, through)?),
        Filter::Or(items) => Filter::Or(all(items, through)?),
        Filter::Not(inner) => Filter::Not(Box::new(inline(inner, saved, through)?)),
        Filter::Org(inner) => Filter::Org(Box::new(inline(inner, saved, through)?)),
        Filter::Predicate(_) => filter.clone(),
        Filter::Segment { name, position } => {
            if through.contains(name) {
                let mut cycle = through.clone();
                cycle.push(name.clone());
                return Err(FilterError::at(
                    *position,
                    format!(
                        "IN SEGMENT {name:?} refers back to itself ({}): segments cannot contain themselves",
                        cycle.join(" -> ")
                    ),
                ));
            }
            let Some(inner) = saved(name) else {
                return Err(FilterError::at(
                    *position,
                    format!("IN SEGMENT {name:?}: no saved segment has that name"),
                ));
            };
            through.push(name.clone());
            let expanded = inline(&inner, saved, through);
            through.pop();
            expanded?
        }
    })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::query::parse_filter;

    fn parse(text: &str) -> Filter {
        parse_filter(text, &FilterLimits::default()).unwrap()
    }

    fn saved(definitions: &[(&str, &str)]) -> impl Fn(&str) -> Option<Filter> {
        let map: BTreeMap<String, Filter> = (definitions.iter())
            .map(|(name, text)| (name.to_string(), parse(text)))
            .collect();
        move |name| map.get(name).cloned()
    }

    #[test]
    fn references_are_replaced_by_the_segments_filters_all_the_way_down() {
        let saved = saved(&[
            ("pro", r#"public.plan = "pro""#),
            (
                "active-pro",
                r#"IN SEGMENT "pro" AND last_active_at > now-7d"#,
            ),
        ]);
        let filter = parse(r#"NOT IN SEGMENT "active-pro" OR banned = true"#);
        assert_eq!(references(&filter), vec!["active-pro".to_string()]);
        let expanded = expand(&filter, None, &saved, &FilterLimits::default()).unwrap();
        let expected =
            parse(r#"NOT (public.plan = "pro" AND last_active_at > now-7d) OR banned = true"#);
        assert_eq!(expanded.unplaced(), expected.unplaced());
    }

    #[test]
    fn a_cycle_and_an_unknown_name_are_errors_at_their_position() {
        let saved = saved(&[
            ("a", r#"IN SEGMENT "b""#),
            ("b", r#"banned = true OR IN SEGMENT "a""#),
        ]);
        let filter = parse(r#"IN SEGMENT "a""#);
        let error = expand(&filter, None, &saved, &FilterLimits::default()).unwrap_err();
        assert!(error.message.contains("a -> b -> a"), "{}", error.message);
        let filter = parse(r#"banned = false AND IN SEGMENT "nope""#);
        let error = expand(&filter, None, &saved, &FilterLimits::default()).unwrap_err();
        assert_eq!(error.position, Some(19));
        assert!(
            error.message.contains("no saved segment"),
            "{}",
            error.message
        );
    }

    #[test]
    fn the_text_form_reads_back_and_brackets_refuse_references() {
        let filter = parse(r#"IN SEGMENT "trial-users" AND NOT IN SEGMENT 'churned'"#);
        let text = crate::query::to_text(&filter).unwrap();
        assert_eq!(
            text,
            r#"IN SEGMENT "trial-users" AND NOT IN SEGMENT "churned""#
        );
        assert_eq!(parse(&text).unplaced(), filter.unplaced());
        let limits = FilterLimits::default();
        assert!(parse_filter(r#"org[IN SEGMENT "x"]"#, &limits).is_err());
        assert!(parse_filter("IN SEGMENT x", &limits).is_err());
    }
}
