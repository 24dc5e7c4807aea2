//! The one task that owns tantivy's `IndexWriter`. Every change in the system arrives here as a
//! [`UserChange`] and is applied in arrival order.
//!
//! Commit policy: a command whose sender waits for durability is committed as soon as the
//! channel is drained, together with everything that queued up meanwhile (group commit: a burst
//! costs one commit, not one per change). Changes nobody waits for (backfill pages) are committed
//! by size or age. Each commit writes the sync state that came with the last applied command
//! into the commit payload, so a crash resumes from exactly what is in the index.
//!
//! A failed commit (a full disk, an I/O error) rolls back what it held and pauses the writer:
//! waiters get the error, and until a retry commits (after 1 s, doubling up to 10 s) every write
//! is refused at once, so webhooks are answered 503 and Svix delivers them again. Producers that
//! stream changes without waiting (the backfill, a replica catching up) learn of the loss through
//! their [`Checkpoint`]'s epoch and start again from the committed state.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use tantivy::index::SegmentMeta;
use tantivy::{IndexReader, IndexWriter, TantivyDocument, Term};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;

use super::config::IndexConfig;
use super::document::user_document;
use super::error::WriteError;
use super::payload::{CommitPayload, Tombstone};
use super::schema::Fields;
use super::snapshot::Snapshot;
use super::writer_stats::{FIRST_RETRY, MAX_RETRY, WriterStats};
use crate::change::{Change, UserChange};
use crate::clock::now_ms;
use crate::user::{User, UserVersion};

mod bulk;
mod commit;
mod observer;
mod org_pending;
mod organizations;

pub use observer::{ChangeObserver, Previous, Sealer};
#[cfg(test)]
mod tests;

/// Work run on the writer thread, on the latest snapshot.
type ExclusiveWork = Box<dyn FnOnce(&Arc<Snapshot>) + Send>;

/// A step of a bulk load (`bulk.rs`), sent to the writer thread.
enum BulkStep {
    /// Commit by size (for this many users, when known) and merge only small segments.
    Begin(Option<u64>),
    /// Stop merging, commit what is pending, and start the merges into the serving layout.
    Merge,
    /// Back to the default merge policy and commit interval.
    End,
}

/// What the writer thread answers to a [`BulkStep`]: the merges it started.
type BulkAnswer = Result<Vec<tantivy::FutureResult<Option<SegmentMeta>>>, WriteError>;

/// A producer's sync state to commit with its changes, and the writer's loss count
/// ([`WriterHandle::losses`]) when the producer read the committed state it continues from.
/// Refused once changes were lost since then: the producer's cursor is past changes the index
/// does not hold, so it must start again from the committed state.
#[derive(Debug, Clone)]
pub struct Checkpoint {
    pub state: serde_json::Value,
    pub epoch: u64,
}

enum Command {
    Apply {
        changes: Vec<Change>,
        checkpoint: Option<Checkpoint>,
        ack: Option<oneshot::Sender<Result<u64, WriteError>>>,
    },
    /// Runs between changes, on a freshly committed snapshot; a commit follows it, and `ack`
    /// reports that commit.
    Exclusive {
        work: ExclusiveWork,
        ack: oneshot::Sender<Result<u64, WriteError>>,
    },
    Bulk {
        step: BulkStep,
        ack: oneshot::Sender<BulkAnswer>,
    },
    /// Commit what is pending and stop; commands queued after this one are refused.
    Close,
}

/// A user changed since the last commit. The whole user is kept only while an observer wants
/// previous states: a backfill batch of 100k users would otherwise hold all of them in memory.
enum Pending {
    Version(UserVersion),
    User(Arc<User>),
    Deleted,
}

/// Sends changes to the writer task. Cheap to clone.
#[derive(Clone)]
pub struct WriterHandle {
    commands: mpsc::Sender<Command>,
    stats: Arc<WriterStats>,
    sealer: Option<Arc<dyn Sealer>>,
}

