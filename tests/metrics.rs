//! `GET /metrics` after some traffic: every series the operations guide lists is there, with
//! the numbers the traffic implies.

mod common;

use clerk_index::api::proto::sync_client::SyncClient;
use clerk_index::api::proto::{
    CountUsersRequest, ExportUsersRequest, ReconcileKind, SearchUsersRequest,
    TriggerReconcileRequest,
};
use clerk_index::clerk::fake::{FaultInjection, Population};
use common::{TestServer, event, expression};

/// The value of the sample `name{labels...}` (the labels given must all be present).
fn sample(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .find_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let (series_name, series_labels) = match series.split_once('{') {
                Some((name, rest)) => (name, rest.trim_end_matches('}')),
                None => (series, ""),
            };
            let matches = series_name == name
                && labels.iter().all(|(key, value)| {
                    series_labels
                        .split(',')
                        .any(|pair| pair == format!("{key}=\"{value}\""))
                });
            matches.then(|| value.parse().unwrap())
        })
}

async fn scrape(server: &TestServer) -> String {
    let response = reqwest::get(format!("{}/metrics", server.http_url))
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let content_type = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        content_type.starts_with("application/openmetrics-text"),
        "{content_type}"
    );
    let text = response.text().await.unwrap();
    assert!(text.ends_with("# EOF\n"), "not OpenMetrics text:\n{text}");
    text
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_expose_the_listed_series_after_some_traffic() {
    let dir = tempfile::tempdir().unwrap();
    // Every 4th Clerk request is throttled: the 429s must show up by status.
    let faults = FaultInjection {
        throttle_every: Some(4),
        server_error_every: None,
        retry_after_secs: 0,
        ..FaultInjection::default()
    };
    let (fake, server) = TestServer::with_faulty_clerk(dir.path(), 1_000, faults).await;

    let mut client = server.client().await;
    for _ in 0..3 {
        client
            .count_users(CountUsersRequest {
                filter: expression("public_metadata.plan_type = \"pro\""),
                ..Default::default()
            })
            .await
            .unwrap();
    }
    let refused = client
        .search_users(SearchUsersRequest {
            filter: expression("public_metadata.plan_type = "),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::InvalidArgument);
    let mut export = client
        .export_users(ExportUsersRequest {
            chunk_size: 100,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    while export.message().await.unwrap().is_some() {}
    let newcomer = Population {
        seed: 77,
        ..Population::new(1)
    }
    .user(0);
    let created = event("user.created", newcomer, 1_790_000_000_000);
    assert_eq!(server.deliver("msg_metrics_1", &created).await.0, 200);
    assert_eq!(server.deliver("msg_metrics_1", &created).await.0, 200);
    let forged = reqwest::Client::new()
        .post(format!("{}/webhooks/clerk", server.http_url))
        .header("svix-id", "msg_forged")
        .header("svix-timestamp", clerk_index::clock::now_ms() / 1000)
        .header("svix-signature", "v1,AAAA")
        .body(serde_json::to_vec(&created).unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 401);
    SyncClient::new(server.channel().await)
        .trigger_reconcile(TriggerReconcileRequest {
            kind: ReconcileKind::CatchUp as i32,
        })
        .await
        .unwrap();

    let text = scrape(&server).await;
    let rpc = |method: &str, code: &str| {
        sample(
            &text,
            "clerk_index_grpc_requests_total",
            &[
                ("service", "clerkindex.v1.UserIndex"),
                ("method", method),
                ("code", code),
            ],
        )
    };
    assert_eq!(rpc("CountUsers", "OK"), Some(3.0), "{text}");
    assert_eq!(rpc("SearchUsers", "INVALID_ARGUMENT"), Some(1.0), "{text}");
    // A stream is recorded when its last message is sent.
    assert_eq!(rpc("ExportUsers", "OK"), Some(1.0), "{text}");
    assert_eq!(rpc("SearchUsers", "OK"), None, "{text}");
    assert_eq!(
        sample(
            &text,
            "clerk_index_grpc_request_duration_seconds_count",
            &[("method", "CountUsers"), ("code", "OK")]
        ),
        Some(3.0)
    );
    assert_eq!(
        sample(
            &text,
            "clerk_index_grpc_request_duration_seconds_bucket",
            &[("method", "CountUsers"), ("code", "OK"), ("le", "+Inf")]
        ),
        Some(3.0)
    );
    assert_eq!(
        sample(
            &text,
            "clerk_index_grpc_requests_total",
            &[
                ("service", "clerkindex.v1.Sync"),
                ("method", "TriggerReconcile")
            ]
        ),
        Some(1.0)
    );

    assert_eq!(sample(&text, "clerk_index_users", &[]), Some(1_001.0));
    assert!(sample(&text, "clerk_index_index_size_bytes", &[]).unwrap() > 100_000.0);
    // The backfill ends merged into its serving layout: at most seven segments, whatever came
    // before (commits of webhooks since then add small ones, merged by the default policy).
    let segments = sample(&text, "clerk_index_index_segments", &[]).unwrap();
    assert!((1.0..=8.0).contains(&segments), "{segments} segments");
    assert!(sample(&text, "clerk_index_commits_total", &[]).unwrap() >= 2.0);
    assert!(sample(&text, "clerk_index_commit_duration_seconds_count", &[]).unwrap() >= 2.0);
    assert!(sample(&text, "clerk_index_freshness_lag_seconds", &[]).is_some());
    let webhooks = |outcome: &str| {
        sample(
            &text,
            "clerk_index_webhook_deliveries_total",
            &[("outcome", outcome)],
        )
    };
    assert_eq!(webhooks("applied"), Some(1.0));
    assert_eq!(webhooks("duplicate"), Some(1.0));
    assert_eq!(webhooks("bad_signature"), Some(1.0));
    assert_eq!(webhooks("malformed"), Some(0.0));

    assert_eq!(
        sample(&text, "clerk_index_backfill_complete", &[]),
        Some(1.0)
    );
    assert_eq!(
        sample(&text, "clerk_index_backfill_users_seen", &[]),
        Some(1_000.0)
    );
    assert_eq!(
        sample(&text, "clerk_index_backfill_users_expected", &[]),
        Some(1_000.0)
    );
    // At least ten pages of 100 (parallel walks end with a short page each).
    let pages = sample(&text, "clerk_index_backfill_pages_total", &[]).unwrap();
    assert!(pages >= 10.0, "{pages}");
    assert_eq!(
        sample(
            &text,
            "clerk_index_reconcile_runs_total",
            &[("kind", "catch_up")]
        ),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &text,
            "clerk_index_reconcile_failures_total",
            &[("kind", "catch_up")]
        ),
        Some(0.0)
    );
    let finished = sample(
        &text,
        "clerk_index_reconcile_last_finished_timestamp_seconds",
        &[("kind", "catch_up")],
    )
    .unwrap();
    let scraped = sample(&text, "clerk_index_scrape_timestamp_seconds", &[]).unwrap();
    assert!(
        finished <= scraped && scraped - finished < 60.0,
        "{finished} {scraped}"
    );
    // The process (here the test's own, which serves): it has used CPU and holds memory.
    let cpu = sample(&text, "clerk_index_process_cpu_seconds_total", &[]).unwrap();
    let rss = sample(&text, "clerk_index_process_resident_memory_bytes", &[]).unwrap();
    assert!(cpu > 0.0 && rss > 1e6, "cpu {cpu} s, rss {rss} B");

    let clerk = |endpoint: &str, status: &str| {
        sample(
            &text,
            "clerk_index_clerk_api_requests_total",
            &[("endpoint", endpoint), ("status", status)],
        )
        .unwrap_or(0.0)
    };
    // The backfill's pages, its two probes of the oldest and newest user, and 3 catch-up pages
    // (updated, signed in, active) succeeded; the fake throttled every 4th request.
    assert_eq!(clerk("GET /v1/users", "200"), pages + 2.0 + 3.0, "{text}");
    // The organizations' listings (empty here) are throttled alike.
    let throttled = clerk("GET /v1/users", "429")
        + clerk("GET /v1/users/count", "429")
        + clerk("GET /v1/organizations", "429")
        + clerk("GET /v1/organization_memberships", "429");
    assert!(throttled >= 3.0, "{text}");
    assert_eq!(throttled, fake.fake.throttled_count() as f64, "{text}");
    assert!(
        sample(
            &text,
            "clerk_index_clerk_api_request_duration_seconds_count",
            &[("endpoint", "GET /v1/users")]
        )
        .unwrap()
            >= 12.0
    );
    // The Helm chart's alerts and dashboard query series this server serves (the cluster-mode
    // ones are checked by tests/cluster.rs).
    let chart = common::chart_metric_names();
    common::assert_series_served(
        &text,
        chart
            .iter()
            .filter(|n| !n.starts_with("clerk_index_cluster_")),
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn made_up_grpc_paths_do_not_grow_the_metric_labels() {
    let (_fake, server) =
        TestServer::with_population(tempfile::tempdir().unwrap().path(), 10).await;
    let client = reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .unwrap();
    for n in 0..3 {
        let response = client
            .post(format!("{}/made.up.Service{n}/Method", server.grpc_url))
            .header("content-type", "application/grpc")
            .header("te", "trailers")
            .body(vec![0u8, 0, 0, 0, 0])
            .send()
            .await
            .unwrap();
        assert_eq!(response.headers()["grpc-status"], "12");
    }
    let text = scrape(&server).await;
    assert!(!text.contains("made.up"), "{text}");
    assert_eq!(
        sample(
            &text,
            "clerk_index_grpc_requests_total",
            &[
                ("service", "unknown"),
                ("method", "unknown"),
                ("code", "UNIMPLEMENTED")
            ]
        ),
        Some(3.0)
    );
}
