//! OpenTelemetry traces over OTLP/gRPC, switched on by `--otlp-endpoint` or the standard
//! `OTEL_EXPORTER_OTLP_ENDPOINT` / `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` variables, and W3C trace
//! context read from incoming requests.
//!
//! The standard variables are honoured where the SDK reads them (`OTEL_SERVICE_NAME`,
//! `OTEL_RESOURCE_ATTRIBUTES`, `OTEL_TRACES_SAMPLER[_ARG]`, `OTEL_BSP_*`,
//! `OTEL_EXPORTER_OTLP_HEADERS`/`_TIMEOUT`/`_COMPRESSION`/`_INSECURE`) and here
//! (`OTEL_SDK_DISABLED`, `OTEL_TRACES_EXPORTER`, `OTEL_PROPAGATORS`). Only the gRPC protocol
//! is built in.
//!
//! Numbers on spans are recorded as `i64`: `tracing-opentelemetry` turns `u64`s into strings.
//!
//! The SDK exports from its own thread, which has no Tokio reactor for tonic's connection: the
//! exporter is polled inside a one-thread runtime of its own, which also outlives the
//! application's runtime long enough to flush at shutdown.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use opentelemetry::propagation::{Extractor, TextMapCompositePropagator, TextMapPropagator};
use opentelemetry::trace::{TraceContextExt, TracerProvider as _};
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::propagation::{BaggagePropagator, TraceContextPropagator};
use opentelemetry_sdk::trace::{SdkTracerProvider, SpanData, SpanExporter};
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// Whether spans go anywhere: incoming trace context is only worth reading then.
static EXPORTING: AtomicBool = AtomicBool::new(false);

/// The installed span export: the SDK provider and the runtime its exporter runs on.
pub struct TraceExport {
    provider: SdkTracerProvider,
    runtime: Option<tokio::runtime::Runtime>,
    endpoint: String,
}

/// Why traces cannot be exported as configured (traces then stay off, and the start says why).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TraceSetupError {
    /// An OpenTelemetry variable asks for something clerk-index does not do.
    #[error("{variable}={value} is not supported: {supported}")]
    Unsupported {
        variable: String,
        value: String,
        supported: &'static str,
    },
    #[error("{0}")]
    Exporter(String),
}

/// Where spans go, as decided from the flag and the environment.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Destination {
    /// `--otlp-endpoint`.
    Flag(String),
    /// `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` or `OTEL_EXPORTER_OTLP_ENDPOINT`, read by the exporter.
    Environment(String),
}

/// Applies the OpenTelemetry switches: `OTEL_SDK_DISABLED=true` and `OTEL_TRACES_EXPORTER=none`
/// turn traces off whatever else is set; otherwise the flag, then the standard endpoints.
fn destination(
    env: impl Fn(&str) -> Option<String>,
    flag: Option<&str>,
) -> Result<Option<Destination>, TraceSetupError> {
    let set = |name: &str| {
        env(name)
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
    };
    if set("OTEL_SDK_DISABLED").is_some_and(|v| v.eq_ignore_ascii_case("true")) {
        return Ok(None);
    }
    match set("OTEL_TRACES_EXPORTER").as_deref() {
        None | Some("otlp") => {}
        Some("none") => return Ok(None),
        Some(other) => {
            return Err(TraceSetupError::Unsupported {
                variable: "OTEL_TRACES_EXPORTER".into(),
                value: other.into(),
                supported: "only otlp or none",
            });
        }
    }
    for name in [
        "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
        "OTEL_EXPORTER_OTLP_PROTOCOL",
    ] {
        if let Some(protocol) = set(name) {
            if protocol != "grpc" {
                return Err(TraceSetupError::Unsupported {
                    variable: name.into(),
                    value: protocol,
                    supported: "clerk-index exports OTLP over gRPC only (usually port 4317)",
                });
            }
            break;
        }
    }
    if let Some(endpoint) = flag.map(str::trim).filter(|e| !e.is_empty()) {
        return Ok(Some(Destination::Flag(endpoint.to_string())));
    }
    Ok(set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
        .or_else(|| set("OTEL_EXPORTER_OTLP_ENDPOINT"))
        .map(Destination::Environment))
}

