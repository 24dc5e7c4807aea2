//! Reading users on a caller's behalf, whatever the transport: the snapshot that answers, the
//! field rules of the caller's scopes, paging with opaque page tokens, projections by field
//! mask (sensitive values opened only for the `sensitive` scope) and exports streamed with
//! backpressure. `api` converts requests into these calls and their answers back; nothing here
//! sees protobuf. This file only declares and re-exports.

mod columns;
mod export;
mod mask;
mod page_token;
mod projection;
mod reader;
mod threads;
mod validate;

pub use export::{ExportChunk, ExportChunks, ExportJob, ReadUser};
pub use page_token::{decode as decode_page_token, encode as encode_page_token};
pub use projection::{Projection, project_json};
pub use reader::{
    Answer, DEFAULT_PAGE_SIZE, ExportQuery, FieldCatalog, ReadAt, SearchPage, SearchQuery,
    UserReader,
};
pub use validate::{FilterWarning, WarningCode};
