//! Access control over real gRPC: API keys resolve to scopes, and every call either answers with
//! only what the caller's scopes may read or is refused before it touches the index.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use clerk_index::api::proto::segments_client::SegmentsClient;
use clerk_index::api::proto::sync_client::SyncClient;
use clerk_index::api::proto::user_index_client::UserIndexClient;
use clerk_index::api::proto::{
    self, CountSegmentRequest, CountUsersRequest, CreateSegmentRequest, DescribeFieldsRequest,
    ExportUsersRequest, FacetRequest, FacetUsersRequest, GetSegmentRequest, GetSyncStatusRequest,
    GetUserRequest, ListSegmentsRequest, SearchUsersRequest, SortSpec, TermsFacet,
    UpdateUserMetadataRequest, WatchSegmentRequest,
};
use clerk_index::auth::{ApiKeys, AuthConfig, generate_key};
use clerk_index::clerk::fake::{FakeClerkConfig, Population};
use common::{Authed, Checks, RunningFakeClerk, TestOptions, TestServer, expression, with_header};
use serde_json::Value;
use tonic::Code;
use tonic::transport::Channel;

/// The keys of the matrix: name and scopes.
const KEYS: [(&str, &str); 7] = [
    ("frontend", "public"),
    ("support", "public,private"),
    ("everything", "public,private,unsafe,write,segments"),
    ("onboarding", "unsafe"),
    ("writer", "public,write"),
    ("marketing", "public,segments"),
    ("ops", "admin"),
];

struct Keys {
    /// name -> key
    keys: Vec<(&'static str, String)>,
}

impl Keys {
    fn new() -> (Keys, AuthConfig) {
        let mut lines = String::new();
        let mut keys = Vec::new();
        for (name, scopes) in KEYS {
            let (key, hash) = generate_key();
            lines.push_str(&format!("{name} {scopes} {hash}\n"));
            keys.push((name, key));
        }
        let config = AuthConfig {
            keys: ApiKeys::parse(&lines).unwrap(),
            allow_unauthenticated: false,
            sensitive: None,
        };
        (Keys { keys }, config)
    }

    fn key(&self, name: &str) -> &str {
        &self.keys.iter().find(|(n, _)| *n == name).unwrap().1
    }
}

fn scopes_of(name: &str) -> BTreeSet<&'static str> {
    KEYS.iter()
        .find(|(n, _)| *n == name)
        .unwrap()
        .1
        .split(',')
        .collect()
}

fn namespaces(json: &Value) -> BTreeSet<&'static str> {
    ["public_metadata", "private_metadata", "unsafe_metadata"]
        .into_iter()
        .filter(|ns| json.get(*ns).is_some())
        .collect()
}

/// The namespaces a caller with `scopes` sees.
fn readable(scopes: &BTreeSet<&str>) -> BTreeSet<&'static str> {
    [
        ("public", "public_metadata"),
        ("private", "private_metadata"),
        ("unsafe", "unsafe_metadata"),
    ]
    .into_iter()
    .filter(|(scope, _)| scopes.contains(scope))
    .map(|(_, ns)| ns)
    .collect()
}

fn reads(scopes: &BTreeSet<&str>) -> bool {
    ["public", "private", "unsafe", "sensitive"]
        .iter()
        .any(|s| scopes.contains(s))
}

/// A server with one key per row of [`KEYS`], and a user with all three metadata namespaces.
struct Matrix {
    _dir: tempfile::TempDir,
    _fake: RunningFakeClerk,
    server: TestServer,
    channel: Channel,
    keys: Keys,
    user_id: String,
}

impl Matrix {
    async fn start() -> Matrix {
        let dir = tempfile::tempdir().unwrap();
        let fake = RunningFakeClerk::start(FakeClerkConfig::new(Population::new(300))).await;
        let (keys, auth) = Keys::new();
        let mut options = TestOptions::new(&fake.url);
        options.auth = auth;
        let server = TestServer::start(dir.path(), options).await;
        server.wait_serving().await; // health needs no key
        let channel = server.channel().await;
        let user_id = fake
            .users()
            .iter()
            .find(|u| {
                let json: Value = serde_json::from_str(&u.raw_json).unwrap();
                ["public_metadata", "private_metadata", "unsafe_metadata"]
                    .iter()
                    .all(|ns| json[*ns].as_object().is_some_and(|m| !m.is_empty()))
            })
            .expect("a user with all three namespaces")
            .id
            .clone();
        Matrix {
            _dir: dir,
            _fake: fake,
            server,
            channel,
            keys,
            user_id,
        }
    }