impl TraceExport {
    /// Sets up the exporter when the flag or the environment asks for traces; `Ok(None)` when
    /// nothing does.
    pub fn from_env(otlp_endpoint: Option<&str>) -> Result<Option<TraceExport>, TraceSetupError> {
        let Some(destination) = destination(|name| std::env::var(name).ok(), otlp_endpoint)? else {
            return Ok(None);
        };
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("otlp-export")
            .enable_all()
            .build()
            .map_err(|e| {
                TraceSetupError::Exporter(format!("cannot start the span exporter's runtime: {e}"))
            })?;
        let mut builder = opentelemetry_otlp::SpanExporter::builder().with_tonic();
        let endpoint = match destination {
            Destination::Flag(endpoint) => {
                builder = builder.with_endpoint(endpoint.clone());
                endpoint
            }
            Destination::Environment(endpoint) => endpoint,
        };
        let exporter = {
            // tonic's lazily connected channel starts its worker on the current runtime.
            let _in_runtime = runtime.enter();
            builder.build().map_err(|e| {
                TraceSetupError::Exporter(format!("OTLP exporter for {endpoint}: {e}"))
            })?
        };
        let exporter = OnRuntime {
            inner: exporter,
            runtime: runtime.handle().clone(),
        };
        let provider = SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_resource(resource())
            .build();
        opentelemetry::global::set_text_map_propagator(propagator()?);
        EXPORTING.store(true, Ordering::Relaxed);
        Ok(Some(TraceExport {
            provider,
            runtime: Some(runtime),
            endpoint,
        }))
    }

    /// The `tracing` layer that turns spans into OpenTelemetry spans.
    pub fn layer<S>(
        &self,
    ) -> tracing_opentelemetry::OpenTelemetryLayer<S, opentelemetry_sdk::trace::Tracer>
    where
        S: tracing::Subscriber + for<'span> tracing_subscriber::registry::LookupSpan<'span>,
    {
        tracing_opentelemetry::layer().with_tracer(self.provider.tracer("clerk-index"))
    }

    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// Exports what is buffered and stops. Blocks until the exporter is done or times out.
    pub fn shutdown(mut self) {
        EXPORTING.store(false, Ordering::Relaxed);
        if let Err(error) = self.provider.shutdown() {
            tracing::warn!(%error, "OpenTelemetry spans could not all be exported at shutdown");
        }
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_timeout(Duration::from_secs(1));
        }
    }
}

impl Drop for TraceExport {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            // Never blocks, so dropping is safe inside async code too.
            runtime.shutdown_background();
        }
    }
}

/// `service.name` is `clerk-index` unless `OTEL_SERVICE_NAME` or `OTEL_RESOURCE_ATTRIBUTES`
/// names the service; the SDK's detectors read both.
fn resource() -> Resource {
    let named = std::env::var("OTEL_SERVICE_NAME").is_ok_and(|v| !v.trim().is_empty())
        || std::env::var("OTEL_RESOURCE_ATTRIBUTES").is_ok_and(|v| v.contains("service.name="));
    let builder = Resource::builder().with_attribute(opentelemetry::KeyValue::new(
        "service.version",
        env!("CARGO_PKG_VERSION"),
    ));
    if named {
        builder.build()
    } else {
        builder.with_service_name("clerk-index").build()
    }
}

/// `OTEL_PROPAGATORS` (default `tracecontext,baggage`).
fn propagator() -> Result<TextMapCompositePropagator, TraceSetupError> {
    let names = std::env::var("OTEL_PROPAGATORS").unwrap_or_else(|_| "tracecontext,baggage".into());
    let mut propagators: Vec<Box<dyn TextMapPropagator + Send + Sync>> = Vec::new();
    for name in names.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        match name {
            "tracecontext" => propagators.push(Box::new(TraceContextPropagator::new())),
            "baggage" => propagators.push(Box::new(BaggagePropagator::new())),
            "none" => propagators.clear(),
            other => {
                return Err(TraceSetupError::Unsupported {
                    variable: "OTEL_PROPAGATORS".into(),
                    value: other.into(),
                    supported: "tracecontext, baggage or none",
                });
            }
        }
    }
    Ok(TextMapCompositePropagator::new(propagators))
}

