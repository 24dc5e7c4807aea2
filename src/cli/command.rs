//! The command line's commands and what each runs.

use clap::{Parser, Subcommand};

use super::bench::BenchArgs;
use super::client::HealthArgs;
use super::demo::{DemoArgs, FakeClerkArgs, GenerateArgs};
use super::destinations::DestinationsArgs;
use super::export::ExportArgs;
use super::facet::FacetArgs;
use super::keys::{ApiKeyArgs, ReencryptArgs, SensitiveKeyArgs};
use super::metadata::UpdateMetadataArgs;
use super::segments::{SegmentsArgs, SyncArgs, WatchArgs};
use super::serve::ServeArgs;
use super::users::{CountArgs, FieldsArgs, GetArgs, SearchArgs, ValidateArgs};

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
    /// List users matching a filter on a running server, a page at a time or --all.
    Search(SearchArgs),
    /// One user by id.
    Get(GetArgs),
    /// The metadata paths users hold, with their JSON types and how many users hold each.
    Fields(FieldsArgs),
    /// Check a filter: its normalized form, the scopes it needs, and warnings (paths nobody
    /// holds, values of the wrong type, relative times).
    Validate(ValidateArgs),
    /// Value counts, stats and histograms of the users matching a filter.
    Facet(FacetArgs),
    /// Stream every user of a filter or saved segment to a JSON-lines or CSV file.
    Export(ExportArgs),
    /// Write metadata of a user or an organization through to Clerk (read back at once).
    UpdateMetadata(UpdateMetadataArgs),
    /// List, create, change, delete and count saved segments.
    Segments(SegmentsArgs),
    /// Webhook destinations of segment events: create, list, pause, resume, resync, rotate,
    /// test, delete.
    Destinations(DestinationsArgs),
    /// Print a saved segment's Entered/Exited events as they happen.
    Watch(WatchArgs),
    /// The mirror's freshness and sync counters, and reconciles on demand.
    Sync(SyncArgs),
    /// Check the configuration `serve` would run with (same flags and environment) and print it,
    /// secrets masked.
    Config(ServeArgs),
    /// Ask a running server's gRPC health service (exit status 0 when SERVING).
    Health(HealthArgs),
    /// Load a running server with a mix of queries from several callers and report latency
    /// percentiles per query (with --metrics, the server's own time and CPU too).
    Bench(BenchArgs),
    /// Create API keys (and hash existing ones) for the server's key list.
    ApiKey(ApiKeyArgs),
    /// Create keys for the sensitive-value key ring.
    SensitiveKey(SensitiveKeyArgs),
    /// Re-seal every sensitive value under the active key of a running server (admin scope).
    Reencrypt(ReencryptArgs),
    /// Print a shell completion script (bash, zsh, fish, elvish or powershell).
    Completions(CompletionsArgs),
    /// Write the man pages (clerk-index.1 and one per command) into a directory.
    Man(ManArgs),
}

#[derive(Debug, clap::Args)]
pub struct CompletionsArgs {
    /// The shell, e.g. `clerk-index completions bash > /etc/bash_completion.d/clerk-index`.
    pub shell: clap_complete::Shell,
}

#[derive(Debug, clap::Args)]
pub struct ManArgs {
    /// Directory to write the pages into (created if missing).
    #[arg(default_value = ".")]
    pub dir: std::path::PathBuf,
}

impl Cli {
    pub async fn run(self) -> anyhow::Result<()> {
        match self.command {
            Command::Serve(args) => super::serve::serve(args).await,
            Command::Demo(args) => super::demo::demo(args).await,
            Command::FakeClerk(args) => super::demo::fake_clerk(args).await,
            Command::Generate(args) => super::demo::generate(args),
            Command::Count(args) => super::users::count(args).await,
            Command::Search(args) => super::users::search(args).await,
            Command::Get(args) => super::users::get(args).await,
            Command::Fields(args) => super::users::fields(args).await,
            Command::Validate(args) => super::users::validate(args).await,
            Command::Facet(args) => super::facet::facet(args).await,
            Command::Segments(args) => super::segments::segments(args).await,
            Command::Destinations(args) => super::destinations::destinations(args).await,
            Command::Watch(args) => super::segments::watch(args).await,
            Command::Sync(args) => super::segments::sync(args).await,
            Command::Export(args) => super::export::export(args).await,
            Command::UpdateMetadata(args) => super::metadata::update_metadata(args).await,
            Command::Health(args) => super::client::health(args).await,
            Command::Bench(args) => super::bench::bench(args).await,
            Command::Config(args) => super::serve::print_config(args),
            Command::ApiKey(args) => super::keys::api_key(args),
            Command::SensitiveKey(args) => super::keys::sensitive_key(args),
            Command::Reencrypt(args) => super::keys::reencrypt(args).await,
            Command::Completions(args) => {
                use clap::CommandFactory;
                let mut command = Cli::command();
                clap_complete::generate(
                    args.shell,
                    &mut command,
                    "clerk-index",
                    &mut std::io::stdout(),
                );
                Ok(())
            }
            Command::Man(args) => {
                use clap::CommandFactory;
                std::fs::create_dir_all(&args.dir)?;
                clap_mangen::generate_to(Cli::command(), &args.dir)?;
                Ok(())
            }
        }
    }
}
