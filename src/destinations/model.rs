//! What destinations are made of: the stored definition and delivery state, the settings, and
//! what goes wrong.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::auth::sensitive::SealError;
use crate::segments::SegmentError;

/// Where a destination's delivery stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    /// Delivering (or retrying a failed batch with backoff).
    Active,
    /// Paused by a caller; resumes from where it stopped.
    Paused,
    /// Retried for the whole retry window without success; resumes from where it stopped when
    /// resumed.
    Failing,
    /// Events it had not delivered were evicted from the log (past the held maximum): resync it
    /// (its segments' members are sent as a snapshot) to continue.
    Gap,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Active => "active",
            State::Paused => "paused",
            State::Failing => "failing",
            State::Gap => "gap",
        }
    }

    pub const ALL: [State; 4] = [State::Active, State::Paused, State::Failing, State::Gap];
}

/// A signing secret, sealed at rest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SealedSecret {
    pub sealed: String,
    /// A rotated-out secret still signs until then (receivers switch over meanwhile).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_ms: Option<i64>,
}

/// A destination as stored and listed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Destination {
    pub name: String,
    pub url: String,
    /// The segments it follows, sorted.
    pub segments: Vec<String>,
    /// Most events in one request.
    pub batch_size: usize,
    /// How long the first event of a batch waits for more before the batch is sent.
    pub batch_delay_ms: u64,
    pub created_ms: i64,
    pub updated_ms: i64,
    pub state: State,
    /// Every event of its segments up to here was delivered (acknowledged with a 2xx).
    pub delivered_through: u64,
    /// Events delivered since it was created.
    pub delivered_events: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_delivered_ms: Option<i64>,
    /// Failed attempts in a row, the first of them, and why the last failed.
    #[serde(default)]
    pub failed_attempts: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failing_since_ms: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_attempt_ms: Option<i64>,
    /// A resync was asked for: the next delivery is a snapshot of its segments' members.
    #[serde(default)]
    pub resync: bool,
    /// The current secret first, then rotated-out ones still signing.
    pub secrets: Vec<SealedSecret>,
}

/// What a caller asks for when creating a destination.
#[derive(Debug, Clone)]
pub struct Spec {
    pub name: String,
    pub url: String,
    pub segments: Vec<String>,
    /// 0: the default.
    pub batch_size: usize,
    pub batch_delay: Option<Duration>,
}

/// What a caller changes in a destination (`None`: kept).
#[derive(Debug, Clone, Default)]
pub struct Update {
    pub url: Option<String>,
    pub segments: Option<Vec<String>>,
    /// 0: the default.
    pub batch_size: Option<usize>,
    pub batch_delay: Option<Duration>,
}

/// Settings of destinations.
#[derive(Debug, Clone)]
pub struct DestinationsConfig {
    pub max_destinations: usize,
    pub max_segments_per_destination: usize,
    pub default_batch_size: usize,
    pub max_batch_size: usize,
    pub default_batch_delay: Duration,
    pub max_batch_delay: Duration,
    /// The first retry's delay; each next one doubles, up to `retry_max_delay`, with jitter.
    pub retry_initial_delay: Duration,
    pub retry_max_delay: Duration,
    /// A batch failing for this long marks the destination failing.
    pub failing_after: Duration,
    /// One request's whole time (connect, send, response head).
    pub request_timeout: Duration,
    /// How long a rotated-out secret still signs.
    pub rotation_overlap: Duration,
    /// Deliver to private, loopback and link-local addresses (tests, in-cluster receivers).
    pub allow_private: bool,
    /// Deliver over plain `http://`.
    pub allow_http: bool,
}

impl Default for DestinationsConfig {
    fn default() -> Self {
        DestinationsConfig {
            max_destinations: 100,
            max_segments_per_destination: 100,
            default_batch_size: 100,
            max_batch_size: 1_000,
            default_batch_delay: Duration::from_millis(200),
            max_batch_delay: Duration::from_secs(60),
            retry_initial_delay: Duration::from_secs(1),
            retry_max_delay: Duration::from_secs(3_600),
            failing_after: Duration::from_secs(24 * 3_600),
            request_timeout: Duration::from_secs(10),
            rotation_overlap: Duration::from_secs(24 * 3_600),
            allow_private: false,
            allow_http: false,
        }
    }
}

/// What goes wrong with destinations; `api` maps each variant to one gRPC code.
#[derive(Debug, thiserror::Error)]
pub enum DestinationError {
    #[error("{message}")]
    Invalid {
        field: &'static str,
        message: String,
    },
    #[error("no destination named {0:?}")]
    NotFound(String),
    #[error("a destination named {0:?} already exists")]
    AlreadyExists(String),
    #[error("at most {0} destinations can be created")]
    TooMany(usize),
    /// The destination is not in a state the call works in.
    #[error("{0}")]
    FailedPrecondition(String),
    /// The cluster's destinations bucket cannot be reached (cluster mode).
    #[error("the cluster's destinations are unavailable: {0}")]
    Unavailable(String),
    #[error("destinations state {path}: {message}")]
    Io { path: String, message: String },
    #[error("a destination's signing secret does not open: {0}")]
    Secret(#[from] SealError),
    #[error(transparent)]
    Segment(#[from] SegmentError),
}

impl DestinationError {
    pub fn invalid(field: &'static str, message: impl Into<String>) -> DestinationError {
        DestinationError::Invalid {
            field,
            message: message.into(),
        }
    }
}
