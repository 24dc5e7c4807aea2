//! Organizations and memberships in the index: documents of their own that no user query sees,
//! copies on each member's document kept in step with every change, versions and tombstones per
//! kind, and `org.*` paths filtering the way array metadata does.

use std::sync::Arc;

use serde_json::{Value, json};

use super::sandbox::{Sandbox, population_users, user_of};
use crate::change::{Change, ChangeSource, MembershipChange, OrganizationChange, UserChange};
use crate::clerk::{parse_membership, parse_organization};
use crate::organization::{Membership, Organization};
use crate::query::{FilterLimits, parse_filter};
use crate::user::User;

mod reference;

pub(crate) fn organization(id: &str, updated_at: i64, name: &str, plan: &str) -> Arc<Organization> {
    let json = json!({"object": "organization", "id": id, "name": name, "slug": name.to_lowercase(),
        "members_count": 2, "created_at": 1_700_000_000_000_i64, "updated_at": updated_at,
        "public_metadata": {"plan": plan}, "private_metadata": {"crm_id": format!("crm-{id}")}});
    let raw = serde_json::value::RawValue::from_string(json.to_string()).unwrap();
    Arc::new(parse_organization(&raw).unwrap())
}

pub(crate) fn membership(
    id: &str,
    user_id: &str,
    org: &Organization,
    role: &str,
    updated_at: i64,
) -> Arc<Membership> {
    let json = json!({"object": "organization_membership", "id": id, "role": role,
        "permissions": if role == "org:admin" { vec!["org:sys_memberships:manage"] } else { vec![] },
        "public_metadata": {"seat": "full"}, "private_metadata": {},
        "created_at": updated_at, "updated_at": updated_at,
        "organization": serde_json::from_str::<Value>(&org.raw_json).unwrap(),
        "public_user_data": {"user_id": user_id, "identifier": "x@example.com"}});
    let raw = serde_json::value::RawValue::from_string(json.to_string()).unwrap();
    Arc::new(parse_membership(&raw).unwrap().membership)
}

pub(crate) fn joined(membership: &Arc<Membership>, org: &Arc<Organization>) -> Change {
    Change::Membership(MembershipChange::Upsert {
        membership: membership.clone(),
        organization: Some(org.clone()),
        source: ChangeSource::Webhook,
    })
}

fn left(membership: &Arc<Membership>, deleted_at_ms: i64) -> Change {
    Change::Membership(MembershipChange::Delete {
        membership: membership.clone(),
        deleted_at_ms,
        source: ChangeSource::Webhook,
    })
}

fn org_upsert(org: &Arc<Organization>) -> Change {
    Change::Organization(OrganizationChange::Upsert {
        organization: org.clone(),
        source: ChangeSource::Webhook,
    })
}

fn user_upsert(user: &Arc<User>) -> Change {
    Change::User(UserChange::Upsert {
        user: user.clone(),
        source: ChangeSource::Webhook,
    })
}

fn count(sandbox: &Sandbox, filter: &str) -> u64 {
    let filter = parse_filter(filter, &FilterLimits::default()).unwrap();
    sandbox
        .index
        .snapshot()
        .count(Some(&filter), crate::clock::now_ms())
        .unwrap()
}

