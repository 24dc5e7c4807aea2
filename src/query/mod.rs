//! The filter language: AST, text parser, validation and the in-memory matcher.
//!
//! Owns what a filter *means*. It knows nothing about tantivy (the index compiles the AST) or
//! protobuf (the API converts the structured form into the AST).

pub mod ast;
mod error;
pub mod eval;
mod expand;
mod lexer;
mod parser;
mod print;
pub mod sort;
pub mod time;
mod validate;

pub use ast::{CmpOp, CoreField, DateValue, FieldPath, Filter, Op, Predicate, Value};
pub use error::{FilterError, FilterLimits};
pub use expand::{expand, references};
pub use lexer::{parse_date_literal, parse_date_value};
pub use parser::parse_filter;
pub use print::{NoTextForm, to_text, value_text};
pub use validate::validate;

/// Parses a path on its own (for sort keys and facets), with the same rules as in filters.
pub fn parse_path(text: &str) -> Result<FieldPath, FilterError> {
    match parse_filter(&format!("{text} EXISTS"), &FilterLimits::default())? {
        Filter::Predicate(Predicate { path, .. }) => Ok(path),
        _ => Err(FilterError::at(
            0,
            format!("'{text}' is not a single field or metadata path"),
        )),
    }
}
