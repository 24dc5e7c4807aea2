//! Segments against the index: membership events, edits, the log across restarts, watches.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use proptest::prelude::*;
use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use tokio_util::sync::CancellationToken;

use super::core::{MAX_DESCRIPTION_BYTES, check_description, check_name, lock, member_ids};
use super::*;
use crate::change::{ChangeSource, UserChange};
use crate::clerk::fake::Population;
use crate::clock::now_ms;
use crate::index::UserIndex;
use crate::index::sandbox::{Sandbox, population_users, user_of};
use crate::query::parse_filter;
use crate::query::{Filter, FilterLimits};
use crate::user::User;

mod composition;
mod history;
mod organizations;
mod time;

struct Harness {
    sandbox: Sandbox,
    index: UserIndex,
    segments: Segments,
}

fn start(dir: &Path, config: SegmentsConfig) -> Harness {
    let mut handle = None;
    let sandbox = Sandbox::open_at(
        &dir.join("index"),
        |index| index.writer_memory_bytes = 30 << 20,
        |index, task| {
            let (observer, segments) = open(
                &dir.join("segments"),
                index,
                config,
                FilterLimits::default(),
            )
            .unwrap();
            handle = Some(segments);
            task.with_observer(Box::new(observer))
        },
    );
    let handle = handle.expect("the writer task was attached");
    let segments = Segments::new(handle, sandbox.writer.clone(), CancellationToken::new());
    Harness {
        index: sandbox.index.clone(),
        sandbox,
        segments,
    }
}

impl Harness {
    async fn stop(self) {
        self.sandbox.close().await;
    }

    async fn upsert(&self, users: &[Arc<User>]) {
        self.sandbox.upsert(users, ChangeSource::Webhook).await;
    }

    fn members(&self, filter: &Filter) -> BTreeSet<String> {
        let snapshot = self.index.snapshot();
        member_ids(&snapshot, filter, now_ms())
            .unwrap()
            .into_iter()
            .collect()
    }

    /// Every retained event of a segment after `after`, without waiting.
    async fn events_after(&self, name: &str, after: u64) -> Vec<Arc<SegmentEvent>> {
        let mut watch = self
            .segments
            .watch(name, Some(after), Box::new(|_| true))
            .unwrap();
        let mut events = Vec::new();
        while let Ok(Some(event)) =
            tokio::time::timeout(Duration::from_millis(50), watch.recv()).await
        {
            events.push(event.unwrap());
        }
        events
    }
}

fn users(count: usize) -> Vec<Arc<User>> {
    population_users(count)
}

/// The user edited by `edit`, with the next `updated_at` of `clock`.
fn edited(user: &User, clock: &mut i64, edit: impl FnOnce(&mut serde_json::Value)) -> Arc<User> {
    let mut json: serde_json::Value = serde_json::from_str(&user.raw_json).unwrap();
    *clock += 1;
    json["updated_at"] = (*clock).into();
    edit(&mut json);
    Arc::new(user_of(&json))
}

/// The user with `banned` set, one tick later.
fn banned(user: &User, clock: &mut i64, banned: bool) -> Arc<User> {
    edited(user, clock, |json| json["banned"] = banned.into())
}

