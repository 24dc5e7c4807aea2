//! A tower layer around the whole gRPC server: one span per call (the parent taken from W3C
//! trace context in the request metadata) and its count and latency by service, method and
//! status code.
//!
//! The status of a call is in its trailers (or, for an immediate error, in the response headers),
//! so the response body is wrapped and the call is recorded when the body ends: a stream is
//! timed to its last message. A body dropped before its end is a call the client cancelled.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::{Arc, LazyLock};
use std::task::{Context, Poll};
use std::time::Instant;

use http_body::{Body, Frame};
use prost::Message;
use prost_types::FileDescriptorSet;
use tower::{Layer, Service};
use tracing::Instrument;
use tracing::field::Empty;

use crate::telemetry::metrics::Metrics;
use crate::telemetry::otel;

/// Every `/package.Service/Method` path the server answers, read from the protos' own file
/// descriptors (ours, health, reflection): the only method labels a call can get. Anything else
/// is `unknown`, so no caller, with or without a key, can grow the metric labels with made-up
/// paths (the key check answers before routing, so an unknown method never reaches UNIMPLEMENTED).
static KNOWN_METHODS: LazyLock<HashMap<String, (String, String)>> = LazyLock::new(|| {
    let sets = [
        crate::api::proto::FILE_DESCRIPTOR_SET,
        tonic_health::pb::FILE_DESCRIPTOR_SET,
        tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET,
        tonic_reflection::pb::v1alpha::FILE_DESCRIPTOR_SET,
    ];
    let mut known = HashMap::new();
    for bytes in sets {
        let set = FileDescriptorSet::decode(bytes).expect("compiled-in descriptors decode");
        for file in set.file {
            let package = file.package().to_string();
            for service in file.service {
                let service_name = format!("{package}.{}", service.name());
                for method in service.method {
                    known.insert(
                        format!("/{service_name}/{}", method.name()),
                        (service_name.clone(), method.name().to_string()),
                    );
                }
            }
        }
    }
    known
});

/// The protocol a call came in by, when it was not plain gRPC: the HTTP port's bridge marks the
/// calls it hands over, and the span names it (`rpc.system`).
#[derive(Clone, Copy, Debug)]
pub enum RpcSystem {
    /// The Connect protocol (JSON or protobuf over HTTP/1.1).
    Connect,
    /// gRPC-Web.
    GrpcWeb,
}

impl RpcSystem {
    /// The OpenTelemetry `rpc.system` of a call made by `request`.
    fn of<B>(request: &http::Request<B>) -> &'static str {
        let web = request
            .headers()
            .get(http::header::CONTENT_TYPE)
            .is_some_and(|value| value.as_bytes().starts_with(b"application/grpc-web"));
        match request.extensions().get::<RpcSystem>() {
            Some(RpcSystem::Connect) => "connect_rpc",
            Some(RpcSystem::GrpcWeb) => "grpc_web",
            None if web => "grpc_web",
            None => "grpc",
        }
    }
}

/// Adds [`RpcTelemetryService`] to the gRPC server.
#[derive(Clone)]
pub struct RpcTelemetry {
    metrics: Arc<Metrics>,
}

impl RpcTelemetry {
    pub fn new(metrics: Arc<Metrics>) -> Self {
        RpcTelemetry { metrics }
    }
}

impl<S> Layer<S> for RpcTelemetry {
    type Service = RpcTelemetryService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RpcTelemetryService {
            inner,
            metrics: self.metrics.clone(),
        }
    }
}

#[derive(Clone)]
pub struct RpcTelemetryService<S> {
    inner: S,
    metrics: Arc<Metrics>,
}

/// `/package.Service/Method` -> (`package.Service`, `Method`) for the protos' own methods,
/// `("unknown", "unknown")` for anything else.
fn service_and_method(path: &str) -> (&'static str, &'static str) {
    KNOWN_METHODS
        .get(path)
        .map_or(("unknown", "unknown"), |(service, method)| {
            (service.as_str(), method.as_str())
        })
}

impl<S, ReqBody, ResBody> Service<http::Request<ReqBody>> for RpcTelemetryService<S>
where
    S: Service<http::Request<ReqBody>, Response = http::Response<ResBody>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    ResBody: Body + Send + 'static,
{
    type Response = http::Response<RecordedBody<ResBody>>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<ReqBody>) -> Self::Future {
        let (service, method) = service_and_method(request.uri().path());
        let span = tracing::info_span!(
            "grpc",
            otel.name = %format_args!("{service}/{method}"),
            otel.kind = "server",
            otel.status_code = Empty,
            rpc.system = RpcSystem::of(&request),
            rpc.service = %service,
            rpc.method = %method,
            rpc.grpc.status_code = Empty,
            clerk_index.caller = Empty,
            clerk_index.result_count = Empty,
        );
        otel::set_parent_from_headers(&span, request.headers());
        let call = Call {
            metrics: self.metrics.clone(),
            service,
            method,
            started: Instant::now(),
            span: span.clone(),
        };
        // Interceptors run when the call is made, handlers when it is polled: both in the span.
        let response = span.in_scope(|| self.inner.call(request));
        Box::pin(
            async move {
                let response = response.await?;
                // An immediate error ("trailers-only") carries its status in the headers.
                let status = response
                    .headers()
                    .get("grpc-status")
                    .and_then(|value| value.to_str().ok())
                    .and_then(|value| value.parse::<i32>().ok());
                Ok(response.map(|body| RecordedBody {
                    inner: body,
                    call: Some(call),
                    status,
                }))
            }
            .instrument(span),
        )
    }
}

