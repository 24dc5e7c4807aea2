//! The JSON/HTTP API on the HTTP port: every method of the API in the Connect protocol (unary
//! calls as plain JSON POSTs, server streams as Connect streams), and gRPC-Web. Nothing here
//! implements a method: each call is re-framed as a gRPC request and handed to the very services
//! the gRPC port serves, behind the same key check and telemetry, and their answer re-framed
//! for the caller.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use bytes::{Bytes, BytesMut};
use tokio::time::Instant;
use tonic::transport::server::TcpConnectInfo;
use tower::ServiceExt;
use tower::util::BoxCloneSyncService;

use super::connect_error::{error_json, http_status};
use super::connect_methods::{ApiMethod, api_method};
use super::connect_stream::{self as stream, COMPRESSED, Convert, Relay};
use super::telemetry::RpcSystem;

/// The gRPC services as one tower service, behind their telemetry layer: what the gRPC port
/// serves, callable in-process.
pub type ApiService = BoxCloneSyncService<
    http::Request<tonic::body::Body>,
    http::Response<tonic::body::Body>,
    Infallible,
>;

/// The largest request body accepted, in bytes: the gRPC port's message limit.
pub const MAX_REQUEST_BYTES: usize = 4 << 20;

/// What the bridge needs: the services, the largest request body, the heartbeat period.
#[derive(Clone)]
pub struct ApiBridge {
    api: ApiService,
    max_request_bytes: usize,
    heartbeat: Duration,
}

impl ApiBridge {
    /// Calls `api`; a stream quiet for `heartbeat` sends an empty message.
    pub fn new(api: ApiService, heartbeat: Duration) -> ApiBridge {
        ApiBridge {
            api,
            max_request_bytes: MAX_REQUEST_BYTES,
            heartbeat,
        }
    }
}

impl ApiBridge {
    /// Calls the method at `path` with the protobuf `message` and the caller's `headers`
    /// (its key among them), as a gRPC call to the services.
    pub(super) async fn call(
        &self,
        path: &str,
        headers: &HeaderMap,
        message: &[u8],
        peer: Option<SocketAddr>,
    ) -> http::Response<tonic::body::Body> {
        let request = grpc_request(path, headers, message, peer);
        let Ok(response) = self.api.clone().oneshot(request).await;
        response
    }
}

/// `POST /clerkindex.v1.<Service>/<Method>` in the Connect protocol or gRPC-Web.
pub(super) fn api_router(bridge: ApiBridge) -> Router {
    Router::new()
        .route("/{service}/{method}", post(call))
        .with_state(bridge)
}

/// The two encodings of a message the Connect protocol offers.
#[derive(Clone, Copy, PartialEq)]
enum Codec {
    Json,
    Proto,
}

impl Codec {
    /// The codec `content_type` names for a unary call or a stream (`application/connect+…`).
    fn of(content_type: &str, streaming: bool) -> Option<Codec> {
        let essence = content_type.split(';').next().unwrap_or_default().trim();
        let name = match streaming {
            true => essence.strip_prefix("application/connect+")?,
            false => essence.strip_prefix("application/")?,
        };
        match name.to_ascii_lowercase().as_str() {
            "json" => Some(Codec::Json),
            "proto" => Some(Codec::Proto),
            _ => None,
        }
    }

    fn content_type(self, streaming: bool) -> &'static str {
        match (self, streaming) {
            (Codec::Json, false) => "application/json",
            (Codec::Proto, false) => "application/proto",
            (Codec::Json, true) => "application/connect+json",
            (Codec::Proto, true) => "application/connect+proto",
        }
    }
}