/// The user with randomly changed metadata and a newer `updated_at`.
fn changed(user: &User, rng: &mut ChaCha8Rng, clock: &mut i64) -> Arc<User> {
    edited(user, clock, |json| {
        let public = &mut json["public_metadata"];
        if !public.is_object() {
            *public = serde_json::json!({});
        }
        match rng.random_range(0..4) {
            0 => {
                public["plan_type"] =
                    (*["free", "pro", "enterprise", "team"].choose(rng).unwrap()).into()
            }
            1 => public["points"] = rng.random_range(0..50_000).into(),
            2 => {
                public["membership_tier"] =
                    (*["gold", "silver", "bronze"].choose(rng).unwrap()).into()
            }
            _ => json["banned"] = rng.random_bool(0.5).into(),
        }
    })
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 16, ..ProptestConfig::default() })]

    /// The events of the in-memory matcher, replayed onto the members at creation, always give
    /// exactly the users the index finds with the same filter.
    #[test]
    fn events_replayed_onto_the_first_members_equal_the_index(seed in any::<u64>()) {
        runtime().block_on(async move {
            let dir = tempfile::tempdir().unwrap();
            let harness = start(dir.path(), SegmentsConfig::default());
            let mut population = users(300);
            harness.upsert(&population).await;
            let filter = crate::index::tests::valid_filter(seed, &population);
            harness.segments.create("s".into(), String::new(), filter.clone()).await.unwrap();
            let mut members = harness.members(&filter);
            let mut after = harness.segments.last_sequence();
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            let mut clock = Population::new(1).anchor_ms;
            let mut deleted: Vec<Arc<User>> = Vec::new();
            for _round in 0..6 {
                let mut changes = Vec::new();
                for _ in 0..rng.random_range(1..40) {
                    let i = rng.random_range(0..population.len());
                    match rng.random_range(0..10) {
                        0 => {
                            clock += 1;
                            deleted.push(population[i].clone());
                            changes.push(UserChange::Delete {
                                user_id: population[i].id.clone(),
                                deleted_at_ms: clock,
                                source: ChangeSource::Webhook,
                            });
                        }
                        1 if !deleted.is_empty() => {
                            // A deleted user's late update is ignored: no event either.
                            let gone = deleted.choose(&mut rng).unwrap().clone();
                            changes.push(UserChange::Upsert {
                                user: changed(&gone, &mut rng, &mut 0),
                                source: ChangeSource::Webhook,
                            });
                        }
                        _ => {
                            population[i] = changed(&population[i], &mut rng, &mut clock);
                            changes.push(UserChange::Upsert {
                                user: population[i].clone(),
                                source: ChangeSource::Reconcile,
                            });
                        }
                    }
                }
                harness.sandbox.apply(changes).await;
                for event in harness.events_after("s", after).await {
                    after = event.sequence;
                    match event.kind {
                        EventKind::Entered => prop_assert!(members.insert(event.user_id.clone()), "entered twice: {:?}", event),
                        EventKind::Exited => prop_assert!(members.remove(&event.user_id), "exited without entering: {:?}", event),
                        other => prop_assert!(false, "unexpected {:?}", other),
                    }
                }
                prop_assert_eq!(&members, &harness.members(&filter), "filter {}", filter);
            }
            harness.stop().await;
            Ok(())
        })?;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn editing_a_filter_emits_the_membership_difference() {
    let dir = tempfile::tempdir().unwrap();
    let harness = start(dir.path(), SegmentsConfig::default());
    let population = users(300);
    harness.upsert(&population).await;
    let limits = FilterLimits::default();
    let free = parse_filter("public.plan_type = \"free\"", &limits).unwrap();
    let pro = parse_filter("public.plan_type IN [\"pro\", \"free\"]", &limits).unwrap();
    let created = harness
        .segments
        .create("plan".into(), "d".into(), free.clone())
        .await
        .unwrap();
    assert_eq!(created.version, 1);
    let start = harness.segments.last_sequence();
    let updated = harness
        .segments
        .update("plan".into(), None, Some(pro.clone()), 1)
        .await
        .unwrap();
    assert_eq!((updated.version, updated.description.as_str()), (2, "d"));
    let events = harness.events_after("plan", start).await;
    assert_eq!(events[0].kind, EventKind::SegmentUpdated);
    let entered: BTreeSet<String> = events[1..]
        .iter()
        .map(|e| {
            assert_eq!(
                (e.kind, e.cause.as_str()),
                (EventKind::Entered, "segment_edit")
            );
            e.user_id.clone()
        })
        .collect();
    let expected: BTreeSet<String> = harness
        .members(&pro)
        .difference(&harness.members(&free))
        .cloned()
        .collect();
    assert!(!expected.is_empty());
    assert_eq!(entered, expected);
    // A stale version is refused and changes nothing.
    let error = harness
        .segments
        .update("plan".into(), Some("x".into()), None, 1)
        .await
        .unwrap_err();
    assert!(
        matches!(error, SegmentError::VersionMismatch { actual: 2, .. }),
        "{error}"
    );
    assert_eq!(harness.segments.get("plan").unwrap().0.description, "d");
    harness.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn segments_and_their_events_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let population = users(200);
    let limits = FilterLimits::default();
    let filter = parse_filter("banned = true", &limits).unwrap();
    let (last, events_before) = {
        let harness = start(dir.path(), SegmentsConfig::default());
        harness.upsert(&population).await;
        harness
            .segments
            .create("banned".into(), "b".into(), filter.clone())
            .await
            .unwrap();
        let mut clock = Population::new(1).anchor_ms;
        let bans: Vec<Arc<User>> = population
            .iter()
            .filter(|u| !u.banned)
            .take(5)
            .map(|u| banned(u, &mut clock, true))
            .collect();
        harness.upsert(&bans).await;
        let events = harness.events_after("banned", 0).await;
        let last = harness.segments.last_sequence();
        harness.stop().await;
        (last, events)
    };
    assert_eq!(events_before.len(), 6, "{events_before:?}");
    let harness = start(dir.path(), SegmentsConfig::default());
    let (definition, _) = harness.segments.get("banned").unwrap();
    assert_eq!(
        (definition.filter.as_str(), definition.description.as_str()),
        ("banned = true", "b")
    );
    assert_eq!(harness.segments.last_sequence(), last);
    assert_eq!(harness.events_after("banned", 0).await, events_before);
    // Sequence numbers go on from where they were.
    harness.segments.delete("banned".into()).await.unwrap();
    assert!(harness.segments.list().is_empty());
    assert_eq!(harness.segments.last_sequence(), last + 1);
    harness.stop().await;
}

/// Printing escapes control characters, so a definition within the length limit can be stored
/// as longer text; it must still load after a restart (found by fuzzing the filter round trip).
#[tokio::test(flavor = "multi_thread")]
async fn a_definition_whose_text_outgrows_the_length_limit_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let limits = FilterLimits::default();
    let text = format!("public.note = \"{}\"", "\n".repeat(limits.max_length - 20));
    let filter = parse_filter(&text, &limits).unwrap();
    let harness = start(dir.path(), SegmentsConfig::default());
    harness
        .segments
        .create("notes".into(), String::new(), filter.clone())
        .await
        .unwrap();
    let (saved, _) = harness.segments.get("notes").unwrap();
    assert!(
        saved.filter.len() > limits.max_length,
        "{}",
        saved.filter.len()
    );
    harness.stop().await;
    let harness = start(dir.path(), SegmentsConfig::default());
    let (_, reloaded) = harness
        .segments
        .get("notes")
        .expect("the segment after a restart");
    assert_eq!(reloaded.unplaced(), filter.unplaced());
    harness.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn events_past_the_index_checkpoint_are_cut_off_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let limits = FilterLimits::default();
    let harness = start(dir.path(), SegmentsConfig::default());
    harness.upsert(&users(20)).await;
    harness
        .segments
        .create(
            "all".into(),
            String::new(),
            parse_filter("id EXISTS", &limits).unwrap(),
        )
        .await
        .unwrap();
    let committed = harness.segments.last_sequence();
    harness.stop().await;
    // As if a crash hit between the log's fsync and the index commit: a record the index does
    // not know about.
    let log = dir.path().join("segments/events.jsonl");
    let mut text = std::fs::read_to_string(&log).unwrap();
    text.push_str(&format!(
        "{{\"record\":\"event\",\"sequence\":{},\"segment\":\"all\",\"kind\":\"exited\",\"user_id\":\"u\",\"change_time_ms\":1,\"recorded_at_ms\":1,\"cause\":\"webhook\"}}\n{{\"record\":\"ev",
        committed + 1
    ));
    std::fs::write(&log, text).unwrap();
    let harness = start(dir.path(), SegmentsConfig::default());
    assert_eq!(harness.segments.last_sequence(), committed);
    assert!(
        harness
            .events_after("all", 0)
            .await
            .iter()
            .all(|e| e.sequence <= committed)
    );
    harness.stop().await;
    assert!(
        !std::fs::read_to_string(&log)
            .unwrap()
            .contains("\"user_id\":\"u\"")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn watchers_get_live_events_replays_and_a_clear_error_when_too_far_behind() {
    let dir = tempfile::tempdir().unwrap();
    let limits = FilterLimits::default();
    let config = SegmentsConfig {
        retained_events: 10,
        ..SegmentsConfig::default()
    };
    let harness = start(dir.path(), config.clone());
    let population = users(100);
    harness.upsert(&population).await;
    harness
        .segments
        .create(
            "banned".into(),
            String::new(),
            parse_filter("banned = true", &limits).unwrap(),
        )
        .await
        .unwrap();
    let mut live = harness
        .segments
        .watch("banned", None, Box::new(|_| true))
        .unwrap();
    let mut clock = Population::new(1).anchor_ms;
    let flips: Vec<Arc<User>> = population
        .iter()
        .filter(|u| !u.banned)
        .take(15)
        .map(|u| banned(u, &mut clock, true))
        .collect();
    harness.upsert(&flips).await;
    for flip in &flips {
        let event = live.recv().await.unwrap().unwrap();
        assert_eq!(
            (event.kind, event.user_id.as_str()),
            (EventKind::Entered, flip.id.as_str())
        );
    }
    // Only the last 10 events are retained.
    let error = harness
        .segments
        .watch("banned", Some(1), Box::new(|_| true))
        .unwrap_err();
    assert!(matches!(error, SegmentError::OutOfRange(_)), "{error}");
    let last = harness.segments.last_sequence();
    assert_eq!(harness.events_after("banned", last - 3).await.len(), 3);
    assert!(matches!(
        harness
            .segments
            .watch("banned", Some(last + 1), Box::new(|_| true)),
        Err(SegmentError::OutOfRange(_))
    ));
    // Deleting the segment ends the stream after a last event.
    harness.segments.delete("banned".into()).await.unwrap();
    let event = live.recv().await.unwrap().unwrap();
    assert_eq!(event.kind, EventKind::SegmentDeleted);
    assert!(live.recv().await.is_none());
    assert!(matches!(
        harness.segments.watch("banned", None, Box::new(|_| true)),
        Err(SegmentError::NotFound(_))
    ));
    harness.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn compaction_keeps_definitions_and_the_retained_window() {
    let dir = tempfile::tempdir().unwrap();
    let limits = FilterLimits::default();
    let config = SegmentsConfig {
        retained_events: 5,
        ..SegmentsConfig::default()
    };
    let harness = start(dir.path(), config.clone());
    let population = users(200);
    harness.upsert(&population).await;
    harness
        .segments
        .create(
            "keep".into(),
            "k".into(),
            parse_filter("banned = true", &limits).unwrap(),
        )
        .await
        .unwrap();
    // Flip users in and out until the file must have been compacted (> 2 * 5 + 1 + 1000 lines).
    let mut clock = Population::new(1).anchor_ms;
    let mut current = population[..50].to_vec();
    for round in 0..25 {
        current = current
            .iter()
            .map(|user| banned(user, &mut clock, round % 2 == 0))
            .collect();
        harness.upsert(&current).await;
    }
    let last = harness.segments.last_sequence();
    assert!(last > 1_000);
    let tail = harness.events_after("keep", last - 5).await;
    harness.stop().await;
    let lines = std::fs::read_to_string(dir.path().join("segments/events.jsonl"))
        .unwrap()
        .lines()
        .count();
    assert!(lines < 1_100, "{lines} lines: the log was never compacted");
    let harness = start(dir.path(), config);
    assert_eq!(harness.segments.get("keep").unwrap().0.description, "k");
    assert_eq!(harness.segments.last_sequence(), last);
    assert_eq!(harness.events_after("keep", last - 5).await, tail);
    assert!(
        harness
            .segments
            .watch("keep", Some(last - 6), Box::new(|_| true))
            .is_err()
    );
    harness.stop().await;
}

#[test]
fn names_are_checked() {
    for good in ["a", "vip-users_2", "0day"] {
        assert!(check_name(good).is_ok(), "{good}");
    }
    for bad in ["", "-a", "A", "a b", "ä", &"x".repeat(65)] {
        assert!(check_name(bad).is_err(), "{bad}");
    }
    let huge = check_name(&"x".repeat(1 << 20)).unwrap_err().to_string();
    assert!(huge.len() < 200, "not repeated: {} bytes", huge.len());
    assert!(check_description(&"d".repeat(MAX_DESCRIPTION_BYTES)).is_ok());
    assert!(check_description(&"d".repeat(3 << 20)).is_err());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_watch_ends_denied_before_the_events_of_a_definition_it_may_not_read() {
    let dir = tempfile::tempdir().unwrap();
    let limits = FilterLimits::default();
    let harness = start(dir.path(), SegmentsConfig::default());
    harness.upsert(&users(200)).await;
    let public = parse_filter("banned = true", &limits).unwrap();
    let private = parse_filter("private.ltv > 900", &limits).unwrap();
    let saved = harness
        .segments
        .create("s".into(), String::new(), public)
        .await
        .unwrap();
    let public_only: MayWatch = Box::new(|filter| !filter.to_string().contains("private."));
    let mut watch = harness.segments.watch("s", None, public_only).unwrap();
    harness
        .segments
        .update("s".into(), None, Some(private), saved.version)
        .await
        .unwrap();
    let ended = watch.recv().await.unwrap().unwrap_err();
    assert!(matches!(ended, SegmentError::Denied(_)), "{ended}");
    assert!(watch.recv().await.is_none(), "no event of the new filter");
    // Nor can a replay from before the change, or a new watch, see it.
    let public_only: MayWatch = Box::new(|filter| !filter.to_string().contains("private."));
    let mut replay = harness.segments.watch("s", Some(1), public_only).unwrap();
    assert!(matches!(
        replay.recv().await.unwrap(),
        Err(SegmentError::Denied(_))
    ));
    let public_only: MayWatch = Box::new(|filter| !filter.to_string().contains("private."));
    assert!(matches!(
        harness.segments.watch("s", None, public_only),
        Err(SegmentError::Denied(_))
    ));
    harness.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dropped_watcher_lets_go_of_its_subscription_without_waiting_for_an_event() {
    let dir = tempfile::tempdir().unwrap();
    let harness = start(dir.path(), SegmentsConfig::default());
    let filter = parse_filter("banned = true", &FilterLimits::default()).unwrap();
    harness
        .segments
        .create("quiet".into(), String::new(), filter.clone())
        .await
        .unwrap();
    let too_long = harness
        .segments
        .create("long".into(), "d".repeat(3 << 20), filter.clone())
        .await;
    assert!(matches!(too_long, Err(SegmentError::Invalid { .. })));
    let subscribers = || lock(&harness.segments.core).live.receiver_count();
    let before = subscribers();
    let watches: Vec<_> = (0..100)
        .map(|_| {
            harness
                .segments
                .watch("quiet", None, Box::new(|_| true))
                .unwrap()
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(subscribers(), before + 100);
    drop(watches);
    // No event arrives on the segment, yet every watch task ends.
    for _ in 0..200 {
        if subscribers() == before {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(subscribers(), before);
    harness.stop().await;
}
