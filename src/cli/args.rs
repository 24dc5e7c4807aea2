//! The flags and environment variables of `serve` and `demo`, and the loaders of what is read
//! from the environment or files (secrets, keys, certificates). They fill a [`ConfigBuilder`];
//! checking the result is the builder's job.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use crate::auth::sensitive::{KeyRing, SensitivePaths};
use crate::auth::{ApiKeys, AuthConfig, Sensitive};
use crate::cluster::ClusterConfig;
use crate::config::{Config, ConfigBuilder, MemoryMb, TlsConfig, defaults};
use crate::limits::Limits;
use crate::telemetry::LogFormat;

/// Options shared by `serve` and `demo`.
#[derive(Debug, Clone, clap::Args)]
pub struct IndexArgs {
    /// TOML file of settings keyed by flag name (`writer-memory-mb = 128`); flags and
    /// CLERK_INDEX_* variables override it. Secrets cannot be in it.
    #[arg(long, env = "CLERK_INDEX_CONFIG")]
    pub config: Option<PathBuf>,
    /// Directory of the index and the saved segments (created if missing; reused across restarts).
    #[arg(long, env = "CLERK_INDEX_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Client-side limit for Clerk Backend API requests, as N/window, or `auto`: 900/10s for a
    /// production instance, 90/10s for a development one (Clerk's limits are 1000 and 100),
    /// from `GET /v1/instance`, or from the key's sk_live_/sk_test_ prefix until it answers.
    #[arg(long, env = "CLERK_INDEX_CLERK_RATE_LIMIT", default_value = defaults::CLERK_RATE_LIMIT)]
    pub clerk_rate_limit: String,
    /// Listing requests to Clerk in flight at once during backfills and sweeps (each walks its
    /// own range of creation times; the rate limit still caps the total).
    #[arg(long, env = "CLERK_INDEX_CLERK_CONCURRENCY", default_value_t = defaults::CLERK_CONCURRENCY)]
    pub clerk_concurrency: usize,
    /// Memory budget of the index writer, in MiB, or `auto`: half the memory limit (the
    /// container's, or the machine's), at least 256 MiB and at most 1 GiB. A backfill's commits
    /// hold as many users as it does (~1.5 KB each), so a larger budget writes fewer, larger
    /// segments and leaves less to merge at the end; steady-state commits hold far less.
    #[arg(long, env = "CLERK_INDEX_WRITER_MEMORY_MB", default_value = defaults::WRITER_MEMORY_MB)]
    pub writer_memory_mb: MemoryMb,
    /// Memory for decoded columns that filters range over, sorts and facets read and exports
    /// take ids from, in MiB (2-8 bytes per user per column; 0 reads them from the index every
    /// time), or `auto`: 96 bytes per user, at least 256 MiB, at most a quarter of the memory
    /// limit (the container's, or the machine's), sized again after every commit.
    #[arg(long, env = "CLERK_INDEX_COLUMN_CACHE_MB", default_value = defaults::COLUMN_CACHE_MB)]
    pub column_cache_mb: MemoryMb,
    /// Longest time a bulk change (backfill page) waits for its commit, in milliseconds.
    #[arg(long, env = "CLERK_INDEX_COMMIT_INTERVAL_MS", default_value_t = defaults::COMMIT_INTERVAL_MS)]
    pub commit_interval_ms: u64,
    /// Largest page a SearchUsers request may ask for.
    #[arg(long, env = "CLERK_INDEX_MAX_PAGE_SIZE", default_value_t = defaults::MAX_PAGE_SIZE)]
    pub max_page_size: u32,
    /// Seconds between catch-ups (list users updated since the last one; repairs missed webhooks).
    #[arg(long, env = "CLERK_INDEX_CATCH_UP_INTERVAL_SECS", default_value_t = defaults::CATCH_UP_INTERVAL_SECS)]
    pub catch_up_interval_secs: u64,
    /// How many users the catch-up lists by `-updated_at` (offset paging, slow when deep)
    /// before it stops and runs a sweep instead.
    #[arg(long, env = "CLERK_INDEX_CATCH_UP_MAX_OFFSET", default_value_t = defaults::CATCH_UP_MAX_OFFSET)]
    pub catch_up_max_offset: u64,
    /// Seconds between sweeps (compare every id with Clerk; removes users deleted unseen).
    #[arg(long, env = "CLERK_INDEX_SWEEP_INTERVAL_SECS", default_value_t = defaults::SWEEP_INTERVAL_SECS)]
    pub sweep_interval_secs: u64,
    /// Saved-segment events kept for WatchSegment replays (older ones answer OUT_OF_RANGE).
    #[arg(long, env = "CLERK_INDEX_SEGMENT_EVENT_RETENTION", default_value_t = defaults::SEGMENT_EVENT_RETENTION)]
    pub segment_event_retention: usize,
    /// Milliseconds between re-evaluations of segments with relative times (`now-30d`).
    #[arg(long, env = "CLERK_INDEX_SEGMENT_TIME_RESOLUTION_MS", default_value_t = defaults::SEGMENT_TIME_RESOLUTION_MS)]
    pub segment_time_resolution_ms: u64,
    /// Days of per-day history kept for each saved segment (GetSegmentHistory).
    #[arg(long, env = "CLERK_INDEX_SEGMENT_HISTORY_DAYS", default_value_t = defaults::SEGMENT_HISTORY_DAYS)]
    pub segment_history_days: usize,
    /// Let destinations deliver to private, loopback and link-local addresses (in-cluster
    /// receivers); refused by default.
    #[arg(long, env = "CLERK_INDEX_DESTINATIONS_ALLOW_PRIVATE")]
    pub destinations_allow_private: bool,
    /// Let destinations deliver over plain http:// (refused by default).
    #[arg(long, env = "CLERK_INDEX_DESTINATIONS_ALLOW_HTTP")]
    pub destinations_allow_http: bool,
    /// Seconds a destination's deliveries may fail before it is marked failing.
    #[arg(
        long,
        env = "CLERK_INDEX_DESTINATION_FAILING_AFTER_SECS",
        default_value_t = 86_400
    )]
    pub destination_failing_after_secs: u64,
    /// Most segment events kept while a destination has not delivered them (past it, the
    /// destination has a gap and must be resynced).
    #[arg(
        long,
        env = "CLERK_INDEX_DESTINATION_HELD_EVENTS",
        default_value_t = 1_000_000
    )]
    pub destination_held_events: usize,
    /// Do not serve the web console at `/` on the HTTP port (the JSON API stays).
    #[arg(long, env = "CLERK_INDEX_DISABLE_CONSOLE")]
    pub disable_console: bool,
    /// A browser origin (`https://console.example.com`) allowed to call the gRPC port by
    /// gRPC-Web; repeat the flag, or separate with commas. Same-origin and non-browser callers
    /// need none.
    #[arg(
        long = "grpc-web-origin",
        env = "CLERK_INDEX_GRPC_WEB_ORIGINS",
        value_delimiter = ','
    )]
    pub grpc_web_origins: Vec<String>,
    /// Log format: pretty or json.
    #[arg(long, env = "CLERK_INDEX_LOG_FORMAT", default_value = "pretty")]
    pub log_format: LogFormat,
    /// On SIGTERM, how long in-flight gRPC calls may take to finish before they are closed, in
    /// seconds (keep it below Kubernetes' termination grace period).
    #[arg(long, env = "CLERK_INDEX_SHUTDOWN_TIMEOUT_SECS", default_value_t = defaults::SHUTDOWN_TIMEOUT_SECS)]
    pub shutdown_timeout_secs: u64,
    /// OTLP/gRPC collector for traces (e.g. http://otel-collector:4317). Without it, traces are
    /// exported only when OTEL_EXPORTER_OTLP_ENDPOINT or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT is set.
    /// Also honoured: OTEL_SDK_DISABLED, OTEL_TRACES_EXPORTER, OTEL_SERVICE_NAME,
    /// OTEL_RESOURCE_ATTRIBUTES, OTEL_TRACES_SAMPLER, OTEL_TRACES_SAMPLER_ARG, OTEL_PROPAGATORS,
    /// OTEL_EXPORTER_OTLP_HEADERS, OTEL_EXPORTER_OTLP_TIMEOUT, OTEL_EXPORTER_OTLP_COMPRESSION,
    /// OTEL_BSP_SCHEDULE_DELAY and OTEL_BSP_MAX_QUEUE_SIZE.
    #[arg(long, env = "CLERK_INDEX_OTLP_ENDPOINT")]
    pub otlp_endpoint: Option<String>,
    #[command(flatten)]
    pub limits: LimitArgs,
}

