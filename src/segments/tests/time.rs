//! Time-driven segments: a fake clock moves "now", ticks record who crossed, and the events
//! always add up to the filter evaluated at the segments' clock.

use super::*;
use crate::clock::Clock;
use crate::query::time::pinned;

const DAY: i64 = 86_400_000;

fn config(clock: &Clock) -> SegmentsConfig {
    SegmentsConfig {
        time_resolution: Duration::from_secs(3_600),
        clock: clock.clone(),
        ..SegmentsConfig::default()
    }
}

/// Replays events onto `members`, refusing an entry of a member or an exit of a non-member.
fn replay(members: &mut BTreeSet<String>, events: &[Arc<SegmentEvent>]) {
    for event in events {
        match event.kind {
            EventKind::Entered => assert!(members.insert(event.user_id.clone()), "{event:?}"),
            EventKind::Exited => assert!(members.remove(&event.user_id), "{event:?}"),
            _ => {}
        }
    }
}

impl Harness {
    /// The members the index finds at the segments' clock.
    fn members_at_clock(&self, filter: &Filter) -> BTreeSet<String> {
        self.members(&pinned(filter, self.segments.clock_ms()))
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn users_enter_at_the_instant_they_cross_and_the_events_add_up_to_the_filter() {
    let dir = tempfile::tempdir().unwrap();
    let anchor = Population::new(1).anchor_ms;
    let clock = Clock::fake(anchor);
    let harness = start(dir.path(), config(&clock));
    let population = users(400);
    harness.upsert(&population).await;
    let filter = parse_filter("last_active_at < now-30d", &FilterLimits::default()).unwrap();
    harness
        .segments
        .create("dormant".into(), String::new(), filter.clone())
        .await
        .unwrap();
    let mut members = harness.members_at_clock(&filter);
    let mut after = harness.segments.last_sequence();
    let mut entered = 0;
    for _ in 0..20 {
        let from = harness.segments.clock_ms();
        clock.advance(DAY);
        let events = harness.segments.tick().await.unwrap();
        let seen = harness.events_after("dormant", after).await;
        assert_eq!(events, seen.len());
        for event in &seen {
            assert_eq!(
                (event.kind, event.cause.as_str()),
                (EventKind::Entered, "time")
            );
            let user = population.iter().find(|u| u.id == event.user_id).unwrap();
            let crossing = user.last_active_at.unwrap() + 30 * DAY + 1;
            assert_eq!(event.change_time_ms, crossing, "{event:?}");
            assert!(from < crossing && crossing <= harness.segments.clock_ms());
        }
        // Ordered by crossing instant.
        assert!(
            seen.windows(2)
                .all(|w| w[0].change_time_ms <= w[1].change_time_ms)
        );
        entered += seen.len();
        after = seen.last().map_or(after, |e| e.sequence);
        replay(&mut members, &seen);
        assert_eq!(members, harness.members_at_clock(&filter));
    }
    assert!(entered > 0, "nobody crossed in 20 days");
    // A tick at the same instant moves nothing.
    assert_eq!(harness.segments.tick().await.unwrap(), 0);
    harness.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn crossings_while_the_process_was_down_are_emitted_once_after_the_restart() {
    let dir = tempfile::tempdir().unwrap();
    let anchor = Population::new(1).anchor_ms;
    let clock = Clock::fake(anchor);
    let population = users(300);
    // Users enter at 10 days of inactivity and leave at 20: a 15-day pause holds both for some.
    let filter = parse_filter(
        "last_active_at BETWEEN now-20d AND now-10d",
        &FilterLimits::default(),
    )
    .unwrap();
    let (mut members, after) = {
        let harness = start(dir.path(), config(&clock));
        harness.upsert(&population).await;
        (harness.segments)
            .create("lapsing".into(), String::new(), filter.clone())
            .await
            .unwrap();
        clock.advance(DAY);
        harness.segments.tick().await.unwrap();
        let members = harness.members_at_clock(&filter);
        let after = harness.segments.last_sequence();
        harness.stop().await;
        (members, after)
    };
    clock.advance(15 * DAY);
    let harness = start(dir.path(), config(&clock));
    let from = harness.segments.clock_ms();
    assert_eq!(
        from,
        anchor + DAY,
        "the clock is where the last tick left it"
    );
    let events = harness.segments.tick().await.unwrap();
    let seen = harness.events_after("lapsing", after).await;
    assert_eq!(events, seen.len());
    // The fifteen days were taken a day per commit.
    assert_eq!(harness.segments.metrics().ticks, 15);
    let both: Vec<&String> = population
        .iter()
        .filter_map(|u| {
            let active = u.last_active_at?;
            let (enter, leave) = (active + 10 * DAY, active + 20 * DAY + 1);
            (from < enter && leave <= from + 15 * DAY).then_some(&u.id)
        })
        .collect();
    assert!(
        !both.is_empty(),
        "no user both entered and left in the pause"
    );
    for id in both {
        let theirs: Vec<EventKind> = (seen.iter())
            .filter(|e| &e.user_id == id)
            .map(|e| e.kind)
            .collect();
        assert_eq!(theirs, vec![EventKind::Entered, EventKind::Exited], "{id}");
    }
    replay(&mut members, &seen);
    assert_eq!(members, harness.members_at_clock(&filter));
    // Nothing is emitted twice: the next tick at the same instant finds nothing.
    assert_eq!(harness.segments.tick().await.unwrap(), 0);
    harness.stop().await;
    // Nor after another restart.
    let harness = start(dir.path(), config(&clock));
    assert_eq!(harness.segments.tick().await.unwrap(), 0);
    assert_eq!(harness.events_after("lapsing", after).await, seen);
    harness.stop().await;
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 8, ..ProptestConfig::default() })]

