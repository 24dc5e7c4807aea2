//! The caller of one request: the key's name, its scopes and the server's sensitive paths, and
//! the refusal when a scope is missing.

use std::fmt;
use std::sync::Arc;

use super::scope::{Scope, Scopes};
use super::sensitive::Sensitive;
use crate::user::MetadataNamespace;

/// The authenticated caller of one request.
#[derive(Debug, Clone)]
pub struct Caller {
    /// The key's configured name (never the key): for errors and logs.
    pub name: Arc<str>,
    pub scopes: Scopes,
    /// The server's sensitive paths, which need the `sensitive` scope whatever their namespace.
    pub sensitive: Option<Arc<Sensitive>>,
}

impl Caller {
    /// The caller of a server started with `--allow-unauthenticated` and no keys.
    pub fn unrestricted() -> Caller {
        Caller {
            name: "anonymous".into(),
            scopes: Scopes::all(),
            sensitive: None,
        }
    }

    /// A caller with `scopes` (and no sensitive paths), for tests and tools.
    pub fn with_scopes(name: &str, scopes: Scopes) -> Caller {
        Caller {
            name: name.into(),
            scopes,
            sensitive: None,
        }
    }

    /// `Ok` when the caller holds `scope`; otherwise why not, naming the scope and `what` it
    /// was needed for.
    pub fn require(&self, scope: Scope, what: &str) -> Result<(), Denied> {
        if self.scopes.contains(scope) {
            Ok(())
        } else {
            Err(Denied {
                key: self.name.clone(),
                scope,
                what: what.to_string(),
            })
        }
    }

    /// Calls that read users need at least one read scope.
    pub fn require_read(&self) -> Result<(), Denied> {
        if Scope::READ.iter().any(|s| self.scopes.contains(*s)) {
            Ok(())
        } else {
            self.require(Scope::Public, "reading users")
        }
    }

    /// The metadata namespaces this caller may not see.
    pub fn hidden_namespaces(&self) -> Vec<MetadataNamespace> {
        MetadataNamespace::ALL
            .into_iter()
            .filter(|ns| !self.scopes.contains(Scope::of_namespace(*ns)))
            .collect()
    }
}

/// A missing scope: becomes `PERMISSION_DENIED`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denied {
    pub key: Arc<str>,
    pub scope: Scope,
    pub what: String,
}

impl fmt::Display for Denied {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "the API key {:?} lacks the {} scope, needed for {}",
            self.key, self.scope, self.what
        )
    }
}

impl std::error::Error for Denied {}