/// What one caller may hold (see the README's budget table). Past a budget, calls get
/// RESOURCE_EXHAUSTED and connections are closed at accept; `/metrics` counts both.
#[derive(Debug, Clone, clap::Args)]
pub struct LimitArgs {
    /// Concurrent gRPC calls on one connection (HTTP/2 SETTINGS_MAX_CONCURRENT_STREAMS).
    #[arg(long, env = "CLERK_INDEX_MAX_STREAMS_PER_CONNECTION", default_value_t = Limits::default().streams_per_connection)]
    pub max_streams_per_connection: u32,
    /// Concurrent exports (ExportUsers, ListSegmentMembers) in all.
    #[arg(long, env = "CLERK_INDEX_MAX_EXPORTS", default_value_t = Limits::default().exports)]
    pub max_exports: usize,
    /// Concurrent exports per API key (per peer address when serving without keys).
    #[arg(long, env = "CLERK_INDEX_MAX_EXPORTS_PER_KEY", default_value_t = Limits::default().exports_per_key)]
    pub max_exports_per_key: usize,
    /// Concurrent WatchSegment streams in all.
    #[arg(long, env = "CLERK_INDEX_MAX_WATCHES", default_value_t = Limits::default().watches)]
    pub max_watches: usize,
    /// Concurrent WatchSegment streams per API key (or peer address).
    #[arg(long, env = "CLERK_INDEX_MAX_WATCHES_PER_KEY", default_value_t = Limits::default().watches_per_key)]
    pub max_watches_per_key: usize,
    /// Bytes of users one export may hold between the index and its connection.
    #[arg(long, env = "CLERK_INDEX_STREAM_BUFFER_BYTES", default_value_t = Limits::default().stream_buffer_bytes)]
    pub stream_buffer_bytes: usize,
    /// Open connections on the HTTP port.
    #[arg(long, env = "CLERK_INDEX_MAX_HTTP_CONNECTIONS", default_value_t = Limits::default().http_connections)]
    pub max_http_connections: usize,
    /// Open connections on the gRPC port.
    #[arg(long, env = "CLERK_INDEX_MAX_GRPC_CONNECTIONS", default_value_t = Limits::default().grpc_connections)]
    pub max_grpc_connections: usize,
    /// Open connections on the gRPC port from one peer address (a proxy in front counts as one).
    #[arg(long, env = "CLERK_INDEX_MAX_GRPC_CONNECTIONS_PER_PEER", default_value_t = Limits::default().grpc_connections_per_peer)]
    pub max_grpc_connections_per_peer: usize,
    /// Seconds the HTTP port waits for a request's headers (idle keep-alive time included).
    #[arg(long, env = "CLERK_INDEX_HTTP_HEADER_TIMEOUT_SECS", default_value_t = Limits::default().http_header_timeout.as_secs())]
    pub http_header_timeout_secs: u64,
    /// Seconds a stream on the HTTP port (an export, a watch) may be quiet before it sends a
    /// heartbeat (an empty message), so proxies in between keep it open.
    #[arg(long, env = "CLERK_INDEX_STREAM_HEARTBEAT_SECS", default_value_t = Limits::default().stream_heartbeat.as_secs())]
    pub stream_heartbeat_secs: u64,
    /// Log lines per second about refused webhook deliveries (the rest are counted).
    #[arg(long, env = "CLERK_INDEX_UNAUTHENTICATED_LOG_LINES_PER_SECOND", default_value_t = Limits::default().unauthenticated_log_lines_per_second)]
    pub unauthenticated_log_lines_per_second: u32,
}

