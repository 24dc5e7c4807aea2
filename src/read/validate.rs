//! Checking a filter before it runs or is saved: warnings about what it will likely not do as
//! meant, against the field catalog of what users hold (only the paths the caller may read:
//! key names are data too).
//!
//! - **Unknown path**: no user holds a metadata path the filter tests (`public.membership_teir`
//!   matches nobody, silently); the closest held paths are suggested.
//! - **Type mismatch**: a value of a type the path never holds (`public.points = "5"` where points
//!   are numbers): types never mix, so it matches nobody holding the other type.
//! - **Time-driven**: a relative time (`now-30d`); saved, the segment moves users as time passes.

use super::reader::{Answer, ReadAt, UserReader};
use super::threads::blocking;
use crate::auth::Caller;
use crate::error::Error;
use crate::index::PathTypes;
use crate::query::ast::{FieldPath, Filter, Op, Value};
use crate::query::time::relative_bounds;
use crate::user::MetadataNamespace;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WarningCode {
    UnknownPath,
    TypeMismatch,
    TimeDriven,
}

/// One warning, at the predicate it concerns.
#[derive(Debug, Clone, PartialEq)]
pub struct FilterWarning {
    pub code: WarningCode,
    /// As written in filters; empty for [`WarningCode::TimeDriven`].
    pub path: String,
    pub position: usize,
    pub message: String,
    /// For unknown paths: held paths close to it, closest first.
    pub suggestions: Vec<String>,
}

/// Suggestions offered for an unknown path, at most.
const MAX_SUGGESTIONS: usize = 3;

impl UserReader {
    /// The warnings for `filter` (which the caller must be allowed to run), against the catalog
    /// of the snapshot at `at`.
    pub async fn validate(
        &self,
        caller: &Caller,
        filter: &Filter,
        at: ReadAt,
    ) -> Result<Answer<Vec<FilterWarning>>, Error> {
        caller.check_filter(Some(filter))?;
        let snapshot = self.snapshot(at).await?;
        let (caller, filter) = (caller.clone(), filter.clone());
        // The catalog and the distances to its paths are work for a blocking thread.
        let found = blocking(snapshot.clone(), move |s| {
            let readable: Vec<PathTypes> = (s.field_catalog()?.into_iter())
                .filter(|entry| caller.check_path(&entry.path, "describing").is_ok())
                .collect();
            Ok(warnings(&filter, &readable))
        })
        .await?;
        Ok(Answer {
            value: found,
            snapshot,
        })
    }
}

/// The warnings for `filter` against `catalog`, in the order of the predicates.
pub fn warnings(filter: &Filter, catalog: &[PathTypes]) -> Vec<FilterWarning> {
    let mut found = Vec::new();
    // Memberships' own keys (`org.role`) are not in the catalog; their metadata is when the
    // index records it, so organization paths are checked only then.
    let org_cataloged = catalog.iter().any(|entry| {
        matches!(
            entry.path,
            FieldPath::Metadata {
                namespace: MetadataNamespace::Org,
                ..
            }
        )
    });
    let catalog: Vec<(String, &PathTypes)> = (catalog.iter())
        .map(|entry| (entry.path.to_string(), entry))
        .collect();
    walk(filter, &mut |predicate| {
        let FieldPath::Metadata { namespace, .. } = &predicate.path else {
            return;
        };
        if *namespace == MetadataNamespace::Org && !org_cataloged {
            return;
        }
        let path = predicate.path.to_string();
        let deeper = format!("{path}.");
        let held: Vec<&PathTypes> = (catalog.iter())
            .filter(|(p, _)| *p == path || p.starts_with(&deeper))
            .map(|(_, entry)| *entry)
            .collect();
        if held.is_empty() {
            found.push(FilterWarning {
                code: WarningCode::UnknownPath,
                message: format!("no user holds {path}: this predicate tests a value nobody has"),
                suggestions: suggestions(&path, &catalog),
                path,
                position: predicate.position,
            });
            return;
        }
        let exact = held.iter().find(|entry| entry.path == predicate.path);
        if let (Some(entry), Some(class)) = (exact, value_class(&predicate.op)) {
            let classes: Vec<&str> = entry.types.iter().map(|(t, _)| type_class(t)).collect();
            if !classes.contains(&class) {
                let holds = (entry.types.iter())
                    .map(|(t, users)| format!("{t} ({users} users)"))
                    .collect::<Vec<_>>()
                    .join(", ");
                found.push(FilterWarning {
                    code: WarningCode::TypeMismatch,
                    message: format!(
                        "{path} holds {holds}, and is compared with a {class}: types never mix, so this matches none of them"
                    ),
                    path,
                    position: predicate.position,
                    suggestions: Vec::new(),
                });
            }
        }
    });
    let bounds = relative_bounds(filter);
    if !bounds.is_empty() {
        let paths: Vec<String> = bounds.iter().map(|b| b.path.to_string()).collect();
        found.push(FilterWarning {
            code: WarningCode::TimeDriven,
            path: String::new(),
            position: 0,
            message: format!(
                "relative times on {}: saved as a segment, users move in and out as time passes (events with cause time)",
                paths.join(", ")
            ),
            suggestions: Vec::new(),
        });
    }
    found
}

