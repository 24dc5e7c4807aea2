//! The one error enum of the service's operations. Every module's own error (the index's, the
//! writer's, Clerk's, the segments', the cluster's, a refused caller's) converts into it, so a
//! handler can use `?` on anything; `api` maps it to gRPC statuses in one exhaustive place.
//! Messages are lowercase and say what was wrong with which input.

use crate::auth::{Denied, Unauthenticated};
use crate::clerk::ClerkApiError;
use crate::cluster::ClusterError;
use crate::destinations::DestinationError;
use crate::index::{IndexError, WriteError};
use crate::limits::Exhausted;
use crate::query::FilterError;
use crate::segments::SegmentError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid filter: {0}")]
    InvalidFilter(#[from] FilterError),
    /// A request field that is wrong whatever the index holds; `field` is its path in the
    /// request (`page_size`, `facets[2]`, `sort.path`), as in `google.rpc.BadRequest`.
    #[error("{message}")]
    InvalidArgument { field: String, message: String },
    /// `kind` is the resource's type (`user`), `name` its id.
    #[error("no {kind} with id {name} in the index")]
    NotFound { kind: &'static str, name: String },
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
    Write(#[from] WriteError),
    #[error(transparent)]
    Clerk(#[from] ClerkApiError),
    #[error(transparent)]
    Segment(#[from] SegmentError),
    #[error(transparent)]
    Destination(#[from] DestinationError),
    #[error(transparent)]
    Cluster(#[from] ClusterError),
    #[error(transparent)]
    Unauthenticated(#[from] Unauthenticated),
    #[error(transparent)]
    PermissionDenied(#[from] Denied),
    #[error(transparent)]
    ResourceExhausted(#[from] Exhausted),
    #[error("{0}")]
    Internal(String),
}

impl Error {
    /// A bad value in the request's `field`.
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Error {
        Error::InvalidArgument {
            field: field.into(),
            message: message.into(),
        }
    }
}