async fn call(State(bridge): State<ApiBridge>, request: Request) -> Response {
    let peer = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(peer)| *peer);
    let content_type = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default()
        .to_string();
    if content_type.starts_with("application/grpc-web") {
        return grpc_web(bridge, peer, request).await;
    }
    let Some(method) = api_method(request.uri().path()) else {
        let status = tonic::Status::unimplemented(format!(
            "no method {} (the API's methods are /clerkindex.v1.<Service>/<Method>)",
            request.uri().path()
        ));
        return error_response(StatusCode::NOT_FOUND, &status, &HeaderMap::new());
    };
    let Some(codec) = Codec::of(&content_type, method.server_streaming) else {
        return unsupported_media_type(method);
    };
    match connect(&bridge, method, codec, peer, request).await {
        Ok(response) | Err(response) => response,
    }
}

async fn connect(
    bridge: &ApiBridge,
    method: &'static ApiMethod,
    codec: Codec,
    peer: Option<SocketAddr>,
    request: Request,
) -> Result<Response, Response> {
    let invalid = |message: String| {
        let status = tonic::Status::invalid_argument(message);
        error_response(StatusCode::BAD_REQUEST, &status, &HeaderMap::new())
    };
    let (parts, body) = request.into_parts();
    if let Some(version) = parts.headers.get("connect-protocol-version")
        && version != "1"
    {
        return Err(invalid("Connect-Protocol-Version must be 1".into()));
    }
    let deadline = timeout(&parts.headers)
        .map_err(invalid)?
        .map(|timeout| Instant::now() + timeout);
    let encoding = ["content-encoding", "connect-content-encoding"]
        .iter()
        .filter_map(|name| parts.headers.get(*name))
        .find(|value| *value != "identity");
    if encoding.is_some() {
        let status = tonic::Status::unimplemented("compressed requests are not accepted");
        return Err(error_response(
            StatusCode::NOT_IMPLEMENTED,
            &status,
            &HeaderMap::new(),
        ));
    }
    let body = axum::body::to_bytes(body, bridge.max_request_bytes)
        .await
        .map_err(|_| {
            let status = tonic::Status::resource_exhausted(format!(
                "the request is larger than {} bytes",
                bridge.max_request_bytes
            ));
            error_response(StatusCode::PAYLOAD_TOO_LARGE, &status, &HeaderMap::new())
        })?;
    let message = match method.server_streaming {
        true => single_envelope(body).map_err(invalid)?,
        false => body,
    };
    let encoded = match codec {
        Codec::Proto => message.to_vec(),
        Codec::Json => (method.request_from_json)(&message)
            .map_err(|e| invalid(format!("the request is not this method's JSON: {e}")))?,
    };
    let called = bridge.call(method.path, &parts.headers, &encoded, peer);
    let response = match deadline {
        Some(deadline) => match tokio::time::timeout_at(deadline, called).await {
            Ok(response) => response,
            Err(_) => {
                let status = tonic::Status::deadline_exceeded("the call's deadline passed");
                return Err(error_response(
                    http_status(status.code()),
                    &status,
                    &HeaderMap::new(),
                ));
            }
        },
        None => called.await,
    };
    let convert: Convert = match codec {
        Codec::Json => Some(method.response_to_json),
        Codec::Proto => None,
    };
    let content_type = codec.content_type(method.server_streaming);
    match method.server_streaming {
        true => Ok(streamed(
            response,
            convert,
            content_type,
            bridge.heartbeat,
            deadline,
        )),
        false => unary(response, convert, content_type).await,
    }
}

/// The one message of a stream request's body.
fn single_envelope(body: Bytes) -> Result<Bytes, String> {
    let mut buffer = BytesMut::from(&body[..]);
    match stream::take_envelope(&mut buffer) {
        Some((flags, _)) if flags & COMPRESSED != 0 => {
            Err("compressed messages are not accepted".into())
        }
        Some((_, message)) if buffer.is_empty() => Ok(message),
        _ => Err("a stream request's body is one enveloped message".into()),
    }
}

