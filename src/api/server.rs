//! The gRPC server: the three services behind the API-key interceptor, health (reporting
//! `""` and `clerkindex.v1.UserIndex`), reflection (v1 and v1alpha), the telemetry layer,
//! gRPC-Web with CORS for configured origins, TLS, a connection budget, and connections the
//! shutdown can cut once its deadline passes.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::body::Body;
use tonic_health::ServingStatus;
use tonic_health::pb::health_server::HealthServer;
use tonic_health::server::{HealthReporter, HealthService};
use tonic_web::GrpcWebLayer;
use tower::Layer;
use tower::ServiceExt;
use tower::util::BoxCloneSyncService;
use tower_http::cors::{AllowOrigin, CorsLayer};

use super::accept;
use super::auth::Authenticate;
use super::connect::ApiService;
use super::proto;
use super::segments_service::SegmentsService;
use super::sync_service::SyncService;
use super::telemetry::{RecordedBody, RpcTelemetry};
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
    /// Browser origins allowed to call by gRPC-Web (CORS).
    pub grpc_web_origins: Vec<http::HeaderValue>,
    pub metrics: Arc<Metrics>,
    pub budgets: Arc<Budgets>,
}

impl GrpcServices {
    /// The API's three services behind the key check: what the gRPC port serves and the HTTP
    /// port's bridge calls.
    pub fn into_api(self) -> Api {
        let GrpcServices {
            user_index,
            sync,
            segments,
            auth,
            grpc_web_origins,
            metrics,
            budgets,
        } = self;
        let routes = tonic::service::Routes::new(user_index.into_server(auth.clone()))
            .add_service(sync.into_server(auth.clone()))
            .add_service(segments.into_server(auth));
        Api {
            routes,
            metrics,
            budgets,
            grpc_web_origins,
        }
    }
}

/// The API's services, ready for both ports.
#[derive(Clone)]
pub struct Api {
    routes: tonic::service::Routes,
    metrics: Arc<Metrics>,
    budgets: Arc<Budgets>,
    /// The browser origins allowed to call the gRPC port by gRPC-Web (CORS).
    grpc_web_origins: Vec<http::HeaderValue>,
}

impl Api {
    /// The services behind their telemetry, as one in-process tower service.
    pub fn service(&self) -> ApiService {
        let service = RpcTelemetry::new(self.metrics.clone()).layer(self.routes.clone());
        let service = ServiceExt::<http::Request<Body>>::map_response(
            service,
            |response: http::Response<RecordedBody<Body>>| response.map(Body::new),
        );
        BoxCloneSyncService::new(service)
    }

    /// CORS for gRPC-Web callers on the gRPC port: only the configured origins, only POST, the
    /// headers a gRPC-Web client sends, and the status headers it must read.
    fn cors(&self) -> CorsLayer {
        CorsLayer::new()
            .allow_origin(AllowOrigin::list(self.grpc_web_origins.clone()))
            .allow_methods([http::Method::POST])
            .allow_headers(GRPC_WEB_REQUEST_HEADERS.map(http::HeaderName::from_static))
            .expose_headers(GRPC_WEB_RESPONSE_HEADERS.map(http::HeaderName::from_static))
            .max_age(std::time::Duration::from_secs(600))
    }
}

/// What a gRPC-Web client sends, allowed across origins.
const GRPC_WEB_REQUEST_HEADERS: [&str; 8] = [
    "authorization",
    "content-type",
    "x-grpc-web",
    "x-user-agent",
    "grpc-timeout",
    "traceparent",
    "tracestate",
    "x-request-id",
];
/// What a gRPC-Web client reads, exposed across origins.
const GRPC_WEB_RESPONSE_HEADERS: [&str; 4] = [
    "grpc-status",
    "grpc-message",
    "grpc-status-details-bin",
    "x-filter-error-position",
];

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

    /// Serves `api` on `listener` until `stop` fires; in-flight calls then finish, and
    /// connections still open when `cut` fires are closed.
    pub fn serve(
        self,
        api: &Api,
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
        // HTTP/1.1 too, for gRPC-Web clients.
        let server = tonic::transport::Server::builder().accept_http1(true);
        let budgets = api.budgets.clone();
        // HTTP/2's own per-connection limit: a client may not open more concurrent calls.
        let server = server
            .max_concurrent_streams(Some(budgets.limits.streams_per_connection))
            // Pings find peers that vanished without closing (a node lost, a NAT entry expired),
            // so their connections give back their slots.
            .http2_keepalive_interval(Some(KEEPALIVE_INTERVAL))
            .http2_keepalive_timeout(Some(KEEPALIVE_TIMEOUT));
        // Outermost first: CORS answers preflights, gRPC-Web is translated to gRPC, and the
        // telemetry sees every call as gRPC.
        let router = server
            .layer(api.cors())
            .layer(GrpcWebLayer::new())
            .layer(RpcTelemetry::new(api.metrics.clone()))
            .add_routes(api.routes.clone())
            .add_service(HealthServer::new(HealthService::from_health_reporter(
                self.health.reporter,
            )))
            .add_service(reflection_v1)
            .add_service(reflection_v1alpha);
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
