//! Telemetry: logs with `tracing` (human-readable or JSON, filtered by `RUST_LOG`, default
//! `info`), OpenTelemetry traces over OTLP when asked for ([`otel`]), and Prometheus metrics
//! ([`metrics`]). Everything here is process-wide: [`init`] installs it once, and the returned
//! [`Telemetry`] flushes what is buffered when the process stops.

mod encode;
pub mod metrics;
pub mod otel;
mod process;

pub use process::process_cpu_seconds;

use tracing_subscriber::EnvFilter;
use tracing_subscriber::Layer as _;
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// How logs are written: `pretty` for people, `json` for log collectors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Pretty,
    Json,
}

/// What [`init`] installed that needs stopping: the span exporter, if traces are exported.
#[must_use = "call shutdown() when the process stops, or buffered spans are lost"]
pub struct Telemetry {
    traces: Option<otel::TraceExport>,
}

impl Telemetry {
    /// Sends the spans still buffered and stops the exporter (bounded by the exporter timeout).
    /// Blocks: call it outside async code or through `spawn_blocking`.
    pub fn shutdown(self) {
        if let Some(traces) = self.traces {
            traces.shutdown();
        }
    }

    /// [`Telemetry::shutdown`] from async code.
    pub async fn stop(self) {
        let _ = tokio::task::spawn_blocking(move || self.shutdown()).await;
    }
}

/// Installs the global subscriber: logs, plus an OpenTelemetry layer when `otlp_endpoint` is
/// given or the standard `OTEL_EXPORTER_OTLP_*ENDPOINT` variables ask for it. Only the first
/// call in a process installs anything.
pub fn init(format: LogFormat, otlp_endpoint: Option<&str>) -> Telemetry {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,tantivy=warn"));
    let logs = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    // `RUST_LOG` filters the logs only: spans go to the collector at INFO whatever it says.
    let logs = match format {
        LogFormat::Pretty => logs.with_filter(filter).boxed(),
        LogFormat::Json => logs.json().with_filter(filter).boxed(),
    };
    // Set up before the subscriber exists, so its own messages are reported after it does.
    let (traces, problem) = match otel::TraceExport::from_env(otlp_endpoint) {
        Ok(traces) => (traces, None),
        Err(error) => (None, Some(error)),
    };
    let spans = traces
        .as_ref()
        .map(|traces| traces.layer().with_filter(LevelFilter::INFO));
    let installed = tracing_subscriber::registry()
        .with(logs)
        .with(spans)
        .try_init()
        .is_ok();
    if let Some(error) = problem {
        tracing::error!(%error, "OpenTelemetry traces are off");
    }
    match &traces {
        Some(traces) if installed => {
            tracing::info!(endpoint = %traces.endpoint(), "exporting OpenTelemetry traces over OTLP/gRPC")
        }
        _ => {}
    }
    Telemetry {
        traces: traces.filter(|_| installed),
    }
}