impl LimitArgs {
    pub fn limits(&self) -> Limits {
        Limits {
            streams_per_connection: self.max_streams_per_connection,
            exports: self.max_exports,
            exports_per_key: self.max_exports_per_key,
            watches: self.max_watches,
            watches_per_key: self.max_watches_per_key,
            stream_buffer_bytes: self.stream_buffer_bytes,
            http_connections: self.max_http_connections,
            grpc_connections: self.max_grpc_connections,
            grpc_connections_per_peer: self.max_grpc_connections_per_peer,
            http_header_timeout: std::time::Duration::from_secs(self.http_header_timeout_secs),
            stream_heartbeat: std::time::Duration::from_secs(self.stream_heartbeat_secs),
            unauthenticated_log_lines_per_second: self.unauthenticated_log_lines_per_second,
        }
    }
}

/// Everything `app::run` needs, validated.
impl IndexArgs {
    /// A builder for an index in `--data-dir` (or `default_data_dir`), with these settings.
    pub fn builder(
        &self,
        default_data_dir: PathBuf,
        clerk_api_url: &str,
        clerk_secret_key: &str,
    ) -> ConfigBuilder {
        let data_dir = self.data_dir.clone().unwrap_or(default_data_dir);
        Config::builder(data_dir, clerk_api_url, clerk_secret_key).settings(|s| {
            s.clerk_rate_limit = self.clerk_rate_limit.clone();
            s.clerk_concurrency = self.clerk_concurrency;
            s.catch_up_max_offset = self.catch_up_max_offset;
            s.writer_memory_mb = self.writer_memory_mb;
            s.column_cache_mb = self.column_cache_mb;
            s.commit_interval_ms = self.commit_interval_ms;
            s.max_page_size = self.max_page_size;
            s.catch_up_interval_secs = self.catch_up_interval_secs;
            s.sweep_interval_secs = self.sweep_interval_secs;
            s.segment_event_retention = self.segment_event_retention;
            s.segment_time_resolution_ms = self.segment_time_resolution_ms;
            s.segment_history_days = self.segment_history_days;
            s.destinations.allow_private = self.destinations_allow_private;
            s.destinations.allow_http = self.destinations_allow_http;
            s.destinations.failing_after =
                std::time::Duration::from_secs(self.destination_failing_after_secs.max(1));
            s.destination_held_events = self.destination_held_events;
            s.shutdown_timeout_secs = self.shutdown_timeout_secs;
            s.limits = self.limits.limits();
            s.console = !self.disable_console;
            s.grpc_web_origins = self.grpc_web_origins.clone();
        })
    }
}

