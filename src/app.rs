//! The composition root, in three named steps:
//! 1. [`Services::build`] constructs everything from a [`Config`]: the index and its writer, the
//!    saved segments, the one destination of changes (the local index, or in cluster mode the
//!    change log: the only place the two modes differ), sync, and the gRPC and HTTP services;
//! 2. [`Services::serve`] runs them on already-bound listeners until a shutdown future
//!    resolves (tests serve on 127.0.0.1:0, production binds in `cli`);
//! 3. its shutdown stops taking requests, cancels and joins every task, and closes the index
//!    writer explicitly, which commits what is pending.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::api::{
    ApiBridge, Authenticate, Followed, GrpcServer, GrpcServices, Health, HttpServices,
    SegmentsService, ServerTls, SyncService, UserIndexService, WEBHOOK_PATH, follow_files,
};
use crate::clerk::ClerkClient;
use crate::cluster::ChangeLog;
use crate::config::{Config, FollowFiles, TlsConfig};
use crate::destinations::{self, Destinations};
use crate::index::{UserIndex, WriterHandle, WriterThread};
use crate::limits::Budgets;
use crate::read::UserReader;
use crate::redact::mask_url;
use crate::segments::{self, Segments};
use crate::sync::{
    Backfill, BackfillProgress, ChangeDestination, LogDestination, ReconcileSchedule, Reconciler,
    Replicator, SyncLease, SyncMonitor, WebhookReceiver, WriteThrough,
};
use crate::telemetry::metrics::{self, Metrics};

pub use crate::api::USER_INDEX_SERVICE;

/// Already-bound sockets, so tests can listen on port 0 and production binds in `cli`.
pub struct Listeners {
    pub grpc: TcpListener,
    pub http: TcpListener,
}

/// Builds the service from `config` and serves it until `shutdown` resolves.
pub async fn run(
    config: Config,
    listeners: Listeners,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    Services::build(config)
        .await?
        .serve(listeners, shutdown)
        .await
}

/// Everything the service is made of, built and not yet running.
pub struct Services {
    grpc: GrpcServer,
    grpc_services: GrpcServices,
    http_services: HttpServices,
    sync: SyncWork,
    clerk: ClerkClient,
    writer_thread: WriterThread,
    tls: Option<TlsConfig>,
    shutdown_timeout: Duration,
    /// The files to follow while serving.
    follow: FollowFiles,
    /// Ends sync work, segment watches and both servers.
    cancel: CancellationToken,
}

/// What copies Clerk into the index and keeps it fresh: chosen once, by the destination.
enum SyncWork {
    /// One process: the backfill, then reconciles on a schedule.
    Single {
        backfill: Backfill,
        reconciler: Arc<Reconciler>,
        schedule: ReconcileSchedule,
    },
    /// Cluster mode: follow the change log and the shared checkpoint, take part in the sync
    /// lease (whose holder runs backfill and reconciles), share saved segments.
    Cluster(Box<ClusterWork>),
}

struct ClusterWork {
    log: Arc<LogDestination>,
    lease: SyncLease,
    segments: Segments,
    destinations: Destinations,
}

/// The index, its writer and the saved segments that observe it.
struct Storage {
    index: UserIndex,
    writer: WriterHandle,
    writer_thread: WriterThread,
    segments: segments::SegmentsHandle,
    /// The saved destinations (single mode), read before the segment log they hold.
    destinations: Vec<destinations::Destination>,
}

