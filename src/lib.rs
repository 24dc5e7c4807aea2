//! clerk-index: a local, always-fresh mirror of a Clerk instance's users in a tantivy index,
//! queryable by any metadata attribute over gRPC.
//!
//! Layout, from the top down; a module imports only modules below it, and no two files import
//! each other (`scripts/check-architecture` checks both; `docs/ARCHITECTURE.md` explains them):
//! - [`cli`]: the commands, their flags and environment, the gRPC client commands.
//! - [`app`]: the composition root: `Services::build`, `serve`, shutdown.
//! - [`fuzzing`]: fuzz targets over everything a caller or Clerk sends (replayed by the tests).
//! - [`api`]: the gRPC and HTTP adapters: servers, handlers, proto <-> domain conversion, the one
//!   error -> status mapping, the webhook route. The only module that sees tonic on the server.
//! - [`config`]: the one `Config`, made by one builder and validated once.
//! - [`telemetry`]: logs, OpenTelemetry traces, Prometheus metrics (reading status snapshots).
//! - [`read`]: reading users on a caller's behalf: snapshots, paging, projections, exports.
//! - [`sync`]: every source of changes (backfill, webhooks, reconcile, write-through,
//!   re-sealing) through one [`sync::ChangeDestination`]: the local index, or the change log.
//! - [`error`]: the one error enum of operations.
//! - [`segments`]: saved segments, their Entered/Exited events and the persisted event log.
//! - [`auth`]: API keys, scopes, field-level rules, sensitive-path sealing.
//! - [`cluster`]: NATS JetStream: the change log, the sync lease and checkpoint, shared segments.
//! - [`index`]: tantivy: schema, documents, query compilation, the filter engine, the writer.
//! - [`query`]: the filter language: AST, parser, validation, the in-memory matcher.
//! - [`clerk`]: Clerk's wire formats: models, Backend API client, webhooks, the fake Clerk.
//! - [`change`]: the one change type every source produces.
//! - [`user`]: the domain `User` and metadata paths.
//! - [`organization`]: the domain `Organization` and `Membership` (not indexed yet).
//! - [`clock`], [`redact`], [`latency`], [`limits`]: leaves.

pub mod api;
pub mod app;
pub mod auth;
pub mod change;
pub mod clerk;
pub mod cli;
pub mod clock;
pub mod cluster;
pub mod config;
pub mod destinations;
pub mod error;
pub mod fuzzing;
pub mod index;
pub mod latency;
pub mod limits;
pub mod organization;
pub mod query;
pub mod read;
pub mod redact;
pub mod segments;
pub mod sync;
pub mod telemetry;
pub mod user;
