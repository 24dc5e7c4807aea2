//! The one `Config`, made by one [`ConfigBuilder`] (shared by `serve`, `demo` and the tests):
//! a default for every non-secret setting, secrets given by the caller (read from the
//! environment or files by `cli`, never from flags), everything validated once in
//! [`ConfigBuilder::build`] with a message that names the setting. Nothing changes a `Config`
//! afterwards: `app` takes it by value.

use crate::destinations::DestinationsConfig;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::auth::{AuthConfig, Sensitive};
use crate::clerk::rate_limit::{RateLimit, RateLimitError};
use crate::clerk::webhook::{WebhookSecretError, WebhookVerifier};
use crate::clerk::{BudgetShare, ClerkClientConfig, LimitSource};
use crate::cluster::{ClusterConfig, ClusterConfigError};
use crate::index::{ColumnCacheBudget, IndexConfig};
use crate::limits::Limits;
use crate::query::FilterLimits;
use crate::segments::SegmentsConfig;
use crate::sync::{ReconcileSchedule, WalkPlan};

mod describe;

/// The defaults of the settings flags can change (the flags show them).
/// A memory setting: `auto` (sized from the memory limit, and for `--column-cache-mb` the
/// users) or MiB. `--writer-memory-mb` and `--column-cache-mb` take it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemoryMb {
    Auto,
    Mib(usize),
}

impl std::str::FromStr for MemoryMb {
    type Err = String;

    fn from_str(text: &str) -> Result<MemoryMb, String> {
        match text.trim() {
            "auto" => Ok(MemoryMb::Auto),
            number => number
                .parse()
                .map(MemoryMb::Mib)
                .map_err(|_| format!("expected `auto` or a number of MiB, got {number:.40}")),
        }
    }
}

impl std::fmt::Display for MemoryMb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MemoryMb::Auto => f.write_str("auto"),
            MemoryMb::Mib(mib) => write!(f, "{mib}"),
        }
    }
}

pub mod defaults {
    pub const CLERK_RATE_LIMIT: &str = "auto";
    pub const WRITER_MEMORY_MB: &str = "auto";
    pub const COLUMN_CACHE_MB: &str = "auto";
    pub const COMMIT_INTERVAL_MS: u64 = 2000;
    pub const MAX_PAGE_SIZE: u32 = 1000;
    pub const CATCH_UP_INTERVAL_SECS: u64 = 300;
    pub const SWEEP_INTERVAL_SECS: u64 = 21_600;
    pub const SEGMENT_EVENT_RETENTION: usize = 100_000;
    pub const SEGMENT_TIME_RESOLUTION_MS: u64 = 60_000;
    pub const SEGMENT_HISTORY_DAYS: usize = 90;
    pub const SHUTDOWN_TIMEOUT_SECS: u64 = 20;
    /// 16 walks at ~150 ms per page stay under Clerk's production limit of 100 requests/s.
    pub const CLERK_CONCURRENCY: usize = 16;
    pub const CATCH_UP_MAX_OFFSET: u64 = 10_000;
}

/// A setting that cannot be served with, and why.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{setting} {problem}")]
    Setting {
        setting: &'static str,
        problem: String,
    },
    #[error("--clerk-rate-limit: {0}")]
    RateLimit(#[from] RateLimitError),
    #[error("CLERK_WEBHOOK_SIGNING_SECRET: {0}")]
    WebhookSecret(#[from] WebhookSecretError),
    #[error(transparent)]
    Cluster(#[from] ClusterConfigError),
    #[error(
        "no API keys configured: set CLERK_INDEX_API_KEYS or --api-keys-file (create keys with \
         `clerk-index api-key create`), or pass --allow-unauthenticated to let anyone who can \
         reach the gRPC port read every user"
    )]
    NoApiKeys,
}

fn check_limits(limits: &Limits) -> Result<(), ConfigError> {
    let positive = [
        (
            limits.streams_per_connection as usize,
            "--max-streams-per-connection",
        ),
        (limits.exports, "--max-exports"),
        (limits.exports_per_key, "--max-exports-per-key"),
        (limits.watches, "--max-watches"),
        (limits.watches_per_key, "--max-watches-per-key"),
        (limits.http_connections, "--max-http-connections"),
        (limits.grpc_connections, "--max-grpc-connections"),
        (
            limits.grpc_connections_per_peer,
            "--max-grpc-connections-per-peer",
        ),
        (
            limits.http_header_timeout.as_millis() as usize,
            "--http-header-timeout-secs",
        ),
        (
            limits.stream_heartbeat.as_millis() as usize,
            "--stream-heartbeat-secs",
        ),
    ];
    for (value, setting) in positive {
        check(value > 0, setting, "must be positive")?;
    }
    check(
        limits.stream_buffer_bytes >= 64 << 10,
        "--stream-buffer-bytes",
        "must be at least 65536",
    )
}

