//! A crash never loses an acknowledged change: the real binary is killed with SIGKILL in the
//! middle of a burst of webhook deliveries, restarted on the same data directory, and every
//! delivery that got a 2xx must be in the index. And a SIGTERM stops it cleanly: what it applied
//! but had not yet committed is committed on the way out.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use clerk_index::api::proto::GetUserRequest;
use clerk_index::api::proto::user_index_client::UserIndexClient;
use clerk_index::clerk::fake::{FakeClerkConfig, Population};
use common::{RunningFakeClerk, event, free_port};
use tokio::process::Child;

fn spawn_server(data_dir: &std::path::Path, clerk_url: &str, grpc: u16, http: u16) -> Child {
    common::spawn_serve(
        data_dir,
        clerk_url,
        grpc,
        http,
        &["--commit-interval-ms", "100"],
    )
}

async fn wait_ready(http: u16) {
    common::wait_ready(&format!("http://127.0.0.1:{http}")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_during_a_burst_loses_no_acknowledged_delivery() {
    let fake = RunningFakeClerk::start(FakeClerkConfig::new(Population::new(50))).await;
    let dir = tempfile::tempdir().unwrap();
    let (grpc, http) = (free_port(), free_port());
    let mut child = spawn_server(dir.path(), &fake.url, grpc, http);
    wait_ready(http).await;

    let newcomers = Population {
        seed: 9,
        ..Population::new(100_000)
    };
    let acknowledged: Arc<Mutex<Vec<String>>> = Arc::default();
    let http_url = format!("http://127.0.0.1:{http}");
    let workers: Vec<_> = (0..16)
        .map(|worker| {
            let (acknowledged, http_url) = (acknowledged.clone(), http_url.clone());
            tokio::spawn(async move {
                for n in 0..250 {
                    let index = worker * 1_000 + n;
                    let user = newcomers.user(index);
                    let id = user["id"].as_str().unwrap().to_string();
                    let body = event("user.created", user, 1_790_000_000_000);
                    let sent = tokio::time::timeout(
                        Duration::from_secs(5),
                        deliver_or_fail(&http_url, &format!("msg_kill_{index}"), &body),
                    )
                    .await;
                    match sent {
                        Ok(Some(200)) => acknowledged.lock().unwrap().push(id),
                        Ok(Some(status)) => panic!("unexpected status {status} before the kill"),
                        // The server died under us: the remaining deliveries are not acknowledged.
                        Ok(None) | Err(_) => return,
                    }
                }
            })
        })
        .collect();
    while acknowledged.lock().unwrap().len() < 300 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    child.start_kill().unwrap(); // SIGKILL: no shutdown, no final commit.
    child.wait().await.unwrap();
    for worker in workers {
        worker.await.unwrap();
    }
    let acknowledged = acknowledged.lock().unwrap().clone();
    assert!(
        acknowledged.len() < 16 * 250,
        "the kill must land during the burst"
    );

    let _child = spawn_server(dir.path(), &fake.url, grpc, http);
    wait_ready(http).await;
    let mut client = UserIndexClient::connect(format!("http://127.0.0.1:{grpc}"))
        .await
        .unwrap();
    for id in &acknowledged {
        let found = client
            .get_user(GetUserRequest {
                user_id: id.clone(),
                fields: vec!["id".into()],
                ..Default::default()
            })
            .await;
        assert!(
            found.is_ok(),
            "acknowledged user {id} was lost in the crash ({} acknowledged)",
            acknowledged.len()
        );
    }
}

/// `None` when the connection failed (the server is gone).
async fn deliver_or_fail(http_url: &str, svix_id: &str, body: &serde_json::Value) -> Option<u16> {
    let payload = serde_json::to_vec(body).unwrap();
    let mut request = reqwest::Client::new()
        .post(format!("{http_url}/webhooks/clerk"))
        .body(payload.clone());
    for (name, value) in common::svix_headers(svix_id, &payload) {
        request = request.header(name, value);
    }
    request.send().await.ok().map(|r| r.status().as_u16())
}

/// SIGTERM in the middle of a backfill whose commits are minutes apart: the process exits 0 well
/// within a grace period, and the pages it had applied are in the index it leaves behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_commits_pending_writes_and_exits_cleanly() {
    let mut config = FakeClerkConfig::new(Population::new(20_000));
    // Four pages a second: the backfill takes ~10 s, so SIGTERM lands in the middle.
    config.rate_limit = Some(clerk_index::clerk::rate_limit::RateLimit::parse("4/1s").unwrap());
    let fake = RunningFakeClerk::start(config).await;
    let dir = tempfile::tempdir().unwrap();
    let (grpc, http) = (free_port(), free_port());
    let mut child = common::spawn_serve(
        dir.path(),
        &fake.url,
        grpc,
        http,
        &["--commit-interval-ms", "600000"],
    );
    // "backfill in progress: N of M users"
    let mut seen = 0u64;
    for _ in 0..300 {
        if let Ok(response) = reqwest::get(format!("http://127.0.0.1:{http}/readyz")).await {
            let body = response.text().await.unwrap();
            seen = body
                .strip_prefix("backfill in progress: ")
                .and_then(|rest| rest.split(' ').next())
                .and_then(|n| n.parse().ok())
                .unwrap_or(0);
            if seen >= 2_000 {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        (2_000..20_000).contains(&seen),
        "the backfill was not caught midway: {seen}"
    );
    let stopping = std::time::Instant::now();
    common::terminate(&child);
    let status = tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .expect("the process did not stop within 30 s")
        .unwrap();
    assert!(status.success(), "{status:?}");
    assert!(
        stopping.elapsed() < Duration::from_secs(10),
        "{:?}",
        stopping.elapsed()
    );
    // Nothing was committed by time or size during the backfill; the shutdown commit holds it.
    let config = clerk_index::index::IndexConfig::new(dir.path().join("index"));
    let (index, _task) = clerk_index::index::UserIndex::open(&config).unwrap();
    let users = index.snapshot().freshness.user_count;
    assert!(
        users >= seen && users < 20_000,
        "{users} users in the index, {seen} seen"
    );
}

/// A client that opens an export and stops reading would hold a graceful shutdown forever; past
/// the shutdown timeout the server closes such calls and stops.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_does_not_wait_forever_for_a_stalled_stream() {
    let fake = RunningFakeClerk::start(FakeClerkConfig::new(Population::new(4_000))).await;
    let dir = tempfile::tempdir().unwrap();
    let mut options = common::TestOptions::new(&fake.url);
    options.shutdown_timeout_secs = 1;
    let server = common::TestServer::start(dir.path(), options).await;
    server.wait_serving().await;
    let mut client = server.client().await;
    // Every user with its whole JSON (~8 MB): far more than HTTP/2 lets through unread.
    let mut stream = client
        .export_users(clerk_index::api::proto::ExportUsersRequest {
            chunk_size: 100,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let first = stream.message().await.unwrap().unwrap();
    assert_eq!(first.users.len(), 100);
    // The client now reads nothing more.
    let started = std::time::Instant::now();
    tokio::time::timeout(Duration::from_secs(15), server.stop())
        .await
        .expect("the server waited for the stalled stream");
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "{:?}",
        started.elapsed()
    );
    drop(stream);
}
