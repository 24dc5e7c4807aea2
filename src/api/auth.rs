//! Turns a request's `authorization` metadata into the [`Caller`] its handler checks.

use std::sync::Arc;

use tonic::service::Interceptor;
use tonic::{Request, Status};

use crate::auth::{AuthConfig, Caller, Unauthenticated};
use crate::error::Error;

/// The interceptor in front of every service that reads or changes users (health and reflection
/// stay open: they reveal no user data).
#[derive(Clone)]
pub struct Authenticate(Arc<AuthConfig>);

impl Authenticate {
    pub fn new(config: AuthConfig) -> Authenticate {
        Authenticate(Arc::new(config))
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
        let mut caller = self
            .0
            .authenticate(header)
            .map_err(|e| Status::from(Error::from(e)))?;
        // Serving without keys, budgets per key become budgets per peer address.
        if self.0.keys.is_empty()
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
