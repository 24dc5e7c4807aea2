//! Destinations over real gRPC: segment events POSTed to a receiver that verifies them with
//! Svix's own Python library (the project's client venv, `scripts/install-client-deps`), through
//! failed requests and a restart.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use clerk_index::api::proto::segments_client::SegmentsClient;
use clerk_index::api::proto::{self, DestinationState};
use clerk_index::clerk::fake::{FakeClerkConfig, Population};
use common::{RunningFakeClerk, TestOptions, TestServer, expression, newcomer};
use tokio::io::AsyncBufReadExt;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The Svix receiver: its URL and the child (killed on drop).
async fn receiver(dir: &Path, fail_first: usize, delay_ms: u64) -> (String, tokio::process::Child) {
    let python = root().join("clients/python/.venv/bin/python");
    let mut child = tokio::process::Command::new(&python)
        .arg(root().join("tests/receivers/svix_receiver.py"))
        .arg(dir.join("secret"))
        .arg(dir.join("received.jsonl"))
        .arg(fail_first.to_string())
        .arg(delay_ms.to_string())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "cannot start {} (scripts/install-client-deps): {e}",
                python.display()
            )
        });
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let port = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
        .await
        .expect("the receiver printed its port")
        .unwrap()
        .expect("a port line");
    (format!("http://127.0.0.1:{}/hook", port.trim()), child)
}

/// The requests of events the receiver accepted, in arrival order: (webhook-id, events).
fn requests(dir: &Path) -> Vec<(String, Vec<serde_json::Value>)> {
    let text = std::fs::read_to_string(dir.join("received.jsonl")).unwrap_or_default();
    text.lines()
        .map(|line| serde_json::from_str::<serde_json::Value>(line).unwrap())
        .filter(|request| request["body"]["type"] == "segment.events")
        .map(|request| {
            let events = request["body"]["data"]["events"].as_array().unwrap();
            (request["id"].as_str().unwrap().to_string(), events.clone())
        })
        .collect()
}

/// The events the receiver accepted, deduplicated by id, in arrival order.
fn received(dir: &Path) -> Vec<serde_json::Value> {
    let mut seen = BTreeSet::new();
    requests(dir)
        .into_iter()
        .flat_map(|(_, events)| events)
        .filter(|event| seen.insert(event["id"].as_str().unwrap().to_string()))
        .collect()
}