async fn apply(sandbox: &Sandbox, changes: Vec<Change>) {
    sandbox.writer.apply(changes, None).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn organization_and_membership_documents_are_never_counted_as_users() {
    let sandbox = Sandbox::new();
    let users = population_users(3);
    let acme = organization("org_acme", 10, "Acme", "enterprise");
    apply(
        &sandbox,
        vec![
            user_upsert(&users[0]),
            user_upsert(&users[1]),
            user_upsert(&users[2]),
            org_upsert(&acme),
            joined(
                &membership("orgmem_1", &users[0].id, &acme, "org:admin", 20),
                &acme,
            ),
        ],
    )
    .await;
    let snapshot = sandbox.index.snapshot();
    assert_eq!(snapshot.freshness.user_count, 3);
    assert_eq!(snapshot.count(None, 0).unwrap(), 3);
    assert_eq!(count(&sandbox, "NOT org.role EXISTS"), 2);
    assert_eq!(count(&sandbox, "NOT banned = true OR banned = true"), 3);
    let ids = snapshot
        .all_ids(None, &crate::query::sort::SortSpec::by_id(), 0)
        .unwrap();
    assert_eq!(ids.len(), 3, "{ids:?}");
    assert!(ids.iter().all(|id| id.starts_with("user_")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_membership_that_arrives_before_its_user_waits_for_it() {
    let sandbox = Sandbox::new();
    let users = population_users(1);
    let acme = organization("org_acme", 10, "Acme", "enterprise");
    let admin = membership("orgmem_1", &users[0].id, &acme, "org:admin", 20);
    apply(&sandbox, vec![joined(&admin, &acme)]).await;
    assert_eq!(sandbox.index.snapshot().freshness.user_count, 0);
    apply(&sandbox, vec![user_upsert(&users[0])]).await;
    assert_eq!(count(&sandbox, r#"org.role = "org:admin""#), 1);
    assert_eq!(count(&sandbox, r#"org.public.plan = "enterprise""#), 1);
    assert_eq!(count(&sandbox, r#"org.slug = "acme""#), 1);
    assert_eq!(count(&sandbox, "org_count = 1"), 1);
    assert_eq!(
        count(
            &sandbox,
            r#"org.permissions = "org:sys_memberships:manage""#
        ),
        1
    );
    assert_eq!(count(&sandbox, r#"org.membership.public.seat = "full""#), 1);
    assert_eq!(count(&sandbox, "org.created_at < now"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_organization_change_reaches_every_member_in_one_commit_and_survives_a_restart() {
    let sandbox = Sandbox::new();
    let users = population_users(4);
    let acme = organization("org_acme", 10, "Acme", "free");
    let mut changes: Vec<Change> = users.iter().map(user_upsert).collect();
    for (i, user) in users.iter().take(3).enumerate() {
        let member = membership(&format!("orgmem_{i}"), &user.id, &acme, "org:member", 20);
        changes.push(joined(&member, &acme));
    }
    apply(&sandbox, changes).await;
    assert_eq!(count(&sandbox, r#"org.public.plan = "free""#), 3);

    let renamed = organization("org_acme", 30, "Acme Two", "enterprise");
    let generation = sandbox
        .writer
        .apply(vec![org_upsert(&renamed)], None)
        .await
        .unwrap();
    let snapshot = sandbox.index.snapshot();
    assert_eq!(snapshot.freshness.generation, generation);
    assert_eq!(count(&sandbox, r#"org.public.plan = "enterprise""#), 3);
    assert_eq!(count(&sandbox, r#"org.name = "Acme Two""#), 3);
    assert_eq!(count(&sandbox, r#"org.public.plan = "free""#), 0);
    // A stale copy of the organization changes nothing.
    apply(&sandbox, vec![org_upsert(&acme)]).await;
    assert_eq!(count(&sandbox, r#"org.name = "Acme Two""#), 3);

    let sandbox = sandbox.reopen().await;
    assert_eq!(count(&sandbox, r#"org.name = "Acme Two""#), 3);
    let stored = sandbox
        .index
        .snapshot()
        .stored_user(&users[0].id)
        .unwrap()
        .unwrap();
    assert_eq!(stored.org_count(), 1);
    assert_eq!(stored.organizations[0]["name"], "Acme Two");
    // A user upserted again keeps its memberships.
    apply(&sandbox, vec![user_upsert(&users[0])]).await;
    assert_eq!(count(&sandbox, r#"org.name = "Acme Two""#), 3);
    // Deleting the organization deletes its memberships with it (as Clerk does).
    apply(
        &sandbox,
        vec![Change::Organization(OrganizationChange::Delete {
            organization_id: "org_acme".into(),
            deleted_at_ms: 40,
            source: ChangeSource::Webhook,
        })],
    )
    .await;
    assert_eq!(count(&sandbox, "org.name EXISTS"), 0);
    assert_eq!(count(&sandbox, "org_count = 0"), 4);
    assert!(
        sandbox
            .index
            .snapshot()
            .memberships_in("org_acme")
            .unwrap()
            .is_empty()
    );
    // ... and late copies of it or of a membership do not bring them back.
    let late = membership("orgmem_0", &users[0].id, &renamed, "org:member", 30);
    apply(
        &sandbox,
        vec![org_upsert(&renamed), joined(&late, &renamed)],
    )
    .await;
    assert_eq!(count(&sandbox, "org.name EXISTS"), 0);
    assert_eq!(count(&sandbox, "org_count = 0"), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn membership_deletions_and_updates_converge_in_any_order() {
    let users = population_users(1);
    let acme = organization("org_acme", 10, "Acme", "free");
    let member = membership("orgmem_1", &users[0].id, &acme, "org:member", 20);
    let promoted = membership("orgmem_1", &users[0].id, &acme, "org:admin", 30);
    let orders: [&[usize]; 4] = [&[0, 1, 2], &[2, 1, 0], &[1, 2, 0], &[2, 0, 1]];
    for order in orders {
        let sandbox = Sandbox::new();
        apply(&sandbox, vec![user_upsert(&users[0])]).await;
        let events = [
            joined(&member, &acme),
            joined(&promoted, &acme),
            left(&promoted, 40),
        ];
        for &i in order {
            apply(&sandbox, vec![events[i].clone()]).await;
        }
        assert_eq!(count(&sandbox, "org_count = 0"), 1, "order {order:?}");
        assert_eq!(count(&sandbox, "org.role EXISTS"), 0, "order {order:?}");
    }
    // Without the deletion, the newest role wins whatever the order.
    for order in [[0, 1], [1, 0]] {
        let sandbox = Sandbox::new();
        apply(&sandbox, vec![user_upsert(&users[0])]).await;
        let events = [joined(&member, &acme), joined(&promoted, &acme)];
        for i in order {
            apply(&sandbox, vec![events[i].clone()]).await;
        }
        assert_eq!(count(&sandbox, r#"org.role = "org:admin""#), 1);
        assert_eq!(count(&sandbox, r#"org.role = "org:member""#), 0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn org_paths_match_any_membership_like_arrays_do() {
    let sandbox = Sandbox::new();
    let users = population_users(2);
    let acme = organization("org_acme", 10, "Acme", "free");
    let globex = organization("org_globex", 10, "Globex", "enterprise");
    apply(
        &sandbox,
        vec![
            user_upsert(&users[0]),
            user_upsert(&users[1]),
            joined(
                &membership("orgmem_1", &users[0].id, &acme, "org:admin", 20),
                &acme,
            ),
            joined(
                &membership("orgmem_2", &users[0].id, &globex, "org:member", 21),
                &globex,
            ),
            joined(
                &membership("orgmem_3", &users[1].id, &globex, "org:admin", 22),
                &globex,
            ),
        ],
    )
    .await;
    // Two different memberships of the first user satisfy the two halves.
    assert_eq!(
        count(
            &sandbox,
            r#"org.role = "org:admin" AND org.public.plan = "enterprise""#
        ),
        2
    );
    assert_eq!(count(&sandbox, "org_count >= 2"), 1);
    assert_eq!(count(&sandbox, "org_count = 0"), 0);
    // A membership joined within the same batch as its user, composed in one commit.
    let late = population_users(3).pop().unwrap();
    apply(
        &sandbox,
        vec![
            user_upsert(&late),
            joined(
                &membership("orgmem_4", &late.id, &acme, "org:member", 23),
                &acme,
            ),
        ],
    )
    .await;
    assert_eq!(count(&sandbox, r#"org.id = "org_acme""#), 2);
}

#[test]
fn org_paths_outside_a_membership_are_refused_with_their_position() {
    let error = parse_filter(
        r#"public.plan = "x" OR org.planet = "x""#,
        &FilterLimits::default(),
    )
    .unwrap_err();
    assert_eq!(error.position, Some(21));
    assert!(error.message.contains("org."), "{}", error.message);
    let error = parse_filter(r#"org.membership.role = "x""#, &FilterLimits::default()).unwrap_err();
    assert!(
        error.message.contains("org.membership"),
        "{}",
        error.message
    );
    parse_filter(
        r#"org.membership.private.seat = "x""#,
        &FilterLimits::default(),
    )
    .unwrap();
}

#[test]
fn a_user_from_clerk_holds_no_organizations() {
    let user = user_of(&crate::clerk::fake::Population::new(1).user(0));
    assert_eq!(user.org_count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_facet_by_their_organizations_plan_and_slug() {
    use super::{FacetKind, FacetOutcome, FacetSpec, FacetValue};
    let sandbox = Sandbox::new();
    let users = population_users(4);
    let acme = organization("org_acme", 10, "Acme", "free");
    let globex = organization("org_globex", 10, "Globex", "enterprise");
    let mut changes: Vec<Change> = users.iter().map(user_upsert).collect();
    changes.push(joined(
        &membership("orgmem_1", &users[0].id, &acme, "org:admin", 20),
        &acme,
    ));
    changes.push(joined(
        &membership("orgmem_2", &users[1].id, &acme, "org:member", 21),
        &acme,
    ));
    changes.push(joined(
        &membership("orgmem_3", &users[1].id, &globex, "org:admin", 22),
        &globex,
    ));
    apply(&sandbox, changes).await;
    let spec = |path: &str, include_missing| FacetSpec {
        name: path.into(),
        path: crate::query::parse_path(path).unwrap(),
        kind: FacetKind::Terms {
            size: 10,
            include_missing,
        },
    };
    let facets = sandbox
        .index
        .snapshot()
        .facets(
            None,
            &[spec("org.public.plan", true), spec("org.slug", false)],
            0,
        )
        .unwrap();
    assert_eq!(facets.matched, 4);
    let FacetOutcome::Terms(plans) = &facets.results[0].1 else {
        panic!("terms expected")
    };
    assert_eq!(
        plans.buckets,
        [
            (FacetValue::Str("free".into()), 2),
            (FacetValue::Str("enterprise".into()), 1)
        ]
    );
    assert_eq!(plans.missing, Some(2), "users in no organization");
    let FacetOutcome::Terms(slugs) = &facets.results[1].1 else {
        panic!("terms expected")
    };
    assert_eq!(slugs.buckets[0], (FacetValue::Str("acme".into()), 2));
}

#[test]
fn organization_metadata_needs_the_scope_of_its_namespace() {
    use crate::auth::{Caller, Scopes};
    let caller = Caller::with_scopes("k", Scopes::parse_list("public").unwrap());
    let check = |text: &str| {
        let filter = parse_filter(text, &FilterLimits::default()).unwrap();
        caller.check_filter(Some(&filter))
    };
    check(r#"org.role = "org:admin" AND org.slug = "acme""#).unwrap();
    check(r#"org.public.plan = "enterprise""#).unwrap();
    check(r#"org.membership.public.seat = "full""#).unwrap();
    assert!(check(r#"org.private.crm_id = "x""#).is_err());
    assert!(check(r#"org.membership.private.note = "x""#).is_err());
    assert!(check("org.membership EXISTS").is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_membership_must_satisfy_everything_inside_the_brackets() {
    let sandbox = Sandbox::new();
    let users = population_users(3);
    let free = organization("org_free", 10, "Free", "free");
    let big = organization("org_big", 10, "Big", "enterprise");
    apply(
        &sandbox,
        vec![
            user_upsert(&users[0]),
            user_upsert(&users[1]),
            user_upsert(&users[2]),
            // Admin of a free organization, member of an enterprise one.
            joined(
                &membership("orgmem_1", &users[0].id, &free, "org:admin", 20),
                &free,
            ),
            joined(
                &membership("orgmem_2", &users[0].id, &big, "org:member", 21),
                &big,
            ),
            // Admin of an enterprise organization.
            joined(
                &membership("orgmem_3", &users[1].id, &big, "org:admin", 22),
                &big,
            ),
        ],
    )
    .await;
    let uncorrelated = r#"org.role = "org:admin" AND org.public.plan = "enterprise""#;
    let correlated = r#"org[role = "org:admin" AND public.plan = "enterprise"]"#;
    assert_eq!(count(&sandbox, uncorrelated), 2);
    assert_eq!(count(&sandbox, correlated), 1);
    assert_eq!(count(&sandbox, &format!("NOT {correlated}")), 2);
    assert_eq!(count(&sandbox, r#"org[NOT role = "org:admin"]"#), 1);
    assert_eq!(
        count(&sandbox, &format!(r#"{correlated} OR org_count = 0"#)),
        2
    );
    let error = parse_filter(
        r#"org[role = "x" AND banned = true]"#,
        &FilterLimits::default(),
    )
    .unwrap_err();
    assert_eq!(error.position, Some(19));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_field_catalog_lists_org_paths_with_the_users_holding_them() {
    let sandbox = Sandbox::new();
    let users = population_users(3);
    let acme = organization("org_acme", 10, "Acme", "free");
    let mut changes: Vec<Change> = users.iter().map(user_upsert).collect();
    changes.push(joined(
        &membership("orgmem_1", &users[0].id, &acme, "org:admin", 20),
        &acme,
    ));
    changes.push(joined(
        &membership("orgmem_2", &users[1].id, &acme, "org:member", 21),
        &acme,
    ));
    apply(&sandbox, changes).await;
    let catalog = sandbox.index.snapshot().field_catalog().unwrap();
    let types = |path: &str| {
        catalog
            .iter()
            .find(|entry| entry.path.to_string() == path)
            .map(|entry| entry.types.clone())
    };
    assert_eq!(types("org.role"), Some(vec![("string".to_string(), 2)]));
    assert_eq!(
        types("org.public.plan"),
        Some(vec![("string".to_string(), 2)])
    );
    assert_eq!(
        types("org.members_count"),
        Some(vec![("integer".to_string(), 2)])
    );
    assert!(
        catalog
            .iter()
            .all(|e| !e.path.to_string().starts_with("org_slots")),
        "slots are not paths of their own"
    );
}
