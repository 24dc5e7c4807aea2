//! Scopes: what an API key may do.

use std::fmt;

use crate::user::MetadataNamespace;

/// A scope name that is not one of [`Scope::ALL`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown scope {0:?} (scopes: {all})", all = Scopes::all())]
pub struct UnknownScope(pub String);

/// One permission a key can carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Scope {
    /// Read (and filter, sort, facet on) `public_metadata`.
    Public,
    /// Read `private_metadata`.
    Private,
    /// Read `unsafe_metadata`.
    Unsafe,
    /// Read the sensitive paths, and filter on them by equality.
    Sensitive,
    /// `UpdateUserMetadata` (together with the scope of each namespace it changes).
    Write,
    /// Create, update and delete saved segments.
    Segments,
    /// The `Sync` service: status, reconciles.
    Admin,
}

impl Scope {
    pub const ALL: [Scope; 7] = [
        Scope::Public,
        Scope::Private,
        Scope::Unsafe,
        Scope::Sensitive,
        Scope::Write,
        Scope::Segments,
        Scope::Admin,
    ];

    /// The scopes that let a caller read users at all (core fields come with any of them).
    pub const READ: [Scope; 4] = [
        Scope::Public,
        Scope::Private,
        Scope::Unsafe,
        Scope::Sensitive,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Scope::Public => "public",
            Scope::Private => "private",
            Scope::Unsafe => "unsafe",
            Scope::Sensitive => "sensitive",
            Scope::Write => "write",
            Scope::Segments => "segments",
            Scope::Admin => "admin",
        }
    }

    pub fn parse(name: &str) -> Option<Scope> {
        Scope::ALL.into_iter().find(|scope| scope.name() == name)
    }

    /// The scope that reads a whole metadata namespace (`org` as a whole holds organizations'
    /// private metadata).
    pub fn of_namespace(namespace: MetadataNamespace) -> Scope {
        match namespace {
            MetadataNamespace::Public => Scope::Public,
            MetadataNamespace::Private | MetadataNamespace::Org => Scope::Private,
            MetadataNamespace::Unsafe => Scope::Unsafe,
        }
    }

    /// The scope that reads one metadata path. Under `org`, organization and membership
    /// metadata need `public` or `private` as a user's do; `org.role`, `org.slug` and the other
    /// plain attributes need none beyond reading.
    pub fn of_path(namespace: MetadataNamespace, keys: &[String]) -> Option<Scope> {
        if namespace != MetadataNamespace::Org {
            return Some(Scope::of_namespace(namespace));
        }
        let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
        match keys.as_slice() {
            ["public", ..] | ["membership", "public", ..] => Some(Scope::Public),
            [] | ["private", ..] | ["membership"] | ["membership", "private", ..] => {
                Some(Scope::Private)
            }
            _ => None,
        }
    }

    fn bit(self) -> u8 {
        1 << self as u8
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A set of scopes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Scopes(u8);

impl Scopes {
    pub fn all() -> Scopes {
        Scope::ALL.into_iter().collect()
    }

    pub fn contains(self, scope: Scope) -> bool {
        self.0 & scope.bit() != 0
    }

    pub fn insert(&mut self, scope: Scope) {
        self.0 |= scope.bit();
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    pub fn iter(self) -> impl Iterator<Item = Scope> {
        Scope::ALL.into_iter().filter(move |s| self.contains(*s))
    }

    /// `public,private`: names separated by commas (spaces allowed around them).
    pub fn parse_list(text: &str) -> Result<Scopes, UnknownScope> {
        let mut scopes = Scopes::default();
        for name in text.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            let scope = Scope::parse(name).ok_or_else(|| UnknownScope(name.to_string()))?;
            scopes.insert(scope);
        }
        Ok(scopes)
    }
}

impl FromIterator<Scope> for Scopes {
    fn from_iter<I: IntoIterator<Item = Scope>>(iter: I) -> Scopes {
        let mut scopes = Scopes::default();
        for scope in iter {
            scopes.insert(scope);
        }
        scopes
    }
}

impl fmt::Display for Scopes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self.iter().map(Scope::name).collect();
        f.write_str(&names.join(","))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scope_lists_parse_and_print() {
        let scopes = Scopes::parse_list(" public, private ,admin").unwrap();
        assert!(scopes.contains(Scope::Public) && scopes.contains(Scope::Admin));
        assert!(!scopes.contains(Scope::Unsafe));
        assert_eq!(scopes.to_string(), "public,private,admin");
        assert_eq!(
            Scopes::parse_list(&Scopes::all().to_string()).unwrap(),
            Scopes::all()
        );
        let error = Scopes::parse_list("public,root").unwrap_err().to_string();
        assert!(error.contains("\"root\""), "{error}");
    }
}
