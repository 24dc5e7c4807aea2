//! The HTTP port: `/livez`, `/readyz` (503 with the backfill's progress until ready),
//! `/metrics` (OpenMetrics text), the webhook route, and the API in the Connect protocol and
//! gRPC-Web.
//!
//! HTTP/1.1, served by our own accept loop so that no client can hold the port: a connection
//! must send each request's headers within the header timeout (idle keep-alive time counts), and
//! connections beyond the budget are closed at accept. The timeout covers only the wait for a
//! request's headers, so a stream being answered is exempt from it; the stream's heartbeats
//! keep proxies in between from closing it.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use axum::extract::ConnectInfo;
use tower::ServiceExt;

use super::connect::{ApiBridge, api_router};
use super::console::console_router;
use super::webhook::webhook_router;
use crate::limits::{Budget, Budgets};
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
    /// The connection budget and the header timeout.
    pub budgets: Arc<Budgets>,
    /// The API's methods (Connect and gRPC-Web), once the services are built.
    pub api: Option<ApiBridge>,
    /// Serve the web console at `/`.
    pub console: bool,
}

/// Serves `services` on `listener` until `stop` fires; requests in flight then finish.
pub async fn serve_http(
    services: HttpServices,
    listener: TcpListener,
    stop: CancellationToken,
) -> std::io::Result<()> {
    let budgets = services.budgets.clone();
    let console = match (&services.api, services.console) {
        (Some(bridge), true) => console_router(bridge.clone()),
        _ => Router::new(),
    };
    let api = services.api.map(api_router).unwrap_or_default();
    let router = probes(services.progress)
        .merge(api)
        .merge(console)
        .merge(metrics_route(services.metrics))
        .merge(webhook_router(
            services.webhooks,
            services.webhook_body_limit,
            services.webhook_timeout,
        ));
    let mut connections = JoinSet::new();
    loop {
        while connections.try_join_next().is_some() {}
        let (tcp, peer) = tokio::select! {
            () = stop.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                // Out of file descriptors, or a connection reset before accept: wait a little
                // rather than spin.
                Err(_) => {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
            },
        };
        let Ok(slot) = budgets.acquire(Budget::HttpConnections, &peer.ip().to_string()) else {
            drop(tcp);
            continue;
        };
        let _ = tcp.set_nodelay(true);
        // The peer's address, for the API's per-caller budgets when serving without keys.
        let service = router
            .clone()
            .map_request(move |mut request: axum::extract::Request<_>| {
                request.extensions_mut().insert(ConnectInfo(peer));
                request
            });
        let service = TowerToHyperService::new(service);
        let header_timeout = budgets.limits.http_header_timeout;
        let stop = stop.clone();
        connections.spawn(async move {
            let _slot = slot;
            let mut builder = http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(header_timeout);
            let connection = builder.serve_connection(TokioIo::new(tcp), service);
            tokio::pin!(connection);
            tokio::select! {
                _ = connection.as_mut() => {}
                () = stop.cancelled() => {
                    connection.as_mut().graceful_shutdown();
                    let _ = connection.await;
                }
            }
        });
    }
    while connections.join_next().await.is_some() {}
    Ok(())
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
