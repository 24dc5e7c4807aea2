//! The Backend API client against the fake Clerk over real HTTP: paging, errors, retries.

mod common;

use std::time::{Duration, Instant};

use clerk_index::clerk::fake::{FakeClerkConfig, FaultInjection, Population};
use clerk_index::clerk::rate_limit::RateLimit;
use clerk_index::clerk::{ClerkApiError, ClerkClient, ClerkClientConfig, CreatedPage, PageCursor};
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
    let page = |cursor| CreatedPage {
        after: None,
        before: None,
        cursor,
    };
    let mut by_cursor = Vec::new();
    let mut cursor = PageCursor::Start;
    loop {
        let listed = clerk.list_users_created(&page(cursor), 500).await.unwrap();
        let done = listed.len() < 500;
        by_cursor.extend(listed.users.iter().map(|u| (u.created_at, u.id.clone())));
        cursor = PageCursor::After(listed.users.last().unwrap().id.clone());
        if done {
            break;
        }
    }
    let mut by_offset = Vec::new();
    for offset in (0..1_100).step_by(500) {
        let listed = clerk
            .list_users_created(&page(PageCursor::Offset(offset)), 500)
            .await
            .unwrap();
        by_offset.extend(listed.users.iter().map(|u| (u.created_at, u.id.clone())));
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
    // A time window lists only its users; an out-of-range limit is Clerk's default page of 10.
    let (from, until) = (by_cursor[100].0, by_cursor[200].0);
    let window = CreatedPage {
        after: Some(from - 1),
        before: Some(until),
        cursor: PageCursor::Start,
    };
    let listed = clerk.list_users_created(&window, 500).await.unwrap();
    assert_eq!(listed.len(), 100);
    assert_eq!(listed.users[0].id, by_cursor[100].1);
    let listed = clerk.list_users_created(&window, 501).await.unwrap();
    assert_eq!(
        listed.len(),
        10,
        "Clerk answers a limit over 500 with 10 users"
    );
    assert_eq!(
        clerk.created_at_edge(false).await.unwrap(),
        Some(by_cursor[0].0)
    );
    assert_eq!(
        clerk.created_at_edge(true).await.unwrap(),
        Some(by_cursor[1_049].0)
    );
}

