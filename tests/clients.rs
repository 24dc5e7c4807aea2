//! The client packages against a live server on loopback: the Python package's tests and README
//! examples (pytest), and the TypeScript package's tests and README examples (node --test), each
//! with a key holding every scope and one holding only `public`. Each package's tests run twice,
//! over gRPC on the gRPC port and over the JSON API (Connect protocol) on the HTTP port. Their
//! dependencies come from `scripts/install-client-deps` (the test command runs it first).

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use clerk_index::clerk::fake::{FakeClerkConfig, Population};
use common::{RunningFakeClerk, TestOptions, TestServer};

const USERS: usize = 3_000;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

struct Keys {
    everything: String,
    public: String,
}

async fn serve(dir: &Path) -> (RunningFakeClerk, TestServer, Keys) {
    let fake = RunningFakeClerk::start(FakeClerkConfig::new(
        Population::new(USERS).with_organizations(),
    ))
    .await;
    let mut options = TestOptions::new(&fake.url);
    let [everything, public]: [String; 2] = common::with_keys(
        &mut options,
        &[
            ("clients", "public,private,unsafe,segments,write,admin"),
            ("reader", "public"),
        ],
    )
    .try_into()
    .unwrap();
    // Heartbeats on quiet JSON streams every 200 ms, so the clients' watches and exports meet
    // them between events.
    options.limits.stream_heartbeat = Duration::from_millis(200);
    let server = TestServer::start(dir, options).await;
    server.wait_serving().await;
    (fake, server, Keys { everything, public })
}

#[derive(Clone, Copy, Debug)]
enum Protocol {
    Grpc,
    Connect,
}

/// Runs a client test command against a server of its own (the tests write metadata and
/// segments), with its addresses and keys and the protocol the tests call, killing it after 5
/// minutes.
async fn run(program: &Path, args: &[&str], cwd: &Path, protocol: Protocol) {
    let dir = tempfile::tempdir().unwrap();
    let (_fake, server, keys) = serve(dir.path()).await;
    assert!(
        program.exists(),
        "{} is missing: run scripts/install-client-deps (the test command does)",
        program.display()
    );
    let address = server.grpc_url.trim_start_matches("http://").to_string();
    let http = server.http_url.trim_start_matches("http://").to_string();
    let protocol_name = match protocol {
        Protocol::Grpc => "grpc",
        Protocol::Connect => "connect",
    };
    let mut child = tokio::process::Command::new(program)
        .args(args)
        .current_dir(cwd)
        .env("CLERK_INDEX_SERVER", &address)
        .env("CLERK_INDEX_HTTP", &http)
        .env("CLERK_INDEX_PROTOCOL", protocol_name)
        .env("CLERK_INDEX_API_KEY", &keys.everything)
        .env("CLERK_INDEX_PUBLIC_KEY", &keys.public)
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", program.display()));
    let status = tokio::time::timeout(Duration::from_secs(300), child.wait())
        .await
        .unwrap_or_else(|_| panic!("{} {args:?} ran past 5 minutes", program.display()))
        .unwrap();
    assert!(
        status.success(),
        "{} {args:?} over {protocol:?}: {status}",
        program.display()
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_python_client_passes_its_tests_and_readme_examples() {
    let package = root().join("clients/python");
    let python = package.join(".venv/bin/python");
    let args = ["-m", "pytest", "-q", "-p", "no:cacheprovider", "tests"];
    run(&python, &args, &package, Protocol::Grpc).await;
    // The README's examples ran above; the client's own tests again over JSON.
    let args = [
        "-m",
        "pytest",
        "-q",
        "-p",
        "no:cacheprovider",
        "tests/test_client.py",
    ];
    run(&python, &args, &package, Protocol::Connect).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_typescript_client_passes_its_tests_and_readme_examples() {
    let package = root().join("clients/typescript");
    let node = PathBuf::from("/usr/bin/env");
    let args = [
        "node",
        "--import",
        "tsx",
        "--test",
        "test/client.test.ts",
        "test/readme.test.ts",
    ];
    assert!(
        package.join("node_modules/tsx").exists(),
        "run scripts/install-client-deps"
    );
    run(&node, &args, &package, Protocol::Grpc).await;
    // The README's examples ran above; the client's own tests again over JSON.
    run(&node, &args[..5], &package, Protocol::Connect).await;
}

#[test]
fn the_committed_stubs_match_the_protos() {
    let status = std::process::Command::new(root().join("clients/generate"))
        .arg("--check")
        .status()
        .unwrap();
    assert!(
        status.success(),
        "run clients/generate and commit the stubs"
    );
}
