//! The index must agree with the in-memory matcher (`query::eval`) on every filter, and its
//! sorted paging must equal sorting the matches in memory. Random filters over a generated
//! population, spread over several segments with deleted and re-added documents.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use proptest::prelude::*;
use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::sandbox::{Sandbox, population_users, runtime, user_of};
use super::snapshot::UserIndex;
use crate::change::{ChangeSource, UserChange};
use crate::clerk::fake::Population;
use crate::query::ast::{CmpOp, DateValue, FieldPath, Filter, Op, Predicate, Value};
use crate::query::eval::{matches, metadata_leaves};
use crate::query::sort::{SortSpec, hit_cmp, sort_value};
use crate::query::{CoreField, FilterLimits, validate};
use crate::user::{MetadataNamespace, User};

const USERS: usize = 3_000;

pub(crate) struct Fixture {
    _dir: Option<tempfile::TempDir>,
    pub(crate) index: UserIndex,
    pub(crate) users: Vec<Arc<User>>,
    pub(crate) now_ms: i64,
}

pub(crate) fn fixture() -> &'static Fixture {
    static FIXTURE: std::sync::OnceLock<Fixture> = std::sync::OnceLock::new();
    FIXTURE.get_or_init(|| {
        let population = Population::new(USERS);
        let mut users = population_users(USERS);
        let (index, dir) = runtime().block_on(async {
            let sandbox = Sandbox::configured(|config| config.writer_memory_bytes = 50 << 20);
            // Three commits make three segments; the third rewrites some users of the first and
            // deletes others, so segments hold deleted documents too.
            for chunk in users.chunks(USERS / 3 + 1) {
                sandbox.upsert(chunk, ChangeSource::Backfill).await;
            }
            let mut rewrites = Vec::new();
            for user in users.iter_mut().step_by(7) {
                let mut changed = (**user).clone();
                changed.updated_at += 1;
                changed.public_metadata["plan_type"] = "pro".into();
                *user = Arc::new(changed);
                rewrites.push(user.clone());
            }
            sandbox.upsert(&rewrites, ChangeSource::Webhook).await;
            let deleted: Vec<String> = users
                .iter()
                .skip(3)
                .step_by(11)
                .map(|u| u.id.clone())
                .collect();
            let deletes = deleted
                .iter()
                .map(|id| UserChange::Delete {
                    user_id: id.clone(),
                    deleted_at_ms: i64::MAX,
                    source: ChangeSource::Webhook,
                })
                .collect();
            sandbox.apply(deletes).await;
            users.retain(|u| !deleted.contains(&u.id));
            sandbox.close().await
        });
        Fixture {
            _dir: dir,
            index,
            users,
            now_ms: population.anchor_ms,
        }
    })
}

pub(super) fn meta(namespace: MetadataNamespace, keys: &[&str]) -> FieldPath {
    FieldPath::Metadata {
        namespace,
        keys: keys.iter().map(|k| k.to_string()).collect(),
    }
}

fn paths() -> Vec<FieldPath> {
    use MetadataNamespace::*;
    let mut paths = vec![
        meta(Public, &["membership_tier"]),
        meta(Public, &["plan_type"]),
        meta(Public, &["favorite_genre"]),
        meta(Public, &["user_preferences", "theme"]),
        meta(Public, &["user_preferences", "notifications", "email"]),
        meta(Public, &["user_preferences"]),
        meta(Public, &["points"]),
        meta(Public, &["score"]),
        meta(Public, &["beta_cohort"]),
        meta(Public, &["referrer"]),
        meta(Public, &["utm-campaign"]),
        meta(Public, &["tags"]),
        meta(Public, &["country"]),
        meta(Private, &["ltv"]),
        meta(Private, &["seats"]),
        meta(Private, &["crm", "segment"]),
        meta(Private, &["crm", "account_manager"]),
        meta(Private, &["risk_score"]),
        meta(Unsafe, &["onboarding_step"]),
        meta(Unsafe, &["onboarding_complete"]),
        meta(Unsafe, &["nickname"]),
        meta(Public, &["no_such_key"]),
    ];
    paths.extend(CoreField::ALL.into_iter().map(FieldPath::Core));
    paths
}

