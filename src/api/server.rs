//! The gRPC server: the three services behind the API-key interceptor, health (reporting
//! `""` and `clerkindex.v1.UserIndex`), reflection (v1 and v1alpha), the telemetry layer, TLS,
//! a connection budget, and connections the shutdown can cut once its deadline passes.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic_health::ServingStatus;
use tonic_health::pb::health_server::HealthServer;
use tonic_health::server::{HealthReporter, HealthService};

use super::accept;
use super::auth::Authenticate;
use super::proto;
use super::segments_service::SegmentsService;
use super::sync_service::SyncService;
use super::telemetry::RpcTelemetry;
use super::tls::ServerTls;
use super::user_index::UserIndexService;
use crate::limits::Budgets;
use crate::telemetry::metrics::Metrics;

/// The gRPC service name health reports on (and `""`, the whole server).
pub const USER_INDEX_SERVICE: &str = "clerkindex.v1.UserIndex";

/// How often an HTTP/2 connection is pinged, and how long the answer may take.
const KEEPALIVE_INTERVAL: std::time::Duration = std::time::Duration::from_secs(60);
const KEEPALIVE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(20);

/// What the gRPC health service reports. Cheap to clone.
#[derive(Clone)]
pub struct Health {
    reporter: HealthReporter,
}

impl Health {
    /// Reports `NOT_SERVING` or `SERVING` for the server and the `UserIndex` service.
    pub async fn set_serving(&self, serving: bool) {
        let status = match serving {
            true => ServingStatus::Serving,
            false => ServingStatus::NotServing,
        };
        for service in ["", USER_INDEX_SERVICE] {
            self.reporter.set_service_status(service, status).await;
        }
    }
}

/// The services the gRPC port serves.
pub struct GrpcServices {
    pub user_index: UserIndexService,
    pub sync: SyncService,
    pub segments: SegmentsService,
    pub auth: Authenticate,
    pub metrics: Arc<Metrics>,
    pub budgets: Arc<Budgets>,
}

/// The gRPC server, ready to run; and the health it reports (`NOT_SERVING` until told).
pub struct GrpcServer {
    health: Health,
}

impl GrpcServer {
    pub async fn new() -> GrpcServer {
        let health = Health {
            reporter: HealthReporter::new(),
        };
        health.set_serving(false).await;
        GrpcServer { health }
    }

    pub fn health(&self) -> &Health {
        &self.health
    }

    /// Serves `services` on `listener` until `stop` fires; in-flight calls then finish, and
    /// connections still open when `cut` fires are closed.
    pub fn serve(
        self,
        services: GrpcServices,
        tls: Option<Arc<ServerTls>>,
        listener: TcpListener,
        stop: CancellationToken,
        cut: CancellationToken,
    ) -> anyhow::Result<impl Future<Output = std::io::Result<()>> + use<>> {
        let reflection_v1 = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            .build_v1()?;
        let reflection_v1alpha = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            .build_v1alpha()?;
        let server = tonic::transport::Server::builder();
        let GrpcServices {
            user_index,
            sync,
            segments,
            auth,
            metrics,
            budgets,
        } = services;
        // HTTP/2's own per-connection limit: a client may not open more concurrent calls.
        let server = server
            .max_concurrent_streams(Some(budgets.limits.streams_per_connection))
            // Pings find peers that vanished without closing (a node lost, a NAT entry expired),
            // so their connections give back their slots.
            .http2_keepalive_interval(Some(KEEPALIVE_INTERVAL))
            .http2_keepalive_timeout(Some(KEEPALIVE_TIMEOUT));
        let router = server
            .layer(RpcTelemetry::new(metrics))
            .add_service(HealthServer::new(HealthService::from_health_reporter(
                self.health.reporter,
            )))
            .add_service(reflection_v1)
            .add_service(reflection_v1alpha)
            .add_service(user_index.into_server(auth.clone()))
            .add_service(sync.into_server(auth.clone()))
            .add_service(segments.into_server(auth));
        let stop = stop.cancelled_owned();
        let serving: Pin<Box<dyn Future<Output = _> + Send>> = match tls {
            // Our own TLS acceptor, so certificates can be replaced while serving.
            Some(tls) => {
                let incoming = accept::incoming(listener, budgets, cut, move |c| tls.open(c));
                Box::pin(router.serve_with_incoming_shutdown(incoming, stop))
            }
            None => {
                let incoming = accept::incoming(listener, budgets, cut, accept::plaintext);
                Box::pin(router.serve_with_incoming_shutdown(incoming, stop))
            }
        };
        Ok(async move { serving.await.map_err(std::io::Error::other) })
    }
}
