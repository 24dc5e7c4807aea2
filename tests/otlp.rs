//! OpenTelemetry traces reach an OTLP/gRPC collector: the real binary, configured only through
//! the standard `OTEL_*` variables, exports to a small in-process collector. A search and a
//! webhook carrying W3C trace context become server spans under the caller's span, with the
//! expected attributes; and spans still buffered at SIGTERM are flushed before the process exits.

mod common;

use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use clerk_index::api::proto::SearchUsersRequest;
use clerk_index::api::proto::user_index_client::UserIndexClient;
use clerk_index::clerk::fake::{FakeClerkConfig, Population};
use common::{RunningFakeClerk, WEBHOOK_SECRET, event, expression, free_port, svix_headers};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::trace::v1::Span;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tokio_util::sync::CancellationToken;

/// The collector: keeps every export request.
#[derive(Clone, Default)]
struct Collector {
    received: Arc<Mutex<Vec<ExportTraceServiceRequest>>>,
}

#[tonic::async_trait]
impl TraceService for Collector {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        self.received.lock().unwrap().push(request.into_inner());
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

impl Collector {
    /// Every span received, with its resource's `service.name`.
    fn spans(&self) -> Vec<(String, Span)> {
        let received = self.received.lock().unwrap();
        let mut spans = Vec::new();
        for request in received.iter() {
            for resource_spans in &request.resource_spans {
                let service = resource_spans
                    .resource
                    .as_ref()
                    .and_then(|r| r.attributes.iter().find(|a| a.key == "service.name"))
                    .and_then(|a| a.value.as_ref()?.value.clone());
                let service = match service {
                    Some(Value::StringValue(name)) => name,
                    other => panic!("no service.name: {other:?}"),
                };
                for scope in &resource_spans.scope_spans {
                    for span in &scope.spans {
                        spans.push((service.clone(), span.clone()));
                    }
                }
            }
        }
        spans
    }
}

fn attribute(span: &Span, key: &str) -> Option<Value> {
    span.attributes
        .iter()
        .find(|a| a.key == key)
        .and_then(|a| a.value.as_ref()?.value.clone())
}

fn text(value: &str) -> Option<Value> {
    Some(Value::StringValue(value.to_string()))
}

fn hex(bytes: &str) -> Vec<u8> {
    (0..bytes.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&bytes[i..i + 2], 16).unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_search_and_a_webhook_are_traced_under_their_callers_spans() {
    let collector = Collector::default();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let collector_url = format!("http://{}", listener.local_addr().unwrap());
    let stop_collector = CancellationToken::new();
    let collector_task = tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(TraceServiceServer::new(collector.clone()))
            .serve_with_incoming_shutdown(
                TcpListenerStream::new(listener),
                stop_collector.clone().cancelled_owned(),
            ),
    );

    let fake = RunningFakeClerk::start(FakeClerkConfig::new(Population::new(300))).await;
    let dir = tempfile::tempdir().unwrap();
    let (grpc, http) = (free_port(), free_port());
    let (api_key, api_key_hash) = clerk_index::auth::generate_key();
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_clerk-index"))
        .args(["serve", "--grpc-addr", &format!("127.0.0.1:{grpc}")])
        .args(["--http-addr", &format!("127.0.0.1:{http}")])
        .args(["--clerk-api-url", &fake.url, "--writer-memory-mb", "50"])
        .arg("--data-dir")
        .arg(dir.path())
        .env("CLERK_SECRET_KEY", "sk_test_fake_clerk")
        .env("CLERK_WEBHOOK_SIGNING_SECRET", WEBHOOK_SECRET)
        .env(
            "CLERK_INDEX_API_KEYS",
            format!("segment-job public {api_key_hash}"),
        )
        .env_remove("CLERK_INDEX_ALLOW_UNAUTHENTICATED")
        .env_remove("CLERK_INDEX_OTLP_ENDPOINT")
        .env_remove("OTEL_SDK_DISABLED")
        .env_remove("OTEL_TRACES_EXPORTER")
        .env_remove("OTEL_EXPORTER_OTLP_PROTOCOL")
        .env_remove("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", &collector_url)
        .env("OTEL_SERVICE_NAME", "clerk-index-under-test")
        // Nothing is exported on a timer during the test: what arrives, arrives at shutdown.
        .env("OTEL_BSP_SCHEDULE_DELAY", "600000")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let http_url = format!("http://127.0.0.1:{http}");
    common::wait_ready(&http_url).await;

    // A search made inside the caller's trace.
    let (search_trace, search_parent) = ("4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7");
    let channel = tonic::transport::Channel::from_shared(format!("http://127.0.0.1:{grpc}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut client = UserIndexClient::new(common::with_header(
        channel,
        Some(format!("Bearer {api_key}")),
    ));
    let mut request = tonic::Request::new(SearchUsersRequest {
        filter: expression("public_metadata.plan_type = \"pro\""),
        page_size: 5,
        ..Default::default()
    });
    request.metadata_mut().insert(
        "traceparent",
        format!("00-{search_trace}-{search_parent}-01")
            .parse()
            .unwrap(),
    );
    let found = client.search_users(request).await.unwrap().into_inner();
    assert_eq!(found.users.len(), 5);

    // A webhook delivered by a proxy that traces its requests.
    let (hook_trace, hook_parent) = ("0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331");
    let newcomer = Population {
        seed: 5,
        ..Population::new(1)
    }
    .user(0);
    let body = serde_json::to_vec(&event("user.created", newcomer, 1_790_000_000_000)).unwrap();
    let mut delivery = reqwest::Client::new()
        .post(format!("{http_url}/webhooks/clerk"))
        .header("traceparent", format!("00-{hook_trace}-{hook_parent}-01"))
        .body(body.clone());
    for (name, value) in svix_headers("msg_traced", &body) {
        delivery = delivery.header(name, value);
    }
    assert_eq!(delivery.send().await.unwrap().status(), 200);

    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        collector.spans().is_empty(),
        "spans were exported before shutdown; the flush at exit is not what is tested"
    );
    common::terminate(&child);
    let status = tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .expect("the process did not stop")
        .unwrap();
    assert!(status.success(), "{status:?}");
    stop_collector.cancel();
    collector_task.await.unwrap().unwrap();

