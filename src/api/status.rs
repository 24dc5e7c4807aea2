//! The one mapping from [`Error`] to gRPC statuses. Exhaustive down to every nested error's
//! variants (no wildcard), so a new kind of failure does not compile until it has a code and a
//! [`Reason`].
//!
//! Every status carries `google.rpc` details in `grpc-status-details-bin`: an `ErrorInfo` with a
//! stable [`Reason`] and the [`ERROR_DOMAIN`], and where they apply a `BadRequest` naming the
//! request field (and a filter error's position), a `ResourceInfo` for what was not found, a
//! `PreconditionFailure` for a version mismatch, a `QuotaFailure` for a limit and a `RetryInfo`
//! when waiting helps. Callers branch on the reason, never on the message.

use std::collections::HashMap;
use std::time::Duration;

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

use crate::auth::{Denied, Unauthenticated};
use crate::clerk::ClerkApiError;
use crate::cluster::ClusterError;
use crate::destinations::DestinationError;
use crate::error::Error;
use crate::index::{IndexError, WriteError};
use crate::segments::SegmentError;

/// `ErrorInfo.domain` of every error this service sends.
pub const ERROR_DOMAIN: &str = "clerk-index";

/// Metadata key carrying the character position of a filter error. The `BadRequest` and
/// `ErrorInfo` details carry it too; this header is kept for callers written before them.
pub const FILTER_ERROR_POSITION: &str = "x-filter-error-position";

/// The longest status message sent, in bytes: messages may quote a caller's input, and
/// `grpc-message` travels in a header that clients cap (8 KiB in several).
pub const MAX_STATUS_MESSAGE_BYTES: usize = 1024;

/// How long a caller should wait before retrying a write refused while the writer is paused
/// (its own retries start at 1 s).
const PAUSED_RETRY: Duration = Duration::from_secs(1);

/// `ErrorInfo.reason`: what went wrong, stable across releases (docs/API.md lists them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// The filter does not parse or does not type-check; `position` in the metadata.
    InvalidFilter,
    /// A request field is out of range or malformed; the `BadRequest` names it.
    InvalidArgument,
    /// A facet request the index cannot answer as asked.
    InvalidFacet,
    UserNotFound,
    SegmentNotFound,
    SegmentExists,
    /// The segment changed since the caller read it (`UpdateSegment.expected_version`).
    VersionMismatch,
    /// The segment's event log no longer holds the events after `after_sequence`.
    EventsExpired,
    ApiKeyMissing,
    ApiKeyMalformed,
    ApiKeyUnknown,
    /// The API key lacks a scope; `scope` in the metadata.
    ScopeMissing,
    /// One of the service's resource limits (docs/LIMITS.md); `limit` in the metadata.
    LimitExceeded,
    /// The configured number of saved segments is reached.
    SegmentLimit,
    DestinationNotFound,
    DestinationExists,
    /// The configured number of destinations is reached.
    DestinationLimit,
    /// Clerk's rate limit; the `RetryInfo` says when to retry.
    ClerkRateLimited,
    /// Clerk has no such user (write-through).
    ClerkUserNotFound,
    /// Clerk refused the request (400 or 422): its code is in `clerk_code`.
    ClerkRejected,
    /// Clerk could not be reached or answered with a server error.
    ClerkUnavailable,
    /// Index writes are paused after a failed commit (a full disk); reads carry on.
    WritesPaused,
    /// The index writer has stopped (the server is shutting down).
    WriterStopped,
    /// The service cannot answer now (still backfilling, a replica behind); retry later.
    Unavailable,
    /// The snapshot asked for (`min_generation`, `min_log_sequence`) was not reached in time.
    FreshnessNotReached,
    /// The call cannot work in the service's current configuration or role.
    FailedPrecondition,
    /// Cluster mode: NATS could not be reached.
    ClusterUnavailable,
    Internal,
}

