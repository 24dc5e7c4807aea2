//! The fake Clerk and our client, checked against Clerk's own OpenAPI specs by an OpenAPI-aware
//! validator (openapi-core, installed by `scripts/openapi/check`): every request the client sent
//! and every answer the fake gave during a backfill, catch-up, sweep, write-through and the
//! fake's own writes and errors, and every webhook payload the fake sent. A drifted field fails.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::routing::post;
use clerk_index::api::proto::sync_client::SyncClient;
use clerk_index::api::proto::{ReconcileKind, TriggerReconcileRequest, UpdateUserMetadataRequest};
use clerk_index::clerk::fake::{FakeClerkConfig, Population, WebhookTarget};
use common::{RunningFakeClerk, TestOptions, TestServer, WEBHOOK_SECRET, clerk_api};
use serde_json::{Value, json};

/// A receiver that keeps every webhook body it is sent (answering 200).
async fn webhook_sink() -> (String, Arc<Mutex<Vec<String>>>) {
    let bodies = Arc::new(Mutex::new(Vec::new()));
    let kept = bodies.clone();
    let app = Router::new().route(
        "/hooks",
        post(move |body: String| {
            let kept = kept.clone();
            async move {
                kept.lock().unwrap().push(body);
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hooks", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, bodies)
}

/// Runs `scripts/openapi/check` on `records`; its exit status and output.
fn check(records: &[Value]) -> (bool, String) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("recorded.jsonl");
    let lines: Vec<String> = records.iter().map(Value::to_string).collect();
    std::fs::write(&file, lines.join("\n")).unwrap();
    let output = std::process::Command::new("scripts/openapi/check")
        .arg(&file)
        .output()
        .expect("scripts/openapi/check runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fakes_answers_the_clients_requests_and_the_webhooks_follow_clerks_spec() {
    let (hook_url, hooks) = webhook_sink().await;
    let mut config = FakeClerkConfig::new(Population::new(300));
    config.record_exchanges = true;
    let fake = RunningFakeClerk::start(config).await;
    fake.fake
        .set_webhook_target(WebhookTarget::new(hook_url, WEBHOOK_SECRET))
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut options = TestOptions::new(&fake.url);
    options.page_size = 100;
    options.concurrency = 4;
    let server = TestServer::start(dir.path(), options).await;
    server.wait_serving().await;
    server.instance_learned().await;

    // What the service asks of Clerk besides the backfill.
    let mut sync = SyncClient::new(server.channel().await);
    for kind in [ReconcileKind::CatchUp, ReconcileKind::Sweep] {
        sync.trigger_reconcile(TriggerReconcileRequest { kind: kind as i32 })
            .await
            .unwrap();
    }
    let ids = fake.fake.user_ids();
    server
        .client()
        .await
        .update_user_metadata(UpdateUserMetadataRequest {
            user_id: ids[3].clone(),
            public_metadata: Some(r#"{"plan_type": "spec_plan"}"#.into()),
            ..Default::default()
        })
        .await
        .unwrap();
    // Clerk's own writes, each announced by a webhook, and a sign-in.
    let created = clerk_api(
        &fake.url,
        reqwest::Method::POST,
        "/v1/users",
        Some(json!({"email_address": ["spec@example.com"], "first_name": "Spec", "external_id": "crm_42"})),
    )
    .await;
    let deleted = clerk_api(
        &fake.url,
        reqwest::Method::DELETE,
        &format!("/v1/users/{}", created["id"].as_str().unwrap()),
        None,
    )
    .await;
    assert_eq!(deleted["external_id"], "crm_42", "{deleted}");
    assert!(fake.fake.sign_in(&ids[5], clerk_index::clock::now_ms()));
    // Errors are answered in Clerk's shape too.
    let http = reqwest::Client::new();
    for path in [
        "/v1/users/user_does_not_exist",
        "/v1/users?order_by=-updated_at&starting_after=user_x",
    ] {
        let status = http
            .get(format!("{}{path}", fake.url))
            .bearer_auth("sk_test_fake_clerk")
            .send()
            .await
            .unwrap()
            .status();
        assert!(status.is_client_error(), "{path}: {status}");
    }
    for _ in 0..200 {
        if hooks.lock().unwrap().len() >= 4 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    server.stop().await;

    let mut records = fake.fake.recorded_exchanges();
    let endpoints: std::collections::BTreeSet<String> = records
        .iter()
        .map(|r| format!("{} {}", r["method"], r["status"]))
        .collect();
    assert!(records.len() > 10, "{endpoints:?}");
    let hooks = hooks.lock().unwrap().clone();
    let types: Vec<String> = hooks
        .iter()
        .map(|b| serde_json::from_str::<Value>(b).unwrap()["type"].to_string())
        .collect();
    for expected in [
        "user.created",
        "user.updated",
        "user.deleted",
        "session.created",
    ] {
        assert!(types.iter().any(|t| t.contains(expected)), "{types:?}");
    }
    let deletion = hooks.iter().find(|b| b.contains("user.deleted")).unwrap();
    assert!(deletion.contains(r#""external_id":"crm_42""#), "{deletion}");
    records.extend(
        hooks
            .iter()
            .map(|body| json!({"kind": "webhook", "body": body})),
    );
    let (valid, output) = check(&records);
    assert!(valid, "{output}");
    assert!(output.contains(" 0 problems"), "{output}");

    // A drifted field fails: a user's created_at as text in a list answer, a webhook's data.id
    // as a number.
    let mut drifted = records.clone();
    let list = drifted
        .iter_mut()
        .find(|r| r["path"] == "/v1/users" && r["status"] == 200 && r["method"] == "GET")
        .unwrap();
    let mut users: Value = serde_json::from_str(list["response_body"].as_str().unwrap()).unwrap();
    users[0]["created_at"] = "yesterday".into();
    list["response_body"] = users.to_string().into();
    let hook = drifted.iter_mut().find(|r| r["kind"] == "webhook").unwrap();
    let mut event: Value = serde_json::from_str(hook["body"].as_str().unwrap()).unwrap();
    event["data"]["id"] = 5.into();
    hook["body"] = event.to_string().into();
    let (valid, output) = check(&drifted);
    assert!(!valid, "{output}");
    assert!(output.contains("created_at"), "{output}");
    assert!(output.contains("webhook"), "{output}");
    assert!(output.contains(" 2 problems"), "{output}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fakes_organization_endpoints_follow_clerks_spec() {
    let (hook_url, hooks) = webhook_sink().await;
    let mut config = FakeClerkConfig::new(Population::new(2_000).with_organizations());
    config.record_exchanges = true;
    config.webhooks = Some(WebhookTarget::new(hook_url, WEBHOOK_SECRET));
    let fake = RunningFakeClerk::start(config).await;
    let url = fake.url.clone();
    let get = move |path: String| {
        let url = url.clone();
        async move { clerk_api(&url, reqwest::Method::GET, &path, None).await }
    };

    // Organizations, newest first by default; a walk in ascending order sees all 200.
    let orgs =
        get("/v1/organizations?limit=500&order_by=%2Bcreated_at&include_members_count=true".into())
            .await;
    assert_eq!(orgs["total_count"], 200, "{orgs}");
    let data = orgs["data"].as_array().unwrap();
    assert_eq!(data.len(), 200);
    let created: Vec<i64> = data
        .iter()
        .map(|o| o["created_at"].as_i64().unwrap())
        .collect();
    assert!(created.windows(2).all(|w| w[0] <= w[1]));
    let counts: Vec<i64> = data
        .iter()
        .map(|o| o["members_count"].as_i64().unwrap())
        .collect();
    let largest = data
        .iter()
        .max_by_key(|o| o["members_count"].as_i64())
        .unwrap();
    let org_id = largest["id"].as_str().unwrap().to_string();
    let default = get("/v1/organizations".into()).await;
    assert_eq!(default["data"].as_array().unwrap().len(), 10);
    assert!(
        default["data"][0].get("members_count").is_none(),
        "only when asked"
    );
    assert!(default["data"][0]["created_at"].as_i64() >= default["data"][1]["created_at"].as_i64());

    // Every membership, instance-wide, adds up to the organizations' counts.
    let mut memberships = Vec::new();
    let mut offset = 0;
    loop {
        let page = get(format!(
            "/v1/organization_memberships?limit=500&offset={offset}&order_by=%2Bcreated_at"
        ))
        .await;
        let data = page["data"].as_array().unwrap().clone();
        offset += data.len();
        memberships.extend(data);
        if offset >= page["total_count"].as_u64().unwrap() as usize {
            break;
        }
    }
    assert_eq!(memberships.len() as i64, counts.iter().sum::<i64>());
    let per_org = get(format!("/v1/organizations/{org_id}/memberships?limit=500")).await;
    assert_eq!(per_org["total_count"], largest["members_count"]);
    let admins = get(format!(
        "/v1/organizations/{org_id}/memberships?role=org:admin"
    ))
    .await;
    assert!(admins["total_count"].as_u64().unwrap() >= 1);
    let member = per_org["data"][0]["public_user_data"]["user_id"]
        .as_str()
        .unwrap()
        .to_string();
    let mine = get(format!("/v1/users/{member}/organization_memberships")).await;
    assert!(
        mine["data"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["organization"]["id"] == org_id.as_str())
    );
    let windowed = get(format!(
        "/v1/organizations/{org_id}/memberships?created_at_after={}&limit=500",
        per_org["data"][0]["created_at"]
    ))
    .await;
    assert!(windowed["total_count"].as_u64() < per_org["total_count"].as_u64());

    // A metadata merge, announced as organization.updated.
    let patched = clerk_api(
        &fake.url,
        reqwest::Method::PATCH,
        &format!("/v1/organizations/{org_id}/metadata"),
        Some(json!({"public_metadata": {"plan": "enterprise", "renewal": {"month": 3}}})),
    )
    .await;
    assert_eq!(patched["public_metadata"]["plan"], "enterprise");
    assert!(
        patched["public_metadata"]["seats"].is_number(),
        "merged, not replaced"
    );
    assert!(patched["updated_at"].as_i64() > largest["updated_at"].as_i64());

    // Created (its creator an admin) and deleted, each announced; a membership added, changed
    // and removed.
    let created = clerk_api(
        &fake.url,
        reqwest::Method::POST,
        "/v1/organizations",
        Some(json!({"name": "Spec Co", "created_by": member, "public_metadata": {"plan": "free"}})),
    )
    .await;
    assert_eq!(created["members_count"], 1, "{created}");
    let new_org = created["id"].as_str().unwrap().to_string();
    let joiner = fake.fake.user_ids().pop().unwrap();
    let path = format!("/v1/organizations/{new_org}/memberships");
    let joined = clerk_api(
        &fake.url,
        reqwest::Method::POST,
        &path,
        Some(json!({"user_id": joiner, "role": "org:member"})),
    )
    .await;
    assert_eq!(joined["role"], "org:member");
    let promoted = clerk_api(
        &fake.url,
        reqwest::Method::PATCH,
        &format!("{path}/{joiner}"),
        Some(json!({"role": "org:admin"})),
    )
    .await;
    assert_eq!(promoted["role"], "org:admin");
    clerk_api(
        &fake.url,
        reqwest::Method::DELETE,
        &format!("{path}/{joiner}"),
        None,
    )
    .await;
    let deleted = clerk_api(
        &fake.url,
        reqwest::Method::DELETE,
        &format!("/v1/organizations/{new_org}"),
        None,
    )
    .await;
    assert_eq!(deleted["deleted"], true, "{deleted}");
    assert_eq!(
        get(format!("/v1/organizations/{new_org}/memberships")).await["total_count"],
        0
    );

    let http = reqwest::Client::new();
    // Unknown ids are empty lists (the spec has no 404 for these); a bad order is 422, an
    // unknown organization's metadata 404.
    for path in [
        "/v1/organizations/org_does_not_exist/memberships",
        "/v1/users/user_does_not_exist/organization_memberships",
    ] {
        assert_eq!(get(path.to_string()).await["total_count"], 0, "{path}");
    }
    let missing = http
        .patch(format!(
            "{}/v1/organizations/org_does_not_exist/metadata",
            fake.url
        ))
        .bearer_auth("sk_test_fake_clerk")
        .json(&json!({"public_metadata": {}}))
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(missing, reqwest::StatusCode::NOT_FOUND);
    for path in ["/v1/organizations?order_by=seats"] {
        let status = http
            .get(format!("{}{path}", fake.url))
            .bearer_auth("sk_test_fake_clerk")
            .send()
            .await
            .unwrap()
            .status();
        assert!(status.is_client_error(), "{path}: {status}");
    }
    for _ in 0..200 {
        if hooks.lock().unwrap().len() >= 7 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let mut records = fake.fake.recorded_exchanges();
    let hooks = hooks.lock().unwrap().clone();
    for event in [
        "organization.updated",
        "organization.created",
        "organization.deleted",
        "organizationMembership.created",
        "organizationMembership.updated",
        "organizationMembership.deleted",
    ] {
        assert!(
            hooks.iter().any(|b| b.contains(&format!("\"{event}\""))),
            "{event}: {hooks:?}"
        );
    }
    records.extend(
        hooks
            .iter()
            .map(|body| json!({"kind": "webhook", "body": body})),
    );
    let (valid, output) = check(&records);
    assert!(valid, "{output}");
    assert!(output.contains(" 0 problems"), "{output}");
}