impl WriterHandle {
    /// Seals every upserted user (on the caller's thread: the writer thread stays free).
    fn seal(&self, changes: Vec<Change>) -> Result<Vec<Change>, WriteError> {
        let Some(sealer) = &self.sealer else {
            return Ok(changes);
        };
        changes
            .into_iter()
            .map(|change| match change {
                Change::User(UserChange::Upsert { user, source }) => {
                    Ok(Change::User(UserChange::Upsert {
                        user: sealer.seal(user)?,
                        source,
                    }))
                }
                other => Ok(other),
            })
            .collect()
    }

    /// Refuses a write at once while the writer is paused, or when `checkpoint` was read
    /// before changes were lost.
    fn check(&self, checkpoint: Option<&Checkpoint>) -> Result<(), WriteError> {
        if let Some(pause) = self.stats.paused() {
            return Err(WriteError::Paused(pause.reason.into()));
        }
        match checkpoint {
            Some(checkpoint) if checkpoint.epoch < self.stats.losses() => Err(WriteError::Lost),
            _ => Ok(()),
        }
    }

    /// The epoch for a [`Checkpoint`] made from a state read now (read it before the state).
    pub fn losses(&self) -> u64 {
        self.stats.losses()
    }

    /// Applies changes and waits until they are committed; returns the generation that holds them.
    pub async fn apply(
        &self,
        changes: Vec<Change>,
        checkpoint: Option<Checkpoint>,
    ) -> Result<u64, WriteError> {
        self.check(checkpoint.as_ref())?;
        let changes = self.seal(changes)?;
        let (ack, done) = oneshot::channel();
        self.commands
            .send(Command::Apply {
                changes,
                checkpoint,
                ack: Some(ack),
            })
            .await
            .map_err(|_| WriteError::Stopped)?;
        done.await.map_err(|_| WriteError::Stopped)?
    }

    /// Queues changes without waiting for their commit (bulk loads). Waits only for queue space.
    pub async fn submit(
        &self,
        changes: Vec<Change>,
        checkpoint: Option<Checkpoint>,
    ) -> Result<(), WriteError> {
        self.check(checkpoint.as_ref())?;
        let changes = self.seal(changes)?;
        self.commands
            .send(Command::Apply {
                changes,
                checkpoint,
                ack: None,
            })
            .await
            .map_err(|_| WriteError::Stopped)
    }

    pub fn stats(&self) -> &Arc<WriterStats> {
        &self.stats
    }

    /// Commits everything queued so far and waits for it.
    pub async fn flush(&self) -> Result<u64, WriteError> {
        self.apply(Vec::new(), None).await
    }

    /// Runs `work` on the writer thread between two changes, on a snapshot holding every change
    /// queued before it, then commits, so what `work` recorded through the [`ChangeObserver`] is
    /// durable (and published) before this returns.
    pub async fn exclusive<T: Send + 'static>(
        &self,
        work: impl FnOnce(&Arc<Snapshot>) -> T + Send + 'static,
    ) -> Result<T, WriteError> {
        let (done, result) = oneshot::channel();
        let (ack, committed) = oneshot::channel();
        self.commands
            .send(Command::Exclusive {
                work: Box::new(move |snapshot| {
                    let _ = done.send(work(snapshot));
                }),
                ack,
            })
            .await
            .map_err(|_| WriteError::Stopped)?;
        committed.await.map_err(|_| WriteError::Stopped)??;
        result.await.map_err(|_| WriteError::Stopped)
    }
}

/// The running writer's thread.
pub struct WriterThread {
    commands: mpsc::Sender<Command>,
    thread: std::thread::JoinHandle<()>,
}

impl WriterThread {
    /// Commits everything queued before this call, stops the writer and waits for its thread:
    /// the explicit end of the index's life in a process. Handles still held elsewhere get
    /// [`WriteError::Stopped`] afterwards.
    pub async fn close(self) -> Result<(), WriteError> {
        // A writer that already stopped (every handle dropped) has nothing left to do.
        let _ = self.commands.send(Command::Close).await;
        let thread = self.thread;
        match tokio::task::spawn_blocking(move || thread.join()).await {
            Ok(Ok(())) => Ok(()),
            _ => Err(WriteError::commit(std::io::Error::other(
                "the index writer thread panicked",
            ))),
        }
    }
}

