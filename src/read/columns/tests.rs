//! Users written from columns must read as the same JSON values as their stored documents under
//! the same mask, whatever the users hold: absent and `null` keys, arrays, objects, integers in
//! columns coerced to floats, keys with dots, several segments.

use std::sync::Arc;

use proptest::prelude::*;
use serde_json::{Map, Value, json};

use super::*;
use crate::auth::{Caller, Scopes};
use crate::change::ChangeSource;
use crate::index::ValueColumns;
use crate::index::sandbox::{Sandbox, population_users, runtime, user_of};
use crate::read::projection::Projection;

/// Keys metadata objects are drawn from (`a.b` is one key, not a path).
const KEYS: [&str; 5] = ["a", "b", "tier", "a.b", "n"];

fn scalar() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        (-3i64..3).prop_map(Value::from),
        Just(json!(i64::MIN)),
        Just(json!(u64::MAX)),
        Just(json!(9_007_199_254_740_993u64)),
        prop_oneof![Just(1.5), Just(3.0), Just(-0.0), Just(1e300), Just(0.1)].prop_map(Value::from),
        prop_oneof![
            Just(""),
            Just("gold"),
            Just("Ünï cødé"),
            Just("a.b"),
            Just("x\"y")
        ]
        .prop_map(Value::from),
    ]
}

fn metadata_value() -> impl Strategy<Value = Value> {
    scalar().prop_recursive(3, 12, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..3).prop_map(Value::Array),
            prop::collection::btree_map(prop::sample::select(KEYS.to_vec()), inner, 0..4).prop_map(
                |map| Value::Object(map.into_iter().map(|(k, v)| (k.to_string(), v)).collect())
            ),
        ]
    })
}

/// A namespace: usually an object, sometimes `null`, absent or not an object at all.
fn namespace() -> impl Strategy<Value = Option<Value>> {
    prop_oneof![
        6 => prop::collection::btree_map(prop::sample::select(KEYS.to_vec()), metadata_value(), 0..4)
            .prop_map(|map| Some(Value::Object(
                map.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
            ))),
        1 => Just(None),
        1 => Just(Some(Value::Null)),
        1 => Just(Some(json!("text"))),
    ]
}

/// An optional core value: absent, `null`, or one of `values`.
fn core(values: Vec<Value>) -> impl Strategy<Value = Option<Value>> {
    prop_oneof![
        1 => Just(None),
        1 => Just(Some(Value::Null)),
        4 => prop::sample::select(values).prop_map(Some),
    ]
}

/// A user without its id.
fn user() -> impl Strategy<Value = Map<String, Value>> {
    let names = vec![json!("Ann"), json!(""), json!("Zoë"), json!("O'Brien")];
    let times = vec![
        json!(0),
        json!(1_700_000_000_123i64),
        json!(-5),
        json!(9_000_000_000_000_000i64),
    ];
    let flags = vec![json!(true), json!(false)];
    (
        (core(names.clone()), core(names.clone()), core(names)),
        (core(times.clone()), core(times.clone()), core(times)),
        (core(flags.clone()), core(flags)),
        (namespace(), namespace(), namespace()),
    )
        .prop_map(|(names, times, flags, metadata)| {
            let mut user = Map::new();
            let keyed = [
                ("first_name", names.0),
                ("last_name", names.1),
                ("external_id", names.2),
                ("created_at", times.0),
                ("updated_at", times.1),
                ("last_sign_in_at", times.2),
                ("banned", flags.0),
                ("has_image", flags.1),
                ("public_metadata", metadata.0),
                ("private_metadata", metadata.1),
                ("unsafe_metadata", metadata.2),
            ];
            for (key, value) in keyed {
                if let Some(value) = value {
                    user.insert(key.into(), value);
                }
            }
            user
        })
}

/// Masks: core fields, metadata paths at several depths, and a few the columns cannot answer.
const FIELDS: [&str; 16] = [
    "first_name",
    "last_name",
    "external_id",
    "created_at",
    "updated_at",
    "last_sign_in_at",
    "banned",
    "has_image",
    "public.a",
    "public.tier",
    "public.a.b",
    "public.a.b.n",
    "private.n",
    "unsafe.b.a",
    "public",
    "username",
];

fn mask() -> impl Strategy<Value = Vec<String>> {
    prop::collection::vec(prop::sample::select(FIELDS.to_vec()), 1..5)
        .prop_map(|fields| fields.into_iter().map(str::to_string).collect())
}

