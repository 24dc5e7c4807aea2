//! `clerk-index api-key` and `sensitive-key`: make keys for the lists the server reads;
//! `clerk-index reencrypt`: re-seal sensitive values after a key rotation.

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

#[derive(Debug, clap::Args)]
pub struct SensitiveKeyArgs {
    #[command(subcommand)]
    pub command: SensitiveKeyCommand,
}

#[derive(Debug, clap::Subcommand)]
pub enum SensitiveKeyCommand {
    /// Print a new random 256-bit key as a key ring line, `<id> <base64>`. Use the id
    /// `blind-index` for the blind-index key (one per ring; changing it rebuilds the index);
    /// put a new encryption key first in the ring to make it active.
    Create {
        /// The key's id in the ring (letters, digits, '-', '_'), or `blind-index`.
        #[arg(long)]
        id: String,
    },
}

pub fn sensitive_key(args: SensitiveKeyArgs) -> anyhow::Result<()> {
    match args.command {
        SensitiveKeyCommand::Create { id } => {
            anyhow::ensure!(
                !id.is_empty()
                    && id
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'),
                "--id holds only letters, digits, '-' and '_'"
            );
            println!("{}", crate::auth::sensitive::generate_key_line(&id));
        }
    }
    Ok(())
}

#[derive(Debug, clap::Args)]
pub struct ReencryptArgs {
    #[command(flatten)]
    pub connect: super::client::ConnectArgs,
}

/// Asks a running server (admin scope) to re-seal everything under its active key.
pub async fn reencrypt(args: ReencryptArgs) -> anyhow::Result<()> {
    let channel = super::client::channel(&args.connect).await?;
    let response = crate::api::proto::sync_client::SyncClient::new(channel)
        .reencrypt_sensitive(crate::api::proto::ReencryptSensitiveRequest {})
        .await
        .map_err(|status| anyhow::anyhow!("{}: {}", status.code(), status.message()))?
        .into_inner();
    println!(
        "re-sealed {} users under key {} (index generation {})",
        response.users_resealed, response.active_key_id, response.generation
    );
    Ok(())
}
