//! Backfill from the fake Clerk over HTTP: paging, throttling, readiness, restarts, resuming.

mod common;

use std::time::Duration;

use clerk_index::clerk::fake::{FakeClerkConfig, FaultInjection, Population};
use common::{RunningFakeClerk, TestOptions, TestServer};
use tonic_health::pb::health_check_response::ServingStatus;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backfill_pages_through_injected_429s_and_500s() {
    let dir = tempfile::tempdir().unwrap();
    let faults = FaultInjection {
        throttle_every: Some(6),
        server_error_every: Some(7),
        retry_after_secs: 1,
        ..FaultInjection::default()
    };
    let (fake, server) = TestServer::with_faulty_clerk(dir.path(), 1_234, faults).await;
    let count = server.count_matching(None).await;
    assert_eq!(count.count, 1_234);
    assert!(
        fake.fake.throttled_count() >= 2,
        "the test must exercise 429s"
    );
    assert!(
        fake.fake.request_count() > 13,
        "13 pages of 100 plus retries"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_and_readyz_flip_to_serving_when_backfill_is_done() {
    let fake = RunningFakeClerk::start(FakeClerkConfig::new(Population::new(3_000))).await;
    let dir = tempfile::tempdir().unwrap();
    let mut options = TestOptions::new(&fake.url);
    options.page_size = 100;
    options.rate_limit = "1/100ms".into(); // 30 pages: ~3 s
    let server = TestServer::start(dir.path(), options).await;
    assert_eq!(server.health().await, ServingStatus::NotServing);
    let readyz = reqwest::get(format!("{}/readyz", server.http_url))
        .await
        .unwrap();
    assert_eq!(readyz.status(), 503);
    assert_eq!(
        reqwest::get(format!("{}/livez", server.http_url))
            .await
            .unwrap()
            .status(),
        200
    );
    server.wait_serving().await;
    assert_eq!(
        reqwest::get(format!("{}/readyz", server.http_url))
            .await
            .unwrap()
            .status(),
        200
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_serves_immediately_from_disk_without_clerk() {
    let dir = tempfile::tempdir().unwrap();
    let (fake, server) = TestServer::with_population(dir.path(), 2_000).await;
    // The backfill's last checkpoint may commit just after the server turns ready (sooner or
    // later on a loaded machine): compare with the generation once it has settled.
    let mut before = server.count_matching(None).await;
    loop {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let again = server.count_matching(None).await;
        let settled = again.freshness.unwrap().generation == before.freshness.unwrap().generation;
        before = again;
        if settled {
            break;
        }
    }
    server.stop().await;
    drop(fake);
    // Clerk is gone: the restarted server must serve what it has.
    let server = TestServer::start(dir.path(), TestOptions::new("http://127.0.0.1:9")).await;
    // Serving as soon as the index is open (Clerk's retries would take many seconds).
    let started = std::time::Instant::now();
    while server.health().await != ServingStatus::Serving {
        assert!(started.elapsed() < Duration::from_secs(2), "not serving");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let after = server.count_matching(None).await;
    assert_eq!(after.count, 2_000);
    assert_eq!(
        after.freshness.unwrap().generation,
        before.freshness.unwrap().generation
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_parallel_backfill_resumes_every_walk_from_the_checkpoint() {
    let fake = RunningFakeClerk::start(FakeClerkConfig::new(Population::new(4_000))).await;
    let dir = tempfile::tempdir().unwrap();
    let slow = || {
        let mut options = TestOptions::new(&fake.url);
        options.page_size = 100;
        options.concurrency = 4;
        options.rate_limit = "2/100ms".into(); // a burst of 2, then 20 pages/s
        options.commit_interval_ms = 50;
        options
    };
    let server = TestServer::start(dir.path(), slow()).await;
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    assert_eq!(
        server.health().await,
        ServingStatus::NotServing,
        "40 pages at 20/s take 2 s"
    );
    server.stop().await;
    let listed_first_run = fake.fake.users_listed();
    assert!(
        listed_first_run >= 1_000,
        "{listed_first_run} users were listed before the stop"
    );

    let server = TestServer::start(dir.path(), slow()).await;
    server.wait_serving().await;
    let count = server.count_matching(None).await;
    assert_eq!(count.count, 4_000);
    let listed_second_run = fake.fake.users_listed() - listed_first_run;
    // Every walk resumes at its cursor: the second run lists what the first had not handed
    // over, plus at most the pages in flight at the stop (4 walks x 100), plus the users each
    // resumed or split walk sees again at its boundary.
    assert!(
        listed_second_run + listed_first_run <= 4_000 + 400 + 100,
        "the runs listed {listed_first_run} + {listed_second_run} users: the second started over"
    );
    server.stop().await;
}