    /// Ticks of random lengths interleaved with activity (users coming back, or their activity
    /// moved into the past) and metadata edits: every event is a real change (no entry of a
    /// member, no exit of a non-member), and replayed they always give the filter at the clock.
    #[test]
    fn ticks_and_changes_interleaved_keep_the_events_equal_to_the_filter(seed in any::<u64>()) {
        runtime().block_on(async move {
            let dir = tempfile::tempdir().unwrap();
            let anchor = Population::new(1).anchor_ms;
            let clock = Clock::fake(anchor);
            let harness = start(dir.path(), config(&clock));
            let mut population = users(200);
            harness.upsert(&population).await;
            let filter = parse_filter(
                r#"(last_active_at < now-7d AND public.plan_type != "free") OR created_at > now-3d"#,
                &FilterLimits::default(),
            )
            .unwrap();
            (harness.segments).create("s".into(), String::new(), filter.clone()).await.unwrap();
            let mut members = harness.members_at_clock(&filter);
            let mut after = harness.segments.last_sequence();
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            let mut updated = anchor;
            for _round in 0..12 {
                clock.advance(rng.random_range(0..3 * DAY));
                if rng.random_bool(0.5) {
                    harness.segments.tick().await.unwrap();
                }
                let mut batch = Vec::new();
                for _ in 0..rng.random_range(0..10) {
                    let i = rng.random_range(0..population.len());
                    let now = clock.now_ms();
                    let active = now - rng.random_range(0..20) * DAY;
                    population[i] = if rng.random_bool(0.7) {
                        edited(&population[i], &mut updated, |json| {
                            json["last_active_at"] = (active / DAY * DAY).into()
                        })
                    } else {
                        changed(&population[i], &mut rng, &mut updated)
                    };
                    batch.push(population[i].clone());
                }
                harness.upsert(&batch).await;
                let seen = harness.events_after("s", after).await;
                after = seen.last().map_or(after, |e| e.sequence);
                replay(&mut members, &seen);
                prop_assert_eq!(&members, &harness.members_at_clock(&filter));
            }
            harness.stop().await;
            Ok(())
        })?;
    }
}
