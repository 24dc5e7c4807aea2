//! Svix-signed webhooks over real HTTP: verification, durability of acknowledged changes,
//! duplicates, ordering, tombstones, limits.

mod common;

use std::sync::Arc;

use clerk_index::clerk::fake::Population;
use common::{TestServer, event, newcomer, svix_headers};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::{Value, json};

fn with_version(mut user: Value, updated_at: i64, plan: &str) -> Value {
    user["updated_at"] = json!(updated_at);
    user["public_metadata"]["plan_type"] = json!(plan);
    user
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_acknowledged_user_created_is_searchable_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let (_fake, server) = TestServer::with_population(dir.path(), 50).await;
    let user = with_version(newcomer(1), 1_790_000_000_000, "webhook_plan");
    let id = user["id"].as_str().unwrap().to_string();
    let (status, answer) = server
        .deliver("msg_1", &event("user.created", user, 1_790_000_000_000))
        .await;
    assert_eq!(
        (status, answer["outcome"].as_str()),
        (200, Some("applied")),
        "{answer}"
    );
    // No waiting: a 2xx means committed and visible.
    assert_eq!(
        server.count(r#"public.plan_type = "webhook_plan""#).await,
        1
    );
    assert_eq!(server.plan_of(&id).await.as_deref(), Some("webhook_plan"));
    server.stop().await;
}

/// A `session.*` delivery as Clerk sends it: the session, with the whole user in `data.user`.
fn session_event(event_type: &str, user: &Value, at_ms: i64) -> Value {
    let session = json!({
        "object": "session", "id": format!("sess_{at_ms}"), "user_id": user["id"],
        "status": "active", "last_active_at": at_ms, "created_at": at_ms, "updated_at": at_ms,
        "user": user,
    });
    event(event_type, session, at_ms)
}

/// The user signed in at `at_ms`: `last_sign_in_at` and `last_active_at` move, `updated_at` not.
fn signed_in(mut user: Value, at_ms: i64) -> Value {
    user["last_sign_in_at"] = json!(at_ms);
    user["last_active_at"] = json!(at_ms);
    user
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sign_in_announced_by_session_created_counts_at_once_and_an_older_one_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (fake, server) = TestServer::with_population(dir.path(), 200).await;
    let recent = r#"last_sign_in_at > now-10m"#;
    let before = server.count(recent).await;
    let now = clerk_index::clock::now_ms();
    let ids = fake.fake.user_ids();
    // Three users sign in; Clerk says so with session.created only.
    for (n, id) in ids.iter().take(3).enumerate() {
        let user = signed_in(fake.fake.user_json(id).unwrap(), now - n as i64 * 1000);
        let delivery = session_event("session.created", &user, now);
        let (status, answer) = server.deliver(&format!("msg_session_{n}"), &delivery).await;
        assert_eq!(
            (status, answer["outcome"].as_str()),
            (200, Some("applied")),
            "{answer}"
        );
    }
    assert_eq!(server.count(recent).await, before + 3);
    // A late delivery of an earlier sign-in (same updated_at) does not move the first user back.
    let first = fake.fake.user_json(&ids[0]).unwrap();
    let stale = session_event("session.created", &signed_in(first, now - 3_600_000), now);
    assert_eq!(server.deliver("msg_session_old", &stale).await.0, 200);
    assert_eq!(server.count(recent).await, before + 3);
    let exact = format!("last_sign_in_at = {now}");
    assert_eq!(server.count(&exact).await, 1, "{exact}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_signatures_and_malformed_bodies_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (_fake, server) = TestServer::with_population(dir.path(), 50).await;
    let body = serde_json::to_vec(&event(
        "user.created",
        with_version(newcomer(2), 1, "tampered"),
        1,
    ))
    .unwrap();
    let http = reqwest::Client::new();
    let url = format!("{}/webhooks/clerk", server.http_url);
    let mut headers = svix_headers("msg_2", &body);
    let tampered = String::from_utf8(body.clone())
        .unwrap()
        .replace("tampered", "tampereD");
    let mut request = http.post(&url).body(tampered);
    for (name, value) in &headers {
        request = request.header(*name, value);
    }
    assert_eq!(request.send().await.unwrap().status(), 401);
    assert_eq!(
        http.post(&url)
            .body(body.clone())
            .send()
            .await
            .unwrap()
            .status(),
        401,
        "no headers"
    );
    headers[1].1 = (clerk_index::clock::now_ms() / 1000 - 600).to_string();
    let mut request = http.post(&url).body(body.clone());
    for (name, value) in &headers {
        request = request.header(*name, value);
    }
    assert_eq!(
        request.send().await.unwrap().status(),
        401,
        "stale timestamp"
    );
    let (status, answer) = server
        .deliver(
            "msg_3",
            &json!({"type": "user.updated", "data": {"first_name": "no id"}}),
        )
        .await;
    assert_eq!(status, 400, "{answer}");
    let (status, _) = server.deliver("msg_4", &json!("not an event")).await;
    assert_eq!(status, 400);
    assert_eq!(server.count(r#"public.plan_type = "tampered""#).await, 0);
    assert_eq!(server.count("id EXISTS").await, 50);
    // Event types the index does not use are acknowledged without work.
    let email = event(
        "email.created",
        json!({"object": "email", "id": "ema_1", "to_email_address": "a@example.com"}),
        1_790_000_000_000,
    );
    let (status, answer) = server.deliver("msg_5", &email).await;
    assert_eq!((status, answer["outcome"].as_str()), (200, Some("ignored")));
    let too_big = vec![b' '; 2 << 20];
    let mut request = http.post(&url).body(too_big.clone());
    for (name, value) in svix_headers("msg_6", &too_big) {
        request = request.header(name, value);
    }
    assert_eq!(request.send().await.unwrap().status(), 413);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicates_are_acknowledged_once_and_late_updates_cannot_resurrect() {
    let dir = tempfile::tempdir().unwrap();
    let (_fake, server) = TestServer::with_population(dir.path(), 50).await;
    let user = newcomer(3);
    let id = user["id"].as_str().unwrap().to_string();
    let t = 1_790_000_000_000;
    let created = event("user.created", with_version(user.clone(), t, "free"), t);
    assert_eq!(
        server.deliver("msg_c", &created).await.1["outcome"],
        "applied"
    );
    assert_eq!(
        server.deliver("msg_c", &created).await.1["outcome"],
        "duplicate"
    );
    let deleted = event(
        "user.deleted",
        json!({"object": "user", "id": id, "deleted": true}),
        (t + 2_000) / 1000,
    );
    assert_eq!(
        server.deliver("msg_d", &deleted).await.1["outcome"],
        "applied"
    );
    assert_eq!(server.plan_of(&id).await, None);
    // Svix retried an update from before the deletion; it arrives last.
    let late = event(
        "user.updated",
        with_version(user, t + 1_000, "pro"),
        t + 1_000,
    );
    assert_eq!(server.deliver("msg_u", &late).await.0, 200);
    assert_eq!(
        server.plan_of(&id).await,
        None,
        "a late update resurrected a deleted user"
    );
    server.stop().await;
}

/// What Clerk did to one user, in order, and the state it ended in.
struct History {
    id: String,
    events: Vec<(String, Value)>,
    final_plan: Option<String>,
}

fn history(rng: &mut ChaCha8Rng, index: usize) -> History {
    let user = newcomer(index);
    let id = user["id"].as_str().unwrap().to_string();
    let start = 1_790_000_000_000 + rng.random_range(0..1_000_000);
    let mut events = vec![(
        format!("msg_{index}_0"),
        event(
            "user.created",
            with_version(user.clone(), start, "v0"),
            start,
        ),
    )];
    let updates = rng.random_range(0..4);
    for n in 1..=updates {
        let at = start + n as i64 * 1_000;
        events.push((
            format!("msg_{index}_{n}"),
            event(
                "user.updated",
                with_version(user.clone(), at, &format!("v{n}")),
                at,
            ),
        ));
    }
    let deleted = rng.random_bool(0.3);
    if deleted {
        let at = start + (updates + 1) as i64 * 1_000;
        events.push((
            format!("msg_{index}_del"),
            event(
                "user.deleted",
                json!({"object": "user", "id": id, "deleted": true}),
                at,
            ),
        ));
    }
    History {
        id,
        events,
        final_plan: (!deleted).then(|| format!("v{updates}")),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn any_delivery_order_with_duplicates_converges_to_clerks_final_state() {
    let dir = tempfile::tempdir().unwrap();
    let (_fake, server) = TestServer::with_population(dir.path(), 20).await;
    let server = Arc::new(server);
    for seed in 0..8u64 {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let histories: Vec<History> = (0..12)
            .map(|i| history(&mut rng, seed as usize * 100 + i))
            .collect();
        let mut deliveries: Vec<(String, Value)> =
            histories.iter().flat_map(|h| h.events.clone()).collect();
        let duplicates: Vec<(String, Value)> = deliveries
            .iter()
            .filter(|_| rng.random_bool(0.3))
            .cloned()
            .collect();
        deliveries.extend(duplicates);
        deliveries.shuffle(&mut rng);
        // Concurrent, in the shuffled order, four at a time.
        for chunk in deliveries.chunks(4) {
            let sends = chunk.iter().map(|(svix_id, body)| {
                let server = server.clone();
                let (svix_id, body) = (svix_id.clone(), body.clone());
                tokio::spawn(async move { server.deliver(&svix_id, &body).await.0 })
            });
            for send in sends {
                assert_eq!(send.await.unwrap(), 200);
            }
        }
        for history in &histories {
            assert_eq!(
                server.plan_of(&history.id).await,
                history.final_plan,
                "seed {seed}, user {}",
                history.id
            );
        }
    }
    Arc::into_inner(server).unwrap().stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_concurrent_deliveries_is_group_committed() {
    let dir = tempfile::tempdir().unwrap();
    let (_fake, server) = TestServer::with_population(dir.path(), 20).await;
    let before = server.count_matching(None).await;
    let server = Arc::new(server);
    let sends: Vec<_> = (0..200)
        .map(|i| {
            let server = server.clone();
            tokio::spawn(async move {
                let user = with_version(newcomer(5_000 + i), 1_790_000_000_000, "burst");
                server
                    .deliver(
                        &format!("msg_burst_{i}"),
                        &event("user.created", user, 1_790_000_000_000),
                    )
                    .await
                    .0
            })
        })
        .collect();
    for send in sends {
        assert_eq!(send.await.unwrap(), 200);
    }
    assert_eq!(server.count(r#"public.plan_type = "burst""#).await, 200);
    let after = server.count_matching(None).await;
    let commits = after.freshness.unwrap().generation - before.freshness.unwrap().generation;
    assert!(
        commits < 200,
        "200 concurrent deliveries took {commits} commits: no group commit"
    );
    Arc::into_inner(server).unwrap().stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delivery_that_stalls_is_cut_off_by_the_request_timeout() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let fake = common::RunningFakeClerk::start(clerk_index::clerk::fake::FakeClerkConfig::new(
        Population::new(10),
    ))
    .await;
    let dir = tempfile::tempdir().unwrap();
    let mut options = common::TestOptions::new(&fake.url);
    options.webhook_timeout = std::time::Duration::from_millis(300);
    let server = TestServer::start(dir.path(), options).await;
    server.wait_serving().await;
    let address = server.http_url.trim_start_matches("http://").to_string();
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    // Headers promise 1000 bytes; 10 arrive, then nothing.
    let request = "POST /webhooks/clerk HTTP/1.1\r\nhost: test\r\ncontent-type: application/json\r\ncontent-length: 1000\r\nsvix-id: msg_slow\r\nsvix-timestamp: 1\r\nsvix-signature: v1,AAAA\r\n\r\n{\"data\": {";
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = vec![0; 256];
    let read = tokio::time::timeout(std::time::Duration::from_secs(5), stream.read(&mut answer))
        .await
        .expect("the server must answer, not wait for the body");
    let answer = String::from_utf8_lossy(&answer[..read.unwrap()]).to_string();
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delivery_for_another_instance_is_acknowledged_counted_and_applied_nowhere() {
    let dir = tempfile::tempdir().unwrap();
    let (_fake, server) = TestServer::with_population(dir.path(), 20).await;
    let learned = server.instance_learned().await;
    assert_eq!(
        learned.instance_id,
        clerk_index::clerk::fake::FAKE_INSTANCE_ID
    );
    assert_eq!(learned.environment_type, "production");
    assert_eq!(learned.requests_per_10s, 10_000, "a given limit is kept");

    let foreign_user = with_version(newcomer(1), 1_790_000_000_000, "foreign_plan");
    let mut foreign = event("user.created", foreign_user, 1_790_000_000_000);
    foreign["instance_id"] = "ins_someone_else".into();
    for n in 0..3 {
        let (status, answer) = server.deliver(&format!("msg_f{n}"), &foreign).await;
        assert_eq!(
            (status, answer["outcome"].as_str()),
            (200, Some("foreign_instance")),
            "{answer}"
        );
    }
    assert_eq!(
        server.count(r#"public.plan_type = "foreign_plan""#).await,
        0
    );

    // An envelope without instance_id (older payloads) is ours.
    let mut unnamed = event(
        "user.created",
        with_version(newcomer(2), 1_790_000_000_000, "unnamed_plan"),
        1_790_000_000_000,
    );
    unnamed.as_object_mut().unwrap().remove("instance_id");
    let (status, answer) = server.deliver("msg_unnamed", &unnamed).await;
    assert_eq!((status, answer["outcome"].as_str()), (200, Some("applied")));
    assert_eq!(
        server.count(r#"public.plan_type = "unnamed_plan""#).await,
        1
    );

    let webhooks = server.sync_status().await.webhooks.unwrap();
    assert_eq!((webhooks.foreign_instance, webhooks.applied), (3, 1));
    let metrics = server.metrics_text().await;
    assert!(
        metrics.contains(r#"clerk_index_webhook_deliveries_total{outcome="foreign_instance"} 3"#),
        "{metrics}"
    );
    server.stop().await;
}