/// `Connect-Timeout-Ms`, if given.
fn timeout(headers: &HeaderMap) -> Result<Option<Duration>, String> {
    let Some(value) = headers.get("connect-timeout-ms") else {
        return Ok(None);
    };
    let millis = value
        .to_str()
        .ok()
        .filter(|text| text.len() <= 10)
        .and_then(|text| text.parse::<u64>().ok())
        .ok_or("Connect-Timeout-Ms must be a number of milliseconds (at most 10 digits)")?;
    Ok(Some(Duration::from_millis(millis)))
}

/// Headers that belong to HTTP or to the Connect protocol, not to the call's metadata.
fn is_protocol_header(name: &str) -> bool {
    matches!(
        name,
        "host"
            | "connection"
            | "keep-alive"
            | "content-type"
            | "content-length"
            | "content-encoding"
            | "accept"
            | "accept-encoding"
            | "te"
            | "trailer"
            | "transfer-encoding"
            | "upgrade"
            | "cookie"
    ) || name.starts_with("connect-")
        || name.starts_with("grpc-")
}

/// The gRPC request for a call of `path` with the encoded `message` and the caller's metadata.
fn grpc_request(
    path: &str,
    headers: &HeaderMap,
    message: &[u8],
    peer: Option<SocketAddr>,
) -> http::Request<tonic::body::Body> {
    let mut request = http::Request::new(tonic::body::Body::new(http_body_util::Full::new(
        stream::envelope(0, message),
    )));
    *request.method_mut() = http::Method::POST;
    *request.uri_mut() = path.parse().expect("method paths are URIs");
    *request.version_mut() = http::Version::HTTP_2;
    let grpc_headers = request.headers_mut();
    for (name, value) in headers {
        if !is_protocol_header(name.as_str()) {
            grpc_headers.append(name, value.clone());
        }
    }
    grpc_headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/grpc"),
    );
    grpc_headers.insert(header::TE, HeaderValue::from_static("trailers"));
    let extensions = request.extensions_mut();
    extensions.insert(TcpConnectInfo {
        local_addr: None,
        remote_addr: peer,
    });
    extensions.insert(RpcSystem::Connect);
    request
}

/// A unary call's answer: its message, or its error with its HTTP status.
async fn unary(
    response: http::Response<tonic::body::Body>,
    convert: Convert,
    content_type: &'static str,
) -> Result<Response, Response> {
    let (parts, body) = response.into_parts();
    let (messages, status, trailers) = stream::collect(&parts.headers, body).await;
    let mut headers = HeaderMap::new();
    for (name, value) in stream::metadata(&parts.headers) {
        headers.append(name, value.clone());
    }
    for (name, value) in stream::metadata(&trailers) {
        if let Ok(name) = http::HeaderName::try_from(format!("trailer-{name}")) {
            headers.append(name, value.clone());
        }
    }
    if status.code() != tonic::Code::Ok {
        return Err(error_response(
            http_status(status.code()),
            &status,
            &headers,
        ));
    }
    let [message] = &messages[..] else {
        let status = tonic::Status::internal("a unary call answered with other than one message");
        return Err(error_response(
            http_status(status.code()),
            &status,
            &headers,
        ));
    };
    let body = match convert {
        None => message.clone(),
        Some(convert) => Bytes::from(convert(message).map_err(|e| {
            let status = tonic::Status::internal(format!("the response did not convert: {e}"));
            error_response(http_status(status.code()), &status, &headers)
        })?),
    };
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    Ok((StatusCode::OK, headers, body).into_response())
}

/// A server stream's answer: 200 at once, then the relayed messages and the end of stream.
fn streamed(
    response: http::Response<tonic::body::Body>,
    convert: Convert,
    content_type: &'static str,
    heartbeat: Duration,
    deadline: Option<Instant>,
) -> Response {
    let (parts, body) = response.into_parts();
    let mut headers = HeaderMap::new();
    for (name, value) in stream::metadata(&parts.headers) {
        headers.append(name, value.clone());
    }
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    // An immediate error: the stream is its end message alone.
    let body = match stream::status_of(&parts.headers) {
        Some(status) => Body::from(stream::end_of_stream(&status, &HeaderMap::new())),
        None => Relay::new(body, convert, heartbeat, deadline).into_body(),
    };
    (StatusCode::OK, headers, body).into_response()
}

