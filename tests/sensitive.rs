//! Sensitive paths end to end: values sealed before indexing (from the backfill and from
//! webhooks), filterable by equality with the `sensitive` scope only, readable only with it,
//! absent from the index directory, readable across a key rotation and re-sealed on demand, and
//! never written to the logs.

mod common;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use clerk_index::api::proto::sync_client::SyncClient;
use clerk_index::api::proto::user_index_client::UserIndexClient;
use clerk_index::api::proto::{
    ExportUsersRequest, GetUserRequest, ReencryptSensitiveRequest, SearchUsersRequest, SortSpec,
    UpdateUserMetadataRequest,
};
use clerk_index::auth::sensitive::{KeyRing, SensitivePaths, generate_key_line};
use clerk_index::auth::{ApiKeys, AuthConfig, Sensitive, generate_key};
use clerk_index::clerk::fake::{FakeClerkConfig, Population};
use clerk_index::index::{IndexConfig, UserIndex};
use common::{Authed, Checks, RunningFakeClerk, TestOptions, TestServer, count_with, with_header};
use serde_json::{Value, json};
use tonic::Code;
use tonic::transport::Channel;

const PLANTED: &str = "SSN-PLANTED-7391-0458";
const PLANTED_BY_WEBHOOK: &str = "SSN-WEBHOOK-2286-9917";
const PLANTED_AFTER_ROTATION: &str = "SSN-ROTATED-4410-7702";
/// Planted at a path that is not sensitive: the file scan must find it, or it proves nothing.
const CONTROL: &str = "CONTROL-PLAIN-6613-3050";

fn authed(channel: &Channel, key: &str) -> Authed {
    with_header(channel.clone(), Some(format!("Bearer {key}")))
}

/// API keys: `reader` (write, public, private), `vault` (public, private, sensitive), `ops`
/// (admin).
fn keys() -> (AuthConfig, [String; 3]) {
    let (reader, reader_hash) = generate_key();
    let (vault, vault_hash) = generate_key();
    let (ops, ops_hash) = generate_key();
    let lines = format!(
        "reader write,public,private {reader_hash}\nvault public,private,sensitive {vault_hash}\nops admin {ops_hash}\n"
    );
    let auth = AuthConfig {
        keys: ApiKeys::parse(&lines).unwrap(),
        allow_unauthenticated: false,
        sensitive: None,
    };
    (auth, [reader, vault, ops])
}

fn sensitive(ring: &str) -> Arc<Sensitive> {
    Arc::new(Sensitive::new(
        SensitivePaths::parse("private.ssn, private.medical.*").unwrap(),
        KeyRing::parse(ring).unwrap(),
    ))
}

/// Every file under `dir` that contains `needle`.
fn files_containing(dir: &Path, needle: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let bytes = std::fs::read(&path).unwrap();
                if bytes.windows(needle.len()).any(|w| w == needle.as_bytes()) {
                    found.push(path.display().to_string());
                }
            }
        }
    }
    found
}