/// The secret key from `CLERK_SECRET_KEY`, or from the file named by `CLERK_SECRET_KEY_FILE`
/// (as a mounted Kubernetes Secret provides it).
pub fn clerk_secret_key_from_env() -> anyhow::Result<String> {
    if let Ok(key) = std::env::var("CLERK_SECRET_KEY")
        && !key.trim().is_empty()
    {
        return Ok(key);
    }
    if let Ok(path) = std::env::var("CLERK_SECRET_KEY_FILE") {
        return std::fs::read_to_string(&path)
            .map_err(|e| anyhow::anyhow!("reading CLERK_SECRET_KEY_FILE {path}: {e}"));
    }
    anyhow::bail!(
        "set CLERK_SECRET_KEY (sk_live_... or sk_test_...) or CLERK_SECRET_KEY_FILE; to try clerk-index without a Clerk account run `clerk-index demo`"
    )
}

/// Webhook signing secrets from `CLERK_WEBHOOK_SIGNING_SECRET` (space- or comma-separated, for
/// rotation) or the file named by `CLERK_WEBHOOK_SIGNING_SECRET_FILE`. None is not an error:
/// the service then refuses deliveries with 503 and says so at start.
pub fn webhook_secrets_from_env() -> anyhow::Result<Vec<String>> {
    let text = match (
        std::env::var("CLERK_WEBHOOK_SIGNING_SECRET"),
        std::env::var("CLERK_WEBHOOK_SIGNING_SECRET_FILE"),
    ) {
        (Ok(text), _) if !text.trim().is_empty() => text,
        (_, Ok(path)) => std::fs::read_to_string(&path).map_err(|e| {
            anyhow::anyhow!("reading CLERK_WEBHOOK_SIGNING_SECRET_FILE {path}: {e}")
        })?,
        _ => return Ok(Vec::new()),
    };
    let secrets: Vec<String> = text
        .split([' ', ',', '\n'])
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect();
    Ok(secrets)
}