/// One call, recorded once when its response ends.
struct Call {
    metrics: Arc<Metrics>,
    service: &'static str,
    method: &'static str,
    started: Instant,
    span: tracing::Span,
}

impl Call {
    fn finish(self, code: tonic::Code) {
        let (service, method) = if code == tonic::Code::Unimplemented {
            ("unknown", "unknown")
        } else {
            (self.service, self.method)
        };
        let name = code_name(code);
        self.metrics
            .record_rpc(service, method, name, self.started.elapsed());
        self.span.record("rpc.grpc.status_code", code as i32);
        // OpenTelemetry's rule for gRPC servers: these codes are the server's fault.
        if matches!(
            code,
            tonic::Code::Unknown
                | tonic::Code::DeadlineExceeded
                | tonic::Code::Unimplemented
                | tonic::Code::Internal
                | tonic::Code::Unavailable
                | tonic::Code::DataLoss
        ) {
            self.span.record("otel.status_code", "ERROR");
        }
    }
}

/// The canonical upper-case name, as gRPC tooling prints it.
fn code_name(code: tonic::Code) -> &'static str {
    use tonic::Code::*;
    match code {
        Ok => "OK",
        Cancelled => "CANCELLED",
        Unknown => "UNKNOWN",
        InvalidArgument => "INVALID_ARGUMENT",
        DeadlineExceeded => "DEADLINE_EXCEEDED",
        NotFound => "NOT_FOUND",
        AlreadyExists => "ALREADY_EXISTS",
        PermissionDenied => "PERMISSION_DENIED",
        ResourceExhausted => "RESOURCE_EXHAUSTED",
        FailedPrecondition => "FAILED_PRECONDITION",
        Aborted => "ABORTED",
        OutOfRange => "OUT_OF_RANGE",
        Unimplemented => "UNIMPLEMENTED",
        Internal => "INTERNAL",
        Unavailable => "UNAVAILABLE",
        DataLoss => "DATA_LOSS",
        Unauthenticated => "UNAUTHENTICATED",
    }
}

pin_project_lite::pin_project! {
    /// A response body that records its call when it ends (or is dropped unfinished).
    pub struct RecordedBody<B> {
        #[pin]
        inner: B,
        call: Option<Call>,
        status: Option<i32>,
    }

    impl<B> PinnedDrop for RecordedBody<B> {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            if let Some(call) = this.call.take() {
                let code = match *this.status {
                    Some(status) => tonic::Code::from_i32(status),
                    None => tonic::Code::Cancelled,
                };
                call.finish(code);
            }
        }
    }
}

impl<B: Body> Body for RecordedBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.project();
        let frame = std::task::ready!(this.inner.poll_frame(cx));
        match &frame {
            Some(Ok(frame)) => {
                if let Some(status) = frame
                    .trailers_ref()
                    .and_then(|trailers| trailers.get("grpc-status"))
                    .and_then(|value| value.to_str().ok())
                    .and_then(|value| value.parse::<i32>().ok())
                {
                    *this.status = Some(status);
                }
            }
            Some(Err(_)) => {
                this.status.get_or_insert(tonic::Code::Unknown as i32);
            }
            None => {
                if let Some(call) = this.call.take() {
                    call.finish(tonic::Code::from_i32(this.status.unwrap_or(0)));
                }
            }
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_known_services_keep_their_method_names() {
        assert_eq!(
            service_and_method("/clerkindex.v1.UserIndex/SearchUsers"),
            ("clerkindex.v1.UserIndex", "SearchUsers")
        );
        assert_eq!(
            service_and_method("/grpc.health.v1.Health/Check"),
            ("grpc.health.v1.Health", "Check")
        );
        assert_eq!(
            service_and_method("/grpc.reflection.v1.ServerReflection/ServerReflectionInfo"),
            (
                "grpc.reflection.v1.ServerReflection",
                "ServerReflectionInfo"
            )
        );
        assert_eq!(
            service_and_method("/clerkindex.v1.Segments/WatchSegment"),
            ("clerkindex.v1.Segments", "WatchSegment")
        );
        for path in [
            "/made.up.Service/Method",
            // A made-up method of a real service is as unknown as a made-up service.
            "/clerkindex.v1.UserIndex/MadeUp",
            "/grpc.health.v1.Health/Nope",
            "//clerkindex.v1.UserIndex/SearchUsers",
            "/",
            "",
            "/clerkindex.v1.UserIndex/",
            "/clerkindex.v1.UserIndex/a/b",
        ] {
            assert_eq!(service_and_method(path), ("unknown", "unknown"), "{path}");
        }
    }
}