/// A unary error in Connect's JSON shape.
pub(super) fn error_response(
    http: StatusCode,
    status: &tonic::Status,
    headers: &HeaderMap,
) -> Response {
    let mut headers = headers.clone();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    (http, headers, axum::Json(error_json(status))).into_response()
}

fn unsupported_media_type(method: &ApiMethod) -> Response {
    let accepted = match method.server_streaming {
        true => "application/connect+json, application/connect+proto",
        false => "application/json, application/proto",
    };
    let status = tonic::Status::invalid_argument(format!(
        "{} takes Content-Type {accepted} (or application/grpc-web)",
        method.path
    ));
    let mut response = error_response(
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        &status,
        &HeaderMap::new(),
    );
    if let Ok(value) = HeaderValue::from_str(accepted) {
        response.headers_mut().insert("accept-post", value);
    }
    response
}

/// A gRPC-Web call, translated by tonic-web, to the same services.
async fn grpc_web(bridge: ApiBridge, peer: Option<SocketAddr>, mut request: Request) -> Response {
    let extensions = request.extensions_mut();
    extensions.insert(TcpConnectInfo {
        local_addr: None,
        remote_addr: peer,
    });
    extensions.insert(RpcSystem::GrpcWeb);
    let web = tonic_web::GrpcWebLayer::new();
    let service = tower::Layer::layer(&web, bridge.api);
    let Ok(response) = service.oneshot(request).await;
    response.map(Body::new)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_types_name_the_codec_for_the_method_kind() {
        assert!(Codec::of("application/json", false) == Some(Codec::Json));
        assert!(Codec::of("application/json; charset=utf-8", false) == Some(Codec::Json));
        assert!(Codec::of("application/proto", false) == Some(Codec::Proto));
        assert!(Codec::of("application/connect+json", true) == Some(Codec::Json));
        assert!(Codec::of("application/json", true).is_none());
        assert!(Codec::of("application/connect+json", false).is_none());
        assert!(Codec::of("text/plain", false).is_none());
    }

    #[test]
    fn a_stream_request_is_exactly_one_uncompressed_envelope() {
        let one = stream::envelope(0, b"{}");
        assert_eq!(
            single_envelope(one.clone()).unwrap(),
            Bytes::from_static(b"{}")
        );
        let two = [one.clone(), one].concat();
        assert!(single_envelope(Bytes::from(two)).is_err());
        assert!(single_envelope(stream::envelope(COMPRESSED, b"x")).is_err());
        assert!(single_envelope(Bytes::from_static(b"{}")).is_err());
    }

    #[test]
    fn protocol_headers_stay_out_of_the_metadata() {
        for name in [
            "content-type",
            "connect-timeout-ms",
            "grpc-timeout",
            "cookie",
            "host",
        ] {
            assert!(is_protocol_header(name), "{name}");
        }
        for name in ["authorization", "traceparent", "x-request-id"] {
            assert!(!is_protocol_header(name), "{name}");
        }
    }

    #[test]
    fn timeouts_are_milliseconds_of_at_most_ten_digits() {
        let mut headers = HeaderMap::new();
        assert_eq!(timeout(&headers), Ok(None));
        headers.insert("connect-timeout-ms", "1500".parse().unwrap());
        assert_eq!(timeout(&headers), Ok(Some(Duration::from_millis(1500))));
        headers.insert("connect-timeout-ms", "12345678901".parse().unwrap());
        assert!(timeout(&headers).is_err());
        headers.insert("connect-timeout-ms", "-1".parse().unwrap());
        assert!(timeout(&headers).is_err());
    }
}
