//! `clerk-index serve`: the service against a real Clerk instance.

use std::net::SocketAddr;
use std::path::PathBuf;

use tokio::net::TcpListener;

use super::args::{
    AuthArgs, ClusterArgs, IndexArgs, SensitiveArgs, TlsArgs, clerk_secret_key_from_env,
    parse_addr, webhook_secrets_from_env,
};
use super::signal::shutdown_signal;
use crate::app::{self, Listeners};
use crate::config::{Config, TlsFiles};

#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// gRPC listen address.
    #[arg(long, env = "CLERK_INDEX_GRPC_ADDR", default_value = "0.0.0.0:50051", value_parser = parse_addr)]
    pub grpc_addr: SocketAddr,
    /// HTTP listen address (probes; webhooks later).
    #[arg(long, env = "CLERK_INDEX_HTTP_ADDR", default_value = "0.0.0.0:8080", value_parser = parse_addr)]
    pub http_addr: SocketAddr,
    /// Clerk Backend API base URL, without /v1; point it at any Clerk-compatible server.
    #[arg(
        long,
        env = "CLERK_INDEX_CLERK_API_URL",
        default_value = "https://api.clerk.com"
    )]
    pub clerk_api_url: String,
    #[command(flatten)]
    pub index: IndexArgs,
    #[command(flatten)]
    pub auth: AuthArgs,
    #[command(flatten)]
    pub tls: TlsArgs,
    #[command(flatten)]
    pub sensitive: SensitiveArgs,
    #[command(flatten)]
    pub cluster: ClusterArgs,
}

pub async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let telemetry =
        crate::telemetry::init(args.index.log_format, args.index.otlp_endpoint.as_deref());
    let served = async {
        let config = build_config(&args)?;
        let listeners = bind(args.grpc_addr, args.http_addr).await?;
        app::run(config, listeners, shutdown_signal()).await
    }
    .await;
    // The spans of the shutdown itself are exported too.
    telemetry.stop().await;
    served
}

/// Everything `serve` would run with, from flags, environment and files, validated.
fn build_config(args: &ServeArgs) -> anyhow::Result<Config> {
    let webhook_secrets = webhook_secrets_from_env()?;
    let (auth, tls) = (args.auth.load()?, args.tls.load()?);
    let (sensitive, cluster) = (args.sensitive.load()?, args.cluster.load()?);
    let config = args
        .index
        .builder(
            PathBuf::from("clerk-index-data"),
            &args.clerk_api_url,
            &clerk_secret_key_from_env()?,
        )
        .settings(|s| {
            s.webhook_secrets = webhook_secrets;
            s.auth = auth;
            // Keys from the environment are fixed; keys from a file follow the file.
            if std::env::var("CLERK_INDEX_API_KEYS").is_ok_and(|keys| !keys.trim().is_empty()) {
                s.api_keys_file = None;
            } else {
                s.api_keys_file = args.auth.api_keys_file.clone();
            }
            if std::env::var("CLERK_INDEX_SENSITIVE_KEYS").is_ok_and(|keys| !keys.trim().is_empty())
            {
                s.sensitive_keys_file = None;
            } else {
                s.sensitive_keys_file = args.sensitive.sensitive_keys_file.clone();
            }
            s.tls = tls;
            if let (Some(cert), Some(key)) = (&args.tls.tls_cert, &args.tls.tls_key) {
                s.tls_files = Some(TlsFiles {
                    cert: cert.clone(),
                    key: key.clone(),
                    client_ca: args.tls.tls_client_ca.clone(),
                });
            }
            s.sensitive = sensitive;
            s.cluster = cluster;
        })
        .build()?;
    Ok(config)
}

/// `clerk-index config`: validates the configuration `serve` would run with (same flags and
/// environment) and prints it, secrets masked.
pub fn print_config(args: ServeArgs) -> anyhow::Result<()> {
    let config = build_config(&args)?;
    let mut described = config.describe();
    described["grpc_addr"] = args.grpc_addr.to_string().into();
    described["http_addr"] = args.http_addr.to_string().into();
    described["otlp_endpoint"] = args.index.otlp_endpoint.clone().into();
    described["config_file"] = args
        .index
        .config
        .as_ref()
        .map(|path| path.display().to_string())
        .into();
    println!("{}", serde_json::to_string_pretty(&described)?);
    Ok(())
}

/// Binds both listeners with errors that name the address.
pub async fn bind(grpc: SocketAddr, http: SocketAddr) -> anyhow::Result<Listeners> {
    let grpc = TcpListener::bind(grpc)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen for gRPC on {grpc}: {e}"))?;
    let http = TcpListener::bind(http)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen for HTTP on {http}: {e}"))?;
    Ok(Listeners { grpc, http })
}
