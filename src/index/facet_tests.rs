//! Facets must equal a brute-force count over the same users, under random filters.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use proptest::prelude::*;
use serde_json::Value as Json;

use super::facet_spec::{
    Calendar, FacetKind, FacetOutcome, FacetSpec, FacetValue, MAX_PERCENTILES,
};
use super::sandbox::user_of;
use super::tests::{fixture, index_of, meta, valid_filter};
use crate::clerk::fake::Population;
use crate::query::ast::FieldPath;
use crate::query::eval::{core_bool, core_date, core_strings, matches, metadata_leaves};
use crate::query::{CoreField, Filter};
use crate::user::{MetadataNamespace, User};

/// The distinct values a user holds at a path, as a facet sees them.
fn values_of(user: &User, path: &FieldPath) -> BTreeSet<String> {
    let mut values = BTreeSet::new();
    match path {
        FieldPath::Core(field) => {
            if let Some(b) = core_bool(user, *field) {
                values.insert(format!("b:{b}"));
            }
            for s in core_strings(user, *field) {
                values.insert(format!("s:{s}"));
            }
        }
        FieldPath::Metadata { namespace, keys } => {
            for leaf in metadata_leaves(user.metadata(*namespace), keys) {
                match leaf {
                    Json::String(s) => values.insert(format!("s:{s}")),
                    Json::Bool(b) => values.insert(format!("b:{b}")),
                    Json::Number(n) => values.insert(format!("n:{}", n.as_f64().unwrap())),
                    _ => false,
                };
            }
        }
    }
    values
}

fn label(value: &FacetValue) -> String {
    match value {
        FacetValue::Str(s) => format!("s:{s}"),
        FacetValue::Bool(b) => format!("b:{b}"),
        FacetValue::Int(i) => format!("n:{}", *i as f64),
        FacetValue::Float(f) => format!("n:{f}"),
    }
}

fn matching<'a>(filter: Option<&Filter>) -> Vec<&'a User> {
    let fixture = fixture();
    fixture
        .users
        .iter()
        .filter(|u| filter.is_none_or(|f| matches(f, u, fixture.now_ms)))
        .map(|u| &**u)
        .collect()
}

fn terms_paths() -> Vec<FieldPath> {
    use MetadataNamespace::*;
    vec![
        meta(Public, &["plan_type"]),
        meta(Public, &["membership_tier"]),
        meta(Public, &["favorite_genre"]),
        meta(Public, &["beta_cohort"]),
        meta(Public, &["points"]),
        meta(Public, &["score"]),
        meta(Public, &["tags"]),
        meta(Public, &["user_preferences", "theme"]),
        meta(Public, &["utm-campaign"]),
        meta(Private, &["crm", "segment"]),
        meta(Unsafe, &["onboarding_complete"]),
        FieldPath::Core(CoreField::EmailDomain),
        FieldPath::Core(CoreField::Banned),
        FieldPath::Core(CoreField::TwoFactorEnabled),
    ]
}

fn check_terms(filter: Option<&Filter>, path: &FieldPath) {
    let fixture = fixture();
    let users = matching(filter);
    let mut expected: BTreeMap<String, u64> = BTreeMap::new();
    let mut missing = 0;
    for user in &users {
        let values = values_of(user, path);
        if values.is_empty() {
            missing += 1;
        }
        for value in values {
            *expected.entry(value).or_default() += 1;
        }
    }
    let spec = FacetSpec {
        name: "f".into(),
        path: path.clone(),
        kind: FacetKind::Terms {
            size: 5,
            include_missing: true,
        },
    };
    let snapshot = fixture.index.snapshot();
    let facets = snapshot.facets(filter, &[spec], fixture.now_ms).unwrap();
    assert_eq!(facets.matched, users.len() as u64, "{path}");
    let FacetOutcome::Terms(terms) = &facets.results[0].1 else {
        panic!("terms expected")
    };
    let mut by_count: Vec<(&String, &u64)> = expected.iter().collect();
    by_count.sort_by(|a, b| b.1.cmp(a.1));
    let got: Vec<(String, u64)> = terms.buckets.iter().map(|(v, c)| (label(v), *c)).collect();
    for (value, count) in &got {
        assert_eq!(
            expected.get(value),
            Some(count),
            "{path}: {value} in {got:?}"
        );
    }
    let shown = got.len().min(5);
    assert_eq!(
        shown,
        expected.len().min(5),
        "{path}: {got:?} vs {by_count:?}"
    );
    // The shown buckets are the most frequent ones.
    if let Some((_, smallest_shown)) = got.last() {
        assert!(
            by_count
                .iter()
                .skip(shown)
                .all(|(_, c)| **c <= *smallest_shown),
            "{path}"
        );
    }
    let total: u64 = expected.values().sum();
    let shown_total: u64 = got.iter().map(|(_, c)| c).sum();
    assert_eq!(terms.other_count, total - shown_total, "{path}");
    assert_eq!(terms.distinct_values, expected.len() as u64, "{path}");
    assert!(terms.distinct_exact);
    assert_eq!(terms.missing, Some(missing), "{path}");
}

