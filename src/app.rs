//! `run(config, listeners, shutdown)`: opens the index, starts the writer task, the backfill, the
//! gRPC server (UserIndex, health, reflection) and the HTTP server (probes), and shuts them down
//! in order: stop taking requests, stop sync, drain and commit the writer.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::serve::ListenerExt;
use tokio::net::TcpListener;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::TcpListenerStream;
use tokio_util::sync::CancellationToken;
use tonic_health::ServingStatus;

use crate::api::{
    Authenticate, RpcTelemetry, SegmentsService, SyncService, UserIndexService, WEBHOOK_PATH, proto,
};
use crate::clerk::ClerkClient;
use crate::clerk::webhook::WebhookVerifier;
use crate::cluster::ChangeLog;
use crate::config::Config;
use crate::index::UserIndex;
use crate::segments::{self, Segments};
use crate::sync::{
    Backfill, BackfillProgress, ChangeSink, LogTarget, Reconciler, Replicator, SyncLease,
    SyncState, SyncStateView, SyncTarget, WebhookReceiver, WriteThrough, follow_shared_state,
};
use crate::telemetry::metrics::{self, Metrics};

/// Already-bound sockets, so tests can listen on port 0 and production binds in `main`.
pub struct Listeners {
    pub grpc: TcpListener,
    pub http: TcpListener,
}

/// The gRPC service name health reports on (and `""`, the whole server).
pub const USER_INDEX_SERVICE: &str = "clerkindex.v1.UserIndex";

