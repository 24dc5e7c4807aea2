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
use std::sync::atomic::Ordering;
use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use super::encode::{labelled, single};
use crate::clerk::ClerkApiStats;
use crate::clock::now_ms;
use crate::destinations::{Counters, Destinations, State};
use crate::latency::latency_histogram;
use crate::limits::{Budget, Budgets};
use crate::segments::{SegmentMetrics, Segments};
use crate::sync::{
    ReconcileRun, ReconcileState, ReplicaStatus, SyncMonitor, SyncStatus, WebhookOutcome,
};

/// The `Content-Type` of [`Metrics::encode`]'s text.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RpcLabels {
    service: String,
    method: String,
    /// The gRPC status name (`OK`, `INVALID_ARGUMENT`, ...).
    code: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReloadLabels {
    file: &'static str,
    outcome: &'static str,
}

/// The registry and the metrics recorded as things happen.
pub struct Metrics {
    registry: Registry,
    rpc_requests: Family<RpcLabels, Counter>,
    rpc_seconds: Family<RpcLabels, Histogram>,
    reloads: Family<ReloadLabels, Counter>,
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
    /// What callers hold of each budget, and what was refused.
    pub budgets: Arc<Budgets>,
    /// Saved segments: their events and time ticks.
    pub segments: Segments,
    /// Destinations (single mode).
    pub destinations: Option<Destinations>,
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
        let reloads = Family::<ReloadLabels, Counter>::default();
        registry.register(
            "config_reloads",
            "Files read again while serving (api_keys, sensitive_keys, tls), by outcome: applied, or refused (the previous contents stay in force)",
            reloads.clone(),
        );
        sources.clerk.register(&mut registry);
        registry.register_collector(Box::new(StateCollector(sources)));
        Arc::new(Metrics {
            registry,
            rpc_requests,
            rpc_seconds,
            reloads,
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

    /// A file read again while serving: `applied` or `refused`.
    pub fn record_reload(&self, file: &'static str, applied: bool) {
        let outcome = if applied { "applied" } else { "refused" };
        self.reloads
            .get_or_create(&ReloadLabels { file, outcome })
            .inc();
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

/// Gauges read from the sync status: `(name, help)`, in the order [`gauge_values`] gives them.
const GAUGES: [(&str, &str); 10] = [
    ("users", "Users in the index"),
    (
        "tombstones",
        "Deleted users remembered so late updates cannot bring them back",
    ),
    (
        "index_generation",
        "Index commits since the index was created",
    ),
    ("index_size_bytes", "Bytes of the index files on disk"),
    (
        "freshness_lag_seconds",
        "Time since the newest change the index holds was made in Clerk (0 before any)",
    ),
    (
        "backfill_complete",
        "1 once the first full copy from Clerk is in the index",
    ),
    ("backfill_users_seen", "Users copied by the backfill so far"),
    (
        "backfill_users_expected",
        "Users Clerk reported when the backfill started (0 if unknown)",
    ),
    (
        "reconcile_sweep_in_progress",
        "1 while a sweep is under way (it resumes after a restart)",
    ),
    (
        "unreadable_users",
        "Users Clerk listed that could not be parsed; catch-ups fetch them again by id",
    ),
];

fn gauge_values(status: &SyncStatus, index_bytes: u64) -> [f64; 10] {
    let flag = |on: bool| if on { 1.0 } else { 0.0 };
    [
        status.freshness.user_count as f64,
        status.tombstones as f64,
        status.freshness.generation as f64,
        index_bytes as f64,
        status.lag_ms as f64 / 1000.0,
        flag(status.backfill.complete),
        status.backfill.users_seen as f64,
        status.backfill.users_total as f64,
        flag(status.reconcile.state.sweep.is_some()),
        status.unreadable_users as f64,
    ]
}

/// Counters with a label: `(name, label, help)`, in the order [`labelled_values`] gives them.
const LABELLED_COUNTERS: [(&str, &str, &str); 4] = [
    (
        "writer_changes",
        "result",
        "Changes the index writer received, by result",
    ),
    (
        "webhook_deliveries",
        "outcome",
        "Webhook deliveries since start, by outcome",
    ),
    (
        "reconcile_runs",
        "kind",
        "Finished reconcile runs since start, by kind",
    ),
    (
        "reconcile_failures",
        "kind",
        "Failed reconcile runs since start, by kind",
    ),
];

fn labelled_values(status: &SyncStatus) -> [Vec<(&'static str, u64)>; 4] {
    let (writer, reconcile) = (&status.writer, &status.reconcile);
    [
        vec![
            ("applied", writer.applied),
            ("ignored_stale", writer.ignored_stale),
            ("ignored_deleted", writer.ignored_deleted),
        ],
        status
            .webhooks
            .iter()
            .map(|(outcome, count)| (webhook_label(*outcome), *count))
            .collect(),
        vec![
            ("catch_up", reconcile.catch_ups),
            ("sweep", reconcile.sweeps),
        ],
        vec![
            ("catch_up", reconcile.catch_up_failures),
            ("sweep", reconcile.sweep_failures),
        ],
    ]
}

impl Collector for StateCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> fmt::Result {
        let sources = &self.0;
        let status = sources.sync.status();
        let e = &mut encoder;
        let values = gauge_values(&status, directory_size(&sources.index_dir));
        for ((name, help), value) in GAUGES.iter().zip(values) {
            single(e, name, help, ConstGauge::new(value))?;
        }
        let columns = &sources.sync.destination.local_index().fields().columns;
        let cached = ConstGauge::new(columns.bytes() as f64);
        single(
            e,
            "column_cache_bytes",
            "Bytes of decoded columns held in memory (bounded by --column-cache-mb)",
            cached,
        )?;
        let segments = sources.sync.destination.local_index().snapshot();
        let segments = ConstGauge::new(segments.searcher.segment_readers().len() as f64);
        single(
            e,
            "index_segments",
            "Searchable segments of the index (every query searches each one)",
            segments,
        )?;
        let paused = ConstGauge::new(if status.writer.paused.is_some() {
            1.0
        } else {
            0.0
        });
        single(
            e,
            "writes_paused",
            "1 while index writes are paused after a failed commit (webhooks get 503 until a retry commits)",
            paused,
        )?;
        let failures = ConstCounter::new(status.writer.commit_failures);
        single(
            e,
            "commit_failures",
            "Index commits that failed since start",
            failures,
        )?;
        let commits = ConstCounter::new(status.writer.commits);
        single(e, "commits", "Index commits since start", commits)?;
        segment_metrics(e, sources.segments.metrics())?;
        if let Some(destinations) = &sources.destinations {
            destination_metrics(e, destinations)?;
        }
        let pages = ConstCounter::new(status.backfill.pages);
        single(
            e,
            "backfill_pages",
            "Pages of users the backfill applied since start",
            pages,
        )?;
        for ((name, label, help), values) in LABELLED_COUNTERS.iter().zip(labelled_values(&status))
        {
            let values = values.into_iter().map(|(at, v)| (at, ConstCounter::new(v)));
            labelled(e, name, help, MetricType::Counter, Some(label), values)?;
        }
        encode_last_runs(e, &status.reconcile.state)?;
        encode_budgets(e, &sources.budgets)?;
        if let Some(replica) = &status.replica {
            encode_replica(e, replica)?;
        }
        super::process::encode(e)?;
        let now = ConstGauge::new(now_ms() as f64 / 1000.0);
        single(
            e,
            "scrape_timestamp_seconds",
            "When this scrape was read (Unix time), to compare with the timestamps above",
            now,
        )
    }
}

/// One number of a reconcile run.
type RunField = fn(&ReconcileRun) -> f64;

/// What the last run of each reconcile kind did.
fn encode_last_runs(e: &mut DescriptorEncoder, state: &ReconcileState) -> fmt::Result {
    let runs = [
        ("catch_up", state.last_catch_up.as_ref()),
        ("sweep", state.last_sweep.as_ref()),
    ];
    let last = |field: fn(&ReconcileRun) -> f64| -> Vec<(&str, f64)> {
        runs.iter()
            .filter_map(|(kind, run)| run.map(|run| (*kind, field(run))))
            .collect()
    };
    let tables: [(&str, &str, RunField); 3] = [
        (
            "reconcile_last_finished_timestamp_seconds",
            "When the last reconcile run of each kind finished (Unix time)",
            |run| run.finished_at_ms as f64 / 1000.0,
        ),
        (
            "reconcile_last_users_listed",
            "Clerk users the last run of each kind listed",
            |run| run.users_listed as f64,
        ),
        (
            "reconcile_last_repairs",
            "Users the last run of each kind applied or deleted (what webhooks had missed)",
            |run| (run.upserts + run.deletes) as f64,
        ),
    ];
    for (name, help, field) in tables {
        let values = last(field)
            .into_iter()
            .map(|(at, v)| (at, ConstGauge::new(v)));
        labelled(e, name, help, MetricType::Gauge, Some("kind"), values)?;
    }
    Ok(())
}

/// Every budget: what is held now, what was refused, what is buffered and suppressed.
fn encode_budgets(e: &mut DescriptorEncoder, budgets: &Budgets) -> fmt::Result {
    let held = Budget::ALL
        .iter()
        .map(|b| (b.name(), ConstGauge::new(budgets.held(*b) as f64)));
    let help = "Slots of each budget held now (exports, watches, HTTP and gRPC connections)";
    labelled(
        e,
        "budget_held",
        help,
        MetricType::Gauge,
        Some("budget"),
        held,
    )?;
    let refused = Budget::ALL
        .iter()
        .map(|b| (b.name(), ConstCounter::new(budgets.refused(*b))));
    let help = "Requests and connections refused since start because a budget was used up";
    labelled(
        e,
        "budget_refused",
        help,
        MetricType::Counter,
        Some("budget"),
        refused,
    )?;
    single(
        e,
        "stream_buffered_bytes",
        "Bytes of export chunks made and not yet handed to their connections",
        ConstGauge::new(budgets.buffered_bytes() as f64),
    )?;
    single(
        e,
        "export_threads",
        "Export producers on blocking threads now (none wait there for slow readers)",
        ConstGauge::new(budgets.producing() as f64),
    )?;
    single(
        e,
        "log_lines_suppressed",
        "Log lines from unauthenticated input not written (over the per-second budget)",
        ConstCounter::new(budgets.unauthenticated_log.suppressed()),
    )
}

/// Cluster mode: this replica's place in the change log and the lease.
fn encode_replica(e: &mut DescriptorEncoder, replica: &ReplicaStatus) -> fmt::Result {
    single(
        e,
        "cluster_committed_sequence",
        "Cluster mode: the last change-log sequence this replica's index has committed",
        ConstGauge::new(replica.committed_sequence as f64),
    )?;
    single(
        e,
        "cluster_unreadable_messages",
        "Cluster mode: change-log messages this replica could not read and skipped",
        ConstCounter::new(replica.unreadable_messages),
    )?;
    single(
        e,
        "cluster_sync_lease_held",
        "Cluster mode: 1 while this replica holds the sync lease (copies from Clerk)",
        ConstGauge::new(if replica.holds_sync_lease { 1.0 } else { 0.0 }),
    )
}

/// Each destination's deliveries, failures, lag and state.
fn destination_metrics(e: &mut DescriptorEncoder, destinations: &Destinations) -> fmt::Result {
    let listed = destinations.list();
    let counters = destinations.counters();
    let counter = |name: &str| {
        counters
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, c)| c.clone())
    };
    let count = |name: &str, pick: fn(&Counters) -> u64| {
        ConstCounter::new(counter(name).map_or(0, |c| pick(&c)))
    };
    let names: Vec<&str> = listed.iter().map(|d| d.name.as_str()).collect();
    labelled(
        e,
        "destination_delivered_events",
        "Segment events a destination's receiver acknowledged (2xx) since start",
        MetricType::Counter,
        Some("destination"),
        names
            .iter()
            .map(|&n| (n, count(n, |c| c.delivered_events.load(Ordering::Relaxed)))),
    )?;
    labelled(
        e,
        "destination_failed_attempts",
        "Delivery requests to a destination that failed (error, timeout or non-2xx) since start",
        MetricType::Counter,
        Some("destination"),
        names
            .iter()
            .map(|&n| (n, count(n, |c| c.failed_attempts.load(Ordering::Relaxed)))),
    )?;
    let lags: Vec<(u64, f64)> = listed.iter().map(|d| destinations.lag(d)).collect();
    labelled(
        e,
        "destination_lag_events",
        "Committed events of a destination's segments it has not delivered yet",
        MetricType::Gauge,
        Some("destination"),
        names
            .iter()
            .zip(&lags)
            .map(|(&n, l)| (n, ConstGauge::new(l.0 as f64))),
    )?;
    labelled(
        e,
        "destination_lag_seconds",
        "Age of the oldest event a destination has not delivered yet (0 when none)",
        MetricType::Gauge,
        Some("destination"),
        names
            .iter()
            .zip(&lags)
            .map(|(&n, l)| (n, ConstGauge::new(l.1))),
    )?;
    labelled(
        e,
        "destination_state",
        "A destination's state: 0 active, 1 paused, 2 failing (gave up after the retry window), 3 gap (resync it)",
        MetricType::Gauge,
        Some("destination"),
        listed.iter().map(|d| {
            let code = match d.state {
                State::Active => 0.0,
                State::Paused => 1.0,
                State::Failing => 2.0,
                State::Gap => 3.0,
            };
            (d.name.as_str(), ConstGauge::new(code))
        }),
    )
}

/// The saved segments' numbers.
fn segment_metrics(e: &mut DescriptorEncoder, m: SegmentMetrics) -> fmt::Result {
    let help = "Saved segments, and how many of them time moves (relative times like now-30d)";
    labelled(
        e,
        "segments",
        help,
        MetricType::Gauge,
        Some("kind"),
        [
            ("all", ConstGauge::new(m.segments as f64)),
            ("time_driven", ConstGauge::new(m.time_driven as f64)),
        ],
    )?;
    labelled(
        e,
        "segment_events",
        "Entered/Exited events committed since start, by what caused them (time or a change)",
        MetricType::Counter,
        Some("cause"),
        [
            ("time", ConstCounter::new(m.time_events)),
            ("change", ConstCounter::new(m.events - m.time_events)),
        ],
    )?;
    single(
        e,
        "segment_ticks",
        "Time ticks of time-driven segments since start",
        ConstCounter::new(m.ticks),
    )?;
    single(
        e,
        "segment_tick_seconds",
        "Time spent in time ticks since start (divide by clerk_index_segment_ticks for the mean)",
        ConstCounter::new(m.tick_seconds),
    )?;
    single(
        e,
        "segment_tick_work_seconds",
        "Of the time in time ticks, the time spent evaluating on the index writer (not waiting for it)",
        ConstCounter::new(m.tick_work_seconds),
    )?;
    single(
        e,
        "segment_clock_lag_seconds",
        "How far time-driven segments' clock is behind now (a resolution or less when ticking)",
        ConstGauge::new(m.clock_lag_seconds),
    )
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
