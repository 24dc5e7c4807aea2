use std::sync::Arc;

use proptest::prelude::*;
use serde_json::json;

use super::*;
use crate::query::{FilterLimits, parse_filter};

fn filter(text: &str) -> Filter {
    parse_filter(text, &FilterLimits::default()).unwrap()
}

fn user(
    last_active: Option<i64>,
    created: i64,
    trial_end: serde_json::Value,
    orgs: &[i64],
) -> User {
    let views: Vec<serde_json::Value> = orgs
        .iter()
        .map(|joined| json!({"slug": "acme", "created_at": joined}))
        .collect();
    User {
        id: "user_1".into(),
        external_id: None,
        username: None,
        first_name: None,
        last_name: None,
        primary_email: None,
        emails: Vec::new(),
        phone_numbers: Vec::new(),
        created_at: created,
        updated_at: created,
        last_sign_in_at: None,
        last_active_at: last_active,
        banned: false,
        locked: false,
        two_factor_enabled: false,
        password_enabled: false,
        has_image: false,
        primary_email_verified: false,
        email_verified: false,
        oauth_providers: Vec::new(),
        enterprise_connections: Vec::new(),
        locale: None,
        legal_accepted_at: None,
        mfa_enabled: false,
        totp_enabled: false,
        backup_code_enabled: false,
        passkey_count: 0,
        public_metadata: json!({ "trial_end": trial_end }),
        private_metadata: json!({}),
        unsafe_metadata: json!({}),
        raw_json: Arc::from("{}"),
        sealed: None,
        organizations: Arc::new(json!(views)),
        column_gaps: Vec::new(),
    }
}

/// The reference: the answer at every millisecond, and where it changes.
fn brute_force(filter: &Filter, user: &User, from: i64, to: i64) -> Vec<(i64, bool)> {
    let mut changes = Vec::new();
    let mut state = matches(filter, user, from);
    for now in from + 1..=to {
        let is = matches(filter, user, now);
        if is != state {
            changes.push((now, is));
            state = is;
        }
    }
    changes
}

#[test]
fn relative_bounds_are_collected_once_each_and_know_their_brackets() {
    let f = filter(
        "last_active_at < now-2s AND (last_active_at < now-2s OR created_at BETWEEN now-5s AND now) AND org[created_at > now-1s] AND public.x = 1",
    );
    let bounds = relative_bounds(&f);
    let described: Vec<(String, i64, bool)> = bounds
        .iter()
        .map(|b| (format!("{:?}", b.path), b.offset, b.in_org))
        .collect();
    assert_eq!(described.len(), 4, "{described:?}");
    assert_eq!(described[0].1, -2_000);
    assert_eq!((described[1].1, described[2].1), (-5_000, 0));
    assert_eq!((described[3].1, described[3].2), (-1_000, true));
    assert!(is_time_driven(&f));
    assert!(!is_time_driven(&filter(
        "created_at > 2024-01-01 AND public.x = 1"
    )));
}

#[test]
fn a_user_crossing_an_inactivity_line_enters_at_the_first_millisecond_past_it() {
    let f = filter("last_active_at < now-30d");
    let thirty_days = 30 * 86_400_000;
    let u = user(Some(1_000_000), 0, json!(null), &[]);
    // The line is at 1_000_000 + 30d: strictly later than it, the user is inactive.
    let line = 1_000_000 + thirty_days;
    assert_eq!(membership_changes(&f, &u, line - 60_000, line), Vec::new());
    assert_eq!(
        membership_changes(&f, &u, line - 60_000, line + 60_000),
        vec![(line + 1, true)]
    );
    // Nothing moves in the next minute.
    assert_eq!(
        membership_changes(&f, &u, line + 60_000, line + 120_000),
        Vec::new()
    );
}

#[test]
fn a_long_pause_finds_an_entry_and_the_exit_after_it() {
    let f = filter("created_at BETWEEN now-2d AND now-1d");
    let day = 86_400_000;
    let u = user(None, 10 * day, json!(null), &[]);
    assert_eq!(
        membership_changes(&f, &u, 10 * day, 20 * day),
        vec![(11 * day, true), (12 * day + 1, false)]
    );
}

#[test]
fn the_window_covers_every_value_that_can_cross() {
    let f = filter("last_active_at < now-1s OR org[created_at > now-2s]");
    let window = crossing_window(&f, 10_000, 20_000).unwrap();
    let inside = user(Some(9_000), 0, json!(null), &[]);
    let edge = user(Some(19_001), 0, json!(null), &[]);
    let outside = user(Some(19_002), 0, json!(null), &[]);
    let member = user(None, 0, json!(null), &[12_000]);
    assert!(matches(&window, &inside, 0));
    assert!(matches(&window, &edge, 0));
    assert!(!matches(&window, &outside, 0));
    assert!(matches(&window, &member, 0));
    assert!(crossing_window(&filter("public.x = 1"), 0, 1).is_none());
}

#[test]
fn pinning_fixes_relative_dates_at_the_instant() {
    let f = filter("last_active_at < now-1s AND org[created_at IN [now]]");
    let pinned = pinned(&f, 50_000);
    let u = user(Some(48_000), 0, json!(null), &[50_000]);
    assert!(matches(&pinned, &u, 0));
    assert!(matches(&pinned, &u, 99_999_999));
    assert!(!is_time_driven(&pinned));
}

fn filters() -> impl Strategy<Value = String> {
    let offset = || {
        (-5i64..=5).prop_map(|s| {
            if s < 0 {
                format!("now{s}s")
            } else {
                format!("now+{s}s")
            }
        })
    };
    let op = prop_oneof![
        Just("<"),
        Just("<="),
        Just(">"),
        Just(">="),
        Just("="),
        Just("!=")
    ];
    let path = prop_oneof![
        Just("last_active_at"),
        Just("created_at"),
        Just("public.trial_end")
    ];
    let leaf = prop_oneof![
        (path.clone(), op, offset()).prop_map(|(p, o, v)| format!("{p} {o} {v}")),
        (path, offset(), offset()).prop_map(|(p, a, b)| format!("{p} BETWEEN {a} AND {b}")),
        (offset(), prop_oneof![Just("<"), Just(">=")])
            .prop_map(|(v, o)| format!("org[created_at {o} {v}]")),
    ];
    leaf.prop_recursive(3, 8, 3, |inner| {
        prop_oneof![
            (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("({a}) AND ({b})")),
            (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("({a}) OR ({b})")),
            inner.prop_map(|a| format!("NOT ({a})")),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    /// The instants found from the user's values give exactly the changes a clock stepping one
    /// millisecond at a time sees, and a user outside the window never moves.
    #[test]
    fn changes_equal_a_millisecond_by_millisecond_walk(
        text in filters(),
        last_active in proptest::option::of(0i64..12_000),
        created in 0i64..12_000,
        trial in prop_oneof![
            (0i64..12_000).prop_map(|v| json!(v)),
            (0.0f64..12_000.0).prop_map(|v| json!(v)),
            Just(json!("soon")),
            Just(json!([3_000, 9_000])),
        ],
        orgs in proptest::collection::vec(0i64..12_000, 0..3),
        from in 0i64..8_000,
        span in 0i64..6_000,
    ) {
        let f = filter(&text);
        let u = user(last_active, created, trial, &orgs);
        let to = from + span;
        let expected = brute_force(&f, &u, from, to);
        prop_assert_eq!(membership_changes(&f, &u, from, to), expected.clone());
        if let Some(window) = crossing_window(&f, from, to)
            && !matches(&window, &u, 0)
        {
            prop_assert!(expected.is_empty(), "moved outside the window");
        }
    }
}
