//! The one `Config`: flags and `CLERK_INDEX_*` environment variables, secrets from the
//! environment or files only, a default for every non-secret value, validated once at start.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::auth::sensitive::{KeyRing, SensitivePaths};
use crate::auth::{ApiKeys, AuthConfig, Sensitive};
use crate::clerk::ClerkClientConfig;
use crate::clerk::rate_limit::RateLimit;
use crate::index::IndexConfig;
use crate::query::FilterLimits;
use crate::redact::{mask, mask_url};
use crate::segments::SegmentsConfig;
use crate::sync::ReconcileSchedule;
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
    /// Client-side limit for Clerk Backend API requests, as N/window (Clerk production: 1000/10s).
    #[arg(long, env = "CLERK_INDEX_CLERK_RATE_LIMIT", default_value = "900/10s")]
    pub clerk_rate_limit: String,
    /// Memory budget of the index writer, in MiB.
    #[arg(long, env = "CLERK_INDEX_WRITER_MEMORY_MB", default_value_t = 256)]
    pub writer_memory_mb: usize,
    /// Memory for decoded numeric and date columns that filters range over and sorts read, in
    /// MiB (2-8 bytes per user per column; 0 reads them from the index every time).
    #[arg(long, env = "CLERK_INDEX_COLUMN_CACHE_MB", default_value_t = 256)]
    pub column_cache_mb: usize,
    /// Longest time a bulk change (backfill page) waits for its commit, in milliseconds.
    #[arg(long, env = "CLERK_INDEX_COMMIT_INTERVAL_MS", default_value_t = 2000)]
    pub commit_interval_ms: u64,
    /// Largest page a SearchUsers request may ask for.
    #[arg(long, env = "CLERK_INDEX_MAX_PAGE_SIZE", default_value_t = 1000)]
    pub max_page_size: u32,
    /// Seconds between catch-ups (list users updated since the last one; repairs missed webhooks).
    #[arg(
        long,
        env = "CLERK_INDEX_CATCH_UP_INTERVAL_SECS",
        default_value_t = 300
    )]
    pub catch_up_interval_secs: u64,
    /// Seconds between sweeps (compare every id with Clerk; removes users deleted unseen).
    #[arg(
        long,
        env = "CLERK_INDEX_SWEEP_INTERVAL_SECS",
        default_value_t = 21_600
    )]
    pub sweep_interval_secs: u64,
    /// Saved-segment events kept for WatchSegment replays (older ones answer OUT_OF_RANGE).
    #[arg(
        long,
        env = "CLERK_INDEX_SEGMENT_EVENT_RETENTION",
        default_value_t = 100_000
    )]
    pub segment_event_retention: usize,
    /// Log format: pretty or json.
    #[arg(long, env = "CLERK_INDEX_LOG_FORMAT", default_value = "pretty")]
    pub log_format: LogFormat,
    /// On SIGTERM, how long in-flight gRPC calls may take to finish before they are closed, in
    /// seconds (keep it below Kubernetes' termination grace period).
    #[arg(long, env = "CLERK_INDEX_SHUTDOWN_TIMEOUT_SECS", default_value_t = 20)]
    pub shutdown_timeout_secs: u64,
    /// OTLP/gRPC collector for traces (e.g. http://otel-collector:4317). Without it, traces are
    /// exported only when OTEL_EXPORTER_OTLP_ENDPOINT or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT is set.
    /// Also honoured: OTEL_SDK_DISABLED, OTEL_TRACES_EXPORTER, OTEL_SERVICE_NAME,
    /// OTEL_RESOURCE_ATTRIBUTES, OTEL_TRACES_SAMPLER, OTEL_TRACES_SAMPLER_ARG, OTEL_PROPAGATORS,
    /// OTEL_EXPORTER_OTLP_HEADERS, OTEL_EXPORTER_OTLP_TIMEOUT, OTEL_EXPORTER_OTLP_COMPRESSION,
    /// OTEL_BSP_SCHEDULE_DELAY and OTEL_BSP_MAX_QUEUE_SIZE.
    #[arg(long, env = "CLERK_INDEX_OTLP_ENDPOINT")]
    pub otlp_endpoint: Option<String>,
}