/// Makes the trace context in `headers` (W3C `traceparent`/`tracestate`, gRPC metadata or HTTP)
/// the parent of `span`. Does nothing when traces are not exported or the headers carry none.
pub fn set_parent_from_headers(span: &tracing::Span, headers: &http::HeaderMap) {
    if !EXPORTING.load(Ordering::Relaxed) {
        return;
    }
    let context = opentelemetry::global::get_text_map_propagator(|propagator| {
        propagator.extract(&HeaderExtractor(headers))
    });
    if context.span().span_context().is_valid() {
        let _ = span.set_parent(context);
    }
}

struct HeaderExtractor<'a>(&'a http::HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|value| value.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(http::HeaderName::as_str).collect()
    }
}

/// A span exporter whose futures run inside `runtime`'s context, wherever they are polled.
#[derive(Debug)]
struct OnRuntime<E> {
    inner: E,
    runtime: tokio::runtime::Handle,
}

impl<E: SpanExporter> SpanExporter for OnRuntime<E> {
    fn export(&self, batch: Vec<SpanData>) -> impl Future<Output = OTelSdkResult> + Send {
        InContext {
            runtime: self.runtime.clone(),
            inner: self.inner.export(batch),
        }
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        let _in_runtime = self.runtime.enter();
        self.inner.shutdown_with_timeout(timeout)
    }

    fn force_flush(&self) -> OTelSdkResult {
        let _in_runtime = self.runtime.enter();
        self.inner.force_flush()
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

pin_project_lite::pin_project! {
    /// Polls `inner` with `runtime` entered, so timers and sockets it creates belong to it.
    struct InContext<F> {
        runtime: tokio::runtime::Handle,
        #[pin]
        inner: F,
    }
}

impl<F: Future> Future for InContext<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.project();
        let _in_runtime = this.runtime.enter();
        this.inner.poll(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decide(vars: &[(&str, &str)], flag: Option<&str>) -> Result<Option<Destination>, String> {
        destination(
            |name| {
                vars.iter()
                    .find(|(key, _)| *key == name)
                    .map(|(_, value)| value.to_string())
            },
            flag,
        )
        .map_err(|e| e.to_string())
    }

    #[test]
    fn traces_are_off_unless_an_endpoint_is_given() {
        assert_eq!(decide(&[], None), Ok(None));
        assert_eq!(
            decide(&[("OTEL_EXPORTER_OTLP_ENDPOINT", " ")], None),
            Ok(None)
        );
        assert_eq!(
            decide(&[], Some("http://collector:4317")),
            Ok(Some(Destination::Flag("http://collector:4317".into())))
        );
        assert_eq!(
            decide(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://a:4317")], None),
            Ok(Some(Destination::Environment("http://a:4317".into())))
        );
        assert_eq!(
            decide(
                &[
                    ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://a:4317"),
                    ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://t:4317"),
                ],
                None
            ),
            Ok(Some(Destination::Environment("http://t:4317".into())))
        );
    }

    #[test]
    fn the_standard_switches_turn_traces_off() {
        let endpoint = ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://a:4317");
        assert_eq!(
            decide(&[endpoint, ("OTEL_SDK_DISABLED", "TRUE")], None),
            Ok(None)
        );
        assert_eq!(
            decide(&[("OTEL_SDK_DISABLED", "true")], Some("http://b:4317")),
            Ok(None)
        );
        assert_eq!(
            decide(&[endpoint, ("OTEL_TRACES_EXPORTER", "none")], None),
            Ok(None)
        );
        assert!(
            decide(&[endpoint, ("OTEL_SDK_DISABLED", "false")], None)
                .unwrap()
                .is_some()
        );
    }

    #[test]
    fn unsupported_exporters_and_protocols_are_refused_by_name() {
        let endpoint = ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://a:4318");
        let error = decide(
            &[endpoint, ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")],
            None,
        )
        .unwrap_err();
        assert!(
            error.contains("OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf"),
            "{error}"
        );
        // The per-signal variable wins over the general one.
        assert!(
            decide(
                &[
                    endpoint,
                    ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
                    ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "grpc"),
                ],
                None
            )
            .unwrap()
            .is_some()
        );
        let error = decide(&[endpoint, ("OTEL_TRACES_EXPORTER", "zipkin")], None).unwrap_err();
        assert!(error.contains("zipkin"), "{error}");
    }
}
