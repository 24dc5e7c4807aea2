//! Every Backend API request the client makes, counted by endpoint and status, and timed.

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EndpointLabels {
    endpoint: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StatusLabels {
    endpoint: String,
    /// The HTTP status (`200`, `429`, ...) or `transport_error`.
    status: String,
}

/// Every attempt of every request (retries included), by endpoint and status, and their latency.
#[derive(Debug)]
pub struct ClerkApiStats {
    requests: Family<StatusLabels, Counter>,
    seconds: Family<EndpointLabels, Histogram>,
}

impl Default for ClerkApiStats {
    fn default() -> Self {
        ClerkApiStats {
            requests: Family::default(),
            seconds: Family::new_with_constructor(crate::latency::latency_histogram),
        }
    }
}

impl ClerkApiStats {
    /// Adds both metrics to `registry`.
    pub fn register(&self, registry: &mut prometheus_client::registry::Registry) {
        registry.register(
            "clerk_api_requests",
            "Clerk Backend API requests (each retry counts), by endpoint and HTTP status; 429 is Clerk's rate limit",
            self.requests.clone(),
        );
        registry.register(
            "clerk_api_request_duration_seconds",
            "Clerk Backend API request latency, by endpoint",
            self.seconds.clone(),
        );
    }

    pub(super) fn record(&self, endpoint: &str, status: String, elapsed: Duration) {
        self.requests
            .get_or_create(&StatusLabels {
                endpoint: endpoint.to_string(),
                status,
            })
            .inc();
        self.seconds
            .get_or_create(&EndpointLabels {
                endpoint: endpoint.to_string(),
            })
            .observe(elapsed.as_secs_f64());
    }
}