/// Runs the service until `shutdown` resolves, then stops it in order.
pub async fn run(
    config: Config,
    listeners: Listeners,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    config.auth.validate()?;
    config.validate_modes()?;
    if config.auth.keys.is_empty() {
        tracing::warn!(
            "serving WITHOUT authentication (--allow-unauthenticated): anyone who can reach the gRPC port reads every user"
        );
    } else {
        tracing::info!(keys = config.auth.keys.len(), "API keys loaded");
    }
    let auth = Authenticate::new(config.auth.clone());
    let (index, writer_task) = UserIndex::open(&config.index)?;
    let snapshot = index.snapshot();
    tracing::info!(
        dir = %config.index.dir.display(),
        users = snapshot.freshness.user_count,
        generation = snapshot.freshness.generation,
        "index opened"
    );
    drop(snapshot);
    let (segments_observer, segments_handle) = segments::open(
        &config.data_dir.join("segments"),
        &index,
        config.segments.clone(),
        config.filter_limits,
    )?;
    let mut writer_task = writer_task.with_observer(Box::new(segments_observer));
    if let Some(sensitive) = &config.sensitive {
        writer_task = writer_task.with_sealer(sensitive.clone());
        tracing::info!(
            active_key = sensitive.ring().active_id(),
            "sensitive paths are sealed before indexing"
        );
    }
    let (writer, writer_thread) = writer_task.spawn();
    let clerk = ClerkClient::new(config.clerk.clone())?;
    let cancel = CancellationToken::new();
    let segments = Segments::new(segments_handle, writer.clone(), cancel.clone());

    let (health, health_service) = tonic_health::server::health_reporter();
    for service in ["", USER_INDEX_SERVICE] {
        health
            .set_service_status(service, ServingStatus::NotServing)
            .await;
    }
    let progress = Arc::new(BackfillProgress::default());
    let clerk_stats = clerk.stats().clone();
    // Cluster mode: changes go to the shared log, this replica's index follows the log, and the
    // replica holding the sync lease copies from Clerk into the log.
    let change_log = match &config.cluster {
        Some(cluster) => {
            let log = ChangeLog::connect(cluster.clone()).await?;
            tracing::info!(
                url = %crate::redact::mask_url(&cluster.url),
                replica = %cluster.replica_id,
                "cluster mode: following the change log on NATS JetStream"
            );
            Some(Arc::new(log))
        }
        None => None,
    };
    let segments = match &change_log {
        Some(log) => segments.with_shared(log.segments().clone()),
        None => segments,
    };
    let replicator = change_log
        .as_ref()
        .map(|log| Replicator::new(ChangeLog::clone(log), writer.clone(), index.clone()));
    let log_target = change_log
        .iter()
        .zip(&replicator)
        .map(|(log, replicator)| LogTarget::new(log.clone(), replicator.clone(), index.clone()))
        .next();
    let target = match &log_target {
        Some(log) => SyncTarget::Log(log.clone()),
        None => SyncTarget::Index {
            writer: writer.clone(),
            index: index.clone(),
        },
    };
    let reconciler = Arc::new(Reconciler::new(
        clerk.clone(),
        target.clone(),
        config.backfill_page_size,
    ));
    let backfill = Backfill {
        clerk: clerk.clone(),
        target,
        progress: progress.clone(),
        page_size: config.backfill_page_size,
    };
    let (shared_state, state_view) = match &log_target {
        Some(_) => {
            let (sender, receiver) = tokio::sync::watch::channel(SyncState::default());
            (Some(sender), SyncStateView::Shared(receiver))
        }
        None => (None, SyncStateView::Index(index.clone())),
    };
    let write_through = WriteThrough::new(clerk, writer.clone());
    let write_through = match (&change_log, &replicator) {
        (Some(log), Some(replicator)) => write_through.through_log(log.clone(), replicator.clone()),
        _ => write_through,
    };
    let sync_task = tokio::spawn({
        let cancel = cancel.clone();
        let health = health.clone();
        let reconciler = reconciler.clone();
        let schedule = config.reconcile;
        let progress = progress.clone();
        let cluster = replicator.clone().zip(log_target.clone()).zip(shared_state);
        let segments = segments.clone();
        async move {
            let serving = || async {
                progress.complete.store(true, Ordering::Relaxed);
                for service in ["", USER_INDEX_SERVICE] {
                    health
                        .set_service_status(service, ServingStatus::Serving)
                        .await;
                }
            };
            match cluster {
                Some(((replicator, target), shared)) => {
                    let follow = replicator.clone().run(cancel.clone());
                    let mut shared_now = shared.subscribe();
                    let poll = follow_shared_state(
                        target.coordination().clone(),
                        shared,
                        progress.clone(),
                        cancel.clone(),
                    );
                    let lease = SyncLease {
                        target,
                        backfill,
                        reconciler,
                        schedule,
                    }
                    .run(cancel.clone());
                    // Ready once the shared backfill is complete and this index holds what the
                    // log held then.
                    let ready = async {
                        tokio::select! {
                            _ = cancel.cancelled() => return,
                            _ = shared_now.wait_for(|state| state.backfill.complete) => {}
                        }
                        replicator.catch_up(&cancel).await;
                        if !cancel.is_cancelled() {
                            serving().await;
                        }
                    };
                    let definitions = segments.clone().follow_shared(cancel.clone());
                    let events = segments.publish_events(cancel.clone());
                    tokio::join!(follow, poll, lease, ready, definitions, events);
                }
                None => {
                    if backfill.run(cancel.clone()).await {
                        serving().await;
                        reconciler.run_periodically(schedule, cancel).await;
                    }
                }
            }
        }
    });

    let reflection_v1 = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()?;
    let reflection_v1alpha = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1alpha()?;
    let user_index = UserIndexService::new(
        index.clone(),
        write_through,
        config.filter_limits,
        config.max_page_size,
        config.max_read_wait,
    );
    let sink = match &change_log {
        Some(log) => ChangeSink::Log(log.clone()),
        None => ChangeSink::Index(writer.clone()),
    };
    let webhooks = Arc::new(WebhookReceiver::new(webhook_verifier(&config)?, sink));
    let metrics = Metrics::new(metrics::Sources {
        index: index.clone(),
        index_dir: config.index.dir.clone(),
        writer: writer.stats().clone(),
        backfill: progress.clone(),
        webhooks: webhooks.counters().clone(),
        reconcile: reconciler.stats.clone(),
        clerk: clerk_stats,
        state: state_view.clone(),
        replicator: replicator.clone(),
        sync_lease: log_target.clone(),
    });
    let sync_service = SyncService {
        index: index.clone(),
        backfill: progress.clone(),
        webhooks: webhooks.counters().clone(),
        writer: writer.clone(),
        reconciler,
        sensitive: config.sensitive.clone(),
        state: state_view.clone(),
        cluster: log_target.clone().zip(replicator.clone()),
    };
    let segments_service = SegmentsService::new(
        segments.clone(),
        index.clone(),
        config.filter_limits,
        config.max_read_wait,
    );
    let grpc_addr = listeners.grpc.local_addr()?;
    // Cuts the gRPC connections still open when the shutdown deadline passes.
    let force_close = CancellationToken::new();
    let mut grpc = tonic::transport::Server::builder();
    if let Some(tls) = &config.tls {
        let mut server_tls = tonic::transport::ServerTlsConfig::new().identity(
            tonic::transport::Identity::from_pem(&tls.cert_pem, &tls.key_pem),
        );
        if let Some(ca) = &tls.client_ca_pem {
            server_tls = server_tls.client_ca_root(tonic::transport::Certificate::from_pem(ca));
        }
        grpc = grpc
            .tls_config(server_tls)
            .map_err(|e| anyhow::anyhow!("gRPC TLS certificate or key: {e}"))?;
    }
    let grpc = grpc
        .layer(RpcTelemetry::new(metrics.clone()))
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(user_index.into_server(auth.clone()))
        .add_service(sync_service.into_server(auth.clone()))
        .add_service(segments_service.into_server(auth))
        .serve_with_incoming_shutdown(
            // Our own listener, so tonic's tcp_nodelay setting does not apply: without it, a
            // response spanning two TCP segments waits ~40 ms for the client's delayed ACK.
            TcpListenerStream::new(listeners.grpc).map({
                let force_close = force_close.clone();
                move |stream| {
                    stream.map(|stream| {
                        let _ = stream.set_nodelay(true);
                        Closable::new(stream, &force_close)
                    })
                }
            }),
            cancel.clone().cancelled_owned(),
        );
    let grpc_task = tokio::spawn(grpc);

    let http_router = probes(progress.clone())
        .merge(metrics_route(metrics))
        .merge(crate::api::webhook_router(
            webhooks.clone(),
            config.webhook_body_limit,
            config.webhook_timeout,
        ));
    let http_addr = listeners.http.local_addr()?;
    let http_listener = listeners.http.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    let http = axum::serve(http_listener, http_router)
        .with_graceful_shutdown(cancel.clone().cancelled_owned());
    let http_task = tokio::spawn(async move { http.await });
    let grpc_tls = match &config.tls {
        None => "off",
        Some(tls) if tls.client_ca_pem.is_some() => "mutual",
        Some(_) => "on",
    };
    tracing::info!(%grpc_addr, %http_addr, grpc_tls, "clerk-index serving");

    let shutdown_timeout = config.shutdown_timeout;
    shutdown.await;
    tracing::info!("shutting down");
    for service in ["", USER_INDEX_SERVICE] {
        health
            .set_service_status(service, ServingStatus::NotServing)
            .await;
    }
    cancel.cancel();
    // In-flight calls finish, but a stream whose client stops reading would hold the shutdown
    // forever: past the deadline they are closed.
    let mut grpc_task = grpc_task;
    let grpc_result = match tokio::time::timeout(shutdown_timeout, &mut grpc_task).await {
        Ok(result) => result?,
        Err(_) => {
            tracing::warn!(
                timeout_secs = shutdown_timeout.as_secs(),
                "in-flight gRPC calls did not finish in time; closing their connections"
            );
            force_close.cancel();
            grpc_task.await?
        }
    };
    http_task.await??;
    sync_task.await?;
    drop(webhooks);
    drop(replicator);
    // The reconciler and the sync target reach the writer through the replicator too.
    drop(log_target);
    drop(segments);
    drop(writer);
    // Every writer handle is gone now; the writer commits what is pending and stops.
    tokio::task::spawn_blocking(move || writer_thread.join())
        .await?
        .map_err(|_| anyhow::anyhow!("the index writer thread panicked"))?;
    grpc_result?;
    tracing::info!("stopped");
    Ok(())
}

