//! Queries over real gRPC against a backfilled server: every operator, sorting and paging,
//! errors, projections, structured filters, reflection and the CLI.

mod common;

use std::collections::HashSet;
use std::sync::Arc;

use clerk_index::api::proto::{
    self, CountUsersRequest, FilterSpec, GetUserRequest, SearchUsersRequest, SortSpec, filter_spec,
};
use clerk_index::query::sort::{hit_cmp, sort_value};
use clerk_index::query::{FilterLimits, eval, parse_filter, parse_path};
use clerk_index::user::User;
use common::{RunningFakeClerk, TestServer};
use tonic::Code;

const USERS: usize = 5_000;

struct Setup {
    _dir: tempfile::TempDir,
    _fake: RunningFakeClerk,
    server: TestServer,
    users: Vec<Arc<User>>,
}

async fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let (fake, server) = TestServer::with_population(dir.path(), USERS).await;
    let users = fake.users();
    Setup {
        _dir: dir,
        _fake: fake,
        server,
        users,
    }
}

fn expression(text: &str) -> Option<FilterSpec> {
    common::expression(text)
}

/// The reference answer from the in-memory matcher.
fn expected(users: &[Arc<User>], text: &str) -> HashSet<String> {
    let filter = parse_filter(text, &FilterLimits::default()).unwrap();
    let now = clerk_index::clock::now_ms();
    users
        .iter()
        .filter(|u| eval::matches(&filter, u, now))
        .map(|u| u.id.clone())
        .collect()
}