/// The writer task. Create with [`super::UserIndex::open`], start with [`IndexWriterTask::spawn`].
pub struct IndexWriterTask {
    writer: IndexWriter,
    reader: IndexReader,
    fields: Arc<Fields>,
    publish: watch::Sender<Arc<Snapshot>>,
    payload: CommitPayload,
    config: IndexConfig,
    /// Every user changed since the last commit.
    pending_users: HashMap<String, Pending>,
    /// Every organization and membership changed since the last commit.
    orgs: org_pending::OrgPending,
    observer: Option<Box<dyn ChangeObserver>>,
    sealer: Option<Arc<dyn Sealer>>,
    pending_changes: usize,
    pending_since: Option<Instant>,
    waiting: Vec<oneshot::Sender<Result<u64, WriteError>>>,
    stats: Arc<WriterStats>,
    /// The payload of the last commit, put back when a commit fails.
    committed_payload: String,
    /// Whether changes or a checkpoint nobody waits for are pending (lost if the commit fails).
    unacknowledged_pending: bool,
    /// While paused by a failed commit: when to retry, and the wait after that retry fails.
    paused: Option<(Instant, std::time::Duration)>,
    /// The index's directory, whose cache of mapped files the writer prunes (`commit.rs`).
    directory: Option<tantivy::directory::MmapDirectory>,
    /// While a bulk load runs, the changes it commits at a time (`bulk.rs`).
    bulk_load: Option<usize>,
    /// Whether a pending user is kept whole (`Pending::User`), which bulk limits must not hold
    /// by the hundred thousand (`commit.rs`).
    whole_users_pending: bool,
}

impl IndexWriterTask {
    pub(super) fn new(
        writer: IndexWriter,
        reader: IndexReader,
        fields: Arc<Fields>,
        publish: watch::Sender<Arc<Snapshot>>,
        payload: CommitPayload,
        config: &IndexConfig,
    ) -> Self {
        IndexWriterTask {
            writer,
            reader,
            fields,
            publish,
            committed_payload: serde_json::to_string(&payload).expect("payload serializes"),
            unacknowledged_pending: false,
            paused: None,
            directory: None,
            bulk_load: None,
            whole_users_pending: false,
            payload,
            config: config.clone(),
            pending_users: HashMap::new(),
            orgs: Default::default(),
            observer: None,
            sealer: None,
            pending_changes: 0,
            pending_since: None,
            waiting: Vec::new(),
            stats: Arc::new(WriterStats::default()),
        }
    }

    /// Lets `observer` see every applied change and take part in every commit.
    pub fn with_observer(mut self, observer: Box<dyn ChangeObserver>) -> Self {
        self.observer = Some(observer);
        self
    }

    /// Seals sensitive values of every user written through the returned handles.
    pub fn with_sealer(mut self, sealer: Arc<dyn Sealer>) -> Self {
        self.sealer = Some(sealer);
        self
    }

    /// Starts the task on its own thread (tantivy's calls block). It runs until
    /// [`WriterThread::close`] (or until every [`WriterHandle`] is dropped), then commits what
    /// is pending and stops.
    pub fn spawn(self) -> (WriterHandle, WriterThread) {
        let (commands, receiver) = mpsc::channel(64);
        let runtime = tokio::runtime::Handle::current();
        let stats = self.stats.clone();
        let sealer = self.sealer.clone();
        let thread = std::thread::Builder::new()
            .name("index-writer".into())
            .spawn(move || self.run(receiver, runtime))
            .expect("spawning the index writer thread");
        let handle = WriterHandle {
            commands,
            stats,
            sealer,
        };
        let thread = WriterThread {
            commands: handle.commands.clone(),
            thread,
        };
        (handle, thread)
    }