impl Reason {
    /// Every reason, for the documentation check.
    pub const ALL: [Reason; 28] = [
        Reason::InvalidFilter,
        Reason::InvalidArgument,
        Reason::InvalidFacet,
        Reason::UserNotFound,
        Reason::SegmentNotFound,
        Reason::SegmentExists,
        Reason::VersionMismatch,
        Reason::EventsExpired,
        Reason::ApiKeyMissing,
        Reason::ApiKeyMalformed,
        Reason::ApiKeyUnknown,
        Reason::ScopeMissing,
        Reason::LimitExceeded,
        Reason::SegmentLimit,
        Reason::DestinationNotFound,
        Reason::DestinationExists,
        Reason::DestinationLimit,
        Reason::ClerkRateLimited,
        Reason::ClerkUserNotFound,
        Reason::ClerkRejected,
        Reason::ClerkUnavailable,
        Reason::WritesPaused,
        Reason::WriterStopped,
        Reason::Unavailable,
        Reason::FreshnessNotReached,
        Reason::FailedPrecondition,
        Reason::ClusterUnavailable,
        Reason::Internal,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Reason::InvalidFilter => "INVALID_FILTER",
            Reason::InvalidArgument => "INVALID_ARGUMENT",
            Reason::InvalidFacet => "INVALID_FACET",
            Reason::UserNotFound => "USER_NOT_FOUND",
            Reason::SegmentNotFound => "SEGMENT_NOT_FOUND",
            Reason::SegmentExists => "SEGMENT_EXISTS",
            Reason::VersionMismatch => "VERSION_MISMATCH",
            Reason::EventsExpired => "EVENTS_EXPIRED",
            Reason::ApiKeyMissing => "API_KEY_MISSING",
            Reason::ApiKeyMalformed => "API_KEY_MALFORMED",
            Reason::ApiKeyUnknown => "API_KEY_UNKNOWN",
            Reason::ScopeMissing => "SCOPE_MISSING",
            Reason::LimitExceeded => "LIMIT_EXCEEDED",
            Reason::SegmentLimit => "SEGMENT_LIMIT",
            Reason::DestinationNotFound => "DESTINATION_NOT_FOUND",
            Reason::DestinationExists => "DESTINATION_EXISTS",
            Reason::DestinationLimit => "DESTINATION_LIMIT",
            Reason::ClerkRateLimited => "CLERK_RATE_LIMITED",
            Reason::ClerkUserNotFound => "CLERK_USER_NOT_FOUND",
            Reason::ClerkRejected => "CLERK_REJECTED",
            Reason::ClerkUnavailable => "CLERK_UNAVAILABLE",
            Reason::WritesPaused => "WRITES_PAUSED",
            Reason::WriterStopped => "WRITER_STOPPED",
            Reason::Unavailable => "UNAVAILABLE",
            Reason::FreshnessNotReached => "FRESHNESS_NOT_REACHED",
            Reason::FailedPrecondition => "FAILED_PRECONDITION",
            Reason::ClusterUnavailable => "CLUSTER_UNAVAILABLE",
            Reason::Internal => "INTERNAL",
        }
    }
}

/// What one error becomes: a code, a reason and the details beyond `ErrorInfo`.
struct Mapped {
    code: Code,
    reason: Reason,
    metadata: HashMap<String, String>,
    details: ErrorDetails,
}

impl Mapped {
    fn new(code: Code, reason: Reason) -> Mapped {
        Mapped {
            code,
            reason,
            metadata: HashMap::new(),
            details: ErrorDetails::new(),
        }
    }

    fn meta(mut self, key: &str, value: impl ToString) -> Mapped {
        self.metadata.insert(key.into(), value.to_string());
        self
    }

    fn bad_field(mut self, field: &str, description: &str) -> Mapped {
        self.details.add_bad_request_violation(field, description);
        self
    }

    fn resource(mut self, kind: &str, name: &str, description: &str) -> Mapped {
        self.details.set_resource_info(kind, name, "", description);
        self
    }

    fn retry_after(mut self, delay: Duration) -> Mapped {
        self.details.set_retry_info(Some(delay));
        self
    }

    fn quota(mut self, subject: &str, description: &str) -> Mapped {
        self.details
            .add_quota_failure_violation(subject, description);
        self
    }
}

impl From<Error> for Status {
    fn from(error: Error) -> Status {
        let message =
            crate::redact::clip(&error.to_string(), MAX_STATUS_MESSAGE_BYTES).into_owned();
        let position = match &error {
            Error::InvalidFilter(filter_error) => filter_error.position,
            _ => None,
        };
        let retry = match &error {
            Error::Clerk(ClerkApiError::Api {
                status: 429,
                retry_after,
                ..
            }) => Some(retry_after.map_or(1, |d| d.as_secs().max(1))),
            _ => None,
        };
        let Mapped {
            code,
            reason,
            metadata,
            mut details,
        } = map(error, &message);
        details.set_error_info(reason.as_str(), ERROR_DOMAIN, metadata);
        let message = match retry {
            Some(seconds) => format!("{message}; retry in {seconds} s"),
            None => message,
        };
        let mut status = Status::with_error_details(code, message, details);
        // The older spellings of the position and the delay, for callers that read headers.
        let legacy = [
            (FILTER_ERROR_POSITION, position.map(|p| p as u64)),
            ("retry-after", retry),
        ];
        for (key, value) in legacy {
            if let Some(Ok(value)) = value.map(|v| v.to_string().parse()) {
                status.metadata_mut().insert(key, value);
            }
        }
        status
    }
}

