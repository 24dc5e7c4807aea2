//! What goes wrong with segments; `api` maps each variant to one gRPC code.

use super::log::LogError;
use crate::index::{IndexError, WriteError};

/// What can go wrong with segments; each maps to one gRPC code.
#[derive(Debug, thiserror::Error)]
pub enum SegmentError {
    /// A bad request field (`name`, `description`, `filter`), as in `google.rpc.BadRequest`.
    #[error("{message}")]
    Invalid {
        field: &'static str,
        message: String,
    },
    /// The configured number of saved segments is reached.
    #[error("at most {0} segments can be saved")]
    TooMany(usize),
    #[error("no segment named {0:?}")]
    NotFound(String),
    #[error("a segment named {0:?} already exists")]
    AlreadyExists(String),
    #[error("segment {name:?} is at version {actual}, not {expected}: re-read it and retry")]
    VersionMismatch {
        name: String,
        expected: u64,
        actual: u64,
    },
    #[error("{0}")]
    OutOfRange(String),
    #[error("{0}")]
    Unavailable(String),
    /// Other segments refer to this one (`IN SEGMENT`): it cannot be deleted.
    #[error("segment {name:?} is used by {}: change or delete those first", by.join(", "))]
    Referenced { name: String, by: Vec<String> },
    /// The caller's scopes do not cover the segment's (new) definition.
    #[error("{0}")]
    Denied(String),
    #[error(transparent)]
    Index(#[from] IndexError),
    #[error(transparent)]
    Write(#[from] WriteError),
    #[error(transparent)]
    Log(#[from] LogError),
}

impl SegmentError {
    pub fn invalid(field: &'static str, message: impl Into<String>) -> SegmentError {
        SegmentError::Invalid {
            field,
            message: message.into(),
        }
    }
}