/// Indexes `batches` (one segment each), then projects every user both ways under `fields`.
/// Returns how many users came from columns.
fn check(batches: &[Vec<Value>], fields: Vec<String>) -> Result<usize, TestCaseError> {
    let runtime = runtime();
    let _entered = runtime.enter();
    let sandbox = Sandbox::new();
    for batch in batches {
        let users: Vec<_> = batch.iter().map(|json| Arc::new(user_of(json))).collect();
        runtime.block_on(sandbox.upsert(&users, ChangeSource::Backfill));
    }
    let snapshot = sandbox.index.snapshot();
    let projection = Projection::new(fields.clone(), &Caller::unrestricted()).unwrap();
    let Some(plan) = projection.columns() else {
        let answered = ["public", "username"];
        prop_assert!(
            fields.iter().any(|f| answered.contains(&f.as_str())),
            "{fields:?}"
        );
        return Ok(0);
    };
    let mut matches = snapshot.export(None, None, 0).unwrap();
    // Windows of 7: type bits are read again for each window of each segment.
    let mut matches_values = snapshot
        .export_in_windows(None, None, 0, 7)
        .unwrap()
        .with_values(ValueColumns::new(plan.paths().to_vec()))
        .unwrap();
    let plain = matches.next_chunk(usize::MAX >> 1).unwrap();
    // As an export writes them: straight from the columns while merging.
    let valued = matches_values
        .next_chunk_with(usize::MAX >> 1, |id, address, row| {
            let json = plan.render(&id, row)?;
            Ok((id, address, json))
        })
        .unwrap();
    prop_assert_eq!(plain.len(), valued.len());
    let addresses: Vec<_> = valued.iter().map(|(_, address, _)| *address).collect();
    let mut values = ValueColumns::new(plan.paths().to_vec());
    let at = snapshot.slots_at(&mut values, &addresses).unwrap();
    // Columns opened for a few docs look strings up one by one instead of decoding the
    // dictionary: opened here by a first read about no doc in particular.
    let mut one_by_one = ValueColumns::new(plan.paths().to_vec());
    for segment in 0..snapshot.searcher.segment_readers().len() as u32 {
        one_by_one.slot(&snapshot, segment, 0, 0, 0).unwrap();
    }
    let looked_up = snapshot.slots_at(&mut one_by_one, &addresses).unwrap();
    prop_assert_eq!(&at, &looked_up);
    let mut from_columns = 0;
    for ((id, address, exported), slots) in valued.iter().zip(at) {
        // Written per export (kinds for every match up front) and per page (slots), alike.
        let paged = plan.render(id, &mut &slots[..]).unwrap();
        prop_assert_eq!(exported, &paged);
        let stored = projection.apply_at(&snapshot, id, *address).unwrap();
        let Some(json) = paged else {
            continue;
        };
        from_columns += 1;
        let (columns, stored): (Value, Value) = (
            serde_json::from_str(&json).unwrap(),
            serde_json::from_str(&stored).unwrap(),
        );
        prop_assert_eq!(columns, stored, "{:?} of {}", &fields, id);
    }
    Ok(from_columns)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn users_from_columns_equal_their_stored_projection(
        batches in prop::collection::vec(prop::collection::vec(user(), 1..10), 1..4),
        masks in prop::collection::vec(mask(), 3),
    ) {
        let mut n = 0;
        let batches: Vec<Vec<Value>> = batches
            .into_iter()
            .map(|batch| {
                (batch.into_iter())
                    .map(|mut user| {
                        n += 1;
                        user.insert("id".into(), json!(format!("user_{n:04}")));
                        Value::Object(user)
                    })
                    .collect()
            })
            .collect();
        for fields in masks {
            check(&batches, fields)?;
        }
    }
}

#[test]
fn generated_users_are_written_from_columns_alone() {
    let users: Vec<Value> = population_users(300)
        .iter()
        .map(|user| serde_json::from_str(&user.raw_json).unwrap())
        .collect();
    let fields = [
        "first_name",
        "last_name",
        "created_at",
        "last_sign_in_at",
        "public.membership_tier",
        "private.ltv",
    ];
    let from_columns = check(
        &[users[..150].to_vec(), users[150..].to_vec()],
        fields.iter().map(|f| f.to_string()).collect(),
    )
    .unwrap();
    assert_eq!(
        from_columns, 300,
        "every generated user is answered by columns"
    );
}

