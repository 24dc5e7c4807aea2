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

/// Two API keys on `options`: `marketing` (public, segments) and `support` (public, private,
/// segments); returns them in that order.
fn two_keys(options: &mut TestOptions) -> (String, String) {
    use clerk_index::auth::{ApiKeys, AuthConfig, generate_key};
    let (marketing, marketing_hash) = generate_key();
    let (support, support_hash) = generate_key();
    options.auth = AuthConfig {
        keys: ApiKeys::parse(&format!(
            "marketing public,segments {marketing_hash}\nsupport public,private,segments {support_hash}\n"
        ))
        .unwrap(),
        allow_unauthenticated: false,
        sensitive: None,
    };
    (marketing, support)
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

    // The history: a day per period from the creation to now, ending at the current size.
    let history = client
        .get_segment_history(proto::GetSegmentHistoryRequest {
            name: "lapsing".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(history.size, listed.len() as u64);
    assert_eq!(history.periods.len(), 31, "{:?}", history.periods);
    assert_eq!(history.periods.last().unwrap().size, history.size);
    let moves: u64 = history.periods.iter().map(|p| p.entered + p.exited).sum();
    assert_eq!(moves as usize, moved + missed.len());
    // The command line prints the same periods, and a sparkline above its table.
    let cli = |format: &str| {
        std::process::Command::new(env!("CARGO_BIN_EXE_clerk-index"))
            .args([
                "segments",
                "history",
                "lapsing",
                "--server",
                &server.grpc_url,
            ])
            .args(["-o", format])
            .output()
            .unwrap()
    };
    let printed: serde_json::Value = serde_json::from_slice(&cli("json").stdout).unwrap();
    assert_eq!(
        printed["periods"].as_array().unwrap().len(),
        31,
        "{printed}"
    );
    let table = String::from_utf8(cli("table").stdout).unwrap();
    let first = table.lines().next().unwrap();
    assert!(
        first.starts_with(&format!("size {}  ", history.size)),
        "{table}"
    );
    assert_eq!(
        first.split("  ").nth(1).unwrap().chars().count(),
        31,
        "{table}"
    );

    // Metrics: the time events this run recorded, and the ticks.
    let metrics = reqwest::get(format!("{}/metrics", server.http_url))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let sample = |prefix: &str| -> f64 {
        (metrics.lines())
            .find(|line| line.starts_with(prefix))
            .and_then(|line| line.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {prefix} in {metrics}"))
    };
    assert_eq!(
        sample(r#"clerk_index_segment_events_total{cause="time"}"#) as usize,
        missed.len()
    );
    assert!(sample("clerk_index_segment_ticks_total") >= 1.0);
    assert_eq!(sample(r#"clerk_index_segments{kind="time_driven"}"#), 1.0);
    assert!(sample("clerk_index_segment_clock_lag_seconds") < 86_400.0);
    server.stop().await;
}

/// ValidateFilter (and CreateSegment, which reports the same warnings) against what users hold,
/// for a key that reads public metadata only and one that reads private metadata too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn validate_filter_warns_about_typos_type_mismatches_and_relative_times() {
    use clerk_index::api::proto::filter_warning::Code;
    use clerk_index::api::proto::user_index_client::UserIndexClient;
    use common::with_header;
    let dir = tempfile::tempdir().unwrap();
    let fake = RunningFakeClerk::start(FakeClerkConfig::new(Population::new(300))).await;
    let mut options = TestOptions::new(&fake.url);
    let (marketing, support) = two_keys(&mut options);
    let server = TestServer::start(dir.path(), options).await;
    server.wait_serving().await;
    let channel = server.channel().await;
    let bearer = |key: &str| Some(format!("Bearer {key}"));
    let mut public = UserIndexClient::new(with_header(channel.clone(), bearer(&marketing)));
    let mut private = UserIndexClient::new(with_header(channel.clone(), bearer(&support)));
    let validate = async |client: &mut UserIndexClient<common::Authed>, text: &str| {
        client
            .validate_filter(proto::ValidateFilterRequest {
                filter: expression(text),
            })
            .await
            .map(|r| r.into_inner())
    };

    let typo = r#"banned = false AND public.membership_teir = "gold""#;
    let answer = validate(&mut public, typo).await.unwrap();
    assert_eq!(
        answer.expression,
        r#"banned = false AND public.membership_teir = "gold""#
    );
    assert_eq!(answer.warnings.len(), 1, "{:?}", answer.warnings);
    let warning = &answer.warnings[0];
    assert_eq!(warning.code, Code::UnknownPath as i32);
    assert_eq!(
        (warning.path.as_str(), warning.position),
        ("public.membership_teir", 19)
    );
    assert_eq!(
        warning.suggestions,
        vec!["public.membership_tier".to_string()]
    );
    assert_eq!(answer.required_scopes, vec!["public".to_string()]);
    assert!(!answer.time_driven);
    // The tree reads back as the same filter.
    let again = validate(&mut public, "").await.unwrap();
    assert!(again.expression.is_empty() && again.warnings.is_empty());
    let tree = public
        .validate_filter(proto::ValidateFilterRequest {
            filter: Some(proto::FilterSpec {
                spec: Some(proto::filter_spec::Spec::Tree(answer.tree.clone().unwrap())),
            }),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(tree.expression, answer.expression);

    let mismatch = validate(&mut public, r#"public.points = "5""#)
        .await
        .unwrap();
    assert_eq!(mismatch.warnings.len(), 1, "{:?}", mismatch.warnings);
    assert_eq!(mismatch.warnings[0].code, Code::TypeMismatch as i32);

    let timed = validate(&mut public, "last_active_at < now-30d")
        .await
        .unwrap();
    assert!(timed.time_driven);
    assert_eq!(timed.warnings[0].code, Code::TimeDriven as i32);

    // Private paths: refused to a key that cannot read them, and never suggested to it.
    let denied = validate(&mut public, "private.ltv > 10").await.unwrap_err();
    assert_eq!(denied.code(), tonic::Code::PermissionDenied, "{denied:?}");
    let near_private = validate(&mut public, "public.lt EXISTS").await.unwrap();
    assert!(
        near_private.warnings[0]
            .suggestions
            .iter()
            .all(|s| s.starts_with("public.")),
        "{:?}",
        near_private.warnings
    );
    let ltv = validate(&mut private, "private.ltvv > 10").await.unwrap();
    assert_eq!(ltv.warnings[0].suggestions, vec!["private.ltv".to_string()]);
    assert_eq!(ltv.required_scopes, vec!["private".to_string()]);

    // A bad filter: INVALID_ARGUMENT with the position.
    let bad = validate(&mut public, "public.tier = ").await.unwrap_err();
    assert_eq!(bad.code(), tonic::Code::InvalidArgument, "{bad:?}");

    // Saving a segment reports the same warnings.
    let mut segments = SegmentsClient::new(with_header(channel, bearer(&marketing)));
    let created = segments
        .create_segment(proto::CreateSegmentRequest {
            name: "gold".into(),
            description: String::new(),
            filter: expression(typo),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(created.warnings, answer.warnings);
    let listed = segments
        .get_segment(proto::GetSegmentRequest {
            name: "gold".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(
        listed.warnings.is_empty(),
        "warnings are reported when saving only"
    );
    server.stop().await;
}

/// WatchSegments: several segments on one stream in sequence order; with no names, every
/// segment the key may read (a private one left out); named ones end after their deletion.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_segments_follows_several_or_every_readable_segment_on_one_stream() {
    use common::{Authed, with_header};
    let dir = tempfile::tempdir().unwrap();
    let population = Population::new(500);
    let anchor = population.anchor_ms;
    let fake = RunningFakeClerk::start(FakeClerkConfig::new(population)).await;
    let clock = Clock::fake(anchor);
    let mut options = TestOptions::new(&fake.url);
    options.clock = clock.clone();
    options.segment_time_resolution_ms = 50;
    let (marketing, support) = two_keys(&mut options);
    let server = TestServer::start(dir.path(), options).await;
    server.wait_serving().await;
    let channel = server.channel().await;
    let client = |key: &str| {
        SegmentsClient::new(with_header(channel.clone(), Some(format!("Bearer {key}"))))
    };
    let (mut public, mut private) = (client(&marketing), client(&support));
    for (name, filter) in [
        ("idle-30", "last_active_at < now-30d"),
        ("idle-40", "last_active_at < now-40d"),
    ] {
        public
            .create_segment(proto::CreateSegmentRequest {
                name: name.into(),
                description: String::new(),
                filter: expression(filter),
            })
            .await
            .unwrap();
    }
    private
        .create_segment(proto::CreateSegmentRequest {
            name: "idle-valuable".into(),
            description: String::new(),
            filter: expression("last_active_at < now-30d AND private.ltv >= 0"),
        })
        .await
        .unwrap();
    let watch = async |client: &mut SegmentsClient<Authed>, names: &[&str]| {
        client
            .watch_segments(proto::WatchSegmentsRequest {
                names: names.iter().map(|n| n.to_string()).collect(),
                after_sequence: None,
            })
            .await
            .map(|r| r.into_inner())
    };
    let mut every = watch(&mut public, &[]).await.unwrap();
    let mut named = watch(&mut public, &["idle-40", "idle-30"]).await.unwrap();
    let mut one = watch(&mut public, &["idle-40"]).await.unwrap();
    let mut all_private = watch(&mut private, &[]).await.unwrap();
    let denied = watch(&mut public, &["idle-30", "idle-valuable"])
        .await
        .unwrap_err();
    assert_eq!(denied.code(), tonic::Code::PermissionDenied, "{denied:?}");
    let missing = watch(&mut public, &["idle-30", "nope"]).await.unwrap_err();
    assert_eq!(missing.code(), tonic::Code::NotFound, "{missing:?}");
    let too_many: Vec<String> = (0..1_001).map(|n| format!("s{n}")).collect();
    let too_many: Vec<&str> = too_many.iter().map(String::as_str).collect();
    let refused = watch(&mut public, &too_many).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::InvalidArgument, "{refused:?}");

    clock.advance(20 * DAY);
    // One tick moves them all: wait for its first event, then take the rest.
    let ticked = async |watch: &mut tonic::Streaming<proto::SegmentEvent>| {
        let first = tokio::time::timeout(Duration::from_secs(10), watch.message())
            .await
            .expect("an event within 10 s")
            .unwrap()
            .unwrap();
        let mut events = vec![first];
        events.extend(drain(watch, Duration::from_millis(300)).await);
        events
    };
    let every_events = ticked(&mut every).await;
    let named_events = ticked(&mut named).await;
    let one_events = ticked(&mut one).await;
    let private_events = ticked(&mut all_private).await;
    let segments_of = |events: &[proto::SegmentEvent]| -> BTreeSet<String> {
        events.iter().map(|e| e.segment.clone()).collect()
    };
    assert_eq!(
        segments_of(&every_events),
        BTreeSet::from(["idle-30".to_string(), "idle-40".to_string()])
    );
    assert!(segments_of(&private_events).contains("idle-valuable"));
    assert!(
        every_events
            .windows(2)
            .all(|w| w[0].sequence < w[1].sequence)
    );
    assert_eq!(every_events, named_events);
    let only_40: Vec<_> = (every_events.iter())
        .filter(|e| e.segment == "idle-40")
        .cloned()
        .collect();
    assert!(!only_40.is_empty());
    assert_eq!(one_events, only_40);
    let without_private: Vec<_> = (private_events.into_iter())
        .filter(|e| e.segment != "idle-valuable")
        .collect();
    assert_eq!(without_private, every_events);

    // Named watches end after their last segment is deleted.
    for name in ["idle-30", "idle-40"] {
        public
            .delete_segment(proto::DeleteSegmentRequest { name: name.into() })
            .await
            .unwrap();
    }
    let ending = drain(&mut named, Duration::from_secs(5)).await;
    let deleted = segment_event::Kind::SegmentDeleted as i32;
    assert_eq!(ending.iter().filter(|e| e.kind == deleted).count(), 2);
    assert!(named.message().await.unwrap().is_none(), "the stream ended");
    server.stop().await;
}

/// `IN SEGMENT` over gRPC: queries and segments built on saved segments, their scopes inherited,
/// unknown names and cycles refused with the position, and a segment in use kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_segment_composes_saved_segments_with_their_scopes() {
    use clerk_index::api::proto::user_index_client::UserIndexClient;
    use common::{count_with, with_header};
    let dir = tempfile::tempdir().unwrap();
    let fake = RunningFakeClerk::start(FakeClerkConfig::new(Population::new(400))).await;
    let mut options = TestOptions::new(&fake.url);
    let (marketing, support) = two_keys(&mut options);
    let server = TestServer::start(dir.path(), options).await;
    server.wait_serving().await;
    let channel = server.channel().await;
    let bearer = |key: &str| Some(format!("Bearer {key}"));
    let mut public_segments = SegmentsClient::new(with_header(channel.clone(), bearer(&marketing)));
    let mut private_segments = SegmentsClient::new(with_header(channel.clone(), bearer(&support)));
    let mut users = UserIndexClient::new(with_header(channel.clone(), bearer(&marketing)));
    let create = async |client: &mut SegmentsClient<common::Authed>, name: &str, text: &str| {
        client
            .create_segment(proto::CreateSegmentRequest {
                name: name.into(),
                description: String::new(),
                filter: expression(text),
            })
            .await
    };
    create(&mut public_segments, "pro", r#"public.plan_type = "pro""#)
        .await
        .unwrap();
    create(
        &mut public_segments,
        "pro-unbanned",
        r#"IN SEGMENT "pro" AND banned = false"#,
    )
    .await
    .unwrap();
    let composed = count_with(&mut users, Some(r#"IN SEGMENT "pro-unbanned""#))
        .await
        .unwrap();
    let plain = count_with(
        &mut users,
        Some(r#"public.plan_type = "pro" AND banned = false"#),
    )
    .await
    .unwrap();
    assert_eq!(composed, plain);
    assert!(composed > 0);
    let counted = public_segments
        .count_segment(proto::CountSegmentRequest {
            name: "pro-unbanned".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .count;
    assert_eq!(counted, plain);

    // Unknown names and cycles: INVALID_ARGUMENT at the reference.
    let unknown = count_with(&mut users, Some(r#"banned = true OR IN SEGMENT "nope""#))
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), tonic::Code::InvalidArgument, "{unknown:?}");
    assert!(
        unknown.message().contains("no saved segment"),
        "{unknown:?}"
    );
    let cycle = public_segments
        .update_segment(proto::UpdateSegmentRequest {
            name: "pro".into(),
            filter: expression(r#"IN SEGMENT "pro-unbanned""#),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(cycle.code(), tonic::Code::InvalidArgument, "{cycle:?}");
    assert!(
        cycle.message().contains("pro -> pro-unbanned -> pro"),
        "{cycle:?}"
    );

    // Scopes are inherited: a segment on a private one needs `private`, to use and to see.
    create(&mut private_segments, "valuable", "private.ltv > 100")
        .await
        .unwrap();
    let denied = create(
        &mut public_segments,
        "valuable-pro",
        r#"IN SEGMENT "valuable" AND IN SEGMENT "pro""#,
    )
    .await
    .unwrap_err();
    assert_eq!(denied.code(), tonic::Code::PermissionDenied, "{denied:?}");
    let built = create(
        &mut private_segments,
        "valuable-pro",
        r#"IN SEGMENT "valuable" AND IN SEGMENT "pro""#,
    )
    .await
    .unwrap()
    .into_inner();
    assert_eq!(
        built.required_scopes,
        vec!["public".to_string(), "private".to_string()]
    );
    let hidden = count_with(&mut users, Some(r#"IN SEGMENT "valuable-pro""#))
        .await
        .unwrap_err();
    assert_eq!(hidden.code(), tonic::Code::PermissionDenied, "{hidden:?}");

    // A segment in use is kept, naming who uses it.
    let in_use = private_segments
        .delete_segment(proto::DeleteSegmentRequest { name: "pro".into() })
        .await
        .unwrap_err();
    assert_eq!(in_use.code(), tonic::Code::FailedPrecondition, "{in_use:?}");
    assert!(
        in_use.message().contains("pro-unbanned, valuable-pro"),
        "{in_use:?}"
    );
    server.stop().await;
}
