//! Clerk storms: 5xx bursts, 429s with and without `Retry-After`, answers that stall past the
//! client's timeout, bodies cut off midway and bodies that are not JSON, all at once, during the
//! backfill, a catch-up, a sweep and write-through. The mirror ends exact, and the client never
//! asks faster than Clerk's limit allows.

mod common;

use std::time::Duration;

use clerk_index::api::proto::sync_client::SyncClient;
use clerk_index::api::proto::{ReconcileKind, TriggerReconcileRequest, UpdateUserMetadataRequest};
use clerk_index::clerk::fake::{FakeClerkConfig, FaultInjection, Population};
use common::{RunningFakeClerk, TestOptions, TestServer};
use serde_json::json;
use tonic::Code;

fn storm() -> FaultInjection {
    FaultInjection {
        throttle_every: Some(5),
        omit_retry_after: true,
        retry_after_secs: 1,
        server_error_every: Some(7),
        truncate_every: Some(11),
        stall_every: Some(13),
        stall_ms: 1_500,
        unreadable_list_every: Some(17),
        ..FaultInjection::default()
    }
}

async fn reconcile(server: &TestServer, kind: ReconcileKind) {
    SyncClient::new(server.channel().await)
        .trigger_reconcile(TriggerReconcileRequest { kind: kind as i32 })
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_mirror_ends_exact_through_a_storm_of_every_clerk_failure() {
    let mut config = FakeClerkConfig::new(Population::new(1_200));
    config.faults = storm();
    let fake = RunningFakeClerk::start(config).await;
    let dir = tempfile::tempdir().unwrap();
    let mut options = TestOptions::new(&fake.url);
    options.page_size = 100;
    options.concurrency = 4;
    options.clerk_request_timeout = Some(Duration::from_millis(500));
    let server = TestServer::start(dir.path(), options).await;
    server.wait_serving().await;
    let mut expected = fake.fake.user_ids();
    expected.sort();
    assert_eq!(server.all_ids().await, expected, "the backfill is exact");
    let after_backfill = fake.fake.request_count();
    assert!(fake.fake.throttled_count() >= 3, "the storm must throttle");

    // Clerk changes without webhooks; a catch-up and a sweep repair it, in the same storm.
    let ids = fake.fake.user_ids();
    for id in &ids[..20] {
        let mut user = fake.fake.user_json(id).unwrap();
        user["public_metadata"]["plan_type"] = json!("storm");
        user["updated_at"] = json!(clerk_index::clock::now_ms());
        fake.fake.put_user_json(&user);
    }
    for id in &ids[20..30] {
        assert!(fake.fake.delete_user(id));
    }
    reconcile(&server, ReconcileKind::CatchUp).await;
    reconcile(&server, ReconcileKind::Sweep).await;
    let mut expected = fake.fake.user_ids();
    expected.sort();
    assert_eq!(server.all_ids().await, expected, "the sweep is exact");
    for id in &ids[..20] {
        assert_eq!(server.plan_of(id).await.as_deref(), Some("storm"), "{id}");
    }
    assert!(fake.fake.request_count() > after_backfill);

    // Write-through in the storm: a write is applied, or refused with a code to retry on, and a
    // caller that retries as the code says gets every write applied, in Clerk and in the index.
    let mut client = server.client().await;
    let mut refused = 0;
    for (n, id) in ids[30..40].iter().enumerate() {
        let mut applied = false;
        for _ in 0..30 {
            let answer = client
                .update_user_metadata(UpdateUserMetadataRequest {
                    user_id: id.clone(),
                    public_metadata: Some(json!({"storm_write": n}).to_string()),
                    ..Default::default()
                })
                .await;
            match answer {
                Ok(_) => {
                    applied = true;
                    break;
                }
                Err(status) => {
                    refused += 1;
                    let wait = match status.code() {
                        Code::ResourceExhausted => status
                            .metadata()
                            .get("retry-after")
                            .and_then(|v| v.to_str().ok()?.parse().ok())
                            .map_or(Duration::from_secs(1), Duration::from_secs),
                        Code::Unavailable | Code::DeadlineExceeded => Duration::from_millis(100),
                        other => panic!("{other:?}: {status:?}"),
                    };
                    tokio::time::sleep(wait).await;
                }
            }
        }
        assert!(applied, "write {n} was never applied");
        let clerk = fake.fake.user_json(id).unwrap();
        assert_eq!(clerk["public_metadata"]["storm_write"], n);
        let indexed = server.user_json(id).await.unwrap();
        assert_eq!(indexed["public_metadata"]["storm_write"], n);
    }
    assert!(refused > 0, "the storm refused no write");
    server.stop().await;
}
