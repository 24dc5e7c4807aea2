//! The one error type of request handling, and its one mapping to gRPC status codes.

use crate::auth::{Denied, Unauthenticated};
use crate::clerk::ClerkApiError;
use crate::index::IndexError;
use crate::query::FilterError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid filter: {0}")]
    InvalidFilter(#[from] FilterError),
    #[error("{0}")]
    InvalidArgument(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Unavailable(String),
    #[error("{0}")]
    DeadlineExceeded(String),
    /// The call cannot work in the service's current mode or state, whatever is retried.
    #[error("{0}")]
    FailedPrecondition(String),
    #[error(transparent)]
    Index(#[from] IndexError),
    #[error(transparent)]
    Clerk(#[from] ClerkApiError),
    #[error(transparent)]
    Unauthenticated(#[from] Unauthenticated),
    #[error(transparent)]
    PermissionDenied(#[from] Denied),
    #[error("{0}")]
    Internal(String),
}

/// Metadata key carrying the character position of a filter error, for programmatic clients.
pub const FILTER_ERROR_POSITION: &str = "x-filter-error-position";

impl From<Error> for tonic::Status {
    fn from(error: Error) -> tonic::Status {
        let message = error.to_string();
        match error {
            Error::InvalidFilter(filter_error) => {
                let mut status = tonic::Status::invalid_argument(message);
                if let Some(position) = filter_error.position
                    && let Ok(value) = position.to_string().parse()
                {
                    status.metadata_mut().insert(FILTER_ERROR_POSITION, value);
                }
                status
            }
            Error::InvalidArgument(_) => tonic::Status::invalid_argument(message),
            Error::NotFound(_) => tonic::Status::not_found(message),
            Error::Unauthenticated(_) => tonic::Status::unauthenticated(message),
            Error::PermissionDenied(_) => tonic::Status::permission_denied(message),
            Error::Unavailable(_) => tonic::Status::unavailable(message),
            Error::DeadlineExceeded(_) => tonic::Status::deadline_exceeded(message),
            Error::FailedPrecondition(_) => tonic::Status::failed_precondition(message),
            Error::Clerk(ClerkApiError::Api { status: 404, .. }) => {
                tonic::Status::not_found(message)
            }
            Error::Clerk(ClerkApiError::Api {
                status: 429,
                retry_after,
                ..
            }) => {
                let seconds = retry_after.map_or(1, |d| d.as_secs().max(1));
                let mut status =
                    tonic::Status::resource_exhausted(format!("{message}; retry in {seconds} s"));
                if let Ok(value) = seconds.to_string().parse() {
                    status.metadata_mut().insert("retry-after", value);
                }
                status
            }
            Error::Clerk(ClerkApiError::Api {
                status: 400 | 422, ..
            }) => tonic::Status::invalid_argument(message),
            Error::Clerk(_) => tonic::Status::unavailable(message),
            Error::Index(IndexError::WriterStopped) => tonic::Status::unavailable(message),
            Error::Index(IndexError::InvalidRequest(_)) => tonic::Status::invalid_argument(message),
            Error::Index(_) | Error::Internal(_) => tonic::Status::internal(message),
        }
    }
}

impl From<Denied> for tonic::Status {
    fn from(denied: Denied) -> tonic::Status {
        Error::from(denied).into()
    }
}
