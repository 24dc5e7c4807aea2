//! The index against the reference matcher on organization predicates: users composed by hand
//! from random memberships, random correlated and flattened filters.

use super::*;

/// Users in a handful of organizations (none, one or several memberships each, across
/// several commits with memberships changed and deleted on the way), indexed, and the same
/// users composed here by hand as the reference.
struct OrgFixture {
    index: crate::index::UserIndex,
    _dir: Option<tempfile::TempDir>,
    users: Vec<Arc<User>>,
}

const ROLES: [&str; 3] = ["org:admin", "org:member", "org:billing"];
const PLANS: [&str; 3] = ["free", "pro", "enterprise"];

fn org_fixture() -> &'static OrgFixture {
    use rand::{Rng, SeedableRng};
    static FIXTURE: std::sync::OnceLock<OrgFixture> = std::sync::OnceLock::new();
    FIXTURE.get_or_init(|| {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(20);
        let users = population_users(60);
        let orgs: Vec<Arc<Organization>> = (0..6)
            .map(|i| organization(&format!("org_{i}"), 10, &format!("Org{i}"), PLANS[i % 3]))
            .collect();
        let mut held: Vec<Vec<Arc<Membership>>> = vec![Vec::new(); users.len()];
        let mut changes: Vec<Vec<Change>> = vec![users.iter().map(user_upsert).collect()];
        let mut next = 0;
        for round in 0..3 {
            let mut batch = Vec::new();
            for (u, user) in users.iter().enumerate() {
                if rng.random_bool(0.4) {
                    continue;
                }
                let org = &orgs[rng.random_range(0..orgs.len())];
                // One membership per user and organization, as in Clerk.
                if let Some(at) = held[u].iter().position(|m| m.organization_id == org.id) {
                    let old = held[u].remove(at);
                    if rng.random_bool(0.3) {
                        batch.push(left(&old, 10_000 + round));
                        continue;
                    }
                    let role = ROLES[rng.random_range(0..3)];
                    let changed =
                        membership(&old.id, &user.id, org, role, 1_000 * (round + 1) + next);
                    held[u].push(changed.clone());
                    batch.push(joined(&changed, org));
                } else {
                    next += 1;
                    let role = ROLES[rng.random_range(0..3)];
                    let id = format!("orgmem_{next}");
                    let member = membership(&id, &user.id, org, role, 20 + next);
                    held[u].push(member.clone());
                    batch.push(joined(&member, org));
                }
            }
            changes.push(batch);
        }
        let (index, dir) = crate::index::sandbox::runtime().block_on(async {
            let sandbox = Sandbox::new();
            for batch in changes {
                apply(&sandbox, batch).await;
            }
            sandbox.close().await
        });
        let users = users
            .iter()
            .zip(held)
            .map(|(user, mut memberships)| {
                crate::organization::sort_memberships(&mut memberships);
                let views = memberships
                    .iter()
                    .map(|m| {
                        let org = orgs.iter().find(|o| o.id == m.organization_id);
                        crate::organization::membership_view(m, org.map(|o| &**o))
                    })
                    .collect();
                let mut user = (**user).clone();
                user.organizations = Arc::new(Value::Array(views));
                Arc::new(user)
            })
            .collect();
        OrgFixture {
            index,
            _dir: dir,
            users,
        }
    })
}

/// A random predicate on one membership's attributes, written relative to it.
fn membership_atom(rng: &mut impl rand::Rng) -> String {
    match rng.random_range(0..6) {
        0 => format!(r#"role = "{}""#, ROLES[rng.random_range(0..3)]),
        1 => format!(r#"public.plan = "{}""#, PLANS[rng.random_range(0..3)]),
        2 => format!(
            r#"slug IN ["org{}", "org{}"]"#,
            rng.random_range(0..6),
            rng.random_range(0..6)
        ),
        3 => r#"permissions = "org:sys_memberships:manage""#.to_string(),
        4 => format!("membership.created_at < {}", 20 + rng.random_range(0..60)),
        _ => r#"membership.public.seat EXISTS"#.to_string(),
    }
}

fn random_org_filter(seed: u64) -> String {
    use rand::{Rng, SeedableRng};
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let inner = |rng: &mut rand_chacha::ChaCha8Rng| {
        let a = membership_atom(rng);
        let b = membership_atom(rng);
        match rng.random_range(0..4) {
            0 => format!("{a} AND {b}"),
            1 => format!("{a} OR {b}"),
            2 => format!("NOT {a} AND {b}"),
            _ => a,
        }
    };
    let correlated = format!("org[{}]", inner(&mut rng));
    let flat = inner(&mut rng)
        .replace("role", "org.role")
        .replace("public.plan", "org.public.plan")
        .replace("slug", "org.slug")
        .replace("permissions", "org.permissions")
        .replace("membership.", "org.membership.");
    match rng.random_range(0..5) {
        0 => correlated,
        1 => format!("NOT {correlated}"),
        2 => format!("{correlated} OR org_count = 0"),
        3 => format!("{correlated} AND NOT {flat}"),
        _ => format!("{flat} AND org_count >= 1"),
    }
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(200))]

    /// The index answers `org[...]` (slots) and `org.*` (flattened) exactly as the reference
    /// matcher does on users composed by hand.
    #[test]
    fn correlated_and_uncorrelated_org_predicates_agree_with_the_reference(seed in proptest::prelude::any::<u64>()) {
        let fixture = org_fixture();
        let text = random_org_filter(seed);
        let filter = parse_filter(&text, &FilterLimits::default()).unwrap();
        // The text form parses back to the same filter.
        let printed = parse_filter(&filter.to_string(), &FilterLimits::default()).unwrap();
        proptest::prop_assert_eq!(printed.unplaced(), filter.unplaced(), "{}", text);
        let snapshot = fixture.index.snapshot();
        let found: std::collections::BTreeSet<String> = snapshot
            .all_ids(Some(&filter), &crate::query::sort::SortSpec::by_id(), 0)
            .unwrap()
            .into_iter()
            .collect();
        let expected: std::collections::BTreeSet<String> = fixture
            .users
            .iter()
            .filter(|u| crate::query::eval::matches(&filter, u, 0))
            .map(|u| u.id.clone())
            .collect();
        proptest::prop_assert_eq!(found, expected, "{}", text);
    }
}
