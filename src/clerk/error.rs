//! What goes wrong talking to Clerk, and the user paths the client may ask for.

use std::time::Duration;

/// What went wrong talking to Clerk.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ClerkApiError {
    /// Clerk answered with an error status; `code` and `long_message` come from its body.
    #[error("clerk answered {status} to {request}: {code}: {long_message}{}", trace_suffix(.trace_id))]
    Api {
        request: String,
        status: u16,
        code: String,
        long_message: String,
        trace_id: Option<String>,
        /// From `Retry-After` on a 429.
        retry_after: Option<Duration>,
    },
    #[error("clerk request {request} failed: {message}")]
    Transport { request: String, message: String },
    #[error("clerk sent an unreadable answer to {request}: {message}")]
    Decode { request: String, message: String },
}

impl ClerkApiError {
    /// Clerk's answer for an id no user can have (asked without a request).
    pub(super) fn not_a_user(request: &str) -> ClerkApiError {
        ClerkApiError::Api {
            request: request.into(),
            status: 404,
            code: "resource_not_found".into(),
            long_message: crate::user::user_id_rule(),
            trace_id: None,
            retry_after: None,
        }
    }
}

/// `/v1/users/{id}{suffix}`, or `None` for an id not shaped like Clerk's.
pub(super) fn user_path(user_id: &str, suffix: &str) -> Option<String> {
    crate::user::is_user_id(user_id).then(|| format!("/v1/users/{user_id}{suffix}"))
}

fn trace_suffix(trace_id: &Option<String>) -> String {
    trace_id
        .as_ref()
        .map(|t| format!(" (clerk trace {t})"))
        .unwrap_or_default()
}

impl ClerkApiError {
    pub fn status(&self) -> Option<u16> {
        match self {
            ClerkApiError::Api { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// A short name for metrics and spans.
    pub(super) fn kind(&self) -> &'static str {
        match self {
            ClerkApiError::Api { .. } => "api_error",
            ClerkApiError::Transport { .. } => "transport_error",
            ClerkApiError::Decode { .. } => "decode_error",
        }
    }

    /// Whether retrying the same request may succeed.
    pub(super) fn is_transient(&self) -> bool {
        match self {
            ClerkApiError::Api { status, .. } => *status == 429 || *status >= 500,
            ClerkApiError::Transport { .. } => true,
            ClerkApiError::Decode { .. } => false,
        }
    }
}
