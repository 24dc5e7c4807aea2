//! Turning a request's `authorization` header into a [`Caller`]: the configured keys, or
//! everyone with every scope when the server runs unauthenticated on purpose.

use std::sync::Arc;

use super::caller::Caller;
use super::keys::ApiKeys;
use super::sensitive::Sensitive;

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
    use crate::auth::{ApiKeys, Scope, Scopes, generate_key};
    use crate::user::MetadataNamespace;

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
        assert_eq!(
            AuthConfig::default().authenticate(None).unwrap_err(),
            Unauthenticated::Missing
        );
        let open = AuthConfig::unauthenticated();
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