#[test]
fn terms_facets_equal_a_brute_force_count() {
    for path in terms_paths() {
        check_terms(None, &path);
    }
}

fn numbers_at(users: &[&User], path: &FieldPath) -> Vec<f64> {
    let mut values = Vec::new();
    for user in users {
        match path {
            FieldPath::Core(field) => values.extend(core_date(user, *field).map(|v| v as f64)),
            FieldPath::Metadata { namespace, keys } => values.extend(
                metadata_leaves(user.metadata(*namespace), keys)
                    .into_iter()
                    .filter_map(|v| v.as_f64()),
            ),
        }
    }
    values
}

fn check_stats(filter: Option<&Filter>, path: &FieldPath) {
    let fixture = fixture();
    let users = matching(filter);
    let mut values = numbers_at(&users, path);
    values.sort_by(f64::total_cmp);
    let spec = FacetSpec {
        name: "s".into(),
        path: path.clone(),
        kind: FacetKind::Stats {
            percentiles: vec![90.0, 50.0, 50.0, 99.5],
        },
    };
    let snapshot = fixture.index.snapshot();
    let facets = snapshot.facets(filter, &[spec], fixture.now_ms).unwrap();
    let FacetOutcome::Stats(stats) = &facets.results[0].1 else {
        panic!("stats expected")
    };
    assert_eq!(stats.count, values.len() as u64, "{path}");
    if values.is_empty() {
        return;
    }
    let sum: f64 = values.iter().sum();
    let close = |a: f64, b: f64| (a - b).abs() <= 1e-6 * b.abs().max(1.0);
    assert!(
        close(stats.min, values[0]),
        "{path}: min {} vs {}",
        stats.min,
        values[0]
    );
    assert!(close(stats.max, *values.last().unwrap()), "{path}: max");
    assert!(close(stats.sum, sum), "{path}: sum {} vs {sum}", stats.sum);
    assert!(close(stats.avg, sum / values.len() as f64), "{path}: avg");
    // Percentiles are approximate (DDSketch): the value must sit near the true rank.
    for (percent, value) in &stats.percentiles {
        let rank = values.partition_point(|v| *v < value * 0.98 - 1.0) as f64;
        let rank_hi = values.partition_point(|v| *v <= value * 1.02 + 1.0) as f64;
        let target = percent / 100.0 * values.len() as f64;
        assert!(
            rank <= target + 1.0 && target <= rank_hi + 1.0,
            "{path}: p{percent} = {value}, rank {rank}..{rank_hi} of {}",
            values.len()
        );
    }
}

#[test]
fn numeric_stats_equal_a_brute_force_computation() {
    use MetadataNamespace::*;
    for path in [
        meta(Public, &["points"]),
        meta(Public, &["score"]),
        meta(Private, &["ltv"]),
        meta(Private, &["seats"]),
        meta(Unsafe, &["onboarding_step"]),
        FieldPath::Core(CoreField::CreatedAt),
    ] {
        check_stats(None, &path);
    }
}

