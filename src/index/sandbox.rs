//! One sandbox for unit tests (as quickwit's `TestSandbox`): an index in a temporary directory
//! with test-sized settings and its writer running, filled with the users a test gives it, and
//! closed (or reopened, as after a restart) explicitly.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::config::IndexConfig;
use super::snapshot::UserIndex;
use super::writer::{IndexWriterTask, WriterHandle, WriterThread};
use crate::change::{Change, ChangeSource, UserChange};
use crate::clerk::fake::Population;
use crate::clerk::user_from_json;
use crate::user::User;

/// An index with its writer running. Create and use it inside a Tokio runtime.
pub(crate) struct Sandbox {
    dir: Option<tempfile::TempDir>,
    path: PathBuf,
    config: IndexConfig,
    pub(crate) index: UserIndex,
    pub(crate) writer: WriterHandle,
    thread: WriterThread,
}

impl Sandbox {
    /// An empty index in a fresh temporary directory.
    pub(crate) fn new() -> Sandbox {
        Sandbox::configured(|_| {})
    }

    /// An empty index in a fresh temporary directory, with `configure` applied to the test
    /// settings.
    pub(crate) fn configured(configure: impl FnOnce(&mut IndexConfig)) -> Sandbox {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let path = dir.path().to_path_buf();
        let mut sandbox = Sandbox::open_at(&path, configure, |_, task| task);
        sandbox.dir = Some(dir);
        sandbox
    }

    /// The index in `path` (created if missing), with `configure` applied to the test settings
    /// and `attach` given the writer task before it starts (to add an observer or a sealer).
    pub(crate) fn open_at(
        path: &Path,
        configure: impl FnOnce(&mut IndexConfig),
        attach: impl FnOnce(&UserIndex, IndexWriterTask) -> IndexWriterTask,
    ) -> Sandbox {
        let mut config = IndexConfig::new(path);
        config.writer_memory_bytes = 20 << 20;
        config.writer_threads = 1;
        configure(&mut config);
        let (index, task) = UserIndex::open(&config).expect("the sandbox index opens");
        let (writer, thread) = attach(&index, task).spawn();
        Sandbox {
            dir: None,
            path: path.to_path_buf(),
            config,
            index,
            writer,
            thread,
        }
    }

    /// Upserts `users` in one commit (one segment); returns its generation.
    pub(crate) async fn upsert(&self, users: &[Arc<User>], source: ChangeSource) -> u64 {
        let changes = users
            .iter()
            .map(|user| {
                Change::User(UserChange::Upsert {
                    user: user.clone(),
                    source,
                })
            })
            .collect();
        self.writer
            .apply(changes, None)
            .await
            .expect("the upsert commits")
    }

    /// Applies `changes` in one commit; returns its generation.
    pub(crate) async fn apply(&self, changes: Vec<UserChange>) -> u64 {
        let changes = changes.into_iter().map(Change::User).collect();
        self.writer
            .apply(changes, None)
            .await
            .expect("the changes commit")
    }

    /// Closes the writer (committing what is pending) and opens the same directory again, as a
    /// restarted process would.
    pub(crate) async fn reopen(self) -> Sandbox {
        let Sandbox {
            dir,
            path,
            config,
            thread,
            ..
        } = self;
        thread.close().await.expect("the writer stops");
        let mut reopened = Sandbox::open_at(&path, |c| *c = config, |_, task| task);
        reopened.dir = dir;
        reopened
    }

    /// Closes the writer; the index stays readable as long as the returned directory lives.
    pub(crate) async fn close(self) -> (UserIndex, Option<tempfile::TempDir>) {
        self.thread.close().await.expect("the writer stops");
        (self.index, self.dir)
    }
}

/// A runtime for tests that are not `async` (property tests, fixtures).
pub(crate) fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("a Tokio runtime")
}

/// The fake Clerk's first `count` generated users, parsed as the service parses Clerk's.
pub(crate) fn population_users(count: usize) -> Vec<Arc<User>> {
    let population = Population::new(count);
    (0..count)
        .map(|i| Arc::new(user_of(&population.user(i))))
        .collect()
}

/// A user from its Clerk JSON.
pub(crate) fn user_of(json: &serde_json::Value) -> User {
    user_from_json(&json.to_string()).expect("test users parse")
}