/// Values that occur at a path in the population, plus a few that do not.
fn sample_value(rng: &mut ChaCha8Rng, users: &[Arc<User>], path: &FieldPath) -> Value {
    let user = users.choose(rng).unwrap();
    let from_json = |v: &serde_json::Value| match v {
        serde_json::Value::String(s) => Value::String(s.clone()),
        serde_json::Value::Number(n) if n.is_f64() => Value::Float(n.as_f64().unwrap()),
        serde_json::Value::Number(n) => Value::Integer(n.as_i64().unwrap()),
        serde_json::Value::Bool(b) => Value::Bool(*b),
        _ => Value::Null,
    };
    match path {
        FieldPath::Metadata { namespace, keys } => {
            let leaves = metadata_leaves(user.metadata(*namespace), keys);
            match (leaves.choose(rng), rng.random_range(0..10)) {
                (Some(leaf), 0..=6) => from_json(leaf),
                (_, 7) => Value::Float(rng.random_range(-10.0..2000.0)),
                (_, 8) => Value::Integer(rng.random_range(-5..3000)),
                _ => Value::String(
                    ["gold", "pro", "fiction", "dark", "a", "m", "zzz"]
                        .choose(rng)
                        .unwrap()
                        .to_string(),
                ),
            }
        }
        FieldPath::Core(field) => {
            let strings = crate::query::eval::core_strings(user, *field);
            if let Some(ms) = crate::query::eval::core_date(user, *field) {
                return Value::Date(DateValue::Absolute(ms + rng.random_range(-1..=1)));
            }
            if let Some(b) = crate::query::eval::core_bool(user, *field) {
                return Value::Bool(b);
            }
            match strings.choose(rng) {
                Some(s) if rng.random_bool(0.5) => Value::String(s.to_uppercase()),
                Some(s) => Value::String(s.clone()),
                None => Value::Null,
            }
        }
    }
}

fn random_predicate(rng: &mut ChaCha8Rng, users: &[Arc<User>]) -> Filter {
    let path = paths().choose(rng).unwrap().clone();
    let v1 = sample_value(rng, users, &path);
    let v2 = sample_value(rng, users, &path);
    let prefix = match &v1 {
        Value::String(s) => s.chars().take(rng.random_range(0..=3)).collect(),
        _ => "a".to_string(),
    };
    let cmp = *[
        CmpOp::Eq,
        CmpOp::Ne,
        CmpOp::Lt,
        CmpOp::Lte,
        CmpOp::Gt,
        CmpOp::Gte,
    ]
    .choose(rng)
    .unwrap();
    let op = match rng.random_range(0..9) {
        0..=3 => Op::Compare(cmp, v1),
        4 => Op::In(vec![v1, v2]),
        5 => Op::Exists,
        6 => Op::StartsWith(prefix),
        7 => Op::Between(v1, v2),
        _ => match &v1 {
            Value::String(s) => Op::Matches(s.clone()),
            _ => Op::Compare(CmpOp::Eq, Value::Null),
        },
    };
    Filter::Predicate(Predicate {
        path,
        op,
        position: 0,
    })
}

fn random_filter(rng: &mut ChaCha8Rng, users: &[Arc<User>], depth: u32) -> Filter {
    if depth == 0 || rng.random_bool(0.4) {
        return random_predicate(rng, users);
    }
    match rng.random_range(0..3) {
        0 => Filter::And(
            (0..rng.random_range(2..4))
                .map(|_| random_filter(rng, users, depth - 1))
                .collect(),
        ),
        1 => Filter::Or(
            (0..rng.random_range(2..4))
                .map(|_| random_filter(rng, users, depth - 1))
                .collect(),
        ),
        _ => Filter::Not(Box::new(random_filter(rng, users, depth - 1))),
    }
}

/// A random filter that passes validation (invalid combinations are regenerated).
pub(crate) fn valid_filter(seed: u64, users: &[Arc<User>]) -> Filter {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    loop {
        if let Ok(filter) = validate(random_filter(&mut rng, users, 3), &FilterLimits::default()) {
            return filter;
        }
    }
}