fn walk(filter: &Filter, visit: &mut impl FnMut(&crate::query::Predicate)) {
    match filter {
        Filter::And(items) | Filter::Or(items) => items.iter().for_each(|f| walk(f, visit)),
        Filter::Not(inner) | Filter::Org(inner) => walk(inner, visit),
        Filter::Predicate(predicate) => visit(predicate),
        Filter::Segment { .. } => {}
    }
}

/// What kind of value a predicate compares with (`None`: any, or several).
fn value_class(op: &Op) -> Option<&'static str> {
    let of = |value: &Value| match value {
        Value::String(_) => Some("string"),
        Value::Integer(_) | Value::Float(_) | Value::Date(_) => Some("number"),
        Value::Bool(_) => Some("boolean"),
        Value::Null => None,
    };
    match op {
        Op::Compare(_, value) => of(value),
        Op::Between(low, high) => of(low).filter(|class| of(high) == Some(*class)),
        Op::In(values) => {
            let mut classes = values.iter().map(of);
            let first = classes.next()??;
            classes.all(|c| c == Some(first)).then_some(first)
        }
        Op::StartsWith(_) => Some("string"),
        Op::Exists | Op::Matches(_) | Op::Sealed(_) => None,
    }
}

fn type_class(kind: &str) -> &str {
    match kind {
        "integer" | "float" => "number",
        other => other,
    }
}

/// Held paths of the same namespace close to `path` (by edit distance), closest first.
fn suggestions(path: &str, catalog: &[(String, &PathTypes)]) -> Vec<String> {
    let namespace = path.split('.').next().unwrap_or_default();
    let limit = (path.len() / 4).max(2);
    let length = path.chars().count();
    let mut close: Vec<(usize, &String)> = (catalog.iter())
        .filter(|(p, _)| p.split('.').next() == Some(namespace))
        // Lengths further apart than the limit cannot be within it: skip the distance.
        .filter(|(p, _)| p.chars().count().abs_diff(length) <= limit)
        .map(|(p, _)| (edit_distance(path, p), p))
        .filter(|(distance, _)| *distance <= limit)
        .collect();
    close.sort();
    close.dedup_by(|a, b| a.1 == b.1);
    (close.into_iter())
        .take(MAX_SUGGESTIONS)
        .map(|(_, p)| p.clone())
        .collect()
}

/// Levenshtein distance over characters.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let substitution = diagonal + usize::from(ca != *cb);
            diagonal = row[j + 1];
            row[j + 1] = substitution.min(row[j] + 1).min(row[j + 1] + 1);
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::query::{FilterLimits, parse_filter, parse_path};

    fn catalog_entry(path: FieldPath, types: &[(&str, u64)]) -> PathTypes {
        PathTypes {
            path,
            types: types.iter().map(|(t, n)| (t.to_string(), *n)).collect(),
        }
    }

    fn catalog() -> Vec<PathTypes> {
        vec![
            catalog_entry(
                parse_path("public.membership_tier").unwrap(),
                &[("string", 900)],
            ),
            catalog_entry(
                parse_path("public.points").unwrap(),
                &[("integer", 800), ("float", 3)],
            ),
            catalog_entry(parse_path("public.prefs.theme").unwrap(), &[("string", 10)]),
            catalog_entry(parse_path("private.ltv").unwrap(), &[("float", 100)]),
        ]
    }

    fn check(text: &str) -> Vec<FilterWarning> {
        warnings(
            &parse_filter(text, &FilterLimits::default()).unwrap(),
            &catalog(),
        )
    }

    #[test]
    fn a_typo_in_a_path_is_reported_at_its_position_with_the_path_meant() {
        let found = check(r#"banned = false AND public.membership_teir = "gold""#);
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].code, WarningCode::UnknownPath);
        assert_eq!(found[0].path, "public.membership_teir");
        assert_eq!(found[0].position, 19);
        assert_eq!(
            found[0].suggestions,
            vec!["public.membership_tier".to_string()]
        );
    }

    #[test]
    fn a_value_of_a_type_the_path_never_holds_is_reported() {
        let found = check(r#"public.points = "5""#);
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].code, WarningCode::TypeMismatch);
        assert!(
            found[0].message.contains("integer (800 users)"),
            "{}",
            found[0].message
        );
        // Numbers of either kind, objects tested for existence and parents of held paths are fine.
        assert!(
            check("public.points > 2.5 AND private.ltv IN [1, 2] AND public.prefs EXISTS")
                .is_empty()
        );
        assert!(check(r#"public.prefs.theme IN ["dark", 1]"#).is_empty());
    }

    #[test]
    fn relative_times_are_reported_once_with_their_paths() {
        let found = check("last_active_at < now-30d OR created_at > now-7d");
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].code, WarningCode::TimeDriven);
        assert!(
            found[0].message.contains("last_active_at, created_at"),
            "{}",
            found[0].message
        );
    }

    #[test]
    fn edit_distance_counts_insertions_deletions_and_substitutions() {
        assert_eq!(edit_distance("teir", "tier"), 2);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("points", "point"), 1);
        assert_eq!(edit_distance("same", "same"), 0);
    }
}