async fn user_json(client: &mut UserIndexClient<Authed>, id: &str) -> Value {
    let response = client
        .get_user(GetUserRequest {
            user_id: id.into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    serde_json::from_str(&response.user.unwrap().json).unwrap()
}

async fn start(dir: &Path, fake: &RunningFakeClerk, auth: &AuthConfig, ring: &str) -> TestServer {
    let mut options = TestOptions::new(&fake.url);
    options.auth = auth.clone();
    options.sensitive = Some(sensitive(ring));
    let server = TestServer::start(dir, options).await;
    server.wait_serving().await;
    server
}

/// A server over 400 users, `planted` holding known sensitive values from the backfill and
/// `by_webhook` receiving one through a webhook, keys `reader`, `vault` and `ops`, and a ring of
/// a blind-index key and `k1`.
struct Vault {
    setup: Setup,
    server: TestServer,
}

/// Everything of a [`Vault`] but its running server.
struct Setup {
    fake: RunningFakeClerk,
    dir: tempfile::TempDir,
    auth: AuthConfig,
    /// reader, vault, ops
    keys: [String; 3],
    blind: String,
    k1: String,
    ids: Vec<String>,
    planted: String,
    by_webhook: String,
    /// `(id, ssn)` of the generated users holding an SSN (~20% of them).
    generated: Vec<(String, String)>,
}

impl std::ops::Deref for Vault {
    type Target = Setup;

    fn deref(&self) -> &Setup {
        &self.setup
    }
}

impl Vault {
    async fn start() -> Vault {
        let fake = RunningFakeClerk::start(FakeClerkConfig::new(Population::new(400))).await;
        let ids = fake.fake.user_ids();
        let (planted, by_webhook) = (ids[7].clone(), ids[8].clone());
        let mut json = fake.fake.user_json(&planted).unwrap();
        json["private_metadata"] = json!({
            "ssn": PLANTED, "ltv": 12.5, "note": CONTROL,
            "medical": {"condition": "asthma-planted-3321", "codes": [7, 12]}
        });
        fake.fake.put_user_json(&json);
        let generated: Vec<(String, String)> = fake
            .users()
            .iter()
            .filter_map(|u| {
                let ssn = u.private_metadata.get("ssn")?.as_str()?.to_string();
                Some((u.id.clone(), ssn))
            })
            .filter(|(id, _)| *id != planted && *id != by_webhook)
            .collect();
        assert!(generated.len() > 20);
        let (auth, keys) = keys();
        let (blind, k1) = (generate_key_line("blind-index"), generate_key_line("k1"));
        let dir = tempfile::tempdir().unwrap();
        let server = start(dir.path(), &fake, &auth, &format!("{blind}\n{k1}")).await;
        // A webhook brings a second planted value; it is sealed on that path too.
        let mut updated = fake.fake.user_json(&by_webhook).unwrap();
        updated["private_metadata"]["ssn"] = json!(PLANTED_BY_WEBHOOK);
        updated["updated_at"] = json!(updated["updated_at"].as_i64().unwrap() + 1000);
        let event = common::event("user.updated", updated, clerk_index::clock::now_ms());
        assert_eq!(server.deliver("msg_sensitive_1", &event).await.0, 200);
        let setup = Setup {
            fake,
            dir,
            auth,
            keys,
            blind,
            k1,
            ids,
            planted,
            by_webhook,
            generated,
        };
        Vault { setup, server }
    }

    async fn client(&self, key: usize) -> UserIndexClient<Authed> {
        UserIndexClient::new(authed(&self.server.channel().await, &self.keys[key]))
    }

    /// Stops the server and starts it again on the same index with the key ring `ring`.
    async fn restart(self, ring: &str) -> Vault {
        let Vault { setup, server } = self;
        server.stop().await;
        let server = start(setup.dir.path(), &setup.fake, &setup.auth, ring).await;
        Vault { setup, server }
    }
}

const READER: usize = 0;
const VAULT: usize = 1;
const OPS: usize = 2;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn equality_filters_match_sealed_values_from_the_backfill_and_webhooks() {
    let v = Vault::start().await;
    let mut vault = v.client(VAULT).await;
    let (_, some_ssn) = &v.generated[0];
    let same_ssn = v.generated.iter().filter(|(_, s)| s == some_ssn).count() as u64;
    let total = count_with(&mut vault, Some("id EXISTS")).await.unwrap();
    let cases = [
        (format!(r#"private.ssn = "{PLANTED}""#), 1),
        (
            format!(r#"private.ssn IN ["nope", "{PLANTED_BY_WEBHOOK}"]"#),
            1,
        ),
        (
            r#"private.medical.condition = "asthma-planted-3321""#.to_string(),
            1,
        ),
        ("private.medical.codes = 12".to_string(), 1),
        (format!(r#"private.ssn = "{some_ssn}""#), same_ssn),
        (format!(r#"private.ssn != "{PLANTED}""#), total - 1),
        (
            format!(r#"private.ssn = "{PLANTED}" AND private.ltv > 10"#),
            1,
        ),
    ];
    let mut checks = Checks::default();
    for (filter, expected) in cases {
        let counted = count_with(&mut vault, Some(&filter)).await;
        if let Some(counted) = checks.ok(&filter, counted) {
            checks.check(
                &filter,
                counted == expected,
                format!("{counted}, not {expected}"),
            );
        }
    }
    // Nothing but equality: the values are not in the index to compare, scan, sort or facet.
    for refused in [
        format!(r#"private.ssn > "{PLANTED}""#),
        r#"private.ssn STARTS WITH "SSN""#.to_string(),
        "private.ssn EXISTS".to_string(),
    ] {
        let answer = count_with(&mut vault, Some(&refused)).await;
        let refusal = answer.err().map(|s| (s.code(), s.message().to_string()));
        let ok = refusal.as_ref().is_some_and(|(code, message)| {
            *code == Code::InvalidArgument
                && message.contains("private.ssn is a sensitive path")
                && !message.contains(PLANTED)
        });
        checks.check(&refused, ok, format!("{refusal:?}"));
    }
    let sorted = vault
        .search_users(SearchUsersRequest {
            sort: Some(SortSpec {
                path: "private.ssn".into(),
                descending: false,
            }),
            ..Default::default()
        })
        .await
        .map(drop);
    let code = sorted.err().map(|s| s.code());
    checks.check(
        "sort by private.ssn",
        code == Some(Code::InvalidArgument),
        format!("{code:?}"),
    );
    checks.finish();
    v.server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_sensitive_scope_reads_or_filters_sealed_values() {
    let v = Vault::start().await;
    let (mut vault, mut reader) = (v.client(VAULT).await, v.client(READER).await);
    let shown = user_json(&mut vault, &v.planted).await;
    assert_eq!(shown["private_metadata"]["ssn"], PLANTED);
    assert_eq!(
        shown["private_metadata"]["medical"]["codes"],
        json!([7, 12])
    );
    assert_eq!(shown["private_metadata"]["ltv"], 12.5);
    let (some_id, some_ssn) = &v.generated[0];
    let shown = user_json(&mut vault, some_id).await;
    assert_eq!(shown["private_metadata"]["ssn"], some_ssn.as_str());
    let hidden = user_json(&mut reader, &v.planted).await;
    assert!(hidden["private_metadata"].get("ssn").is_none(), "{hidden}");
    assert!(
        hidden["private_metadata"].get("medical").is_none(),
        "{hidden}"
    );
    assert_eq!(hidden["private_metadata"]["ltv"], 12.5);
    let mut checks = Checks::default();
    let filtered = count_with(&mut reader, Some(&format!(r#"private.ssn = "{PLANTED}""#))).await;
    checks.denied("a reader's filter on private.ssn", filtered, "sensitive");
    let masked = reader
        .get_user(GetUserRequest {
            user_id: v.planted.clone(),
            fields: vec!["private.ssn".into()],
            ..Default::default()
        })
        .await;
    checks.denied("a reader's mask of private.ssn", masked, "sensitive");
    // Writing, replacing or deleting a sensitive value needs the scope too, even with write
    // and private; other private keys stay writable.
    for (what, patch) in [
        ("set private.ssn", json!({"ssn": "overwritten"})),
        ("delete private.ssn", json!({"ssn": null})),
        ("replace private.medical", json!({"medical": "gone"})),
    ] {
        let written = reader
            .update_user_metadata(UpdateUserMetadataRequest {
                user_id: v.planted.clone(),
                private_metadata: Some(patch.to_string()),
                ..Default::default()
            })
            .await;
        checks.denied(what, written, "sensitive");
    }
    let allowed = reader
        .update_user_metadata(UpdateUserMetadataRequest {
            user_id: v.planted.clone(),
            private_metadata: Some(json!({"ltv": 13.5}).to_string()),
            ..Default::default()
        })
        .await;
    checks.ok("a reader's write of private.ltv", allowed);
    checks.finish();
    let kept = user_json(&mut vault, &v.planted).await;
    assert_eq!(kept["private_metadata"]["ssn"], PLANTED);
    assert_eq!(kept["private_metadata"]["ltv"], 13.5);
    let mut export = reader
        .export_users(ExportUsersRequest::default())
        .await
        .unwrap()
        .into_inner();
    while let Some(chunk) = export.message().await.unwrap() {
        for user in chunk.users {
            let leaks = user.json.contains(PLANTED) || user.json.contains("\"ssn\"");
            assert!(!leaks, "{}", user.json);
        }
    }
    v.server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_index_directory_holds_no_plaintext_of_sensitive_values() {
    let Vault { setup: v, server } = Vault::start().await;
    server.stop().await;
    // The control value, at a path that is not sensitive, is found by the same scan.
    let dir = v.dir.path();
    assert!(
        !files_containing(dir, &CONTROL[8..]).is_empty(),
        "the scan finds plaintext"
    );
    let (some_id, some_ssn) = &v.generated[0];
    for secret in [PLANTED, PLANTED_BY_WEBHOOK, "asthma-planted-3321", some_ssn] {
        assert_eq!(
            files_containing(dir, secret),
            Vec::<String>::new(),
            "{secret}"
        );
    }
    // ...nor do the stored users, read back decompressed.
    let mut config = IndexConfig::new(dir.join("index"));
    config.sealing = sensitive(&format!("{}\n{}", v.blind, v.k1)).fingerprint();
    let (index, _task) = UserIndex::open(&config).unwrap();
    let snapshot = index.snapshot();
    for id in [&v.planted, &v.by_webhook, some_id] {
        let stored = snapshot.get_stored(id).unwrap().unwrap();
        assert!(!stored.raw_json.contains("\"ssn\""), "{}", stored.raw_json);
        let sealed = stored.sealed.expect("sealed values stored");
        assert!(sealed.contains("\"k1:"), "{sealed}");
        assert!(!sealed.contains(PLANTED) && !sealed.contains(some_ssn.as_str()));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_rotation_reseals_every_value_and_the_old_key_can_then_be_dropped() {
    let v = Vault::start().await;
    let k2 = generate_key_line("k2");
    // k2 becomes active, k1 stays to open older values; no rebuild (same blind key).
    let ring = format!("{}\n{k2}\n{}", v.blind, v.k1);
    let v = v.restart(&ring).await;
    let mut vault = v.client(VAULT).await;
    assert_eq!(
        user_json(&mut vault, &v.planted).await["private_metadata"]["ssn"],
        PLANTED
    );
    assert_eq!(
        count_with(&mut vault, Some(&format!(r#"private.ssn = "{PLANTED}""#)))
            .await
            .unwrap(),
        1
    );
    let denied = SyncClient::new(authed(&v.server.channel().await, &v.keys[VAULT]))
        .reencrypt_sensitive(ReencryptSensitiveRequest {})
        .await
        .unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied);
    let mut admin = SyncClient::new(authed(&v.server.channel().await, &v.keys[OPS]));
    let done = admin
        .reencrypt_sensitive(ReencryptSensitiveRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(done.active_key_id, "k2");
    assert_eq!(
        done.users_resealed as usize,
        v.generated.len() + 2,
        "every sealed user once"
    );
    let again = admin
        .reencrypt_sensitive(ReencryptSensitiveRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(again.users_resealed, 0, "nothing left under k1");
    // A value arriving now is sealed under k2 (read back below without k1 in the ring).
    let mut arriving = v.fake.fake.user_json(&v.ids[9]).unwrap();
    arriving["private_metadata"]["ssn"] = json!(PLANTED_AFTER_ROTATION);
    arriving["updated_at"] = json!(arriving["updated_at"].as_i64().unwrap() + 1000);
    let event = common::event("user.updated", arriving, clerk_index::clock::now_ms());
    assert_eq!(v.server.deliver("msg_sensitive_2", &event).await.0, 200);

    // Without k1 now: everything still opens, and filters still match.
    let ring = format!("{}\n{k2}", v.blind);
    let v = v.restart(&ring).await;
    let mut vault = v.client(VAULT).await;
    let mut checks = Checks::default();
    for (id, value) in [
        (&v.planted, PLANTED),
        (&v.by_webhook, PLANTED_BY_WEBHOOK),
        (&v.ids[9], PLANTED_AFTER_ROTATION),
    ] {
        let shown = user_json(&mut vault, id).await["private_metadata"]["ssn"].clone();
        checks.check(
            format!("{id} without k1"),
            shown == value,
            format!("{shown}"),
        );
    }
    checks.finish();
    assert_eq!(
        count_with(&mut vault, Some(&format!(r#"private.ssn = "{PLANTED}""#)))
            .await
            .unwrap(),
        1
    );
    v.server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_blind_index_key_rebuilds_the_index_and_filters_work_again() {
    let v = Vault::start().await;
    // The old tokens are useless under another blind-index key: the index is rebuilt from
    // Clerk, and filters work again with the new key.
    let ring = format!("{}\n{}", generate_key_line("blind-index"), v.k1);
    let v = v.restart(&ring).await;
    let mut vault = v.client(VAULT).await;
    assert_eq!(
        count_with(&mut vault, Some(&format!(r#"private.ssn = "{PLANTED}""#)))
            .await
            .unwrap(),
        1
    );
    v.server.stop().await;
}

/// The real binary with debug logging: planted values go through a webhook, filters, errors
/// and reads, and never show up in what it logs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sensitive_values_never_reach_the_logs() {
    let fake = RunningFakeClerk::start(FakeClerkConfig::new(Population::new(50))).await;
    let ids = fake.fake.user_ids();
    let mut planted = fake.fake.user_json(&ids[3]).unwrap();
    planted["private_metadata"] = json!({"ssn": PLANTED});
    fake.fake.put_user_json(&planted);
    let dir = tempfile::tempdir().unwrap();
    let (key, hash) = generate_key();
    let ring = format!(
        "{}\n{}",
        generate_key_line("blind-index"),
        generate_key_line("k1")
    );
    let port = |l: std::net::TcpListener| l.local_addr().unwrap().port();
    let grpc = port(std::net::TcpListener::bind("127.0.0.1:0").unwrap());
    let http = port(std::net::TcpListener::bind("127.0.0.1:0").unwrap());
    let log_path = dir.path().join("server.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_clerk-index"))
        .args(["serve", "--grpc-addr", &format!("127.0.0.1:{grpc}")])
        .args(["--http-addr", &format!("127.0.0.1:{http}")])
        .args(["--clerk-api-url", &fake.url, "--writer-memory-mb", "50"])
        .args([
            "--commit-interval-ms",
            "100",
            "--sensitive-paths",
            "private.ssn",
        ])
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .env("CLERK_SECRET_KEY", "sk_test_fake_clerk")
        .env("CLERK_WEBHOOK_SIGNING_SECRET", common::WEBHOOK_SECRET)
        .env(
            "CLERK_INDEX_API_KEYS",
            format!("vault public,private,sensitive {hash}"),
        )
        .env("CLERK_INDEX_SENSITIVE_KEYS", ring)
        .env("RUST_LOG", "debug")
        .env("CLERK_INDEX_LOG_FORMAT", "json")
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap();
    let http_url = format!("http://127.0.0.1:{http}");
    common::wait_ready(&http_url).await;
    let mut updated = fake.fake.user_json(&ids[4]).unwrap();
    updated["private_metadata"] = json!({"ssn": PLANTED_BY_WEBHOOK});
    updated["updated_at"] = json!(updated["updated_at"].as_i64().unwrap() + 1000);
    let event = common::event("user.updated", updated, clerk_index::clock::now_ms());
    assert_eq!(common::deliver(&http_url, "msg_log_1", &event).await.0, 200);
    // A delivery with a bad signature is logged as refused; its body must not be.
    let bad = reqwest::Client::new()
        .post(format!("{http_url}/webhooks/clerk"))
        .header("svix-id", "msg_bad")
        .header(
            "svix-timestamp",
            (clerk_index::clock::now_ms() / 1000).to_string(),
        )
        .header("svix-signature", "v1,AAAA")
        .body(event.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 401);

    let channel = Channel::from_shared(format!("http://127.0.0.1:{grpc}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut client = UserIndexClient::new(authed(&channel, &key));
    assert_eq!(
        count_with(&mut client, Some(&format!(r#"private.ssn = "{PLANTED}""#)))
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        count_with(
            &mut client,
            Some(&format!(r#"private.ssn = "{PLANTED_BY_WEBHOOK}""#))
        )
        .await
        .unwrap(),
        1
    );
    assert!(
        count_with(&mut client, Some(&format!(r#"private.ssn > "{PLANTED}""#)))
            .await
            .is_err()
    );
    let unbalanced = format!(r#"private.ssn = "{PLANTED}" AND ("#);
    assert!(count_with(&mut client, Some(&unbalanced)).await.is_err());
    assert_eq!(
        user_json(&mut client, &ids[3]).await["private_metadata"]["ssn"],
        PLANTED
    );

    // Stop it the way Kubernetes does, so everything it would log is logged.
    sigterm(child.id());
    let status = child.wait().unwrap();
    assert!(status.success(), "{status:?}");
    let logs = std::fs::read_to_string(&log_path).unwrap();
    assert!(
        logs.contains("index opened"),
        "the logs were captured: {logs}"
    );
    for secret in [PLANTED, PLANTED_BY_WEBHOOK] {
        assert!(!logs.contains(secret), "{secret} appears in the logs");
    }
    assert!(!logs.contains(&key), "the API key appears in the logs");
}

fn sigterm(pid: u32) {
    let status = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_key_ring_file_is_followed_while_serving() {
    let fake = RunningFakeClerk::start(FakeClerkConfig::new(Population::new(60))).await;
    let dir = tempfile::tempdir().unwrap();
    let (blind, k1, k2) = (
        generate_key_line("blind-index"),
        generate_key_line("k1"),
        generate_key_line("k2"),
    );
    let file = dir.path().join("sensitive-keys");
    let replace = |text: String| {
        let next = dir.path().join("sensitive-keys.next");
        std::fs::write(&next, text).unwrap();
        std::fs::rename(&next, &file).unwrap();
    };
    replace(format!("{blind}\n{k1}\n"));
    let mut options = TestOptions::new(&fake.url);
    options.sensitive = Some(sensitive(&std::fs::read_to_string(&file).unwrap()));
    options.sensitive_keys_file = Some(file.clone());
    let server = TestServer::start(&dir.path().join("data"), options).await;
    server.wait_serving().await;
    let id = fake.fake.user_ids()[3].clone();
    let mut user = fake.fake.user_json(&id).unwrap();
    user["private_metadata"]["ssn"] = json!(PLANTED);
    user["updated_at"] = json!(user["updated_at"].as_i64().unwrap() + 1000);
    let event = common::event("user.updated", user, clerk_index::clock::now_ms());
    assert_eq!(server.deliver("msg_ring_1", &event).await.0, 200);
    let reloads = |outcome: &str| {
        format!(
            "clerk_index_config_reloads_total{{file=\"sensitive_keys\",outcome=\"{outcome}\"}} 1"
        )
    };
    let wait_for = async |line: String| {
        for _ in 0..100 {
            if server.metrics_text().await.contains(&line) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("never counted: {line}");
    };
    // k2 becomes active without a restart: a re-encryption moves the value to it.
    replace(format!("{blind}\n{k2}\n{k1}\n"));
    wait_for(reloads("applied")).await;
    let mut admin = SyncClient::new(server.channel().await);
    let done = admin
        .reencrypt_sensitive(ReencryptSensitiveRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(done.active_key_id, "k2");
    assert!(done.users_resealed >= 1);
    // Another blind-index key would make every token wrong: refused, the ring in force stays.
    replace(format!(
        "{}\n{k2}\n{k1}\n",
        generate_key_line("blind-index")
    ));
    wait_for(reloads("refused")).await;
    let shown = server.user_json(&id).await.unwrap();
    assert_eq!(shown["private_metadata"]["ssn"], PLANTED);
    assert_eq!(
        server.count(&format!(r#"private.ssn = "{PLANTED}""#)).await,
        1
    );
    server.stop().await;
}
