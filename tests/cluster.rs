//! Cluster mode against a real `nats-server` (JetStream) on loopback: replicas share the change
//! log, each keeps its own index, and Clerk is never needed to bring a replica up.

mod common;

use std::path::Path;
use std::time::Duration;

use clerk_index::api::proto::GetSyncStatusRequest;
use clerk_index::api::proto::sync_client::SyncClient;
use clerk_index::change::{ChangeSource, UserChange};
use clerk_index::clerk::fake::FakeClerkConfig;
use clerk_index::clerk::fake::Population;
use clerk_index::cluster::{ChangeLog, ClusterConfig};
use common::{NatsServer, RunningFakeClerk, TestOptions, TestServer, event, newcomer};

/// Nothing listens here: a replica that tried to reach Clerk would fail.
const UNREACHABLE_CLERK: &str = "http://127.0.0.1:9";

/// Short, so takeovers happen within a test's patience.
const LEASE_TTL: Duration = Duration::from_secs(2);

fn cluster_config(nats: &NatsServer, id: &str) -> ClusterConfig {
    let mut config = ClusterConfig::new(&nats.url, id);
    config.lease_ttl = LEASE_TTL;
    config
}

/// Starts a replica and waits until it serves: the shared backfill (from `clerk_url`, by
/// whichever replica holds the sync lease) is complete and its index holds the log.
async fn replica_of(nats: &NatsServer, clerk_url: &str, id: &str, dir: &Path) -> TestServer {
    let mut options = TestOptions::new(clerk_url);
    options.cluster = Some(cluster_config(nats, id));
    let server = TestServer::start(dir, options).await;
    server.wait_serving().await;
    server
}

/// A replica in its own process (so a test can SIGKILL it), on fixed ports so a restart is
/// reachable where the first run was; `extra` args are appended.
struct ReplicaProcess {
    grpc: u16,
    http: u16,
    nats_url: String,
    clerk_url: String,
    id: &'static str,
    dir: std::path::PathBuf,
    extra: Vec<&'static str>,
}

impl ReplicaProcess {
    fn new(nats: &NatsServer, clerk_url: &str, id: &'static str, dir: &Path) -> ReplicaProcess {
        ReplicaProcess {
            grpc: common::free_port(),
            http: common::free_port(),
            nats_url: nats.url.clone(),
            clerk_url: clerk_url.into(),
            id,
            dir: dir.to_path_buf(),
            extra: Vec::new(),
        }
    }

    fn spawn(&self) -> tokio::process::Child {
        tokio::process::Command::new(env!("CARGO_BIN_EXE_clerk-index"))
            .args(["serve", "--grpc-addr", &format!("127.0.0.1:{}", self.grpc)])
            .args(["--http-addr", &format!("127.0.0.1:{}", self.http)])
            .args(["--clerk-api-url", &self.clerk_url])
            .args(["--writer-memory-mb", "50"])
            .args(["--cluster", &self.nats_url, "--replica-id", self.id])
            .args(&self.extra)
            .args(["--allow-unauthenticated", "--data-dir"])
            .arg(&self.dir)
            .env("CLERK_SECRET_KEY", "sk_test_fake_clerk")
            .env("RUST_LOG", "warn")
            .stdout(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap()
    }

    fn http_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.http)
    }

    fn grpc_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.grpc)
    }
}

/// NATS and an empty Clerk (so the shared backfill finishes at once and every sequence in the
/// log is a test's own).
struct Cluster {
    nats: NatsServer,
    clerk: RunningFakeClerk,
}

impl Cluster {
    async fn start() -> Cluster {
        let nats = NatsServer::start().await;
        let clerk = RunningFakeClerk::start(FakeClerkConfig::new(Population::new(0))).await;
        Cluster { nats, clerk }
    }

    async fn replica(&self, id: &str, dir: &Path) -> TestServer {
        replica_of(&self.nats, &self.clerk.url, id, dir).await
    }
}