impl Services {
    /// Constructs every part; nothing runs yet but the index writer.
    pub async fn build(config: Config) -> anyhow::Result<Services> {
        announce_access(&config);
        let storage = open_storage(&config)?;
        let cancel = CancellationToken::new();
        let budgets = Budgets::new(config.limits.clone());
        let destination = connect_destination(&config, &storage).await?;
        let clerk = ClerkClient::new(config.clerk.clone())?;
        let progress = Arc::new(BackfillProgress::default());
        let reconciler = Arc::new(Reconciler::new(
            clerk.clone(),
            destination.clone(),
            config.walk,
            config.catch_up_max_offset,
        ));
        let segments = Segments::new(storage.segments, storage.writer.clone(), cancel.clone());
        let saved = (&destination, storage.destinations);
        let destinations = start_destinations(&config, &segments, saved, &cancel)?;
        let (sync, segments) = sync_work(
            &config,
            Backfill {
                clerk: clerk.clone(),
                destination: destination.clone(),
                progress: progress.clone(),
                plan: config.walk,
            },
            reconciler.clone(),
            (segments, destinations.clone()),
        );
        let webhooks = Arc::new(WebhookReceiver::new(
            config.webhook_verifier.clone(),
            clerk.known_instance().clone(),
            destination.clone(),
            budgets.clone(),
        ));
        let monitor = SyncMonitor {
            destination: destination.clone(),
            writer: storage.writer.stats().clone(),
            backfill: progress.clone(),
            webhooks: webhooks.counters().clone(),
            reconcile: reconciler.stats.clone(),
            clerk: clerk.clone(),
        };
        let destinations = Some(destinations);
        let parts = (&segments, &destinations);
        let metrics = metrics_of(&config, &monitor, &clerk, parts, &budgets);
        let sync_service = SyncService {
            monitor,
            reconciler,
            sensitive: config.sensitive.clone(),
        };
        let write_through = WriteThrough::new(clerk.clone(), destination);
        Ok(Services {
            grpc: GrpcServer::new().await,
            grpc_services: grpc_services(
                &config,
                storage.index,
                write_through,
                sync_service,
                (segments, destinations),
                metrics.clone(),
                budgets.clone(),
            ),
            http_services: http_services(&config, progress, metrics, webhooks, budgets),
            sync,
            clerk,
            writer_thread: storage.writer_thread,
            follow: config.follow,
            tls: config.tls,
            shutdown_timeout: config.shutdown_timeout,
            cancel,
        })
    }

    /// Serves on `listeners` until `shutdown` resolves, then shuts everything down in order.
    pub async fn serve(
        self,
        listeners: Listeners,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let running = self.start(listeners)?;
        shutdown.await;
        running.shutdown().await
    }

    fn start(self, listeners: Listeners) -> anyhow::Result<Running> {
        let grpc_addr = listeners.grpc.local_addr()?;
        let http_addr = listeners.http.local_addr()?;
        let health = self.grpc.health().clone();
        let ready = Readiness {
            progress: self.http_services.progress.clone(),
            health: health.clone(),
        };
        let learn = crate::sync::learn_instance(self.clerk, self.cancel.clone());
        // In cluster mode the sync lease holder ticks, through the change log.
        let local_ticks = matches!(self.sync, SyncWork::Single { .. });
        let segments = self.grpc_services.segments.segments().clone();
        let ticks = segments.run_ticks(self.cancel.clone(), local_ticks);
        let sync = run_sync(self.sync, ready, self.cancel.clone());
        let sync_task = tokio::spawn(async move {
            tokio::join!(sync, learn, ticks);
        });
        let server_tls = self.tls.as_ref().map(ServerTls::new).transpose()?;
        follow(
            self.follow,
            &self.grpc_services,
            server_tls.as_ref(),
            self.http_services.metrics.clone(),
            self.cancel.clone(),
        );
        // Both ports serve the same services: gRPC (and gRPC-Web) on one, Connect on the other.
        let api = self.grpc_services.into_api();
        let mut http_services = self.http_services;
        let heartbeat = http_services.budgets.limits.stream_heartbeat;
        http_services.api = Some(ApiBridge::new(api.service(), heartbeat));
        // Cuts the gRPC connections still open when the shutdown deadline passes.
        let cut = CancellationToken::new();
        let grpc = self.grpc.serve(
            &api,
            server_tls,
            listeners.grpc,
            self.cancel.clone(),
            cut.clone(),
        )?;
        let grpc_task = tokio::spawn(grpc);
        let http_task = tokio::spawn(crate::api::serve_http(
            http_services,
            listeners.http,
            self.cancel.clone(),
        ));
        let grpc_tls = TlsConfig::mode(self.tls.as_ref());
        tracing::info!(%grpc_addr, %http_addr, grpc_tls, "clerk-index serving");
        Ok(Running {
            health,
            cancel: self.cancel,
            cut,
            grpc_task,
            http_task,
            sync_task,
            writer_thread: self.writer_thread,
            shutdown_timeout: self.shutdown_timeout,
        })
    }
}

