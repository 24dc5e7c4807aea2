//! Streaming exports (`UserIndex.ExportUsers`, `Segments.ListSegmentMembers`): one snapshot, id
//! order, chunks produced on a blocking thread into a small channel. The producer waits whenever
//! the channel is full, and the channel drains only as fast as the API can send it (gRPC's
//! HTTP/2 flow control), so a slow client slows the export down instead of making the server
//! buffer it. Every chunk carries the cursor to resume after it.

use std::sync::Arc;

use tokio::sync::mpsc;

use super::page_token;
use super::projection::{Projection, id_json};
use crate::error::Error;
use crate::index::{IdOrderedMatches, Snapshot, SortCursor};
use crate::query::Filter;
use crate::query::sort::{SortSpec, SortValue};

pub const DEFAULT_CHUNK_SIZE: u32 = 500;
pub const MAX_CHUNK_SIZE: u32 = 5_000;
/// Chunks buffered between the producer and gRPC.
const BUFFERED_CHUNKS: usize = 2;

/// One user of an answer: its id and its projected JSON.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadUser {
    pub id: String,
    pub json: String,
}

/// One chunk of an export.
#[derive(Clone)]
pub struct ExportChunk {
    /// The users, projected (empty for an ids-only export).
    pub users: Vec<ReadUser>,
    /// The ids alone, for an ids-only export.
    pub ids: Vec<String>,
    /// Resumes after this chunk.
    pub cursor: String,
    /// The first chunk only: the users the export will send, and the snapshot it reads.
    pub first: Option<Arc<Snapshot>>,
    pub total: u64,
}

/// The chunks of one export, as produced.
pub type ExportChunks = mpsc::Receiver<Result<ExportChunk, Error>>;

/// A validated export request.
pub struct ExportJob {
    pub filter: Option<Filter>,
    pub projection: Projection,
    pub chunk_size: usize,
    /// Resume after this user id.
    pub after: Option<String>,
    /// Send ids alone, in `ExportUsersResponse.ids`.
    pub ids_only: bool,
}

impl ExportJob {
    pub fn new(
        filter: Option<Filter>,
        projection: Projection,
        chunk_size: u32,
        resume_cursor: &str,
    ) -> Result<ExportJob, Error> {
        let chunk_size = match chunk_size {
            0 => DEFAULT_CHUNK_SIZE,
            n if n > MAX_CHUNK_SIZE => {
                return Err(Error::InvalidArgument(format!(
                    "chunk_size {n} is above the limit of {MAX_CHUNK_SIZE}"
                )));
            }
            n => n,
        } as usize;
        let after = page_token::decode(resume_cursor, filter.as_ref(), &SortSpec::by_id())
            .map_err(|_| {
                Error::InvalidArgument(
                    "resume_cursor is not a cursor of an export with this filter".into(),
                )
            })?
            .map(|cursor| cursor.id);
        Ok(ExportJob {
            filter,
            projection,
            chunk_size,
            after,
            ids_only: false,
        })
    }

    /// Asks for ids alone (`ExportUsersRequest.ids_only`).
    pub fn with_ids_only(mut self, ids_only: bool) -> Result<ExportJob, Error> {
        if ids_only && !self.projection.is_empty_or_ids_only() {
            return Err(Error::InvalidArgument(
                "ids_only exports send ids alone: leave fields empty or [\"id\"]".into(),
            ));
        }
        self.ids_only = ids_only;
        Ok(self)
    }

    fn cursor_after(&self, id: &str) -> String {
        page_token::encode(
            SortCursor {
                value: SortValue::Str(id.to_string()),
                id: id.to_string(),
            },
            self.filter.as_ref(),
            &SortSpec::by_id(),
        )
    }
}

/// Starts the export on a blocking thread and returns its chunks as they are produced.
pub fn export(snapshot: Arc<Snapshot>, job: ExportJob, now_ms: i64) -> ExportChunks {
    let (sink, chunks) = mpsc::channel(BUFFERED_CHUNKS);
    tokio::task::spawn_blocking(move || {
        let matches = match snapshot.export(job.filter.as_ref(), job.after.as_deref(), now_ms) {
            Ok(matches) => matches,
            Err(error) => {
                let _ = sink.blocking_send(Err(Error::from(error)));
                return;
            }
        };
        let mut matches = matches;
        produce(&mut matches, &job, &sink);
    });
    chunks
}

