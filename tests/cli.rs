//! The client commands against a running server: every command that prints data prints JSON a
//! program can parse (`-o json`, `-o jsonl`) and CSV with a header, data goes to stdout only, and
//! the exit codes tell a server error (1), a usage error (2) and no server (3) apart. Completions
//! and man pages come from the same definitions.

mod common;

use std::process::Output;

use common::TestServer;
use serde_json::{Value, json};

/// Runs the binary; a command still running after 60 s (e.g. a `watch` whose events never
/// come) is killed and fails the test instead of hanging it.
fn run(args: &[&str]) -> Output {
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_clerk-index"))
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id().to_string();
    let (done, output) = std::sync::mpsc::channel();
    std::thread::spawn(move || done.send(child.wait_with_output().unwrap()));
    match output.recv_timeout(std::time::Duration::from_secs(60)) {
        Ok(output) => output,
        Err(_) => {
            let _ = std::process::Command::new("kill")
                .args(["-9", &pid])
                .status();
            panic!("{args:?} did not finish within 60 s");
        }
    }
}

/// Runs a command against `server`, expects success and parses stdout as one JSON document.
fn json(server: &str, args: &[&str]) -> Value {
    let mut all = args.to_vec();
    all.extend(["--server", server, "-o", "json"]);
    let output = run(&all);
    assert!(output.status.success(), "{args:?}: {output:?}");
    serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|e| panic!("{args:?}: {e}: {}", String::from_utf8_lossy(&output.stdout)))
}

/// As [`json`], for `-o jsonl`: one JSON value per line.
fn jsonl(server: &str, args: &[&str]) -> Vec<Value> {
    let mut all = args.to_vec();
    all.extend(["--server", server, "-o", "jsonl"]);
    let output = run(&all);
    assert!(output.status.success(), "{args:?}: {output:?}");
    String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{line}: {e}")))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_client_command_prints_parseable_json_and_csv() {
    let dir = tempfile::tempdir().unwrap();
    let (fake, server) = TestServer::with_population(dir.path(), 60).await;
    let url = server.grpc_url.clone();
    let total = fake.users().len();
    let url = url.as_str();
    tokio::task::spawn_blocking({
        let url = url.to_string();
        move || check_commands(&url, total)
    })
    .await
    .unwrap();
    server.stop().await;
}