    let spans = collector.spans();
    assert!(
        spans
            .iter()
            .all(|(service, _)| service == "clerk-index-under-test"),
        "OTEL_SERVICE_NAME was not honoured"
    );
    let named = |name: &str| -> Vec<&Span> {
        spans
            .iter()
            .map(|(_, span)| span)
            .filter(|span| span.name == name)
            .collect()
    };
    let names: Vec<&str> = spans.iter().map(|(_, s)| s.name.as_str()).collect();

    let search = named("clerkindex.v1.UserIndex/SearchUsers");
    assert_eq!(search.len(), 1, "{names:?}");
    let search = search[0];
    assert_eq!(search.trace_id, hex(search_trace));
    assert_eq!(search.parent_span_id, hex(search_parent));
    assert_eq!(search.kind, SpanKind::Server as i32);
    assert_eq!(attribute(search, "rpc.system"), text("grpc"));
    assert_eq!(
        attribute(search, "rpc.service"),
        text("clerkindex.v1.UserIndex")
    );
    assert_eq!(attribute(search, "rpc.method"), text("SearchUsers"));
    assert_eq!(
        attribute(search, "rpc.grpc.status_code"),
        Some(Value::IntValue(0))
    );
    assert_eq!(attribute(search, "clerk_index.caller"), text("segment-job"));
    assert_eq!(
        attribute(search, "clerk_index.result_count"),
        Some(Value::IntValue(5))
    );
    let query = named("index.query");
    assert!(
        query
            .iter()
            .any(|q| q.trace_id == search.trace_id && q.parent_span_id == search.span_id),
        "no index.query span under the search: {names:?}"
    );
    // Neither the filter's values nor the key appear anywhere in what was exported.
    let exported = format!("{:?}", collector.received.lock().unwrap());
    assert!(!exported.contains(&api_key));

    let webhook = named("POST /webhooks/clerk");
    assert_eq!(webhook.len(), 1, "{names:?}");
    let webhook = webhook[0];
    assert_eq!(webhook.trace_id, hex(hook_trace));
    assert_eq!(webhook.parent_span_id, hex(hook_parent));
    assert_eq!(webhook.kind, SpanKind::Server as i32);
    assert_eq!(attribute(webhook, "clerk.outcome"), text("applied"));
    assert_eq!(attribute(webhook, "svix.id"), text("msg_traced"));
    assert_eq!(
        attribute(webhook, "http.response.status_code"),
        Some(Value::IntValue(200))
    );

    // The background work has spans of its own.
    for name in ["index.commit", "backfill.page", "GET /v1/users"] {
        assert!(!named(name).is_empty(), "no {name} span: {names:?}");
    }
    let clerk_calls = named("GET /v1/users");
    assert!(
        clerk_calls
            .iter()
            .all(|call| call.kind == SpanKind::Client as i32)
    );
    // Every page's request is under its page (the first requests find the range to walk).
    let pages = named("backfill.page");
    for page in &pages {
        assert!(
            clerk_calls
                .iter()
                .any(|call| call.parent_span_id == page.span_id),
            "a backfill page without its Clerk request"
        );
    }
}