impl From<Denied> for Status {
    fn from(denied: Denied) -> Status {
        Error::from(denied).into()
    }
}

fn map(error: Error, message: &str) -> Mapped {
    match error {
        Error::InvalidFilter(filter_error) => {
            let (field, mapped) = match filter_error.position {
                Some(position) => (
                    "filter.expression",
                    Mapped::new(Code::InvalidArgument, Reason::InvalidFilter)
                        .meta("position", position),
                ),
                None => (
                    "filter",
                    Mapped::new(Code::InvalidArgument, Reason::InvalidFilter),
                ),
            };
            mapped.bad_field(field, message)
        }
        Error::InvalidArgument { field, .. } => {
            Mapped::new(Code::InvalidArgument, Reason::InvalidArgument).bad_field(&field, message)
        }
        Error::NotFound { kind, name } => Mapped::new(Code::NotFound, Reason::UserNotFound)
            .resource(
                &format!("clerkindex.v1.{}", upper_first(kind)),
                &name,
                message,
            ),
        Error::Unauthenticated(unauthenticated) => Mapped::new(
            Code::Unauthenticated,
            match unauthenticated {
                Unauthenticated::Missing => Reason::ApiKeyMissing,
                Unauthenticated::Malformed => Reason::ApiKeyMalformed,
                Unauthenticated::UnknownKey => Reason::ApiKeyUnknown,
            },
        ),
        Error::PermissionDenied(denied) => {
            Mapped::new(Code::PermissionDenied, Reason::ScopeMissing).meta("scope", denied.scope)
        }
        Error::Unavailable(_) => Mapped::new(Code::Unavailable, Reason::Unavailable),
        Error::DeadlineExceeded(_) => {
            Mapped::new(Code::DeadlineExceeded, Reason::FreshnessNotReached)
        }
        Error::FailedPrecondition(_) => {
            Mapped::new(Code::FailedPrecondition, Reason::FailedPrecondition)
        }
        Error::Internal(_) => Mapped::new(Code::Internal, Reason::Internal),
        Error::ResourceExhausted(exhausted) => {
            Mapped::new(Code::ResourceExhausted, Reason::LimitExceeded)
                .meta("limit", exhausted.what)
                .meta("max", exhausted.limit)
                .quota(exhausted.whose, message)
        }
        Error::Clerk(clerk) => clerk_mapped(clerk, message),
        Error::Index(index) => index_mapped(&index, message),
        Error::Write(write) => write_mapped(&write),
        Error::Segment(segment) => segment_mapped(segment, message),
        Error::Destination(destination) => destination_mapped(destination, message),
        Error::Cluster(cluster) => cluster_mapped(&cluster),
    }
}

fn upper_first(word: &str) -> String {
    let mut chars = word.chars();
    chars.next().map_or_else(String::new, |first| {
        first.to_uppercase().chain(chars).collect()
    })
}

fn clerk_mapped(error: ClerkApiError, message: &str) -> Mapped {
    match error {
        ClerkApiError::Api {
            status: 404,
            request,
            ..
        } => Mapped::new(Code::NotFound, Reason::ClerkUserNotFound).resource(
            "clerk.User",
            request
                .rsplit('/')
                .find(|part| part.starts_with("user_"))
                .unwrap_or(""),
            message,
        ),
        ClerkApiError::Api {
            status: 429,
            retry_after,
            ..
        } => Mapped::new(Code::ResourceExhausted, Reason::ClerkRateLimited).retry_after(
            retry_after
                .unwrap_or(Duration::from_secs(1))
                .max(Duration::from_secs(1)),
        ),
        ClerkApiError::Api {
            status: 400 | 422,
            code,
            ..
        } => Mapped::new(Code::InvalidArgument, Reason::ClerkRejected).meta("clerk_code", code),
        ClerkApiError::Api { status, .. } => {
            Mapped::new(Code::Unavailable, Reason::ClerkUnavailable).meta("clerk_status", status)
        }
        ClerkApiError::Transport { .. } | ClerkApiError::Decode { .. } => {
            Mapped::new(Code::Unavailable, Reason::ClerkUnavailable)
        }
    }
}

fn index_mapped(error: &IndexError, message: &str) -> Mapped {
    match error {
        IndexError::InvalidRequest(_) => {
            Mapped::new(Code::InvalidArgument, Reason::InvalidFacet).bad_field("facets", message)
        }
        IndexError::Write(write) => write_mapped(write),
        IndexError::Tantivy(_)
        | IndexError::Directory { .. }
        | IndexError::Payload(_)
        | IndexError::Io(_)
        | IndexError::Read(_) => Mapped::new(Code::Internal, Reason::Internal),
    }
}

