//! What goes wrong inside the index: [`IndexError`] for reads and opening, [`WriteError`] for
//! changes that did not become durable (the writer, its observer and its sealer).

use std::sync::Arc;

/// What went wrong inside the index.
#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    #[error("index error: {0}")]
    Tantivy(#[from] tantivy::TantivyError),
    #[error("cannot open the index directory {path}: {message}")]
    Directory { path: String, message: String },
    #[error("the index commit payload is unreadable: {0}")]
    Payload(String),
    #[error("index i/o error: {0}")]
    Io(#[from] std::io::Error),
    #[error("reading stored users: {0}")]
    Read(String),
    /// The request cannot be answered as asked (the message says why).
    #[error("{0}")]
    InvalidRequest(String),
    #[error(transparent)]
    Write(#[from] WriteError),
}

/// A cause kept whole (and cheap to hand to every waiter of a failed commit).
pub type Cause = Arc<dyn std::error::Error + Send + Sync>;

/// Why changes did not become durable. Every waiter of a failed commit gets a copy.
#[derive(Debug, Clone, thiserror::Error)]
pub enum WriteError {
    #[error("the index writer has stopped")]
    Stopped,
    /// A commit failed and no retry has succeeded yet; nothing is written until one does.
    #[error("index writes are paused after a failed commit ({0}); retry later")]
    Paused(Arc<str>),
    /// Changes streamed without waiting were lost to a failed commit after the producer read its
    /// state: it must start again from the committed state.
    #[error("changes were lost to a failed index commit; starting again from the committed state")]
    Lost,
    #[error("index commit failed: {0}")]
    Commit(Cause),
    /// The writer's [`super::writer::ChangeObserver`] could not make what it recorded durable.
    #[error("recording the change's side effects: {0}")]
    Observer(Cause),
    /// The writer's [`super::writer::Sealer`] could not seal a user's sensitive values.
    #[error("sealing sensitive values: {0}")]
    Seal(Cause),
}

impl WriteError {
    pub fn commit(cause: impl std::error::Error + Send + Sync + 'static) -> WriteError {
        WriteError::Commit(Arc::new(cause))
    }

    pub fn observer(cause: impl std::error::Error + Send + Sync + 'static) -> WriteError {
        WriteError::Observer(Arc::new(cause))
    }

    pub fn seal(cause: impl std::error::Error + Send + Sync + 'static) -> WriteError {
        WriteError::Seal(Arc::new(cause))
    }
}