    fn run(mut self, mut commands: mpsc::Receiver<Command>, runtime: tokio::runtime::Handle) {
        // Timers and `Instant::now` need the runtime's context on this plain thread.
        let _context = runtime.enter();
        loop {
            if let Some((retry_at, _)) = self.paused {
                match runtime.block_on(tokio::time::timeout_at(retry_at, commands.recv())) {
                    Err(_elapsed) => self.commit(),
                    Ok(None | Some(Command::Close)) => break,
                    Ok(Some(command)) => self.refuse(command),
                }
                continue;
            }
            let next = match self.pending_since {
                None => runtime.block_on(commands.recv()).map(Some),
                Some(since) => {
                    let deadline = since + self.commit_limits().1;
                    match runtime.block_on(tokio::time::timeout_at(deadline, commands.recv())) {
                        Ok(command) => command.map(Some),
                        Err(_elapsed) => Some(None),
                    }
                }
            };
            match next {
                None | Some(Some(Command::Close)) => break,
                Some(None) => self.commit(),
                Some(Some(command)) => {
                    self.handle(command);
                    // Group commit: take what is already queued before deciding, up to a
                    // commit's worth (a producer faster than the writer keeps the queue full,
                    // and what is pending is held in memory until it is committed).
                    let mut closing = false;
                    while !self.commit_due() {
                        let Ok(command) = commands.try_recv() else {
                            break;
                        };
                        if matches!(command, Command::Close) {
                            closing = true;
                            break;
                        }
                        self.handle(command);
                    }
                    if closing {
                        break;
                    }
                    if !self.waiting.is_empty() || self.commit_due() {
                        self.commit();
                    }
                }
            }
        }
        // Whatever was queued behind a close is refused (its sender sees `Stopped`).
        commands.close();
        if self.pending_since.is_some() || !self.waiting.is_empty() {
            self.commit();
        }
        if let Err(error) = self.writer.wait_merging_threads() {
            tracing::warn!(%error, "index merges did not finish cleanly");
        }
        tracing::info!(
            applied = self.stats.applied.load(Ordering::Relaxed),
            ignored_stale = self.stats.ignored_stale.load(Ordering::Relaxed),
            ignored_deleted = self.stats.ignored_deleted.load(Ordering::Relaxed),
            "index writer stopped"
        );
    }

    fn handle(&mut self, command: Command) {
        let (changes, checkpoint, ack) = match command {
            Command::Apply {
                checkpoint: Some(checkpoint),
                ack,
                ..
            } if checkpoint.epoch < self.stats.losses() => {
                // Read before a loss: the producer starts again from the committed state.
                if let Some(ack) = ack {
                    let _ = ack.send(Err(WriteError::Lost));
                }
                return;
            }
            Command::Apply {
                changes,
                checkpoint,
                ack,
            } => (changes, checkpoint, ack),
            Command::Exclusive { work, ack } => {
                if self.pending_since.is_some() || !self.waiting.is_empty() {
                    self.commit();
                }
                let snapshot = self.publish.borrow().clone();
                work(&snapshot);
                self.waiting.push(ack);
                self.commit();
                return;
            }
            Command::Bulk { step, ack } => {
                self.bulk(step, ack);
                return;
            }
            // The run loop stops at a close before handing it here.
            Command::Close => return,
        };
        let changes_were_empty = changes.is_empty();
        for change in changes {
            match change {
                Change::User(change) => self.apply_user_change(change),
                Change::Organization(change) => self.apply_organization_change(change),
                Change::Membership(change) => self.apply_membership_change(change),
            }
            // A commit made while applying (organizations.rs) failed: what this command
            // applied before it is gone, so the command fails as a whole.
            if self.paused.is_some() {
                match ack {
                    Some(ack) => {
                        let _ = ack.send(Err(WriteError::Paused(
                            self.stats
                                .paused()
                                .map_or_else(String::new, |p| p.reason)
                                .into(),
                        )));
                    }
                    None => self.stats.lost(),
                }
                return;
            }
        }
        let carries = !changes_were_empty || checkpoint.is_some();
        if let Some(checkpoint) = checkpoint {
            self.payload.sync_state = checkpoint.state;
            self.pending_since.get_or_insert_with(Instant::now);
        }
        match ack {
            Some(ack) => self.waiting.push(ack),
            None => self.unacknowledged_pending |= carries,
        }
    }

