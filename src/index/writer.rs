//! The one task that owns tantivy's `IndexWriter`. Every change in the system arrives here as a
//! [`UserChange`] and is applied in arrival order.
//!
//! Commit policy: a command whose sender waits for durability is committed as soon as the
//! channel is drained, together with everything that queued up meanwhile (group commit: a burst
//! costs one commit, not one per change). Changes nobody waits for (backfill pages) are committed
//! by size or age. Each commit writes the sync state that came with the last applied command
//! into the commit payload, so a crash resumes from exactly what is in the index.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tantivy::{IndexReader, IndexWriter, TantivyDocument, Term};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;

use super::document::user_document;
use super::schema::Fields;
use super::{CommitPayload, IndexConfig, IndexError, Snapshot, Tombstone, snapshot_of};
use crate::clock::now_ms;
use crate::user::{User, UserChange};

/// Work run on the writer thread, on the latest snapshot.
type ExclusiveWork = Box<dyn FnOnce(&Arc<Snapshot>) + Send>;

enum Command {
    Apply {
        changes: Vec<UserChange>,
        sync_state: Option<serde_json::Value>,
        ack: Option<oneshot::Sender<Result<u64, String>>>,
    },
    /// Runs between changes, on a freshly committed snapshot; a commit follows it, and `ack`
    /// reports that commit.
    Exclusive {
        work: ExclusiveWork,
        ack: oneshot::Sender<Result<u64, String>>,
    },
}

/// Seals each user's sensitive values before it reaches the index (`auth::sensitive`).
pub trait Sealer: Send + Sync {
    /// The user with its sensitive values sealed into [`User::sealed`] and removed from its
    /// metadata and Clerk JSON; a user holding none comes back as it is. A user already sealed
    /// (a re-encryption) is passed through.
    fn seal(&self, user: Arc<User>) -> Result<Arc<User>, String>;
}

/// A user as it was before a change.
pub enum Previous {
    /// The index did not hold the user.
    Absent,
    /// Changed earlier in the same, not yet committed, batch.
    User(Arc<User>),
    /// The user's stored Clerk JSON.
    Stored(String),
}

/// Sees every change the writer applies, with the user's previous state, and takes part in
/// commits: whatever it records for a change must be durable before the change is, and is
/// dropped if the commit fails. (Saved segments use this for their membership events.)
pub trait ChangeObserver: Send {
    /// Whether [`ChangeObserver::observe`] needs the previous state (reading it costs a lookup).
    fn wants_previous(&self) -> bool;
    fn observe(&mut self, previous: Previous, change: &UserChange);
    /// Makes what was observed since the last commit durable; returns the sequence number to
    /// record in the commit.
    fn prepare_commit(&mut self) -> Result<u64, String>;
    /// The commit holding the observed changes succeeded.
    fn committed(&mut self);
    /// The commit failed: forget what was observed since the last commit.
    fn rolled_back(&mut self);
}

/// What the writer did with the changes it was given, since start.
#[derive(Debug)]
pub struct WriterStats {
    pub applied: AtomicU64,
    /// Upserts older than the `updated_at` the index already held.
    pub ignored_stale: AtomicU64,
    /// Upserts of users deleted later than (or when) the upsert's `updated_at`.
    pub ignored_deleted: AtomicU64,
    pub commits: AtomicU64,
    /// Seconds per successful commit (prepare, fsync, reader reload).
    pub commit_seconds: prometheus_client::metrics::histogram::Histogram,
}

impl Default for WriterStats {
    fn default() -> Self {
        WriterStats {
            applied: AtomicU64::default(),
            ignored_stale: AtomicU64::default(),
            ignored_deleted: AtomicU64::default(),
            commits: AtomicU64::default(),
            commit_seconds: crate::latency::latency_histogram(),
        }
    }
}

/// A user changed since the last commit. The whole user is kept only while an observer wants
/// previous states: a backfill batch of 100k users would otherwise hold all of them in memory.
enum Pending {
    Version(i64),
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
    fn seal(&self, changes: Vec<UserChange>) -> Result<Vec<UserChange>, IndexError> {
        let Some(sealer) = &self.sealer else {
            return Ok(changes);
        };
        changes
            .into_iter()
            .map(|change| match change {
                UserChange::Upsert { user, source } => Ok(UserChange::Upsert {
                    user: sealer.seal(user).map_err(IndexError::Seal)?,
                    source,
                }),
                delete => Ok(delete),
            })
            .collect()
    }

    /// Applies changes and waits until they are committed; returns the generation that holds them.
    pub async fn apply(
        &self,
        changes: Vec<UserChange>,
        sync_state: Option<serde_json::Value>,
    ) -> Result<u64, IndexError> {
        let changes = self.seal(changes)?;
        let (ack, done) = oneshot::channel();
        self.commands
            .send(Command::Apply {
                changes,
                sync_state,
                ack: Some(ack),
            })
            .await
            .map_err(|_| IndexError::WriterStopped)?;
        done.await
            .map_err(|_| IndexError::WriterStopped)?
            .map_err(IndexError::Read)
    }

