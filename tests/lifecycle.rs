//! Lifecycle segmentation over real gRPC: time-driven segments moved by a fake clock (listing,
//! counting and events agree at the segments' clock, across a restart during which users
//! crossed).

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use clerk_index::api::proto::segments_client::SegmentsClient;
use clerk_index::api::proto::{self, segment_event};
use clerk_index::clerk::fake::{FakeClerkConfig, Population};
use clerk_index::clock::Clock;
use common::{RunningFakeClerk, TestOptions, TestServer, expression};
use tonic::transport::Channel;

const DAY: i64 = 86_400_000;

async fn start(fake: &RunningFakeClerk, dir: &std::path::Path, clock: &Clock) -> TestServer {
    let mut options = TestOptions::new(&fake.url);
    options.clock = clock.clone();
    options.segment_time_resolution_ms = 50;
    let server = TestServer::start(dir, options).await;
    server.wait_serving().await;
    server
}

/// The members of a segment and the event sequence the listing includes.
async fn members(client: &mut SegmentsClient<Channel>, name: &str) -> (BTreeSet<String>, u64) {
    let mut stream = client
        .list_segment_members(proto::ListSegmentMembersRequest {
            name: name.into(),
            fields: vec!["id".into()],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let (mut ids, mut sequence) = (BTreeSet::new(), 0);
    while let Some(chunk) = stream.message().await.unwrap() {
        sequence = chunk.event_sequence.max(sequence);
        ids.extend(chunk.users.into_iter().map(|u| u.id));
    }
    (ids, sequence)
}

async fn count(client: &mut SegmentsClient<Channel>, name: &str) -> u64 {
    client
        .count_segment(proto::CountSegmentRequest {
            name: name.into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .count
}

/// Every event of the watch until none arrives for `quiet`.
async fn drain(
    watch: &mut tonic::Streaming<proto::SegmentEvent>,
    quiet: Duration,
) -> Vec<proto::SegmentEvent> {
    let mut events = Vec::new();
    while let Ok(event) = tokio::time::timeout(quiet, watch.message()).await {
        match event.unwrap() {
            Some(event) => events.push(event),
            None => break,
        }
    }
    events
}

/// Replays events onto `listed` until it equals a fresh listing with no event in flight (ticks
/// run every 50 ms, but a loaded machine may take longer); returns the events seen.
async fn settle(
    watch: &mut tonic::Streaming<proto::SegmentEvent>,
    client: &mut SegmentsClient<Channel>,
    listed: &mut BTreeSet<String>,
) -> Vec<proto::SegmentEvent> {
    let mut seen = Vec::new();
    for _ in 0..60 {
        let events = drain(watch, Duration::from_millis(150)).await;
        replay(listed, &events);
        let quiet = events.is_empty();
        seen.extend(events);
        if quiet && !seen.is_empty() && members(client, "lapsing").await.0 == *listed {
            break;
        }
    }
    assert_eq!(members(client, "lapsing").await.0, *listed);
    seen
}

fn replay(members: &mut BTreeSet<String>, events: &[proto::SegmentEvent]) {
    for event in events {
        assert_eq!(event.cause, "time", "{event:?}");
        if event.kind == segment_event::Kind::Entered as i32 {
            assert!(members.insert(event.user_id.clone()), "{event:?}");
        } else if event.kind == segment_event::Kind::Exited as i32 {
            assert!(members.remove(&event.user_id), "{event:?}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_time_driven_segment_moves_with_the_clock_and_catches_up_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let population = Population::new(1_000);
    let anchor = population.anchor_ms;
    let fake = RunningFakeClerk::start(FakeClerkConfig::new(population)).await;
    let clock = Clock::fake(anchor);
    let server = start(&fake, dir.path(), &clock).await;
    let mut client = SegmentsClient::new(server.channel().await);
    client
        .create_segment(proto::CreateSegmentRequest {
            name: "lapsing".into(),
            description: "inactive 14 to 30 days".into(),
            filter: expression("last_active_at BETWEEN now-30d AND now-14d"),
        })
        .await
        .unwrap();
    let (mut listed, sequence) = members(&mut client, "lapsing").await;
    let mut watch = client
        .watch_segment(proto::WatchSegmentRequest {
            name: "lapsing".into(),
            after_sequence: Some(sequence),
        })
        .await
        .unwrap()
        .into_inner();
    // Ten days, a day at a time: each day's crossings arrive as events.
    let mut moved = 0;
    for _ in 0..10 {
        clock.advance(DAY);
        moved += settle(&mut watch, &mut client, &mut listed).await.len();
        assert_eq!(count(&mut client, "lapsing").await, listed.len() as u64);
    }
    assert!(moved > 0, "nobody crossed in ten days");
    let last = drain(&mut watch, Duration::from_millis(100)).await;
    assert!(last.is_empty());
    let (_, sequence) = members(&mut client, "lapsing").await;
    server.stop().await;

    // Twenty days pass while the service is down.
    clock.advance(20 * DAY);
    let server = start(&fake, dir.path(), &clock).await;
    let mut client = SegmentsClient::new(server.channel().await);
    let mut watch = client
        .watch_segment(proto::WatchSegmentRequest {
            name: "lapsing".into(),
            after_sequence: Some(sequence),
        })
        .await
        .unwrap()
        .into_inner();
    let missed = settle(&mut watch, &mut client, &mut listed).await;
    assert!(!missed.is_empty(), "no crossing in twenty days");
    // Each at its own instant, in order, within the pause.
    assert!(
        missed
            .windows(2)
            .all(|w| w[0].change_time_ms <= w[1].change_time_ms)
    );
    assert!(missed.iter().all(|e| e.change_time_ms > anchor + 10 * DAY));
    // Emitted once: later ticks at the same instant add nothing.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        drain(&mut watch, Duration::from_millis(100))
            .await
            .is_empty()
    );
    server.stop().await;
}
