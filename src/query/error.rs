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

impl FilterLimits {
    /// The limits for filter text this service printed itself (saved segments' definitions):
    /// the same, without the length limit. Printing escapes control characters and spaces out
    /// lists, so a filter within `max_length` can print longer; the other limits bounded it
    /// when it was saved.
    pub fn stored(&self) -> FilterLimits {
        FilterLimits {
            max_length: usize::MAX,
            ..*self
        }
    }
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
