//! One `TestServer` for the integration tests: the real service on 127.0.0.1:0 with a temp
//! data dir, backfilling from a real fake-Clerk HTTP server, reached over real gRPC.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use clerk_index::api::proto::user_index_client::UserIndexClient;
use clerk_index::app::{self, Listeners, USER_INDEX_SERVICE};
use clerk_index::clerk::fake::{FakeClerk, FakeClerkConfig, Population};
use clerk_index::clerk::model::parse_user;
use clerk_index::config::Config;
use clerk_index::user::User;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

/// A fake Clerk on 127.0.0.1:0, stopped when dropped.
pub struct RunningFakeClerk {
    pub fake: FakeClerk,
    pub url: String,
    stop: CancellationToken,
}

impl RunningFakeClerk {
    pub async fn start(config: FakeClerkConfig) -> Self {
        let fake = FakeClerk::new(config);
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let stop = CancellationToken::new();
        tokio::spawn(fake.clone().serve(listener, stop.clone().cancelled_owned()));
        RunningFakeClerk { fake, url, stop }
    }

    /// Every user the fake holds, parsed as the service would.
    pub fn users(&self) -> Vec<Arc<User>> {
        self.fake
            .user_ids()
            .iter()
            .map(|id| {
                let json = self.fake.user_json(id).unwrap();
                let raw = serde_json::value::RawValue::from_string(json.to_string()).unwrap();
                Arc::new(parse_user(&raw).unwrap())
            })
            .collect()
    }
}