#[test]
fn histograms_equal_a_brute_force_count() {
    let fixture = fixture();
    let path = meta(MetadataNamespace::Public, &["points"]);
    let users = matching(None);
    let mut expected: BTreeMap<i64, u64> = BTreeMap::new();
    for value in numbers_at(&users, &path) {
        *expected
            .entry(((value - 5.0) / 1000.0).floor() as i64)
            .or_default() += 1;
    }
    let spec = FacetSpec {
        name: "h".into(),
        path,
        kind: FacetKind::Histogram {
            interval: 1000.0,
            offset: 5.0,
        },
    };
    let facets = fixture.index.snapshot().facets(None, &[spec], 0).unwrap();
    let FacetOutcome::Histogram(buckets) = &facets.results[0].1 else {
        panic!("histogram expected")
    };
    let got: BTreeMap<i64, u64> = buckets
        .iter()
        .map(|b| (((b.key - 5.0) / 1000.0).round() as i64, b.count))
        .collect();
    assert_eq!(got, expected);
}

fn calendar_key(ms: i64, calendar: Calendar) -> String {
    let at = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000).unwrap();
    let date = at.date();
    match calendar {
        Calendar::Day => date.to_string(),
        Calendar::Week => {
            let (year, week, _) = date.to_iso_week_date();
            format!("{year}-W{week:02}")
        }
        Calendar::Month => format!("{}-{:02}", date.year(), date.month() as u8),
    }
}

#[test]
fn date_histograms_roll_days_into_weeks_and_months() {
    let fixture = fixture();
    let users = matching(None);
    for calendar in [Calendar::Day, Calendar::Week, Calendar::Month] {
        let mut expected: BTreeMap<String, u64> = BTreeMap::new();
        for user in &users {
            *expected
                .entry(calendar_key(user.created_at, calendar))
                .or_default() += 1;
        }
        let spec = FacetSpec {
            name: "d".into(),
            path: FieldPath::Core(CoreField::CreatedAt),
            kind: FacetKind::DateHistogram(calendar),
        };
        let facets = fixture.index.snapshot().facets(None, &[spec], 0).unwrap();
        let FacetOutcome::DateHistogram(buckets) = &facets.results[0].1 else {
            panic!("date histogram expected")
        };
        let mut got: BTreeMap<String, u64> = BTreeMap::new();
        for bucket in buckets {
            // Every bucket starts where its calendar unit starts, and gaps are zero-filled.
            let key = calendar_key(bucket.key as i64, calendar);
            assert!(
                got.insert(key, bucket.count).is_none(),
                "{calendar:?}: duplicate bucket"
            );
        }
        got.retain(|_, count| *count > 0);
        assert_eq!(got, expected, "{calendar:?}");
        let keys: Vec<f64> = buckets.iter().map(|b| b.key).collect();
        assert!(keys.windows(2).all(|w| w[0] < w[1]));
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 60, ..ProptestConfig::default() })]

    #[test]
    fn facets_under_random_filters_equal_brute_force(seed in any::<u64>()) {
        let filter = valid_filter(seed, &fixture().users);
        let paths = terms_paths();
        let path = &paths[(seed % paths.len() as u64) as usize];
        check_terms(Some(&filter), path);
        check_stats(Some(&filter), &meta(MetadataNamespace::Public, &["score"]));
    }
}

#[test]
fn facets_that_cannot_work_are_refused_with_a_reason() {
    let fixture = fixture();
    let bad = [
        (
            FieldPath::Core(CoreField::Email),
            FacetKind::Terms {
                size: 5,
                include_missing: false,
            },
        ),
        (
            FieldPath::Core(CoreField::CreatedAt),
            FacetKind::Terms {
                size: 5,
                include_missing: false,
            },
        ),
        (
            FieldPath::Core(CoreField::EmailDomain),
            FacetKind::Stats {
                percentiles: vec![],
            },
        ),
        (
            meta(MetadataNamespace::Public, &["points"]),
            FacetKind::DateHistogram(Calendar::Day),
        ),
        (
            meta(MetadataNamespace::Public, &["points"]),
            FacetKind::Histogram {
                interval: 0.0,
                offset: 0.0,
            },
        ),
        (
            meta(MetadataNamespace::Public, &["points"]),
            FacetKind::Terms {
                size: 0,
                include_missing: false,
            },
        ),
    ];
    for (path, kind) in bad {
        let spec = FacetSpec {
            name: "x".into(),
            path,
            kind,
        };
        let error = fixture
            .index
            .snapshot()
            .facets(None, std::slice::from_ref(&spec), 0)
            .unwrap_err();
        assert!(
            matches!(error, super::error::IndexError::InvalidRequest(_)),
            "{spec:?}: {error}"
        );
    }
}

