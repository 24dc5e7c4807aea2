//! Segments on organization predicates: members move in and out as memberships and their
//! organizations change.

use super::*;

#[tokio::test(flavor = "multi_thread")]
async fn a_promotion_a_departure_and_an_organization_change_move_members_in_and_out() {
    use crate::change::Change;
    use crate::index::org_tests::{joined, membership, organization};
    let dir = tempfile::tempdir().unwrap();
    let harness = start(dir.path(), SegmentsConfig::default());
    let population = users(3);
    harness.upsert(&population).await;
    let acme = organization("org_acme", 10, "Acme", "free");
    let member = membership("orgmem_1", &population[0].id, &acme, "org:member", 20);
    let apply = |changes: Vec<Change>| harness.sandbox.writer.apply(changes, None);
    apply(vec![joined(&member, &acme)]).await.unwrap();
    let limits = FilterLimits::default();
    let admins = parse_filter(
        r#"org.role = "org:admin" AND org.public.plan = "enterprise""#,
        &limits,
    )
    .unwrap();
    harness
        .segments
        .create("admins".into(), String::new(), admins)
        .await
        .unwrap();
    let start = harness.segments.last_sequence();
    let promoted = membership("orgmem_1", &population[0].id, &acme, "org:admin", 30);
    apply(vec![joined(&promoted, &acme)]).await.unwrap();
    assert!(harness.events_after("admins", start).await.is_empty());
    // The organization's plan changes: its admin enters.
    let upgraded = organization("org_acme", 40, "Acme", "enterprise");
    apply(vec![Change::Organization(
        crate::change::OrganizationChange::Upsert {
            organization: upgraded,
            source: ChangeSource::Webhook,
        },
    )])
    .await
    .unwrap();
    let events = harness.events_after("admins", start).await;
    let moves: Vec<_> = events
        .iter()
        .map(|e| (e.kind, e.user_id.as_str()))
        .collect();
    assert_eq!(moves, [(EventKind::Entered, population[0].id.as_str())]);
    // The membership ends: the user exits.
    apply(vec![Change::Membership(
        crate::change::MembershipChange::Delete {
            membership: promoted,
            deleted_at_ms: 50,
            source: ChangeSource::Webhook,
        },
    )])
    .await
    .unwrap();
    let events = harness.events_after("admins", start).await;
    assert_eq!(events.len(), 2);
    assert_eq!(events[1].kind, EventKind::Exited);
    harness.stop().await;
}