fn check_commands(url: &str, total: usize) {
    // count: the proto3 JSON form (uint64 as a string).
    let count = json(url, &["count"]);
    assert_eq!(count["count"], total.to_string());

    // search --all follows every page; jsonl is one user per line.
    let users = jsonl(
        url,
        &["search", "--all", "--page-size", "7", "--fields", "id"],
    );
    assert_eq!(users.len(), total);
    let mut ids: Vec<&str> = users.iter().map(|u| u["id"].as_str().unwrap()).collect();
    ids.dedup();
    assert_eq!(ids.len(), total, "pages overlap");
    let page = json(url, &["search", "--page-size", "5"]);
    assert_eq!(page["users"].as_array().unwrap().len(), 5);
    assert!(!page["nextPageToken"].as_str().unwrap().is_empty());

    // get: the user's JSON.
    let id = ids[3];
    let user = json(url, &["get", id]);
    assert_eq!(user["id"], id);

    // fields: the catalog.
    let fields = json(url, &["fields", "--prefix", "public."]);
    assert!(
        fields["fields"]
            .as_array()
            .unwrap()
            .iter()
            .all(|f| f["path"].as_str().unwrap().starts_with("public.")),
        "{fields}"
    );

    // segments: create, list, get, update with a stale version (exit 1) and a current one,
    // count, delete.
    let created = json(
        url,
        &[
            "segments",
            "create",
            "everyone",
            "--filter",
            "banned = true",
        ],
    );
    assert_eq!(created["name"], "everyone");
    let listed = jsonl(url, &["segments", "list"]);
    assert_eq!(listed.len(), 1);
    assert_eq!(
        json(url, &["segments", "get", "everyone"])["version"],
        created["version"]
    );
    let stale = run(&[
        "segments",
        "update",
        "everyone",
        "--description",
        "x",
        "--expected-version",
        "99",
        "--server",
        url,
    ]);
    assert_eq!(stale.status.code(), Some(1), "{stale:?}");
    assert!(String::from_utf8_lossy(&stale.stderr).contains("VERSION_MISMATCH"));
    assert!(stale.stdout.is_empty(), "errors go to stderr");
    let version = created["version"].as_str().unwrap().to_string();
    let updated = json(
        url,
        &[
            "segments",
            "update",
            "everyone",
            "--filter",
            "id EXISTS",
            "--expected-version",
            &version,
        ],
    );
    assert_ne!(updated["version"], created["version"]);
    assert_eq!(
        json(url, &["segments", "count", "everyone"])["count"],
        total.to_string()
    );
    let of = json(url, &["segments", "of", id]);
    assert_eq!(of["segments"], serde_json::json!(["everyone"]), "{of}");

    // watch: replays the retained events (the edit, then users entering) and stops after
    // --limit.
    let events = jsonl(url, &["watch", "everyone", "--after", "0", "--limit", "3"]);
    assert_eq!(events.len(), 3);
    assert!(
        events.iter().all(|e| e["segment"] == "everyone"),
        "{events:?}"
    );
    json(url, &["segments", "delete", "everyone"]);
    assert!(jsonl(url, &["segments", "list"]).is_empty());

    // sync status and reconcile.
    let status = json(url, &["sync", "status"]);
    assert_eq!(status["backfill"]["complete"], true, "{status}");
    let reconcile = json(url, &["sync", "reconcile", "--kind", "catch-up"]);
    assert!(reconcile.get("catchUp").is_some(), "{reconcile}");

    // CSV: a header row, then one row per user.
    let output = run(&[
        "search",
        "--all",
        "--server",
        url,
        "-o",
        "csv",
        "--fields",
        "public.plan_type",
    ]);
    assert!(output.status.success(), "{output:?}");
    let text = String::from_utf8(output.stdout).unwrap();
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("id,email,name,public.plan_type"));
    assert_eq!(lines.count(), total);
    let output = run(&["facet", "--server", url, "--terms", "banned", "-o", "csv"]);
    let text = String::from_utf8(output.stdout).unwrap();
    assert!(
        text.starts_with("facet,key,count,value\n(matched),,"),
        "{text}"
    );
}

#[test]
fn exit_codes_tell_usage_errors_and_unreachable_servers_apart() {
    let usage = run(&["count", "--no-such-flag"]);
    assert_eq!(usage.status.code(), Some(2), "{usage:?}");
    let nothing = run(&["count", "--server", "http://127.0.0.1:9"]);
    assert_eq!(nothing.status.code(), Some(3), "{nothing:?}");
    assert!(nothing.stdout.is_empty());
}

