//! The one mapping from [`Error`] to gRPC statuses. Exhaustive down to every nested error's
//! variants (no wildcard), so a new kind of failure does not compile until it has a code.

use tonic::Status;

use crate::auth::Denied;
use crate::clerk::ClerkApiError;
use crate::cluster::ClusterError;
use crate::error::Error;
use crate::index::{IndexError, WriteError};
use crate::segments::SegmentError;

/// Metadata key carrying the character position of a filter error, for programmatic clients.
pub const FILTER_ERROR_POSITION: &str = "x-filter-error-position";

/// The longest status message sent, in bytes: messages may quote a caller's input, and
/// `grpc-message` travels in a header that clients cap (8 KiB in several).
pub const MAX_STATUS_MESSAGE_BYTES: usize = 1024;

impl From<Error> for Status {
    fn from(error: Error) -> Status {
        let message =
            crate::redact::clip(&error.to_string(), MAX_STATUS_MESSAGE_BYTES).into_owned();
        match error {
            Error::InvalidFilter(filter_error) => {
                let mut status = Status::invalid_argument(message);
                if let Some(position) = filter_error.position
                    && let Ok(value) = position.to_string().parse()
                {
                    status.metadata_mut().insert(FILTER_ERROR_POSITION, value);
                }
                status
            }
            Error::InvalidArgument(_) => Status::invalid_argument(message),
            Error::NotFound(_) => Status::not_found(message),
            Error::Unauthenticated(_) => Status::unauthenticated(message),
            Error::PermissionDenied(_) => Status::permission_denied(message),
            Error::Unavailable(_) => Status::unavailable(message),
            Error::DeadlineExceeded(_) => Status::deadline_exceeded(message),
            Error::FailedPrecondition(_) => Status::failed_precondition(message),
            Error::Internal(_) => Status::internal(message),
            Error::ResourceExhausted(_) => Status::resource_exhausted(message),
            Error::Clerk(clerk) => clerk_status(clerk, message),
            Error::Index(index) => index_status(&index, message),
            Error::Write(write) => write_status(&write, message),
            Error::Segment(segment) => segment_status(segment, message),
            Error::Cluster(cluster) => cluster_status(&cluster, message),
        }
    }
}

impl From<Denied> for Status {
    fn from(denied: Denied) -> Status {
        Error::from(denied).into()
    }
}

fn clerk_status(error: ClerkApiError, message: String) -> Status {
    match error {
        ClerkApiError::Api { status: 404, .. } => Status::not_found(message),
        ClerkApiError::Api {
            status: 429,
            retry_after,
            ..
        } => {
            let seconds = retry_after.map_or(1, |d| d.as_secs().max(1));
            let mut status = Status::resource_exhausted(format!("{message}; retry in {seconds} s"));
            if let Ok(value) = seconds.to_string().parse() {
                status.metadata_mut().insert("retry-after", value);
            }
            status
        }
        ClerkApiError::Api {
            status: 400 | 422, ..
        } => Status::invalid_argument(message),
        ClerkApiError::Api { .. }
        | ClerkApiError::Transport { .. }
        | ClerkApiError::Decode { .. } => Status::unavailable(message),
    }
}

fn index_status(error: &IndexError, message: String) -> Status {
    match error {
        IndexError::InvalidRequest(_) => Status::invalid_argument(message),
        IndexError::Write(write) => write_status(write, message),
        IndexError::Tantivy(_)
        | IndexError::Directory { .. }
        | IndexError::Payload(_)
        | IndexError::Io(_)
        | IndexError::Read(_) => Status::internal(message),
    }
}

fn write_status(error: &WriteError, message: String) -> Status {
    match error {
        WriteError::Stopped | WriteError::Paused(_) | WriteError::Lost => {
            Status::unavailable(message)
        }
        WriteError::Commit(_) | WriteError::Observer(_) | WriteError::Seal(_) => {
            Status::internal(message)
        }
    }
}

fn segment_status(error: SegmentError, message: String) -> Status {
    match error {
        SegmentError::Invalid(_) => Status::invalid_argument(message),
        SegmentError::NotFound(_) => Status::not_found(message),
        SegmentError::AlreadyExists(_) => Status::already_exists(message),
        SegmentError::VersionMismatch { .. } => Status::aborted(message),
        SegmentError::OutOfRange(_) => Status::out_of_range(message),
        SegmentError::Unavailable(_) => Status::unavailable(message),
        SegmentError::Denied(_) => Status::permission_denied(message),
        SegmentError::Index(index) => index_status(&index, message),
        SegmentError::Write(write) => write_status(&write, message),
        SegmentError::Log(_) => Status::internal(message),
    }
}

fn cluster_status(error: &ClusterError, message: String) -> Status {
    match error {
        ClusterError::Connect { .. } | ClusterError::JetStream { .. } => {
            Status::unavailable(message)
        }
        ClusterError::Config(_) | ClusterError::Message { .. } => Status::internal(message),
    }
}
