//! The JSON/HTTP API on the HTTP port over real loopback HTTP: unary calls and server streams in
//! the Connect protocol, its error shape with the `google.rpc` details, the same key check and
//! scopes as gRPC, heartbeats on quiet streams, gRPC-Web on both ports (CORS on the gRPC port
//! only for configured origins), the console's page and headers, its single-use export tickets,
//! and the flag that turns the console off.

mod common;

use std::path::Path;
use std::time::Duration;

use bytes::{Buf, BufMut, BytesMut};
use clerk_index::clerk::fake::{FakeClerkConfig, Population};
use common::{RunningFakeClerk, TestOptions, TestServer};
use prost::Message;
use serde_json::{Value, json};

const USERS: usize = 1_200;

struct Keys {
    everything: String,
    public: String,
}

async fn serve(
    dir: &Path,
    change: impl FnOnce(&mut TestOptions),
) -> (RunningFakeClerk, TestServer, Keys) {
    let fake = RunningFakeClerk::start(FakeClerkConfig::new(Population::new(USERS))).await;
    let mut options = TestOptions::new(&fake.url);
    let [everything, public]: [String; 2] = common::with_keys(
        &mut options,
        &[
            ("all", "public,private,unsafe,segments,write,admin"),
            ("reader", "public"),
        ],
    )
    .try_into()
    .unwrap();
    change(&mut options);
    let server = TestServer::start(dir, options).await;
    server.wait_serving().await;
    (fake, server, Keys { everything, public })
}

/// The number of users matching `filter`, asked over gRPC.
async fn grpc_count(server: &TestServer, key: &str, filter: &str) -> u64 {
    let channel = common::with_header(server.channel().await, Some(format!("Bearer {key}")));
    let mut client = clerk_index::api::proto::user_index_client::UserIndexClient::new(channel);
    let request = clerk_index::api::proto::CountUsersRequest {
        filter: common::expression(filter),
        ..Default::default()
    };
    client
        .count_users(request)
        .await
        .unwrap()
        .into_inner()
        .count
}

