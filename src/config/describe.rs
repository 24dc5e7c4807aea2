//! `clerk-index config`: the effective configuration as JSON, secrets masked.

use std::time::Duration;

use super::{Config, TlsConfig};
use crate::clerk::LimitSource;
use crate::index::ColumnCacheBudget;
use crate::redact::{mask, mask_url};

impl Config {
    /// The effective configuration as JSON, secrets masked (`clerk-index config`).
    pub fn describe(&self) -> serde_json::Value {
        let seconds = |d: Duration| d.as_secs_f64();
        serde_json::json!({
            "data_dir": self.data_dir.display().to_string(),
            "clerk": {
                "api_url": self.clerk.api_url,
                "secret_key": mask(&self.clerk.secret_key),
                "rate_limit": match self.clerk.rate_limit {
                    LimitSource::Given(limit) => limit.to_string(),
                    LimitSource::Instance => "auto".to_string(),
                },
                "page_size": self.walk.page_size,
                "concurrency": self.walk.concurrency,
            },
            "webhooks": {
                "signing_secrets": self.webhook_secrets.iter().map(|s| mask(s)).collect::<Vec<_>>(),
                "body_limit_bytes": self.webhook_body_limit,
                "timeout_secs": seconds(self.webhook_timeout),
            },
            "index": {
                "writer_memory_mb": self.index.writer_memory_bytes >> 20,
                "writer_threads": self.index.writer_threads,
                "column_cache_mb": match self.index.column_cache {
                    ColumnCacheBudget::Auto => serde_json::json!("auto"),
                    ColumnCacheBudget::Fixed(bytes) => serde_json::json!(bytes >> 20),
                },
                "commit_interval_ms": self.index.commit_interval.as_millis() as u64,
                "tombstone_retention_hours": self.index.tombstone_retention.as_secs() / 3600,
            },
            "reconcile": {
                "catch_up_every_secs": seconds(self.reconcile.catch_up_every),
                "sweep_every_secs": seconds(self.reconcile.sweep_every),
                "catch_up_max_offset": self.catch_up_max_offset,
            },
            "segments": {
                "retained_events": self.segments.retained_events,
                "time_resolution_ms": self.segments.time_resolution.as_millis() as u64,
                "history_days": self.segments.history_days,
            },
            "destinations": {
                "allow_private_addresses": self.destinations.allow_private,
                "allow_http": self.destinations.allow_http,
                "failing_after_secs": self.destinations.failing_after.as_secs(),
                "max_destinations": self.destinations.max_destinations,
                "held_events_max": self.segments.held_events_max,
            },
            "max_page_size": self.max_page_size,
            "limits": {
                "streams_per_connection": self.limits.streams_per_connection,
                "exports": self.limits.exports,
                "exports_per_key": self.limits.exports_per_key,
                "watches": self.limits.watches,
                "watches_per_key": self.limits.watches_per_key,
                "stream_buffer_bytes": self.limits.stream_buffer_bytes,
                "http_connections": self.limits.http_connections,
                "grpc_connections": self.limits.grpc_connections,
                "grpc_connections_per_peer": self.limits.grpc_connections_per_peer,
                "http_header_timeout_secs": seconds(self.limits.http_header_timeout),
                "stream_heartbeat_secs": seconds(self.limits.stream_heartbeat),
                "unauthenticated_log_lines_per_second": self.limits.unauthenticated_log_lines_per_second,
            },
            "shutdown_timeout_secs": self.shutdown_timeout.as_secs(),
            "console": self.console,
            "grpc_web_origins": self.grpc_web_origins.iter().filter_map(|o| o.to_str().ok()).collect::<Vec<_>>(),
            "auth": {
                "api_keys": self.auth.keys.describe(),
                "allow_unauthenticated": self.auth.allow_unauthenticated,
            },
            "tls": TlsConfig::mode(self.tls.as_ref()),
            "cluster": self.cluster.as_ref().map(|c| serde_json::json!({
                "url": mask_url(&c.url),
                "name": c.name,
                "replica_id": c.replica_id,
                "sync_lease_ttl_secs": c.lease_ttl.as_secs(),
                "stream_replicas": c.stream_replicas,
                "replicas": c.replicas,
            })),
            "sensitive": self.sensitive.as_ref().map(|s| serde_json::json!({
                "paths": s.paths().describe_list(),
                "key_ids": s.ring().ids().collect::<Vec<_>>(),
                "active_key_id": s.ring().active_id(),
            })),
        })
    }
}
