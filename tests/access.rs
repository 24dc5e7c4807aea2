//! Access control over real gRPC: API keys resolve to scopes, and every call either answers with
//! only what the caller's scopes may read or is refused before it touches the index.

mod common;

use std::collections::BTreeSet;

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
use common::{RunningFakeClerk, TestOptions, TestServer, expression, with_header};
use serde_json::Value;
use tonic::Code;

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

/// Asserts `result` is PERMISSION_DENIED naming `scope`.
fn assert_denied<T: std::fmt::Debug>(result: Result<T, tonic::Status>, scope: &str, context: &str) {
    let status = result.expect_err(context);
    assert_eq!(
        status.code(),
        Code::PermissionDenied,
        "{context}: {status:?}"
    );
    assert!(
        status
            .message()
            .contains(&format!("lacks the {scope} scope")),
        "{context}: {}",
        status.message()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_key_reads_and_filters_only_what_its_scopes_allow() {
    let dir = tempfile::tempdir().unwrap();
    let fake = RunningFakeClerk::start(FakeClerkConfig::new(Population::new(300))).await;
    let (keys, auth) = Keys::new();
    let mut options = TestOptions::new(&fake.url);
    options.auth = auth;
    let server = TestServer::start(dir.path(), options).await;
    server.wait_serving().await; // health needs no key
    let channel = server.channel().await;
    let users = fake.users();
    let user = users
        .iter()
        .find(|u| {
            ["public_metadata", "private_metadata", "unsafe_metadata"]
                .iter()
                .all(|ns| {
                    let json: Value = serde_json::from_str(&u.raw_json).unwrap();
                    json[*ns].as_object().is_some_and(|m| !m.is_empty())
                })
        })
        .expect("a user with all three namespaces");

    // No key, a malformed header, an unknown key: UNAUTHENTICATED on every service.
    for header in [
        None,
        Some("Basic abc".to_string()),
        Some(format!("Bearer {}x", keys.key("everything"))),
    ] {
        let mut index = UserIndexClient::new(with_header(channel.clone(), header.clone()));
        let status = index
            .count_users(CountUsersRequest::default())
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::Unauthenticated, "{header:?}");
        let mut segments = SegmentsClient::new(with_header(channel.clone(), header.clone()));
        let status = segments
            .list_segments(ListSegmentsRequest {})
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::Unauthenticated, "{header:?}");
        let mut sync = SyncClient::new(with_header(channel.clone(), header.clone()));
        let status = sync
            .get_sync_status(GetSyncStatusRequest {})
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::Unauthenticated, "{header:?}");
    }

    // A saved segment over a private field, made by a key that can read it.
    let everything = with_header(
        channel.clone(),
        Some(format!("Bearer {}", keys.key("everything"))),
    );
    let created = SegmentsClient::new(everything.clone())
        .create_segment(CreateSegmentRequest {
            name: "high-ltv".into(),
            description: String::new(),
            filter: expression("private.ltv > 100"),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(created.required_scopes, ["private"]);
    SegmentsClient::new(everything.clone())
        .create_segment(CreateSegmentRequest {
            name: "gold".into(),
            description: String::new(),
            filter: expression(r#"public.membership_tier = "gold""#),
        })
        .await
        .unwrap();
    let high_ltv = UserIndexClient::new(everything.clone())
        .count_users(CountUsersRequest {
            filter: expression("private.ltv > 100"),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .count;
    assert!(high_ltv > 0);

    // (filter, a path to sort, facet and mask on, the scope they need)
    let filters = [
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
    for (name, _) in KEYS {
        let scopes = scopes_of(name);
        let authed = with_header(channel.clone(), Some(format!("Bearer {}", keys.key(name))));
        let mut index = UserIndexClient::new(authed.clone());
        let mut segments = SegmentsClient::new(authed.clone());
        let context = |what: &str| format!("key {name} ({scopes:?}): {what}");

        // Reads need a read scope at all.
        let got = index
            .get_user(GetUserRequest {
                user_id: user.id.clone(),
                ..Default::default()
            })
            .await;
        if !reads(&scopes) {
            assert_denied(got, "public", &context("GetUser"));
            assert_denied(
                index.count_users(CountUsersRequest::default()).await,
                "public",
                &context("CountUsers"),
            );
            continue;
        }
        // Responses hold exactly the readable namespaces, whatever the call.
        let json: Value =
            serde_json::from_str(&got.unwrap().into_inner().user.unwrap().json).unwrap();
        assert_eq!(
            namespaces(&json),
            readable(&scopes),
            "{}",
            context("GetUser")
        );
        assert_eq!(json["id"], user.id.as_str());
        let page = index
            .search_users(SearchUsersRequest {
                page_size: 50,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        for found in &page.users {
            let json: Value = serde_json::from_str(&found.json).unwrap();
            assert!(
                namespaces(&json).is_subset(&readable(&scopes)),
                "{}",
                context("SearchUsers")
            );
        }
        let mut export = index
            .export_users(ExportUsersRequest::default())
            .await
            .unwrap()
            .into_inner();
        let mut seen = BTreeSet::new();
        while let Some(chunk) = export.message().await.unwrap() {
            for exported in chunk.users {
                let json: Value = serde_json::from_str(&exported.json).unwrap();
                seen.extend(namespaces(&json));
            }
        }
        assert_eq!(seen, readable(&scopes), "{}", context("ExportUsers"));
        let described = index
            .describe_fields(DescribeFieldsRequest::default())
            .await
            .unwrap()
            .into_inner();
        let described: BTreeSet<&str> = described
            .fields
            .iter()
            .map(|f| f.path.split('.').next().unwrap())
            .collect();
        let expected: BTreeSet<&str> = ["public", "private", "unsafe"]
            .into_iter()
            .filter(|s| scopes.contains(s))
            .collect();
        assert_eq!(described, expected, "{}", context("DescribeFields"));

        // Predicates, sorts, facets and masks on a hidden namespace are refused, naming it.
        for (filter, path, scope) in filters {
            let count = index
                .count_users(CountUsersRequest {
                    filter: expression(filter),
                    ..Default::default()
                })
                .await;
            let search = index
                .search_users(SearchUsersRequest {
                    sort: Some(SortSpec {
                        path: path.into(),
                        descending: true,
                    }),
                    page_size: 5,
                    ..Default::default()
                })
                .await;
            let facet = index
                .facet_users(FacetUsersRequest {
                    facets: vec![FacetRequest {
                        path: path.into(),
                        kind: Some(proto::facet_request::Kind::Terms(TermsFacet {
                            size: 5,
                            ..Default::default()
                        })),
                        ..Default::default()
                    }],
                    ..Default::default()
                })
                .await;
            let masked = index
                .get_user(GetUserRequest {
                    user_id: user.id.clone(),
                    fields: vec![path.into()],
                    ..Default::default()
                })
                .await;
            // Also inside a larger filter: no way around it through OR or NOT.
            let nested = index
                .count_users(CountUsersRequest {
                    filter: expression(&format!("banned = true OR NOT ({filter})")),
                    ..Default::default()
                })
                .await;
            if scope.is_empty() || scopes.contains(scope) {
                let context = context(filter);
                count.expect(&context);
                search.expect(&context);
                facet.expect(&context);
                masked.expect(&context);
                nested.expect(&context);
            } else {
                assert_denied(count, scope, &context(&format!("count {filter}")));
                assert_denied(search, scope, &context(&format!("sort by {path}")));
                assert_denied(facet, scope, &context(&format!("facet on {path}")));
                assert_denied(masked, scope, &context(&format!("mask {path}")));
                assert_denied(nested, scope, &context(&format!("nested {filter}")));
            }
        }

        // Saved segments: evaluating one needs the scopes of its filter; managing needs
        // `segments`.
        let listed: BTreeSet<String> = segments
            .list_segments(ListSegmentsRequest {})
            .await
            .unwrap()
            .into_inner()
            .segments
            .into_iter()
            .map(|s| s.name)
            .collect();
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
            .await;
        let watch = segments
            .watch_segment(WatchSegmentRequest {
                name: "high-ltv".into(),
                after_sequence: None,
            })
            .await;
        if scopes.contains("private") {
            assert_eq!(count.unwrap().into_inner().count, high_ltv);
            assert!(get.is_ok() && watch.is_ok(), "{}", context("segment"));
            assert!(listed.contains("high-ltv"), "{}", context("list"));
        } else {
            assert_denied(count, "private", &context("CountSegment"));
            assert_denied(get, "private", &context("GetSegment"));
            assert_denied(watch, "private", &context("WatchSegment"));
            assert!(!listed.contains("high-ltv"), "{}", context("list"));
        }
        assert_eq!(listed.contains("gold"), scopes.contains("public"));
        let create = segments
            .create_segment(CreateSegmentRequest {
                name: format!("by-{name}"),
                description: String::new(),
                filter: expression("banned = false"),
            })
            .await;
        if scopes.contains("segments") {
            create.unwrap();
        } else {
            assert_denied(create, "segments", &context("CreateSegment"));
        }
        let private_segment = segments
            .create_segment(CreateSegmentRequest {
                name: format!("private-by-{name}"),
                description: String::new(),
                filter: expression("private.ltv < 1"),
            })
            .await;
        match (scopes.contains("segments"), scopes.contains("private")) {
            (true, true) => {
                private_segment.unwrap();
            }
            (false, _) => assert_denied(private_segment, "segments", &context("create")),
            (true, false) => assert_denied(private_segment, "private", &context("create")),
        }

        // Writes need `write` and the scope of each namespace they change.
        let write = |namespace: &str| UpdateUserMetadataRequest {
            user_id: user.id.clone(),
            public_metadata: (namespace == "public").then(|| r#"{"acl_test": 1}"#.into()),
            private_metadata: (namespace == "private").then(|| r#"{"acl_test": 1}"#.into()),
            ..Default::default()
        };
        let public_write = index.update_user_metadata(write("public")).await;
        let private_write = index.update_user_metadata(write("private")).await;
        if scopes.contains("write") {
            let response = public_write.unwrap().into_inner();
            let json: Value = serde_json::from_str(&response.user.unwrap().json).unwrap();
            assert_eq!(
                namespaces(&json),
                readable(&scopes),
                "{}",
                context("write answer")
            );
        } else {
            assert_denied(public_write, "write", &context("UpdateUserMetadata"));
        }
        match (scopes.contains("write"), scopes.contains("private")) {
            (true, true) => {
                private_write.unwrap();
            }
            (false, _) => assert_denied(private_write, "write", &context("private write")),
            (true, false) => assert_denied(private_write, "private", &context("private write")),
        }
    }

    // The Sync service is for the admin scope alone.
    for (name, _) in KEYS {
        let authed = with_header(channel.clone(), Some(format!("Bearer {}", keys.key(name))));
        let status = SyncClient::new(authed)
            .get_sync_status(GetSyncStatusRequest {})
            .await;
        if name == "ops" {
            status.unwrap();
        } else {
            assert_denied(status, "admin", &format!("key {name}: GetSyncStatus"));
        }
    }
    server.stop().await;
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
    assert!(!output.status.success());
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
    // A setting that cannot work is refused with the flag's name.
    let output = run(&["--writer-memory-mb", "5"]);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("--writer-memory-mb must be at least 20"),
        "{stderr}"
    );
}