pub(super) fn expected_ids(fixture: &Fixture, filter: &Filter) -> BTreeSet<String> {
    fixture
        .users
        .iter()
        .filter(|u| matches(filter, u, fixture.now_ms))
        .map(|u| u.id.clone())
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn index_agrees_with_the_in_memory_matcher(seed in any::<u64>()) {
        let fixture = fixture();
        let filter = valid_filter(seed, &fixture.users);
        let snapshot = fixture.index.snapshot();
        let expected = expected_ids(fixture, &filter);
        let count = snapshot.count(Some(&filter), fixture.now_ms).unwrap();
        let ids: BTreeSet<String> = snapshot.all_ids(Some(&filter), &SortSpec::by_id(), fixture.now_ms).unwrap().into_iter().collect();
        prop_assert_eq!(count as usize, expected.len(), "count differs for {:?}", filter);
        prop_assert_eq!(ids, expected, "ids differ for {:?}", filter);
    }

    /// Ranges and sorts read decoded columns from the cache; without it (budget 0, or a column
    /// that does not fit) they read tantivy's columns. Both must give the same answers.
    #[test]
    fn columns_read_without_the_cache_give_the_same_answers(seed in any::<u64>()) {
        let fixture = fixture();
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let filter = valid_filter(seed, &fixture.users);
        let cached = fixture.index.snapshot();
        let uncached = super::snapshot::Snapshot {
            searcher: cached.searcher.clone(),
            fields: Arc::new(super::schema::Fields {
                columns: Arc::new(super::engine::ColumnCache::new(0)),
                ..(*cached.fields).clone()
            }),
            freshness: cached.freshness,
            sync_state: cached.sync_state.clone(),
            tombstone_count: cached.tombstone_count,
            event_sequence: cached.event_sequence,
            other_docs: cached.other_docs,
            org_slots: cached.org_slots,
        };
        let expected = expected_ids(fixture, &filter);
        prop_assert_eq!(uncached.count(Some(&filter), fixture.now_ms).unwrap() as usize, expected.len());
        let ids: BTreeSet<String> = uncached.all_ids(Some(&filter), &SortSpec::by_id(), fixture.now_ms).unwrap().into_iter().collect();
        prop_assert_eq!(&ids, &expected, "ids differ for {:?}", filter);
        // Exports resolve ids from the dictionary when the decoded one is not cached.
        let uncached = Arc::new(uncached);
        let mut export = uncached.export(Some(&filter), None, fixture.now_ms).unwrap();
        let exported: Vec<String> = export.next_chunk(expected.len() + 1).unwrap().into_iter().map(|m| m.id).collect();
        prop_assert_eq!(exported, expected.into_iter().collect::<Vec<_>>());
        let path = paths().into_iter().filter(|p| !matches!(p, FieldPath::Core(f) if !f.sortable())).collect::<Vec<_>>().choose(&mut rng).unwrap().clone();
        let spec = SortSpec { path, descending: rng.random_bool(0.5) };
        let page = |snapshot: &super::Snapshot| snapshot.search(Some(&filter), &spec, None, 40, false, fixture.now_ms).unwrap()
            .into_iter().map(|h| (h.sort_value, h.id)).collect::<Vec<_>>();
        prop_assert_eq!(page(&uncached), page(&cached), "sorting by {:?}", spec);
    }

    #[test]
    fn sorted_pages_visit_every_match_once_in_order(seed in any::<u64>(), page in 1usize..97) {
        let fixture = fixture();
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let filter = if rng.random_bool(0.3) { None } else { Some(valid_filter(seed, &fixture.users)) };
        let path = paths().into_iter().filter(|p| !matches!(p, FieldPath::Core(f) if !f.sortable())).collect::<Vec<_>>().choose(&mut rng).unwrap().clone();
        let spec = SortSpec { path: path.clone(), descending: rng.random_bool(0.5) };
        let mut expected: Vec<(crate::query::sort::SortValue, String)> = fixture.users.iter()
            .filter(|u| filter.as_ref().is_none_or(|f| matches(f, u, fixture.now_ms)))
            .map(|u| (sort_value(u, &path, spec.descending), u.id.clone()))
            .collect();
        expected.sort_by(|a, b| hit_cmp((&a.0, &a.1), (&b.0, &b.1), spec.descending));
        let snapshot = fixture.index.snapshot();
        let mut seen = Vec::new();
        let mut after = None;
        loop {
            let hits = snapshot.search(filter.as_ref(), &spec, after.take(), page, false, fixture.now_ms).unwrap();
            prop_assert!(hits.len() <= page);
            let Some(last) = hits.last() else { break };
            after = Some(super::SortCursor { value: last.sort_value.clone(), id: last.id.clone() });
            seen.extend(hits.into_iter().map(|h| (h.sort_value, h.id)));
        }
        prop_assert_eq!(seen.len(), expected.len(), "sorting by {:?}", spec);
        for (got, want) in seen.iter().zip(&expected) {
            prop_assert_eq!(&got.1, &want.1, "sorting by {:?}: got {:?}, want {:?}", spec, got, want);
        }
    }
}

