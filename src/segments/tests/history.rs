//! Segment history: counted from committed events, and kept past the log's compaction and
//! across restarts.

use super::*;
use crate::clock::Clock;

const DAY: i64 = 86_400_000;

#[tokio::test(flavor = "multi_thread")]
async fn history_counts_each_day_and_survives_compaction_and_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let limits = FilterLimits::default();
    let anchor = Population::new(1).anchor_ms / DAY * DAY;
    let clock = Clock::fake(anchor + 1_000);
    let config = SegmentsConfig {
        retained_events: 5,
        clock: clock.clone(),
        ..SegmentsConfig::default()
    };
    let harness = start(dir.path(), config.clone());
    let population = users(200);
    harness.upsert(&population).await;
    let filter = parse_filter("banned = true", &limits).unwrap();
    harness
        .segments
        .create("banned".into(), String::new(), filter.clone())
        .await
        .unwrap();
    let initial = harness.members(&filter).len() as u64;
    // Day 0: 30 users banned; day 1: nothing; day 2: 10 of them unbanned; then enough flips on
    // day 3 to compact the log (> 2 * 5 + 1 + 1000 lines).
    let mut updated = Population::new(1).anchor_ms;
    let unbanned: Vec<Arc<User>> = population.iter().filter(|u| !u.banned).cloned().collect();
    let mut current: Vec<Arc<User>> = (unbanned[..30].iter())
        .map(|u| banned(u, &mut updated, true))
        .collect();
    harness.upsert(&current).await;
    clock.advance(2 * DAY);
    let back: Vec<Arc<User>> = (current[..10].iter())
        .map(|u| banned(u, &mut updated, false))
        .collect();
    harness.upsert(&back).await;
    current[..10].clone_from_slice(&back);
    clock.advance(DAY);
    for round in 0..40 {
        current = (current.iter())
            .map(|u| banned(u, &mut updated, round % 2 == 1))
            .collect();
        harness.upsert(&current).await;
    }
    let expected_size = harness.members(&filter).len() as u64;
    let (days, size) = harness
        .segments
        .history("banned", Granularity::Day)
        .unwrap();
    assert_eq!(size, expected_size);
    let rows: Vec<(u64, u64, u64)> = days.iter().map(|b| (b.entered, b.exited, b.size)).collect();
    assert_eq!(rows[0], (30, 0, initial + 30));
    assert_eq!(
        rows[1],
        (0, 0, initial + 30),
        "a quiet day carries the size"
    );
    assert_eq!(rows[2], (0, 10, initial + 20));
    assert_eq!((rows[3].0, rows[3].1), (20 * 30, 20 * 30 - 10));
    assert_eq!((rows.len(), rows[3].2), (4, expected_size));
    harness.stop().await;
    let lines = std::fs::read_to_string(dir.path().join("segments/events.jsonl"))
        .unwrap()
        .lines()
        .count();
    assert!(lines < 1_100, "{lines} lines: the log was never compacted");
    let harness = start(dir.path(), config);
    assert_eq!(
        harness
            .segments
            .history("banned", Granularity::Day)
            .unwrap(),
        (days, size)
    );
    let (hours, _) = harness
        .segments
        .history("banned", Granularity::Hour)
        .unwrap();
    assert_eq!(hours.len(), 3 * 24 + 1);
    harness.stop().await;
}