#[test]
fn the_field_catalog_counts_each_type_of_each_path_exactly() {
    use super::paths::{TYPE_SEPARATOR, metadata_path_types};
    use crate::user::decode_metadata_path;
    let fixture = fixture();
    let mut expected: BTreeMap<(String, String), u64> = BTreeMap::new();
    for user in &fixture.users {
        for namespace in MetadataNamespace::ALL {
            for entry in metadata_path_types(namespace, user.metadata(namespace)) {
                let (encoded, kind) = entry.rsplit_once(TYPE_SEPARATOR).unwrap();
                let (namespace, keys) = decode_metadata_path(encoded).unwrap();
                let path = FieldPath::Metadata { namespace, keys }.to_string();
                *expected.entry((path, kind.to_string())).or_default() += 1;
            }
        }
    }
    let catalog = fixture.index.snapshot().field_catalog().unwrap();
    let mut got: BTreeMap<(String, String), u64> = BTreeMap::new();
    for entry in &catalog {
        for (kind, users) in &entry.types {
            got.insert((entry.path.to_string(), kind.clone()), *users);
        }
    }
    assert_eq!(got, expected);
    // The generator gives `membership_tier` a string to most users and a number to a few.
    let tier = catalog
        .iter()
        .find(|p| p.path.to_string() == "public.membership_tier")
        .unwrap();
    assert!(tier.type_conflict(), "{tier:?}");
    assert_eq!(tier.types[0].0, "string");
    let plan = catalog
        .iter()
        .find(|p| p.path.to_string() == "public.plan_type")
        .unwrap();
    assert!(!plan.type_conflict());
}

/// A segment where no user has a username (null usernames are normal in Clerk) must not break a
/// terms facet on it: its string column exists with no values at all.
#[test]
fn a_terms_facet_over_a_segment_without_any_value_counts_the_others() {
    let population = Population::new(40);
    let users: Vec<Arc<User>> = (0..40)
        .map(|i| {
            let mut user = user_of(&population.user(i));
            if i >= 20 {
                user.username = None;
                user.first_name = None;
            }
            Arc::new(user)
        })
        .collect();
    let (index, _dir) = index_of(&users, 20);
    let snapshot = index.snapshot();
    for field in [CoreField::Username, CoreField::FirstName] {
        let spec = FacetSpec {
            name: "t".into(),
            path: FieldPath::Core(field),
            kind: FacetKind::Terms {
                size: 100,
                include_missing: true,
            },
        };
        let facets = snapshot.facets(None, &[spec], 0).unwrap();
        let FacetOutcome::Terms(terms) = &facets.results[0].1 else {
            panic!("terms expected");
        };
        let counted: u64 = terms.buckets.iter().map(|(_, n)| n).sum::<u64>() + terms.other_count;
        let holders = users
            .iter()
            .filter(|u| !crate::query::eval::core_strings(u, field).is_empty())
            .count() as u64;
        assert!(holders > 0, "{field:?}");
        assert_eq!(
            (counted, terms.missing),
            (holders, Some(40 - holders)),
            "{field:?}"
        );
    }
}

#[test]
fn a_stats_facet_takes_at_most_a_hundred_percentiles() {
    let spec = |count: usize| FacetSpec {
        name: "s".into(),
        path: FieldPath::Core(CoreField::CreatedAt),
        kind: FacetKind::Stats {
            percentiles: (0..count).map(|i| (i % 100) as f64).collect(),
        },
    };
    spec(MAX_PERCENTILES).check().unwrap();
    let error = spec(400_000).check().unwrap_err().to_string();
    assert!(error.contains("at most 100 percentiles"), "{error}");
}
