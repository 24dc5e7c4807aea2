//! The Backend API client against the fake Clerk over real HTTP: paging, errors, retries.

mod common;

use std::time::{Duration, Instant};

use clerk_index::clerk::fake::{FakeClerkConfig, FaultInjection, Population};
use clerk_index::clerk::rate_limit::RateLimit;
use clerk_index::clerk::{ClerkApiError, ClerkClient, ClerkClientConfig, PageCursor};
use common::RunningFakeClerk;

fn client(url: &str, key: &str) -> ClerkClient {
    let mut config = ClerkClientConfig::new(url, key);
    config.initial_backoff = Duration::from_millis(10);
    config.max_attempts = 4;
    ClerkClient::new(config).unwrap()
}

#[tokio::test]
async fn cursor_and_offset_paging_walk_every_user_oldest_first() {
    let fake = RunningFakeClerk::start(FakeClerkConfig::new(Population::new(1_050))).await;
    let clerk = client(&fake.url, "sk_test_fake_clerk");
    assert_eq!(clerk.count_users().await.unwrap(), 1_050);
    let mut by_cursor = Vec::new();
    let mut cursor = PageCursor::After(None);
    loop {
        let page = clerk.list_users_page(&cursor, 500).await.unwrap().users;
        let done = page.len() < 500;
        by_cursor.extend(page.iter().map(|u| (u.created_at, u.id.clone())));
        cursor = PageCursor::After(page.last().map(|u| u.id.clone()));
        if done {
            break;
        }
    }
    let mut by_offset = Vec::new();
    for offset in (0..1_100).step_by(500) {
        let page = clerk
            .list_users_page(&PageCursor::Offset(offset), 500)
            .await
            .unwrap()
            .users;
        by_offset.extend(page.iter().map(|u| (u.created_at, u.id.clone())));
    }
    assert_eq!(by_cursor.len(), 1_050);
    assert_eq!(by_cursor, by_offset);
    assert!(
        by_cursor.windows(2).all(|w| w[0] < w[1]),
        "ascending created_at"
    );
    assert_eq!(
        by_cursor
            .iter()
            .map(|(_, id)| id.clone())
            .collect::<Vec<_>>(),
        fake.fake.user_ids()
    );
}

#[tokio::test]
async fn clerk_errors_are_surfaced_with_code_and_message_and_not_retried() {
    let fake = RunningFakeClerk::start(FakeClerkConfig::new(Population::new(10))).await;
    let error = client(&fake.url, "sk_test_wrong")
        .count_users()
        .await
        .unwrap_err();
    let ClerkApiError::Api { status, code, .. } = &error else {
        panic!("{error}")
    };
    assert_eq!((*status, code.as_str()), (401, "clerk_key_invalid"));
    assert!(
        error
            .to_string()
            .contains("The provided Clerk Secret Key is invalid"),
        "{error}"
    );
    assert!(error.to_string().contains("clerk trace fake_"), "{error}");
    assert_eq!(fake.fake.request_count(), 1, "4xx must not be retried");

    let clerk = client(&fake.url, "sk_test_fake_clerk");
    assert!(clerk.get_user("user_nobody").await.unwrap().is_none());
    let id = fake.fake.user_ids()[3].clone();
    assert_eq!(clerk.get_user(&id).await.unwrap().unwrap().id, id);
    let too_big = clerk
        .list_users_page(&PageCursor::After(None), 501)
        .await
        .unwrap_err();
    assert_eq!(too_big.status(), Some(422));
    assert!(
        too_big.to_string().contains("form_param_value_invalid"),
        "{too_big}"
    );
}

#[tokio::test]
async fn retry_after_is_honoured_and_server_errors_are_retried() {
    let mut config = FakeClerkConfig::new(Population::new(10));
    config.faults = FaultInjection {
        throttle_every: Some(1),
        server_error_every: None,
        retry_after_secs: 1,
    };
    let fake = RunningFakeClerk::start(config).await;
    let clerk = client(&fake.url, "sk_test_fake_clerk");
    let started = Instant::now();
    let error = clerk.count_users().await.unwrap_err();
    assert_eq!(error.status(), Some(429));
    assert_eq!(fake.fake.request_count(), 4, "max_attempts requests");
    assert!(
        started.elapsed() >= Duration::from_secs(3),
        "three waits of Retry-After: 1"
    );

    fake.fake.set_faults(FaultInjection {
        throttle_every: None,
        server_error_every: Some(2),
        retry_after_secs: 1,
    });
    for _ in 0..3 {
        assert_eq!(
            clerk.count_users().await.unwrap(),
            10,
            "every 500 is retried"
        );
    }
}

#[tokio::test]
async fn the_fake_enforces_a_real_rate_limit_the_client_rides_through() {
    let mut config = FakeClerkConfig::new(Population::new(10));
    config.rate_limit = Some(RateLimit {
        requests: 3,
        per: Duration::from_secs(1),
    });
    let fake = RunningFakeClerk::start(config).await;
    let mut client_config = ClerkClientConfig::new(&fake.url, "sk_test_fake_clerk");
    client_config.rate_limit = RateLimit {
        requests: 100,
        per: Duration::from_secs(1),
    };
    let clerk = ClerkClient::new(client_config).unwrap();
    for _ in 0..5 {
        assert_eq!(clerk.count_users().await.unwrap(), 10);
    }
    assert!(
        fake.fake.throttled_count() >= 1,
        "the fake must have said 429 at least once"
    );
}

#[tokio::test]
async fn the_fake_follows_clerks_paging_rules() {
    let fake = RunningFakeClerk::start(FakeClerkConfig::new(Population::new(30))).await;
    let http = reqwest::Client::new();
    let get = |query: &str| {
        http.get(format!("{}/v1/users?{query}", fake.url))
            .bearer_auth("sk_test_fake_clerk")
            .header("Clerk-API-Version", "2026-05-12")
            .send()
    };
    let first = fake.fake.user_ids()[0].clone();
    assert_eq!(
        get(&format!("order_by=-updated_at&starting_after={first}"))
            .await
            .unwrap()
            .status(),
        422
    );
    assert_eq!(
        get(&format!("starting_after={first}&offset=5"))
            .await
            .unwrap()
            .status(),
        422
    );
    assert_eq!(get("limit=0").await.unwrap().status(), 422);
    let default: Vec<serde_json::Value> = get("").await.unwrap().json().await.unwrap();
    assert_eq!(default.len(), 10, "default limit");
    assert!(
        default[0]["created_at"].as_i64() > default[1]["created_at"].as_i64(),
        "default order is -created_at"
    );
    let bad_version = http
        .get(format!("{}/v1/users", fake.url))
        .bearer_auth("sk_test_fake_clerk")
        .header("Clerk-API-Version", "1999-01-01")
        .send()
        .await
        .unwrap();
    assert_eq!(bad_version.status(), 400);
    let no_auth = http
        .get(format!("{}/v1/users", fake.url))
        .send()
        .await
        .unwrap();
    assert_eq!(no_auth.status(), 401);
    let body: serde_json::Value = no_auth.json().await.unwrap();
    assert_eq!(
        body["errors"][0]["code"],
        "authorization_header_format_invalid"
    );
}