/// Everything `app::run` needs, validated.
#[derive(Debug, Clone)]
pub struct Config {
    /// Holds `index/` (the tantivy index) and `segments/` (saved segments and their event log).
    pub data_dir: PathBuf,
    pub index: IndexConfig,
    pub segments: SegmentsConfig,
    pub clerk: ClerkClientConfig,
    pub filter_limits: FilterLimits,
    pub max_page_size: u32,
    /// Clerk users per backfill page (Clerk's maximum is 500).
    pub backfill_page_size: u32,
    /// Svix signing secrets (`whsec_...`); several during a rotation. Empty: webhooks refused.
    pub webhook_secrets: Vec<String>,
    pub webhook_body_limit: usize,
    pub webhook_timeout: Duration,
    /// Longest a read waits for a requested `min_generation`.
    pub max_read_wait: Duration,
    pub reconcile: ReconcileSchedule,
    /// API keys; with none, `run` refuses to start unless unauthenticated serving is allowed.
    pub auth: AuthConfig,
    /// How long in-flight gRPC calls may run on after a shutdown signal.
    pub shutdown_timeout: Duration,
    /// TLS for the gRPC port; `None` serves plaintext.
    pub tls: Option<TlsConfig>,
    /// Sensitive paths and their keys (set with [`Config::set_sensitive`]).
    pub sensitive: Option<Arc<Sensitive>>,
    /// Cluster mode: the change log's NATS; `None` in single mode.
    pub cluster: Option<crate::cluster::ClusterConfig>,
}

impl Config {
    /// Builds and checks the configuration; the error says which setting is wrong and why.
    pub fn new(
        args: &IndexArgs,
        default_data_dir: PathBuf,
        clerk_api_url: &str,
        clerk_secret_key: String,
    ) -> anyhow::Result<Config> {
        let rate_limit = RateLimit::parse(&args.clerk_rate_limit)
            .map_err(|e| anyhow::anyhow!("--clerk-rate-limit: {e}"))?;
        anyhow::ensure!(
            args.writer_memory_mb >= 20,
            "--writer-memory-mb must be at least 20 (tantivy needs ~15 MiB per indexing thread)"
        );
        anyhow::ensure!(
            (1..=10_000).contains(&args.max_page_size),
            "--max-page-size must be between 1 and 10000"
        );
        anyhow::ensure!(
            args.commit_interval_ms > 0,
            "--commit-interval-ms must be positive"
        );
        anyhow::ensure!(
            args.catch_up_interval_secs > 0 && args.sweep_interval_secs > 0,
            "--catch-up-interval-secs and --sweep-interval-secs must be positive"
        );
        let url = clerk_api_url.trim_end_matches('/');
        anyhow::ensure!(
            url.starts_with("http://") || url.starts_with("https://"),
            "--clerk-api-url must start with http:// or https:// (got {url:?})"
        );
        anyhow::ensure!(
            !url.ends_with("/v1"),
            "--clerk-api-url is the host without /v1 (e.g. https://api.clerk.com)"
        );
        anyhow::ensure!(
            !clerk_secret_key.trim().is_empty(),
            "the Clerk secret key is empty"
        );
        let data_dir = args.data_dir.clone().unwrap_or(default_data_dir);
        let mut index = IndexConfig::new(data_dir.join("index"));
        index.writer_memory_bytes = args.writer_memory_mb << 20;
        index.writer_threads = if args.writer_memory_mb >= 64 { 2 } else { 1 };
        index.commit_interval = Duration::from_millis(args.commit_interval_ms);
        index.column_cache_bytes = args.column_cache_mb << 20;
        let mut clerk = ClerkClientConfig::new(url, clerk_secret_key.trim());
        clerk.rate_limit = rate_limit;
        anyhow::ensure!(
            args.segment_event_retention >= 100,
            "--segment-event-retention must be at least 100"
        );
        Ok(Config {
            data_dir,
            index,
            segments: SegmentsConfig {
                retained_events: args.segment_event_retention,
                ..SegmentsConfig::default()
            },
            clerk,
            filter_limits: FilterLimits::default(),
            max_page_size: args.max_page_size,
            backfill_page_size: 500,
            webhook_secrets: Vec::new(),
            webhook_body_limit: 1 << 20,
            webhook_timeout: Duration::from_secs(10),
            max_read_wait: Duration::from_secs(5),
            reconcile: ReconcileSchedule {
                catch_up_every: Duration::from_secs(args.catch_up_interval_secs),
                sweep_every: Duration::from_secs(args.sweep_interval_secs),
            },
            auth: AuthConfig::default(),
            shutdown_timeout: Duration::from_secs(args.shutdown_timeout_secs),
            tls: None,
            sensitive: None,
            cluster: None,
        })
    }