async fn wait_for_events(dir: &Path, count: usize) -> Vec<serde_json::Value> {
    for _ in 0..600 {
        let events = received(dir);
        if events.len() >= count {
            return events;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!(
        "the receiver got {} events, not {count}",
        received(dir).len()
    );
}

/// Sends `users` newcomers on the `vip` plan by webhook to the server at `http_url`.
async fn vips(http_url: &str, users: std::ops::Range<usize>) {
    for index in users {
        let mut user = newcomer(index);
        user["public_metadata"] = serde_json::json!({ "plan_type": "vip" });
        let event = common::event("user.created", user, clerk_index::clock::now_ms());
        let (status, _) = common::deliver(http_url, &format!("msg_vip_{index}"), &event).await;
        assert_eq!(status, 200);
    }
}

async fn start(
    fake: &RunningFakeClerk,
    dir: &Path,
) -> (TestServer, SegmentsClient<tonic::transport::Channel>) {
    let server = TestServer::start(dir, TestOptions::new(&fake.url)).await;
    server.wait_serving().await;
    let client = SegmentsClient::new(server.channel().await);
    (server, client)
}

/// Runs the command line against the server; its stdout.
async fn cli(server: &TestServer, args: &[&str]) -> String {
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_clerk-index"))
        .args(args)
        .args(["--server", &server.grpc_url])
        .output();
    let output = tokio::time::timeout(Duration::from_secs(60), output)
        .await
        .expect("the command finished")
        .unwrap();
    assert!(
        output.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_reach_a_svix_verified_receiver_in_order_through_failures_and_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let receiver_dir = tempfile::tempdir().unwrap();
    let fake = RunningFakeClerk::start(FakeClerkConfig::new(Population::new(200))).await;
    let (server, mut client) = start(&fake, dir.path()).await;
    let (url, _receiver) = receiver(receiver_dir.path(), 2, 0).await;
    client
        .create_segment(proto::CreateSegmentRequest {
            name: "vip".into(),
            filter: expression("public.plan_type = \"vip\""),
            ..Default::default()
        })
        .await
        .unwrap();
    let create = |name: &str, url: &str, segments: &[&str]| proto::CreateDestinationRequest {
        name: name.into(),
        url: url.into(),
        segments: segments.iter().map(|s| s.to_string()).collect(),
        batch_size: 10,
        batch_delay_ms: 50,
    };
    // Refusals name the field.
    for (request, code) in [
        (
            create("crm", "ftp://127.0.0.1/", &["vip"]),
            tonic::Code::InvalidArgument,
        ),
        (create("crm", &url, &["nope"]), tonic::Code::InvalidArgument),
        (
            create("Bad Name", &url, &["vip"]),
            tonic::Code::InvalidArgument,
        ),
        (create("crm", &url, &[]), tonic::Code::InvalidArgument),
    ] {
        let status = client.create_destination(request).await.unwrap_err();
        assert_eq!(status.code(), code, "{status:?}");
    }
    let created = client
        .create_destination(create("crm", &url, &["vip"]))
        .await
        .unwrap()
        .into_inner();
    assert!(created.signing_secret.starts_with("whsec_"));
    std::fs::write(receiver_dir.path().join("secret"), &created.signing_secret).unwrap();
    let taken = client
        .create_destination(create("crm", &url, &["vip"]))
        .await;
    assert_eq!(taken.unwrap_err().code(), tonic::Code::AlreadyExists);

    vips(&server.http_url, 0..30).await;
    let events = wait_for_events(receiver_dir.path(), 30).await;
    let sequences: Vec<u64> = events
        .iter()
        .map(|e| e["sequence"].as_u64().unwrap())
        .collect();
    assert!(
        sequences.windows(2).all(|w| w[0] < w[1]),
        "in order: {sequences:?}"
    );
    assert!(
        events
            .iter()
            .all(|e| e["type"] == "segment.entered" && e["segment"] == "vip")
    );
    let users: BTreeSet<&str> = events
        .iter()
        .map(|e| e["user_id"].as_str().unwrap())
        .collect();
    assert_eq!(users.len(), 30);

    let listed = client
        .list_destinations(proto::ListDestinationsRequest {})
        .await
        .unwrap()
        .into_inner()
        .destinations;
    assert_eq!(listed.len(), 1);
    let crm = &listed[0];
    assert_eq!(crm.state, DestinationState::Active as i32);
    assert_eq!((crm.delivered_events, crm.lag_events), (30, 0));
    assert_eq!(crm.delivered_through_sequence, *sequences.last().unwrap());
    let metrics = server.metrics_text().await;
    for line in [
        "clerk_index_destination_delivered_events_total{destination=\"crm\"} 30",
        "clerk_index_destination_failed_attempts_total{destination=\"crm\"} 2",
        "clerk_index_destination_lag_events{destination=\"crm\"} 0.0",
        "clerk_index_destination_state{destination=\"crm\"} 0.0",
    ] {
        assert!(metrics.lines().any(|l| l == line), "{line} in\n{metrics}");
    }
    let test = client
        .test_destination(proto::TestDestinationRequest { name: "crm".into() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!((test.status_code, test.error.as_str()), (204, ""));

    // The command line shows the same, and tests the receiver.
    let listed = cli(&server, &["destinations", "list", "-o", "jsonl"]).await;
    let line: serde_json::Value = serde_json::from_str(listed.lines().next().unwrap()).unwrap();
    assert_eq!(
        (line["name"].as_str(), line["state"].as_str()),
        (Some("crm"), Some("DESTINATION_STATE_ACTIVE"))
    );
    let tested = cli(&server, &["destinations", "test", "crm", "-o", "json"]).await;
    let tested: serde_json::Value = serde_json::from_str(&tested).unwrap();
    assert_eq!(tested["statusCode"], 204, "{tested}");

    // Paused, events wait; after a restart the destination is still paused and resumes from
    // its saved position.
    client
        .pause_destination(proto::PauseDestinationRequest { name: "crm".into() })
        .await
        .unwrap();
    vips(&server.http_url, 30..35).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(received(receiver_dir.path()).len(), 30);
    server.stop().await;
    let (server, mut client) = start(&fake, dir.path()).await;
    let resumed = client
        .resume_destination(proto::ResumeDestinationRequest { name: "crm".into() })
        .await
        .unwrap()
        .into_inner()
        .destination
        .unwrap();
    assert_eq!(resumed.state, DestinationState::Active as i32);
    let events = wait_for_events(receiver_dir.path(), 35).await;
    assert_eq!(events.len(), 35, "each event once");

    // A rotated secret: the receiver switches to the new one and still verifies.
    let rotated = client
        .rotate_destination_secret(proto::RotateDestinationSecretRequest { name: "crm".into() })
        .await
        .unwrap()
        .into_inner();
    std::fs::write(receiver_dir.path().join("secret"), &rotated.signing_secret).unwrap();
    vips(&server.http_url, 35..37).await;
    wait_for_events(receiver_dir.path(), 37).await;

    // Updated: refusals name the field; a new URL and batching keep the position and secret.
    let update = |url: Option<&str>, segments: Option<&[&str]>| proto::UpdateDestinationRequest {
        name: "crm".into(),
        url: url.map(str::to_string),
        segments: segments.map(|names| proto::SegmentNames {
            names: names.iter().map(|s| s.to_string()).collect(),
        }),
        ..Default::default()
    };
    for request in [
        update(Some("ftp://127.0.0.1/"), None),
        update(None, Some(&["nope"])),
        update(None, Some(&[])),
    ] {
        let status = client.update_destination(request).await.unwrap_err();
        assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
    }
    let mut missing = update(None, None);
    missing.name = "nobody".into();
    let status = client.update_destination(missing).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::NotFound);
    let moved = format!("{url}?v=2");
    let updated = client
        .update_destination(update(Some(&moved), None))
        .await
        .unwrap()
        .into_inner()
        .destination
        .unwrap();
    assert_eq!(
        (updated.url.as_str(), updated.batch_size),
        (moved.as_str(), 10)
    );
    let printed = cli(
        &server,
        &[
            "destinations",
            "update",
            "crm",
            "--batch-size",
            "3",
            "-o",
            "json",
        ],
    )
    .await;
    let printed: serde_json::Value = serde_json::from_str(&printed).unwrap();
    assert_eq!(
        (printed["batchSize"].as_u64(), printed["url"].as_str()),
        (Some(3), Some(moved.as_str()))
    );
    vips(&server.http_url, 37..40).await;
    let events = wait_for_events(receiver_dir.path(), 40).await;
    assert_eq!(events.len(), 40, "each event once after the update");
    client
        .delete_destination(proto::DeleteDestinationRequest { name: "crm".into() })
        .await
        .unwrap();
    let gone = client
        .pause_destination(proto::PauseDestinationRequest { name: "crm".into() })
        .await
        .unwrap_err();
    assert_eq!(gone.code(), tonic::Code::NotFound);
    server.stop().await;
}

/// The real binary killed with SIGKILL while a batch is in flight (the receiver holds each
/// request a second before answering), then restarted on the same data directory: every event
/// arrives, and the only events sent twice are those of the batch it never saw acknowledged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sender_killed_mid_batch_loses_nothing_and_repeats_only_that_batch() {
    let dir = tempfile::tempdir().unwrap();
    let receiver_dir = tempfile::tempdir().unwrap();
    let fake = RunningFakeClerk::start(FakeClerkConfig::new(Population::new(50))).await;
    let (url, _receiver) = receiver(receiver_dir.path(), 0, 1_000).await;
    let (grpc, http) = (common::free_port(), common::free_port());
    let http_url = format!("http://127.0.0.1:{http}");
    let flags = ["--destinations-allow-private", "--destinations-allow-http"];
    let mut child = common::spawn_serve(dir.path(), &fake.url, grpc, http, &flags);
    common::wait_ready(&http_url).await;
    let mut client = SegmentsClient::connect(format!("http://127.0.0.1:{grpc}"))
        .await
        .unwrap();
    client
        .create_segment(proto::CreateSegmentRequest {
            name: "vip".into(),
            filter: expression("public.plan_type = \"vip\""),
            ..Default::default()
        })
        .await
        .unwrap();
    let created = client
        .create_destination(proto::CreateDestinationRequest {
            name: "crm".into(),
            url,
            segments: vec!["vip".into()],
            batch_size: 10,
            batch_delay_ms: 20,
        })
        .await
        .unwrap()
        .into_inner();
    std::fs::write(receiver_dir.path().join("secret"), &created.signing_secret).unwrap();
    vips(&http_url, 0..40).await;

    // Kill as soon as the second request arrives: the first was answered, the second is held.
    let arrivals = receiver_dir.path().join("received.jsonl.arrivals");
    let arrived = || -> Vec<String> {
        let text = std::fs::read_to_string(&arrivals).unwrap_or_default();
        text.lines().map(str::to_string).collect()
    };
    let mut waited = 0;
    while arrived().len() < 2 {
        assert!(waited < 600, "the second request never arrived");
        tokio::time::sleep(Duration::from_millis(10)).await;
        waited += 1;
    }
    child.start_kill().unwrap();
    child.wait().await.unwrap();
    // The sender holds one request at a time and each answer takes a second: the one in flight
    // is the last to arrive (the second, unless this loop was held up past an answer).
    let in_flight = arrived().last().unwrap().clone();
    // The receiver still takes the held batch (its answer goes nowhere); let it finish first.
    while !requests(receiver_dir.path())
        .iter()
        .any(|(id, _)| *id == in_flight)
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let _child = common::spawn_serve(dir.path(), &fake.url, grpc, http, &flags);
    common::wait_ready(&http_url).await;
    let events = wait_for_events(receiver_dir.path(), 40).await;
    let users: BTreeSet<&str> = events
        .iter()
        .map(|e| e["user_id"].as_str().unwrap())
        .collect();
    assert_eq!((events.len(), users.len()), (40, 40));
    let sequences: Vec<u64> = events
        .iter()
        .map(|e| e["sequence"].as_u64().unwrap())
        .collect();
    assert!(sequences.windows(2).all(|w| w[0] < w[1]), "{sequences:?}");

    let mut times_sent = std::collections::BTreeMap::<String, usize>::new();
    let mut held = BTreeSet::new();
    for (id, events) in requests(receiver_dir.path()) {
        for event in events {
            let event_id = event["id"].as_str().unwrap().to_string();
            if id == in_flight {
                held.insert(event_id.clone());
            }
            *times_sent.entry(event_id).or_default() += 1;
        }
    }
    let repeated: BTreeSet<String> = times_sent
        .iter()
        .filter(|(_, times)| **times > 1)
        .map(|(id, _)| id.clone())
        .collect();
    assert!(!held.is_empty());
    assert_eq!(
        repeated, held,
        "sent twice: exactly the unacknowledged batch"
    );
    assert!(times_sent.values().all(|times| *times <= 2));
}
