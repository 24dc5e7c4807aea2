//! The fake Clerk announces changes made through its API with real signed webhooks, with Svix's
//! retries, duplicates and reordering, and the service converges to Clerk's state.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::{HeaderMap, StatusCode};
use clerk_index::api::proto::GetUserRequest;
use clerk_index::clerk::fake::WebhookTarget;
use clerk_index::clerk::webhook::{SvixHeaders, WebhookVerifier};
use common::{TestServer, WEBHOOK_SECRET, clerk_api};
use serde_json::{Value, json};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_through_the_fake_api_arrive_by_webhook_despite_duplicates_and_reordering() {
    let dir = tempfile::tempdir().unwrap();
    let (fake, server) = TestServer::with_population(dir.path(), 100).await;
    let mut target = WebhookTarget::new(
        format!("{}/webhooks/clerk", server.http_url),
        WEBHOOK_SECRET,
    );
    target.retry_scale = 0.001;
    target.duplicate_probability = 0.5;
    target.max_reorder_delay = Duration::from_millis(40);
    fake.fake.set_webhook_target(target).unwrap();

    let created = clerk_api(&fake.url, reqwest::Method::POST, "/v1/users", Some(json!({
        "email_address": ["new.person@example.com"], "first_name": "New", "public_metadata": {"plan_type": "trial"}
    }))).await;
    let new_id = created["id"].as_str().unwrap().to_string();
    let existing = fake.fake.user_ids()[10].clone();
    for tier in ["silver", "gold", "platinum"] {
        clerk_api(
            &fake.url,
            reqwest::Method::PATCH,
            &format!("/v1/users/{existing}/metadata"),
            Some(json!({"public_metadata": {"membership_tier": tier}})),
        )
        .await;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let doomed = fake.fake.user_ids()[20].clone();
    clerk_api(
        &fake.url,
        reqwest::Method::DELETE,
        &format!("/v1/users/{doomed}"),
        None,
    )
    .await;

    let mut converged = false;
    for _ in 0..100 {
        let client = &mut server.client().await;
        let tier =
            match client
                .get_user(GetUserRequest {
                    user_id: existing.clone(),
                    ..Default::default()
                })
                .await
            {
                Ok(r) => serde_json::from_str::<Value>(&r.into_inner().user.unwrap().json).unwrap()
                    ["public_metadata"]["membership_tier"]
                    .clone(),
                Err(_) => Value::Null,
            };
        let doomed_gone = client
            .get_user(GetUserRequest {
                user_id: doomed.clone(),
                ..Default::default()
            })
            .await
            .is_err();
        let new_there = client
            .get_user(GetUserRequest {
                user_id: new_id.clone(),
                ..Default::default()
            })
            .await
            .is_ok();
        if tier == "platinum" && doomed_gone && new_there {
            converged = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(converged, "the index never reached Clerk's state");
    assert_eq!(
        server
            .count(r#"public.plan_type = "trial" AND email = "NEW.PERSON@example.com""#)
            .await,
        1
    );
    assert_eq!(server.count("id EXISTS").await, 100);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_ins_in_the_fake_arrive_as_session_created_and_keep_recency_segments_fresh() {
    let dir = tempfile::tempdir().unwrap();
    let (fake, server) = TestServer::with_population(dir.path(), 100).await;
    let target = WebhookTarget::new(
        format!("{}/webhooks/clerk", server.http_url),
        WEBHOOK_SECRET,
    );
    fake.fake.set_webhook_target(target).unwrap();
    let recent = "last_sign_in_at > now-10m";
    let before = server.count(recent).await;
    let now = clerk_index::clock::now_ms();
    let ids = fake.fake.user_ids();
    let mut unchanged = Vec::new();
    for id in ids.iter().take(3) {
        unchanged.push(fake.fake.user_json(id).unwrap()["updated_at"].clone());
        assert!(fake.fake.sign_in(id, now));
    }
    // Clerk's own record: the sign-in moved, updated_at did not.
    for (id, updated_at) in ids.iter().zip(&unchanged) {
        let user = fake.fake.user_json(id).unwrap();
        assert_eq!(
            (&user["updated_at"], &user["last_sign_in_at"]),
            (updated_at, &json!(now))
        );
    }
    let mut counted = before;
    for _ in 0..100 {
        counted = server.count(recent).await;
        if counted == before + 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(counted, before + 3, "the three sign-ins reached the index");
    assert!(!fake.fake.sign_in("user_nobody", now));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_deliveries_are_retried_with_the_same_signed_message_id() {
    // A receiver that fails twice, then accepts; it checks every signature.
    let attempts: Arc<Mutex<Vec<String>>> = Arc::default();
    let verifier = WebhookVerifier::new(&[WEBHOOK_SECRET.to_string()]).unwrap();
    let router = axum::Router::new().route(
        "/hook",
        axum::routing::post({
            let attempts = attempts.clone();
            move |headers: HeaderMap, body: axum::body::Bytes| {
                let attempts = attempts.clone();
                let verifier = verifier.clone();
                async move {
                    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
                    let svix = SvixHeaders {
                        id: header("svix-id"),
                        timestamp: header("svix-timestamp"),
                        signature: header("svix-signature"),
                    };
                    verifier
                        .verify(svix, &body, clerk_index::clock::now_ms() / 1000)
                        .unwrap();
                    let mut seen = attempts.lock().unwrap();
                    seen.push(svix.id.unwrap().to_string());
                    if seen.len() < 3 {
                        StatusCode::INTERNAL_SERVER_ERROR
                    } else {
                        StatusCode::NO_CONTENT
                    }
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router).await });
    let fake = common::RunningFakeClerk::start(clerk_index::clerk::fake::FakeClerkConfig::new(
        clerk_index::clerk::fake::Population::new(5),
    ))
    .await;
    let mut target = WebhookTarget::new(url, WEBHOOK_SECRET);
    target.retry_scale = 0.001; // 5 s -> 5 ms, 5 min -> 300 ms
    fake.fake.set_webhook_target(target).unwrap();
    let id = fake.fake.user_ids()[0].clone();
    clerk_api(
        &fake.url,
        reqwest::Method::PATCH,
        &format!("/v1/users/{id}/metadata"),
        Some(json!({"public_metadata": {"x": 1}})),
    )
    .await;
    for _ in 0..100 {
        if attempts.lock().unwrap().len() >= 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(400)).await;
    let attempts = attempts.lock().unwrap().clone();
    assert_eq!(
        attempts.len(),
        3,
        "two failures, one success, then no more: {attempts:?}"
    );
    assert!(
        attempts.iter().all(|a| a == &attempts[0]),
        "retries reuse the svix-id"
    );
}
