//! What goes wrong with NATS: connecting, JetStream calls, unreadable messages.

use super::config::ClusterConfigError;

/// What went wrong with the change log.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("cannot reach NATS at {url}: {message}")]
    Connect { url: String, message: String },
    #[error("cluster settings: {0}")]
    Config(#[from] ClusterConfigError),
    #[error("jetstream {action}: {message}")]
    JetStream {
        action: &'static str,
        message: String,
    },
    #[error("change log message {sequence} is unreadable: {message}")]
    Message { sequence: u64, message: String },
}

pub(super) fn jetstream_error(action: &'static str) -> impl Fn(String) -> ClusterError {
    move |message| ClusterError::JetStream { action, message }
}
