//! Prometheus metrics, served as OpenMetrics text on `GET /metrics` (the HTTP port).
//!
//! Two kinds: RPC counts and latencies, recorded as calls end ([`Metrics::record_rpc`]); and
//! everything the service already counts for `GetSyncStatus` (writer, webhooks, backfill,
//! reconcile, Clerk API calls, index size), read when scraped by [`StateCollector`] so there is
//! one source for each number. One [`Metrics`] per running service: tests run several in one
//! process without sharing counters.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::clerk::ClerkApiStats;
use crate::clock::now_ms;
use crate::latency::latency_histogram;
use crate::sync::{ReconcileRun, SyncMonitor, WebhookOutcome};

/// The `Content-Type` of [`Metrics::encode`]'s text.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RpcLabels {
    service: String,
    method: String,
    /// The gRPC status name (`OK`, `INVALID_ARGUMENT`, ...).
    code: String,
}

/// The registry and the metrics recorded as things happen.
pub struct Metrics {
    registry: Registry,
    rpc_requests: Family<RpcLabels, Counter>,
    rpc_seconds: Family<RpcLabels, Histogram>,
}

impl fmt::Debug for Metrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

/// What the service counts elsewhere, read at scrape time.
pub struct Sources {
    /// Where sync stands: index, writer, webhooks, backfill, reconciles, cluster replica.
    pub sync: SyncMonitor,
    pub index_dir: PathBuf,
    pub clerk: Arc<ClerkApiStats>,
}

impl Metrics {
    pub fn new(sources: Sources) -> Arc<Metrics> {
        let mut registry = Registry::with_prefix("clerk_index");
        let rpc_requests = Family::<RpcLabels, Counter>::default();
        registry.register(
            "grpc_requests",
            "gRPC calls handled, by service, method and status code",
            rpc_requests.clone(),
        );
        let rpc_seconds =
            Family::<RpcLabels, Histogram>::new_with_constructor(latency_histogram as fn() -> _);
        registry.register(
            "grpc_request_duration_seconds",
            "gRPC call latency until the last message (streams included), by service, method and status code",
            rpc_seconds.clone(),
        );
        registry.register(
            "commit_duration_seconds",
            "Index commit latency (prepare, fsync, reader reload)",
            sources.sync.writer.commit_seconds.clone(),
        );
        sources.clerk.register(&mut registry);
        registry.register_collector(Box::new(StateCollector(sources)));
        Arc::new(Metrics {
            registry,
            rpc_requests,
            rpc_seconds,
        })
    }

    /// One finished gRPC call. `code` is the status name (`OK`, `NOT_FOUND`, ...).
    pub fn record_rpc(&self, service: &str, method: &str, code: &str, elapsed: Duration) {
        let labels = RpcLabels {
            service: service.to_string(),
            method: method.to_string(),
            code: code.to_string(),
        };
        self.rpc_requests.get_or_create(&labels).inc();
        self.rpc_seconds
            .get_or_create(&labels)
            .observe(elapsed.as_secs_f64());
    }

    /// Every metric in the OpenMetrics text format.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry)
            .expect("writing to a String cannot fail");
        text
    }
}

/// The `outcome` label of webhook deliveries (`ignored_type` for what answers call `ignored`).
fn webhook_label(outcome: WebhookOutcome) -> &'static str {
    match outcome {
        WebhookOutcome::Ignored => "ignored_type",
        other => other.name(),
    }
}

/// Reads the counters and state the service keeps anyway, on each scrape.
struct StateCollector(Sources);

impl fmt::Debug for StateCollector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StateCollector").finish_non_exhaustive()
    }
}

impl Collector for StateCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> fmt::Result {
        let sources = &self.0;
        let status = sources.sync.status();
        let e = &mut encoder;

        gauge(
            e,
            "users",
            "Users in the index",
            status.freshness.user_count as f64,
        )?;
        gauge(
            e,
            "tombstones",
            "Deleted users remembered so late updates cannot bring them back",
            status.tombstones as f64,
        )?;
        gauge(
            e,
            "index_generation",
            "Index commits since the index was created",
            status.freshness.generation as f64,
        )?;
        gauge(
            e,
            "index_size_bytes",
            "Bytes of the index files on disk",
            directory_size(&sources.index_dir) as f64,
        )?;
        gauge(
            e,
            "freshness_lag_seconds",
            "Time since the newest change the index holds was made in Clerk (0 before any)",
            status.lag_ms as f64 / 1000.0,
        )?;

        let writer = &status.writer;
        counters(
            e,
            "writer_changes",
            "Changes the index writer received, by result",
            "result",
            &[
                ("applied", writer.applied),
                ("ignored_stale", writer.ignored_stale),
                ("ignored_deleted", writer.ignored_deleted),
            ],
        )?;
        counter(e, "commits", "Index commits since start", writer.commits)?;

        let webhooks: Vec<(&str, u64)> = status
            .webhooks
            .iter()
            .map(|(outcome, count)| (webhook_label(*outcome), *count))
            .collect();
        counters(
            e,
            "webhook_deliveries",
            "Webhook deliveries since start, by outcome",
            "outcome",
            &webhooks,
        )?;