    /// A channel presenting the key called `name`.
    fn authed(&self, name: &str) -> Authed {
        with_header(
            self.channel.clone(),
            Some(format!("Bearer {}", self.keys.key(name))),
        )
    }

    /// Saves `name` with `filter` with the key that may do anything.
    async fn save_segment(&self, name: &str, filter: &str) -> proto::Segment {
        SegmentsClient::new(self.authed("everything"))
            .create_segment(CreateSegmentRequest {
                name: name.into(),
                description: String::new(),
                filter: expression(filter),
            })
            .await
            .unwrap()
            .into_inner()
    }
}

/// The case name of `what` done with the key `name`.
fn case(name: &str, what: impl std::fmt::Display) -> String {
    format!(
        "key {name} ({}): {what}",
        KEYS.iter().find(|(n, _)| *n == name).unwrap().1
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_without_a_valid_key_are_unauthenticated_on_every_service() {
    let m = Matrix::start().await;
    let mut checks = Checks::default();
    for header in [
        None,
        Some("Basic abc".to_string()),
        Some(format!("Bearer {}x", m.keys.key("everything"))),
    ] {
        let channel = with_header(m.channel.clone(), header.clone());
        let answers = [
            UserIndexClient::new(channel.clone())
                .count_users(CountUsersRequest::default())
                .await
                .map(drop),
            SegmentsClient::new(channel.clone())
                .list_segments(ListSegmentsRequest {})
                .await
                .map(drop),
            SyncClient::new(channel)
                .get_sync_status(GetSyncStatusRequest {})
                .await
                .map(drop),
        ];
        for (service, answer) in ["UserIndex", "Segments", "Sync"].iter().zip(answers) {
            let code = answer.err().map(|status| status.code());
            checks.check(
                format!("{service} with {header:?}"),
                code == Some(Code::Unauthenticated),
                format!("answered {code:?}"),
            );
        }
    }
    checks.finish();
    m.server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn responses_hold_exactly_the_namespaces_each_key_may_read() {
    let m = Matrix::start().await;
    let mut checks = Checks::default();
    for (name, _) in KEYS {
        let scopes = scopes_of(name);
        let mut index = UserIndexClient::new(m.authed(name));
        let got = index
            .get_user(GetUserRequest {
                user_id: m.user_id.clone(),
                ..Default::default()
            })
            .await;
        // Reads need a read scope at all.
        if !reads(&scopes) {
            checks.denied(case(name, "GetUser"), got, "public");
            let counted = index.count_users(CountUsersRequest::default()).await;
            checks.denied(case(name, "CountUsers"), counted, "public");
            continue;
        }
        if let Some(got) = checks.ok(case(name, "GetUser"), got) {
            let json: Value = serde_json::from_str(&got.into_inner().user.unwrap().json).unwrap();
            let seen = namespaces(&json);
            checks.check(
                case(name, "GetUser"),
                seen == readable(&scopes),
                format!("{seen:?}"),
            );
        }
        let request = SearchUsersRequest {
            page_size: 50,
            ..Default::default()
        };
        if let Some(page) = checks.ok(case(name, "SearchUsers"), index.search_users(request).await)
        {
            let seen: BTreeSet<_> = page
                .into_inner()
                .users
                .iter()
                .flat_map(|u| namespaces(&serde_json::from_str(&u.json).unwrap()))
                .collect();
            let ok = seen.is_subset(&readable(&scopes));
            checks.check(case(name, "SearchUsers"), ok, format!("{seen:?}"));
        }
        let export = index.export_users(ExportUsersRequest::default()).await;
        if let Some(export) = checks.ok(case(name, "ExportUsers"), export) {
            let mut export = export.into_inner();
            let mut seen = BTreeSet::new();
            while let Some(chunk) = export.message().await.unwrap() {
                for exported in chunk.users {
                    seen.extend(namespaces(&serde_json::from_str(&exported.json).unwrap()));
                }
            }
            checks.check(
                case(name, "ExportUsers"),
                seen == readable(&scopes),
                format!("{seen:?}"),
            );
        }
        let described = index
            .describe_fields(DescribeFieldsRequest::default())
            .await;
        if let Some(described) = checks.ok(case(name, "DescribeFields"), described) {
            let described: BTreeSet<String> = described
                .into_inner()
                .fields
                .iter()
                .map(|f| f.path.split('.').next().unwrap().to_string())
                .collect();
            let expected: BTreeSet<String> = ["public", "private", "unsafe"]
                .into_iter()
                .filter(|s| scopes.contains(s))
                .map(String::from)
                .collect();
            checks.check(
                case(name, "DescribeFields"),
                described == expected,
                format!("{described:?}"),
            );
        }
    }
    checks.finish();
    m.server.stop().await;
}

/// `(filter, a path to sort, facet and mask on, the scope they need)`
const GUARDED: [(&str, &str, &str); 4] = [
    (
        r#"public.membership_tier = "gold""#,
        "public.points",
        "public",
    ),
    ("private.ltv > 100", "private.ltv", "private"),
    (
        "unsafe.onboarding_step >= 3",
        "unsafe.onboarding_step",
        "unsafe",
    ),
    ("banned = false", "banned", ""),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hidden_namespaces_cannot_be_filtered_sorted_faceted_or_masked() {
    let m = Matrix::start().await;
    let mut checks = Checks::default();
    for (name, _) in KEYS.into_iter().filter(|(name, _)| reads(&scopes_of(name))) {
        let scopes = scopes_of(name);
        let mut index = UserIndexClient::new(m.authed(name));
        for (filter, path, scope) in GUARDED {
            let count = |filter: String| CountUsersRequest {
                filter: expression(&filter),
                ..Default::default()
            };
            let sort = SearchUsersRequest {
                sort: Some(SortSpec {
                    path: path.into(),
                    descending: true,
                }),
                page_size: 5,
                ..Default::default()
            };
            let facet = FacetUsersRequest {
                facets: vec![FacetRequest {
                    path: path.into(),
                    kind: Some(proto::facet_request::Kind::Terms(TermsFacet {
                        size: 5,
                        ..Default::default()
                    })),
                    ..Default::default()
                }],
                ..Default::default()
            };
            let mask = GetUserRequest {
                user_id: m.user_id.clone(),
                fields: vec![path.into()],
                ..Default::default()
            };
            // Also inside a larger filter: no way around it through OR or NOT.
            let nested = count(format!("banned = true OR NOT ({filter})"));
            let answers = [
                (
                    format!("count {filter}"),
                    index.count_users(count(filter.into())).await.map(drop),
                ),
                (
                    format!("sort by {path}"),
                    index.search_users(sort).await.map(drop),
                ),
                (
                    format!("facet on {path}"),
                    index.facet_users(facet).await.map(drop),
                ),
                (format!("mask {path}"), index.get_user(mask).await.map(drop)),
                (
                    format!("nested {filter}"),
                    index.count_users(nested).await.map(drop),
                ),
            ];
            for (what, answer) in answers {
                if scope.is_empty() || scopes.contains(scope) {
                    checks.ok(case(name, what), answer);
                } else {
                    checks.denied(case(name, what), answer, scope);
                }
            }
        }
    }
    checks.finish();
    m.server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn segments_need_their_filters_scopes_to_evaluate_and_the_segments_scope_to_manage() {
    let m = Matrix::start().await;
    let created = m.save_segment("high-ltv", "private.ltv > 100").await;
    assert_eq!(created.required_scopes, ["private"]);
    m.save_segment("gold", r#"public.membership_tier = "gold""#)
        .await;
    let high_ltv = UserIndexClient::new(m.authed("everything"))
        .count_users(CountUsersRequest {
            filter: expression("private.ltv > 100"),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .count;
    assert!(high_ltv > 0);
    let mut checks = Checks::default();
    for (name, _) in KEYS.into_iter().filter(|(name, _)| reads(&scopes_of(name))) {
        let scopes = scopes_of(name);
        let mut segments = SegmentsClient::new(m.authed(name));
        let listed: BTreeSet<String> = segments
            .list_segments(ListSegmentsRequest {})
            .await
            .unwrap()
            .into_inner()
            .segments
            .into_iter()
            .map(|s| s.name)
            .collect();
        let private = scopes.contains("private");
        let shows = listed.contains("high-ltv");
        checks.check(
            case(name, "ListSegments high-ltv"),
            shows == private,
            format!("{listed:?}"),
        );
        let shows = listed.contains("gold");
        checks.check(
            case(name, "ListSegments gold"),
            shows == scopes.contains("public"),
            format!("{listed:?}"),
        );
        let count = segments
            .count_segment(CountSegmentRequest {
                name: "high-ltv".into(),
                min_generation: 0,
                min_log_sequence: 0,
            })
            .await;
        let get = segments
            .get_segment(GetSegmentRequest {
                name: "high-ltv".into(),
            })
            .await
            .map(drop);
        let watch = segments
            .watch_segment(WatchSegmentRequest {
                name: "high-ltv".into(),
                after_sequence: None,
            })
            .await
            .map(drop);
        if private {
            if let Some(count) = checks.ok(case(name, "CountSegment"), count) {
                let count = count.into_inner().count;
                checks.check(
                    case(name, "CountSegment"),
                    count == high_ltv,
                    format!("{count} of {high_ltv}"),
                );
            }
            checks.ok(case(name, "GetSegment"), get);
            checks.ok(case(name, "WatchSegment"), watch);
        } else {
            checks.denied(case(name, "CountSegment"), count, "private");
            checks.denied(case(name, "GetSegment"), get, "private");
            checks.denied(case(name, "WatchSegment"), watch, "private");
        }
        let create = |segment: String, filter: &str| CreateSegmentRequest {
            name: segment,
            description: String::new(),
            filter: expression(filter),
        };
        let open = segments
            .create_segment(create(format!("by-{name}"), "banned = false"))
            .await;
        let hidden = segments
            .create_segment(create(format!("private-by-{name}"), "private.ltv < 1"))
            .await;
        match (scopes.contains("segments"), private) {
            (true, true) => {
                checks.ok(case(name, "CreateSegment"), open);
                checks.ok(case(name, "CreateSegment on private"), hidden);
            }
            (true, false) => {
                checks.ok(case(name, "CreateSegment"), open);
                checks.denied(case(name, "CreateSegment on private"), hidden, "private");
            }
            (false, _) => {
                checks.denied(case(name, "CreateSegment"), open, "segments");
                checks.denied(case(name, "CreateSegment on private"), hidden, "segments");
            }
        }
    }
    checks.finish();
    m.server.stop().await;
}

/// Destinations need `segments` to manage, and the scopes of every segment they follow, on
/// create and on update: their events name the members.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn destinations_need_the_segments_scope_and_the_scopes_of_what_they_follow() {
    let m = Matrix::start().await;
    m.save_segment("high-ltv", "private.ltv > 100").await;
    m.save_segment("gold", r#"public.membership_tier = "gold""#)
        .await;
    let create = |name: &str, segment: &str| proto::CreateDestinationRequest {
        name: name.into(),
        url: "http://127.0.0.1:9/hook".into(),
        segments: vec![segment.into()],
        ..Default::default()
    };
    let follow = |name: &str, segment: &str| proto::UpdateDestinationRequest {
        name: name.into(),
        segments: Some(proto::SegmentNames {
            names: vec![segment.into()],
        }),
        ..Default::default()
    };
    let mut checks = Checks::default();
    let mut marketing = SegmentsClient::new(m.authed("marketing"));
    let made = marketing.create_destination(create("crm", "gold")).await;
    checks.ok(case("marketing", "CreateDestination on gold"), made);
    let made = marketing
        .create_destination(create("crm2", "high-ltv"))
        .await;
    checks.denied(
        case("marketing", "CreateDestination on private"),
        made,
        "private",
    );
    let changed = marketing
        .update_destination(follow("crm", "high-ltv"))
        .await;
    checks.denied(
        case("marketing", "UpdateDestination to private"),
        changed,
        "private",
    );
    let listed = marketing
        .list_destinations(proto::ListDestinationsRequest {})
        .await;
    if let Some(listed) = checks.ok(case("marketing", "ListDestinations"), listed) {
        let segments = &listed.into_inner().destinations[0].segments;
        checks.check(
            case("marketing", "a refused update changes nothing"),
            *segments == ["gold"],
            format!("{segments:?}"),
        );
    }
    let mut support = SegmentsClient::new(m.authed("support"));
    let made = support.create_destination(create("crm3", "gold")).await;
    checks.denied(case("support", "CreateDestination"), made, "segments");
    let listed = support
        .list_destinations(proto::ListDestinationsRequest {})
        .await;
    checks.denied(case("support", "ListDestinations"), listed, "segments");
    let changed = support.update_destination(follow("crm", "gold")).await;
    checks.denied(case("support", "UpdateDestination"), changed, "segments");
    let mut everything = SegmentsClient::new(m.authed("everything"));
    let changed = everything
        .update_destination(follow("crm", "high-ltv"))
        .await;
    checks.ok(case("everything", "UpdateDestination to private"), changed);
    checks.finish();
    m.server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_need_write_and_the_scope_of_each_namespace_they_change() {
    let m = Matrix::start().await;
    let mut checks = Checks::default();
    for (name, _) in KEYS.into_iter().filter(|(name, _)| reads(&scopes_of(name))) {
        let scopes = scopes_of(name);
        let mut index = UserIndexClient::new(m.authed(name));
        let write = |namespace: &str| UpdateUserMetadataRequest {
            user_id: m.user_id.clone(),
            public_metadata: (namespace == "public").then(|| r#"{"acl_test": 1}"#.into()),
            private_metadata: (namespace == "private").then(|| r#"{"acl_test": 1}"#.into()),
            ..Default::default()
        };
        let public_write = index.update_user_metadata(write("public")).await;
        let private_write = index.update_user_metadata(write("private")).await;
        if !scopes.contains("write") {
            checks.denied(case(name, "public write"), public_write, "write");
            checks.denied(case(name, "private write"), private_write, "write");
            continue;
        }
        // The answer holds what the key may read, like any read.
        if let Some(answer) = checks.ok(case(name, "public write"), public_write) {
            let json: Value =
                serde_json::from_str(&answer.into_inner().user.unwrap().json).unwrap();
            let seen = namespaces(&json);
            checks.check(
                case(name, "public write answer"),
                seen == readable(&scopes),
                format!("{seen:?}"),
            );
        }
        if scopes.contains("private") {
            checks.ok(case(name, "private write"), private_write);
        } else {
            checks.denied(case(name, "private write"), private_write, "private");
        }
    }
    checks.finish();
    m.server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sync_service_is_for_the_admin_scope_alone() {
    let m = Matrix::start().await;
    let mut checks = Checks::default();
    for (name, _) in KEYS {
        let status = SyncClient::new(m.authed(name))
            .get_sync_status(GetSyncStatusRequest {})
            .await;
        if scopes_of(name).contains("admin") {
            checks.ok(case(name, "GetSyncStatus"), status);
        } else {
            checks.denied(case(name, "GetSyncStatus"), status, "admin");
        }
    }
    checks.finish();
    m.server.stop().await;
}

#[test]
fn serve_refuses_to_start_without_keys_unless_told_to() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_clerk-index"))
        .args([
            "serve",
            "--grpc-addr",
            "127.0.0.1:0",
            "--http-addr",
            "127.0.0.1:0",
            "--clerk-api-url",
            "http://127.0.0.1:9",
        ])
        .env("CLERK_SECRET_KEY", "sk_test_x")
        .env_remove("CLERK_INDEX_API_KEYS")
        .env_remove("CLERK_INDEX_API_KEYS_FILE")
        .env_remove("CLERK_INDEX_ALLOW_UNAUTHENTICATED")
        .env("CLERK_INDEX_DATA_DIR", tempfile::tempdir().unwrap().path())
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("no API keys configured") && stderr.contains("--allow-unauthenticated"),
        "{stderr}"
    );
    // A key given as itself instead of its hash is refused with the line it is on.
    let (key, _) = generate_key();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_clerk-index"))
        .args(["serve", "--clerk-api-url", "http://127.0.0.1:9"])
        .env("CLERK_SECRET_KEY", "sk_test_x")
        .env(
            "CLERK_INDEX_API_KEYS",
            format!("# keys\nfrontend public {key}\n"),
        )
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("line 2") && stderr.contains("the key itself"),
        "{stderr}"
    );
    assert!(!stderr.contains(&key), "the key is never echoed: {stderr}");
}

#[test]
fn api_key_create_prints_a_key_whose_hash_the_line_holds() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_clerk-index"))
        .args([
            "api-key",
            "create",
            "--name",
            "reporting",
            "--scopes",
            "public,private",
        ])
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let stdout = String::from_utf8(output.stdout).unwrap();
    let lines: Vec<&str> = stdout.lines().collect();
    let [key, line] = lines[..] else {
        panic!("expected a key and a line: {stdout}")
    };
    let keys = ApiKeys::parse(line).unwrap();
    let caller = keys
        .find(key)
        .expect("the printed key matches the printed line");
    assert_eq!(&*caller.name, "reporting");
    let mut hash = std::process::Command::new(env!("CARGO_BIN_EXE_clerk-index"))
        .args(["api-key", "hash"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    hash.stdin
        .take()
        .unwrap()
        .write_all(key.as_bytes())
        .unwrap();
    let hashed = hash.wait_with_output().unwrap();
    assert_eq!(
        String::from_utf8(hashed.stdout).unwrap().trim(),
        line.split_whitespace().last().unwrap()
    );
}

/// `clerk-index health` (the Helm test pod's command) exits 0 only when the server is SERVING.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_health_command_reports_serving() {
    let dir = tempfile::tempdir().unwrap();
    let (_fake, server) = TestServer::with_population(dir.path(), 20).await;
    let grpc_url = server.grpc_url.clone();
    let output = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_clerk-index"))
            .args(["health", "--server", &grpc_url])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(output.status.success(), "{output:?}");
    assert_eq!(String::from_utf8_lossy(&output.stdout).trim(), "SERVING");
    server.stop().await;
    // Nothing listening: a clear failure, not a hang.
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_clerk-index"))
        .args(["health", "--server", "http://127.0.0.1:9"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(3), "{output:?}");
    assert!(String::from_utf8_lossy(&output.stderr).contains("cannot connect"));
}

/// `clerk-index config` checks the configuration `serve` would run with and prints it with every
/// secret masked.
#[test]
fn the_config_command_prints_the_effective_configuration_with_secrets_masked() {
    let (_, hash) = generate_key();
    let ring_blind = clerk_index::auth::sensitive::generate_key_line("blind-index");
    let ring_key = clerk_index::auth::sensitive::generate_key_line("k1");
    let secret_key = "sk_live_Zm9vYmFyYmF6cXV4cXV1eA";
    let signing = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";
    let run = |extra: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_clerk-index"))
            .args(["config", "--sensitive-paths", "private.ssn"])
            .args(extra)
            .env("CLERK_SECRET_KEY", secret_key)
            .env("CLERK_WEBHOOK_SIGNING_SECRET", signing)
            .env("CLERK_INDEX_API_KEYS", format!("frontend public {hash}"))
            .env(
                "CLERK_INDEX_SENSITIVE_KEYS",
                format!("{ring_blind}\n{ring_key}"),
            )
            .env_remove("CLERK_INDEX_ALLOW_UNAUTHENTICATED")
            .output()
            .unwrap()
    };
    let output = run(&["--writer-memory-mb", "64"]);
    assert!(output.status.success(), "{output:?}");
    let text = String::from_utf8(output.stdout).unwrap();
    let config: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(config["clerk"]["secret_key"], "sk_live_*** (30 characters)");
    assert_eq!(
        config["webhooks"]["signing_secrets"][0],
        "whsec_*** (38 characters)"
    );
    assert_eq!(config["auth"]["api_keys"][0], "frontend (public)");
    assert_eq!(config["sensitive"]["paths"][0], "private_metadata.ssn");
    assert_eq!(config["sensitive"]["active_key_id"], "k1");
    assert_eq!(config["index"]["writer_memory_mb"], 64);
    assert_eq!(config["tls"], "off");
    for secret in [
        secret_key,
        &signing[6..],
        &hash[7..],
        ring_blind.split(' ').nth(1).unwrap(),
        ring_key.split(' ').nth(1).unwrap(),
    ] {
        assert!(!text.contains(secret), "{secret} in {text}");
    }
    // The default writer budget is automatic: half the memory limit, 256 MiB to 1 GiB.
    let output = run(&[]);
    assert!(output.status.success(), "{output:?}");
    let config: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let automatic = config["index"]["writer_memory_mb"].as_u64().unwrap();
    assert!((256..=1024).contains(&automatic), "{automatic}");
    assert_eq!(run(&["--writer-memory-mb", "auto"]).stdout, output.stdout);
    // A setting that cannot work is refused with the flag's name.
    for (value, message) in [
        ("lots", "expected `auto` or a number of MiB"),
        ("5", "--writer-memory-mb must be at least 20"),
    ] {
        let output = run(&["--writer-memory-mb", value]);
        assert!(!output.status.success(), "{value}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(message), "{stderr}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_keys_follow_their_file_while_serving() {
    let dir = tempfile::tempdir().unwrap();
    let fake = RunningFakeClerk::start(FakeClerkConfig::new(Population::new(50))).await;
    let (old, old_hash) = generate_key();
    let (new, new_hash) = generate_key();
    let file = dir.path().join("api-keys");
    std::fs::write(&file, format!("old public {old_hash}\n")).unwrap();
    let mut options = TestOptions::new(&fake.url);
    options.auth = AuthConfig {
        keys: ApiKeys::parse(&std::fs::read_to_string(&file).unwrap()).unwrap(),
        allow_unauthenticated: false,
        sensitive: None,
    };
    options.api_keys_file = Some(file.clone());
    let server = TestServer::start(&dir.path().join("data"), options).await;
    server.wait_serving().await;
    let channel = server.channel().await;
    let count = |key: &str| {
        let mut client =
            UserIndexClient::new(with_header(channel.clone(), Some(format!("Bearer {key}"))));
        async move {
            client
                .count_users(CountUsersRequest::default())
                .await
                .map(|r| r.into_inner().count)
                .map_err(|s| s.code())
        }
    };
    /// Polls until `key` gets `expected` (the file is checked every 100 ms).
    async fn settles<F: Future<Output = Result<u64, Code>>>(
        call: impl Fn() -> F,
        expected: Result<u64, Code>,
    ) {
        for _ in 0..100 {
            if call().await == expected {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(call().await, expected);
    }
    assert_eq!(count(&old).await, Ok(50));
    assert_eq!(count(&new).await, Err(Code::Unauthenticated));
    // The file is replaced the way Kubernetes updates a Secret: a new file renamed over it.
    let replace = |text: String| {
        let next = dir.path().join("api-keys.next");
        std::fs::write(&next, text).unwrap();
        std::fs::rename(&next, &file).unwrap();
    };
    replace(format!("new public {new_hash}\n"));
    settles(|| count(&new), Ok(50)).await;
    assert_eq!(count(&old).await, Err(Code::Unauthenticated));
    // A broken or empty list is refused; the keys in force stay.
    replace("new public not-a-hash\n".into());
    tokio::time::sleep(Duration::from_millis(400)).await;
    replace(String::new());
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(count(&new).await, Ok(50));
    let text = server.metrics_text().await;
    assert!(
        text.contains("clerk_index_config_reloads_total{file=\"api_keys\",outcome=\"applied\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("clerk_index_config_reloads_total{file=\"api_keys\",outcome=\"refused\"} 2")
    );
    server.stop().await;
}
