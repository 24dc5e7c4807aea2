//! The command line: `serve`, `demo`, `fake-clerk`, `api-key`, and client commands (`count`,
//! `search`, `facet`, `export`) that talk to a running server over gRPC. This file only declares
//! and re-exports.

mod args;
mod client;
mod command;
mod config_file;
mod demo;
mod export;
mod keys;
mod serve;
mod signal;

pub use args::{
    AuthArgs, BadAddress, ClusterArgs, IndexArgs, SensitiveArgs, TlsArgs,
    clerk_secret_key_from_env, parse_addr, webhook_secrets_from_env,
};
pub use client::{Authorization, CountArgs, FacetArgs, HealthArgs, SearchArgs};
pub use command::{Cli, Command};
pub use config_file::{ConfigFileError, parse, with_config_file};
pub use demo::{DemoArgs, FakeClerkArgs, GenerateArgs};
pub use export::ExportArgs;
pub use keys::{ApiKeyArgs, ReencryptArgs, SensitiveKeyArgs};
pub use serve::ServeArgs;
pub use signal::shutdown_signal;