        let backfill = &status.backfill;
        gauge(
            e,
            "backfill_complete",
            "1 once the first full copy from Clerk is in the index",
            if backfill.complete { 1.0 } else { 0.0 },
        )?;
        gauge(
            e,
            "backfill_users_seen",
            "Users copied by the backfill so far",
            backfill.users_seen as f64,
        )?;
        gauge(
            e,
            "backfill_users_total",
            "Users Clerk reported when the backfill started (0 if unknown)",
            backfill.users_total as f64,
        )?;
        counter(
            e,
            "backfill_pages",
            "Pages of users the backfill applied since start",
            backfill.pages,
        )?;

        let reconcile = &status.reconcile;
        counters(
            e,
            "reconcile_runs",
            "Finished reconcile runs since start, by kind",
            "kind",
            &[
                ("catch_up", reconcile.catch_ups),
                ("sweep", reconcile.sweeps),
            ],
        )?;
        counters(
            e,
            "reconcile_failures",
            "Failed reconcile runs since start, by kind",
            "kind",
            &[
                ("catch_up", reconcile.catch_up_failures),
                ("sweep", reconcile.sweep_failures),
            ],
        )?;
        let runs = [
            ("catch_up", reconcile.state.last_catch_up.as_ref()),
            ("sweep", reconcile.state.last_sweep.as_ref()),
        ];
        let last = |field: fn(&ReconcileRun) -> f64| -> Vec<(&str, f64)> {
            runs.iter()
                .filter_map(|(kind, run)| run.map(|run| (*kind, field(run))))
                .collect()
        };
        gauges(
            e,
            "reconcile_last_finished_timestamp_seconds",
            "When the last reconcile run of each kind finished (Unix time)",
            "kind",
            &last(|run| run.finished_at_ms as f64 / 1000.0),
        )?;
        gauges(
            e,
            "reconcile_last_users_listed",
            "Clerk users the last run of each kind listed",
            "kind",
            &last(|run| run.users_listed as f64),
        )?;
        gauges(
            e,
            "reconcile_last_repairs",
            "Users the last run of each kind applied or deleted (what webhooks had missed)",
            "kind",
            &last(|run| (run.upserts + run.deletes) as f64),
        )?;
        gauge(
            e,
            "reconcile_sweep_in_progress",
            "1 while a sweep is under way (it resumes after a restart)",
            if reconcile.state.sweep.is_some() {
                1.0
            } else {
                0.0
            },
        )?;
        if let Some(replica) = &status.replica {
            gauge(
                e,
                "cluster_committed_sequence",
                "Cluster mode: the last change-log sequence this replica's index has committed",
                replica.committed_sequence as f64,
            )?;
            counter(
                e,
                "cluster_unreadable_messages",
                "Cluster mode: change-log messages this replica could not read and skipped",
                replica.unreadable_messages,
            )?;
            gauge(
                e,
                "cluster_sync_lease_held",
                "Cluster mode: 1 while this replica holds the sync lease (copies from Clerk)",
                if replica.holds_sync_lease { 1.0 } else { 0.0 },
            )?;
        }
        gauge(
            e,
            "scrape_timestamp_seconds",
            "When this scrape was read (Unix time), to compare with the timestamps above",
            now_ms() as f64 / 1000.0,
        )?;
        Ok(())
    }
}

fn gauge(encoder: &mut DescriptorEncoder, name: &str, help: &str, value: f64) -> fmt::Result {
    labelled(
        encoder,
        name,
        help,
        MetricType::Gauge,
        None,
        [("", ConstGauge::new(value))],
    )
}

fn gauges(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    label: &str,
    values: &[(&str, f64)],
) -> fmt::Result {
    let values = values.iter().map(|(at, v)| (*at, ConstGauge::new(*v)));
    labelled(encoder, name, help, MetricType::Gauge, Some(label), values)
}

fn counter(encoder: &mut DescriptorEncoder, name: &str, help: &str, value: u64) -> fmt::Result {
    labelled(
        encoder,
        name,
        help,
        MetricType::Counter,
        None,
        [("", ConstCounter::new(value))],
    )
}

fn counters(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    label: &str,
    values: &[(&str, u64)],
) -> fmt::Result {
    let values = values.iter().map(|(at, v)| (*at, ConstCounter::new(*v)));
    labelled(
        encoder,
        name,
        help,
        MetricType::Counter,
        Some(label),
        values,
    )
}

/// One metric: a single sample when `label` is `None`, else one sample per `(label value,
/// metric)`.
fn labelled<'v, M: EncodeMetric>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    metric_type: MetricType,
    label: Option<&str>,
    values: impl IntoIterator<Item = (&'v str, M)>,
) -> fmt::Result {
    let mut metric_encoder = encoder.encode_descriptor(name, help, None, metric_type)?;
    let Some(label) = label else {
        // An unlabelled metric has one sample.
        return match values.into_iter().next() {
            Some((_, metric)) => metric.encode(metric_encoder),
            None => Ok(()),
        };
    };
    for (label_value, metric) in values {
        metric.encode(metric_encoder.encode_family(&[(label, label_value)])?)?;
    }
    Ok(())
}

/// Bytes of the files under `dir` (the index: a few dozen segment files). Unreadable entries
/// count as 0: a scrape must not fail because a merge removed a file meanwhile.
fn directory_size(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|entry| match entry.file_type() {
            Ok(kind) if kind.is_dir() => directory_size(&entry.path()),
            Ok(_) => entry.metadata().map(|m| m.len()).unwrap_or(0),
            Err(_) => 0,
        })
        .sum()
}