/// Waits until `check` holds on `server` (replication is asynchronous).
async fn eventually(server: &TestServer, what: &str, check: impl AsyncFn(&TestServer) -> bool) {
    for _ in 0..200 {
        if check(server).await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("{what}: never seen on {}", server.grpc_url);
}

async fn writer_counts(server: &TestServer) -> clerk_index::api::proto::WriterCounts {
    SyncClient::new(server.channel().await)
        .get_sync_status(GetSyncStatusRequest {})
        .await
        .unwrap()
        .into_inner()
        .writer
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_sent_to_one_replica_is_searchable_on_all() {
    let cluster = Cluster::start().await;
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let mut replicas = Vec::new();
    for (n, dir) in dirs.iter().enumerate() {
        replicas.push(cluster.replica(&format!("r{n}"), dir.path()).await);
    }

    let user = newcomer(0);
    let id = user["id"].as_str().unwrap().to_string();
    let (status, answer) = replicas[0]
        .deliver(
            "msg_cluster_1",
            &event("user.created", user, 1_790_000_000_000),
        )
        .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["outcome"], "applied");
    assert_eq!(answer["detail"]["sequence"], 1, "{answer}");
    for server in &replicas {
        eventually(server, "the new user", async |s| {
            s.user_json(&id).await.is_ok()
        })
        .await;
    }
    let metrics = replicas[1].metrics_text().await;
    assert!(
        metrics.contains("\nclerk_index_cluster_committed_sequence 1.0\n"),
        "{metrics}"
    );

    // A deletion delivered to another replica removes the user everywhere.
    let deleted = serde_json::json!({"id": id, "object": "user", "deleted": true});
    let (status, _) = replicas[2]
        .deliver(
            "msg_cluster_2",
            &event("user.deleted", deleted, 1_790_000_100_000),
        )
        .await;
    assert_eq!(status, 200);
    for server in &replicas {
        eventually(server, "the deletion", async |s| {
            s.user_json(&id).await == Err(tonic::Code::NotFound)
        })
        .await;
    }
    for server in replicas {
        server.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicate_deliveries_to_two_replicas_are_applied_once() {
    let cluster = Cluster::start().await;
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = cluster.replica("a", dir_a.path()).await;
    let b = cluster.replica("b", dir_b.path()).await;

    let user = newcomer(1);
    let id = user["id"].as_str().unwrap().to_string();
    let body = event("user.created", user, 1_790_000_000_000);
    // Svix retried a delivery whose first answer was lost; the retry reached the other replica.
    let (first, second) = tokio::join!(a.deliver("msg_dup", &body), b.deliver("msg_dup", &body));
    assert_eq!((first.0, second.0), (200, 200));
    // One stores it; the other finds it by message id (JetStream's dedupe) or by content (the
    // log already holds this state), whichever the race gives.
    let outcomes = [&first.1, &second.1].map(|answer| answer["detail"]["outcome"].clone());
    assert!(
        outcomes.contains(&"stored".into())
            && (outcomes.contains(&"duplicate".into()) || outcomes.contains(&"superseded".into())),
        "{} / {}",
        first.1,
        second.1
    );
    assert_eq!(
        first.1["detail"]["sequence"],
        second.1["detail"]["sequence"]
    );

    for server in [&a, &b] {
        eventually(server, "the user", async |s| s.user_json(&id).await.is_ok()).await;
        let counts = writer_counts(server).await;
        assert_eq!(
            (counts.applied, counts.ignored_stale),
            (1, 0),
            "each replica applies the change once"
        );
    }
    a.stop().await;
    b.stop().await;
}

/// The log keeps one message per user, so a late delivery must not replace a newer state in it:
/// a replica that bootstraps afterwards agrees with the replicas that saw every delivery.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn late_deliveries_never_overwrite_a_newer_state_in_the_log() {
    let cluster = Cluster::start().await;
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = cluster.replica("a", dir_a.path()).await;
    let b = cluster.replica("b", dir_b.path()).await;
    const T: i64 = 1_790_000_000_000;
    let version = |index: usize, stage: &str, updated_at: i64| {
        let mut user = newcomer(index);
        user["public_metadata"] = serde_json::json!({ "stage": stage });
        user["updated_at"] = updated_at.into();
        user
    };
    let outcome = |answer: &(u16, serde_json::Value)| {
        assert_eq!(answer.0, 200, "{}", answer.1);
        answer.1["detail"]["outcome"].as_str().unwrap().to_string()
    };
    // One user updated twice; Svix's retry of the first update arrives last, at the other
    // replica.
    let kept = newcomer(3)["id"].as_str().unwrap().to_string();
    let created = event("user.created", version(3, "one", T), T);
    assert_eq!(outcome(&a.deliver("msg_c", &created).await), "stored");
    let third = event("user.updated", version(3, "three", T + 2_000), T + 2_000);
    assert_eq!(outcome(&b.deliver("msg_3", &third).await), "stored");
    let second = event("user.updated", version(3, "two", T + 1_000), T + 1_000);
    assert_eq!(outcome(&a.deliver("msg_2", &second).await), "superseded");
    // Another user deleted; an update made before the deletion arrives after it.
    let gone = newcomer(4)["id"].as_str().unwrap().to_string();
    let created = event("user.created", version(4, "one", T), T);
    assert_eq!(outcome(&a.deliver("msg_g1", &created).await), "stored");
    let deleted = event(
        "user.deleted",
        serde_json::json!({"id": gone, "object": "user", "deleted": true}),
        T + 5_000,
    );
    assert_eq!(outcome(&b.deliver("msg_g2", &deleted).await), "stored");
    let late = event("user.updated", version(4, "late", T + 4_000), T + 4_000);
    assert_eq!(outcome(&a.deliver("msg_g3", &late).await), "superseded");

    let dir_c = tempfile::tempdir().unwrap();
    let c = cluster.replica("c", dir_c.path()).await;
    for server in [&a, &b, &c] {
        eventually(server, "the newest state", async |s| {
            s.user_json(&kept)
                .await
                .is_ok_and(|user| user["public_metadata"]["stage"] == "three")
                && s.user_json(&gone).await == Err(tonic::Code::NotFound)
        })
        .await;
    }
    for server in [a, b, c] {
        server.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_bootstrap_and_resume_from_the_log_without_clerk() {
    let nats = NatsServer::start().await;
    let population = Population {
        seed: 8,
        ..Population::new(1_500)
    };
    // The first replica takes the sync lease and copies Clerk's 1,000 users into the log.
    let clerk = RunningFakeClerk::start(FakeClerkConfig::new(Population {
        seed: 8,
        ..Population::new(1_000)
    }))
    .await;
    let seeder_dir = tempfile::tempdir().unwrap();
    let seeder = replica_of(&nats, &clerk.url, "seeder", seeder_dir.path()).await;
    assert_eq!(seeder.count_matching(None).await.count, 1_000);
    seeder.stop().await;
    drop(clerk);

    // A new replica, Clerk gone: it replays the log and is ready only once it holds it.
    let dir = tempfile::tempdir().unwrap();
    let fresh = replica_of(&nats, UNREACHABLE_CLERK, "fresh", dir.path()).await;
    assert_eq!(fresh.count_matching(None).await.count, 1_000);
    fresh.stop().await;

    // More changes while it is down; restarted on its data directory, it takes only those.
    let log = ChangeLog::connect(cluster_config(&nats, "loader"))
        .await
        .unwrap();
    for index in 1_000..1_500 {
        let json = serde_json::to_string(&population.user(index)).unwrap();
        let user = clerk_index::clerk::user_from_json(&json).unwrap();
        let change = UserChange::Upsert {
            user: std::sync::Arc::new(user),
            source: ChangeSource::Webhook,
        };
        log.publish(&change.into(), None).await.unwrap();
    }
    let restarted = replica_of(&nats, UNREACHABLE_CLERK, "fresh", dir.path()).await;
    assert_eq!(restarted.count_matching(None).await.count, 1_500);
    let counts = writer_counts(&restarted).await;
    assert_eq!(
        (counts.applied, counts.ignored_stale),
        (500, 0),
        "the restart resumed from its committed sequence instead of replaying the log"
    );
    restarted.stop().await;
}

async fn cluster_status(server: &TestServer) -> clerk_index::api::proto::ClusterStatus {
    SyncClient::new(server.channel().await)
        .get_sync_status(GetSyncStatusRequest {})
        .await
        .unwrap()
        .into_inner()
        .cluster
        .expect("cluster status in cluster mode")
}

/// The replica holding the sync lease is killed in the middle of the backfill: another replica
/// takes the lease once it expires, resumes the backfill from the shared checkpoint, and runs
/// the reconciles from then on; the killed one comes back as a follower.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sync_lease_moves_when_its_holder_dies() {
    let nats = NatsServer::start().await;
    let clerk = RunningFakeClerk::start(FakeClerkConfig::new(Population::new(3_000))).await;
    let observer = ChangeLog::connect(cluster_config(&nats, "observer"))
        .await
        .unwrap();
    let coordination = observer.coordination();

    // Replica a, a separate process, starts first and takes the lease; Clerk's pages of 500
    // come slowly (2 requests a second), so the kill lands mid-backfill.
    let dir_a = tempfile::tempdir().unwrap();
    let mut process_a = ReplicaProcess::new(&nats, &clerk.url, "a", dir_a.path());
    process_a.extra = vec!["--clerk-rate-limit", "2/1s", "--sync-lease-ttl-secs", "2"];
    let spawn_a = || process_a.spawn();
    let mut a = spawn_a();
    let users_seen = async || {
        let (checkpoint, _) = coordination.checkpoint().await.unwrap();
        checkpoint.map_or(0, |c| c["backfill"]["users_seen"].as_u64().unwrap())
    };
    for _ in 0..400 {
        if users_seen().await >= 1_000 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(coordination.holder().await.unwrap().as_deref(), Some("a"));

    // Replica b starts while a holds the lease: it follows the log and waits for the lease.
    let dir_b = tempfile::tempdir().unwrap();
    let mut options = TestOptions::new(&clerk.url);
    options.cluster = Some(cluster_config(&nats, "b"));
    let b = TestServer::start(dir_b.path(), options).await;
    a.start_kill().unwrap(); // SIGKILL: the lease is not released, it has to expire.
    a.wait().await.unwrap();
    let seen_at_kill = users_seen().await;
    assert!(
        (1_000..3_000).contains(&seen_at_kill),
        "the kill must land mid-backfill ({seen_at_kill} users seen)"
    );

    b.wait_serving().await;
    assert_eq!(b.count_matching(None).await.count, 3_000);
    let status = cluster_status(&b).await;
    assert!(status.holds_sync_lease, "{status:?}");
    assert_eq!(status.sync_lease_holder, "b");
    // b resumed from the checkpoint instead of copying everything again.
    let metrics = b.metrics_text().await;
    // The Helm chart's cluster-mode alert and dashboard panel query series a replica serves.
    let chart = common::chart_metric_names();
    common::assert_series_served(
        &metrics,
        chart
            .iter()
            .filter(|n| n.starts_with("clerk_index_cluster_")),
    );
    let pages: f64 = metrics
        .lines()
        .find_map(|line| line.strip_prefix("clerk_index_backfill_pages_total "))
        .expect("backfill pages on /metrics")
        .parse()
        .unwrap();
    let expected = (3_000 - seen_at_kill).div_ceil(500) as f64;
    assert!(
        pages <= expected + 1.0 && pages >= 1.0,
        "b copied {pages} pages after a had copied {seen_at_kill} users"
    );
    assert!(
        metrics.contains("\nclerk_index_cluster_sync_lease_held 1.0\n"),
        "{metrics}"
    );

    // Reconciles run where the lease is; a restarted a follows and sends callers there.
    let mut sync_b = SyncClient::new(b.channel().await);
    let run = sync_b
        .trigger_reconcile(clerk_index::api::proto::TriggerReconcileRequest {
            kind: clerk_index::api::proto::ReconcileKind::Sweep as i32,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(run.sweep.unwrap().users_listed, 3_000);
    let _a = spawn_a();
    common::wait_ready(&process_a.http_url()).await;
    let channel = tonic::transport::Channel::from_shared(process_a.grpc_url())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let refused = SyncClient::new(channel.clone())
        .trigger_reconcile(clerk_index::api::proto::TriggerReconcileRequest::default())
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::FailedPrecondition);
    assert!(refused.message().contains("\"b\""), "{}", refused.message());
    let count = clerk_index::api::proto::user_index_client::UserIndexClient::new(channel)
        .count_users(clerk_index::api::proto::CountUsersRequest::default())
        .await
        .unwrap()
        .into_inner()
        .count;
    assert_eq!(count, 3_000);
    b.stop().await;
    // A clean stop releases the lease at once rather than letting it expire.
    assert_eq!(coordination.holder().await.unwrap(), None);
}

/// A replica process killed with SIGKILL in the middle of a burst of deliveries (to another
/// replica) comes back on its data directory and holds every acknowledged change.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_killed_during_a_burst_converges_after_restart() {
    let cluster = Cluster::start().await;
    let nats = &cluster.nats;
    let dir_a = tempfile::tempdir().unwrap();
    let a = cluster.replica("a", dir_a.path()).await;
    let dir_b = tempfile::tempdir().unwrap();
    let process_b = ReplicaProcess::new(nats, UNREACHABLE_CLERK, "b", dir_b.path());
    let spawn_b = || process_b.spawn();
    let b_url = process_b.http_url();
    let mut b = spawn_b();
    common::wait_ready(&b_url).await;

    let acknowledged = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let workers: Vec<_> = (0..8)
        .map(|worker| {
            let (http_url, acknowledged) = (a.http_url.clone(), acknowledged.clone());
            tokio::spawn(async move {
                for n in 0..100 {
                    let index = worker * 100 + n;
                    let body = event("user.created", newcomer(index), 1_790_000_000_000);
                    let (status, answer) =
                        common::deliver(&http_url, &format!("msg_burst_{index}"), &body).await;
                    assert_eq!(status, 200, "{answer}");
                    acknowledged.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
            })
        })
        .collect();
    while acknowledged.load(std::sync::atomic::Ordering::Relaxed) < 200 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    b.start_kill().unwrap(); // SIGKILL: no final commit.
    b.wait().await.unwrap();
    let killed_at = acknowledged.load(std::sync::atomic::Ordering::Relaxed);
    for worker in workers {
        worker.await.unwrap();
    }
    assert!(killed_at < 800, "the kill must land during the burst");

    let _b = spawn_b();
    common::wait_ready(&b_url).await;
    let mut client =
        clerk_index::api::proto::user_index_client::UserIndexClient::connect(process_b.grpc_url())
            .await
            .unwrap();
    let count = client
        .count_users(clerk_index::api::proto::CountUsersRequest::default())
        .await
        .unwrap()
        .into_inner()
        .count;
    assert_eq!(
        count, 800,
        "the restarted replica must hold every acknowledged change"
    );
    eventually(&a, "all 800 on the receiving replica", async |s| {
        s.count_matching(None).await.count == 800
    })
    .await;
    a.stop().await;
}

/// `UpdateUserMetadata` on one replica goes through Clerk and the change log: the caller reads
/// its write on that replica as soon as the call returns, and every other replica gets it too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_through_is_readable_at_once_where_it_was_made_and_reaches_every_replica() {
    let nats = NatsServer::start().await;
    let fake = common::RunningFakeClerk::start(clerk_index::clerk::fake::FakeClerkConfig::new(
        Population::new(20),
    ))
    .await;
    let start = async |id: &str, dir: &Path| {
        let mut options = TestOptions::new(&fake.url);
        options.cluster = Some(cluster_config(&nats, id));
        let server = TestServer::start(dir, options).await;
        server.wait_serving().await;
        server
    };
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = start("a", dir_a.path()).await;
    let b = start("b", dir_b.path()).await;
    let id = fake.fake.user_ids()[3].clone();
    let written = a
        .client()
        .await
        .update_user_metadata(clerk_index::api::proto::UpdateUserMetadataRequest {
            user_id: id.clone(),
            public_metadata: Some(r#"{"plan_type": "cluster_plan"}"#.into()),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .freshness
        .unwrap();
    assert!(written.log_sequence > 0, "{written:?}");
    let plan = |json: serde_json::Value| json["public_metadata"]["plan_type"].clone();
    // No waiting on the replica that made the call.
    assert_eq!(plan(a.user_json(&id).await.unwrap()), "cluster_plan");
    // On another replica, the write's log sequence makes the read wait for it.
    let read = |min_log_sequence: u64| clerk_index::api::proto::GetUserRequest {
        user_id: id.clone(),
        min_log_sequence,
        ..Default::default()
    };
    let mut client_b = b.client().await;
    let answer = client_b
        .get_user(read(written.log_sequence))
        .await
        .unwrap()
        .into_inner();
    assert!(answer.freshness.unwrap().log_sequence >= written.log_sequence);
    let user: serde_json::Value = serde_json::from_str(&answer.user.unwrap().json).unwrap();
    assert_eq!(plan(user), "cluster_plan");
    let too_far = client_b
        .get_user(read(written.log_sequence + 1_000))
        .await
        .unwrap_err();
    assert_eq!(too_far.code(), tonic::Code::DeadlineExceeded, "{too_far:?}");
    a.stop().await;
    b.stop().await;
}

/// The lease and the checkpoint are compare-and-set on JetStream KV: one holder at a time, a
/// lease that is not renewed expires, and a replica that lost it cannot renew it or overwrite
/// its successor's checkpoint.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_lease_holder_at_a_time_and_no_stale_checkpoints() {
    let nats = NatsServer::start().await;
    let x = ChangeLog::connect(cluster_config(&nats, "x"))
        .await
        .unwrap();
    let y = ChangeLog::connect(cluster_config(&nats, "y"))
        .await
        .unwrap();
    let (x, y) = (x.coordination(), y.coordination());

    let held_x = x.acquire().await.unwrap().expect("a free lease is taken");
    assert_eq!(y.acquire().await.unwrap(), None, "a held lease is not");
    // x restarted within the TTL takes its own lease back.
    let held_x = x.renew(held_x).await.unwrap().expect("the holder renews");
    assert_eq!(x.acquire().await.unwrap(), Some(held_x));
    let (checkpoint, revision) = x.checkpoint().await.unwrap();
    assert_eq!(checkpoint, None);
    let stale = x
        .store_checkpoint(&serde_json::json!({"step": 1}), revision)
        .await
        .unwrap()
        .expect("stored at the revision read");

    // x stops renewing (a pause, a partition): the lease expires and y takes it.
    tokio::time::sleep(LEASE_TTL + Duration::from_millis(500)).await;
    let held_y = y
        .acquire()
        .await
        .unwrap()
        .expect("an expired lease is free");
    assert_eq!(y.holder().await.unwrap().as_deref(), Some("y"));
    assert_eq!(
        x.renew(held_x).await.unwrap(),
        None,
        "x cannot renew it back"
    );
    let (checkpoint, revision) = y.checkpoint().await.unwrap();
    assert_eq!(checkpoint, Some(serde_json::json!({"step": 1})));
    y.store_checkpoint(&serde_json::json!({"step": 2}), revision)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        x.store_checkpoint(&serde_json::json!({"step": 1.5}), stale)
            .await
            .unwrap(),
        None,
        "x's write from its old term is refused"
    );
    assert_eq!(
        y.checkpoint().await.unwrap().0,
        Some(serde_json::json!({"step": 2}))
    );
    // Releasing hands it over at once; releasing a lease one no longer holds does nothing.
    x.release(held_x).await.unwrap();
    assert_eq!(y.holder().await.unwrap().as_deref(), Some("y"));
    y.release(held_y).await.unwrap();
    assert!(x.acquire().await.unwrap().is_some());
}

/// Saved segments live in the cluster's KV bucket: a segment saved on one replica is evaluated
/// on all, edits are compare-and-set across replicas, and the Entered/Exited events every
/// replica computes reach the events stream once each.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn saved_segments_are_shared_and_their_events_published_once() {
    use clerk_index::api::proto::{self, segments_client::SegmentsClient};
    let cluster = Cluster::start().await;
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = cluster.replica("a", dir_a.path()).await;
    let b = cluster.replica("b", dir_b.path()).await;
    let (mut seg_a, mut seg_b) = (
        SegmentsClient::new(a.channel().await),
        SegmentsClient::new(b.channel().await),
    );
    seg_a
        .create_segment(proto::CreateSegmentRequest {
            name: "pro".into(),
            description: "paying".into(),
            filter: common::expression(r#"public.stage = "pro""#),
        })
        .await
        .unwrap();
    let exists = seg_b
        .create_segment(proto::CreateSegmentRequest {
            name: "pro".into(),
            description: String::new(),
            filter: common::expression("banned = true"),
        })
        .await
        .unwrap_err();
    assert_eq!(exists.code(), tonic::Code::AlreadyExists, "{exists:?}");
    let names = async |client: &mut SegmentsClient<tonic::transport::Channel>| {
        let listed = client
            .list_segments(proto::ListSegmentsRequest {})
            .await
            .unwrap()
            .into_inner();
        listed
            .segments
            .iter()
            .map(|s| (s.name.clone(), s.version))
            .collect::<Vec<_>>()
    };
    for _ in 0..200 {
        if names(&mut seg_b).await == [("pro".to_string(), 1)] {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(names(&mut seg_b).await, [("pro".to_string(), 1)]);

    // A user entering the segment: both replicas see it, one event reaches the stream.
    let mut user = newcomer(5);
    user["public_metadata"] = serde_json::json!({"stage": "pro"});
    let id = user["id"].as_str().unwrap().to_string();
    let (status, _) = a
        .deliver("msg_seg_1", &event("user.created", user, 1_790_000_000_000))
        .await;
    assert_eq!(status, 200);
    for client in [&mut seg_a, &mut seg_b] {
        let mut counted = 0;
        for _ in 0..200 {
            counted = client
                .count_segment(proto::CountSegmentRequest {
                    name: "pro".into(),
                    ..Default::default()
                })
                .await
                .unwrap()
                .into_inner()
                .count;
            if counted == 1 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        assert_eq!(counted, 1);
    }
    let nats = async_nats::connect(&cluster.nats.url).await.unwrap();
    let events = async_nats::jetstream::new(nats)
        .get_stream("clerk-index-segment-events")
        .await
        .unwrap();
    let mut published = 0;
    for _ in 0..200 {
        published = events.clone().info().await.unwrap().state.messages;
        if published >= 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    // Give the second replica's copy time to arrive (and be deduplicated).
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(events.clone().info().await.unwrap().state.messages, 1);
    assert_eq!(published, 1);
    let message = events
        .get_last_raw_message_by_subject("clerk-index.segments.pro.entered")
        .await
        .unwrap();
    let body: serde_json::Value = serde_json::from_slice(&message.payload).unwrap();
    assert_eq!(
        (body["user_id"].as_str(), body["kind"].as_str()),
        (Some(id.as_str()), Some("entered"))
    );

    // Without a sensitive key ring shared by the replicas, a destination's secret could not be
    // sealed for the cluster: creating one is refused, naming the flag.
    let refused = seg_b
        .create_destination(proto::CreateDestinationRequest {
            name: "crm".into(),
            url: "https://crm.example.com/hook".into(),
            segments: vec!["pro".into()],
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(
        refused.code(),
        tonic::Code::FailedPrecondition,
        "{refused:?}"
    );
    assert!(
        refused.message().contains("--sensitive-keys"),
        "{refused:?}"
    );

    // Edits are checked against the shared version, whichever replica takes them.
    let update = |expected_version: u64| proto::UpdateSegmentRequest {
        name: "pro".into(),
        description: Some("paying customers".into()),
        expected_version,
        ..Default::default()
    };
    assert_eq!(
        seg_b
            .update_segment(update(1))
            .await
            .unwrap()
            .into_inner()
            .version,
        2
    );
    let stale = seg_a.update_segment(update(1)).await.unwrap_err();
    assert_eq!(stale.code(), tonic::Code::Aborted, "{stale:?}");
    seg_a
        .delete_segment(proto::DeleteSegmentRequest { name: "pro".into() })
        .await
        .unwrap();
    for _ in 0..200 {
        if names(&mut seg_b).await.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(names(&mut seg_b).await.is_empty());
    a.stop().await;
    b.stop().await;
}

/// Every file under `dir` holding `needle`.
fn files_holding(dir: &Path, needle: &str) -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            found.extend(files_holding(&path, needle));
        } else if let Ok(bytes) = std::fs::read(&path)
            && bytes.windows(needle.len()).any(|w| w == needle.as_bytes())
        {
            found.push(path.display().to_string());
        }
    }
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sensitive_values_are_sealed_before_they_cross_nats_and_open_on_every_replica() {
    use clerk_index::auth::Sensitive;
    use clerk_index::auth::sensitive::{KeyRing, SensitivePaths, generate_key_line};
    const PLANTED: &str = "SSN-PLANTED-4417-9921";
    const CONTROL: &str = "CONTROL-PLAIN-5531-0087";
    let cluster = Cluster::start().await;
    let ring = format!(
        "{}\n{}",
        generate_key_line("blind-index"),
        generate_key_line("k1")
    );
    let sensitive = std::sync::Arc::new(Sensitive::new(
        SensitivePaths::parse("private.ssn").unwrap(),
        KeyRing::parse(&ring).unwrap(),
    ));
    let dirs: Vec<_> = (0..2).map(|_| tempfile::tempdir().unwrap()).collect();
    let mut replicas = Vec::new();
    for (n, dir) in dirs.iter().enumerate() {
        let mut options = TestOptions::new(&cluster.clerk.url);
        options.cluster = Some(cluster_config(&cluster.nats, &format!("s{n}")));
        options.sensitive = Some(sensitive.clone());
        let server = TestServer::start(dir.path(), options).await;
        server.wait_serving().await;
        replicas.push(server);
    }
    let mut user = newcomer(1);
    user["private_metadata"] = serde_json::json!({"ssn": PLANTED, "note": CONTROL});
    let id = user["id"].as_str().unwrap().to_string();
    let (status, answer) = replicas[0]
        .deliver(
            "msg_sealed_1",
            &event("user.created", user, 1_790_000_000_000),
        )
        .await;
    assert_eq!(status, 200, "{answer}");
    // The other replica filters on the sealed value and opens it for a caller who may read it.
    let filter = format!(r#"private.ssn = "{PLANTED}""#);
    eventually(&replicas[1], "the sealed user", async |s| {
        s.count(&filter).await == 1
    })
    .await;
    let shown = replicas[1].user_json(&id).await.unwrap();
    assert_eq!(shown["private_metadata"]["ssn"], PLANTED);
    // NATS holds the user (the control value proves the scan reads its files), never the value.
    let store = cluster.nats.store_dir();
    assert!(
        !files_holding(store, CONTROL).is_empty(),
        "the scan finds the message"
    );
    assert_eq!(files_holding(store, PLANTED), Vec::<String>::new());
    for server in replicas {
        server.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_serve_reads_through_a_nats_restart_and_converge_after() {
    let mut cluster = Cluster::start().await;
    let dirs: Vec<_> = (0..2).map(|_| tempfile::tempdir().unwrap()).collect();
    let mut replicas = Vec::new();
    for (n, dir) in dirs.iter().enumerate() {
        replicas.push(cluster.replica(&format!("n{n}"), dir.path()).await);
    }
    let user = |n: usize| {
        let user = newcomer(100 + n);
        let id = user["id"].as_str().unwrap().to_string();
        (
            event("user.created", user, 1_790_000_000_000 + n as i64),
            id,
        )
    };
    let (first, first_id) = user(0);
    assert_eq!(replicas[0].deliver("msg_restart_0", &first).await.0, 200);
    for server in &replicas {
        eventually(server, "the first user", async |s| {
            s.user_json(&first_id).await.is_ok()
        })
        .await;
    }

    cluster.nats.stop();
    // Reads go on from each replica's own index; a webhook cannot be made durable: 5xx, so
    // Svix retries it.
    for server in &replicas {
        assert_eq!(server.count("id EXISTS").await, 1);
        assert!(server.user_json(&first_id).await.is_ok());
    }
    let (second, second_id) = user(1);
    let (status, answer) = replicas[0].deliver("msg_restart_1", &second).await;
    assert!(status >= 500, "{status} {answer}");

    cluster.nats.restart().await;
    // Svix's retry of the same delivery goes through once the log is back.
    let mut delivered = false;
    for _ in 0..60 {
        let (status, _) = replicas[0].deliver("msg_restart_1", &second).await;
        if status == 200 {
            delivered = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(delivered, "the retried delivery was never accepted");
    let (third, third_id) = user(2);
    let mut delivered = false;
    for _ in 0..60 {
        if replicas[1].deliver("msg_restart_2", &third).await.0 == 200 {
            delivered = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(delivered, "the other replica never published again");
    // Consumers reconnect with a backoff: allow them longer than a plain replication.
    for server in &replicas {
        for _ in 0..100 {
            if server.count("id EXISTS").await == 3 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        assert_eq!(server.count("id EXISTS").await, 3);
        for id in [&first_id, &second_id, &third_id] {
            assert!(server.user_json(id).await.is_ok(), "{id}");
        }
    }
    for server in replicas {
        server.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn organizations_are_backfilled_through_the_log_and_their_changes_reach_every_replica() {
    use clerk_index::clerk::fake::WebhookTarget;
    let nats = NatsServer::start().await;
    let clerk = RunningFakeClerk::start(FakeClerkConfig::new(
        Population::new(300).with_organizations(),
    ))
    .await;
    let dirs: Vec<_> = (0..2).map(|_| tempfile::tempdir().unwrap()).collect();
    let mut replicas = Vec::new();
    for (n, dir) in dirs.iter().enumerate() {
        replicas.push(replica_of(&nats, &clerk.url, &format!("r{n}"), dir.path()).await);
    }
    // The shared backfill went through the log: both hold every organization and membership.
    for server in &replicas {
        common::assert_org_mirror(&clerk, server).await;
    }
    // Clerk announces to one replica only.
    let target = WebhookTarget::new(
        format!("{}/webhooks/clerk", replicas[1].http_url),
        common::WEBHOOK_SECRET,
    );
    clerk.fake.set_webhook_target(target).unwrap();
    let (org_id, member, _) = (clerk.fake.memberships().into_iter())
        .find(|(_, _, admin)| !admin)
        .unwrap();
    let members = (clerk.fake.memberships().iter())
        .filter(|(o, _, _)| *o == org_id)
        .count() as u64;
    common::clerk_api(
        &clerk.url,
        reqwest::Method::PATCH,
        &format!("/v1/organizations/{org_id}/metadata"),
        Some(serde_json::json!({"public_metadata": {"plan": "clustered"}})),
    )
    .await;
    common::clerk_api(
        &clerk.url,
        reqwest::Method::PATCH,
        &format!("/v1/organizations/{org_id}/memberships/{member}"),
        Some(serde_json::json!({"role": "org:admin"})),
    )
    .await;
    let plan = format!(r#"org[id = "{org_id}" AND public.plan = "clustered"]"#);
    let promoted = format!(
        r#"id = "{member}" AND org[id = "{org_id}" AND role = "org:admin" AND public.plan = "clustered"]"#
    );
    for server in &replicas {
        eventually(server, "the organization's new plan", async |s| {
            s.count(&plan).await == members
        })
        .await;
        eventually(server, "the promotion", async |s| {
            s.count(&promoted).await == 1
        })
        .await;
        common::assert_org_mirror(&clerk, server).await;
    }
    for server in replicas {
        server.stop().await;
    }
}

/// Time-driven segments in a cluster: the lease holder's ticks travel through the change log,
/// so every replica records the same crossings, at the same instants, in the same order, and
/// the shared events stream stores each once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn time_driven_segments_tick_through_the_log_and_every_replica_agrees() {
    use clerk_index::api::proto::{self, segments_client::SegmentsClient};
    use tokio_stream::StreamExt;
    const DAY: i64 = 86_400_000;
    const HOUR: i64 = 3_600_000;
    let cluster = Cluster::start().await;
    let start = 1_790_000_000_000 / HOUR * HOUR;
    let clock = clerk_index::clock::Clock::fake(start);
    let replica = async |id: &str, dir: &Path| {
        let mut options = TestOptions::new(&cluster.clerk.url);
        options.cluster = Some(cluster_config(&cluster.nats, id));
        options.clock = clock.clone();
        options.segment_time_resolution_ms = 50;
        let server = TestServer::start(dir, options).await;
        server.wait_serving().await;
        server
    };
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = replica("a", dir_a.path()).await;
    let b = replica("b", dir_b.path()).await;
    let mut seg_a = SegmentsClient::new(a.channel().await);
    seg_a
        .create_segment(proto::CreateSegmentRequest {
            name: "dormant".into(),
            description: String::new(),
            filter: common::expression("last_active_at < now-30d"),
        })
        .await
        .unwrap();
    let mut ids = Vec::new();
    for k in 1..=3 {
        let mut user = newcomer(20 + k);
        user["last_active_at"] = (start - 30 * DAY + k as i64 * HOUR).into();
        ids.push(user["id"].as_str().unwrap().to_string());
        let (status, _) = a
            .deliver(
                &format!("msg_time_{k}"),
                &event("user.created", user, start),
            )
            .await;
        assert_eq!(status, 200);
    }
    let mut watches = Vec::new();
    for server in [&a, &b] {
        eventually(server, "three users and the segment", async |s| {
            let mut users = s.client().await;
            let mut segments = SegmentsClient::new(s.channel().await);
            common::count_with(&mut users, None).await.unwrap() == 3
                && segments
                    .get_segment(proto::GetSegmentRequest {
                        name: "dormant".into(),
                    })
                    .await
                    .is_ok()
        })
        .await;
        let watch = SegmentsClient::new(server.channel().await)
            .watch_segment(proto::WatchSegmentRequest {
                name: "dormant".into(),
                after_sequence: None,
            })
            .await
            .unwrap()
            .into_inner();
        watches.push(watch);
    }
    // Four hours pass: the three users cross, one an hour.
    clock.advance(4 * HOUR);
    let mut seen = Vec::new();
    for watch in &mut watches {
        let mut events = Vec::new();
        while events.len() < 3 {
            let event = tokio::time::timeout(Duration::from_secs(10), watch.next())
                .await
                .expect("a time event within 10 s")
                .unwrap()
                .unwrap();
            events.push((event.user_id, event.kind, event.change_time_ms, event.cause));
        }
        seen.push(events);
    }
    let expected: Vec<_> = (ids.iter().enumerate())
        .map(|(k, id)| {
            let crossing = start + (k as i64 + 1) * HOUR + 1;
            (
                id.clone(),
                proto::segment_event::Kind::Entered as i32,
                crossing,
                "time".to_string(),
            )
        })
        .collect();
    assert_eq!(seen[0], expected);
    assert_eq!(seen[1], expected, "the replicas disagree");
    let nats = async_nats::jetstream::new(async_nats::connect(&cluster.nats.url).await.unwrap());
    let stream = nats.get_stream("clerk-index-segment-events").await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(stream.clone().info().await.unwrap().state.messages, 3);
    // The ticks that moved them are in the change log (the latest one kept).
    let tick = (nats.get_stream("clerk-index-changes").await.unwrap())
        .get_last_raw_message_by_subject("clerk-index.changes.~segment-tick")
        .await
        .unwrap();
    let body: serde_json::Value = serde_json::from_slice(&tick.payload).unwrap();
    assert_eq!(body["at_ms"].as_i64(), Some(start + 4 * HOUR));
    a.stop().await;
    b.stop().await;
}

/// A segment built on another that was edited after it arrives before it in the bucket's
/// watch (latest revision per key): a new replica installs it once what it refers to is there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_segment_built_on_a_later_edited_one_is_installed_on_a_new_replica() {
    use clerk_index::api::proto::{self, segments_client::SegmentsClient};
    let cluster = Cluster::start().await;
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = cluster.replica("a", dir_a.path()).await;
    let mut seg_a = SegmentsClient::new(a.channel().await);
    for (name, text) in [
        ("base", "banned = true"),
        ("built", r#"IN SEGMENT "base" OR locked = true"#),
    ] {
        seg_a
            .create_segment(proto::CreateSegmentRequest {
                name: name.into(),
                description: String::new(),
                filter: common::expression(text),
            })
            .await
            .unwrap();
    }
    seg_a
        .update_segment(proto::UpdateSegmentRequest {
            name: "base".into(),
            description: Some("edited after built".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    let b = cluster.replica("b", dir_b.path()).await;
    eventually(&b, "both segments installed", async |s| {
        let mut segments = SegmentsClient::new(s.channel().await);
        let listed = segments
            .list_segments(proto::ListSegmentsRequest {})
            .await
            .unwrap()
            .into_inner();
        listed.segments.len() == 2
    })
    .await;
    a.stop().await;
    b.stop().await;
}

/// A receiver on loopback keeping every delivery whose signature the current secret verifies.
struct Receiver {
    url: String,
    secret: std::sync::Arc<std::sync::Mutex<String>>,
    bodies: std::sync::Arc<std::sync::Mutex<Vec<serde_json::Value>>>,
}

impl Receiver {
    async fn start() -> Receiver {
        use axum::http::{HeaderMap, StatusCode};
        let secret = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let bodies = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let (kept_secret, kept) = (secret.clone(), bodies.clone());
        let handler = move |headers: HeaderMap, body: axum::body::Bytes| {
            let (secret, kept) = (kept_secret.lock().unwrap().clone(), kept.clone());
            async move {
                let header = |name: &str| {
                    headers
                        .get(name)
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or_default()
                        .to_string()
                };
                let verifier =
                    clerk_index::clerk::webhook::WebhookVerifier::new(&[secret]).unwrap();
                let checked = verifier.verify_signature(
                    &header("webhook-id"),
                    &header("webhook-timestamp"),
                    &body,
                    &header("webhook-signature"),
                );
                if checked.is_err() {
                    return StatusCode::UNAUTHORIZED;
                }
                kept.lock()
                    .unwrap()
                    .push(serde_json::from_slice(&body).unwrap());
                StatusCode::NO_CONTENT
            }
        };
        let app = axum::Router::new().route("/hook", axum::routing::post(handler));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Receiver {
            url,
            secret,
            bodies,
        }
    }

    /// The membership events received, in arrival order (with repeats).
    fn events(&self) -> Vec<serde_json::Value> {
        let bodies = self.bodies.lock().unwrap();
        (bodies.iter())
            .filter(|b| b["type"] == "segment.events")
            .flat_map(|b| b["data"]["events"].as_array().unwrap().clone())
            .collect()
    }

    async fn wait_for(&self, count: usize) -> Vec<serde_json::Value> {
        for _ in 0..400 {
            if self.events().len() >= count {
                break;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        let events = self.events();
        assert_eq!(events.len(), count, "events received: {events:?}");
        events
    }
}

/// Destinations in cluster mode: made on a replica that does not deliver, stored sealed in the
/// cluster, delivered once each by the lease holder from the shared events stream, paused and
/// resumed on either replica, and delivered on by the next holder from the saved position.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn destinations_deliver_from_the_lease_holder_and_move_with_the_lease() {
    use clerk_index::api::proto::{self, DestinationState, segments_client::SegmentsClient};
    use clerk_index::auth::Sensitive;
    use clerk_index::auth::sensitive::{KeyRing, SensitivePaths, generate_key_line};
    let cluster = Cluster::start().await;
    let ring = format!(
        "{}\n{}",
        generate_key_line("blind-index"),
        generate_key_line("k1")
    );
    let sensitive = std::sync::Arc::new(Sensitive::new(
        SensitivePaths::parse("").unwrap(),
        KeyRing::parse(&ring).unwrap(),
    ));
    let dirs: Vec<_> = (0..2).map(|_| tempfile::tempdir().unwrap()).collect();
    let mut replicas = Vec::new();
    for (n, dir) in dirs.iter().enumerate() {
        let mut options = TestOptions::new(&cluster.clerk.url);
        options.cluster = Some(cluster_config(&cluster.nats, &format!("d{n}")));
        options.sensitive = Some(sensitive.clone());
        let server = TestServer::start(dir.path(), options).await;
        server.wait_serving().await;
        replicas.push(server);
    }
    let mut holder_id = String::new();
    for _ in 0..200 {
        holder_id = cluster_status(&replicas[0]).await.sync_lease_holder;
        if !holder_id.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let holder = usize::from(holder_id == "d1");
    let other = 1 - holder;
    let mut clients = Vec::new();
    for replica in &replicas {
        clients.push(SegmentsClient::new(replica.channel().await));
    }
    clients[holder]
        .create_segment(proto::CreateSegmentRequest {
            name: "vip".into(),
            description: String::new(),
            filter: common::expression(r#"public.plan = "vip""#),
        })
        .await
        .unwrap();
    let mut seen = false;
    for _ in 0..200 {
        let listed = clients[other]
            .list_segments(proto::ListSegmentsRequest {})
            .await
            .unwrap()
            .into_inner();
        seen = listed.segments.iter().any(|s| s.name == "vip");
        if seen {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(seen, "the segment reached the other replica");

    // Made where it is not delivered from.
    let receiver = Receiver::start().await;
    let created = clients[other]
        .create_destination(proto::CreateDestinationRequest {
            name: "crm".into(),
            url: receiver.url.clone(),
            segments: vec!["vip".into()],
            batch_size: 5,
            batch_delay_ms: 20,
        })
        .await
        .unwrap()
        .into_inner();
    *receiver.secret.lock().unwrap() = created.signing_secret.clone();
    let nats = async_nats::connect(&cluster.nats.url).await.unwrap();
    let bucket = async_nats::jetstream::new(nats)
        .get_key_value("clerk-index-destinations")
        .await
        .unwrap();
    let stored = bucket
        .get("crm")
        .await
        .unwrap()
        .expect("stored in the cluster");
    let stored = String::from_utf8_lossy(&stored).to_string();
    assert!(stored.contains("\"url\""), "{stored}");
    let secret_body = created.signing_secret.trim_start_matches("whsec_");
    assert!(
        !stored.contains(secret_body),
        "the secret is sealed: {stored}"
    );

    let vips = async |replica: &TestServer, range: std::ops::Range<usize>| {
        for index in range {
            let mut user = newcomer(index);
            user["public_metadata"] = serde_json::json!({"plan": "vip"});
            let body = event("user.created", user, 1_790_000_000_000 + index as i64);
            let (status, _) = replica.deliver(&format!("msg_dvip_{index}"), &body).await;
            assert_eq!(status, 200);
        }
    };
    vips(&replicas[other], 0..10).await;
    let events = receiver.wait_for(10).await;
    let sequences: Vec<u64> = events
        .iter()
        .map(|e| e["sequence"].as_u64().unwrap())
        .collect();
    assert!(sequences.windows(2).all(|w| w[0] < w[1]), "{sequences:?}");
    assert!(events.iter().all(|e| e["type"] == "segment.entered"));
    // Recorded when the stream stored them (now), after the changes' own times (Sept 2026).
    assert!(
        events
            .iter()
            .all(|e| e["recorded_at"].as_str() > e["change_time"].as_str()),
        "{events:?}"
    );

    // Every replica lists the position the holder saved.
    for client in clients.iter_mut() {
        let mut delivered = 0;
        for _ in 0..200 {
            let listed = client
                .list_destinations(proto::ListDestinationsRequest {})
                .await
                .unwrap()
                .into_inner()
                .destinations;
            delivered = listed[0].delivered_events;
            if delivered == 10 {
                assert_eq!(
                    listed[0].delivered_through_sequence,
                    *sequences.last().unwrap()
                );
                break;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        assert_eq!(delivered, 10);
    }

    // Paused on the replica that does not deliver: the holder stops; resumed there, it goes on.
    let paused = clients[other]
        .pause_destination(proto::PauseDestinationRequest { name: "crm".into() })
        .await
        .unwrap()
        .into_inner()
        .destination
        .unwrap();
    assert_eq!(paused.state, DestinationState::Paused as i32);
    tokio::time::sleep(Duration::from_millis(200)).await;
    vips(&replicas[holder], 10..13).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(receiver.events().len(), 10, "nothing while paused");
    clients[holder]
        .resume_destination(proto::ResumeDestinationRequest { name: "crm".into() })
        .await
        .unwrap();
    receiver.wait_for(13).await;

    // The holder stops: the other replica takes the lease and delivers from the saved position.
    let mut replicas = replicas.into_iter();
    let (first, second) = (replicas.next().unwrap(), replicas.next().unwrap());
    let (stopped, survivor) = if holder == 0 {
        (first, second)
    } else {
        (second, first)
    };
    stopped.stop().await;
    vips(&survivor, 13..18).await;
    let events = receiver.wait_for(18).await;
    let users: std::collections::BTreeSet<&str> = events
        .iter()
        .map(|e| e["user_id"].as_str().unwrap())
        .collect();
    assert_eq!(users.len(), 18, "each event once");
    assert_eq!(
        cluster_status(&survivor).await.sync_lease_holder,
        format!("d{other}")
    );

    // Events gone from the stream before they were delivered (its retention; here a purge):
    // the destination has a gap, and a resync sends the segment's members, then goes on.
    let mut client = SegmentsClient::new(survivor.channel().await);
    client
        .pause_destination(proto::PauseDestinationRequest { name: "crm".into() })
        .await
        .unwrap();
    let nats = async_nats::connect(&cluster.nats.url).await.unwrap();
    let mut stream = async_nats::jetstream::new(nats)
        .get_stream("clerk-index-segment-events")
        .await
        .unwrap();
    let before = stream.info().await.unwrap().state.last_sequence;
    vips(&survivor, 18..20).await;
    for _ in 0..200 {
        if stream.info().await.unwrap().state.last_sequence >= before + 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    stream.purge().await.unwrap();
    client
        .resume_destination(proto::ResumeDestinationRequest { name: "crm".into() })
        .await
        .unwrap();
    let state = async |client: &mut SegmentsClient<tonic::transport::Channel>| {
        let listed = client
            .list_destinations(proto::ListDestinationsRequest {})
            .await
            .unwrap()
            .into_inner();
        listed.destinations[0].state
    };
    for _ in 0..200 {
        if state(&mut client).await == DestinationState::Gap as i32 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(state(&mut client).await, DestinationState::Gap as i32);
    client
        .resync_destination(proto::ResyncDestinationRequest { name: "crm".into() })
        .await
        .unwrap();
    let snapshot = || {
        let bodies = receiver.bodies.lock().unwrap();
        (bodies.iter())
            .filter(|b| b["type"] == "segment.snapshot")
            .flat_map(|b| b["data"]["user_ids"].as_array().unwrap().clone())
            .map(|id| id.as_str().unwrap().to_string())
            .collect::<std::collections::BTreeSet<String>>()
    };
    for _ in 0..200 {
        if snapshot().len() >= 20 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let expected: std::collections::BTreeSet<String> = (0..20)
        .map(|i| newcomer(i)["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        snapshot(),
        expected,
        "the snapshot holds the segment's members"
    );
    assert_eq!(state(&mut client).await, DestinationState::Active as i32);
    survivor.stop().await;
}

/// Two replicas' stores writing the same destination at once over the real bucket: every write
/// is a compare-and-set re-applied to the newest value after a lost race, so none is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_destination_writes_from_two_replicas_lose_nothing() {
    use clerk_index::destinations::{Destination, Store};
    use std::collections::BTreeMap;
    use std::sync::Mutex;
    let nats = NatsServer::start().await;
    let mut stores = Vec::new();
    for id in ["p", "q"] {
        let log = ChangeLog::connect(cluster_config(&nats, id)).await.unwrap();
        stores.push(std::sync::Arc::new(Store::shared(
            log.destinations().clone(),
            None,
        )));
    }
    let destination: Destination = serde_json::from_value(serde_json::json!({
        "name": "crm", "url": "https://crm.example.com/hook", "segments": ["vip"],
        "batch_size": 100, "batch_delay_ms": 200, "created_ms": 1, "updated_ms": 1,
        "state": "active", "delivered_through": 0, "delivered_events": 0, "secrets": [],
    }))
    .unwrap();
    let states: Vec<_> = (0..2)
        .map(|_| std::sync::Arc::new(Mutex::new(BTreeMap::<String, Destination>::new())))
        .collect();
    stores[0]
        .insert(&states[0], &destination, 10)
        .await
        .unwrap();
    let taken = stores[1].insert(&states[1], &destination, 10).await;
    assert!(
        matches!(
            taken,
            Err(clerk_index::destinations::DestinationError::AlreadyExists(
                _
            ))
        ),
        "{taken:?}"
    );
    let mut writers = Vec::new();
    for (store, state) in stores.iter().zip(&states) {
        let (store, state) = (store.clone(), state.clone());
        writers.push(tokio::spawn(async move {
            for _ in 0..25 {
                let bump = |d: &mut Destination| {
                    d.delivered_events += 1;
                    Ok(())
                };
                store.persist(&state, "crm", bump).await.unwrap();
            }
        }));
    }
    for writer in writers {
        writer.await.unwrap();
    }
    let read = stores[0]
        .persist(&states[0], "crm", |_| Ok(()))
        .await
        .unwrap();
    assert_eq!(read.delivered_events, 50, "every increment kept");
    stores[1].remove(&states[1], "crm").await.unwrap();
    let gone = stores[0].persist(&states[0], "crm", |_| Ok(())).await;
    assert!(
        matches!(
            gone,
            Err(clerk_index::destinations::DestinationError::NotFound(_))
        ),
        "{gone:?}"
    );
}
