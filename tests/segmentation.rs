//! Segmentation over real gRPC: facets against a brute-force count of the fake Clerk's users,
//! the field catalog, large exports with a resume, saved segments, WatchSegment events caused by
//! metadata updates through the fake Clerk, and segments surviving a restart.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use clerk_index::api::proto::segments_client::SegmentsClient;
use clerk_index::api::proto::{
    self, CalendarInterval, FacetRequest, FacetUsersRequest, facet_request, facet_result,
    segment_event,
};
use clerk_index::clerk::fake::{FakeClerkConfig, Population, WebhookTarget};
use common::{RunningFakeClerk, TestOptions, TestServer, WEBHOOK_SECRET, clerk_api, expression};
use serde_json::{Value, json};
use tonic::transport::Channel;

async fn segments(server: &TestServer) -> SegmentsClient<Channel> {
    SegmentsClient::new(server.channel().await)
}

fn facet(name: &str, path: &str, kind: facet_request::Kind) -> FacetRequest {
    FacetRequest {
        name: name.into(),
        path: path.into(),
        kind: Some(kind),
    }
}

/// A server over 2,000 generated users, and their Clerk JSON.
async fn population(dir: &std::path::Path) -> (RunningFakeClerk, TestServer, Vec<Value>) {
    let (fake, server) = TestServer::with_population(dir, 2_000).await;
    let users: Vec<Value> = fake
        .fake
        .user_ids()
        .iter()
        .map(|id| fake.fake.user_json(id).unwrap())
        .collect();
    (fake, server, users)
}

