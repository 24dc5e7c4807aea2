//! `clerk-index`: parses the command line and runs the chosen command. Everything else lives in
//! the library (`src/lib.rs` has the map).

use std::process::ExitCode;

/// mimalloc instead of glibc malloc: indexing allocates and frees small buffers across threads,
/// which glibc served slowly and returned to the OS late (multi-GB RSS after a 1M-user backfill).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> ExitCode {
    match clerk_index::cli::parse().run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("clerk-index: {error:#}");
            ExitCode::from(clerk_index::cli::exit_code(&error))
        }
    }
}
