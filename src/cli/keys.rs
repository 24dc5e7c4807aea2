//! `clerk-index api-key`: make keys for the key list the server reads.

use std::io::Read;

use crate::auth::{Scopes, generate_key, hash_text};

#[derive(Debug, clap::Args)]
pub struct ApiKeyArgs {
    #[command(subcommand)]
    pub command: ApiKeyCommand,
}

#[derive(Debug, clap::Subcommand)]
pub enum ApiKeyCommand {
    /// Make a new random key: prints the key (give it to the caller; it is not stored anywhere)
    /// and the line to add to the server's key list.
    Create {
        /// A name for the key, shown in errors and logs (letters, digits, '.', '_', '-').
        #[arg(long)]
        name: String,
        /// Comma-separated scopes: public, private, unsafe, sensitive, write, segments, admin.
        #[arg(long)]
        scopes: String,
    },
    /// Read a key on standard input and print its hash, as the key list holds it.
    Hash,
}

pub fn api_key(args: ApiKeyArgs) -> anyhow::Result<()> {
    match args.command {
        ApiKeyCommand::Create { name, scopes } => {
            let scopes =
                Scopes::parse_list(&scopes).map_err(|e| anyhow::anyhow!("--scopes: {e}"))?;
            anyhow::ensure!(!scopes.is_empty(), "--scopes: give at least one scope");
            let (key, hash) = generate_key();
            let line = format!("{name} {scopes} {hash}");
            // Checks the name the way the server will.
            crate::auth::ApiKeys::parse(&line)?;
            eprintln!("key (give it to the caller; it is shown only now):");
            println!("{key}");
            eprintln!("line for the server's key list (CLERK_INDEX_API_KEYS or --api-keys-file):");
            println!("{line}");
        }
        ApiKeyCommand::Hash => {
            let mut key = String::new();
            std::io::stdin().read_to_string(&mut key)?;
            let key = key.trim();
            anyhow::ensure!(!key.is_empty(), "no key on standard input");
            println!("{}", hash_text(key));
        }
    }
    Ok(())
}
