//! clerk-index: a local, always-fresh mirror of a Clerk instance's users in a tantivy index,
//! queryable by any metadata attribute over gRPC.
//!
//! Layout (imports point down; see `../shared/DESIGN.md`):
//! - [`app`]: `run(config, listeners, shutdown)` wires everything together.
//! - [`config`]: the one `Config`, from flags and `CLERK_INDEX_*` environment variables.
//! - [`api`]: the tonic adapter: service impls and proto <-> domain conversion, nothing else.
//! - [`query`]: the filter language: AST, parser, validation, in-memory matcher.
//! - [`auth`]: API keys, scopes and the field-level rules every read goes through.
//! - [`segments`]: saved segments, their Entered/Exited events and the persisted event log.
//! - [`sync`]: backfill, webhooks, reconcile and write-through into the index writer, or in
//!   cluster mode into the change log (with the sync lease and the replicator following it).
//! - [`cluster`]: cluster mode's NATS JetStream parts: the change log (stream, message format,
//!   compare-and-set publishing), the sync lease and checkpoint, the segment bucket and events.
//! - [`index`]: tantivy: schema, documents, query compilation, the writer task, searches.
//! - [`clerk`]: Clerk's wire formats: models, Backend API client, fake Clerk server.
//! - [`user`]: the domain `User` and the one `UserChange` type every source produces.
//! - [`error`]: the one error enum and its mapping to gRPC status codes.

pub mod api;
pub mod app;
pub mod auth;
pub mod change;
pub mod clerk;
pub mod cli;
pub mod clock;
pub mod cluster;
pub mod config;
pub mod error;
pub mod index;
pub mod latency;
pub mod query;
pub mod read;
pub mod redact;
pub mod segments;
pub mod sync;
pub mod telemetry;
pub mod user;
