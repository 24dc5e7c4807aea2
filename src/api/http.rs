//! The HTTP port: `/livez`, `/readyz` (503 with the backfill's progress until ready),
//! `/metrics` (OpenMetrics text) and the webhook route.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::serve::ListenerExt;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use super::webhook::webhook_router;
use crate::sync::{BackfillProgress, WebhookReceiver};
use crate::telemetry::metrics::{self, Metrics};

/// What the HTTP port serves.
pub struct HttpServices {
    pub progress: Arc<BackfillProgress>,
    pub metrics: Arc<Metrics>,
    pub webhooks: Arc<WebhookReceiver>,
    /// The largest webhook body accepted.
    pub webhook_body_limit: usize,
    /// How long a webhook delivery may take before it is answered 503.
    pub webhook_timeout: Duration,
}

/// Serves `services` on `listener` until `stop` fires.
pub async fn serve_http(
    services: HttpServices,
    listener: TcpListener,
    stop: CancellationToken,
) -> std::io::Result<()> {
    let router = probes(services.progress)
        .merge(metrics_route(services.metrics))
        .merge(webhook_router(
            services.webhooks,
            services.webhook_body_limit,
            services.webhook_timeout,
        ));
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    axum::serve(listener, router)
        .with_graceful_shutdown(stop.cancelled_owned())
        .await
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
    if progress.is_ready() {
        (StatusCode::OK, "ready".into())
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "backfill in progress: {} of {} users",
                progress.users_seen(),
                progress.users_total()
            ),
        )
    }
}