    /// Queues changes without waiting for their commit (bulk loads). Waits only for queue space.
    pub async fn submit(
        &self,
        changes: Vec<UserChange>,
        sync_state: Option<serde_json::Value>,
    ) -> Result<(), IndexError> {
        let changes = self.seal(changes)?;
        self.commands
            .send(Command::Apply {
                changes,
                sync_state,
                ack: None,
            })
            .await
            .map_err(|_| IndexError::WriterStopped)
    }

    pub fn stats(&self) -> &Arc<WriterStats> {
        &self.stats
    }

    /// Commits everything queued so far and waits for it.
    pub async fn flush(&self) -> Result<u64, IndexError> {
        self.apply(Vec::new(), None).await
    }

    /// Runs `work` on the writer thread between two changes, on a snapshot holding every change
    /// queued before it, then commits, so what `work` recorded through the [`ChangeObserver`] is
    /// durable (and published) before this returns.
    pub async fn exclusive<T: Send + 'static>(
        &self,
        work: impl FnOnce(&Arc<Snapshot>) -> T + Send + 'static,
    ) -> Result<T, IndexError> {
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
            .map_err(|_| IndexError::WriterStopped)?;
        committed
            .await
            .map_err(|_| IndexError::WriterStopped)?
            .map_err(IndexError::Read)?;
        result.await.map_err(|_| IndexError::WriterStopped)
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
    observer: Option<Box<dyn ChangeObserver>>,
    sealer: Option<Arc<dyn Sealer>>,
    pending_changes: usize,
    pending_since: Option<Instant>,
    waiting: Vec<oneshot::Sender<Result<u64, String>>>,
    stats: Arc<WriterStats>,
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
            payload,
            config: config.clone(),
            pending_users: HashMap::new(),
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

    /// Starts the task on its own thread (tantivy's calls block). It stops, after a final commit,
    /// when every [`WriterHandle`] is dropped; join the returned handle to wait for that.
    pub fn spawn(self) -> (WriterHandle, std::thread::JoinHandle<()>) {
        let (commands, receiver) = mpsc::channel(64);
        let runtime = tokio::runtime::Handle::current();
        let stats = self.stats.clone();
        let sealer = self.sealer.clone();
        let thread = std::thread::Builder::new()
            .name("index-writer".into())
            .spawn(move || self.run(receiver, runtime))
            .expect("spawning the index writer thread");
        (
            WriterHandle {
                commands,
                stats,
                sealer,
            },
            thread,
        )
    }

    fn run(mut self, mut commands: mpsc::Receiver<Command>, runtime: tokio::runtime::Handle) {
        // Timers and `Instant::now` need the runtime's context on this plain thread.
        let _context = runtime.enter();
        loop {
            let next = match self.pending_since {
                None => runtime.block_on(commands.recv()).map(Some),
                Some(since) => {
                    let deadline = since + self.config.commit_interval;
                    match runtime.block_on(tokio::time::timeout_at(deadline, commands.recv())) {
                        Ok(command) => command.map(Some),
                        Err(_elapsed) => Some(None),
                    }
                }
            };
            match next {
                None => break,
                Some(None) => self.commit(),
                Some(Some(command)) => {
                    self.handle(command);
                    // Group commit: take everything already queued before deciding.
                    while let Ok(command) = commands.try_recv() {
                        self.handle(command);
                    }
                    if !self.waiting.is_empty()
                        || self.pending_changes >= self.config.commit_max_changes
                    {
                        self.commit();
                    }
                }
            }
        }
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
        let (changes, sync_state, ack) = match command {
            Command::Apply {
                changes,
                sync_state,
                ack,
            } => (changes, sync_state, ack),
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
        };
        for change in changes {
            self.apply_change(change);
        }
        if let Some(state) = sync_state {
            self.payload.sync_state = state;
            self.pending_since.get_or_insert_with(Instant::now);
        }
        if let Some(ack) = ack {
            self.waiting.push(ack);
        }
    }

    /// The `updated_at` the index holds for a user: pending changes first, then the last commit
    /// (deleted users, and users whose version cannot be read, as `i64::MIN`).
    fn current_version(&self, user_id: &str) -> Option<i64> {
        if let Some(pending) = self.pending_users.get(user_id) {
            return Some(match pending {
                Pending::Version(version) => *version,
                Pending::User(user) => user.updated_at,
                Pending::Deleted => i64::MIN,
            });
        }
        let snapshot = self.publish.borrow().clone();
        match snapshot.updated_at_of(user_id) {
            Ok(version) => version,
            Err(error) => {
                // Unknown: as if held at the oldest version, so an upsert still replaces it.
                tracing::error!(%user_id, %error, "could not read a user's indexed version");
                Some(i64::MIN)
            }
        }
    }

    /// What the index holds for a user, for the observer.
    fn previous(&self, user_id: &str) -> Previous {
        match self.pending_users.get(user_id) {
            Some(Pending::User(user)) => Previous::User(user.clone()),
            // Versions are kept only while nobody wants previous states, which changes only
            // between commits (segment edits commit first).
            Some(Pending::Deleted | Pending::Version(_)) => Previous::Absent,
            None => {
                let snapshot = self.publish.borrow().clone();
                match snapshot.get_raw_json(user_id) {
                    Ok(Some(json)) => Previous::Stored(json),
                    Ok(None) => Previous::Absent,
                    Err(error) => {
                        tracing::error!(%user_id, %error, "could not read a user's previous state");
                        Previous::Absent
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
            Previous::Absent
        };
        if let Some(observer) = self.observer.as_mut() {
            observer.observe(previous, change);
        }
        wants
    }

    fn apply_change(&mut self, change: UserChange) {
        let id_term = Term::from_field_text(self.fields.id, change.user_id());
        match change {
            UserChange::Upsert { ref user, .. } => {
                let user = user.clone();
                if self
                    .payload
                    .tombstones
                    .get(&user.id)
                    .is_some_and(|tombstone| tombstone.0 >= user.updated_at)
                {
                    self.stats.ignored_deleted.fetch_add(1, Ordering::Relaxed);
                    return;
                }
                let held = self.current_version(&user.id);
                if held.is_some_and(|held| held > user.updated_at) {
                    self.stats.ignored_stale.fetch_add(1, Ordering::Relaxed);
                    return;
                }
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
                let pending = if keep_user {
                    Pending::User(user.clone())
                } else {
                    Pending::Version(user.updated_at)
                };
                self.pending_users.insert(user.id.clone(), pending);
            }
            UserChange::Delete {
                ref user_id,
                deleted_at_ms,
                ..
            } => {
                self.writer.delete_term(id_term);
                let user_id = user_id.clone();
                self.notify(&change);
                let tombstone = self
                    .payload
                    .tombstones
                    .entry(user_id.clone())
                    .or_insert(Tombstone(deleted_at_ms, now_ms()));
                *tombstone = Tombstone(tombstone.0.max(deleted_at_ms), now_ms());
                self.pending_users.insert(user_id, Pending::Deleted);
            }
        }
        self.stats.applied.fetch_add(1, Ordering::Relaxed);
        self.pending_changes += 1;
        self.pending_since.get_or_insert_with(Instant::now);
    }

    fn commit(&mut self) {
        let started = std::time::Instant::now();
        self.payload.generation += 1;
        self.payload.format = 1;
        let span = tracing::info_span!(
            "index.commit",
            generation = self.payload.generation as i64,
            changes = self.pending_changes as i64,
            waiting = self.waiting.len() as i64,
            error = tracing::field::Empty,
        );
        let _in_span = span.enter();
        let result = self.try_commit();
        let waiting = std::mem::take(&mut self.waiting);
        match result {
            Ok(()) => {
                if let Some(observer) = self.observer.as_mut() {
                    observer.committed();
                }
                self.stats.commits.fetch_add(1, Ordering::Relaxed);
                self.stats
                    .commit_seconds
                    .observe(started.elapsed().as_secs_f64());
                let generation = self.payload.generation;
                tracing::debug!(
                    generation,
                    changes = self.pending_changes,
                    took_ms = started.elapsed().as_millis() as u64,
                    "index committed"
                );
                for ack in waiting {
                    let _ = ack.send(Ok(generation));
                }
            }
            Err(error) => {
                self.payload.generation -= 1;
                if let Some(observer) = self.observer.as_mut() {
                    observer.rolled_back();
                }
                span.record("error", tracing::field::display(&error));
                tracing::error!(%error, "index commit failed; rolling back the uncommitted changes");
                if let Err(rollback) = self.writer.rollback() {
                    tracing::error!(error = %rollback, "index rollback failed");
                }
                for ack in waiting {
                    let _ = ack.send(Err(format!("index commit failed: {error}")));
                }
            }
        }
        self.pending_users.clear();
        self.pending_changes = 0;
        self.pending_since = None;
    }

    fn prune_tombstones(&mut self) {
        let oldest_kept = now_ms() - self.config.tombstone_retention.as_millis() as i64;
        self.payload
            .tombstones
            .retain(|_, tombstone| tombstone.1 >= oldest_kept);
    }

    fn try_commit(&mut self) -> Result<(), IndexError> {
        self.prune_tombstones();
        if let Some(observer) = self.observer.as_mut() {
            self.payload.event_sequence = observer
                .prepare_commit()
                .map_err(|e| IndexError::Observer(e.to_string()))?;
        }
        let payload =
            serde_json::to_string(&self.payload).map_err(|e| IndexError::Payload(e.to_string()))?;
        let mut prepared = self.writer.prepare_commit()?;
        prepared.set_payload(&payload);
        prepared.commit()?;
        self.reader.reload()?;
        self.publish.send_replace(Arc::new(snapshot_of(
            &self.reader,
            &self.fields,
            &self.payload,
        )));
        Ok(())
    }
}