impl Drop for RunningFakeClerk {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// Settings a test may change before starting the server.
/// The webhook signing secret test servers use.
pub const WEBHOOK_SECRET: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";

pub struct TestOptions {
    pub clerk_url: String,
    pub rate_limit: String,
    pub page_size: u32,
    /// Listing requests in flight at once (the service's default is 16).
    pub concurrency: usize,
    pub catch_up_max_offset: u64,
    pub commit_interval_ms: u64,
    pub sweep_interval_secs: u64,
    pub webhook_timeout: Duration,
    pub auth: clerk_index::auth::AuthConfig,
    pub tls: Option<clerk_index::config::TlsConfig>,
    pub sensitive: Option<Arc<clerk_index::auth::Sensitive>>,
    pub shutdown_timeout_secs: u64,
    pub cluster: Option<clerk_index::cluster::ClusterConfig>,
    pub limits: clerk_index::limits::Limits,
    /// How long one Clerk request may take (the service's default is 30 s).
    pub clerk_request_timeout: Option<Duration>,
    /// An API key file to follow while serving (checked every 100 ms).
    pub api_keys_file: Option<PathBuf>,
    /// A sensitive key ring file to follow while serving.
    pub sensitive_keys_file: Option<PathBuf>,
    /// The files `tls` came from, to follow while serving.
    pub tls_files: Option<clerk_index::config::TlsFiles>,
    /// What "now" is for time-driven segments, and how often they tick.
    pub clock: clerk_index::clock::Clock,
    pub segment_time_resolution_ms: u64,
    /// Serve the web console at `/`.
    pub console: bool,
    /// Browser origins allowed to call the gRPC port by gRPC-Web.
    pub grpc_web_origins: Vec<String>,
}

impl TestOptions {
    pub fn new(clerk_url: &str) -> Self {
        TestOptions {
            clerk_url: clerk_url.into(),
            rate_limit: "1000/1s".into(),
            page_size: 500,
            concurrency: 16,
            catch_up_max_offset: 10_000,
            commit_interval_ms: 100,
            sweep_interval_secs: 3_600,
            webhook_timeout: Duration::from_secs(10),
            auth: clerk_index::auth::AuthConfig::unauthenticated(),
            tls: None,
            sensitive: None,
            shutdown_timeout_secs: 20,
            cluster: None,
            limits: clerk_index::limits::Limits::default(),
            clerk_request_timeout: None,
            api_keys_file: None,
            sensitive_keys_file: None,
            tls_files: None,
            clock: clerk_index::clock::Clock::system(),
            segment_time_resolution_ms: 60_000,
            console: true,
            grpc_web_origins: Vec::new(),
        }
    }
}

/// Serves `options` with one new API key per `(name, scopes)` (scopes comma-separated) and
/// no access without a key; answers the keys in the same order.
pub fn with_keys(options: &mut TestOptions, keys: &[(&str, &str)]) -> Vec<String> {
    let mut lines = String::new();
    let mut secrets = Vec::new();
    for (name, scopes) in keys {
        let (key, hash) = clerk_index::auth::generate_key();
        lines.push_str(&format!("{name} {scopes} {hash}\n"));
        secrets.push(key);
    }
    options.auth = clerk_index::auth::AuthConfig {
        keys: clerk_index::auth::ApiKeys::parse(&lines).unwrap(),
        allow_unauthenticated: false,
        sensitive: None,
    };
    secrets
}

pub struct TestServer {
    pub grpc_url: String,
    pub http_url: String,
    pub data_dir: PathBuf,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl TestServer {
    pub async fn start(data_dir: &Path, options: TestOptions) -> TestServer {
        let config = Config::builder(data_dir, &options.clerk_url, "sk_test_fake_clerk")
            .settings(|s| {
                s.clerk_rate_limit = options.rate_limit.clone();
                s.writer_memory_mb = clerk_index::config::MemoryMb::Mib(50);
                s.column_cache_mb = clerk_index::config::MemoryMb::Mib(64);
                s.commit_interval_ms = options.commit_interval_ms;
                // Tests trigger reconciles through the Sync service when they want one.
                s.catch_up_interval_secs = 3_600;
                s.sweep_interval_secs = options.sweep_interval_secs;
                s.shutdown_timeout_secs = options.shutdown_timeout_secs;
                s.backfill_page_size = options.page_size;
                s.clerk_concurrency = options.concurrency;
                s.catch_up_max_offset = options.catch_up_max_offset;
                s.webhook_secrets = vec![WEBHOOK_SECRET.to_string()];
                s.max_read_wait = Duration::from_millis(500);
                s.webhook_timeout = options.webhook_timeout;
                s.auth = options.auth.clone();
                s.tls = options.tls.clone();
                s.sensitive = options.sensitive.clone();
                s.cluster = options.cluster.clone();
                s.limits = options.limits.clone();
                s.clerk_request_timeout = options.clerk_request_timeout;
                s.api_keys_file = options.api_keys_file.clone();
                s.sensitive_keys_file = options.sensitive_keys_file.clone();
                s.tls_files = options.tls_files.clone();
                s.reload_interval = Duration::from_millis(100);
                s.clerk_initial_backoff = Some(Duration::from_millis(20));
                s.clock = options.clock.clone();
                s.segment_time_resolution_ms = options.segment_time_resolution_ms;
                s.console = options.console;
                s.grpc_web_origins = options.grpc_web_origins.clone();
                // Test receivers listen on 127.0.0.1 over plain HTTP.
                s.destinations.allow_private = true;
                s.destinations.allow_http = true;
                s.destinations.retry_initial_delay = Duration::from_millis(20);
                s.destinations.retry_max_delay = Duration::from_millis(200);
            })
            .build()
            .unwrap();
        let grpc = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let http = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let grpc_url = format!("http://{}", grpc.local_addr().unwrap());
        let http_url = format!("http://{}", http.local_addr().unwrap());
        let stop = CancellationToken::new();
        let running = app::run(
            config,
            Listeners { grpc, http },
            stop.clone().cancelled_owned(),
        );
        let task = tokio::spawn(async move {
            let result = running.await;
            if let Err(error) = &result {
                eprintln!("the test server stopped with an error: {error:#}");
            }
            result
        });
        TestServer {
            grpc_url,
            http_url,
            data_dir: data_dir.to_path_buf(),
            stop,
            task,
        }
    }

    /// Starts against a fake with `users` generated users that injects `faults`, backfilling in
    /// pages of 100, and waits until it serves.
    pub async fn with_faulty_clerk(
        data_dir: &Path,
        users: usize,
        faults: clerk_index::clerk::fake::FaultInjection,
    ) -> (RunningFakeClerk, TestServer) {
        let mut config = FakeClerkConfig::new(Population::new(users));
        config.faults = faults;
        let fake = RunningFakeClerk::start(config).await;
        let mut options = TestOptions::new(&fake.url);
        options.page_size = 100;
        let server = TestServer::start(data_dir, options).await;
        server.wait_serving().await;
        (fake, server)
    }

    /// Starts against a fake with `users` generated users and waits until it serves.
    pub async fn with_population(data_dir: &Path, users: usize) -> (RunningFakeClerk, TestServer) {
        let fake = RunningFakeClerk::start(FakeClerkConfig::new(Population::new(users))).await;
        let server = TestServer::start(data_dir, TestOptions::new(&fake.url)).await;
        server.wait_serving().await;
        (fake, server)
    }

    pub async fn channel(&self) -> Channel {
        for _ in 0..100 {
            if let Ok(channel) = Channel::from_shared(self.grpc_url.clone())
                .unwrap()
                .connect()
                .await
            {
                return channel;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!(
            "the gRPC server at {} never accepted a connection",
            self.grpc_url
        );
    }

    pub async fn client(&self) -> UserIndexClient<Channel> {
        UserIndexClient::new(self.channel().await)
    }

    pub async fn health(&self) -> ServingStatus {
        let mut health = HealthClient::new(self.channel().await);
        let response = health
            .check(HealthCheckRequest {
                service: USER_INDEX_SERVICE.into(),
            })
            .await
            .unwrap_or_else(|status| {
                // Say why when the server itself stopped (it failed to start).
                if self.task.is_finished() {
                    panic!("the server stopped ({status}); its error is printed above");
                }
                panic!("health check failed: {status}")
            });
        ServingStatus::try_from(response.into_inner().status).unwrap()
    }

    /// Polls health until SERVING (at most 60 s).
    pub async fn wait_serving(&self) {
        for _ in 0..600 {
            if self.health().await == ServingStatus::Serving {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("the server never reported SERVING");
    }

    /// CountUsers with a text filter (`None`: every user).
    pub async fn count_matching(
        &self,
        filter: Option<&str>,
    ) -> clerk_index::api::proto::CountUsersResponse {
        let request = clerk_index::api::proto::CountUsersRequest {
            filter: filter.and_then(expression),
            ..Default::default()
        };
        self.client()
            .await
            .count_users(request)
            .await
            .unwrap()
            .into_inner()
    }

    /// The number of users matching a text filter.
    pub async fn count(&self, filter: &str) -> u64 {
        self.count_matching(Some(filter)).await.count
    }

    /// GetUser as parsed Clerk JSON, or the gRPC code it failed with.
    /// Every id the index holds, in id order.
    pub async fn all_ids(&self) -> Vec<String> {
        let mut client = self.client().await;
        let mut ids = Vec::new();
        let mut page_token = String::new();
        loop {
            let page = client
                .search_users(clerk_index::api::proto::SearchUsersRequest {
                    page_size: 1000,
                    page_token,
                    fields: vec!["id".into()],
                    ..Default::default()
                })
                .await
                .unwrap()
                .into_inner();
            ids.extend(page.users.into_iter().map(|u| u.id));
            if page.next_page_token.is_empty() {
                return ids;
            }
            page_token = page.next_page_token;
        }
    }

    pub async fn user_json(&self, id: &str) -> Result<serde_json::Value, tonic::Code> {
        let request = clerk_index::api::proto::GetUserRequest {
            user_id: id.into(),
            ..Default::default()
        };
        match self.client().await.get_user(request).await {
            Ok(response) => {
                Ok(serde_json::from_str(&response.into_inner().user.unwrap().json).unwrap())
            }
            Err(status) => Err(status.code()),
        }
    }

    /// The user's `public_metadata.plan_type` as the index holds it; `None` when it holds no
    /// such user.
    pub async fn plan_of(&self, id: &str) -> Option<String> {
        match self.user_json(id).await {
            Ok(json) => Some(
                json["public_metadata"]["plan_type"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
            ),
            Err(tonic::Code::NotFound) => None,
            Err(code) => panic!("get_user failed with {code:?}"),
        }
    }

    /// The text of `GET /metrics`.
    pub async fn metrics_text(&self) -> String {
        reqwest::get(format!("{}/metrics", self.http_url))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// `GetSyncStatus` as an operator sees it.
    pub async fn sync_status(&self) -> clerk_index::api::proto::SyncStatus {
        clerk_index::api::proto::sync_client::SyncClient::new(self.channel().await)
            .get_sync_status(clerk_index::api::proto::GetSyncStatusRequest {})
            .await
            .unwrap()
            .into_inner()
    }

    /// Waits (up to 10 s) until the server has learned its Clerk instance; its status then.
    pub async fn instance_learned(&self) -> clerk_index::api::proto::ClerkInstance {
        for _ in 0..200 {
            let clerk = self.sync_status().await.clerk.unwrap();
            if !clerk.instance_id.is_empty() {
                return clerk;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("GET /v1/instance was never learned");
    }

    /// Delivers a signed webhook like Svix; returns the status and the JSON answer.
    pub async fn deliver(
        &self,
        svix_id: &str,
        event: &serde_json::Value,
    ) -> (u16, serde_json::Value) {
        deliver(&self.http_url, svix_id, event).await
    }

    /// Stops the server the way SIGTERM does and waits for a clean exit.
    pub async fn stop(self) {
        self.stop.cancel();
        self.task.await.unwrap().unwrap();
    }
}

/// Signs `body` as Svix would with [`WEBHOOK_SECRET`]: the three `svix-*` headers.
pub fn svix_headers(svix_id: &str, body: &[u8]) -> Vec<(&'static str, String)> {
    let verifier =
        clerk_index::clerk::webhook::WebhookVerifier::new(&[WEBHOOK_SECRET.to_string()]).unwrap();
    let timestamp = clerk_index::clock::now_ms() / 1000;
    vec![
        ("svix-id", svix_id.to_string()),
        ("svix-timestamp", timestamp.to_string()),
        ("svix-signature", verifier.sign(svix_id, timestamp, body)),
    ]
}

/// POSTs a signed event to `{http_url}/webhooks/clerk`.
pub async fn deliver(
    http_url: &str,
    svix_id: &str,
    event: &serde_json::Value,
) -> (u16, serde_json::Value) {
    let body = serde_json::to_vec(event).unwrap();
    let mut request = reqwest::Client::new()
        .post(format!("{http_url}/webhooks/clerk"))
        .body(body.clone());
    for (name, value) in svix_headers(svix_id, &body) {
        request = request.header(name, value);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (
        status,
        response.json().await.unwrap_or(serde_json::Value::Null),
    )
}

/// A Clerk webhook envelope around `data`.
pub fn event(event_type: &str, data: serde_json::Value, timestamp_ms: i64) -> serde_json::Value {
    serde_json::json!({
        "data": data, "object": "event", "type": event_type, "timestamp": timestamp_ms,
        "instance_id": clerk_index::clerk::fake::FAKE_INSTANCE_ID, "event_attributes": {"http_request": {"client_ip": "127.0.0.1", "user_agent": "test"}}
    })
}

/// A text filter as a `FilterSpec`.
pub fn expression(text: &str) -> Option<clerk_index::api::proto::FilterSpec> {
    use clerk_index::api::proto::{FilterSpec, filter_spec};
    Some(FilterSpec {
        spec: Some(filter_spec::Spec::Expression(text.into())),
    })
}

/// Calls the fake Clerk's Backend API as a Clerk SDK would; panics unless it succeeds.
pub async fn clerk_api(
    fake_url: &str,
    method: reqwest::Method,
    path: &str,
    body: Option<serde_json::Value>,
) -> serde_json::Value {
    let mut request = reqwest::Client::new()
        .request(method, format!("{fake_url}{path}"))
        .bearer_auth("sk_test_fake_clerk");
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.unwrap();
    assert!(
        response.status().is_success(),
        "{path}: {}",
        response.status()
    );
    response.json().await.unwrap()
}

/// A real `nats-server` with JetStream on 127.0.0.1, its storage in a temp dir; stopped on drop.
/// `scripts/install-nats-server` (run by `scripts/test`) installs Debian's package.
pub struct NatsServer {
    pub url: String,
    port: u16,
    child: Option<std::process::Child>,
    store: tempfile::TempDir,
}

impl NatsServer {
    /// Where this server keeps JetStream's files.
    pub fn store_dir(&self) -> &Path {
        self.store.path()
    }

    pub async fn start() -> NatsServer {
        let store = tempfile::tempdir().unwrap();
        let port = free_port();
        let mut server = NatsServer {
            url: format!("nats://127.0.0.1:{port}"),
            port,
            child: None,
            store,
        };
        server.restart().await;
        server
    }

    /// Kills the server (its JetStream files stay).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again, on the same port and files.
    pub async fn restart(&mut self) {
        let binary = std::env::var("NATS_SERVER").unwrap_or_else(|_| "nats-server".into());
        let child = std::process::Command::new(&binary)
            .args([
                "-a",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-js",
                "-sd",
            ])
            .arg(self.store.path())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot run {binary} ({e}): run scripts/install-nats-server first")
            });
        self.child = Some(child);
        for _ in 0..100 {
            if tokio::net::TcpStream::connect(("127.0.0.1", self.port))
                .await
                .is_ok()
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        self.stop();
        panic!("nats-server did not start on port {}", self.port);
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A port that was free a moment ago, for servers in child processes (which bind it themselves).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The real binary serving `data_dir` against the fake Clerk at `clerk_url`, without keys, on
/// 127.0.0.1 ports `grpc` and `http`, with `extra` flags; killed when dropped.
pub fn spawn_serve(
    data_dir: &Path,
    clerk_url: &str,
    grpc: u16,
    http: u16,
    extra: &[&str],
) -> tokio::process::Child {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_clerk-index"))
        .args(["serve", "--grpc-addr", &format!("127.0.0.1:{grpc}")])
        .args(["--http-addr", &format!("127.0.0.1:{http}")])
        .args(["--clerk-api-url", clerk_url, "--writer-memory-mb", "50"])
        .arg("--allow-unauthenticated")
        .args(extra)
        .arg("--data-dir")
        .arg(data_dir)
        .env("CLERK_SECRET_KEY", "sk_test_fake_clerk")
        .env("CLERK_WEBHOOK_SIGNING_SECRET", WEBHOOK_SECRET)
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .unwrap()
}

/// Sends SIGTERM to a child process, as Kubernetes does to stop a pod.
pub fn terminate(child: &tokio::process::Child) {
    let pid = child.id().expect("the process is running").to_string();
    let sent = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(sent.success(), "kill -TERM {pid} failed");
}

/// Polls `GET {http_url}/readyz` until 200 (at most 60 s): readiness without a gRPC client (for
/// servers behind TLS or in another process).
pub async fn wait_ready(http_url: &str) {
    for _ in 0..600 {
        if let Ok(response) = reqwest::get(format!("{http_url}/readyz")).await
            && response.status().is_success()
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the server at {http_url} never became ready");
}

pub type Authed =
    tonic::service::interceptor::InterceptedService<Channel, clerk_index::cli::Authorization>;

/// A channel that sends `authorization: <header>` with every call.
pub fn with_header(channel: Channel, header: Option<String>) -> Authed {
    tonic::service::interceptor::InterceptedService::new(
        channel,
        clerk_index::cli::Authorization(header.map(|h| h.parse().unwrap())),
    )
}

/// Collects the failed checks of a table-driven test, each named by its case, so one run
/// reports every failing case instead of stopping at the first. [`Checks::finish`] fails the
/// test with the whole list.
#[derive(Default)]
pub struct Checks {
    failures: Vec<String>,
}

impl Checks {
    /// Records a failure of `case` unless `ok`.
    pub fn check(
        &mut self,
        case: impl std::fmt::Display,
        ok: bool,
        detail: impl std::fmt::Display,
    ) {
        if !ok {
            self.failures.push(format!("{case}: {detail}"));
        }
    }

    /// The value of an answer that must succeed; records the failure of `case` otherwise.
    pub fn ok<T>(
        &mut self,
        case: impl std::fmt::Display,
        result: Result<T, tonic::Status>,
    ) -> Option<T> {
        match result {
            Ok(value) => Some(value),
            Err(status) => {
                self.failures
                    .push(format!("{case}: failed with {status:?}"));
                None
            }
        }
    }

    /// Checks that an answer is PERMISSION_DENIED naming `scope`.
    pub fn denied<T>(
        &mut self,
        case: impl std::fmt::Display,
        result: Result<T, tonic::Status>,
        scope: &str,
    ) {
        match result {
            Ok(_) => self.failures.push(format!(
                "{case}: allowed, expected a denial for lacking {scope}"
            )),
            Err(status) => {
                let named = status
                    .message()
                    .contains(&format!("lacks the {scope} scope"));
                if status.code() != tonic::Code::PermissionDenied || !named {
                    self.failures.push(format!(
                        "{case}: expected PERMISSION_DENIED for lacking {scope}, got {status:?}"
                    ));
                }
            }
        }
    }

    /// Fails the test listing every failed case.
    pub fn finish(self) {
        assert!(
            self.failures.is_empty(),
            "{} failed checks:\n{}",
            self.failures.len(),
            self.failures.join("\n")
        );
    }
}

/// Users that are not in the fake Clerk (another seed): they arrive by webhook only.
pub fn newcomer(index: usize) -> serde_json::Value {
    Population {
        seed: 7,
        ..Population::new(10_000)
    }
    .user(index)
}

/// CountUsers with a text filter (`None`: every user) over any client: a plain channel, or one
/// presenting an API key.
pub async fn count_with<T>(
    client: &mut UserIndexClient<T>,
    filter: Option<&str>,
) -> Result<u64, tonic::Status>
where
    T: tonic::client::GrpcService<tonic::body::Body>,
    T::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    T::ResponseBody: http_body::Body<Data = bytes::Bytes> + Send + 'static,
    <T::ResponseBody as http_body::Body>::Error:
        Into<Box<dyn std::error::Error + Send + Sync>> + Send,
{
    let request = clerk_index::api::proto::CountUsersRequest {
        filter: filter.and_then(expression),
        ..Default::default()
    };
    client
        .count_users(request)
        .await
        .map(|response| response.into_inner().count)
}

/// Every `clerk_index_*` series the Helm chart's alerts and Grafana dashboard query.
#[allow(dead_code)]
pub fn chart_metric_names() -> std::collections::BTreeSet<String> {
    let chart = Path::new(env!("CARGO_MANIFEST_DIR")).join("helm/clerk-index");
    let mut names = std::collections::BTreeSet::new();
    for file in ["templates/prometheusrule.yaml", "files/dashboard.json"] {
        let text = std::fs::read_to_string(chart.join(file)).unwrap();
        let mut rest = text.as_str();
        while let Some(start) = rest.find("clerk_index_") {
            let tail = &rest[start..];
            let end = tail
                .find(|c: char| !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'))
                .unwrap_or(tail.len());
            names.insert(tail[..end].to_string());
            rest = &tail[end..];
        }
    }
    assert!(names.len() > 10, "{names:?}");
    names
}

/// Fails unless every name is a sample /metrics served (`name{...} v` or `name v`).
#[allow(dead_code)]
pub fn assert_series_served<'a>(text: &str, names: impl IntoIterator<Item = &'a String>) {
    let served: std::collections::BTreeSet<&str> = text
        .lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| line.split(['{', ' ']).next())
        .collect();
    let missing: Vec<&String> = names
        .into_iter()
        .filter(|name| !served.contains(name.as_str()))
        .collect();
    assert!(
        missing.is_empty(),
        "the Helm chart's alerts or dashboard query series /metrics does not serve: {missing:?}"
    );
}

/// Users in each number of organizations, and users with an admin membership, as the fake
/// holds them.
fn org_mirror_expected(fake: &RunningFakeClerk) -> (std::collections::BTreeMap<usize, u64>, u64) {
    let mut per_user: std::collections::HashMap<String, (usize, bool)> = fake
        .fake
        .user_ids()
        .into_iter()
        .map(|id| (id, (0, false)))
        .collect();
    for (_, user_id, admin) in fake.fake.memberships() {
        let entry = per_user.entry(user_id).or_default();
        entry.0 += 1;
        entry.1 |= admin;
    }
    let mut by_count = std::collections::BTreeMap::new();
    for (count, _) in per_user.values() {
        *by_count.entry(*count).or_insert(0u64) += 1;
    }
    let admins = per_user.values().filter(|(_, admin)| *admin).count() as u64;
    (by_count, admins)
}

pub async fn assert_org_mirror(fake: &RunningFakeClerk, server: &TestServer) {
    let (by_count, admins) = org_mirror_expected(fake);
    for (count, users) in &by_count {
        assert_eq!(
            server.count(&format!("org_count = {count}")).await,
            *users,
            "users in {count} organizations"
        );
    }
    assert_eq!(server.count(r#"org[role = "org:admin"]"#).await, admins);
}
