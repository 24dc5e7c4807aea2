//! The command line: `serve`, `demo`, `fake-clerk`, `api-key`, and client commands (`count`,
//! `search`, `facet`, `export`) that talk to a running server over gRPC.

mod client;
mod config_file;
mod demo;
mod export;
mod keys;
mod serve;

use clap::{Parser, Subcommand};

pub use client::{Authorization, CountArgs, FacetArgs, HealthArgs, SearchArgs};
pub use config_file::{parse, with_config_file};
pub use demo::{DemoArgs, FakeClerkArgs, GenerateArgs};
pub use export::ExportArgs;
pub use keys::{ApiKeyArgs, ReencryptArgs, SensitiveKeyArgs};
pub use serve::ServeArgs;

#[derive(Debug, Parser)]
#[command(
    name = "clerk-index",
    version,
    about = "Mirror Clerk users into a local index; filter, count and sort them by metadata over gRPC."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the index of a real Clerk instance (needs CLERK_SECRET_KEY).
    Serve(ServeArgs),
    /// Serve a generated population through an embedded fake Clerk: no account needed.
    Demo(DemoArgs),
    /// Run only the fake Clerk Backend API (for tests and experiments).
    FakeClerk(FakeClerkArgs),
    /// Write the fake Clerk's generated population as Clerk JSON lines (for benchmarks).
    Generate(GenerateArgs),
    /// Count users matching a filter on a running server.
    Count(CountArgs),
    /// List users matching a filter on a running server.
    Search(SearchArgs),
    /// Value counts, stats and histograms of the users matching a filter.
    Facet(FacetArgs),
    /// Stream every user of a filter or saved segment to a JSON-lines or CSV file.
    Export(ExportArgs),
    /// Check the configuration `serve` would run with (same flags and environment) and print it,
    /// secrets masked.
    Config(ServeArgs),
    /// Ask a running server's gRPC health service (exit status 0 when SERVING).
    Health(HealthArgs),
    /// Create API keys (and hash existing ones) for the server's key list.
    ApiKey(ApiKeyArgs),
    /// Create keys for the sensitive-value key ring.
    SensitiveKey(SensitiveKeyArgs),
    /// Re-seal every sensitive value under the active key of a running server (admin scope).
    Reencrypt(ReencryptArgs),
}

impl Cli {
    pub async fn run(self) -> anyhow::Result<()> {
        match self.command {
            Command::Serve(args) => serve::serve(args).await,
            Command::Demo(args) => demo::demo(args).await,
            Command::FakeClerk(args) => demo::fake_clerk(args).await,
            Command::Generate(args) => demo::generate(args),
            Command::Count(args) => client::count(args).await,
            Command::Search(args) => client::search(args).await,
            Command::Facet(args) => client::facet(args).await,
            Command::Export(args) => export::export(args).await,
            Command::Health(args) => client::health(args).await,
            Command::Config(args) => serve::print_config(args),
            Command::ApiKey(args) => keys::api_key(args),
            Command::SensitiveKey(args) => keys::sensitive_key(args),
            Command::Reencrypt(args) => keys::reencrypt(args).await,
        }
    }
}

/// Resolves on SIGINT (Ctrl-C) or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = terminate => {}
    }
}
