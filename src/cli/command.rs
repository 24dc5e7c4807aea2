//! The command line's commands and what each runs.

use clap::{Parser, Subcommand};

use super::client::{CountArgs, FacetArgs, HealthArgs, SearchArgs};
use super::demo::{DemoArgs, FakeClerkArgs, GenerateArgs};
use super::export::ExportArgs;
use super::keys::{ApiKeyArgs, ReencryptArgs, SensitiveKeyArgs};
use super::serve::ServeArgs;

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
            Command::Serve(args) => super::serve::serve(args).await,
            Command::Demo(args) => super::demo::demo(args).await,
            Command::FakeClerk(args) => super::demo::fake_clerk(args).await,
            Command::Generate(args) => super::demo::generate(args),
            Command::Count(args) => super::client::count(args).await,
            Command::Search(args) => super::client::search(args).await,
            Command::Facet(args) => super::client::facet(args).await,
            Command::Export(args) => super::export::export(args).await,
            Command::Health(args) => super::client::health(args).await,
            Command::Config(args) => super::serve::print_config(args),
            Command::ApiKey(args) => super::keys::api_key(args),
            Command::SensitiveKey(args) => super::keys::sensitive_key(args),
            Command::Reencrypt(args) => super::keys::reencrypt(args).await,
        }
    }
}