#[tokio::test]
async fn a_list_answer_that_is_not_json_is_asked_for_again_then_fails_visibly() {
    let mut config = FakeClerkConfig::new(Population::new(30));
    config.faults.unreadable_list_every = Some(2);
    let fake = RunningFakeClerk::start(config).await;
    let clerk = client(&fake.url, "sk_test_fake_clerk");
    let first = CreatedPage {
        after: None,
        before: None,
        cursor: PageCursor::Start,
    };
    for _ in 0..3 {
        assert_eq!(
            clerk.list_users_created(&first, 500).await.unwrap().len(),
            30
        );
    }
    fake.fake.set_faults(FaultInjection {
        unreadable_list_every: Some(1),
        ..FaultInjection::default()
    });
    let before = fake.fake.request_count();
    let error = clerk.list_users_created(&first, 500).await.unwrap_err();
    assert!(matches!(error, ClerkApiError::Decode { .. }), "{error}");
    assert!(
        error.to_string().contains("the page is not JSON"),
        "{error}"
    );
    assert!(
        !error.to_string().contains("Bad Gateway"),
        "no body quoted: {error}"
    );
    assert_eq!(
        fake.fake.request_count() - before,
        u64::from(clerk_index::clerk::client::UNREADABLE_ATTEMPTS)
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
}

#[tokio::test]
async fn retry_after_is_honoured_and_server_errors_are_retried() {
    let mut config = FakeClerkConfig::new(Population::new(10));
    config.faults = FaultInjection {
        throttle_every: Some(1),
        server_error_every: None,
        retry_after_secs: 1,
        ..FaultInjection::default()
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
        ..FaultInjection::default()
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
    client_config.rate_limit = clerk_index::clerk::LimitSource::Given(RateLimit {
        requests: 100,
        per: Duration::from_secs(1),
    });
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
    for limit in ["0", "501", "ten"] {
        let page: Vec<serde_json::Value> = get(&format!("limit={limit}"))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(page.len(), 10, "limit={limit} is Clerk's default page");
    }
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rate_limit_follows_the_instance_and_a_429_blocks_only_its_endpoint() {
    let mut config = FakeClerkConfig::new(Population::new(30));
    config.environment_type = "development".into();
    let fake = RunningFakeClerk::start(config).await;
    let mut client_config = ClerkClientConfig::new(&fake.url, "sk_live_fake_clerk");
    client_config.rate_limit = clerk_index::clerk::LimitSource::Instance;
    // Not the fake's key: the instance cannot be asked, the key's prefix decides.
    let wrong_key = ClerkClient::new(client_config.clone()).unwrap();
    assert!(wrong_key.learn_instance().await.is_err());
    assert_eq!(wrong_key.rate_limit(), RateLimit::CLERK_PRODUCTION_DEFAULT);
    client_config.secret_key = "sk_test_fake_clerk".into();
    client_config.max_attempts = 3;
    let client = ClerkClient::new(client_config).unwrap();
    let instance = client.learn_instance().await.unwrap();
    assert_eq!(instance.environment_type, "development");
    assert_eq!(client.rate_limit(), RateLimit::CLERK_DEVELOPMENT_DEFAULT);
    assert_eq!(
        client.known_instance().get().map(|i| i.id.as_str()),
        Some(clerk_index::clerk::fake::FAKE_INSTANCE_ID)
    );

    // The next request is throttled for 2 s: Clerk (and the fake) block that endpoint, not
    // the others, and the client waits the block out once for all its callers. (After 20
    // requests, the next multiple of the throttling period is far away.)
    for _ in 0..20 {
        client.count_users().await.unwrap();
    }
    fake.fake.set_faults(FaultInjection {
        throttle_every: Some(fake.fake.request_count() + 1),
        retry_after_secs: 2,
        ..FaultInjection::default()
    });
    let started = std::time::Instant::now();
    let page = CreatedPage {
        after: None,
        before: None,
        cursor: PageCursor::Start,
    };
    let lists = (0..4).map(|_| client.list_users_created(&page, 10));
    // Callers that come during the block wait for it without asking Clerk.
    let later = (0..4).map(|_| async {
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        client.list_users_created(&page, 10).await
    });
    let (lists, later, count) = tokio::join!(
        futures_util::future::join_all(lists),
        futures_util::future::join_all(later),
        async {
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            client.count_users().await
        }
    );
    assert_eq!(count.unwrap(), 30, "another endpoint is not blocked");
    assert!(
        lists
            .iter()
            .chain(&later)
            .all(|page| page.as_ref().unwrap().len() == 10)
    );
    assert!(started.elapsed() >= std::time::Duration::from_secs(2));
    // The first 429, and at most the other requests already in flight with it.
    assert!(
        fake.fake.throttled_count() <= 4,
        "{}",
        fake.fake.throttled_count()
    );
}

#[tokio::test]
async fn organizations_and_memberships_are_walked_by_offset_oldest_first() {
    let population = Population::new(3_000).with_organizations();
    let fake = RunningFakeClerk::start(FakeClerkConfig::new(population)).await;
    let clerk = client(&fake.url, "sk_test_fake_clerk");
    let mut organizations = Vec::new();
    loop {
        let page = clerk
            .list_organizations(organizations.len(), 120)
            .await
            .unwrap();
        assert!(page.rejected.is_empty());
        assert_eq!(page.total_count, Some(300));
        organizations.extend(page.items);
        if page.len < 120 {
            break;
        }
    }
    assert_eq!(organizations.len(), 300);
    assert!(
        organizations
            .windows(2)
            .all(|w| w[0].created_at <= w[1].created_at)
    );
    let expected: i64 = organizations.iter().map(|o| o.members_count.unwrap()).sum();
    let mut memberships = Vec::new();
    loop {
        let page = clerk
            .list_memberships(memberships.len(), 500)
            .await
            .unwrap();
        memberships.extend(page.items);
        if page.len < 500 {
            break;
        }
    }
    assert_eq!(memberships.len() as i64, expected);
    let ids: std::collections::HashSet<&str> = memberships
        .iter()
        .map(|m| m.membership.id.as_str())
        .collect();
    assert_eq!(ids.len(), memberships.len(), "every membership once");
    // One organization's members, as its members_count says.
    let largest = organizations
        .iter()
        .max_by_key(|o| o.members_count)
        .unwrap();
    let mut members = Vec::new();
    loop {
        let page = clerk
            .list_organization_memberships(&largest.id, members.len(), 50)
            .await
            .unwrap();
        members.extend(page.items);
        if page.len < 50 {
            break;
        }
    }
    assert_eq!(Some(members.len() as i64), largest.members_count);
    assert!(members.iter().all(|m| m.organization.id == largest.id));
    // Unknown and malformed ids have no members.
    for id in ["org_unknown", "../users"] {
        let page = clerk
            .list_organization_memberships(id, 0, 10)
            .await
            .unwrap();
        assert_eq!((page.len, page.total_count), (0, Some(0)), "{id}");
    }
}

/// Clerk's spec has no 404 for one organization's members; a Clerk that answers one anyway
/// (an organization deleted mid-walk) still reads as "no members".
#[tokio::test]
async fn a_404_for_an_organizations_members_reads_as_none() {
    use axum::routing::get;
    let app = axum::Router::new().route(
        "/v1/organizations/{id}/memberships",
        get(|| async {
            (
                axum::http::StatusCode::NOT_FOUND,
                r#"{"errors":[{"code":"resource_not_found","message":"not found"}]}"#,
            )
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    let clerk = client(&url, "sk_test_fake_clerk");
    let page = clerk
        .list_organization_memberships("org_gone", 0, 10)
        .await
        .unwrap();
    assert_eq!((page.len, page.total_count), (0, Some(0)));
    server.abort();
}
