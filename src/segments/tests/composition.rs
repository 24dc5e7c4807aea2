//! `IN SEGMENT`: segments built on segments, against a reference that resolves references
//! recursively on each user; edits of an inner segment move the outer one's members; cycles and
//! deleting a segment in use are refused.

use std::collections::BTreeMap;

use super::*;
use crate::query::eval::matches;

/// Whether `user` is in the segment with `raw` filter, references resolved recursively
/// through `saved` (independent of the expansion under test).
fn reference(raw: &Filter, saved: &BTreeMap<String, Filter>, user: &User, now: i64) -> bool {
    match raw {
        Filter::And(items) => items.iter().all(|f| reference(f, saved, user, now)),
        Filter::Or(items) => items.iter().any(|f| reference(f, saved, user, now)),
        Filter::Not(inner) => !reference(inner, saved, user, now),
        Filter::Segment { name, .. } => reference(&saved[name], saved, user, now),
        leaf => matches(leaf, user, now),
    }
}

/// A filter over earlier segments: random predicates combined with references to them.
fn composed(rng: &mut ChaCha8Rng, seed: u64, users: &[Arc<User>], earlier: &[String]) -> Filter {
    let own = crate::index::tests::valid_filter(seed, users);
    if earlier.is_empty() {
        return own;
    }
    let mut refer = || Filter::Segment {
        name: earlier.choose(rng).unwrap().clone(),
        position: 0,
    };
    let first = refer();
    let second = refer();
    match rng.random_range(0..4) {
        0 => Filter::And(vec![first, own]),
        1 => Filter::Or(vec![first, Filter::Not(Box::new(second))]),
        2 => Filter::Not(Box::new(Filter::Or(vec![own, first]))),
        _ => first,
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 8, ..ProptestConfig::default() })]

    /// Random graphs of segments: each segment's members (from the index, through the expanded
    /// filter) equal the reference, before and after an inner segment is edited, and the
    /// events of every segment replay to its members.
    #[test]
    fn segment_graphs_match_the_reference_and_their_events(seed in any::<u64>()) {
        runtime().block_on(async move {
            let dir = tempfile::tempdir().unwrap();
            let harness = start(dir.path(), SegmentsConfig::default());
            let population = users(200);
            harness.upsert(&population).await;
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            let mut saved: BTreeMap<String, Filter> = BTreeMap::new();
            let mut names: Vec<String> = Vec::new();
            for n in 0..6 {
                let name = format!("s{n}");
                let filter = composed(&mut rng, seed.wrapping_add(n), &population, &names);
                harness.segments.create(name.clone(), String::new(), filter.clone()).await.unwrap();
                saved.insert(name.clone(), filter);
                names.push(name);
            }
            let now = now_ms();
            let mut members: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
            for name in &names {
                let (_, expanded) = harness.segments.get(name).unwrap();
                let expected: BTreeSet<String> = (population.iter())
                    .filter(|u| reference(&saved[name], &saved, u, now))
                    .map(|u| u.id.clone())
                    .collect();
                prop_assert_eq!(&harness.members(&expanded), &expected, "{}", name);
                members.insert(name.clone(), expected);
            }
            let after = harness.segments.last_sequence();
            // The innermost segment changes: every segment built on it moves with it.
            let edited = crate::index::tests::valid_filter(seed ^ 0x5eed, &population);
            harness.segments.update("s0".into(), None, Some(edited.clone()), 0).await.unwrap();
            saved.insert("s0".into(), edited);
            for name in &names {
                let events = harness.events_after(name, after).await;
                let current = members.get_mut(name).unwrap();
                for event in &events {
                    match event.kind {
                        EventKind::Entered => prop_assert!(current.insert(event.user_id.clone())),
                        EventKind::Exited => prop_assert!(current.remove(&event.user_id)),
                        _ => {}
                    }
                }
                let expected: BTreeSet<String> = (population.iter())
                    .filter(|u| reference(&saved[name], &saved, u, now))
                    .map(|u| u.id.clone())
                    .collect();
                prop_assert_eq!(&*current, &expected, "{} after the edit", name);
            }
            harness.stop().await;
            Ok(())
        })?;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cycle_is_refused_and_a_segment_in_use_cannot_be_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let harness = start(dir.path(), SegmentsConfig::default());
    harness.upsert(&users(20)).await;
    let limits = FilterLimits::default();
    let parse = |text: &str| parse_filter(text, &limits).unwrap();
    let create = async |name: &str, text: &str| {
        harness
            .segments
            .create(name.into(), String::new(), parse(text))
            .await
    };
    create("a", "banned = true").await.unwrap();
    create("b", r#"IN SEGMENT "a" OR locked = true"#)
        .await
        .unwrap();
    create("c", r#"NOT IN SEGMENT "b""#).await.unwrap();
    let missing = create("d", r#"IN SEGMENT "nope""#).await.unwrap_err();
    assert!(
        missing.to_string().contains("no saved segment"),
        "{missing}"
    );
    let cycle = harness
        .segments
        .update("a".into(), None, Some(parse(r#"IN SEGMENT "c""#)), 0)
        .await
        .unwrap_err();
    assert!(cycle.to_string().contains("a -> c -> b -> a"), "{cycle}");
    assert_eq!(
        harness
            .segments
            .expand(&parse(r#"IN SEGMENT "c""#), Some("a"))
            .unwrap_err()
            .position,
        Some(0),
        "the service finds the same cycle before saving"
    );
    let in_use = harness.segments.delete("b".into()).await.unwrap_err();
    match &in_use {
        SegmentError::Referenced { name, by } => {
            assert_eq!((name.as_str(), by.clone()), ("b", vec!["c".to_string()]))
        }
        other => panic!("{other:?}"),
    }
    harness.segments.delete("c".into()).await.unwrap();
    harness.segments.delete("b".into()).await.unwrap();
    // Definitions with references load back after a restart.
    create("b", r#"IN SEGMENT "a""#).await.unwrap();
    harness.stop().await;
    let harness = start(dir.path(), SegmentsConfig::default());
    let (_, expanded) = harness.segments.get("b").unwrap();
    assert_eq!(expanded.unplaced(), parse("banned = true").unplaced());
    harness.stop().await;
}