    /// Seals `sensitive`'s paths before indexing, lets callers filter and read them by scope,
    /// and rebuilds an index sealed otherwise.
    pub fn set_sensitive(&mut self, sensitive: Option<Arc<Sensitive>>) {
        self.index.sealing = sensitive
            .as_ref()
            .map(|s| s.fingerprint())
            .unwrap_or_default();
        self.auth.sensitive = sensitive.clone();
        self.sensitive = sensitive;
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
    crate::clerk::webhook::WebhookVerifier::new(&secrets)
        .map_err(|e| anyhow::anyhow!("CLERK_WEBHOOK_SIGNING_SECRET: {e}"))?;
    Ok(secrets)
}

/// Parses a listen address with a readable error.
pub fn parse_addr(text: &str) -> Result<SocketAddr, String> {
    text.parse()
        .map_err(|_| format!("{text:?} is not a listen address like 127.0.0.1:50051"))
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
}

impl ClusterArgs {
    /// The cluster settings, validated; `None` in single mode.
    pub fn load(&self) -> anyhow::Result<Option<crate::cluster::ClusterConfig>> {
        let Some(url) = self.cluster_url.as_deref().filter(|u| !u.trim().is_empty()) else {
            return Ok(None);
        };
        let replica_id = match &self.replica_id {
            Some(id) => id.clone(),
            None => std::env::var("HOSTNAME").map_err(|_| {
                anyhow::anyhow!("--replica-id is needed in cluster mode when $HOSTNAME is not set")
            })?,
        };
        let mut config = crate::cluster::ClusterConfig::new(url.trim(), replica_id);
        config.name = self.cluster_name.clone();
        config.lease_ttl = std::time::Duration::from_secs(self.sync_lease_ttl_secs);
        config.stream_replicas = self.cluster_stream_replicas;
        config.validate().map_err(|e| anyhow::anyhow!(e))?;
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

/// The PEM material of the gRPC server's TLS.
#[derive(Clone)]
pub struct TlsConfig {
    pub cert_pem: Vec<u8>,
    pub key_pem: Vec<u8>,
    /// Client certificates must chain to these (mutual TLS).
    pub client_ca_pem: Option<Vec<u8>>,
}

impl std::fmt::Debug for TlsConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsConfig")
            .field("mutual", &self.client_ca_pem.is_some())
            .finish_non_exhaustive()
    }
}

impl TlsArgs {
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
        let ring = KeyRing::parse(&text).map_err(|e| anyhow::anyhow!(e))?;
        Ok(Some(Arc::new(Sensitive::new(paths, ring))))
    }
}

impl Config {
    /// Refuses combinations that cluster mode does not support yet.
    pub fn validate_modes(&self) -> anyhow::Result<()> {
        anyhow::ensure!(
            self.cluster.is_none() || self.sensitive.is_none(),
            "--sensitive-paths is not supported in cluster mode yet (changes would cross NATS unsealed)"
        );
        Ok(())
    }

    /// The effective configuration as JSON, secrets masked (`clerk-index config`).
    pub fn describe(&self) -> serde_json::Value {
        let seconds = |d: Duration| d.as_secs_f64();
        serde_json::json!({
            "data_dir": self.data_dir.display().to_string(),
            "clerk": {
                "api_url": self.clerk.api_url,
                "secret_key": mask(&self.clerk.secret_key),
                "rate_limit": format!("{}/{}s", self.clerk.rate_limit.requests, self.clerk.rate_limit.per.as_secs_f64()),
            },
            "webhooks": {
                "signing_secrets": self.webhook_secrets.iter().map(|s| mask(s)).collect::<Vec<_>>(),
                "body_limit_bytes": self.webhook_body_limit,
                "timeout_secs": seconds(self.webhook_timeout),
            },
            "index": {
                "writer_memory_mb": self.index.writer_memory_bytes >> 20,
                "writer_threads": self.index.writer_threads,
                "column_cache_mb": self.index.column_cache_bytes >> 20,
                "commit_interval_ms": self.index.commit_interval.as_millis() as u64,
                "tombstone_retention_hours": self.index.tombstone_retention.as_secs() / 3600,
            },
            "reconcile": {
                "catch_up_every_secs": seconds(self.reconcile.catch_up_every),
                "sweep_every_secs": seconds(self.reconcile.sweep_every),
            },
            "segments": {"retained_events": self.segments.retained_events},
            "max_page_size": self.max_page_size,
            "shutdown_timeout_secs": self.shutdown_timeout.as_secs(),
            "auth": {
                "api_keys": self.auth.keys.describe(),
                "allow_unauthenticated": self.auth.allow_unauthenticated,
            },
            "tls": match &self.tls {
                None => "off",
                Some(tls) if tls.client_ca_pem.is_some() => "mutual",
                Some(_) => "on",
            },
            "cluster": self.cluster.as_ref().map(|c| serde_json::json!({
                "url": mask_url(&c.url),
                "name": c.name,
                "replica_id": c.replica_id,
                "sync_lease_ttl_secs": c.lease_ttl.as_secs(),
                "stream_replicas": c.stream_replicas,
            })),
            "sensitive": self.sensitive.as_ref().map(|s| serde_json::json!({
                "paths": s.paths().describe_list(),
                "key_ids": s.ring().ids().collect::<Vec<_>>(),
                "active_key_id": s.ring().active_id(),
            })),
        })
    }
}
