//! Why a filter was refused.

/// A filter that cannot be run, with where (character offset, 0-based, in the text form) and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}{message}", .position.map(|p| format!("at position {p}: ")).unwrap_or_default())]
pub struct FilterError {
    pub position: Option<usize>,
    pub message: String,
}

impl FilterError {
    pub fn at(position: usize, message: impl Into<String>) -> Self {
        FilterError {
            position: Some(position),
            message: message.into(),
        }
    }

    pub fn general(message: impl Into<String>) -> Self {
        FilterError {
            position: None,
            message: message.into(),
        }
    }
}

/// Protects the server from filters that are too large to be reasonable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FilterLimits {
    pub max_length: usize,
    pub max_depth: usize,
    pub max_predicates: usize,
    pub max_in_values: usize,
}

impl Default for FilterLimits {
    fn default() -> Self {
        FilterLimits {
            max_length: 16 * 1024,
            max_depth: 32,
            max_predicates: 512,
            max_in_values: 1024,
        }
    }
}
