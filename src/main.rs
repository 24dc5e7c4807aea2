//! `clerk-index`: parses the command line and runs the chosen command. Everything else lives in
//! the library (`src/lib.rs` has the map).

use std::process::ExitCode;

use clap::Parser;
use clerk_index::cli::Cli;

#[tokio::main]
async fn main() -> ExitCode {
    match Cli::parse().run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("clerk-index: {error:#}");
            ExitCode::FAILURE
        }
    }
}