/// The running service: its tasks and what stops them.
struct Running {
    health: Health,
    cancel: CancellationToken,
    cut: CancellationToken,
    grpc_task: JoinHandle<std::io::Result<()>>,
    http_task: JoinHandle<std::io::Result<()>>,
    sync_task: JoinHandle<()>,
    writer_thread: WriterThread,
    shutdown_timeout: Duration,
}

impl Running {
    /// Stops taking requests, lets in-flight calls finish (closing connections still open after
    /// the shutdown timeout: a stream whose client stopped reading would hold it forever),
    /// joins the servers and sync, then closes the writer, which commits what is pending.
    async fn shutdown(mut self) -> anyhow::Result<()> {
        tracing::info!("shutting down");
        self.health.set_serving(false).await;
        self.cancel.cancel();
        let grpc_result =
            match tokio::time::timeout(self.shutdown_timeout, &mut self.grpc_task).await {
                Ok(result) => result?,
                Err(_) => {
                    tracing::warn!(
                        timeout_secs = self.shutdown_timeout.as_secs(),
                        "in-flight gRPC calls did not finish in time; closing their connections"
                    );
                    self.cut.cancel();
                    self.grpc_task.await?
                }
            };
        self.http_task.await??;
        self.sync_task.await?;
        self.writer_thread.close().await?;
        grpc_result?;
        tracing::info!("stopped");
        Ok(())
    }
}

/// What copies from Clerk: the backfill and reconciles directly in one process; in cluster mode
/// the lease (whose holder runs them and delivers the destinations) and saved segments and
/// destinations shared through the cluster.
fn sync_work(
    config: &Config,
    backfill: Backfill,
    reconciler: Arc<Reconciler>,
    (segments, destinations): (Segments, Destinations),
) -> (SyncWork, Segments) {
    let Some(log) = backfill.destination.cluster().cloned() else {
        let work = SyncWork::Single {
            backfill,
            reconciler,
            schedule: config.reconcile,
        };
        return (work, segments);
    };
    let segments = segments.with_shared(log.log().segments().clone());
    log.replicator().tick_segments(segments.clone());
    let work = SyncWork::Cluster(Box::new(ClusterWork {
        lease: SyncLease {
            destination: log.clone(),
            backfill,
            reconciler,
            schedule: config.reconcile,
            segments: segments.clone(),
            destinations: Some(destinations.clone()),
        },
        log,
        segments: segments.clone(),
        destinations,
    }));
    (work, segments)
}

/// The services of the gRPC port, over the same index.
/// The HTTP port's services; the API joins them when serving starts.
fn http_services(
    config: &Config,
    progress: Arc<BackfillProgress>,
    metrics: Arc<Metrics>,
    webhooks: Arc<WebhookReceiver>,
    budgets: Arc<Budgets>,
) -> HttpServices {
    HttpServices {
        progress,
        metrics,
        webhooks,
        webhook_body_limit: config.webhook_body_limit,
        webhook_timeout: config.webhook_timeout,
        budgets,
        api: None,
        console: config.console,
    }
}