/// Plan types by count (most first, ties by name) among unbanned users, and how many have none.
fn ranked_plans(users: &[Value]) -> (Vec<(String, u64)>, u64) {
    let mut plans: BTreeMap<String, u64> = BTreeMap::new();
    let mut without_plan = 0;
    for user in users.iter().filter(|u| u["banned"] == false) {
        match user["public_metadata"]["plan_type"].as_str() {
            Some(plan) => *plans.entry(plan.to_string()).or_default() += 1,
            None => without_plan += 1,
        }
    }
    let mut ranked: Vec<(String, u64)> = plans.into_iter().collect();
    ranked.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    (ranked, without_plan)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn facets_over_grpc_equal_a_brute_force_count_of_clerks_users() {
    let dir = tempfile::tempdir().unwrap();
    let (_fake, server, users) = population(dir.path()).await;
    let pro_or_free = |u: &&Value| u["banned"] == false;
    let matching: Vec<&Value> = users.iter().filter(pro_or_free).collect();
    let response = server
        .client()
        .await
        .facet_users(FacetUsersRequest {
            filter: expression("banned = false"),
            facets: vec![
                facet(
                    "plans",
                    "public.plan_type",
                    facet_request::Kind::Terms(proto::TermsFacet {
                        size: 2,
                        include_missing: true,
                    }),
                ),
                facet(
                    "points",
                    "public.points",
                    facet_request::Kind::Stats(proto::NumericStatsFacet {
                        percentiles: vec![50.0],
                    }),
                ),
                facet(
                    "signups",
                    "created_at",
                    facet_request::Kind::DateHistogram(proto::DateHistogramFacet {
                        interval: CalendarInterval::Month as i32,
                    }),
                ),
            ],
            min_generation: 0,
            min_log_sequence: 0,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(response.matched, matching.len() as u64);

    let (ranked, without_plan) = ranked_plans(&users);
    let Some(facet_result::Result::Terms(terms)) = &response.facets[0].result else {
        panic!("terms expected: {:?}", response.facets[0]);
    };
    let got: Vec<(String, u64)> = terms
        .buckets
        .iter()
        .map(|b| match &b.value.as_ref().unwrap().kind {
            Some(proto::value::Kind::String(s)) => (s.clone(), b.count),
            other => panic!("string bucket expected, got {other:?}"),
        })
        .collect();
    assert_eq!(got, ranked[..2].to_vec());
    assert_eq!(
        terms.other_count,
        ranked[2..].iter().map(|(_, c)| c).sum::<u64>()
    );
    assert_eq!(terms.distinct_values, ranked.len() as u64);
    assert_eq!(terms.missing, without_plan);

    let points: Vec<f64> = matching
        .iter()
        .filter_map(|u| u["public_metadata"]["points"].as_f64())
        .collect();
    let Some(facet_result::Result::Stats(stats)) = &response.facets[1].result else {
        panic!("stats expected");
    };
    assert_eq!(stats.count, points.len() as u64);
    assert_eq!(stats.sum, points.iter().sum::<f64>());
    assert_eq!(stats.max, points.iter().cloned().fold(f64::MIN, f64::max));

    let Some(facet_result::Result::DateHistogram(months)) = &response.facets[2].result else {
        panic!("date histogram expected");
    };
    let mut expected: BTreeMap<String, u64> = BTreeMap::new();
    for user in &matching {
        let at = time::OffsetDateTime::from_unix_timestamp_nanos(
            i128::from(user["created_at"].as_i64().unwrap()) * 1_000_000,
        )
        .unwrap();
        *expected
            .entry(format!("{}-{:02}", at.year(), at.month() as u8))
            .or_default() += 1;
    }
    let got: BTreeMap<String, u64> = months
        .buckets
        .iter()
        .filter(|b| b.count > 0)
        .map(|b| (b.key_as_string[..7].to_string(), b.count))
        .collect();
    assert_eq!(got, expected);

    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_facet_command_prints_the_same_buckets() {
    let dir = tempfile::tempdir().unwrap();
    let (_fake, server, users) = population(dir.path()).await;
    let (ranked, _) = ranked_plans(&users);
    let matching = users.iter().filter(|u| u["banned"] == false).count();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_clerk-index"))
        .args([
            "facet",
            "--server",
            &server.grpc_url,
            "--filter",
            "banned = false",
        ])
        .args([
            "--terms",
            "public.plan_type:2",
            "--date-histogram",
            "created_at:month",
        ])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    // A table: one row per bucket, `facet key count value`.
    let printed = String::from_utf8(output.stdout).unwrap();
    let top = &ranked[0].0;
    let line = printed
        .lines()
        .find(|l| l.starts_with("public.plan_type") && l.split_whitespace().nth(1) == Some(top))
        .unwrap_or_else(|| panic!("{printed}"));
    assert_eq!(
        line.split_whitespace().nth(2),
        Some(ranked[0].1.to_string().as_str())
    );
    // JSON: the proto3 JSON form of the answer.
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_clerk-index"))
        .args([
            "facet",
            "--server",
            &server.grpc_url,
            "--filter",
            "banned = false",
        ])
        .args(["--terms", "public.plan_type:2", "-o", "json"])
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(json["matched"], matching.to_string());
    let bucket = &json["facets"][0]["terms"]["buckets"][0];
    assert_eq!(bucket["value"]["string"], *top);
    assert_eq!(bucket["count"], ranked[0].1.to_string());

    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_facet_that_cannot_work_is_refused_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let (_fake, server) = TestServer::with_population(dir.path(), 50).await;
    let error = server
        .client()
        .await
        .facet_users(FacetUsersRequest {
            filter: None,
            facets: vec![facet(
                "e",
                "email",
                facet_request::Kind::Terms(proto::TermsFacet::default()),
            )],
            min_generation: 0,
            min_log_sequence: 0,
        })
        .await
        .unwrap_err();
    assert_eq!(error.code(), tonic::Code::InvalidArgument);
    assert!(
        error.message().contains("email_domain"),
        "{}",
        error.message()
    );

    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_field_catalog_shows_type_conflicts_with_exact_counts() {
    let dir = tempfile::tempdir().unwrap();
    let (_fake, server, users) = population(dir.path()).await;
    let catalog = server
        .client()
        .await
        .describe_fields(proto::DescribeFieldsRequest {
            path_prefix: "public.".into(),
            min_generation: 0,
            min_log_sequence: 0,
        })
        .await
        .unwrap()
        .into_inner();
    let tier = catalog
        .fields
        .iter()
        .find(|f| f.path == "public.membership_tier")
        .unwrap();
    assert!(tier.type_conflict);
    let numeric_tiers = users
        .iter()
        .filter(|u| u["public_metadata"]["membership_tier"].is_i64())
        .count() as u64;
    let integer = tier.types.iter().find(|t| t.r#type == "integer").unwrap();
    assert_eq!(integer.users, numeric_tiers);
    assert!(catalog.fields.iter().all(|f| f.path.starts_with("public.")));
    assert!(catalog.core_fields.is_empty());
    let everything = server
        .client()
        .await
        .describe_fields(proto::DescribeFieldsRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert!(
        everything
            .fields
            .iter()
            .any(|f| f.path.starts_with("private."))
    );
    let email = everything
        .core_fields
        .iter()
        .find(|f| f.path == "primary_email")
        .unwrap();
    assert!(email.sortable && email.facetable);
    server.stop().await;
}

/// Reads an export stream to the end (or `stop_after` chunks); returns ids, last cursor, total.
async fn read_export(
    mut stream: tonic::Streaming<proto::ExportUsersResponse>,
    stop_after: Option<usize>,
) -> (Vec<String>, String, u64, u64) {
    let (mut ids, mut cursor, mut total, mut sequence) = (Vec::new(), String::new(), 0, 0);
    let mut chunks = 0;
    while let Some(chunk) = stream.message().await.unwrap() {
        if chunks == 0 {
            total = chunk.total;
            sequence = chunk.event_sequence;
            assert!(chunk.freshness.is_some());
        }
        ids.extend(chunk.users.into_iter().map(|u| u.id));
        ids.extend(chunk.ids);
        cursor = chunk.cursor;
        chunks += 1;
        if stop_after == Some(chunks) {
            break;
        }
    }
    (ids, cursor, total, sequence)
}

/// 100,000 members, exported twice: once straight, once broken off halfway and resumed after
/// two members beyond the cursor left the segment. Then the same through the CLI.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_segment_exports_every_member_exactly_once_across_a_resume() {
    const USERS: usize = 104_000;
    let dir = tempfile::tempdir().unwrap();
    let fake = RunningFakeClerk::start(FakeClerkConfig::new(Population::new(USERS))).await;
    let mut options = TestOptions::new(&fake.url);
    options.rate_limit = "100000/1s".into();
    let server = TestServer::start(dir.path(), options).await;
    server.wait_serving().await;
    let mut segments_client = segments(&server).await;
    segments_client
        .create_segment(proto::CreateSegmentRequest {
            name: "not-banned".into(),
            description: "everyone who may sign in".into(),
            filter: expression("banned = false"),
        })
        .await
        .unwrap();
    let expected: Vec<String> = {
        let mut ids: Vec<String> = fake
            .fake
            .user_ids()
            .into_iter()
            .filter(|id| fake.fake.user_json(id).unwrap()["banned"] == false)
            .collect();
        ids.sort();
        ids
    };
    assert!(expected.len() >= 100_000, "{} members", expected.len());
    let members = |cursor: String| proto::ListSegmentMembersRequest {
        name: "not-banned".into(),
        fields: vec!["id".into()],
        chunk_size: 5_000,
        resume_cursor: cursor,
        min_generation: 0,
        min_log_sequence: 0,
    };

    let stream = segments_client
        .list_segment_members(members(String::new()))
        .await
        .unwrap()
        .into_inner();
    let (all, _, total, _) = read_export(stream, None).await;
    assert_eq!(total, expected.len() as u64);
    assert_eq!(all, expected);

    // The same members as a bare id list: `ids` instead of `users`, same order, same total.
    let ids_only = |fields: Vec<String>| proto::ExportUsersRequest {
        filter: expression("banned = false"),
        fields,
        chunk_size: 5_000,
        ids_only: true,
        ..Default::default()
    };
    let mut stream = server
        .client()
        .await
        .export_users(ids_only(vec![]))
        .await
        .unwrap()
        .into_inner();
    let first = stream.message().await.unwrap().unwrap();
    assert!(first.users.is_empty() && first.ids.len() == 5_000);
    assert_eq!(first.total, expected.len() as u64);
    let mut listed = first.ids;
    while let Some(chunk) = stream.message().await.unwrap() {
        assert!(chunk.users.is_empty());
        listed.extend(chunk.ids);
    }
    assert_eq!(listed, expected);
    let refused = server
        .client()
        .await
        .export_users(ids_only(vec!["email".into()]))
        .await;
    let refused = match refused {
        Err(status) => status,
        Ok(response) => response.into_inner().message().await.unwrap_err(),
    };
    assert_eq!(refused.code(), tonic::Code::InvalidArgument);

    // Broken off after 10 chunks...
    let stream = segments_client
        .list_segment_members(members(String::new()))
        .await
        .unwrap()
        .into_inner();
    let (first, cursor, _, _) = read_export(stream, Some(10)).await;
    assert_eq!(first.len(), 50_000);
    // ...while two members after the cursor leave (one banned, one deleted)...
    let (banned, deleted) = (expected[60_000].clone(), expected[70_000].clone());
    let mut user = fake.fake.user_json(&banned).unwrap();
    user["banned"] = json!(true);
    user["updated_at"] = json!(user["updated_at"].as_i64().unwrap() + 1);
    let now = clerk_index::clock::now_ms();
    assert_eq!(
        server
            .deliver("msg_ban", &common::event("user.updated", user, now))
            .await
            .0,
        200
    );
    let gone = json!({"id": deleted, "object": "user", "deleted": true});
    assert_eq!(
        server
            .deliver("msg_del", &common::event("user.deleted", gone, now))
            .await
            .0,
        200
    );
    // ...and the resumed export sends the rest as the index is now, each once.
    let stream = segments_client
        .list_segment_members(members(cursor))
        .await
        .unwrap()
        .into_inner();
    let (rest, _, remaining, _) = read_export(stream, None).await;
    assert_eq!(remaining, (expected.len() - 50_000 - 2) as u64);
    let mut resumed = first;
    resumed.extend(rest);
    let want: Vec<String> = expected
        .iter()
        .filter(|id| **id != banned && **id != deleted)
        .cloned()
        .collect();
    assert_eq!(resumed, want);
    let unique: BTreeSet<&String> = resumed.iter().collect();
    assert_eq!(unique.len(), resumed.len());

    // The CLI writes the same members to CSV.
    let output = dir.path().join("members.csv");
    let status = std::process::Command::new(env!("CARGO_BIN_EXE_clerk-index"))
        .args([
            "export",
            "--server",
            &server.grpc_url,
            "--segment",
            "not-banned",
        ])
        .args([
            "-o",
            "csv",
            "--fields",
            "id,email,public.plan_type",
            "--no-progress",
        ])
        .arg("--file")
        .arg(&output)
        .status()
        .unwrap();
    assert!(status.success());
    let mut reader = csv::Reader::from_path(&output).unwrap();
    assert_eq!(
        reader.headers().unwrap().iter().collect::<Vec<_>>(),
        vec!["id", "email", "public.plan_type"]
    );
    let rows: Vec<csv::StringRecord> = reader.records().map(|r| r.unwrap()).collect();
    assert_eq!(rows.len(), want.len());
    let first_user = fake.fake.user_json(&rows[0][0]).unwrap();
    assert_eq!(&rows[0][0], want[0].as_str());
    assert!(rows[0][1].contains('@'), "{:?}", &rows[0]);
    assert_eq!(
        &rows[0][2],
        first_user["public_metadata"]["plan_type"]
            .as_str()
            .unwrap_or("")
    );
    server.stop().await;
}

async fn patch_plan(fake: &RunningFakeClerk, id: &str, plan: &str) {
    clerk_api(
        &fake.url,
        reqwest::Method::PATCH,
        &format!("/v1/users/{id}/metadata"),
        Some(json!({"public_metadata": {"plan_type": plan}})),
    )
    .await;
}

async fn next_event(
    stream: &mut tonic::Streaming<proto::SegmentEvent>,
) -> Option<proto::SegmentEvent> {
    match tokio::time::timeout(Duration::from_secs(10), stream.message()).await {
        Ok(message) => message.unwrap(),
        Err(_) => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metadata_updates_through_clerk_produce_entered_and_exited_events_that_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let (fake, server) = TestServer::with_population(dir.path(), 300).await;
    let mut target = WebhookTarget::new(
        format!("{}/webhooks/clerk", server.http_url),
        WEBHOOK_SECRET,
    );
    target.retry_scale = 0.001;
    fake.fake.set_webhook_target(target).unwrap();
    let mut client = segments(&server).await;
    let created = client
        .create_segment(proto::CreateSegmentRequest {
            name: "enterprise".into(),
            description: String::new(),
            filter: expression("public.plan_type = 'enterprise'"),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(created.version, 1);
    let outsider = fake
        .fake
        .user_ids()
        .into_iter()
        .find(|id| fake.fake.user_json(id).unwrap()["public_metadata"]["plan_type"] != "enterprise")
        .unwrap();
    let mut watch = client
        .watch_segment(proto::WatchSegmentRequest {
            name: "enterprise".into(),
            after_sequence: None,
        })
        .await
        .unwrap()
        .into_inner();
    patch_plan(&fake, &outsider, "enterprise").await;
    let entered = next_event(&mut watch).await.expect("an Entered event");
    assert_eq!(entered.kind, segment_event::Kind::Entered as i32);
    assert_eq!(
        (entered.user_id.as_str(), entered.cause.as_str()),
        (outsider.as_str(), "webhook")
    );
    // A change that keeps the user in the segment produces nothing; leaving produces Exited.
    clerk_api(
        &fake.url,
        reqwest::Method::PATCH,
        &format!("/v1/users/{outsider}/metadata"),
        Some(json!({"private_metadata": {"note": "vip"}})),
    )
    .await;
    patch_plan(&fake, &outsider, "free").await;
    let exited = next_event(&mut watch).await.expect("an Exited event");
    assert_eq!(exited.kind, segment_event::Kind::Exited as i32);
    assert_eq!(exited.user_id, outsider);
    assert!(exited.sequence > entered.sequence);
    assert!(
        tokio::time::timeout(Duration::from_millis(300), watch.message())
            .await
            .is_err(),
        "no other events"
    );
    let count = client
        .count_segment(proto::CountSegmentRequest {
            name: "enterprise".into(),
            min_generation: 0,
            min_log_sequence: 0,
        })
        .await
        .unwrap()
        .into_inner()
        .count;
    assert_eq!(count, server.count("public.plan_type = 'enterprise'").await);
    // Stopping the server ends open watches (with UNAVAILABLE: watch again from the last sequence).
    tokio::time::timeout(Duration::from_secs(20), server.stop())
        .await
        .expect("an open watch must not hold up shutdown");
    let ended = watch.message().await;
    assert!(
        matches!(&ended, Err(status) if status.code() == tonic::Code::Unavailable),
        "{ended:?}"
    );
    drop(client);

    // After a restart the segment and its events are still there.
    let server = TestServer::start(dir.path(), TestOptions::new(&fake.url)).await;
    server.wait_serving().await;
    let mut client = segments(&server).await;
    let segment = client
        .get_segment(proto::GetSegmentRequest {
            name: "enterprise".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        segment.filter,
        expression("public.plan_type = \"enterprise\"")
    );
    let mut replay = client
        .watch_segment(proto::WatchSegmentRequest {
            name: "enterprise".into(),
            after_sequence: Some(0),
        })
        .await
        .unwrap()
        .into_inner();
    let mut kinds = Vec::new();
    while let Ok(Some(event)) = tokio::time::timeout(Duration::from_millis(300), replay.message())
        .await
        .map(|m| m.unwrap())
    {
        kinds.push((event.kind, event.user_id, event.sequence));
    }
    let sequences: Vec<u64> = kinds.iter().map(|k| k.2).collect();
    assert_eq!(
        kinds
            .into_iter()
            .map(|(kind, user, _)| (kind, user))
            .collect::<Vec<_>>(),
        vec![
            (segment_event::Kind::SegmentUpdated as i32, String::new()),
            (segment_event::Kind::Entered as i32, outsider.clone()),
            (segment_event::Kind::Exited as i32, outsider.clone()),
        ]
    );
    // The replayed events are the ones seen live, with the same sequence numbers.
    assert!(sequences[0] < entered.sequence);
    assert_eq!(sequences[1..], [entered.sequence, exited.sequence]);
    drop(replay);
    drop(client);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_segment_requests_get_the_right_codes() {
    let dir = tempfile::tempdir().unwrap();
    let (_fake, server) = TestServer::with_population(dir.path(), 50).await;
    let mut client = segments(&server).await;
    let create = |name: &str, filter: &str| proto::CreateSegmentRequest {
        name: name.into(),
        description: String::new(),
        filter: expression(filter),
    };
    let error = client
        .create_segment(create("ok", "public.plan = "))
        .await
        .unwrap_err();
    assert_eq!(error.code(), tonic::Code::InvalidArgument);
    assert!(error.metadata().get("x-filter-error-position").is_some());
    let error = client
        .create_segment(create("Bad Name", "banned = true"))
        .await
        .unwrap_err();
    assert_eq!(error.code(), tonic::Code::InvalidArgument);
    client
        .create_segment(create("ok", "banned = true"))
        .await
        .unwrap();
    let error = client
        .create_segment(create("ok", "banned = true"))
        .await
        .unwrap_err();
    assert_eq!(error.code(), tonic::Code::AlreadyExists);
    let error = client
        .update_segment(proto::UpdateSegmentRequest {
            name: "ok".into(),
            description: Some("x".into()),
            filter: None,
            expected_version: 7,
        })
        .await
        .unwrap_err();
    assert_eq!(error.code(), tonic::Code::Aborted);
    let error = client
        .watch_segment(proto::WatchSegmentRequest {
            name: "missing".into(),
            after_sequence: None,
        })
        .await
        .unwrap_err();
    assert_eq!(error.code(), tonic::Code::NotFound);
    let error = client
        .watch_segment(proto::WatchSegmentRequest {
            name: "ok".into(),
            after_sequence: Some(1_000_000),
        })
        .await
        .unwrap_err();
    assert_eq!(error.code(), tonic::Code::OutOfRange);
    let listed = client
        .list_segments(proto::ListSegmentsRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.segments.len(), 1);
    client
        .delete_segment(proto::DeleteSegmentRequest { name: "ok".into() })
        .await
        .unwrap();
    let error = client
        .get_segment(proto::GetSegmentRequest { name: "ok".into() })
        .await
        .unwrap_err();
    assert_eq!(error.code(), tonic::Code::NotFound);
    drop(client);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn how_users_sign_in_facets_like_a_brute_force_count_and_is_described() {
    let dir = tempfile::tempdir().unwrap();
    let (_fake, server, users) = population(dir.path()).await;
    let mut providers: BTreeMap<String, u64> = BTreeMap::new();
    let mut locales: BTreeMap<String, u64> = BTreeMap::new();
    let mut passkeys: BTreeMap<i64, u64> = BTreeMap::new();
    for user in &users {
        let mut seen = std::collections::BTreeSet::new();
        for account in user["external_accounts"].as_array().unwrap() {
            seen.insert(account["provider"].as_str().unwrap().to_string());
        }
        for provider in seen {
            *providers.entry(provider).or_default() += 1;
        }
        if let Some(locale) = user["locale"].as_str() {
            *locales.entry(locale.to_lowercase()).or_default() += 1;
        }
        *passkeys
            .entry(user["passkeys"].as_array().unwrap().len() as i64)
            .or_default() += 1;
    }
    assert!(
        providers.len() >= 3 && locales.len() >= 5 && passkeys.len() >= 2,
        "the fake varies"
    );
    let terms = |name: &str| {
        facet(
            name,
            name,
            facet_request::Kind::Terms(proto::TermsFacet {
                size: 100,
                include_missing: false,
            }),
        )
    };
    let response = server
        .client()
        .await
        .facet_users(FacetUsersRequest {
            filter: None,
            facets: vec![
                terms("oauth_providers"),
                terms("locale"),
                terms("passkey_count"),
                facet(
                    "passkey_stats",
                    "passkey_count",
                    facet_request::Kind::Stats(proto::NumericStatsFacet {
                        percentiles: vec![],
                    }),
                ),
            ],
            min_generation: 0,
            min_log_sequence: 0,
        })
        .await
        .unwrap()
        .into_inner();
    let buckets = |n: usize| -> BTreeMap<String, u64> {
        let Some(facet_result::Result::Terms(terms)) = &response.facets[n].result else {
            panic!("terms expected: {:?}", response.facets[n]);
        };
        terms
            .buckets
            .iter()
            .map(|b| match &b.value.as_ref().unwrap().kind {
                Some(proto::value::Kind::String(s)) => (s.clone(), b.count),
                other => panic!("string bucket expected, got {other:?}"),
            })
            .collect()
    };
    assert_eq!(buckets(0), providers);
    assert_eq!(buckets(1), locales);
    let Some(facet_result::Result::Terms(counts)) = &response.facets[2].result else {
        panic!("terms expected: {:?}", response.facets[2]);
    };
    let counts: BTreeMap<i64, u64> = counts
        .buckets
        .iter()
        .map(|b| match &b.value.as_ref().unwrap().kind {
            Some(proto::value::Kind::Integer(n)) => (*n, b.count),
            other => panic!("integer bucket expected, got {other:?}"),
        })
        .collect();
    assert_eq!(counts, passkeys);
    let Some(facet_result::Result::Stats(stats)) = &response.facets[3].result else {
        panic!("stats expected: {:?}", response.facets[3]);
    };
    let total: i64 = passkeys.iter().map(|(n, users)| n * *users as i64).sum();
    assert_eq!((stats.count, stats.sum), (users.len() as u64, total as f64));

    let fields = server
        .client()
        .await
        .describe_fields(proto::DescribeFieldsRequest::default())
        .await
        .unwrap()
        .into_inner();
    let described = |name: &str| {
        fields
            .core_fields
            .iter()
            .find(|f| f.path == name)
            .unwrap_or_else(|| panic!("{name} not described"))
            .clone()
    };
    for (name, kind, sortable) in [
        ("primary_email_verified", "boolean", true),
        ("email_verified", "boolean", true),
        ("oauth_providers", "keyword", false),
        ("enterprise_connection", "keyword", false),
        ("locale", "keyword", true),
        ("legal_accepted_at", "date", true),
        ("mfa_enabled", "boolean", true),
        ("totp_enabled", "boolean", true),
        ("backup_code_enabled", "boolean", true),
        ("passkey_count", "integer", true),
    ] {
        let field = described(name);
        assert_eq!(
            (field.kind.as_str(), field.sortable, field.facetable),
            (kind, sortable, true),
            "{name}"
        );
    }
    let holders = |has: &dyn Fn(&Value) -> bool| users.iter().filter(|u| has(u)).count() as u64;
    assert_eq!(
        described("oauth_providers").users,
        holders(&|u| !u["external_accounts"].as_array().unwrap().is_empty())
    );
    assert_eq!(
        described("locale").users,
        holders(&|u| u["locale"].is_string())
    );
    assert_eq!(described("passkey_count").users, users.len() as u64);
    assert_eq!(
        described("legal_accepted_at").users,
        holders(&|u| u["legal_accepted_at"].is_i64())
    );
    server.stop().await;
}
