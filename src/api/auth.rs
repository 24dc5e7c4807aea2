//! Turns a request's `authorization` metadata into the [`Caller`] its handler checks.

use std::sync::{Arc, RwLock};

use tonic::service::Interceptor;
use tonic::{Request, Status};

use crate::auth::{ApiKeys, AuthConfig, Caller, Unauthenticated};
use crate::error::Error;

/// The interceptor in front of every service that reads or changes users (health and reflection
/// stay open: they reveal no user data). Its keys can be replaced while it serves.
#[derive(Clone)]
pub struct Authenticate(Arc<RwLock<Arc<AuthConfig>>>);

impl Authenticate {
    pub fn new(config: AuthConfig) -> Authenticate {
        Authenticate(Arc::new(RwLock::new(Arc::new(config))))
    }

    fn current(&self) -> Arc<AuthConfig> {
        self.0.read().expect("auth config lock").clone()
    }

    /// Serves `keys` from the next call on (calls in flight keep the caller they had).
    pub fn replace_keys(&self, keys: ApiKeys) {
        let mut config = self.0.write().expect("auth config lock");
        let mut next = AuthConfig::clone(&config);
        next.keys = keys;
        *config = Arc::new(next);
    }
}

impl Interceptor for Authenticate {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        let header = match request.metadata().get("authorization") {
            None => None,
            Some(value) => Some(
                value
                    .to_str()
                    .map_err(|_| Status::from(Error::from(Unauthenticated::Malformed)))?,
            ),
        };
        let config = self.current();
        let mut caller = config
            .authenticate(header)
            .map_err(|e| Status::from(Error::from(e)))?;
        // Serving without keys, budgets per key become budgets per peer address.
        if config.keys.is_empty()
            && let Some(peer) = request.remote_addr()
        {
            caller.name = format!("{}@{}", caller.name, peer.ip()).into();
        }
        // The key's name, never the key: it tells whose call a trace shows.
        tracing::Span::current().record("clerk_index.caller", &*caller.name);
        request.extensions_mut().insert(caller);
        Ok(request)
    }
}

/// The caller the interceptor resolved.
pub fn caller<T>(request: &Request<T>) -> Result<Caller, Error> {
    request
        .extensions()
        .get::<Caller>()
        .cloned()
        .ok_or(Error::Unauthenticated(Unauthenticated::Missing))
}
