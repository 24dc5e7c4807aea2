//! Client commands: talk to a running clerk-index over gRPC and print the answer.

use super::output::{Failure, exit};
use crate::api::proto::user_index_client::UserIndexClient;
use crate::api::proto::{FilterSpec, filter_spec};

#[derive(Debug, clap::Args)]
pub struct ConnectArgs {
    /// The server's gRPC address.
    #[arg(
        long,
        global = true,
        env = "CLERK_INDEX_SERVER",
        default_value = "http://127.0.0.1:50051"
    )]
    pub server: String,
    /// API key sent as `authorization: Bearer <key>` (not needed against the demo).
    #[arg(
        long,
        global = true,
        env = "CLERK_INDEX_API_KEY",
        hide_env_values = true
    )]
    pub api_key: Option<String>,
    /// PEM CA certificate(s) to verify an https:// server with.
    #[arg(long, global = true, env = "CLERK_INDEX_CA_CERT_FILE")]
    pub ca_cert: Option<std::path::PathBuf>,
    /// PEM client certificate, for a server that requires mutual TLS (with --client-key).
    #[arg(
        long,
        global = true,
        env = "CLERK_INDEX_CLIENT_CERT_FILE",
        requires = "client_key"
    )]
    pub client_cert: Option<std::path::PathBuf>,
    /// PEM private key of --client-cert.
    #[arg(
        long,
        global = true,
        env = "CLERK_INDEX_CLIENT_KEY_FILE",
        requires = "client_cert"
    )]
    pub client_key: Option<std::path::PathBuf>,
}

impl ConnectArgs {
    /// TLS settings for an https:// server.
    fn tls(&self) -> anyhow::Result<Option<tonic::transport::ClientTlsConfig>> {
        if !self.server.starts_with("https://") {
            return Ok(None);
        }
        let read = |flag: &str, path: &std::path::Path| {
            std::fs::read(path).map_err(|e| anyhow::anyhow!("{flag} {}: {e}", path.display()))
        };
        let ca = self.ca_cert.as_deref().ok_or_else(|| {
            anyhow::anyhow!(
                "an https:// server needs --ca-cert (the CA that signed its certificate)"
            )
        })?;
        let mut tls = tonic::transport::ClientTlsConfig::new().ca_certificate(
            tonic::transport::Certificate::from_pem(read("--ca-cert", ca)?),
        );
        if let (Some(cert), Some(key)) = (&self.client_cert, &self.client_key) {
            tls = tls.identity(tonic::transport::Identity::from_pem(
                read("--client-cert", cert)?,
                read("--client-key", key)?,
            ));
        }
        Ok(Some(tls))
    }
}

/// Sends an `authorization` value (`Bearer <api key>`) with every call; `None` sends none.
#[derive(Clone)]
pub struct Authorization(pub Option<tonic::metadata::MetadataValue<tonic::metadata::Ascii>>);

impl tonic::service::Interceptor for Authorization {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(value) = &self.0 {
            request
                .metadata_mut()
                .insert("authorization", value.clone());
        }
        Ok(request)
    }
}

/// A connection to the server that authenticates every call.
pub(super) type Connection =
    tonic::service::interceptor::InterceptedService<tonic::transport::Channel, Authorization>;

pub(super) async fn channel(args: &ConnectArgs) -> anyhow::Result<Connection> {
    let token = match &args.api_key {
        Some(key) => Some(
            format!("Bearer {}", key.trim())
                .parse()
                .map_err(|_| anyhow::anyhow!("--api-key holds characters a header cannot"))?,
        ),
        None => None,
    };
    let mut endpoint = tonic::transport::Endpoint::from_shared(args.server.clone())
        .map_err(|e| anyhow::anyhow!("--server {}: {e}", args.server))?;
    if let Some(tls) = args.tls()? {
        endpoint = endpoint
            .tls_config(tls)
            .map_err(|e| anyhow::anyhow!("TLS settings for {}: {e}", args.server))?;
    }
    let channel = endpoint.connect().await.map_err(|e| {
        Failure::new(
            exit::CANNOT_CONNECT,
            format!("cannot connect to clerk-index at {}: {e}", args.server),
        )
    })?;
    Ok(tonic::service::interceptor::InterceptedService::new(
        channel,
        Authorization(token),
    ))
}

pub(super) async fn connect(args: &ConnectArgs) -> anyhow::Result<UserIndexClient<Connection>> {
    Ok(UserIndexClient::new(channel(args).await?)
        .accept_compressed(tonic::codec::CompressionEncoding::Gzip))
}

pub(super) fn filter_spec(filter: &Option<String>) -> Option<FilterSpec> {
    filter.as_ref().map(|text| FilterSpec {
        spec: Some(filter_spec::Spec::Expression(text.clone())),
    })
}

/// The server's error, with its reason from the details; exit code 1 (3 when the connection
/// broke).
pub(super) fn status_error(status: tonic::Status) -> anyhow::Error {
    query_error(status, None)
}

/// As [`status_error`]; a filter error also shows the filter with a caret under the position.
pub(super) fn query_error(status: tonic::Status, filter: Option<&str>) -> anyhow::Error {
    use tonic_types::StatusExt;
    let info = status.get_details_error_info();
    let mut message = format!("{:?}: {}", status.code(), status.message());
    if let Some(info) = &info {
        message.push_str(&format!(" [{}]", info.reason));
    }
    let position = info
        .as_ref()
        .and_then(|i| i.metadata.get("position"))
        .and_then(|p| p.parse::<usize>().ok());
    if let (Some(text), Some(position)) = (filter, position) {
        message.push_str(&caret(text, position));
    }
    let code = if status.code() == tonic::Code::Unavailable && info.is_none() {
        exit::CANNOT_CONNECT
    } else {
        exit::SERVER_ERROR
    };
    Failure::new(code, message).into()
}

/// The filter on one line and a caret under the character at `position`.
pub(super) fn caret(text: &str, position: usize) -> String {
    let line: String = text
        .chars()
        .map(|c| if c == '\n' { ' ' } else { c })
        .collect();
    format!(
        "\n  {line}\n  {}^",
        " ".repeat(position.min(line.chars().count()))
    )
}

pub(super) use crate::user::{primary_email, value_at};

#[derive(Debug, clap::Args)]
pub struct HealthArgs {
    #[command(flatten)]
    pub connect: ConnectArgs,
    /// The service to ask about; empty: the whole server.
    #[arg(long, default_value = "")]
    pub service: String,
}

/// Asks the server's gRPC health service (for probes, `helm test` and scripts): exits 0 when
/// SERVING, 4 when the server answers otherwise, 3 when it cannot be reached.
pub async fn health(args: HealthArgs) -> anyhow::Result<()> {
    use tonic_health::pb::health_check_response::ServingStatus;
    let channel = channel(&args.connect).await?;
    let response = tonic_health::pb::health_client::HealthClient::new(channel)
        .check(tonic_health::pb::HealthCheckRequest {
            service: args.service.clone(),
        })
        .await
        .map_err(status_error)?
        .into_inner();
    let status = ServingStatus::try_from(response.status).unwrap_or(ServingStatus::Unknown);
    println!("{}", status.as_str_name());
    if status != ServingStatus::Serving {
        return Err(Failure::new(exit::NOT_SERVING, "the server is not serving yet").into());
    }
    Ok(())
}
