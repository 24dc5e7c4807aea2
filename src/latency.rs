//! The one latency histogram layout, shared by everything that times itself (index commits,
//! Clerk calls, gRPC calls). A leaf: the domain keeps its timings in these histograms without
//! knowing how metrics are served; `telemetry` registers them.

use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};

/// Latency buckets from 0.25 ms to ~16 s, doubling: queries answer in about a millisecond,
/// exports and Clerk calls take seconds.
pub fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.000_25, 2.0, 17))
}