/// The gRPC-Web origins, each `scheme://host[:port]` as a browser sends it in `Origin`.
fn origins(origins: &[String]) -> Result<Vec<http::HeaderValue>, ConfigError> {
    let mut values = Vec::new();
    for origin in origins.iter().map(|o| o.trim()).filter(|o| !o.is_empty()) {
        let uri: Option<http::Uri> = origin.parse().ok();
        let plain = uri.as_ref().is_some_and(|uri| {
            matches!(uri.scheme_str(), Some("http" | "https"))
                && uri.host().is_some()
                && uri
                    .path_and_query()
                    .is_none_or(|p| p.as_str().is_empty() || p == "/")
                && !origin.ends_with('/')
        });
        check(
            plain,
            "--grpc-web-origin",
            &format!("{origin:?} is not scheme://host[:port]"),
        )?;
        values.push(http::HeaderValue::from_str(origin).expect("a parsed URI is a header value"));
    }
    Ok(values)
}

fn check(ok: bool, setting: &'static str, problem: &str) -> Result<(), ConfigError> {
    if ok {
        Ok(())
    } else {
        Err(ConfigError::Setting {
            setting,
            problem: problem.to_string(),
        })
    }
}

/// Everything `app` needs, validated. Built only by [`ConfigBuilder::build`].
#[derive(Debug, Clone)]
pub struct Config {
    /// Holds `index/` (the tantivy index) and `segments/` (saved segments and their event log).
    pub(crate) data_dir: PathBuf,
    pub(crate) index: IndexConfig,
    pub(crate) segments: SegmentsConfig,
    pub(crate) destinations: DestinationsConfig,
    pub(crate) clerk: ClerkClientConfig,
    pub(crate) filter_limits: FilterLimits,
    pub(crate) max_page_size: u32,
    /// Page size and parallel walks of the backfill and the sweep.
    pub(crate) walk: WalkPlan,
    /// How deep the `-updated_at` catch-up pages by offset before it hands over to a sweep.
    pub(crate) catch_up_max_offset: u64,
    /// The webhook verifier of the signing secrets; `None`: deliveries are refused.
    pub(crate) webhook_verifier: Option<WebhookVerifier>,
    webhook_secrets: Vec<String>,
    pub(crate) webhook_body_limit: usize,
    pub(crate) webhook_timeout: Duration,
    /// Longest a read waits for a requested `min_generation`.
    pub(crate) max_read_wait: Duration,
    pub(crate) reconcile: ReconcileSchedule,
    pub(crate) auth: AuthConfig,
    /// How long in-flight gRPC calls may run on after a shutdown signal.
    pub(crate) shutdown_timeout: Duration,
    /// What one caller (or the unauthenticated world) may hold.
    pub(crate) limits: Limits,
    /// The web console at `/` on the HTTP port.
    pub(crate) console: bool,
    /// Browser origins allowed to call the gRPC port by gRPC-Web.
    pub(crate) grpc_web_origins: Vec<http::HeaderValue>,
    /// The files read again while serving.
    pub(crate) follow: FollowFiles,
    /// TLS for the gRPC port; `None` serves plaintext.
    pub(crate) tls: Option<TlsConfig>,
    pub(crate) sensitive: Option<Arc<Sensitive>>,
    /// Cluster mode: the change log's NATS; `None` in single mode.
    pub(crate) cluster: Option<ClusterConfig>,
}

/// The files read again while serving, and how often they are checked.
#[derive(Debug, Clone)]
pub struct FollowFiles {
    pub api_keys: Option<PathBuf>,
    pub sensitive_keys: Option<PathBuf>,
    pub tls: Option<TlsFiles>,
    pub every: Duration,
}

/// Where the gRPC port's TLS material came from.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub client_ca: Option<PathBuf>,
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

impl TlsConfig {
    /// `off`, `on` or `mutual`.
    pub fn mode(tls: Option<&TlsConfig>) -> &'static str {
        match tls {
            None => "off",
            Some(tls) if tls.client_ca_pem.is_some() => "mutual",
            Some(_) => "on",
        }
    }
}

