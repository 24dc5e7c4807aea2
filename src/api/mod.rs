//! The gRPC and HTTP adapters: the servers, service implementations and proto <-> domain
//! conversion, the one error -> status mapping, the webhook route. The only module that sees
//! protobuf, tonic or HTTP types. This file only declares and re-exports.

mod accept;
mod auth;
mod closable;
mod connect;
mod connect_error;
mod connect_methods;
mod connect_stream;
mod console;
mod convert;
mod destinations;
mod export;
mod filter_tree;
mod http;
pub mod proto;
mod reload;
mod segments_service;
mod server;
mod status;
mod sync_service;
mod telemetry;
mod tickets;
mod tls;
mod user_index;
mod webhook;

pub use auth::Authenticate;
pub use connect::{ApiBridge, ApiService, MAX_REQUEST_BYTES};
pub use http::{HttpServices, serve_http};
pub use reload::{Followed, follow_files};
pub use segments_service::SegmentsService;
pub use server::{Api, GrpcServer, GrpcServices, Health, USER_INDEX_SERVICE};
pub use status::{ERROR_DOMAIN, FILTER_ERROR_POSITION, Reason};
pub use sync_service::SyncService;
pub use telemetry::{RpcSystem, RpcTelemetry};
pub use tls::{ServerTls, TlsError};
pub use user_index::UserIndexService;
pub use webhook::{WEBHOOK_PATH, webhook_router};