/// A unary Connect call: (HTTP status, JSON body).
async fn call(server: &TestServer, key: Option<&str>, method: &str, body: Value) -> (u16, Value) {
    let mut request = reqwest::Client::new()
        .post(format!("{}/clerkindex.v1.{method}", server.http_url))
        .header("content-type", "application/json")
        .body(body.to_string());
    if let Some(key) = key {
        request = request.bearer_auth(key);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

fn envelope(flags: u8, message: &[u8]) -> Vec<u8> {
    let mut framed = BytesMut::new();
    framed.put_u8(flags);
    framed.put_u32(message.len() as u32);
    framed.put_slice(message);
    framed.to_vec()
}

/// Every envelope of a whole body: (flags, message).
fn envelopes(mut body: &[u8]) -> Vec<(u8, Vec<u8>)> {
    let mut out = Vec::new();
    while body.len() >= 5 {
        let flags = body.get_u8();
        let length = body.get_u32() as usize;
        out.push((flags, body[..length].to_vec()));
        body.advance(length);
    }
    assert!(body.is_empty(), "a partial envelope at the end");
    out
}

/// A Connect server stream read to its end: (messages, end-of-stream JSON).
async fn stream(server: &TestServer, key: &str, method: &str, body: Value) -> (Vec<Value>, Value) {
    let response = reqwest::Client::new()
        .post(format!("{}/clerkindex.v1.{method}", server.http_url))
        .header("content-type", "application/connect+json")
        .bearer_auth(key)
        .body(envelope(0, body.to_string().as_bytes()))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["content-type"],
        "application/connect+json"
    );
    let framed = envelopes(&response.bytes().await.unwrap());
    let (end, messages) = framed.split_last().expect("an end-of-stream message");
    assert_eq!(end.0, 0b10, "the last envelope ends the stream");
    let messages = messages
        .iter()
        .map(|(flags, message)| {
            assert_eq!(*flags, 0);
            serde_json::from_slice(message).unwrap()
        })
        .collect();
    (messages, serde_json::from_slice(&end.1).unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_kind_of_call_works_in_json_with_the_same_answers_and_errors_as_grpc() {
    let dir = tempfile::tempdir().unwrap();
    let (_fake, server, keys) = serve(dir.path(), |_| {}).await;
    let filter = r#"public.membership_tier = "gold""#;
    let key = Some(keys.everything.as_str());

    // Unary: the count equals gRPC's, 64-bit integers as strings (proto3 JSON).
    let (status, counted) = call(
        &server,
        key,
        "UserIndex/CountUsers",
        json!({"filter": {"expression": filter}}),
    )
    .await;
    assert_eq!(status, 200, "{counted}");
    let expected = grpc_count(&server, &keys.everything, filter).await;
    assert_eq!(counted["count"], expected.to_string());

    // A bad filter: 400, Connect's code name, the position in ErrorInfo and BadRequest details.
    let bad = r#"public.membership_tier = "#;
    let (status, error) = call(
        &server,
        key,
        "UserIndex/CountUsers",
        json!({"filter": {"expression": bad}}),
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(error["code"], "invalid_argument");
    let details = error["details"].as_array().unwrap();
    let info = details
        .iter()
        .find(|d| d["type"] == "google.rpc.ErrorInfo")
        .unwrap();
    assert_eq!(info["debug"]["metadata"]["position"], bad.len().to_string());
    assert!(
        info["value"].as_str().unwrap().len() > 10,
        "the encoded detail"
    );
    assert!(details.iter().any(|d| d["type"] == "google.rpc.BadRequest"));

    // The key check: none is 401, a key without the scope is 403, as gRPC answers.
    let (status, error) = call(&server, None, "UserIndex/CountUsers", json!({})).await;
    assert_eq!(
        (status, error["code"].as_str()),
        (401, Some("unauthenticated"))
    );
    // Each key learns its own name and scopes; without a key there is nothing to describe.
    let (status, described) = call(
        &server,
        Some(&keys.public),
        "UserIndex/DescribeCaller",
        json!({}),
    )
    .await;
    assert_eq!(status, 200, "{described}");
    assert_eq!(
        described,
        json!({"keyName": "reader", "scopes": ["public"]})
    );
    let (_, described) = call(&server, key, "UserIndex/DescribeCaller", json!({})).await;
    assert_eq!(
        described["scopes"].as_array().unwrap().len(),
        6,
        "{described}"
    );
    let (status, _) = call(&server, None, "UserIndex/DescribeCaller", json!({})).await;
    assert_eq!(status, 401);
    let private = json!({"filter": {"expression": "private.internal_score > 1"}});
    let (status, error) = call(&server, Some(&keys.public), "UserIndex/CountUsers", private).await;
    assert_eq!(
        (status, error["code"].as_str()),
        (403, Some("permission_denied")),
        "{error}"
    );

    // Segments and Sync are there too.
    let segment = json!({"name": "gold", "filter": {"expression": filter}});
    let (status, created) = call(&server, key, "Segments/CreateSegment", segment).await;
    assert_eq!(status, 200, "{created}");
    assert_eq!(created["version"], "1");
    let (status, again) = call(
        &server,
        key,
        "Segments/CreateSegment",
        json!({"name": "gold", "filter": {"expression": filter}}),
    )
    .await;
    assert_eq!(
        (status, again["code"].as_str()),
        (409, Some("already_exists"))
    );
    let (status, sync) = call(&server, key, "Sync/GetSyncStatus", json!({})).await;
    assert_eq!(status, 200, "{sync}");

    // A server stream: every matching user once, then an end-of-stream without an error.
    let (messages, end) = stream(
        &server,
        &keys.everything,
        "UserIndex/ExportUsers",
        json!({"filter": {"expression": filter}, "idsOnly": true, "chunkSize": 50}),
    )
    .await;
    assert_eq!(end, json!({}));
    assert_eq!(messages[0]["total"], expected.to_string());
    let ids: Vec<&str> = messages
        .iter()
        .flat_map(|m| m["ids"].as_array().unwrap())
        .map(|id| id.as_str().unwrap())
        .collect();
    assert_eq!(ids.len() as u64, expected);
    let (messages, end) = stream(
        &server,
        &keys.everything,
        "Segments/ListSegmentMembers",
        json!({"name": "gold", "fields": ["id"]}),
    )
    .await;
    let members: usize = messages
        .iter()
        .map(|m| m["users"].as_array().map_or(0, |u| u.len()))
        .sum();
    assert_eq!((members as u64, end), (expected, json!({})));

    // A stream that fails ends with its error in the end-of-stream message.
    let (messages, end) = stream(
        &server,
        &keys.everything,
        "Segments/ListSegmentMembers",
        json!({"name": "nope"}),
    )
    .await;
    assert!(messages.is_empty());
    assert_eq!(end["error"]["code"], "not_found");

    // Protobuf instead of JSON, for Connect clients that use it.
    let request = clerk_index::api::proto::CountUsersRequest {
        filter: common::expression(filter),
        ..Default::default()
    };
    let response = reqwest::Client::new()
        .post(format!(
            "{}/clerkindex.v1.UserIndex/CountUsers",
            server.http_url
        ))
        .header("content-type", "application/proto")
        .bearer_auth(&keys.everything)
        .body(request.encode_to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["content-type"], "application/proto");
    let answer =
        clerk_index::api::proto::CountUsersResponse::decode(response.bytes().await.unwrap())
            .unwrap();
    assert_eq!(answer.count, expected);

    // The calls are counted like gRPC calls, by service, method and code.
    let metrics = server.metrics_text().await;
    assert!(
        metrics.contains(r#"method="CountUsers",code="INVALID_ARGUMENT""#),
        "{metrics}"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_the_protocol_does_not_allow_get_clear_answers() {
    let dir = tempfile::tempdir().unwrap();
    let (_fake, server, keys) = serve(dir.path(), |_| {}).await;
    let http = reqwest::Client::new();
    let post = |path: &str, content_type: &str, body: Vec<u8>| {
        http.post(format!("{}{path}", server.http_url))
            .header("content-type", content_type.to_string())
            .bearer_auth(&keys.everything)
            .body(body)
            .send()
    };
    // Unknown method: 404 with Connect's error.
    let response = post(
        "/clerkindex.v1.UserIndex/DropUsers",
        "application/json",
        b"{}".to_vec(),
    )
    .await
    .unwrap();
    assert_eq!(response.status(), 404);
    assert_eq!(
        response.json::<Value>().await.unwrap()["code"],
        "unimplemented"
    );
    // A stream's content type on a unary method: 415, naming what it takes.
    let response = post(
        "/clerkindex.v1.UserIndex/CountUsers",
        "text/plain",
        b"{}".to_vec(),
    )
    .await
    .unwrap();
    assert_eq!(response.status(), 415);
    assert!(
        response.headers()["accept-post"]
            .to_str()
            .unwrap()
            .contains("application/json")
    );
    // JSON that is not the request's: 400 naming the field.
    let response = post(
        "/clerkindex.v1.UserIndex/CountUsers",
        "application/json",
        br#"{"filtr": {}}"#.to_vec(),
    )
    .await
    .unwrap();
    assert_eq!(response.status(), 400);
    let error: Value = response.json().await.unwrap();
    assert!(
        error["message"].as_str().unwrap().contains("filtr"),
        "{error}"
    );
    // A stream request that is not one envelope.
    let response = post(
        "/clerkindex.v1.UserIndex/ExportUsers",
        "application/connect+json",
        b"{}".to_vec(),
    )
    .await
    .unwrap();
    assert_eq!(response.status(), 400);
    // A body over the limit: refused before it is read whole.
    let huge = vec![b' '; clerk_index::api::MAX_REQUEST_BYTES + 1];
    let response = post(
        "/clerkindex.v1.UserIndex/CountUsers",
        "application/json",
        huge,
    )
    .await
    .unwrap();
    assert_eq!(response.status(), 413);
    assert_eq!(
        response.json::<Value>().await.unwrap()["code"],
        "resource_exhausted"
    );
    // A malformed deadline: 400.
    let response = http
        .post(format!(
            "{}/clerkindex.v1.UserIndex/CountUsers",
            server.http_url
        ))
        .header("content-type", "application/json")
        .header("connect-timeout-ms", "abc")
        .bearer_auth(&keys.everything)
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quiet_watch_outlives_the_header_timeout_with_heartbeats_and_then_delivers() {
    let dir = tempfile::tempdir().unwrap();
    let (fake, server, keys) = serve(dir.path(), |options| {
        options.limits.http_header_timeout = Duration::from_secs(1);
        options.limits.stream_heartbeat = Duration::from_millis(300);
    })
    .await;
    let (status, _) = call(
        &server,
        Some(&keys.everything),
        "Segments/CreateSegment",
        json!({"name": "vip", "filter": {"expression": "public.vip = true"}}),
    )
    .await;
    assert_eq!(status, 200);
    let mut response = reqwest::Client::new()
        .post(format!(
            "{}/clerkindex.v1.Segments/WatchSegment",
            server.http_url
        ))
        .header("content-type", "application/connect+json")
        .bearer_auth(&keys.everything)
        .body(envelope(0, br#"{"name": "vip"}"#))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    // Quiet for twice the header timeout: heartbeats (empty messages) arrive meanwhile.
    let mut buffer = Vec::new();
    let quiet_until = tokio::time::Instant::now() + Duration::from_secs(2);
    while tokio::time::Instant::now() < quiet_until {
        if let Ok(chunk) = tokio::time::timeout_at(quiet_until, response.chunk()).await {
            buffer.extend_from_slice(&chunk.unwrap().expect("the stream is open"));
        }
    }
    let heartbeats = envelopes(&buffer);
    assert!(heartbeats.len() >= 3, "{} heartbeats", heartbeats.len());
    assert!(
        heartbeats
            .iter()
            .all(|(flags, message)| *flags == 0 && message == b"{}")
    );
    // Then a user enters, through Clerk and its webhook, and the event arrives.
    let mut target = clerk_index::clerk::fake::WebhookTarget::new(
        format!("{}/webhooks/clerk", server.http_url),
        common::WEBHOOK_SECRET,
    );
    target.retry_scale = 0.001;
    fake.fake.set_webhook_target(target).unwrap();
    let user = fake.fake.user_ids()[3].clone();
    common::clerk_api(
        &fake.url,
        reqwest::Method::PATCH,
        &format!("/v1/users/{user}/metadata"),
        Some(json!({"public_metadata": {"vip": true}})),
    )
    .await;
    let mut buffer = Vec::new();
    let event = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            buffer.extend_from_slice(&response.chunk().await.unwrap().unwrap());
            let mut rest = &buffer[..];
            while rest.len() >= 5 {
                let length = u32::from_be_bytes([rest[1], rest[2], rest[3], rest[4]]) as usize;
                if rest.len() < 5 + length {
                    break;
                }
                let message: Value = serde_json::from_slice(&rest[5..5 + length]).unwrap();
                if message.get("userId").is_some() {
                    return message;
                }
                rest = &rest[5 + length..];
            }
        }
    })
    .await
    .expect("the Entered event within 20 s");
    assert_eq!(event["kind"], "KIND_ENTERED");
    assert_eq!(event["userId"], user);
    drop(response);
    server.stop().await;
}

/// A gRPC-Web call of CountUsers over HTTP/1.1: (count, grpc-status from the trailer frame).
async fn grpc_web_count(
    url: &str,
    key: &str,
    origin: Option<&str>,
) -> (u64, String, reqwest::header::HeaderMap) {
    let request = clerk_index::api::proto::CountUsersRequest::default();
    let mut builder = reqwest::Client::builder()
        .http1_only()
        .build()
        .unwrap()
        .post(format!("{url}/clerkindex.v1.UserIndex/CountUsers"))
        .header("content-type", "application/grpc-web+proto")
        .header("x-grpc-web", "1")
        .bearer_auth(key)
        .body(envelope(0, &request.encode_to_vec()));
    if let Some(origin) = origin {
        builder = builder.header("origin", origin);
    }
    let response = builder.send().await.unwrap();
    assert_eq!(response.status(), 200);
    let headers = response.headers().clone();
    let frames = envelopes(&response.bytes().await.unwrap());
    let count = frames
        .iter()
        .find(|(flags, _)| *flags == 0)
        .map(|(_, message)| {
            clerk_index::api::proto::CountUsersResponse::decode(&message[..])
                .unwrap()
                .count
        })
        .unwrap_or_default();
    let trailers = frames
        .iter()
        .find(|(flags, _)| flags & 0x80 != 0)
        .map(|(_, t)| String::from_utf8_lossy(t).to_string())
        .unwrap_or_default();
    // An immediate error carries its status in the headers ("trailers-only").
    let in_headers = headers
        .get("grpc-status")
        .map(|v| v.to_str().unwrap().to_string());
    let status = trailers
        .lines()
        .find_map(|line| line.strip_prefix("grpc-status:"))
        .map(|status| status.trim().to_string())
        .or(in_headers)
        .unwrap_or_default();
    (count, status, headers)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_web_works_on_both_ports_and_cors_admits_only_configured_origins() {
    let dir = tempfile::tempdir().unwrap();
    let origin = "https://console.example.com";
    let (_fake, server, keys) = serve(dir.path(), |options| {
        options.grpc_web_origins = vec![origin.into()]
    })
    .await;
    for url in [&server.http_url, &server.grpc_url] {
        let (count, status, _) = grpc_web_count(url, &keys.everything, None).await;
        assert_eq!((count, status.as_str()), (USERS as u64, "0"), "{url}");
        let (_, status, _) = grpc_web_count(url, "not-a-key", None).await;
        assert_eq!(status, "16", "{url}: UNAUTHENTICATED");
    }
    let (_, _, headers) = grpc_web_count(&server.grpc_url, &keys.everything, Some(origin)).await;
    assert_eq!(headers["access-control-allow-origin"], origin);
    assert!(
        headers["access-control-expose-headers"]
            .to_str()
            .unwrap()
            .contains("grpc-status")
    );
    let http = reqwest::Client::builder().http1_only().build().unwrap();
    for (asking, allowed) in [(origin, true), ("https://evil.example", false)] {
        let preflight = http
            .request(
                reqwest::Method::OPTIONS,
                format!("{}/clerkindex.v1.UserIndex/CountUsers", server.grpc_url),
            )
            .header("origin", asking)
            .header("access-control-request-method", "POST")
            .header(
                "access-control-request-headers",
                "authorization,content-type,x-grpc-web",
            )
            .send()
            .await
            .unwrap();
        assert_eq!(
            preflight
                .headers()
                .get("access-control-allow-origin")
                .is_some(),
            allowed,
            "{asking}"
        );
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_page_has_a_strict_policy_and_its_export_tickets_work_once() {
    let dir = tempfile::tempdir().unwrap();
    let (_fake, server, keys) = serve(dir.path(), |_| {}).await;
    let http = reqwest::Client::new();
    let page = http
        .get(format!("{}/", server.http_url))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    let policy = page.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_string();
    for directive in [
        "default-src 'none'",
        "script-src 'self'",
        "frame-ancestors 'none'",
    ] {
        assert!(policy.contains(directive), "{policy}");
    }
    assert!(!policy.contains("unsafe-inline") && !policy.contains("unsafe-eval"));
    assert_eq!(page.headers()["x-content-type-options"], "nosniff");
    let html = page.text().await.unwrap();
    assert!(html.contains(r#"src="/console/app.js""#) && !html.contains("<script>"));
    for asset in [
        "app.js",
        "api.js",
        "filter.js",
        "charts.js",
        "app.css",
        "icon.svg",
    ] {
        let response = http
            .get(format!("{}/console/{asset}", server.http_url))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{asset}");
    }

    let filter = r#"public.membership_tier = "gold""#;
    let issue = |key: &str, body: Value| {
        http.post(format!("{}/console/v1/export-tickets", server.http_url))
            .bearer_auth(key.to_string())
            .json(&body)
            .send()
    };
    // A ticket checks the key and the filter when it is issued.
    let refused = issue("wrong", json!({"filter": filter, "format": "csv"}))
        .await
        .unwrap();
    assert_eq!(refused.status(), 401);
    let bad = issue(
        &keys.everything,
        json!({"filter": "public.x = ", "format": "csv"}),
    )
    .await
    .unwrap();
    assert_eq!(bad.status(), 400);
    let private = issue(
        &keys.public,
        json!({"filter": filter, "format": "csv", "columns": ["id", "private.internal_score"]}),
    )
    .await
    .unwrap();
    assert_eq!(private.status(), 403, "a field the key cannot read");
    let ticket: Value = issue(&keys.everything, json!({"filter": filter, "format": "csv", "columns": ["id", "email", "public.membership_tier"]}))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let url = format!("{}{}", server.http_url, ticket["url"].as_str().unwrap());
    assert!(!url.contains(&keys.everything));
    let download = http.get(&url).send().await.unwrap();
    assert_eq!(download.status(), 200);
    let expected = grpc_count(&server, &keys.everything, filter).await;
    assert_eq!(
        download.headers()["x-export-total"],
        expected.to_string().as_str()
    );
    assert!(
        download.headers()["content-disposition"]
            .to_str()
            .unwrap()
            .contains("attachment")
    );
    let csv = download.text().await.unwrap();
    let mut lines = csv.lines();
    assert_eq!(lines.next(), Some("id,email,public.membership_tier"));
    let rows: Vec<&str> = lines.collect();
    assert_eq!(rows.len() as u64, expected);
    assert!(
        rows.iter()
            .all(|row| row.starts_with("user_") && row.ends_with(",gold") && row.contains('@'))
    );
    // Spent: a second use is 404.
    let again = http.get(&url).send().await.unwrap();
    assert_eq!(again.status(), 404);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_can_be_turned_off_and_the_api_stays() {
    let dir = tempfile::tempdir().unwrap();
    let (_fake, server, keys) = serve(dir.path(), |options| options.console = false).await;
    let http = reqwest::Client::new();
    let page = http
        .get(format!("{}/", server.http_url))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 404);
    let script = http
        .get(format!("{}/console/app.js", server.http_url))
        .send()
        .await
        .unwrap();
    assert!(script.status().is_client_error(), "{}", script.status());
    let tickets = http
        .post(format!("{}/console/v1/export-tickets", server.http_url))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(tickets.status(), 404);
    let (status, _) = call(
        &server,
        Some(&keys.everything),
        "UserIndex/CountUsers",
        json!({}),
    )
    .await;
    assert_eq!(status, 200);
    server.stop().await;
}
