//! Delivery end to end in one process: a real segments store over a real index, destinations
//! POSTing to a real HTTP receiver on 127.0.0.1 that verifies every signature and fails when
//! told to.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State as Extract;
use axum::http::{HeaderMap, StatusCode};
use tokio_util::sync::CancellationToken;

use super::super::{Destinations, DestinationsConfig, Spec, State, Store, load};
use crate::change::ChangeSource;
use crate::clerk::webhook::{SvixHeaders, WebhookVerifier};
use crate::clock::now_ms;
use crate::index::sandbox::{Sandbox, population_users, user_of};
use crate::query::{FilterLimits, parse_filter};
use crate::segments::{Segments, SegmentsConfig, open};
use crate::user::User;

/// What the receiver got, verified: `(webhook-id, body)` per request, in arrival order.
#[derive(Default)]
struct Received {
    requests: Mutex<Vec<(String, serde_json::Value)>>,
    secret: Mutex<Vec<String>>,
    /// Requests still to answer with 503.
    failing: AtomicUsize,
}

async fn hook(
    Extract(received): Extract<Arc<Received>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> StatusCode {
    if received
        .failing
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok()
    {
        return StatusCode::SERVICE_UNAVAILABLE;
    }
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let secrets = received.secret.lock().unwrap().clone();
    let verifier = WebhookVerifier::new(&secrets).unwrap();
    let signed = SvixHeaders {
        id: header("webhook-id"),
        timestamp: header("webhook-timestamp"),
        signature: header("webhook-signature"),
    };
    if verifier.verify(signed, &body, now_ms() / 1000).is_err() {
        return StatusCode::UNAUTHORIZED;
    }
    let json = serde_json::from_slice(&body).unwrap();
    let id = header("webhook-id").unwrap().to_string();
    received.requests.lock().unwrap().push((id, json));
    StatusCode::NO_CONTENT
}

async fn receiver() -> (String, Arc<Received>) {
    let received = Arc::new(Received::default());
    let app = axum::Router::new()
        .route("/hook", axum::routing::post(hook))
        .with_state(received.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, received)
}

struct World {
    sandbox: Sandbox,
    segments: Segments,
    users: Vec<Arc<User>>,
    clock: i64,
}

fn world(dir: &Path, segments_config: SegmentsConfig) -> World {
    let mut handle = None;
    let sandbox = Sandbox::open_at(
        &dir.join("index"),
        |index| index.writer_memory_bytes = 30 << 20,
        |index, task| {
            let (observer, segments) = open(
                &dir.join("segments"),
                index,
                segments_config,
                FilterLimits::default(),
            )
            .unwrap();
            handle = Some(segments);
            task.with_observer(Box::new(observer))
        },
    );
    let segments = Segments::new(
        handle.unwrap(),
        sandbox.writer.clone(),
        CancellationToken::new(),
    );
    World {
        sandbox,
        segments,
        users: population_users(200),
        clock: now_ms(),
    }
}

impl World {
    /// Moves users `range` to `plan`, one commit.
    async fn set_plan(&mut self, range: std::ops::Range<usize>, plan: &str) {
        let mut changed = Vec::new();
        for user in &mut self.users[range] {
            let mut json: serde_json::Value = serde_json::from_str(&user.raw_json).unwrap();
            self.clock += 1;
            json["updated_at"] = self.clock.into();
            json["public_metadata"] = serde_json::json!({ "plan_type": plan });
            *user = Arc::new(user_of(&json));
            changed.push(user.clone());
        }
        self.sandbox.upsert(&changed, ChangeSource::Webhook).await;
    }

    async fn create(&self, name: &str, filter: &str) {
        let filter = parse_filter(filter, &FilterLimits::default()).unwrap();
        self.segments
            .create(name.into(), String::new(), filter)
            .await
            .unwrap();
    }
}

fn config() -> DestinationsConfig {
    DestinationsConfig {
        allow_private: true,
        allow_http: true,
        retry_initial_delay: Duration::from_millis(10),
        retry_max_delay: Duration::from_millis(50),
        default_batch_delay: Duration::from_millis(20),
        ..DestinationsConfig::default()
    }
}

fn spec(name: &str, url: &str, segments: &[&str]) -> Spec {
    Spec {
        name: name.into(),
        url: url.into(),
        segments: segments.iter().map(|s| s.to_string()).collect(),
        batch_size: 25,
        batch_delay: None,
    }
}

/// The events received, deduplicated by id, in arrival order.
fn events_received(received: &Received) -> Vec<serde_json::Value> {
    let mut seen = BTreeSet::new();
    let requests = received.requests.lock().unwrap();
    (requests.iter())
        .filter(|(_, body)| body["type"] == "segment.events")
        .flat_map(|(_, body)| body["data"]["events"].as_array().unwrap().clone())
        .filter(|event| seen.insert(event["id"].as_str().unwrap().to_string()))
        .collect()
}

async fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    for _ in 0..500 {
        if done() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("timed out waiting for {what}");
}

#[tokio::test(flavor = "multi_thread")]
async fn events_arrive_signed_in_order_through_failures_and_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut world = world(dir.path(), SegmentsConfig::default());
    world.set_plan(0..200, "free").await;
    world.create("pro", "public.plan_type = \"pro\"").await;
    world.create("team", "public.plan_type = \"team\"").await;
    let (url, received) = receiver().await;
    received.failing.store(3, Ordering::SeqCst);
    let store = Store::open(&dir.path().join("destinations"), None).unwrap();
    let stop = CancellationToken::new();
    let destinations = Destinations::start(
        world.segments.clone(),
        config(),
        store,
        Vec::new(),
        stop.clone(),
    )
    .unwrap();
    let (created, secret) = destinations
        .create(spec("crm", &url, &["pro"]))
        .await
        .unwrap();
    *received.secret.lock().unwrap() = vec![secret];
    let start = created.delivered_through;
    world.set_plan(0..60, "pro").await;
    world.set_plan(20..40, "team").await;
    world.set_plan(30..35, "pro").await;
    let expected =
        world
            .segments
            .events_after(&BTreeSet::from(["pro".to_string()]), start, usize::MAX);
    let expected: Vec<u64> = expected
        .unwrap()
        .events
        .iter()
        .map(|e| e.sequence)
        .collect();
    assert_eq!(expected.len(), 60 + 20 + 5);
    wait_for("every event of pro", || {
        events_received(&received).len() == expected.len()
    })
    .await;
    let got: Vec<u64> = (events_received(&received).iter())
        .map(|e| e["sequence"].as_u64().unwrap())
        .collect();
    assert_eq!(
        got, expected,
        "every event of the followed segment, in order, once each"
    );
    // The failures were retried under the same message id, and counted.
    let counters = destinations.counters();
    assert_eq!(counters[0].1.failed_attempts.load(Ordering::Relaxed), 3);
    let saved = destinations.get("crm").unwrap();
    assert_eq!(saved.delivered_events, expected.len() as u64);
    assert_eq!(saved.failed_attempts, 0);
    assert_eq!(destinations.lag(&saved).0, 0);

    // A restart resumes from the saved position: only new events arrive.
    stop.cancel();
    let reloaded = load(&dir.path().join("destinations")).unwrap();
    assert_eq!(reloaded[0].delivered_through, saved.delivered_through);
    let store = Store::open(&dir.path().join("destinations"), None).unwrap();
    let destinations = Destinations::start(
        world.segments.clone(),
        config(),
        store,
        reloaded,
        CancellationToken::new(),
    )
    .unwrap();
    world.set_plan(100..110, "pro").await;
    wait_for("the events after the restart", || {
        events_received(&received).len() == expected.len() + 10
    })
    .await;

    // A rotation: both secrets sign for the overlap; the receiver knowing only the new one
    // accepts.
    let (_, rotated) = destinations.rotate_secret("crm").await.unwrap();
    *received.secret.lock().unwrap() = vec![rotated];
    world.set_plan(110..112, "pro").await;
    wait_for("the events after the rotation", || {
        events_received(&received).len() == expected.len() + 12
    })
    .await;
    let test = destinations.test("crm").await.unwrap();
    assert_eq!((test.status, test.error), (204, None));
    world.sandbox.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_paused_destination_holds_retention_until_the_cap_then_resyncs_after_its_gap() {
    let dir = tempfile::tempdir().unwrap();
    let segments_config = SegmentsConfig {
        retained_events: 100,
        held_events_max: 300,
        ..SegmentsConfig::default()
    };
    let mut world = world(dir.path(), segments_config);
    world.set_plan(0..200, "free").await;
    world.create("pro", "public.plan_type = \"pro\"").await;
    let (url, received) = receiver().await;
    let store = Store::open(&dir.path().join("destinations"), None).unwrap();
    let destinations = Destinations::start(
        world.segments.clone(),
        config(),
        store,
        Vec::new(),
        CancellationToken::new(),
    )
    .unwrap();
    let (created, secret) = destinations
        .create(spec("crm", &url, &["pro"]))
        .await
        .unwrap();
    *received.secret.lock().unwrap() = vec![secret];
    destinations.pause("crm").await.unwrap();
    // 200 events while paused: past the window of 100, within the held 300.
    world.set_plan(0..100, "pro").await;
    world.set_plan(0..100, "free").await;
    let (evicted, _) = world.segments.retained_range();
    assert!(evicted <= created.delivered_through, "held: {evicted}");
    assert!(events_received(&received).is_empty());
    destinations.resume("crm").await.unwrap();
    wait_for("the held events", || {
        events_received(&received).len() == 200
    })
    .await;
    // Past the cap the destination has a gap; a resync sends the members as a snapshot.
    destinations.pause("crm").await.unwrap();
    for _ in 0..3 {
        world.set_plan(0..100, "pro").await;
        world.set_plan(0..100, "free").await;
    }
    world.set_plan(0..7, "pro").await;
    destinations.resume("crm").await.unwrap();
    wait_for("the gap", || {
        destinations.get("crm").unwrap().state == State::Gap
    })
    .await;
    assert!(
        destinations.resume("crm").await.is_err(),
        "a gap is not resumed, it is resynced"
    );
    destinations.resync("crm").await.unwrap();
    wait_for("the snapshot", || !destinations.get("crm").unwrap().resync).await;
    let requests = received.requests.lock().unwrap().clone();
    let (_, snapshot) = requests.last().unwrap();
    assert_eq!(snapshot["type"], "segment.snapshot");
    assert_eq!(snapshot["data"]["last"], true);
    let members: BTreeSet<&str> = (snapshot["data"]["user_ids"].as_array().unwrap().iter())
        .map(|id| id.as_str().unwrap())
        .collect();
    let expected: BTreeSet<&str> = world.users[0..7].iter().map(|u| u.id.as_str()).collect();
    assert_eq!(members, expected);
    assert_eq!(destinations.get("crm").unwrap().state, State::Active);
    world.sandbox.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_receiver_down_for_the_whole_retry_window_marks_the_destination_failing() {
    let dir = tempfile::tempdir().unwrap();
    let mut world = world(dir.path(), SegmentsConfig::default());
    world.set_plan(0..200, "free").await;
    world.create("pro", "public.plan_type = \"pro\"").await;
    // A port nothing listens on.
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!(
        "http://{}/hook?token=receiver-secret",
        closed.local_addr().unwrap()
    );
    drop(closed);
    let store = Store::open(&dir.path().join("destinations"), None).unwrap();
    let config = DestinationsConfig {
        failing_after: Duration::from_millis(300),
        ..config()
    };
    let destinations = Destinations::start(
        world.segments.clone(),
        config,
        store,
        Vec::new(),
        CancellationToken::new(),
    )
    .unwrap();
    destinations
        .create(spec("crm", &url, &["pro"]))
        .await
        .unwrap();
    world.set_plan(0..3, "pro").await;
    wait_for("failing", || {
        destinations.get("crm").unwrap().state == State::Failing
    })
    .await;
    let failing = destinations.get("crm").unwrap();
    assert!(failing.failed_attempts >= 2, "{failing:?}");
    assert!(failing.last_error.as_deref().is_some_and(|e| !e.is_empty()));
    // The URL's token is not in what is listed (and logged).
    assert!(
        !failing
            .last_error
            .as_deref()
            .unwrap()
            .contains("receiver-secret"),
        "{failing:?}"
    );
    let test = destinations.test("crm").await.unwrap();
    assert_eq!(test.status, 0);
    assert!(test.error.is_some());
    let resumed = destinations.resume("crm").await.unwrap();
    assert_eq!((resumed.state, resumed.failed_attempts), (State::Active, 0));
}
