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
        fake.fake.request_count() - requests_before < 31,
        "the resumed sweep started over"
    );
    server.stop().await;
}