    /// The version the index holds for a user: pending changes first, then the last commit
    /// (deleted users, and users whose version cannot be read, as the oldest version).
    fn current_version(&self, user_id: &str) -> Option<UserVersion> {
        if let Some(pending) = self.pending_users.get(user_id) {
            return Some(match pending {
                Pending::Version(version) => *version,
                Pending::User(user) => user.version(),
                Pending::Deleted => UserVersion::OLDEST,
            });
        }
        let snapshot = self.publish.borrow().clone();
        match snapshot.version_of(user_id) {
            Ok(version) => version,
            Err(error) => {
                // Unknown: as if held at the oldest version, so an upsert still replaces it.
                tracing::error!(%user_id, %error, "could not read a user's indexed version");
                Some(UserVersion::OLDEST)
            }
        }
    }

    /// What the index holds for a user, for the observer.
    fn previous(&self, user_id: &str) -> Previous {
        match self.pending_users.get(user_id) {
            Some(Pending::User(user)) => Some(user.clone()),
            // Versions are kept only while nobody wants previous states, which changes only
            // between commits (segment edits commit first).
            Some(Pending::Deleted | Pending::Version(_)) => None,
            None => {
                let snapshot = self.publish.borrow().clone();
                match snapshot.stored_user(user_id) {
                    Ok(user) => user.map(Arc::new),
                    Err(error) => {
                        tracing::error!(%user_id, %error, "could not read a user's previous state");
                        None
                    }
                }
            }
        }
    }

    /// Shows `change` to the observer; returns whether it wants previous states (then pending
    /// users must be kept whole).
    fn notify(&mut self, change: &UserChange) -> bool {
        let Some(wants) = self.observer.as_ref().map(|o| o.wants_previous()) else {
            return false;
        };
        let previous = if wants {
            self.previous(change.user_id())
        } else {
            None
        };
        if let Some(observer) = self.observer.as_mut() {
            observer.observe(previous, change);
        }
        wants
    }

    fn apply_user_change(&mut self, change: UserChange) {
        let id_term = Term::from_field_text(self.fields.id, change.user_id());
        match change {
            UserChange::Upsert { ref user, source } => {
                let user = user.clone();
                if self
                    .payload
                    .tombstones
                    .get(&user.id)
                    .is_some_and(|tombstone| tombstone.hides(&user, source))
                {
                    self.stats.ignored_deleted.fetch_add(1, Ordering::Relaxed);
                    return;
                }
                let held = self.current_version(&user.id);
                if held.is_some_and(|held| held > user.version()) {
                    self.stats.ignored_stale.fetch_add(1, Ordering::Relaxed);
                    return;
                }
                let user = self.with_organizations(user);
                let change = UserChange::Upsert {
                    user: user.clone(),
                    source,
                };
                let doc: TantivyDocument = user_document(&self.fields, &user);
                // A user the index has never held (neither committed nor pending) has no document
                // to replace: the delete would only cost a term lookup per segment at commit.
                if held.is_some() {
                    self.writer.delete_term(id_term);
                }
                if let Err(error) = self.writer.add_document(doc) {
                    tracing::error!(user_id = %user.id, %error, "could not add a user to the index");
                    return;
                }
                let keep_user = self.notify(&change);
                self.payload.newest_updated_at_ms =
                    self.payload.newest_updated_at_ms.max(user.updated_at);
                // Members are kept whole: a membership change in this batch composes them again.
                let whole = keep_user || user.org_count() > 0;
                self.whole_users_pending |= whole;
                let pending = if whole {
                    Pending::User(user.clone())
                } else {
                    Pending::Version(user.version())
                };
                self.pending_users.insert(user.id.clone(), pending);
            }
            UserChange::Delete {
                ref user_id,
                deleted_at_ms,
                source,
            } => {
                self.writer.delete_term(id_term);
                let user_id = user_id.clone();
                self.notify(&change);
                self.payload
                    .tombstones
                    .entry(user_id.clone())
                    .and_modify(|held| held.merge(deleted_at_ms, source))
                    .or_insert_with(|| Tombstone::new(deleted_at_ms, source));
                self.pending_users.insert(user_id, Pending::Deleted);
            }
        }
        self.stats.applied.fetch_add(1, Ordering::Relaxed);
        self.count_applied();
    }
}