/// Every setting a deployment may change, with its default (the flags show the same ones).
/// Secrets are given here only once `cli` has read them from the environment or a file.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Client-side limit for Clerk requests, as `N/window` (`900/10s`).
    pub clerk_rate_limit: String,
    /// The first backoff after a failed Clerk request; `None`: the client's default.
    pub clerk_initial_backoff: Option<Duration>,
    /// How long one Clerk request may take; `None`: the client's default (30 s).
    pub clerk_request_timeout: Option<Duration>,
    /// Memory budget of the index writer, in MiB (at least 20), or automatic.
    pub writer_memory_mb: MemoryMb,
    /// Memory for decoded range and sort columns.
    pub column_cache_mb: MemoryMb,
    /// Longest time a bulk change waits for its commit, in milliseconds.
    pub commit_interval_ms: u64,
    /// Largest page a SearchUsers request may ask for (1 to 10,000).
    pub max_page_size: u32,
    /// Clerk users per backfill page (Clerk allows up to 500).
    pub backfill_page_size: u32,
    /// Listing requests in flight at once in backfills and sweeps (1 to 64).
    pub clerk_concurrency: usize,
    /// How deep the catch-up pages by offset before it hands over to a sweep (100 to 100,000).
    pub catch_up_max_offset: u64,
    pub catch_up_interval_secs: u64,
    pub sweep_interval_secs: u64,
    /// Saved-segment events kept for replays (at least 100).
    pub segment_event_retention: usize,
    /// Milliseconds between ticks of time-driven segments (at least 10).
    pub segment_time_resolution_ms: u64,
    /// Days of per-day segment history kept (1 to 3,650).
    pub segment_history_days: usize,
    /// What "now" is for time-driven segments (tests set a fake one).
    pub clock: crate::clock::Clock,
    /// Most segment events held for destinations that have not delivered them.
    pub destination_held_events: usize,
    /// Where destinations may deliver, their retries and limits.
    pub destinations: DestinationsConfig,
    pub shutdown_timeout_secs: u64,
    /// Svix signing secrets (`whsec_...`); several during a rotation, none refuses webhooks.
    pub webhook_secrets: Vec<String>,
    pub webhook_body_limit: usize,
    pub webhook_timeout: Duration,
    /// Longest a read waits for a requested generation or log sequence.
    pub max_read_wait: Duration,
    /// API keys, and whether serving without any is allowed.
    pub auth: AuthConfig,
    pub tls: Option<TlsConfig>,
    /// Sensitive paths and their key ring.
    pub sensitive: Option<Arc<Sensitive>>,
    /// Cluster mode's NATS.
    pub cluster: Option<ClusterConfig>,
    /// Streams, exports, watches, buffers, HTTP connections, unauthenticated log lines.
    pub limits: Limits,
    /// Serve the web console at `/` on the HTTP port.
    pub console: bool,
    /// Browser origins (`scheme://host[:port]`) allowed to call the gRPC port by gRPC-Web.
    pub grpc_web_origins: Vec<String>,
    /// The file the API keys came from, read again when it changes; `None`: keys are fixed.
    pub api_keys_file: Option<PathBuf>,
    /// The file the sensitive key ring came from, likewise.
    pub sensitive_keys_file: Option<PathBuf>,
    /// The files `tls` came from, likewise.
    pub tls_files: Option<TlsFiles>,
    /// How often files read again while serving are checked.
    pub reload_interval: Duration,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            clerk_rate_limit: defaults::CLERK_RATE_LIMIT.into(),
            clerk_initial_backoff: None,
            clerk_request_timeout: None,
            writer_memory_mb: MemoryMb::Auto,
            column_cache_mb: MemoryMb::Auto,
            commit_interval_ms: defaults::COMMIT_INTERVAL_MS,
            max_page_size: defaults::MAX_PAGE_SIZE,
            backfill_page_size: 500,
            clerk_concurrency: defaults::CLERK_CONCURRENCY,
            catch_up_max_offset: defaults::CATCH_UP_MAX_OFFSET,
            catch_up_interval_secs: defaults::CATCH_UP_INTERVAL_SECS,
            sweep_interval_secs: defaults::SWEEP_INTERVAL_SECS,
            segment_event_retention: defaults::SEGMENT_EVENT_RETENTION,
            segment_time_resolution_ms: defaults::SEGMENT_TIME_RESOLUTION_MS,
            segment_history_days: defaults::SEGMENT_HISTORY_DAYS,
            clock: crate::clock::Clock::system(),
            destinations: DestinationsConfig::default(),
            destination_held_events: 1_000_000,
            shutdown_timeout_secs: defaults::SHUTDOWN_TIMEOUT_SECS,
            webhook_secrets: Vec::new(),
            webhook_body_limit: 1 << 20,
            webhook_timeout: Duration::from_secs(10),
            max_read_wait: Duration::from_secs(5),
            auth: AuthConfig::default(),
            tls: None,
            sensitive: None,
            cluster: None,
            limits: Limits::default(),
            console: true,
            grpc_web_origins: Vec::new(),
            api_keys_file: None,
            sensitive_keys_file: None,
            tls_files: None,
            reload_interval: Duration::from_secs(5),
        }
    }
}