#[test]
fn a_chunk_split_over_threads_is_written_as_one_thread_writes_it() {
    let runtime = runtime();
    let _entered = runtime.enter();
    let sandbox = Sandbox::new();
    // Two segments, and a chunk of three parts of unequal size (3,100 users, 1,024 per part at
    // least): each part's users must come back in their place, with their own type bits.
    let users = population_users(3_100);
    for part in users.chunks(1_700) {
        runtime.block_on(sandbox.upsert(part, ChangeSource::Backfill));
    }
    let snapshot = sandbox.index.snapshot();
    let fields = [
        "first_name",
        "last_name",
        "public.membership_tier",
        "private.ltv",
    ];
    let fields: Vec<String> = fields.iter().map(|f| f.to_string()).collect();
    let projection = Projection::new(fields, &Caller::unrestricted()).unwrap();
    let plan = projection.columns().expect("every field has a column");
    let write = |executor: &tantivy::Executor| {
        let values = ValueColumns::new(plan.paths().to_vec());
        let mut matches = snapshot.export(None, None, 0).unwrap();
        matches = matches.with_values(values).unwrap();
        (matches.next_chunk_on(executor, usize::MAX >> 1, |id, address, row| {
            let json = plan.render(&id, row)?;
            Ok((id, address, json, std::thread::current().id()))
        }))
        .unwrap()
    };
    let pool = tantivy::Executor::multi_thread(3, "test-write-").unwrap();
    let split = write(&pool);
    let whole = write(&tantivy::Executor::single_thread());
    assert_eq!(split.len(), users.len());
    let caller = std::thread::current().id();
    assert!(split.iter().all(|(.., thread)| *thread != caller));
    assert!(whole.iter().all(|(.., thread)| *thread == caller));
    for ((id, address, json, _), (whole_id, _, whole_json, _)) in split.iter().zip(&whole) {
        assert_eq!((id, json), (whole_id, whole_json));
        let stored = projection.apply_at(&snapshot, id, *address).unwrap();
        let json = json
            .as_deref()
            .expect("generated users are written from columns");
        assert_eq!(
            serde_json::from_str::<Value>(json).unwrap(),
            serde_json::from_str::<Value>(&stored).unwrap()
        );
    }
}

#[test]
fn paths_that_may_hold_sealed_values_are_read_from_stored_users_by_callers_who_open_them() {
    use crate::auth::sensitive::{KeyRing, SensitivePaths, test_ring};
    let sensitive = Arc::new(Sensitive::new(
        SensitivePaths::parse("private.profile.ssn").unwrap(),
        KeyRing::parse(&test_ring(&["k1"])).unwrap(),
    ));
    let caller = |scopes: &str| Caller {
        sensitive: Some(sensitive.clone()),
        ..Caller::with_scopes("k", Scopes::parse_list(scopes).unwrap())
    };
    let planned = |fields: &[&str], scopes: &str| {
        let fields = fields.iter().map(|f| f.to_string()).collect();
        Projection::new(fields, &caller(scopes))
            .unwrap()
            .columns()
            .is_some()
    };
    // Sealed values are cut from both the stored user and the columns for everyone else.
    assert!(planned(&["private.profile.tier"], "public,private"));
    // The caller who opens them: paths at, above or below a sensitive one come from storage.
    for fields in [
        &["private.profile"][..],
        &["private.profile.ssn.x"],
        &["private.profile.ssn"],
    ] {
        assert!(!planned(fields, "public,private,sensitive"), "{fields:?}");
    }
    assert!(planned(
        &["private.plan", "first_name"],
        "public,private,sensitive"
    ));
    assert!(
        !planned(&["id"], "public"),
        "the id alone has its own shortcut"
    );
    assert!(!planned(&["email_addresses"], "public"));
    // Wide masks read stored users: an export holds a byte per path per match.
    let wide: Vec<String> = (0..=MAX_PATHS).map(|n| format!("public.k{n}")).collect();
    let wide: Vec<&str> = wide.iter().map(String::as_str).collect();
    assert!(!planned(&wide, "public"));
    assert!(planned(&wide[..MAX_PATHS - 1], "public"));
}

#[test]
fn numbers_in_a_column_coerced_to_floats_come_back_as_written() {
    // One float makes the segment's column f64: the integers beside it are still integers.
    let users: Vec<Value> = [json!(1), json!(2.5), json!(-7), json!(3.0), json!(null)]
        .into_iter()
        .enumerate()
        .map(|(n, value)| json!({"id": format!("user_{n}"), "public_metadata": {"n": value}}))
        .collect();
    let from_columns = check(&[users], vec!["public.n".into()]).unwrap();
    assert_eq!(from_columns, 5);
}

#[test]
fn integers_a_float_column_may_have_rounded_are_read_from_stored_users() {
    // 2^53 + 1 rounds to 2^53 in an f64 column: neither can be told apart from the column.
    let values = [
        json!(9_007_199_254_740_993u64),
        json!(9_007_199_254_740_992u64),
    ];
    let users: Vec<Value> = (values.into_iter().chain([json!(2.5), json!(-3)]))
        .enumerate()
        .map(|(n, value)| json!({"id": format!("user_{n}"), "public_metadata": {"n": value}}))
        .collect();
    let from_columns = check(&[users], vec!["public.n".into()]).unwrap();
    assert_eq!(
        from_columns, 2,
        "2.5 and -3 from columns, the large two stored"
    );
}