/// Follows the files read again while serving: API keys, the sensitive key ring, TLS.
fn follow(
    files: FollowFiles,
    services: &GrpcServices,
    server_tls: Option<&Arc<ServerTls>>,
    metrics: Arc<Metrics>,
    stop: CancellationToken,
) {
    let mut followed = Vec::new();
    if let Some(file) = files.api_keys {
        followed.push(Followed::api_keys(file, services.auth.clone()));
    }
    if let (Some(file), Some(sensitive)) = (files.sensitive_keys, &services.sync.sensitive) {
        followed.push(Followed::sensitive_keys(file, sensitive.clone()));
    }
    if let (Some(files), Some(tls)) = (files.tls, server_tls) {
        followed.push(Followed::tls(files, tls.clone()));
    }
    if !followed.is_empty() {
        tokio::spawn(follow_files(followed, metrics, files.every, stop));
    }
}

fn grpc_services(
    config: &Config,
    index: UserIndex,
    write_through: WriteThrough,
    sync: SyncService,
    (segments, destinations): (Segments, Option<Destinations>),
    metrics: Arc<Metrics>,
    budgets: Arc<Budgets>,
) -> GrpcServices {
    let reader = UserReader::new(
        index,
        config.max_page_size,
        config.max_read_wait,
        budgets.clone(),
    )
    .with_segment_clock(segments.sequence_clock());
    GrpcServices {
        user_index: UserIndexService::new(reader.clone(), write_through, config.filter_limits)
            .with_segments(segments.clone()),
        sync,
        segments: match destinations {
            Some(destinations) => SegmentsService::new(segments, reader, config.filter_limits)
                .with_destinations(destinations),
            None => SegmentsService::new(segments, reader, config.filter_limits),
        },
        auth: Authenticate::new(config.auth.clone()),
        grpc_web_origins: config.grpc_web_origins.clone(),
        metrics,
        budgets,
    }
}

/// The destinations: in single mode their delivery tasks start from the saved state; in
/// cluster mode they are the cluster's, delivered by the sync lease holder.
fn start_destinations(
    config: &Config,
    segments: &Segments,
    (destination, saved): (&ChangeDestination, Vec<destinations::Destination>),
    cancel: &CancellationToken,
) -> anyhow::Result<Destinations> {
    let sensitive = config.sensitive.clone();
    let store = match destination.cluster() {
        Some(log) => destinations::Store::shared(log.log().destinations().clone(), sensitive),
        None => destinations::Store::open(&config.data_dir.join("destinations"), sensitive)?,
    };
    let (segments, settings) = (segments.clone(), config.destinations.clone());
    let destinations = Destinations::start(segments, settings, store, saved, cancel.clone())?;
    Ok(destinations)
}

/// The metrics, reading what the parts count at scrape time.
fn metrics_of(
    config: &Config,
    monitor: &SyncMonitor,
    clerk: &ClerkClient,
    (segments, destinations): (&Segments, &Option<Destinations>),
    budgets: &Arc<Budgets>,
) -> Arc<Metrics> {
    Metrics::new(metrics::Sources {
        sync: monitor.clone(),
        index_dir: config.index.dir.clone(),
        clerk: clerk.stats().clone(),
        budgets: budgets.clone(),
        segments: segments.clone(),
        destinations: destinations.clone(),
    })
}

/// Says who may read, loudly when anyone may, and whether webhooks can be received.
fn announce_access(config: &Config) {
    if config.webhook_verifier.is_none() {
        tracing::warn!(
            "no CLERK_WEBHOOK_SIGNING_SECRET: webhook deliveries to {WEBHOOK_PATH} are refused with 503"
        );
    }
    if config.auth.keys.is_empty() {
        tracing::warn!(
            "serving WITHOUT authentication (--allow-unauthenticated): anyone who can reach the gRPC port reads every user"
        );
    } else {
        tracing::info!(keys = config.auth.keys.len(), "API keys loaded");
    }
}

