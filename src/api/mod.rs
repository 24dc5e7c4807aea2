//! The tonic adapter: service implementations and proto <-> domain conversion. The only module
//! that sees protobuf or tonic types (besides the error mapping in `error.rs`).

mod auth;
mod convert;
mod export;
mod page_token;
mod projection;
mod segments_service;
mod sync_service;
mod telemetry;
mod user_index;
mod webhook;

pub use auth::Authenticate;
pub use projection::project_json;
pub use segments_service::SegmentsService;
pub use sync_service::SyncService;
pub use telemetry::RpcTelemetry;
pub use user_index::UserIndexService;
pub use webhook::{WEBHOOK_PATH, webhook_router};

/// The generated protobuf and gRPC code (`proto/clerkindex/v1`).
pub mod proto {
    tonic::include_proto!("clerkindex.v1");

    /// For gRPC reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] =
        tonic::include_file_descriptor_set!("clerkindex_descriptor");
}
