//! Times in the index's date columns.

/// The date column's value of a time in ms. tantivy counts nanoseconds in an `i64`, which ends
/// in the year 2262: later (or much earlier) times saturate there instead of overflowing, so a
/// user with an absurd timestamp is indexed (at the end of the column's range) and a filter
/// bound past it compares as that end.
pub fn date_of_millis(ms: i64) -> tantivy::DateTime {
    tantivy::DateTime::from_timestamp_nanos(ms.saturating_mul(1_000_000))
}
