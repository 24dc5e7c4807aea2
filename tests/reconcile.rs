//! Reconcile repairs what webhooks missed; the Sync service reports and triggers it.

mod common;

use clerk_index::api::proto::sync_client::SyncClient;
use clerk_index::api::proto::{GetSyncStatusRequest, ReconcileKind, TriggerReconcileRequest};
use clerk_index::clerk::fake::Population;
use common::{TestOptions, TestServer, event};
use serde_json::json;

async fn reconcile(
    server: &TestServer,
    kind: ReconcileKind,
) -> clerk_index::api::proto::TriggerReconcileResponse {
    let mut sync = SyncClient::new(server.channel().await);
    sync.trigger_reconcile(TriggerReconcileRequest { kind: kind as i32 })
        .await
        .unwrap()
        .into_inner()
}

async fn sweep(server: &TestServer) -> clerk_index::api::proto::ReconcileRun {
    reconcile(server, ReconcileKind::Sweep).await.sweep.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catch_up_repairs_a_dropped_webhook() {
    let dir = tempfile::tempdir().unwrap();
    let fake = common::RunningFakeClerk::start(clerk_index::clerk::fake::FakeClerkConfig::new(
        Population::new(300),
    ))
    .await;
    let mut options = TestOptions::new(&fake.url);
    options.page_size = 50;
    let server = TestServer::start(dir.path(), options).await;
    server.wait_serving().await;
    let id = fake.fake.user_ids()[17].clone();
    // Changed in Clerk; the webhook never arrived.
    let mut user = fake.fake.user_json(&id).unwrap();
    user["public_metadata"]["plan_type"] = json!("changed_in_clerk");
    user["updated_at"] = json!(clerk_index::clock::now_ms());
    fake.fake.put_user_json(&user);
    assert_ne!(server.plan_of(&id).await.unwrap(), "changed_in_clerk");
    let response = reconcile(&server, ReconcileKind::CatchUp).await;
    let run = response.catch_up.unwrap();
    assert_eq!(
        (run.upserts, run.users_listed),
        (1, 50),
        "catch-up must stop at the watermark: {run:?}"
    );
    assert_eq!(server.plan_of(&id).await.unwrap(), "changed_in_clerk");
    let mut sync = SyncClient::new(server.channel().await);
    let status = sync
        .get_sync_status(GetSyncStatusRequest {})
        .await
        .unwrap()
        .into_inner();
    assert!(status.backfill.unwrap().complete);
    assert!(status.last_catch_up.is_some());
    assert!(status.catch_up_watermark_ms > 0);
    server.stop().await;
}

/// A server over `users` generated users, backfilled in pages of `page_size`.
async fn serving(
    dir: &std::path::Path,
    users: usize,
    page_size: u32,
) -> (common::RunningFakeClerk, TestServer) {
    let config = clerk_index::clerk::fake::FakeClerkConfig::new(Population::new(users));
    let fake = common::RunningFakeClerk::start(config).await;
    let mut options = TestOptions::new(&fake.url);
    options.page_size = page_size;
    let server = TestServer::start(dir, options).await;
    server.wait_serving().await;
    (fake, server)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catch_up_repairs_dropped_sign_ins() {
    let dir = tempfile::tempdir().unwrap();
    let (fake, server) = serving(dir.path(), 300, 100).await;
    let recent = "last_sign_in_at > now-10m";
    let before = server.count(recent).await;
    let now = clerk_index::clock::now_ms();
    // Three sign-ins whose session.created never arrived (no webhook target).
    for id in fake.fake.user_ids().iter().skip(40).take(3) {
        assert!(fake.fake.sign_in(id, now));
    }
    assert_eq!(server.count(recent).await, before);
    let run = reconcile(&server, ReconcileKind::CatchUp)
        .await
        .catch_up
        .unwrap();
    assert_eq!(server.count(recent).await, before + 3);
    assert_eq!(run.upserts, 3, "the sign-ins, once each: {run:?}");
    // Nothing new since: the next catch-up applies nothing.
    let again = reconcile(&server, ReconcileKind::CatchUp)
        .await
        .catch_up
        .unwrap();
    assert_eq!(again.upserts, 0, "{again:?}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn activity_shared_by_more_users_than_a_page_is_caught_up_once_each() {
    let dir = tempfile::tempdir().unwrap();
    let (fake, server) = serving(dir.path(), 400, 100).await;
    // Clerk keeps activity to the day: 250 users active today share one `last_active_at`, and
    // nothing else about them changed (no updated_at, no sign-in).
    let now = clerk_index::clock::now_ms();
    let today = now - now.rem_euclid(86_400_000);
    for id in fake.fake.user_ids().iter().take(250) {
        let mut user = fake.fake.user_json(id).unwrap();
        user["last_active_at"] = json!(today);
        fake.fake.put_user_json(&user);
    }
    let active_today = format!("last_active_at >= {today}");
    assert_eq!(server.count(&active_today).await, 0);
    let run = reconcile(&server, ReconcileKind::CatchUp)
        .await
        .catch_up
        .unwrap();
    assert_eq!(server.count(&active_today).await, 250);
    assert_eq!(run.upserts, 250, "each active user once: {run:?}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sweep_removes_users_deleted_while_the_service_was_down() {
    let dir = tempfile::tempdir().unwrap();
    let (fake, server) = TestServer::with_population(dir.path(), 1_200).await;
    let url = fake.url.clone();
    server.stop().await;
    let ids = fake.fake.user_ids();
    let (gone, also_gone) = (ids[5].clone(), ids[700].clone());
    assert!(fake.fake.delete_user(&gone) && fake.fake.delete_user(&also_gone));
    // And one created while the service was down, in the middle of the creation order.
    let mut newcomer = Population {
        seed: 11,
        ..Population::new(1_200)
    }
    .user(600);
    newcomer["public_metadata"]["plan_type"] = json!("created_while_down");
    let newcomer_id = newcomer["id"].as_str().unwrap().to_string();
    fake.fake.put_user_json(&newcomer);

    let mut options = TestOptions::new(&url);
    options.page_size = 100;
    let server = TestServer::start(dir.path(), options).await;
    server.wait_serving().await;
    assert!(
        server.plan_of(&gone).await.is_some(),
        "still there before the sweep"
    );
    let run = sweep(&server).await;
    assert_eq!(run.deletes, 2, "{run:?}");
    assert_eq!(run.upserts, 1, "{run:?}");
    assert_eq!(run.users_listed, 1_199);
    assert_eq!(server.plan_of(&gone).await, None);
    assert_eq!(server.plan_of(&also_gone).await, None);
    assert_eq!(
        server.plan_of(&newcomer_id).await.unwrap(),
        "created_while_down"
    );
    // A second sweep finds nothing to do.
    let again = sweep(&server).await;
    assert_eq!((again.deletes, again.upserts), (0, 0));
    let mut sync = SyncClient::new(server.channel().await);
    let status = sync
        .get_sync_status(GetSyncStatusRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(status.tombstones, 2);
    assert!(!status.sweep_in_progress);
    assert_eq!(status.freshness.unwrap().user_count, 1_199);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_counts_webhook_outcomes() {
    let dir = tempfile::tempdir().unwrap();
    let (_fake, server) = TestServer::with_population(dir.path(), 20).await;
    let user = Population {
        seed: 3,
        ..Population::new(10)
    }
    .user(1);
    let created = event("user.created", user, 1_790_000_000_000);
    assert_eq!(server.deliver("msg_a", &created).await.0, 200);
    assert_eq!(server.deliver("msg_a", &created).await.0, 200);
    assert_eq!(
        server
            .deliver("msg_b", &json!({"type": "user.created"}))
            .await
            .0,
        400
    );
    let mut sync = SyncClient::new(server.channel().await);
    let status = sync
        .get_sync_status(GetSyncStatusRequest {})
        .await
        .unwrap()
        .into_inner();
    let webhooks = status.webhooks.unwrap();
    assert_eq!(
        (webhooks.applied, webhooks.duplicate, webhooks.malformed),
        (1, 1, 1)
    );
    assert!(status.writer.unwrap().commits >= 1);
    assert!(status.lag_ms > 0);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_sweep_resumes_where_it_stopped() {
    let dir = tempfile::tempdir().unwrap();
    let fake = common::RunningFakeClerk::start(clerk_index::clerk::fake::FakeClerkConfig::new(
        Population::new(3_000),
    ))
    .await;
    let options = |sweep_interval_secs| {
        let mut options = TestOptions::new(&fake.url);
        options.page_size = 100;
        options.sweep_interval_secs = sweep_interval_secs;
        options
    };
    let server = TestServer::start(dir.path(), options(3_600)).await;
    server.wait_serving().await;
    server.stop().await;
    // Slow Clerk down so the periodic sweep (every second) is still running when we stop.
    let mut slow = options(1);
    slow.rate_limit = "1/100ms".into();
    let server = TestServer::start(dir.path(), slow).await;
    let mut in_progress = false;
    for _ in 0..100 {
        let mut sync = SyncClient::new(server.channel().await);
        if sync
            .get_sync_status(GetSyncStatusRequest {})
            .await
            .unwrap()
            .into_inner()
            .sweep_in_progress
        {
            in_progress = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(in_progress, "the sweep never checkpointed");
    server.stop().await;
    let requests_before = fake.fake.request_count();

    let server = TestServer::start(dir.path(), options(3_600)).await;
    server.wait_serving().await;
    let mut last_sweep = None;
    for _ in 0..200 {
        let mut sync = SyncClient::new(server.channel().await);
        let status = sync
            .get_sync_status(GetSyncStatusRequest {})
            .await
            .unwrap()
            .into_inner();
        if !status.sweep_in_progress && status.last_sweep.is_some() {
            last_sweep = status.last_sweep;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let sweep = last_sweep.expect("the resumed sweep never finished");
    assert_eq!(
        sweep.users_listed, 3_000,
        "pages listed before and after the restart add up to one pass: {sweep:?}"
    );
    assert_eq!(sweep.deletes, 0);
    assert!(
        // (and one GET /v1/instance at start, and the three empty lists of the organizations' walk)
        fake.fake.request_count() - requests_before < 32 + 3,
        "the resumed sweep started over"
    );
    server.stop().await;
}