#[test]
fn get_returns_the_stored_clerk_json_and_deleted_users_are_gone() {
    let fixture = fixture();
    let snapshot = fixture.index.snapshot();
    let user = &fixture.users[10];
    let raw = snapshot.get_raw_json(&user.id).unwrap().unwrap();
    assert_eq!(raw, &*user.raw_json);
    assert_eq!(snapshot.version_of(&user.id).unwrap(), Some(user.version()));
    let population = Population::new(USERS);
    let deleted = population.user(3)["id"].as_str().unwrap().to_string();
    assert_eq!(snapshot.get_raw_json(&deleted).unwrap(), None);
    assert_eq!(snapshot.freshness.user_count as usize, fixture.users.len());
}

fn versioned(base: &User, updated_at: i64, plan: &str) -> Arc<User> {
    let mut user = base.clone();
    user.updated_at = updated_at;
    user.public_metadata = serde_json::json!({ "plan_type": plan });
    Arc::new(user)
}

#[test]
fn stale_updates_are_ignored_and_tombstones_outlive_a_restart() {
    let users = population_users(2);
    let (a, b) = (&users[0], &users[1]);
    let now = crate::clock::now_ms();
    let upsert = |user: Arc<User>| UserChange::Upsert {
        user,
        source: ChangeSource::Webhook,
    };
    let delete = |id: &str, at: i64| UserChange::Delete {
        user_id: id.to_string(),
        deleted_at_ms: at,
        source: ChangeSource::Webhook,
    };
    let plan_of = |index: &UserIndex, id: &str| {
        index.snapshot().get_raw_json(id).unwrap().map(|raw| {
            let json: serde_json::Value = serde_json::from_str(&raw).unwrap();
            json["public_metadata"]["plan_type"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        })
    };
    runtime().block_on(async {
        let sandbox = Sandbox::new();
        // Newer then older: the older one is ignored, in one batch and across commits.
        sandbox
            .apply(vec![
                upsert(versioned(a, now - 1_000, "pro")),
                upsert(versioned(a, now - 5_000, "free")),
            ])
            .await;
        assert_eq!(plan_of(&sandbox.index, &a.id).as_deref(), Some("pro"));
        sandbox
            .apply(vec![upsert(versioned(a, now - 2_000, "team"))])
            .await;
        assert_eq!(plan_of(&sandbox.index, &a.id).as_deref(), Some("pro"));
        // Deleted, then a late update from before the deletion: stays deleted.
        sandbox
            .apply(vec![
                upsert(versioned(b, now - 3_000, "pro")),
                delete(&b.id, now - 500),
            ])
            .await;
        sandbox
            .apply(vec![upsert(versioned(b, now - 600, "late"))])
            .await;
        assert_eq!(plan_of(&sandbox.index, &b.id), None);
        let stats = sandbox.writer.stats();
        assert_eq!(stats.ignored_stale.load(Ordering::Relaxed), 2);
        assert_eq!(stats.ignored_deleted.load(Ordering::Relaxed), 1);

        let sandbox = sandbox.reopen().await;
        assert_eq!(sandbox.index.snapshot().tombstone_count, 1);
        sandbox
            .apply(vec![upsert(versioned(b, now - 400 - 200, "late again"))])
            .await;
        assert_eq!(
            plan_of(&sandbox.index, &b.id),
            None,
            "the tombstone survived the restart"
        );
        sandbox
            .apply(vec![upsert(versioned(a, now - 1_500, "stale"))])
            .await;
        assert_eq!(
            plan_of(&sandbox.index, &a.id).as_deref(),
            Some("pro"),
            "versions survive the restart"
        );
        sandbox.close().await;
    });
}

#[test]
fn a_newer_sign_in_at_the_same_updated_at_replaces_the_user_and_an_older_one_does_not() {
    let base = population_users(1).remove(0);
    let signed_in = |at: i64| {
        let mut user = (*base).clone();
        user.last_sign_in_at = Some(at);
        user.last_active_at = Some(at);
        Arc::new(user)
    };
    runtime().block_on(async {
        let sandbox = Sandbox::new();
        for at in [1_000, 3_000, 2_000] {
            sandbox
                .upsert(&[signed_in(at)], ChangeSource::Webhook)
                .await;
        }
        let held = sandbox
            .index
            .snapshot()
            .version_of(&base.id)
            .unwrap()
            .unwrap();
        assert_eq!(
            held,
            signed_in(3_000).version(),
            "the late, older sign-in is ignored"
        );
        let stale = sandbox.writer.stats().ignored_stale.load(Ordering::Relaxed);
        assert_eq!(stale, 1);
        sandbox.close().await;
    });
}

#[test]
fn tombstones_are_pruned_after_the_retention_window() {
    let user = population_users(1).remove(0);
    runtime().block_on(async {
        let sandbox = Sandbox::configured(|config| {
            config.tombstone_retention = std::time::Duration::from_millis(50);
        });
        sandbox
            .apply(vec![UserChange::Delete {
                user_id: user.id.clone(),
                deleted_at_ms: user.updated_at + 10,
                source: ChangeSource::Webhook,
            }])
            .await;
        assert_eq!(sandbox.index.snapshot().tombstone_count, 1);
        tokio::time::sleep(std::time::Duration::from_millis(80)).await;
        sandbox.writer.flush().await.unwrap();
        assert_eq!(
            sandbox.index.snapshot().tombstone_count,
            0,
            "pruned at the first commit after the window"
        );
        sandbox.close().await;
    });
}

/// An index of `users`, written in batches of `batch` (one segment each) and committed.
pub(super) fn index_of(
    users: &[Arc<User>],
    batch: usize,
) -> (UserIndex, Option<tempfile::TempDir>) {
    runtime().block_on(async {
        let sandbox = Sandbox::new();
        for users in users.chunks(batch) {
            sandbox.upsert(users, ChangeSource::Backfill).await;
        }
        sandbox.close().await
    })
}

/// Generated users, one per public metadata object given.
fn users_with_public(metadata: impl Iterator<Item = serde_json::Value>) -> Vec<Arc<User>> {
    let metadata: Vec<serde_json::Value> = metadata.collect();
    let population = Population::new(metadata.len());
    (metadata.into_iter().enumerate())
        .map(|(i, public)| {
            let mut user = user_of(&population.user(i));
            user.public_metadata = public;
            Arc::new(user)
        })
        .collect()
}

/// Ranges and sorts find the column of a key holding a dot (`` `a.b` ``) and of a nested path:
/// filters, sorts and facets name columns the same escaped way.
#[test]
fn ranges_and_sorts_reach_dotted_and_nested_keys() {
    let users =
        users_with_public((0..6).map(|i| serde_json::json!({ "a.b": i * 10, "x": { "y": i } })));
    let (index, _dir) = index_of(&users, users.len());
    let snapshot = index.snapshot();
    let count = |text: &str| {
        let filter = crate::query::parse_filter(text, &FilterLimits::default()).unwrap();
        snapshot.count(Some(&filter), 0).unwrap()
    };
    assert_eq!(count("public.`a.b` >= 30"), 3);
    assert_eq!(count("public.`a.b` BETWEEN 10 AND 20"), 2);
    assert_eq!(count("public.x.y < 2 AND public.`a.b` > 0"), 1);
    let spec = SortSpec {
        path: crate::query::parse_path("public.`a.b`").unwrap(),
        descending: true,
    };
    let top = snapshot.search(None, &spec, None, 2, false, 0).unwrap();
    let ids: Vec<&str> = top.iter().map(|hit| hit.id.as_str()).collect();
    assert_eq!(ids, [users[5].id.as_str(), users[4].id.as_str()]);
}

/// Top-N drops docs worse than the worst hit it keeps before reading their ids; a doc that ties
/// with it must still get in (ties are broken by id), on every kind of sort column.
#[test]
fn sorted_pages_keep_the_ties_of_the_worst_kept_hit() {
    let n = 700;
    let population = Population::new(n);
    let users: Vec<Arc<User>> = (0..n)
        .map(|i| {
            let mut user = user_of(&population.user(i));
            user.public_metadata = match i % 11 {
                0 => serde_json::json!({}),
                _ => serde_json::json!({ "int": i % 7, "float": (i % 5) as f64 - 1.5 }),
            };
            // Many users signed in at the same millisecond.
            user.last_sign_in_at = Some(1_700_000_000_000 + (i % 3) as i64);
            Arc::new(user)
        })
        .collect();
    // Written from the largest id down, so that every later doc of a tie sorts first.
    let mut written = users.clone();
    written.sort_by(|a, b| b.id.cmp(&a.id));
    let (index, _dir) = index_of(&written, 300);
    let snapshot = index.snapshot();
    for path in ["public.int", "public.float", "last_sign_in_at"] {
        let path = crate::query::parse_path(path).unwrap();
        for descending in [true, false] {
            let spec = SortSpec {
                path: path.clone(),
                descending,
            };
            let mut expected: Vec<(crate::query::sort::SortValue, String)> = users
                .iter()
                .map(|u| (sort_value(u, &path, descending), u.id.clone()))
                .collect();
            expected.sort_by(|a, b| hit_cmp((&a.0, &a.1), (&b.0, &b.1), descending));
            for page in [1, 10, 50] {
                let top = snapshot.search(None, &spec, None, page, false, 0).unwrap();
                let got: Vec<&str> = top.iter().map(|hit| hit.id.as_str()).collect();
                let want: Vec<&str> = expected[..page].iter().map(|(_, id)| id.as_str()).collect();
                assert_eq!(got, want, "{spec:?}, page of {page}");
            }
        }
    }
}

/// Equality on numbers is exact for every integer (it reads the inverted index, which keeps
/// each integer as itself), also on a path whose column holds floats; ranges compare as f64,
/// as the filter's model does, so integers past 2^53 that round to one float are not ordered
/// apart. The README states both.
#[test]
fn integers_past_two_to_the_53_are_equal_only_to_themselves() {
    let values = [
        serde_json::json!(9_007_199_254_740_992_u64),
        serde_json::json!(9_007_199_254_740_993_u64),
        serde_json::json!(9_007_199_254_740_994_u64),
        serde_json::json!(0.5),
    ];
    let users = users_with_public(values.iter().map(|n| serde_json::json!({ "n": n })));
    let (index, _dir) = index_of(&users, users.len());
    let snapshot = index.snapshot();
    let count = |text: &str| {
        let filter = crate::query::parse_filter(text, &FilterLimits::default()).unwrap();
        let model = users.iter().filter(|u| matches(&filter, u, 0)).count() as u64;
        let counted = snapshot.count(Some(&filter), 0).unwrap();
        assert_eq!(counted, model, "{text}: the index and the model disagree");
        counted
    };
    assert_eq!(count("public.n = 9007199254740993"), 1);
    assert_eq!(count("public.n = 9007199254740992"), 1);
    assert_eq!(count("public.n IN [9007199254740992, 9007199254740994]"), 2);
    assert_eq!(count("public.n != 9007199254740993"), 3);
    // 2^53 + 1 is 2^53 as an f64: ordered, it ties with 2^53.
    assert_eq!(count("public.n > 9007199254740992"), 1);
    assert_eq!(count("public.n >= 9007199254740993"), 3);
    assert_eq!(count("public.n < 1"), 1);
}
