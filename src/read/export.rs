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
use crate::index::{IdOrderedMatches, Snapshot, SortCursor, ValueColumns};
use crate::limits::{Budgets, Buffered, Slot};
use crate::query::Filter;
use crate::query::sort::{SortSpec, SortValue};

pub const DEFAULT_CHUNK_SIZE: u32 = 500;
pub const MAX_CHUNK_SIZE: u32 = 5_000;
/// Chunks buffered between the producer and gRPC.
const BUFFERED_CHUNKS: usize = 1;

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
    /// Counts the chunk's bytes as buffered until it is handed to the connection.
    pub buffered: Arc<Buffered>,
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
                return Err(Error::invalid(
                    "chunk_size",
                    format!("chunk_size {n} is above the limit of {MAX_CHUNK_SIZE}"),
                ));
            }
            n => n,
        } as usize;
        let after = page_token::decode(resume_cursor, filter.as_ref(), &SortSpec::by_id())
            .map_err(|_| {
                Error::invalid(
                    "resume_cursor",
                    "resume_cursor is not a cursor of an export with this filter",
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
            return Err(Error::invalid(
                "ids_only",
                "ids_only exports send ids alone: leave fields empty or [\"id\"]",
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

/// Starts the export (holding `slot` of the exports budget until it ends) and returns its chunks
/// as they are produced. Each chunk is made on a
/// blocking thread once the channel has room for it; while a slow reader keeps the channel full,
/// the export waits as a task, holding no thread. A chunk ends at `chunk_size` users or at a
/// third of the stream buffer budget in bytes, whichever comes first: with one chunk in the
/// channel and one being sent, an export holds about the budget at most. The export stops as
/// soon as its reader is gone.
pub fn export(
    snapshot: Arc<Snapshot>,
    job: ExportJob,
    now_ms: i64,
    budgets: Arc<Budgets>,
    slot: Slot,
) -> ExportChunks {
    let (sink, chunks) = mpsc::channel(BUFFERED_CHUNKS);
    tokio::spawn(async move {
        // The export's place in the exports budget, given back when this task ends.
        let _slot = slot;
        let job = Arc::new(job);
        let (opening, producing) = (job.clone(), budgets.clone());
        let opened = tokio::task::spawn_blocking(move || {
            let _producing = producing.producer();
            let matches =
                snapshot.export(opening.filter.as_ref(), opening.after.as_deref(), now_ms)?;
            match opening.projection.columns() {
                Some(plan) if !opening.ids_only => {
                    matches.with_values(ValueColumns::new(plan.paths().to_vec()))
                }
                _ => Ok(matches),
            }
        })
        .await;
        let matches = match opened {
            Ok(Ok(matches)) => matches,
            Ok(Err(error)) => {
                let _ = sink.send(Err(Error::from(error))).await;
                return;
            }
            Err(panic) => {
                let _ = sink
                    .send(Err(Error::Internal(format!("export task failed: {panic}"))))
                    .await;
                return;
            }
        };
        let mut producer = Producer::new(matches, job, budgets.clone());
        loop {
            // Room first: a full channel (a slow reader) is waited out here, not on a thread;
            // a reader gone ends the export at once.
            let Ok(permit) = sink.reserve().await else {
                tracing::debug!(
                    remaining = producer.matches.remaining(),
                    "export receiver gone; stopping"
                );
                return;
            };
            let budgets = budgets.clone();
            let made = tokio::task::spawn_blocking(move || {
                let _producing = budgets.producer();
                let chunk = producer.next_chunk();
                (producer, chunk)
            })
            .await;
            match made {
                Ok((next, Ok(Some(chunk)))) => {
                    permit.send(Ok(chunk));
                    producer = next;
                }
                Ok((_, Ok(None))) => return,
                Ok((_, Err(error))) => {
                    permit.send(Err(error));
                    return;
                }
                Err(panic) => {
                    permit.send(Err(Error::Internal(format!("export task failed: {panic}"))));
                    return;
                }
            }
        }
    });
    chunks
}

/// Makes the chunks of one export, one at a time.
struct Producer {
    matches: IdOrderedMatches,
    job: Arc<ExportJob>,
    budgets: Arc<Budgets>,
    snapshot: Arc<Snapshot>,
    first: bool,
    done: bool,
}

impl Producer {
    fn new(matches: IdOrderedMatches, job: Arc<ExportJob>, budgets: Arc<Budgets>) -> Producer {
        Producer {
            snapshot: matches.snapshot().clone(),
            matches,
            job,
            budgets,
            first: true,
            done: false,
        }
    }

    /// The most bytes of users one chunk holds (one user more than that is still sent alone).
    fn chunk_bytes(&self) -> usize {
        (self.budgets.limits.stream_buffer_bytes / (BUFFERED_CHUNKS + 2)).max(1)
    }

    /// The next chunk; `None` after the last. The first chunk is sent even when empty (it
    /// carries the total and the snapshot).
    fn next_chunk(&mut self) -> Result<Option<ExportChunk>, Error> {
        if self.done {
            return Ok(None);
        }
        let job = self.job.clone();
        let limit = self.chunk_bytes();
        let (mut users, mut ids, mut bytes) = (Vec::new(), Vec::new(), 0usize);
        while users.len() + ids.len() < job.chunk_size && bytes < limit {
            let (taken, left) = (
                users.len() + ids.len(),
                job.chunk_size - users.len() - ids.len(),
            );
            // As many as should still fit, judging by the users so far (a few to start with):
            // users read from the index are sent, so the byte limit is kept by asking for few.
            let fit = match taken {
                0 => 8,
                _ => ((limit - bytes) / (bytes / taken).max(1)).max(1),
            };
            let want = left.min(fit);
            // Users whose fields all have columns are written as they are merged.
            let plan = (job.projection.columns()).filter(|_| !job.ids_only);
            let part = self.matches.next_chunk_with(want, |id, address, row| {
                let json = match plan {
                    Some(plan) => plan.render(&id, row)?,
                    None => None,
                };
                Ok((id, address, json))
            })?;
            if part.is_empty() {
                self.done = true;
                break;
            }
            for (id, address, json) in part {
                if job.ids_only {
                    bytes += id.len();
                    ids.push(id);
                    continue;
                }
                let json = match json {
                    Some(json) => json,
                    // Served from the id column alone: no stored-document reads.
                    None if job.projection.ids_only() => id_json(&id),
                    None => job.projection.apply_at(&self.snapshot, &id, address)?,
                };
                bytes += id.len() + json.len();
                users.push(ReadUser { id, json });
            }
        }
        if users.is_empty() && ids.is_empty() && !self.first {
            return Ok(None);
        }
        let last = users.last().map(|u| &u.id).or(ids.last());
        let cursor = match last {
            Some(id) => job.cursor_after(id),
            None => job
                .after
                .as_deref()
                .map(|id| job.cursor_after(id))
                .unwrap_or_default(),
        };
        let first = std::mem::replace(&mut self.first, false);
        Ok(Some(ExportChunk {
            users,
            ids,
            cursor,
            total: if first { self.matches.total() } else { 0 },
            first: first.then(|| self.snapshot.clone()),
            buffered: Arc::new(self.budgets.buffer(bytes)),
        }))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::time::Duration;

    use super::*;
    use crate::auth::Caller;
    use crate::index::tests::fixture;

    fn job(fields: Vec<String>, chunk_size: u32) -> ExportJob {
        let projection = Projection::new(fields, &Caller::unrestricted()).unwrap();
        ExportJob::new(None, projection, chunk_size, "").unwrap()
    }

    fn slot(budgets: &Arc<Budgets>) -> Slot {
        budgets
            .acquire(crate::limits::Budget::Exports, "test")
            .unwrap()
    }

    /// Waits until `done` holds (the producer is a task: it settles shortly after each read).
    async fn settle(done: impl Fn() -> bool) {
        for _ in 0..500 {
            if done() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_slow_reader_holds_the_producer_back_without_a_thread_and_gets_every_user_once() {
        // Built outside the runtime: the shared fixture starts its own.
        let fixture = tokio::task::spawn_blocking(fixture).await.unwrap();
        let budgets = Budgets::new(Default::default());
        let snapshot = fixture.index.snapshot();
        let total = snapshot.export(None, None, 0).unwrap().total();
        assert!(total > 1_000);
        let mut chunks = export(
            snapshot,
            job(vec!["id".into()], 50),
            0,
            budgets.clone(),
            slot(&budgets),
        );
        let first = chunks.recv().await.unwrap().unwrap();
        assert_eq!(first.total, total);
        let mut ids: Vec<String> = first.users.into_iter().map(|u| u.id).collect();
        drop(first.buffered);
        tokio::time::sleep(Duration::from_millis(300)).await;
        // Waiting for room as a task: one chunk buffered, no blocking thread held.
        assert_eq!(chunks.len(), BUFFERED_CHUNKS);
        settle(|| budgets.producing() == 0).await;
        assert_eq!(budgets.producing(), 0);
        while let Some(chunk) = chunks.recv().await {
            let chunk = chunk.unwrap();
            assert_eq!(chunk.total, 0);
            ids.extend(chunk.users.into_iter().map(|u| u.id));
        }
        let unique: BTreeSet<&String> = ids.iter().collect();
        assert_eq!(ids.len() as u64, total);
        assert_eq!(unique.len(), ids.len());
        assert!(ids.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(budgets.buffered_bytes(), 0, "every chunk handed over");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn chunks_are_cut_by_bytes_and_an_export_holds_about_its_buffer_budget() {
        let fixture = tokio::task::spawn_blocking(fixture).await.unwrap();
        let budget = 64 << 10;
        let budgets = Budgets::new(crate::limits::Limits {
            stream_buffer_bytes: budget,
            ..Default::default()
        });
        let snapshot = fixture.index.snapshot();
        let total = snapshot.export(None, None, 0).unwrap().total();
        // Whole users, 5,000 asked per chunk: far more than the budget allows.
        let mut chunks = export(
            snapshot,
            job(vec![], MAX_CHUNK_SIZE),
            0,
            budgets.clone(),
            slot(&budgets),
        );
        let first = chunks.recv().await.unwrap().unwrap();
        let bytes = |chunk: &ExportChunk| -> usize {
            chunk.users.iter().map(|u| u.id.len() + u.json.len()).sum()
        };
        let largest_user = 16 << 10;
        assert!(
            bytes(&first) < budget / 3 + largest_user,
            "{}",
            bytes(&first)
        );
        assert!((first.users.len() as u64) < total);
        tokio::time::sleep(Duration::from_millis(200)).await;
        // The one held by the test, plus the one in the channel.
        assert!(budgets.buffered_bytes() <= 2 * (budget / 3 + largest_user));
        let mut seen = first.users.len() as u64;
        drop(first);
        while let Some(chunk) = chunks.recv().await {
            seen += chunk.unwrap().users.len() as u64;
        }
        assert_eq!(seen, total);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_producer_stops_when_the_reader_goes_away() {
        // Built outside the runtime: the shared fixture starts its own.
        let fixture = tokio::task::spawn_blocking(fixture).await.unwrap();
        let budgets = Budgets::new(Default::default());
        let snapshot = fixture.index.snapshot();
        let mut chunks = export(
            snapshot,
            job(vec![], 10),
            0,
            budgets.clone(),
            slot(&budgets),
        );
        chunks.recv().await.unwrap().unwrap();
        drop(chunks);
        let exports = || budgets.held(crate::limits::Budget::Exports);
        settle(|| budgets.buffered_bytes() == 0 && budgets.producing() == 0 && exports() == 0)
            .await;
        assert_eq!(
            (budgets.buffered_bytes(), budgets.producing(), exports()),
            (0, 0, 0)
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
