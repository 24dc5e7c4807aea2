//! Who is calling and what they may see.
//!
//! Callers present an API key. Keys are configured as SHA-256 hashes with a name and scopes
//! ([`ApiKeys`]; the server never holds a key itself, so a leaked configuration or memory dump
//! gives nothing to call with), and a request's key resolves to a [`Caller`]. The scopes say which
//! metadata namespaces the caller may read — and therefore filter, sort and facet on, since a
//! count under a predicate on a hidden field reveals that field (`private.ltv > 1000`) — and
//! which other things it may do: write metadata, manage saved segments, run the sync service.
//! [`acl`] applies them to requests; the gRPC adapter calls it and projects responses. This file
//! only declares and re-exports.

pub mod acl;
mod authenticate;
mod caller;
mod keys;
mod scope;
pub mod sensitive;

pub use authenticate::{AuthConfig, Unauthenticated};
pub use caller::{Caller, Denied};
pub use keys::{ApiKeys, KeysError, generate_key, hash_key, hash_text};
pub use scope::{Scope, Scopes, UnknownScope};
pub use sensitive::Sensitive;