fn write_mapped(error: &WriteError) -> Mapped {
    match error {
        WriteError::Stopped => Mapped::new(Code::Unavailable, Reason::WriterStopped),
        WriteError::Paused(_) | WriteError::Lost => {
            Mapped::new(Code::Unavailable, Reason::WritesPaused).retry_after(PAUSED_RETRY)
        }
        WriteError::Commit(_) | WriteError::Observer(_) | WriteError::Seal(_) => {
            Mapped::new(Code::Internal, Reason::Internal)
        }
    }
}

fn segment_mapped(error: SegmentError, message: &str) -> Mapped {
    let segment = |name: &str| format!("segments/{name}");
    match error {
        SegmentError::Invalid { field, .. } => {
            Mapped::new(Code::InvalidArgument, Reason::InvalidArgument).bad_field(field, message)
        }
        SegmentError::NotFound(name) => Mapped::new(Code::NotFound, Reason::SegmentNotFound)
            .resource("clerkindex.v1.Segment", &name, message),
        SegmentError::AlreadyExists(name) => Mapped::new(
            Code::AlreadyExists,
            Reason::SegmentExists,
        )
        .resource("clerkindex.v1.Segment", &name, message),
        SegmentError::VersionMismatch {
            name,
            expected,
            actual,
        } => {
            let mut mapped = Mapped::new(Code::Aborted, Reason::VersionMismatch)
                .meta("expected_version", expected)
                .meta("actual_version", actual);
            mapped
                .details
                .add_precondition_failure_violation("VERSION", segment(&name), message);
            mapped
        }
        SegmentError::TooMany(max) => Mapped::new(Code::ResourceExhausted, Reason::SegmentLimit)
            .meta("max", max)
            .quota("segments", message),
        SegmentError::OutOfRange(_) => Mapped::new(Code::OutOfRange, Reason::EventsExpired)
            .bad_field("after_sequence", message),
        SegmentError::Unavailable(_) => Mapped::new(Code::Unavailable, Reason::Unavailable),
        SegmentError::Denied(_) => Mapped::new(Code::PermissionDenied, Reason::ScopeMissing),
        SegmentError::Referenced { name, .. } => {
            let mut mapped = Mapped::new(Code::FailedPrecondition, Reason::FailedPrecondition);
            mapped.details.add_precondition_failure_violation(
                "REFERENCED",
                segment(&name),
                message,
            );
            mapped
        }
        SegmentError::Index(index) => index_mapped(&index, message),
        SegmentError::Write(write) => write_mapped(&write),
        SegmentError::Log(_) => Mapped::new(Code::Internal, Reason::Internal),
    }
}

fn destination_mapped(error: DestinationError, message: &str) -> Mapped {
    const KIND: &str = "clerkindex.v1.Destination";
    match error {
        DestinationError::Invalid { field, .. } => {
            Mapped::new(Code::InvalidArgument, Reason::InvalidArgument).bad_field(field, message)
        }
        DestinationError::NotFound(name) => {
            Mapped::new(Code::NotFound, Reason::DestinationNotFound).resource(KIND, &name, message)
        }
        DestinationError::AlreadyExists(name) => {
            Mapped::new(Code::AlreadyExists, Reason::DestinationExists)
                .resource(KIND, &name, message)
        }
        DestinationError::TooMany(max) => {
            Mapped::new(Code::ResourceExhausted, Reason::DestinationLimit)
                .meta("max", max)
                .quota("destinations", message)
        }
        DestinationError::FailedPrecondition(_) => {
            Mapped::new(Code::FailedPrecondition, Reason::FailedPrecondition)
        }
        // A followed segment that does not exist is a bad request field.
        DestinationError::Segment(SegmentError::NotFound(_)) => {
            Mapped::new(Code::InvalidArgument, Reason::InvalidArgument)
                .bad_field("segments", message)
        }
        DestinationError::Segment(segment) => segment_mapped(segment, message),
        DestinationError::Unavailable(_) => {
            Mapped::new(Code::Unavailable, Reason::ClusterUnavailable)
        }
        DestinationError::Io { .. } | DestinationError::Secret(_) => {
            Mapped::new(Code::Internal, Reason::Internal)
        }
    }
}

fn cluster_mapped(error: &ClusterError) -> Mapped {
    match error {
        ClusterError::Connect { .. } | ClusterError::JetStream { .. } => {
            Mapped::new(Code::Unavailable, Reason::ClusterUnavailable)
        }
        ClusterError::Config(_) | ClusterError::Message { .. } => {
            Mapped::new(Code::Internal, Reason::Internal)
        }
    }
}