/// A listen address that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a listen address like 127.0.0.1:50051")]
pub struct BadAddress(String);

/// Parses a listen address with a readable error.
pub fn parse_addr(text: &str) -> Result<SocketAddr, BadAddress> {
    text.parse().map_err(|_| BadAddress(text.to_string()))
}

/// How callers authenticate (`serve` and `demo`).
#[derive(Debug, Clone, clap::Args)]
pub struct AuthArgs {
    /// File of API keys, one per line: `<name> <scope,scope,...> sha256:<hex>` (create keys with
    /// `clerk-index api-key create`). The keys can instead be given as the text of
    /// CLERK_INDEX_API_KEYS.
    #[arg(long, env = "CLERK_INDEX_API_KEYS_FILE")]
    pub api_keys_file: Option<PathBuf>,
    /// With no API keys configured, serve every caller with every scope. Without this flag (and
    /// without keys) the server refuses to start.
    #[arg(long, env = "CLERK_INDEX_ALLOW_UNAUTHENTICATED")]
    pub allow_unauthenticated: bool,
}

impl AuthArgs {
    /// The keys from `CLERK_INDEX_API_KEYS` or `--api-keys-file`, and the flag.
    pub fn load(&self) -> anyhow::Result<AuthConfig> {
        let text = match (std::env::var("CLERK_INDEX_API_KEYS"), &self.api_keys_file) {
            (Ok(text), _) if !text.trim().is_empty() => text,
            (_, Some(path)) => std::fs::read_to_string(path).map_err(|e| {
                anyhow::anyhow!("reading the API keys file {}: {e}", path.display())
            })?,
            _ => String::new(),
        };
        Ok(AuthConfig {
            keys: ApiKeys::parse(&text)?,
            allow_unauthenticated: self.allow_unauthenticated,
            sensitive: None,
        })
    }
}

/// Cluster mode (`serve`): replicas sharing a change log on NATS JetStream.
#[derive(Debug, Clone, clap::Args)]
pub struct ClusterArgs {
    /// NATS with JetStream (nats://host:4222, several comma-separated): replicas share a change
    /// log there. Without it one process owns the index (the default).
    #[arg(long = "cluster", env = "CLERK_INDEX_CLUSTER")]
    pub cluster_url: Option<String>,
    /// Prefix of this deployment's stream and subjects in NATS.
    #[arg(long, env = "CLERK_INDEX_CLUSTER_NAME", default_value = "clerk-index")]
    pub cluster_name: String,
    /// This replica's name in the cluster, stable across restarts (the pod name); default
    /// $HOSTNAME.
    #[arg(long, env = "CLERK_INDEX_REPLICA_ID")]
    pub replica_id: Option<String>,
    /// Seconds the sync lease (which replica copies from Clerk) outlives its holder's last
    /// renewal: how long a dead holder delays the takeover. Renewed every third of it.
    #[arg(long, env = "CLERK_INDEX_SYNC_LEASE_TTL_SECS", default_value_t = 15)]
    pub sync_lease_ttl_secs: u64,
    /// Copies NATS keeps of the change log, buckets and events stream (3 on a three-node NATS
    /// cluster, so losing a NATS node loses nothing acknowledged).
    #[arg(long, env = "CLERK_INDEX_CLUSTER_STREAM_REPLICAS", default_value_t = 1)]
    pub cluster_stream_replicas: usize,
    /// Replicas in the deployment (the chart passes replicaCount): each writes through to Clerk
    /// on 10% / N of the instance's rate limit, the sync lease holder reads on the other 90%.
    #[arg(long, env = "CLERK_INDEX_CLUSTER_REPLICAS", default_value_t = 2)]
    pub cluster_replicas: u32,
}