/// Collects settings; [`ConfigBuilder::build`] checks them all at once.
#[derive(Debug, Clone)]
pub struct ConfigBuilder {
    data_dir: PathBuf,
    clerk_api_url: String,
    clerk_secret_key: String,
    settings: Settings,
}

impl Config {
    /// A builder with every default, for an index in `data_dir` mirroring the Clerk instance at
    /// `clerk_api_url` (without `/v1`) with `clerk_secret_key`.
    pub fn builder(
        data_dir: impl Into<PathBuf>,
        clerk_api_url: &str,
        clerk_secret_key: &str,
    ) -> ConfigBuilder {
        ConfigBuilder {
            data_dir: data_dir.into(),
            clerk_api_url: clerk_api_url.trim().trim_end_matches('/').to_string(),
            clerk_secret_key: clerk_secret_key.trim().to_string(),
            settings: Settings::default(),
        }
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }
}

impl ConfigBuilder {
    /// Changes settings (checked by [`ConfigBuilder::build`]).
    pub fn settings(mut self, change: impl FnOnce(&mut Settings)) -> Self {
        change(&mut self.settings);
        self
    }

    /// Checks every setting and builds the configuration.
    pub fn build(self) -> Result<Config, ConfigError> {
        let settings = self.settings;
        let rate_limit = match settings.clerk_rate_limit.trim() {
            "auto" | "" => LimitSource::Instance,
            given => LimitSource::Given(RateLimit::parse(given)?),
        };
        let writer_memory_mb = match settings.writer_memory_mb {
            MemoryMb::Mib(mib) => mib,
            MemoryMb::Auto => crate::index::auto_writer_memory_here() >> 20,
        };
        check(
            writer_memory_mb >= 20,
            "--writer-memory-mb",
            "must be at least 20 (tantivy needs ~15 MiB per indexing thread)",
        )?;
        check(
            (1..=10_000).contains(&settings.max_page_size),
            "--max-page-size",
            "must be between 1 and 10000",
        )?;
        check(
            settings.commit_interval_ms > 0,
            "--commit-interval-ms",
            "must be positive",
        )?;
        check(
            settings.catch_up_interval_secs > 0 && settings.sweep_interval_secs > 0,
            "--catch-up-interval-secs and --sweep-interval-secs",
            "must be positive",
        )?;
        check(
            settings.segment_event_retention >= 100,
            "--segment-event-retention",
            "must be at least 100",
        )?;
        check(
            settings.segment_time_resolution_ms >= 10,
            "--segment-time-resolution-ms",
            "must be at least 10",
        )?;
        check(
            (1..=3_650).contains(&settings.segment_history_days),
            "--segment-history-days",
            "must be between 1 and 3650",
        )?;
        check(
            (1..=500).contains(&settings.backfill_page_size),
            "the backfill page size",
            "must be between 1 and 500 (Clerk's largest page)",
        )?;
        check(
            (1..=64).contains(&settings.clerk_concurrency),
            "--clerk-concurrency",
            "must be between 1 and 64",
        )?;
        check(
            (100..=100_000).contains(&settings.catch_up_max_offset),
            "--catch-up-max-offset",
            "must be between 100 and 100000 (Clerk's large offsets get slow and time out)",
        )?;
        let url = &self.clerk_api_url;
        check(
            url.starts_with("http://") || url.starts_with("https://"),
            "--clerk-api-url",
            &format!("must start with http:// or https:// (got {url:?})"),
        )?;
        check(
            !url.ends_with("/v1"),
            "--clerk-api-url",
            "is the host without /v1 (e.g. https://api.clerk.com)",
        )?;
        check(
            !self.clerk_secret_key.is_empty(),
            "the Clerk secret key",
            "is empty",
        )?;
        check_limits(&settings.limits)?;
        if settings.auth.keys.is_empty() && !settings.auth.allow_unauthenticated {
            return Err(ConfigError::NoApiKeys);
        }
        if let Some(cluster) = &settings.cluster {
            cluster.validate()?;
        }
        let webhook_verifier = match settings.webhook_secrets.is_empty() {
            true => None,
            false => Some(WebhookVerifier::new(&settings.webhook_secrets)?),
        };
        let mut index = IndexConfig::new(self.data_dir.join("index"));
        index.writer_memory_bytes = writer_memory_mb << 20;
        index.writer_threads = if writer_memory_mb >= 64 { 2 } else { 1 };
        index.commit_interval = Duration::from_millis(settings.commit_interval_ms);
        index.column_cache = match settings.column_cache_mb {
            MemoryMb::Auto => ColumnCacheBudget::Auto,
            MemoryMb::Mib(mib) => ColumnCacheBudget::Fixed(mib << 20),
        };
        // An index sealed otherwise is rebuilt (it may hold a now-sensitive path in plaintext).
        index.sealing = settings
            .sensitive
            .as_ref()
            .map(|s| s.fingerprint())
            .unwrap_or_default();
        let mut clerk = ClerkClientConfig::new(&self.clerk_api_url, &self.clerk_secret_key);
        clerk.rate_limit = rate_limit;
        if let Some(cluster) = &settings.cluster {
            clerk.budget_share = BudgetShare::Cluster {
                replicas: cluster.replicas,
            };
        }
        if let Some(timeout) = settings.clerk_request_timeout {
            clerk.request_timeout = timeout;
        }
        if let Some(backoff) = settings.clerk_initial_backoff {
            clerk.initial_backoff = backoff;
        }
        let mut auth = settings.auth;
        auth.sensitive = settings.sensitive.clone();
        Ok(Config {
            index,
            segments: SegmentsConfig {
                retained_events: settings.segment_event_retention,
                time_resolution: Duration::from_millis(settings.segment_time_resolution_ms),
                clock: settings.clock.clone(),
                history_days: settings.segment_history_days,
                held_events_max: settings
                    .destination_held_events
                    .max(settings.segment_event_retention),
                ..SegmentsConfig::default()
            },
            destinations: settings.destinations,
            clerk,
            filter_limits: FilterLimits::default(),
            max_page_size: settings.max_page_size,
            walk: WalkPlan {
                page_size: settings.backfill_page_size,
                concurrency: settings.clerk_concurrency,
            },
            catch_up_max_offset: settings.catch_up_max_offset,
            webhook_verifier,
            webhook_secrets: settings.webhook_secrets,
            webhook_body_limit: settings.webhook_body_limit,
            webhook_timeout: settings.webhook_timeout,
            max_read_wait: settings.max_read_wait,
            reconcile: ReconcileSchedule {
                catch_up_every: Duration::from_secs(settings.catch_up_interval_secs),
                sweep_every: Duration::from_secs(settings.sweep_interval_secs),
            },
            auth,
            shutdown_timeout: Duration::from_secs(settings.shutdown_timeout_secs),
            limits: settings.limits,
            console: settings.console,
            grpc_web_origins: origins(&settings.grpc_web_origins)?,
            follow: FollowFiles {
                api_keys: settings.api_keys_file,
                sensitive_keys: settings.sensitive_keys_file,
                tls: settings.tls_files.filter(|_| settings.tls.is_some()),
                every: settings.reload_interval,
            },
            tls: settings.tls,
            sensitive: settings.sensitive,
            cluster: settings.cluster,
            data_dir: self.data_dir,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::MemoryMb;

    #[test]
    fn a_memory_setting_is_auto_or_mib() {
        assert_eq!("auto".parse(), Ok(MemoryMb::Auto));
        assert_eq!(" 512 ".parse(), Ok(MemoryMb::Mib(512)));
        let error = "lots".parse::<MemoryMb>().unwrap_err();
        assert!(error.contains("`auto` or a number of MiB"), "{error}");
        assert_eq!(MemoryMb::Mib(64).to_string(), "64");
    }
}
