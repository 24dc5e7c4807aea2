//! Who is calling and what they may see.
//!
//! Callers present an API key. Keys are configured as SHA-256 hashes with a name and scopes
//! ([`ApiKeys`]; the server never holds a key itself, so a leaked configuration or memory dump
//! gives nothing to call with), and a request's key resolves to a [`Caller`]. The scopes say which
//! metadata namespaces the caller may read — and therefore filter, sort and facet on, since a
//! count under a predicate on a hidden field reveals that field (`private.ltv > 1000`) — and
//! which other things it may do: write metadata, manage saved segments, run the sync service.
//! [`acl`] applies them to requests; the gRPC adapter calls it and projects responses.

pub mod acl;
mod keys;
pub mod sensitive;

use std::fmt;
use std::sync::Arc;

pub use keys::{ApiKeys, KeysError, generate_key, hash_key, hash_text};
pub use sensitive::Sensitive;

use crate::user::MetadataNamespace;

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

    /// The scope that reads a metadata namespace.
    pub fn of_namespace(namespace: MetadataNamespace) -> Scope {
        match namespace {
            MetadataNamespace::Public => Scope::Public,
            MetadataNamespace::Private => Scope::Private,
            MetadataNamespace::Unsafe => Scope::Unsafe,
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
    pub fn parse_list(text: &str) -> Result<Scopes, String> {
        let mut scopes = Scopes::default();
        for name in text.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            let scope = Scope::parse(name)
                .ok_or_else(|| format!("unknown scope {name:?} (scopes: {})", Scopes::all()))?;
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

/// Why a request has no caller: becomes `UNAUTHENTICATED`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Unauthenticated {
    #[error("missing authorization metadata: send `authorization: Bearer <api key>`")]
    Missing,
    #[error("the authorization metadata is not `Bearer <api key>`")]
    Malformed,
    #[error("unknown API key")]
    UnknownKey,
}

/// How the server authenticates: the configured keys, or nobody at all when explicitly allowed.
#[derive(Debug, Clone, Default)]
pub struct AuthConfig {
    pub keys: ApiKeys,
    /// With no keys configured, serve everyone with every scope (the demo; never production).
    pub allow_unauthenticated: bool,
    /// Sensitive paths and their keys, if configured.
    pub sensitive: Option<Arc<Sensitive>>,
}

impl AuthConfig {
    /// For local runs and tests: no keys, everyone allowed.
    pub fn unauthenticated() -> AuthConfig {
        AuthConfig {
            keys: ApiKeys::default(),
            allow_unauthenticated: true,
            sensitive: None,
        }
    }

    /// Refuses a configuration that would serve user data to anyone by accident.
    pub fn validate(&self) -> anyhow::Result<()> {
        anyhow::ensure!(
            !self.keys.is_empty() || self.allow_unauthenticated,
            "no API keys configured: set CLERK_INDEX_API_KEYS or --api-keys-file (create keys with \
             `clerk-index api-key create`), or pass --allow-unauthenticated to let anyone who can \
             reach the gRPC port read every user"
        );
        Ok(())
    }

    /// The caller presenting `authorization` (the header's value, if any).
    pub fn authenticate(&self, authorization: Option<&str>) -> Result<Caller, Unauthenticated> {
        if self.keys.is_empty() && self.allow_unauthenticated {
            return Ok(Caller {
                sensitive: self.sensitive.clone(),
                ..Caller::unrestricted()
            });
        }
        let header = authorization.ok_or(Unauthenticated::Missing)?;
        let (scheme, token) = header
            .trim()
            .split_once(' ')
            .ok_or(Unauthenticated::Malformed)?;
        if !scheme.eq_ignore_ascii_case("bearer") || token.trim().is_empty() {
            return Err(Unauthenticated::Malformed);
        }
        let mut caller = self
            .keys
            .find(token.trim())
            .ok_or(Unauthenticated::UnknownKey)?;
        caller.sensitive = self.sensitive.clone();
        Ok(caller)
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
        let error = Scopes::parse_list("public,root").unwrap_err();
        assert!(error.contains("\"root\""), "{error}");
    }

    #[test]
    fn requests_resolve_to_the_key_they_present() {
        let (key, hash) = generate_key();
        let keys = ApiKeys::parse(&format!("reporting public,private {hash}\n")).unwrap();
        let config = AuthConfig {
            keys,
            allow_unauthenticated: false,
            sensitive: None,
        };
        let caller = config.authenticate(Some(&format!("Bearer {key}"))).unwrap();
        assert_eq!(&*caller.name, "reporting");
        assert_eq!(caller.scopes, Scopes::parse_list("public,private").unwrap());
        assert_eq!(
            config
                .authenticate(Some(&format!("bearer  {key}")))
                .unwrap()
                .name,
            caller.name
        );
        assert_eq!(
            config.authenticate(None).unwrap_err(),
            Unauthenticated::Missing
        );
        assert_eq!(
            config.authenticate(Some(&key)).unwrap_err(),
            Unauthenticated::Malformed
        );
        assert_eq!(
            config
                .authenticate(Some(&format!("Basic {key}")))
                .unwrap_err(),
            Unauthenticated::Malformed
        );
        assert_eq!(
            config.authenticate(Some("Bearer cki_wrong")).unwrap_err(),
            Unauthenticated::UnknownKey
        );
        let denied = caller
            .require(Scope::Admin, "the Sync service")
            .unwrap_err();
        assert_eq!(
            denied.to_string(),
            "the API key \"reporting\" lacks the admin scope, needed for the Sync service"
        );
        assert_eq!(caller.hidden_namespaces(), [MetadataNamespace::Unsafe]);
    }

    #[test]
    fn no_keys_is_refused_unless_explicitly_allowed() {
        assert!(AuthConfig::default().validate().is_err());
        let open = AuthConfig::unauthenticated();
        open.validate().unwrap();
        assert_eq!(open.authenticate(None).unwrap().scopes, Scopes::all());
        // Configured keys always apply, whatever the flag says.
        let (_, hash) = generate_key();
        let keyed = AuthConfig {
            keys: ApiKeys::parse(&format!("a public {hash}")).unwrap(),
            allow_unauthenticated: true,
            sensitive: None,
        };
        assert_eq!(
            keyed.authenticate(None).unwrap_err(),
            Unauthenticated::Missing
        );
    }
}
