//! What a facet asks for (terms counts, numeric stats and histograms, date histograms) and
//! what it answers, and which facets a path supports: the column a path's values live in.

use super::error::IndexError;
use crate::query::ast::{CoreKind, FieldPath};
use crate::user::encode_metadata_path;

/// Distinct values a terms facet enumerates. Beyond this, counts stay exact (a second pass
/// recounts the returned values) but the number of distinct values becomes a lower bound.
pub const TERMS_ENUMERATION_LIMIT: u32 = 10_000;
/// Buckets any one histogram may produce.
pub(super) const BUCKET_LIMIT: u32 = 20_000;
pub(super) const MEMORY_LIMIT: u64 = 512 << 20;

/// One facet to compute.
#[derive(Debug, Clone, PartialEq)]
pub struct FacetSpec {
    pub name: String,
    pub path: FieldPath,
    pub kind: FacetKind,
}

#[derive(Debug, Clone, PartialEq)]
pub enum FacetKind {
    Terms { size: usize, include_missing: bool },
    Stats { percentiles: Vec<f64> },
    Histogram { interval: f64, offset: f64 },
    DateHistogram(Calendar),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Calendar {
    Day,
    /// ISO weeks, Monday to Sunday.
    Week,
    Month,
}

/// A bucket's value.
#[derive(Debug, Clone, PartialEq)]
pub enum FacetValue {
    Str(String),
    Int(i64),
    Float(f64),
    Bool(bool),
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct TermsOutcome {
    /// Most frequent first, ties by value.
    pub buckets: Vec<(FacetValue, u64)>,
    /// Value occurrences not in `buckets`.
    pub other_count: u64,
    pub distinct_values: u64,
    pub distinct_exact: bool,
    /// Matching users without a value, when asked for.
    pub missing: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct StatsOutcome {
    pub count: u64,
    pub min: f64,
    pub max: f64,
    pub avg: f64,
    pub sum: f64,
    /// `(percent, value)` in the order asked.
    pub percentiles: Vec<(f64, f64)>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct HistogramBucket {
    /// The bucket's lower bound (ms since the epoch for dates).
    pub key: f64,
    /// RFC 3339 for date buckets.
    pub key_as_string: Option<String>,
    pub count: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub enum FacetOutcome {
    Terms(TermsOutcome),
    Stats(StatsOutcome),
    Histogram(Vec<HistogramBucket>),
    DateHistogram(Vec<HistogramBucket>),
}

/// The answer to one facet request.
#[derive(Debug, Clone, PartialEq)]
pub struct Facets {
    pub matched: u64,
    pub results: Vec<(String, FacetOutcome)>,
}

/// How a path's values are stored, which decides the facets it supports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ColumnKind {
    Keyword,
    Bool,
    Date,
    /// A core count: whole numbers only.
    Integer,
    /// A metadata path: strings, numbers and booleans side by side.
    Json,
}

pub(super) fn column(path: &FieldPath) -> Result<(String, ColumnKind), IndexError> {
    match path {
        FieldPath::Core(field) => {
            let kind = match field.kind() {
                CoreKind::Keyword { .. } if field.facetable() => ColumnKind::Keyword,
                CoreKind::Bool => ColumnKind::Bool,
                CoreKind::Date => ColumnKind::Date,
                CoreKind::Integer => ColumnKind::Integer,
                _ => {
                    return Err(IndexError::InvalidRequest(format!(
                        "`{}` cannot be faceted (it has no column of values; facet on `email_domain` or a keyword field instead)",
                        field.name()
                    )));
                }
            };
            Ok((field.name().to_string(), kind))
        }
        FieldPath::Metadata { namespace, keys } => {
            if keys.is_empty() {
                return Err(IndexError::InvalidRequest(format!(
                    "facet on a path inside `{}`, not on the whole object",
                    namespace.short_name()
                )));
            }
            Ok((encode_metadata_path(*namespace, keys), ColumnKind::Json))
        }
    }
}

/// Percentiles one stats facet may ask for.
pub const MAX_PERCENTILES: usize = 100;

impl FacetSpec {
    /// Whether this facet can be computed; the message says why not.
    pub fn check(&self) -> Result<(), IndexError> {
        let (_, column) = column(&self.path)?;
        let path = self.path.to_string();
        match (&self.kind, column) {
            (
                FacetKind::Terms { size, .. },
                ColumnKind::Keyword | ColumnKind::Bool | ColumnKind::Integer | ColumnKind::Json,
            ) => {
                if *size == 0 || *size > 1000 {
                    return Err(IndexError::InvalidRequest(format!(
                        "facet `{}`: size must be 1 to 1000",
                        self.name
                    )));
                }
                Ok(())
            }
            (FacetKind::Terms { .. }, ColumnKind::Date) => {
                Err(IndexError::InvalidRequest(format!(
                    "facet `{}`: `{path}` is a date; use a date histogram",
                    self.name
                )))
            }
            (
                FacetKind::Stats { percentiles },
                ColumnKind::Json | ColumnKind::Integer | ColumnKind::Date,
            ) => {
                if percentiles.len() > MAX_PERCENTILES {
                    return Err(IndexError::InvalidRequest(format!(
                        "facet `{}`: at most {MAX_PERCENTILES} percentiles, got {}",
                        self.name,
                        percentiles.len()
                    )));
                }
                if percentiles.iter().any(|p| !(0.0..=100.0).contains(p)) {
                    return Err(IndexError::InvalidRequest(format!(
                        "facet `{}`: percentiles must be between 0 and 100",
                        self.name
                    )));
                }
                Ok(())
            }
            (FacetKind::Histogram { interval, offset }, ColumnKind::Json | ColumnKind::Integer) => {
                if !(interval.is_finite() && *interval > 0.0 && offset.is_finite()) {
                    return Err(IndexError::InvalidRequest(format!(
                        "facet `{}`: a histogram needs a positive interval",
                        self.name
                    )));
                }
                Ok(())
            }
            (FacetKind::DateHistogram(_), ColumnKind::Date) => Ok(()),
            (FacetKind::DateHistogram(_), _) => Err(IndexError::InvalidRequest(format!(
                "facet `{}`: date histograms work on the date fields (created_at, updated_at, last_sign_in_at, last_active_at)",
                self.name
            ))),
            (_, _) => Err(IndexError::InvalidRequest(format!(
                "facet `{}`: `{path}` holds no numbers; use a terms facet",
                self.name
            ))),
        }
    }
}
