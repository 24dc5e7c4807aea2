//! The command line: `serve`, `demo`, `fake-clerk`, `api-key`, and client commands (`count`,
//! `search`, `facet`, `export`) that talk to a running server over gRPC. This file only declares
//! and re-exports.

mod args;
mod bench;
mod bench_report;
mod client;
mod command;
mod config_file;
mod demo;
mod destinations;
mod export;
mod facet;
mod keys;
mod metadata;
mod output;
mod segments;
mod serve;
mod signal;
mod users;

pub use args::{
    AuthArgs, BadAddress, ClusterArgs, IndexArgs, SensitiveArgs, TlsArgs,
    clerk_secret_key_from_env, parse_addr, webhook_secrets_from_env,
};
pub use bench::BenchArgs;
pub use client::{Authorization, HealthArgs};
pub use command::{Cli, Command};
pub use config_file::{ConfigFileError, parse, with_config_file};
pub use demo::{DemoArgs, FakeClerkArgs, GenerateArgs};
pub use export::ExportArgs;
pub use facet::FacetArgs;
pub use keys::{ApiKeyArgs, ReencryptArgs, SensitiveKeyArgs};
pub use output::{Failure, exit, exit_code};
pub use segments::{SegmentsArgs, SyncArgs, WatchArgs};
pub use serve::ServeArgs;
pub use signal::shutdown_signal;
pub use users::{CountArgs, FieldsArgs, GetArgs, SearchArgs, ValidateArgs};