/// Opens the index and the saved segments, and starts the writer with the segments observing
/// it and the sensitive paths sealed before it.
fn open_storage(config: &Config) -> anyhow::Result<Storage> {
    let (index, writer_task) = UserIndex::open(&config.index)?;
    let snapshot = index.snapshot();
    tracing::info!(
        dir = %config.index.dir.display(),
        users = snapshot.freshness.user_count,
        generation = snapshot.freshness.generation,
        "index opened"
    );
    let saved = match &config.cluster {
        None => destinations::load(&config.data_dir.join("destinations"))?,
        Some(_) => Vec::new(),
    };
    let mut segments_config = config.segments.clone();
    segments_config.initial_hold = destinations::hold_of(&saved);
    let (observer, segments) = segments::open(
        &config.data_dir.join("segments"),
        &index,
        segments_config,
        config.filter_limits,
    )?;
    let mut writer_task = writer_task.with_observer(Box::new(observer));
    if let Some(sensitive) = &config.sensitive {
        writer_task = writer_task.with_sealer(sensitive.clone());
        tracing::info!(
            active_key = sensitive.ring().active_id(),
            "sensitive paths are sealed before indexing"
        );
    }
    let (writer, writer_thread) = writer_task.spawn();
    Ok(Storage {
        index,
        writer,
        writer_thread,
        segments,
        destinations: saved,
    })
}

/// The destination of every change: the local index, or in cluster mode the change log, which
/// this replica's index follows through a [`Replicator`].
async fn connect_destination(
    config: &Config,
    storage: &Storage,
) -> anyhow::Result<ChangeDestination> {
    let Some(cluster) = &config.cluster else {
        return Ok(ChangeDestination::index(
            storage.writer.clone(),
            storage.index.clone(),
        ));
    };
    let log = ChangeLog::connect(cluster.clone()).await?;
    tracing::info!(
        url = %mask_url(&cluster.url),
        replica = %cluster.replica_id,
        "cluster mode: following the change log on NATS JetStream"
    );
    let replicator = Replicator::new(log.clone(), storage.writer.clone(), storage.index.clone());
    let sealer = config
        .sensitive
        .clone()
        .map(|sensitive| sensitive as Arc<dyn crate::index::Sealer>);
    Ok(ChangeDestination::log(LogDestination::new(
        log,
        replicator,
        storage.index.clone(),
        sealer,
    )))
}

/// Marks the service ready: for `/readyz` and the gRPC health service.
struct Readiness {
    progress: Arc<BackfillProgress>,
    health: Health,
}

impl Readiness {
    async fn mark(&self) {
        self.progress.set_ready();
        self.health.set_serving(true).await;
    }
}

async fn run_sync(work: SyncWork, ready: Readiness, cancel: CancellationToken) {
    match work {
        SyncWork::Single {
            backfill,
            reconciler,
            schedule,
        } => {
            if backfill.run(cancel.clone()).await {
                ready.mark().await;
                reconciler.run_periodically(schedule, cancel).await;
            }
        }
        SyncWork::Cluster(work) => run_cluster(*work, ready, cancel).await,
    }
}

/// Cluster mode: follows the log and the shared checkpoint, takes part in the lease, follows
/// shared segment definitions and publishes segment events, until cancelled. Ready once the
/// shared backfill is complete and this index holds what the log held then.
async fn run_cluster(work: ClusterWork, ready: Readiness, cancel: CancellationToken) {
    let ClusterWork {
        log,
        lease,
        segments,
        destinations,
    } = work;
    let mut shared = log.shared_state();
    let follow = log.replicator().clone().run(cancel.clone());
    let checkpoint = log.follow_shared_state(ready.progress.clone(), cancel.clone());
    let lease = lease.run(cancel.clone());
    let serving = async {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = shared.wait_for(|state| state.backfill.complete) => {}
        }
        log.replicator().catch_up(&cancel).await;
        if !cancel.is_cancelled() {
            ready.mark().await;
        }
    };
    let definitions = segments.clone().follow_shared(cancel.clone());
    let events = segments.publish_events(cancel.clone());
    let destinations = destinations.follow_shared(cancel.clone());
    tokio::join!(
        follow,
        checkpoint,
        lease,
        serving,
        definitions,
        events,
        destinations
    );
}
