//! The web console in a real browser: headless Chromium (Debian's package, driven through
//! chromium-driver by Selenium in `tests/browser/console_test.py`) against a live server and the
//! fake Clerk, with a key holding every scope and one holding only `public`, and a user whose
//! name is markup. `scripts/install-browser` (run by the test command) installs all three.
//! Screenshots of the main views land in `target/console-screenshots/`.

mod common;

use std::path::PathBuf;
use std::time::Duration;

use clerk_index::clerk::fake::{FakeClerkConfig, Population, WebhookTarget};
use common::{RunningFakeClerk, TestOptions, TestServer};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_works_in_a_real_browser() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let python = root.join("tests/browser/.venv/bin/python");
    assert!(
        python.exists(),
        "{} is missing: run scripts/install-browser (the test command does)",
        python.display()
    );
    let fake = RunningFakeClerk::start(FakeClerkConfig::new(Population::new(1_500))).await;
    let xss = common::clerk_api(
        &fake.url,
        reqwest::Method::POST,
        "/v1/users",
        Some(json!({
            "email_address": ["markup@example.com"],
            "first_name": "<img src=x onerror=alert(1)>",
            "public_metadata": {"membership_tier": "bronze"},
        })),
    )
    .await;
    let mut options = TestOptions::new(&fake.url);
    let [everything, public]: [String; 2] = common::with_keys(
        &mut options,
        &[
            ("console", "public,private,unsafe,segments,write"),
            ("reader", "public"),
        ],
    )
    .try_into()
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path(), options).await;
    server.wait_serving().await;
    let mut target = WebhookTarget::new(
        format!("{}/webhooks/clerk", server.http_url),
        common::WEBHOOK_SECRET,
    );
    target.retry_scale = 0.001;
    fake.fake.set_webhook_target(target).unwrap();

    let screenshots = root.join("target/console-screenshots");
    let _ = std::fs::remove_dir_all(&screenshots);
    let mut child = tokio::process::Command::new(&python)
        .arg(root.join("tests/browser/console_test.py"))
        .env("CONSOLE_URL", &server.http_url)
        .env("CLERK_INDEX_API_KEY", &everything)
        .env("CLERK_INDEX_PUBLIC_KEY", &public)
        .env("FAKE_CLERK_URL", &fake.url)
        .env("XSS_USER_ID", xss["id"].as_str().unwrap())
        .env("SCREENSHOT_DIR", &screenshots)
        .kill_on_drop(true)
        .spawn()
        .expect("start the browser test");
    let status = tokio::time::timeout(Duration::from_secs(300), child.wait())
        .await
        .expect("the browser test ran past 5 minutes")
        .unwrap();
    assert!(status.success(), "the browser test failed: {status}");
    server.stop().await;
}