#[test]
fn completions_and_man_pages_cover_every_command() {
    for shell in ["bash", "zsh", "fish"] {
        let output = run(&["completions", shell]);
        assert!(output.status.success(), "{shell}: {output:?}");
        let script = String::from_utf8(output.stdout).unwrap();
        // fish spells a long option `-l output`, bash and zsh `--output`.
        let output_option = if shell == "fish" {
            "-l output"
        } else {
            "--output"
        };
        for command in [
            "count",
            "search",
            "segments",
            "watch",
            "sync",
            output_option,
        ] {
            assert!(
                script.contains(command),
                "{shell} completions lack {command}"
            );
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let output = run(&["man", dir.path().to_str().unwrap()]);
    assert!(output.status.success(), "{output:?}");
    let main = std::fs::read_to_string(dir.path().join("clerk-index.1")).unwrap();
    assert!(main.contains(".TH clerk-index"), "{main}");
    assert!(dir.path().join("clerk-index-segments.1").exists());
}

/// Every option of every command has help text.
#[test]
fn every_option_has_help() {
    use clap::CommandFactory;
    fn walk(command: &clap::Command, path: &str, missing: &mut Vec<String>) {
        for arg in command.get_arguments() {
            let builtin = matches!(arg.get_id().as_str(), "help" | "version");
            if !builtin && arg.get_help().is_none() && arg.get_long_help().is_none() {
                missing.push(format!("{path} {}", arg.get_id()));
            }
        }
        for sub in command.get_subcommands() {
            walk(sub, &format!("{path} {}", sub.get_name()), missing);
        }
    }
    let mut missing = Vec::new();
    walk(
        &clerk_index::cli::Cli::command(),
        "clerk-index",
        &mut missing,
    );
    assert!(missing.is_empty(), "options without help: {missing:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn organization_paths_filter_and_facet_and_metadata_is_written_through() {
    use clerk_index::clerk::fake::{FakeClerkConfig, Population};
    let dir = tempfile::tempdir().unwrap();
    let fake = common::RunningFakeClerk::start(FakeClerkConfig::new(
        Population::new(200).with_organizations(),
    ))
    .await;
    let server = TestServer::start(dir.path(), common::TestOptions::new(&fake.url)).await;
    server.wait_serving().await;
    let memberships = fake.fake.memberships();
    let (org_id, member, _) = memberships[0].clone();
    let members = memberships.iter().filter(|(o, _, _)| *o == org_id).count();
    let admins = server.count(r#"org[role = "org:admin"]"#).await;
    let url = server.grpc_url.clone();
    tokio::task::spawn_blocking(move || {
        let url = url.as_str();
        // Bracketed and plain org paths filter; org paths facet.
        let count = json(url, &["count", "--filter", r#"org[role = "org:admin"]"#]);
        assert_eq!(count["count"], admins.to_string());
        let facet = json(
            url,
            &["facet", "--terms", "org_count", "--terms", "org.role"],
        );
        let facets = facet["facets"].as_array().unwrap();
        assert_eq!(facets.len(), 2, "{facet}");
        // An organization's metadata, written through, is read back by every member at once.
        let org = json(
            url,
            &[
                "update-metadata",
                "--organization",
                &org_id,
                "--public",
                r#"{"plan": "from_the_cli"}"#,
            ],
        );
        assert_eq!(org["public_metadata"]["plan"], "from_the_cli", "{org}");
        let filter = format!(r#"org[id = "{org_id}" AND public.plan = "from_the_cli"]"#);
        let count = json(url, &["count", "--filter", &filter]);
        assert_eq!(count["count"], members.to_string());
        // And a user's.
        let user = json(
            url,
            &[
                "update-metadata",
                "--user",
                &member,
                "--public",
                r#"{"tier": "cli"}"#,
            ],
        );
        assert_eq!(user["public_metadata"]["tier"], "cli", "{user}");
        // Usage errors: not an object; unsafe metadata on an organization; no target.
        for args in [
            vec!["update-metadata", "--user", &member, "--public", "[1]"],
            vec![
                "update-metadata",
                "--organization",
                &org_id,
                "--unsafe",
                "{}",
            ],
            vec!["update-metadata", "--public", "{}"],
        ] {
            let mut all = args.clone();
            all.extend(["--server", url]);
            let output = run(&all);
            assert_eq!(output.status.code(), Some(2), "{args:?}: {output:?}");
        }
    })
    .await
    .unwrap();
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_reports_each_query_of_its_mix_with_the_servers_own_time() {
    let dir = tempfile::tempdir().unwrap();
    let (fake, server) = TestServer::with_population(dir.path(), 400).await;
    let total = fake.users().len();
    let mix = dir.path().join("mix.json");
    std::fs::write(
        &mix,
        r#"[
          {"name": "pro", "kind": "count", "filter": "public.plan_type = \"pro\""},
          {"name": "top", "kind": "search", "sort": "-public.points", "page_size": 5},
          {"name": "plans", "kind": "facet", "terms": "public.plan_type"},
          {"name": "names", "kind": "export", "filter": "public.plan_type = \"pro\"", "fields": ["id", "first_name"]},
          {"name": "broken", "kind": "count", "filter": "public.plan_type = "}
        ]"#,
    )
    .unwrap();
    let (url, metrics) = (
        server.grpc_url.clone(),
        format!("{}/metrics", server.http_url),
    );
    let mix = mix.to_str().unwrap().to_string();
    tokio::task::spawn_blocking(move || {
        let pro: u64 = json(&url, &["count", "-f", "public.plan_type = \"pro\""])["count"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
        let base = ["bench", "--mix", &mix, "--duration", "1"];
        let mut args = base.to_vec();
        args.extend([
            "--warmup",
            "0.2",
            "--concurrency",
            "3",
            "--connections",
            "2",
        ]);
        args.extend(["--metrics", &metrics]);
        let saturated = json(&url, &args);
        let query = |name: &str| {
            saturated["queries"]
                .as_array()
                .unwrap()
                .iter()
                .find(|q| q["name"] == name)
                .unwrap()
                .clone()
        };
        for (name, answer) in [
            ("pro", pro),
            ("top", 5),
            ("plans", total as u64),
            ("names", pro),
        ] {
            let q = query(name);
            assert!(q["calls"].as_u64().unwrap() > 0, "{q}");
            assert_eq!(q["errors"], 0, "{q}");
            assert_eq!(q["answer"], answer, "{q}");
            assert!(q["p50_ms"].as_f64().unwrap() <= q["p99_ms"].as_f64().unwrap());
        }
        let broken = query("broken");
        assert_eq!(broken["calls"], 0);
        assert!(broken["errors"].as_u64().unwrap() > 0);
        assert!(
            broken["first_error"]
                .as_str()
                .unwrap()
                .starts_with("InvalidArgument")
        );
        // The server's own time, from its metrics, counts the same calls but for those crossing
        // the edges of the window (the first scrape is not instant).
        let methods = saturated["server_methods"].as_array().unwrap();
        let counted = |method: &str| {
            methods
                .iter()
                .find(|m| m["method"] == method)
                .map_or(0.0, |m| m["calls"].as_f64().unwrap())
        };
        for (method, name) in [("CountUsers", "pro"), ("ExportUsers", "names")] {
            let (server, client) = (counted(method), query(name)["calls"].as_f64().unwrap());
            assert!(
                (server - client).abs() <= 20.0,
                "{method}: {server} vs {client}"
            );
        }
        assert!(saturated["server_cpu_cores"].as_f64().unwrap() > 0.0);

        // On a schedule: 40 calls a second for one second are exactly 40 calls.
        let mut args = base.to_vec();
        args.extend(["--warmup", "0", "--rate", "40"]);
        let scheduled = json(&url, &args);
        assert_eq!(scheduled["calls"], 40, "{scheduled}");
        assert_eq!(
            (scheduled["rate"].clone(), scheduled["not_sent"].clone()),
            (json!(40.0), json!(0))
        );

        // A rate no single caller can keep: the run still ends with its window, and the calls it
        // could not send are counted rather than sent late.
        let mut args = base.to_vec();
        args.extend(["--warmup", "0", "--rate", "100000", "--concurrency", "1"]);
        let started = std::time::Instant::now();
        let behind = json(&url, &args);
        assert!(started.elapsed().as_secs() < 20, "{:?}", started.elapsed());
        let (sent, missed) = (
            behind["calls"].as_u64().unwrap(),
            behind["not_sent"].as_u64().unwrap(),
        );
        assert!(missed > 0 && sent + missed == 100_000, "{behind}");
    })
    .await
    .unwrap();
    server.stop().await;
}