impl ClusterArgs {
    /// The cluster settings, validated; `None` in single mode.
    pub fn load(&self) -> anyhow::Result<Option<ClusterConfig>> {
        let Some(url) = self.cluster_url.as_deref().filter(|u| !u.trim().is_empty()) else {
            return Ok(None);
        };
        let replica_id = match &self.replica_id {
            Some(id) => id.clone(),
            None => std::env::var("HOSTNAME").map_err(|_| {
                anyhow::anyhow!("--replica-id is needed in cluster mode when $HOSTNAME is not set")
            })?,
        };
        let mut config = ClusterConfig::new(url.trim(), replica_id);
        config.name = self.cluster_name.clone();
        config.lease_ttl = std::time::Duration::from_secs(self.sync_lease_ttl_secs);
        config.stream_replicas = self.cluster_stream_replicas;
        config.replicas = self.cluster_replicas;
        config.validate()?;
        Ok(Some(config))
    }
}

/// TLS for the gRPC port, from PEM files (`serve`).
#[derive(Debug, Clone, clap::Args)]
pub struct TlsArgs {
    /// PEM certificate chain of the gRPC server; with --tls-key, gRPC is served over TLS only.
    #[arg(long, env = "CLERK_INDEX_TLS_CERT_FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert.
    #[arg(long, env = "CLERK_INDEX_TLS_KEY_FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// PEM CA certificates: every client must present a certificate they signed (mutual TLS).
    #[arg(long, env = "CLERK_INDEX_TLS_CLIENT_CA_FILE", requires = "tls_cert")]
    pub tls_client_ca: Option<PathBuf>,
}

impl TlsArgs {
    /// The PEM files, read; `None` without --tls-cert.
    pub fn load(&self) -> anyhow::Result<Option<TlsConfig>> {
        let read = |flag: &str, path: &PathBuf| {
            std::fs::read(path).map_err(|e| anyhow::anyhow!("{flag} {}: {e}", path.display()))
        };
        let (Some(cert), Some(key)) = (&self.tls_cert, &self.tls_key) else {
            return Ok(None);
        };
        Ok(Some(TlsConfig {
            cert_pem: read("--tls-cert", cert)?,
            key_pem: read("--tls-key", key)?,
            client_ca_pem: self
                .tls_client_ca
                .as_ref()
                .map(|path| read("--tls-client-ca", path))
                .transpose()?,
        }))
    }
}

/// Sensitive paths and their keys (`serve`).
#[derive(Debug, Clone, clap::Args)]
pub struct SensitiveArgs {
    /// Comma-separated metadata paths never indexed or stored in plaintext, e.g.
    /// `private.ssn,private.medical.*`: sealed with the key ring, filterable with =, != and IN by
    /// callers with the sensitive scope.
    #[arg(long, env = "CLERK_INDEX_SENSITIVE_PATHS", default_value = "")]
    pub sensitive_paths: String,
    /// File of the sensitive key ring: `blind-index <base64>` and `<key id> <base64>` lines, the
    /// first key active (create lines with `clerk-index sensitive-key create`). The text can
    /// instead be given in CLERK_INDEX_SENSITIVE_KEYS.
    #[arg(long, env = "CLERK_INDEX_SENSITIVE_KEYS_FILE")]
    pub sensitive_keys_file: Option<PathBuf>,
}

impl SensitiveArgs {
    pub fn load(&self) -> anyhow::Result<Option<Arc<Sensitive>>> {
        let paths = SensitivePaths::parse(&self.sensitive_paths)
            .map_err(|e| anyhow::anyhow!("--sensitive-paths: {e}"))?;
        let text = match (
            std::env::var("CLERK_INDEX_SENSITIVE_KEYS"),
            &self.sensitive_keys_file,
        ) {
            (Ok(text), _) if !text.trim().is_empty() => text,
            (_, Some(path)) => std::fs::read_to_string(path).map_err(|e| {
                anyhow::anyhow!("reading the sensitive keys file {}: {e}", path.display())
            })?,
            _ => String::new(),
        };
        if paths.is_empty() {
            return Ok(None);
        }
        anyhow::ensure!(
            !text.trim().is_empty(),
            "--sensitive-paths needs a key ring: set CLERK_INDEX_SENSITIVE_KEYS or --sensitive-keys-file (make keys with `clerk-index sensitive-key create`)"
        );
        let ring = KeyRing::parse(&text)?;
        Ok(Some(Arc::new(Sensitive::new(paths, ring))))
    }
}
