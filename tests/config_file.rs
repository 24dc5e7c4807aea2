//! `--config FILE`: settings from a TOML file, overridden by the environment, overridden by the
//! command line; unknown settings, secrets and bad values refused with messages that say where.

use std::process::{Command, Output};

fn config_command(file: &str, env: &[(&str, &str)], flags: &[&str]) -> Output {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("clerk-index.toml");
    std::fs::write(&path, file).unwrap();
    let mut command = Command::new(env!("CARGO_BIN_EXE_clerk-index"));
    command.arg("config").arg("--config").arg(&path).args(flags);
    for name in [
        "CLERK_INDEX_WRITER_MEMORY_MB",
        "CLERK_INDEX_COMMIT_INTERVAL_MS",
        "CLERK_INDEX_CLERK_RATE_LIMIT",
        "CLERK_INDEX_ALLOW_UNAUTHENTICATED",
        "CLERK_INDEX_API_KEYS",
        "CLERK_INDEX_CONFIG",
    ] {
        command.env_remove(name);
    }
    command.env("CLERK_SECRET_KEY", "sk_test_config_file");
    for (name, value) in env {
        command.env(name, value);
    }
    command.output().unwrap()
}

fn effective(output: &Output) -> serde_json::Value {
    assert!(output.status.success(), "{output:?}");
    serde_json::from_slice(&output.stdout).unwrap()
}

#[test]
fn the_file_sets_what_flags_and_environment_leave_alone() {
    let file = r#"
        writer-memory-mb = 64
        commit_interval_ms = 500
        clerk-rate-limit = "100/10s"
        max-page-size = 250
        allow-unauthenticated = true
    "#;
    let config = effective(&config_command(file, &[], &[]));
    assert_eq!(config["index"]["writer_memory_mb"], 64);
    assert_eq!(config["index"]["commit_interval_ms"], 500);
    assert_eq!(config["clerk"]["rate_limit"], "100/10s");
    assert_eq!(config["max_page_size"], 250);
    assert_eq!(config["auth"]["allow_unauthenticated"], true);
    assert!(
        config["config_file"]
            .as_str()
            .unwrap()
            .ends_with("clerk-index.toml")
    );

    // The environment wins over the file, the command line over both.
    let config = effective(&config_command(
        file,
        &[
            ("CLERK_INDEX_COMMIT_INTERVAL_MS", "700"),
            ("CLERK_INDEX_WRITER_MEMORY_MB", "96"),
        ],
        &["--writer-memory-mb", "128"],
    ));
    assert_eq!(config["index"]["commit_interval_ms"], 700);
    assert_eq!(config["index"]["writer_memory_mb"], 128);
    assert_eq!(config["max_page_size"], 250);

    // Without the file, the defaults (and no keys means refusing to start).
    let output = config_command("", &[], &[]);
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("no API keys configured"));
}

#[test]
fn bad_config_files_are_refused_with_the_reason() {
    let refused = |file: &str| {
        let output = config_command(file, &[], &[]);
        assert_eq!(output.status.code(), Some(2), "{output:?}");
        String::from_utf8_lossy(&output.stderr).into_owned()
    };
    let message = refused("writer-memory = 64\n");
    assert!(
        message.contains("unknown setting \"writer-memory\""),
        "{message}"
    );
    assert!(
        message.contains("writer-memory-mb"),
        "lists the settings: {message}"
    );
    assert!(
        message.contains("clerk-index.toml"),
        "names the file: {message}"
    );

    let secret = "sk_live_should_never_be_in_a_file";
    let message = refused(&format!("clerk-secret-key = \"{secret}\"\n"));
    assert!(
        message.contains("secrets are never read from the config file"),
        "{message}"
    );
    assert!(!message.contains(secret), "{message}");

    let message = refused("writer-memory-mb = \"lots\"\n");
    assert!(
        message.contains("invalid value 'lots' for '--writer-memory-mb"),
        "{message}"
    );
    assert!(
        message.contains("the config file added: --writer-memory-mb lots"),
        "{message}"
    );

    let message = refused("writer-memory-mb = \n");
    assert!(message.contains("TOML parse error at line 1"), "{message}");

    let message = refused("allow-unauthenticated = \"yes\"\n");
    assert!(
        message.contains("allow-unauthenticated must be true or false"),
        "{message}"
    );
}