async fn search_all(
    server: &TestServer,
    filter: &str,
    sort: Option<SortSpec>,
    page_size: u32,
) -> Vec<String> {
    let mut client = server.client().await;
    let mut ids = Vec::new();
    let mut page_token = String::new();
    loop {
        let page = client
            .search_users(SearchUsersRequest {
                filter: expression(filter),
                sort: sort.clone(),
                page_size,
                page_token,
                fields: vec!["id".into()],
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert!(page.users.len() <= page_size as usize);
        ids.extend(page.users.into_iter().map(|u| u.id));
        if page.next_page_token.is_empty() {
            return ids;
        }
        page_token = page.next_page_token;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_operator_counts_exactly_what_the_reference_matcher_says() {
    let s = setup().await;
    let mut client = s.server.client().await;
    let filters = [
        r#"public.membership_tier = "gold""#,
        r#"public.membership_tier != "bronze""#,
        r#"public.points < 100"#,
        r#"public.points <= 100"#,
        r#"public.score > 50"#,
        r#"public.score >= 50.0"#,
        r#"public.plan_type IN ["pro", "team", "enterprise"]"#,
        r#"public.beta_cohort EXISTS"#,
        r#"NOT public.favorite_genre EXISTS"#,
        r#"public.referrer = null"#,
        r#"email STARTS WITH "ben.""#,
        r#"public.country STARTS WITH "D""#,
        r#"name MATCHES "ben rossi""#,
        r#"private.ltv BETWEEN 100 AND 500.5"#,
        r#"created_at > now-365d"#,
        r#"last_sign_in_at BETWEEN 2025-01-01 AND 2026-01-01T00:00:00Z"#,
        r#"last_sign_in_at = null"#,
        r#"public.favorite_genre = "sci-fi" AND public.favorite_genre = "poetry""#,
        r#"public.user_preferences.notifications.sms = true OR public.user_preferences.theme = "system""#,
        r#"private.crm.segment = "ent" AND NOT (banned = true OR locked = true)"#,
        r#"public.`utm-campaign` = "spring_sale""#,
        r#"public.membership_tier > 2"#,
        r#"email_domain = "GMAIL.com" AND two_factor_enabled = true"#,
        r#"unsafe.onboarding_step >= 3 AND unsafe.onboarding_complete = false"#,
        r#"(public.plan_type = "free" OR public.plan_type = "pro") AND public.points > 1000 AND NOT public.tags = "vip""#,
        r#"primary_email_verified = false"#,
        r#"email_verified = true AND NOT primary_email_verified = true"#,
        r#"oauth_providers = "OAUTH_GOOGLE" AND oauth_providers != "oauth_github""#,
        r#"oauth_providers IN ["oauth_apple", "oauth_microsoft"]"#,
        r#"enterprise_connection EXISTS"#,
        r#"locale IN ["de-de", "FR-FR"]"#,
        r#"locale = null"#,
        r#"legal_accepted_at > 2020-01-01"#,
        r#"mfa_enabled = true AND backup_code_enabled = false"#,
        r#"totp_enabled = true"#,
        r#"passkey_count > 0"#,
        r#"passkey_count = 2 OR passkey_count IN [1.5, 0]"#,
        r#"passkey_count BETWEEN 0.5 AND 1 AND NOT passkey_count != 1"#,
        r#"passkey_count = null"#,
    ];
    for text in filters {
        let want = expected(&s.users, text);
        let got = client
            .count_users(CountUsersRequest {
                filter: expression(text),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(got.count as usize, want.len(), "{text}");
        assert_eq!(got.freshness.unwrap().user_count as usize, USERS);
    }
    // Enough of them must actually select something for the comparison to mean anything.
    let selective = filters
        .iter()
        .filter(|f| (1..USERS).contains(&expected(&s.users, f).len()))
        .count();
    assert!(
        selective >= filters.len() - 2,
        "only {selective} filters select a proper subset"
    );
    s.server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sorted_cursor_pages_visit_every_match_exactly_once_in_order() {
    let s = setup().await;
    let filter = r#"public.plan_type IN ["pro", "team"] OR public.membership_tier = "gold""#;
    for (path, descending) in [
        ("public.points", true),
        ("public.score", false),
        ("created_at", true),
        ("username", false),
        ("public.membership_tier", false),
        ("passkey_count", true),
    ] {
        let ids = search_all(
            &s.server,
            filter,
            Some(SortSpec {
                path: path.into(),
                descending,
            }),
            97,
        )
        .await;
        let want = expected(&s.users, filter);
        assert_eq!(ids.len(), want.len(), "sorting by {path}");
        assert_eq!(
            ids.iter().cloned().collect::<HashSet<_>>(),
            want,
            "sorting by {path}"
        );
        let field = parse_path(path).unwrap();
        let key = |id: &String| {
            let user = s.users.iter().find(|u| &u.id == id).unwrap();
            (sort_value(user, &field, descending), id.clone())
        };
        for pair in ids.windows(2) {
            let (a, b) = (key(&pair[0]), key(&pair[1]));
            assert_eq!(
                hit_cmp((&a.0, &a.1), (&b.0, &b.1), descending),
                std::cmp::Ordering::Less,
                "{path}: {a:?} then {b:?}"
            );
        }
    }
    s.server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_filters_are_invalid_argument_with_a_position() {
    let s = setup().await;
    let mut client = s.server.client().await;
    for (text, position, words) in [
        ("public.membership_tier = ", 25, "expected a value"),
        ("public.plan_type IN [\"pro\"", 26, "expected ',' or ']'"),
        ("plan = \"pro\"", 0, "unknown field 'plan'"),
        ("public.points > 5 AND (banned = 1)", 23, "true or false"),
        ("public.points >> 5", 15, "expected a value"),
    ] {
        let status = client
            .count_users(CountUsersRequest {
                filter: expression(text),
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{text}");
        assert!(
            status
                .message()
                .contains(&format!("at position {position}")),
            "{text}: {}",
            status.message()
        );
        assert!(
            status.message().contains(words),
            "{text}: {}",
            status.message()
        );
        let header = status
            .metadata()
            .get("x-filter-error-position")
            .unwrap()
            .to_str()
            .unwrap();
        assert_eq!(header, position.to_string());
    }
    let bad_token = client
        .search_users(SearchUsersRequest {
            page_token: "not-a-token".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(bad_token.code(), Code::InvalidArgument);
    s.server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_token_only_continues_its_own_query() {
    let s = setup().await;
    let mut client = s.server.client().await;
    let first = client
        .search_users(SearchUsersRequest {
            filter: expression("public.points > 10"),
            page_size: 5,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(first.users.len(), 5);
    let misuse = client
        .search_users(SearchUsersRequest {
            filter: expression("public.points > 11"),
            page_size: 5,
            page_token: first.next_page_token,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(misuse.code(), Code::InvalidArgument);
    assert!(misuse.message().contains("different filter or sort"));
    s.server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_user_returns_clerk_json_projected_by_the_field_mask() {
    let s = setup().await;
    let mut client = s.server.client().await;
    let user = &s.users[42];
    let full = client
        .get_user(GetUserRequest {
            user_id: user.id.clone(),
            fields: vec![],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let json: serde_json::Value = serde_json::from_str(&full.user.unwrap().json).unwrap();
    let raw: serde_json::Value = serde_json::from_str(&user.raw_json).unwrap();
    assert_eq!(json, raw);
    let masked = client
        .get_user(GetUserRequest {
            user_id: user.id.clone(),
            fields: vec!["first_name".into(), "public.plan_type".into()],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let json: serde_json::Value = serde_json::from_str(&masked.user.unwrap().json).unwrap();
    let keys: Vec<&String> = json.as_object().unwrap().keys().collect();
    assert!(
        keys.iter()
            .all(|k| ["id", "first_name", "public_metadata"].contains(&k.as_str())),
        "{keys:?}"
    );
    assert_eq!(
        json["public_metadata"].as_object().unwrap().len(),
        usize::from(raw["public_metadata"]["plan_type"].is_string())
    );
    let missing = client
        .get_user(GetUserRequest {
            user_id: "user_missing".into(),
            fields: vec![],
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(missing.code(), Code::NotFound);
    s.server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn structured_filters_answer_like_their_text_form() {
    use proto::filter::Node;
    use proto::value::Kind;
    let s = setup().await;
    let mut client = s.server.client().await;
    let predicate = |path: &str, op: proto::Operator, values: Vec<Kind>| proto::Filter {
        node: Some(Node::Predicate(proto::Predicate {
            path: path.into(),
            op: op as i32,
            values: values
                .into_iter()
                .map(|k| proto::Value { kind: Some(k) })
                .collect(),
        })),
    };
    let tree = proto::Filter {
        node: Some(Node::All(proto::FilterList {
            filters: vec![
                predicate(
                    "public.membership_tier",
                    proto::Operator::In,
                    vec![Kind::String("gold".into()), Kind::String("platinum".into())],
                ),
                predicate(
                    "public.points",
                    proto::Operator::Gte,
                    vec![Kind::Integer(500)],
                ),
                proto::Filter {
                    node: Some(Node::Negate(Box::new(predicate(
                        "public.user_preferences.theme",
                        proto::Operator::Eq,
                        vec![Kind::String("dark".into())],
                    )))),
                },
            ],
        })),
    };
    let text = r#"public.membership_tier IN ["gold", "platinum"] AND public.points >= 500 AND NOT public.user_preferences.theme = "dark""#;
    let structured = client
        .count_users(CountUsersRequest {
            filter: Some(FilterSpec {
                spec: Some(filter_spec::Spec::Tree(tree)),
            }),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(structured.count as usize, expected(&s.users, text).len());
    assert!(structured.count > 0);
    s.server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reflection_lists_the_services_for_grpcurl() {
    use tokio_stream::StreamExt;
    use tonic_reflection::pb::v1::ServerReflectionRequest;
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
    let s = setup().await;
    let mut client = ServerReflectionClient::new(s.server.channel().await);
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut responses = client
        .server_reflection_info(tokio_stream::iter([request]))
        .await
        .unwrap()
        .into_inner();
    let Some(MessageResponse::ListServicesResponse(list)) =
        responses.next().await.unwrap().unwrap().message_response
    else {
        panic!("expected a service list");
    };
    let names: std::collections::BTreeSet<String> =
        list.service.into_iter().map(|s| s.name).collect();
    let every_service = [
        "clerkindex.v1.UserIndex",
        "clerkindex.v1.Segments",
        "clerkindex.v1.Sync",
        "grpc.health.v1.Health",
    ];
    let missing: Vec<&str> = every_service
        .into_iter()
        .filter(|name| !names.contains(*name))
        .collect();
    assert!(missing.is_empty(), "missing {missing:?} from {names:?}");
    s.server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_counts_and_searches_a_running_server() {
    let s = setup().await;
    let binary = env!("CARGO_BIN_EXE_clerk-index");
    let filter = r#"public.membership_tier = "gold" AND public.plan_type IN ["pro", "team"]"#;
    let output = tokio::process::Command::new(binary)
        .args(["count", "--server", &s.server.grpc_url, "--filter", filter])
        .output()
        .await
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(
        String::from_utf8(output.stdout).unwrap().trim(),
        expected(&s.users, filter).len().to_string()
    );

    let output = tokio::process::Command::new(binary)
        .args([
            "search",
            "--server",
            &s.server.grpc_url,
            "--filter",
            "public.points > 3000",
            "--sort",
            "-public.points",
            "--limit",
            "3",
            "-o",
            "jsonl",
            "--fields",
            "public.points",
        ])
        .output()
        .await
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let lines: Vec<serde_json::Value> = String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 3);
    let points: Vec<i64> = lines
        .iter()
        .map(|l| l["public_metadata"]["points"].as_i64().unwrap())
        .collect();
    assert!(
        points.windows(2).all(|w| w[0] >= w[1]) && points[0] > 3000,
        "{points:?}"
    );

    let output = tokio::process::Command::new(binary)
        .args([
            "count",
            "--server",
            &s.server.grpc_url,
            "--filter",
            "public.points >",
        ])
        .output()
        .await
        .unwrap();
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("at position 15"), "{stderr}");
    // The filter again, with a caret under position 15.
    assert!(stderr.contains("INVALID_FILTER"), "{stderr}");
    assert!(
        stderr.contains(&format!("\n  public.points >\n  {}^", " ".repeat(15))),
        "{stderr}"
    );
    s.server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exports_are_gzip_compressed_for_a_client_that_accepts_it_and_read_the_same() {
    use clerk_index::api::proto::ExportUsersRequest;
    use clerk_index::api::proto::user_index_client::UserIndexClient;
    use tonic::codec::CompressionEncoding::Gzip;

    let s = setup().await;
    async fn export(
        mut client: UserIndexClient<tonic::transport::Channel>,
    ) -> (Option<String>, Vec<String>) {
        let response = client
            .export_users(ExportUsersRequest {
                filter: expression("banned = false"),
                fields: vec!["id".into(), "first_name".into(), "public.plan_type".into()],
                chunk_size: 500,
                ..Default::default()
            })
            .await
            .unwrap();
        let encoding = response
            .metadata()
            .get("grpc-encoding")
            .map(|v| v.to_str().unwrap().to_string());
        let mut stream = response.into_inner();
        let mut users = Vec::new();
        while let Some(chunk) = stream.message().await.unwrap() {
            users.extend(chunk.users.into_iter().map(|u| u.json));
        }
        (encoding, users)
    }
    let channel = s.server.channel().await;
    let (plain_encoding, plain) = export(UserIndexClient::new(channel.clone())).await;
    // The client also compresses its request: the server accepts gzip both ways.
    let gzip_client = UserIndexClient::new(channel)
        .accept_compressed(Gzip)
        .send_compressed(Gzip);
    let (gzip_encoding, gzipped) = export(gzip_client).await;
    assert_eq!(
        plain_encoding, None,
        "a client that did not ask gets identity"
    );
    assert_eq!(gzip_encoding.as_deref(), Some("gzip"));
    assert!(plain.len() > 1_000, "{}", plain.len());
    assert_eq!(plain, gzipped);
    s.server.stop().await;
}
