//! Budgets, over real gRPC and HTTP on loopback: one caller, with a key or with none, cannot
//! hold more than its share of exports, watches, threads, buffers, connections, metric labels
//! or log lines. Asserted on the budgets' own metrics, never by exhausting the machine.

mod common;

use std::time::{Duration, Instant};

use clerk_index::api::proto::segments_client::SegmentsClient;
use clerk_index::api::proto::user_index_client::UserIndexClient;
use clerk_index::api::proto::{
    CountUsersRequest, CountUsersResponse, CreateSegmentRequest, ExportUsersRequest,
    WatchSegmentRequest,
};
use clerk_index::auth::{ApiKeys, AuthConfig, generate_key};
use clerk_index::clerk::fake::{FakeClerkConfig, Population};
use clerk_index::limits::Limits;
use common::{Authed, RunningFakeClerk, TestOptions, TestServer, expression, with_header};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tonic::Code;

/// The value of an unlabelled metric, or of one with `label`, in `/metrics` text.
fn metric(text: &str, name: &str, label: &str) -> f64 {
    let wanted = match label {
        "" => format!("clerk_index_{name} "),
        label => format!("clerk_index_{name}{{{label}}} "),
    };
    text.lines()
        .find_map(|line| line.strip_prefix(&wanted))
        .and_then(|value| value.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {wanted} in the metrics"))
}

/// Polls `/metrics` until `done` holds for it (up to 5 s); the last text either way.
async fn metrics_until(server: &TestServer, done: impl Fn(&str) -> bool) -> String {
    let mut text = String::new();
    for _ in 0..100 {
        text = server.metrics_text().await;
        if done(&text) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    text
}

struct Setup {
    _fake: RunningFakeClerk,
    _dir: tempfile::TempDir,
    server: TestServer,
    /// Keys `a` and `b`: public, segments.
    keys: [String; 2],
}

async fn start(limits: Limits, auth: bool) -> Setup {
    let fake = RunningFakeClerk::start(FakeClerkConfig::new(Population::new(1_500))).await;
    let (a, a_hash) = generate_key();
    let (b, b_hash) = generate_key();
    let mut options = TestOptions::new(&fake.url);
    if auth {
        options.auth = AuthConfig {
            keys: ApiKeys::parse(&format!(
                "a public,segments {a_hash}\nb public,segments {b_hash}\n"
            ))
            .unwrap(),
            allow_unauthenticated: false,
            sensitive: None,
        };
    }
    options.limits = limits;
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path(), options).await;
    server.wait_serving().await;
    Setup {
        _fake: fake,
        _dir: dir,
        server,
        keys: [a, b],
    }
}

impl Setup {
    async fn users(&self, key: usize) -> UserIndexClient<Authed> {
        let channel = self.server.channel().await;
        UserIndexClient::new(with_header(
            channel,
            Some(format!("Bearer {}", self.keys[key])),
        ))
    }

    async fn segments(&self, key: usize) -> SegmentsClient<Authed> {
        let channel = self.server.channel().await;
        SegmentsClient::new(with_header(
            channel,
            Some(format!("Bearer {}", self.keys[key])),
        ))
    }
}

/// An export asking for whole users in large chunks, whose stream is never read.
fn full_export() -> ExportUsersRequest {
    ExportUsersRequest {
        chunk_size: 5_000,
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_exports_are_bounded_per_key_and_in_all_and_hold_no_thread_or_more_than_their_buffer()
 {
    let budget_bytes = 128 << 10;
    let setup = start(
        Limits {
            exports: 5,
            exports_per_key: 3,
            stream_buffer_bytes: budget_bytes,
            ..Limits::default()
        },
        true,
    )
    .await;
    let (mut a, mut b) = (setup.users(0).await, setup.users(1).await);
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(a.export_users(full_export()).await.unwrap().into_inner());
    }
    let refused = a.export_users(full_export()).await.unwrap_err();
    assert_eq!(refused.code(), Code::ResourceExhausted, "{refused:?}");
    assert!(refused.message().contains("for this key"), "{refused:?}");
    for _ in 0..2 {
        held.push(b.export_users(full_export()).await.unwrap().into_inner());
    }
    let refused = b.export_users(full_export()).await.unwrap_err();
    assert_eq!(refused.code(), Code::ResourceExhausted, "{refused:?}");
    assert!(refused.message().contains("in all"), "{refused:?}");
    // Nobody reads the five exports; every other call still answers.
    let counted = b.count_users(CountUsersRequest::default()).await.unwrap();
    assert_eq!(counted.into_inner().count, 1_500);
    // The stalled exports wait as tasks: no blocking thread, their buffers within budget.
    // (Waited for until they have buffered something: no thread is also how they begin.)
    let text = metrics_until(&setup.server, |text| {
        metric(text, "export_threads", "") == 0.0 && metric(text, "stream_buffered_bytes", "") > 0.0
    })
    .await;
    assert_eq!(metric(&text, "budget_held", "budget=\"exports\""), 5.0);
    assert_eq!(
        metric(&text, "budget_refused_total", "budget=\"exports\""),
        2.0
    );
    assert_eq!(metric(&text, "export_threads", ""), 0.0);
    let buffered = metric(&text, "stream_buffered_bytes", "");
    assert!(buffered > 0.0, "the exports did start");
    assert!(
        buffered <= 5.0 * budget_bytes as f64,
        "{buffered} bytes buffered by five exports"
    );
    // Cancelling gives everything back at once.
    drop(held);
    let text = metrics_until(&setup.server, |text| {
        metric(text, "budget_held", "budget=\"exports\"") == 0.0
    })
    .await;
    assert_eq!(metric(&text, "budget_held", "budget=\"exports\""), 0.0);
    assert_eq!(metric(&text, "stream_buffered_bytes", ""), 0.0);
    let mut again = a
        .export_users(ExportUsersRequest::default())
        .await
        .unwrap()
        .into_inner();
    let mut users = 0;
    while let Some(chunk) = again.message().await.unwrap() {
        users += chunk.users.len();
    }
    assert_eq!(users, 1_500);
    setup.server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watches_are_bounded_per_key_and_given_back_when_their_clients_leave() {
    let setup = start(
        Limits {
            watches: 6,
            watches_per_key: 4,
            ..Limits::default()
        },
        true,
    )
    .await;
    let (mut a, mut b) = (setup.segments(0).await, setup.segments(1).await);
    a.create_segment(CreateSegmentRequest {
        name: "banned".into(),
        description: String::new(),
        filter: expression("banned = true"),
    })
    .await
    .unwrap();
    let watch = || WatchSegmentRequest {
        name: "banned".into(),
        after_sequence: None,
    };
    let mut held = Vec::new();
    for _ in 0..4 {
        held.push(a.watch_segment(watch()).await.unwrap().into_inner());
    }
    let refused = a.watch_segment(watch()).await.unwrap_err();
    assert_eq!(refused.code(), Code::ResourceExhausted, "{refused:?}");
    for _ in 0..2 {
        held.push(b.watch_segment(watch()).await.unwrap().into_inner());
    }
    let refused = b.watch_segment(watch()).await.unwrap_err();
    assert!(refused.message().contains("in all"), "{refused:?}");
    let text = setup.server.metrics_text().await;
    assert_eq!(metric(&text, "budget_held", "budget=\"watches\""), 6.0);
    // No event arrives on the segment, yet the slots come back as soon as the clients leave.
    drop(held);
    let text = metrics_until(&setup.server, |text| {
        metric(text, "budget_held", "budget=\"watches\"") == 0.0
    })
    .await;
    assert_eq!(metric(&text, "budget_held", "budget=\"watches\""), 0.0);
    a.watch_segment(watch()).await.unwrap();
    setup.server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn made_up_method_names_never_become_metric_labels() {
    let setup = start(Limits::default(), true).await;
    let channel = setup.server.channel().await;
    for n in 0..200 {
        let mut grpc = tonic::client::Grpc::new(channel.clone());
        grpc.ready().await.unwrap();
        let path = format!("/clerkindex.v1.UserIndex/MadeUp{n}")
            .parse()
            .unwrap();
        let codec = tonic_prost::ProstCodec::<CountUsersRequest, CountUsersResponse>::default();
        let answer = grpc
            .unary(
                tonic::Request::new(CountUsersRequest::default()),
                path,
                codec,
            )
            .await
            .unwrap_err();
        // The key check answers before routing.
        assert_eq!(answer.code(), Code::Unauthenticated);
    }
    let text = setup.server.metrics_text().await;
    assert!(!text.contains("MadeUp"), "a made-up method became a label");
    assert!(text.contains(
        "clerk_index_grpc_requests_total{service=\"unknown\",method=\"unknown\",code=\"UNAUTHENTICATED\"} 200"
    ));
    setup.server.stop().await;
}

/// Reads until the server closes the connection; how long that took, or `None` if it is still
/// open after `wait`.
async fn closed_within(tcp: &mut TcpStream, wait: Duration) -> Option<Duration> {
    let started = Instant::now();
    let mut buffer = [0u8; 1024];
    loop {
        match tokio::time::timeout_at((started + wait).into(), tcp.read(&mut buffer)).await {
            Err(_) => return None,
            Ok(Ok(0)) | Ok(Err(_)) => return Some(started.elapsed()),
            Ok(Ok(_)) => {}
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_http_port_drops_slow_headers_and_connections_past_its_budget() {
    let setup = start(
        Limits {
            http_header_timeout: Duration::from_secs(1),
            http_connections: 8,
            ..Limits::default()
        },
        false,
    )
    .await;
    let address = setup
        .server
        .http_url
        .trim_start_matches("http://")
        .to_string();
    // Half a request, never finished: closed after the header timeout.
    let mut slow = TcpStream::connect(&address).await.unwrap();
    slow.write_all(b"GET /livez HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let closed = closed_within(&mut slow, Duration::from_secs(5)).await;
    assert!(closed.is_some(), "a half-sent request held its connection");
    // Eight idle connections take the budget; the ninth is closed at once.
    let mut idle = Vec::new();
    for _ in 0..8 {
        idle.push(TcpStream::connect(&address).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut ninth = TcpStream::connect(&address).await.unwrap();
    let closed = closed_within(&mut ninth, Duration::from_millis(500)).await;
    assert!(closed.is_some(), "a connection past the budget was kept");
    // The idle ones go at the header timeout, and the port serves again.
    for tcp in &mut idle {
        assert!(closed_within(tcp, Duration::from_secs(5)).await.is_some());
    }
    let text = setup.server.metrics_text().await;
    assert!(metric(&text, "budget_refused_total", "budget=\"http_connections\"") >= 1.0);
    setup.server.stop().await;
}

/// A connection to `address` from the loopback address `from` (Linux routes all of 127/8 to
/// loopback, so a test can be several peers).
async fn connect_from(from: &str, address: &str) -> TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(format!("{from}:0").parse().unwrap()).unwrap();
    socket.connect(address.parse().unwrap()).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_grpc_port_bounds_connections_per_peer_and_in_all_and_drops_silent_ones() {
    let setup = start(
        Limits {
            grpc_connections: 6,
            grpc_connections_per_peer: 4,
            ..Limits::default()
        },
        false,
    )
    .await;
    let address = setup
        .server
        .grpc_url
        .trim_start_matches("http://")
        .to_string();
    // The test's own channel holds one connection from 127.0.0.1 while it counts.
    let mut users = UserIndexClient::new(setup.server.channel().await);
    users
        .count_users(CountUsersRequest::default())
        .await
        .unwrap();
    // `start` polled health over channels of its own; the server gives their slots back when it
    // sees them closed, which on a loaded machine can come after the silent connections below
    // (one CI run read 5 held, 3 refused: a health channel's slot was still held). Wait for it.
    let text = metrics_until(&setup.server, |text| {
        metric(text, "budget_held", "budget=\"grpc_connections\"") == 1.0
    })
    .await;
    assert_eq!(
        metric(&text, "budget_held", "budget=\"grpc_connections\""),
        1.0,
        "the connections of the readiness polls were never given back"
    );
    let mut silent = Vec::new();
    let silent_since = Instant::now();
    for _ in 0..3 {
        silent.push(connect_from("127.0.0.1", &address).await);
    }
    // 127.0.0.1 has used its share of four: a fifth is closed at once.
    let mut fifth = connect_from("127.0.0.1", &address).await;
    assert!(
        closed_within(&mut fifth, Duration::from_millis(500))
            .await
            .is_some(),
        "a connection past the peer's share was kept"
    );
    // Another peer still gets in, up to the budget of six in all.
    let mut other = vec![connect_from("127.0.0.2", &address).await];
    other.push(connect_from("127.0.0.2", &address).await);
    let mut seventh = connect_from("127.0.0.3", &address).await;
    assert!(
        closed_within(&mut seventh, Duration::from_millis(500))
            .await
            .is_some(),
        "a connection past the whole budget was kept"
    );
    assert!(
        closed_within(&mut other[0], Duration::from_millis(200))
            .await
            .is_none(),
        "a connection within the budget was closed"
    );
    let text = setup.server.metrics_text().await;
    // Say enough to tell a silent connection's opening timeout on a stalled machine from the
    // test's own channel losing its connection.
    let budget_lines: Vec<&str> = (text.lines())
        .filter(|line| line.contains("grpc_connections"))
        .collect();
    assert_eq!(
        metric(&text, "budget_held", "budget=\"grpc_connections\""),
        6.0,
        "{:?} after the silent connections opened; {budget_lines:?}",
        silent_since.elapsed()
    );
    assert!(metric(&text, "budget_refused_total", "budget=\"grpc_connections\"") >= 2.0);
    // The open channel keeps working while the budget is full.
    users
        .count_users(CountUsersRequest::default())
        .await
        .unwrap();
    // Connections that never send a byte are closed after the opening timeout (10 s), and
    // their slots come back.
    for tcp in silent.iter_mut().chain(&mut other) {
        let closed = closed_within(tcp, Duration::from_secs(15)).await;
        assert!(closed.is_some(), "a silent connection was kept");
    }
    let text = metrics_until(&setup.server, |text| {
        metric(text, "budget_held", "budget=\"grpc_connections\"") == 1.0
    })
    .await;
    assert_eq!(
        metric(&text, "budget_held", "budget=\"grpc_connections\""),
        1.0
    );
    let mut fresh = UserIndexClient::new(setup.server.channel().await);
    fresh
        .count_users(CountUsersRequest::default())
        .await
        .unwrap();
    setup.server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_webhooks_are_refused_and_their_log_lines_are_budgeted() {
    let setup = start(Limits::default(), false).await;
    let client = reqwest::Client::new();
    let long_id = "x".repeat(4096);
    let started = Instant::now();
    let forged = 300;
    for _ in 0..forged {
        let answer = client
            .post(format!("{}/webhooks/clerk", setup.server.http_url))
            .header("svix-id", &long_id)
            .header(
                "svix-timestamp",
                (clerk_index::clock::now_ms() / 1000).to_string(),
            )
            .header("svix-signature", "v1,Zm9yZ2Vk")
            .body(r#"{"type":"user.deleted","data":{"id":"user_1"}}"#)
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status().as_u16(), 401);
        let body = answer.text().await.unwrap();
        assert!(
            !body.contains(&long_id[..64]),
            "the forged id is not echoed"
        );
    }
    // At most the per-second budget (10) was written in each one-second window the flood
    // touched (the windows need not start with it).
    let written_at_most = 10 * (started.elapsed().as_secs() + 2);
    let text = setup.server.metrics_text().await;
    let suppressed = metric(&text, "log_lines_suppressed_total", "");
    assert!(
        suppressed >= (forged - written_at_most) as f64,
        "{suppressed} suppressed of {forged}"
    );
    setup.server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_connection_cannot_open_more_calls_than_its_stream_budget() {
    let setup = start(
        Limits {
            streams_per_connection: 2,
            ..Limits::default()
        },
        true,
    )
    .await;
    let mut a = setup.users(0).await;
    let first = a.export_users(full_export()).await.unwrap().into_inner();
    let second = a.export_users(full_export()).await.unwrap().into_inner();
    // A third call on the same connection waits for a stream (HTTP/2 SETTINGS) ...
    let mut third = a.clone();
    let waiting = tokio::spawn(async move {
        third
            .count_users(CountUsersRequest::default())
            .await
            .map(|r| r.into_inner().count)
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!waiting.is_finished(), "a third concurrent call was served");
    // ... while another connection is served at once, and the call goes ahead when one ends.
    let mut other = setup.users(1).await;
    other
        .count_users(CountUsersRequest::default())
        .await
        .unwrap();
    drop(first);
    let counted = tokio::time::timeout(Duration::from_secs(5), waiting)
        .await
        .expect("the waiting call went ahead")
        .unwrap()
        .unwrap();
    assert_eq!(counted, 1_500);
    drop(second);
    setup.server.stop().await;
}