fn webhook_verifier(config: &Config) -> anyhow::Result<Option<WebhookVerifier>> {
    if config.webhook_secrets.is_empty() {
        tracing::warn!(
            "no CLERK_WEBHOOK_SIGNING_SECRET: webhook deliveries to {WEBHOOK_PATH} are refused with 503"
        );
        return Ok(None);
    }
    let verifier = WebhookVerifier::new(&config.webhook_secrets)
        .map_err(|e| anyhow::anyhow!("webhook signing secret: {e}"))?;
    Ok(Some(verifier))
}

fn metrics_route(metrics: Arc<Metrics>) -> Router {
    Router::new()
        .route(
            "/metrics",
            get(|State(metrics): State<Arc<Metrics>>| async move {
                (
                    [(axum::http::header::CONTENT_TYPE, metrics::CONTENT_TYPE)],
                    metrics.encode(),
                )
            }),
        )
        .with_state(metrics)
}

fn probes(progress: Arc<BackfillProgress>) -> Router {
    Router::new()
        .route("/livez", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .with_state(progress)
}

async fn readyz(State(progress): State<Arc<BackfillProgress>>) -> (StatusCode, String) {
    if progress.complete.load(Ordering::Relaxed) {
        (StatusCode::OK, "ready".into())
    } else {
        let seen = progress.users_seen.load(Ordering::Relaxed);
        let total = progress.users_total.load(Ordering::Relaxed);
        (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("backfill in progress: {seen} of {total} users"),
        )
    }
}

/// A gRPC connection the server can cut: once `closed` fires, every read and write fails, so the
/// connection and the calls on it end instead of waiting for a client that stopped reading.
struct Closable {
    inner: tokio::net::TcpStream,
    closed: std::pin::Pin<Box<tokio_util::sync::WaitForCancellationFutureOwned>>,
}

impl Closable {
    fn new(inner: tokio::net::TcpStream, closed: &CancellationToken) -> Closable {
        Closable {
            inner,
            closed: Box::pin(closed.clone().cancelled_owned()),
        }
    }

    /// An error once the connection is cut (and a wake-up when it is).
    fn cut(&mut self, cx: &mut std::task::Context<'_>) -> Option<std::io::Error> {
        self.closed.as_mut().poll(cx).is_ready().then(|| {
            std::io::Error::new(
                std::io::ErrorKind::ConnectionAborted,
                "the server is shutting down",
            )
        })
    }
}

impl tokio::io::AsyncRead for Closable {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        if let Some(error) = self.cut(cx) {
            return std::task::Poll::Ready(Err(error));
        }
        std::pin::Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl tokio::io::AsyncWrite for Closable {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        if let Some(error) = self.cut(cx) {
            return std::task::Poll::Ready(Err(error));
        }
        std::pin::Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        if let Some(error) = self.cut(cx) {
            return std::task::Poll::Ready(Err(error));
        }
        std::pin::Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

impl tonic::transport::server::Connected for Closable {
    type ConnectInfo = tonic::transport::server::TcpConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.inner.connect_info()
    }
}
