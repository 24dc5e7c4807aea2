//! Export chunks as gRPC messages: the reader's chunks, converted one by one as gRPC pulls them,
//! so the producer's backpressure reaches the client.

use std::pin::Pin;

use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::{Stream, StreamExt};
use tonic::Status;

use super::convert::freshness_to_proto;
use super::proto;
use crate::read::{ExportChunk, ExportChunks, ReadUser};

/// The stream of `ExportUsersResponse`s an export answers with.
pub type ExportStream =
    Pin<Box<dyn Stream<Item = Result<proto::ExportUsersResponse, Status>> + Send>>;

pub fn export_stream(chunks: ExportChunks) -> ExportStream {
    Box::pin(ReceiverStream::new(chunks).map(|chunk| match chunk {
        Ok(chunk) => Ok(chunk_to_proto(chunk)),
        Err(error) => Err(error.into()),
    }))
}

fn chunk_to_proto(chunk: ExportChunk) -> proto::ExportUsersResponse {
    let ExportChunk {
        users,
        ids,
        cursor,
        first,
        total,
        // Dropped once the message is built: the bytes are then the connection's (bounded by
        // HTTP/2 flow control), no longer the export's.
        buffered: _,
    } = chunk;
    proto::ExportUsersResponse {
        users: users
            .into_iter()
            .map(|ReadUser { id, json }| proto::User { id, json })
            .collect(),
        ids,
        cursor,
        total,
        freshness: first.as_ref().map(|snapshot| freshness_to_proto(snapshot)),
        event_sequence: first.map_or(0, |snapshot| snapshot.event_sequence),
    }
}