/// Sends every chunk of `matches`, waiting for room in `sink`. Stops early when the receiver is
/// gone (the client cancelled or disconnected).
fn produce(
    matches: &mut IdOrderedMatches,
    job: &ExportJob,
    sink: &mpsc::Sender<Result<ExportChunk, Error>>,
) {
    let snapshot = matches.snapshot().clone();
    let mut first = true;
    let mut cursor = job
        .after
        .as_deref()
        .map(|id| job.cursor_after(id))
        .unwrap_or_default();
    loop {
        let chunk = match matches.next_chunk(job.chunk_size) {
            Ok(chunk) => chunk,
            Err(error) => {
                let _ = sink.blocking_send(Err(Error::from(error)));
                return;
            }
        };
        if chunk.is_empty() && !first {
            return;
        }
        let done = chunk.is_empty();
        if let Some((last, _)) = chunk.last() {
            cursor = job.cursor_after(last);
        }
        let mut users = Vec::with_capacity(if job.ids_only { 0 } else { chunk.len() });
        let mut ids = Vec::with_capacity(if job.ids_only { chunk.len() } else { 0 });
        for (id, address) in chunk {
            if job.ids_only {
                ids.push(id);
                continue;
            }
            let json = if job.projection.ids_only() {
                // Served from the id column alone: no stored-document reads.
                id_json(&id)
            } else {
                let projected =
                    snapshot
                        .stored_at(address)
                        .map_err(Error::from)
                        .and_then(|stored| {
                            job.projection.apply_stored(
                                &id,
                                &stored.raw_json,
                                stored.sealed.as_deref(),
                            )
                        });
                match projected {
                    Ok(json) => json,
                    Err(error) => {
                        let _ = sink.blocking_send(Err(error));
                        return;
                    }
                }
            };
            users.push(ReadUser { id, json });
        }
        let message = ExportChunk {
            users,
            ids,
            cursor: cursor.clone(),
            total: if first { matches.total() } else { 0 },
            first: first.then(|| snapshot.clone()),
        };
        if sink.blocking_send(Ok(message)).is_err() {
            tracing::debug!(
                remaining = matches.remaining(),
                "export receiver gone; stopping"
            );
            return;
        }
        if done {
            return;
        }
        first = false;
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::time::Duration;

    use super::*;
    use crate::auth::Caller;
    use crate::index::tests::fixture;

    #[test]
    fn a_slow_reader_holds_the_producer_back_and_still_gets_every_user_once() {
        let fixture = fixture();
        let snapshot = fixture.index.snapshot();
        let job = ExportJob::new(
            None,
            Projection::new(vec!["id".into()], &Caller::unrestricted()).unwrap(),
            50,
            "",
        )
        .unwrap();
        let matches = snapshot.export(None, None, 0).unwrap();
        let total = matches.total();
        assert!(total > 1_000);
        let (sink, mut chunks) = mpsc::channel(BUFFERED_CHUNKS);
        let producer = std::thread::spawn(move || {
            let mut matches = matches;
            produce(&mut matches, &job, &sink)
        });
        let first = chunks.blocking_recv().unwrap().unwrap();
        assert_eq!(first.total, total);
        std::thread::sleep(Duration::from_millis(300));
        // Waiting for room, not racing ahead: at most the channel's worth is buffered.
        assert!(!producer.is_finished());
        assert!(chunks.len() <= BUFFERED_CHUNKS);
        let mut ids: Vec<String> = first.users.into_iter().map(|u| u.id).collect();
        while let Some(chunk) = chunks.blocking_recv() {
            let chunk = chunk.unwrap();
            assert_eq!(chunk.total, 0);
            ids.extend(chunk.users.into_iter().map(|u| u.id));
        }
        producer.join().unwrap();
        let unique: BTreeSet<&String> = ids.iter().collect();
        assert_eq!(ids.len() as u64, total);
        assert_eq!(unique.len(), ids.len());
        assert!(ids.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn the_producer_stops_when_the_reader_goes_away() {
        let fixture = fixture();
        let snapshot = fixture.index.snapshot();
        let job = ExportJob::new(None, Projection::default(), 10, "").unwrap();
        let matches = snapshot.export(None, None, 0).unwrap();
        let total = matches.total();
        let (sink, mut chunks) = mpsc::channel(BUFFERED_CHUNKS);
        let producer = std::thread::spawn(move || {
            let mut matches = matches;
            produce(&mut matches, &job, &sink);
            matches.remaining()
        });
        chunks.blocking_recv().unwrap().unwrap();
        drop(chunks);
        // Stopped after at most the chunks in flight, not after reading every user.
        let remaining = producer.join().unwrap();
        assert!(
            remaining > total - 10 * (BUFFERED_CHUNKS as u64 + 2),
            "{remaining} of {total}"
        );
    }

    #[test]
    fn cursors_belong_to_their_filter() {
        let job = ExportJob::new(None, Projection::default(), 10, "").unwrap();
        let cursor = job.cursor_after("user_5");
        assert_eq!(
            ExportJob::new(None, Projection::default(), 10, &cursor)
                .unwrap()
                .after
                .as_deref(),
            Some("user_5")
        );
        let other = crate::query::parse_filter("banned = true", &Default::default()).unwrap();
        assert!(ExportJob::new(Some(other), Projection::default(), 10, &cursor).is_err());
        assert!(ExportJob::new(None, Projection::default(), 10, "garbage").is_err());
        assert!(ExportJob::new(None, Projection::default(), MAX_CHUNK_SIZE + 1, "").is_err());
    }
}
