//! Field-level rules: a caller may filter, sort, facet on and receive only what its scopes let
//! it read. Checked before a request touches the index, so a refused request reveals nothing,
//! not even whether anything would have matched.

use super::caller::{Caller, Denied};
use super::scope::{Scope, Scopes};
use crate::query::ast::{FieldPath, Filter};
use crate::user::MetadataNamespace;

/// The scope needed to read `path` beyond any read scope; core fields need none.
pub fn scope_of(path: &FieldPath) -> Option<Scope> {
    match path {
        FieldPath::Core(_) => None,
        FieldPath::Metadata { namespace, keys } => Scope::of_path(*namespace, keys),
    }
}

/// Calls `f` on each predicate's path until it returns `Some`.
fn visit_paths<T>(filter: &Filter, f: &mut impl FnMut(&FieldPath) -> Option<T>) -> Option<T> {
    match filter {
        Filter::And(parts) | Filter::Or(parts) => parts.iter().find_map(|p| visit_paths(p, f)),
        Filter::Not(inner) | Filter::Org(inner) => visit_paths(inner, f),
        Filter::Predicate(predicate) => f(&predicate.path),
        // Checked on the expanded filter, which holds the referenced segments' paths.
        Filter::Segment { .. } => None,
    }
}

impl Caller {
    /// Whether `path` is one of the server's sensitive paths.
    pub fn is_sensitive(&self, path: &FieldPath) -> bool {
        self.sensitive.as_ref().is_some_and(|s| s.covers(path))
    }

    /// The scope reading `path` for this server: `sensitive` for a sensitive path, whatever
    /// its namespace; otherwise its namespace's scope (none for core fields).
    pub fn scope_for(&self, path: &FieldPath) -> Option<Scope> {
        if self.is_sensitive(path) {
            Some(Scope::Sensitive)
        } else {
            scope_of(path)
        }
    }

    /// Every scope needed to evaluate `filter` on this server (what a saved segment records).
    pub fn filter_scopes(&self, filter: &Filter) -> Scopes {
        let mut scopes = Scopes::default();
        visit_paths(filter, &mut |path| {
            if let Some(scope) = self.scope_for(path) {
                scopes.insert(scope);
            }
            None::<()>
        });
        scopes
    }

    /// `Ok` when the caller may read `path`; `what` says what for ("sorting by").
    pub fn check_path(&self, path: &FieldPath, what: &str) -> Result<(), Denied> {
        match self.scope_for(path) {
            Some(scope) => self.require(scope, &format!("{what} {path}")),
            None => Ok(()),
        }
    }

    /// `Ok` when the caller may read every path `filter` tests.
    pub fn check_filter(&self, filter: Option<&Filter>) -> Result<(), Denied> {
        match filter {
            Some(filter) => match visit_paths(filter, &mut |path| {
                self.check_path(path, "filtering on").err()
            }) {
                Some(denied) => Err(denied),
                None => Ok(()),
            },
            None => Ok(()),
        }
    }

    /// `Ok` when a field mask (`public.plan`, `private_metadata`, `email_addresses`) names no
    /// namespace the caller cannot read. An empty mask asks for what the caller may see.
    pub fn check_field_mask(&self, fields: &[String]) -> Result<(), Denied> {
        for field in fields {
            let first = field.split('.').next().unwrap_or_default();
            let Some(namespace) = MetadataNamespace::parse(first) else {
                continue;
            };
            let keys: Vec<String> = field.split('.').skip(1).map(str::to_string).collect();
            // `org` as a whole returns the memberships with what the caller may read of them.
            if namespace == MetadataNamespace::Org && keys.is_empty() {
                continue;
            }
            let scope = match namespace {
                MetadataNamespace::Org => Scope::of_path(namespace, &keys),
                _ => Some(Scope::of_namespace(namespace)),
            };
            let path = FieldPath::Metadata { namespace, keys };
            let scope = match self.is_sensitive(&path) {
                true => Some(Scope::Sensitive),
                false => scope,
            };
            if let Some(scope) = scope {
                self.require(scope, &format!("returning {field}"))?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::query::{FilterLimits, parse_filter, parse_path};

    fn caller(scopes: &str) -> Caller {
        Caller::with_scopes("k", Scopes::parse_list(scopes).unwrap())
    }

    #[test]
    fn filters_need_the_scope_of_every_namespace_they_test() {
        let filter = parse_filter(
            r#"email_address STARTS WITH "a" AND (public.plan = "pro" OR NOT unsafe.x EXISTS)"#,
            &FilterLimits::default(),
        )
        .unwrap();
        assert_eq!(
            caller("public").filter_scopes(&filter),
            Scopes::parse_list("public,unsafe").unwrap()
        );
        caller("public,unsafe").check_filter(Some(&filter)).unwrap();
        let denied = caller("public,private")
            .check_filter(Some(&filter))
            .unwrap_err();
        assert_eq!(denied.scope, Scope::Unsafe);
        assert_eq!(denied.what, "filtering on unsafe.x");
        caller("private").check_filter(None).unwrap();
        let core = parse_filter("banned = false", &FilterLimits::default()).unwrap();
        assert!(caller("public").filter_scopes(&core).is_empty());
        caller("public").check_filter(Some(&core)).unwrap();
    }

    #[test]
    fn sorts_and_field_masks_need_their_namespace() {
        let reader = caller("public");
        reader
            .check_path(&parse_path("public.points").unwrap(), "sorting by")
            .unwrap();
        reader
            .check_path(&parse_path("created_at").unwrap(), "sorting by")
            .unwrap();
        let denied = reader
            .check_path(&parse_path("private.ltv").unwrap(), "sorting by")
            .unwrap_err();
        assert_eq!(denied.what, "sorting by private.ltv");
        reader
            .check_field_mask(&["id".into(), "public.plan".into(), "email_addresses".into()])
            .unwrap();
        for mask in ["private.ltv", "private_metadata", "unsafe_metadata.x"] {
            assert!(
                reader.check_field_mask(&[mask.to_string()]).is_err(),
                "{mask}"
            );
        }
    }
}
