//! `--config FILE` (or `CLERK_INDEX_CONFIG`): an optional TOML file of `serve`/`demo` settings,
//! keyed by the long flag names (`writer-memory-mb = 128` or `writer_memory_mb = 128`).
//!
//! Precedence, highest first: command line, `CLERK_INDEX_*` environment, the file, defaults.
//! The file is turned into command-line arguments for every setting the command line and the
//! environment left alone, and the command line is parsed again: one parser, one set of
//! messages. Secrets (the Clerk secret key, signing secrets, API keys, sensitive-value keys) are
//! not flags and cannot be in the file; their `*-file` options, which name files, can.

use std::ffi::OsString;

use clap::parser::ValueSource;
use clap::{ArgAction, ArgMatches, CommandFactory};

use super::command::Cli;

/// The subcommands that read a config file.
const WITH_CONFIG_FILE: [&str; 3] = ["serve", "config", "demo"];
const CONFIG_ARG: &str = "config";

/// A config file that cannot be used, and why.
#[derive(Debug, thiserror::Error)]
pub enum ConfigFileError {
    #[error("cannot read the config file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("config file {path}: {problem}")]
    Invalid { path: String, problem: String },
}

/// Parses the command line, merging in the config file when one is named. Exits with clap's
/// message on bad arguments, like `Cli::parse`.
pub fn parse() -> Cli {
    let argv: Vec<OsString> = std::env::args_os().collect();
    let given = argv.len();
    let merged = match with_config_file(argv) {
        Ok(merged) => merged,
        Err(message) => {
            eprintln!("clerk-index: {message}");
            std::process::exit(2);
        }
    };
    let from_file = merged[given..].to_vec();
    match <Cli as clap::Parser>::try_parse_from(merged) {
        Ok(cli) => cli,
        Err(error) => {
            if !from_file.is_empty() && error.use_stderr() {
                let _ = error.print();
                eprintln!(
                    "(the config file added: {})",
                    from_file
                        .iter()
                        .map(|a| a.to_string_lossy())
                        .collect::<Vec<_>>()
                        .join(" ")
                );
                std::process::exit(error.exit_code());
            }
            error.exit()
        }
    }
}

/// `argv` with the config file's settings appended, or unchanged without a config file.
pub fn with_config_file(argv: Vec<OsString>) -> Result<Vec<OsString>, ConfigFileError> {
    let command = Cli::command();
    // Bad arguments are reported by the final parse, with the file's settings in place.
    let Ok(matches) = command.clone().try_get_matches_from(&argv) else {
        return Ok(argv);
    };
    let Some((name, sub_matches)) = matches.subcommand() else {
        return Ok(argv);
    };
    if !WITH_CONFIG_FILE.contains(&name) {
        return Ok(argv);
    }
    let Some(path) = sub_matches.get_one::<std::path::PathBuf>(CONFIG_ARG) else {
        return Ok(argv);
    };
    let subcommand = command
        .find_subcommand(name)
        .expect("the parsed subcommand exists");
    let text = std::fs::read_to_string(path).map_err(|source| ConfigFileError::Read {
        path: path.display().to_string(),
        source,
    })?;
    let extra = arguments_from_file(&text, subcommand, sub_matches).map_err(|problem| {
        ConfigFileError::Invalid {
            path: path.display().to_string(),
            problem,
        }
    })?;
    let mut argv = argv;
    argv.extend(extra.into_iter().map(OsString::from));
    Ok(argv)
}

/// The arguments the file adds: one per setting not given on the command line or in the
/// environment.
fn arguments_from_file(
    text: &str,
    subcommand: &clap::Command,
    given: &ArgMatches,
) -> Result<Vec<String>, String> {
    let table: toml::Table = text.parse().map_err(|e: toml::de::Error| e.to_string())?;
    let mut arguments = Vec::new();
    for (key, value) in &table {
        let long = key.replace('_', "-");
        let Some(arg) = subcommand
            .get_arguments()
            .find(|arg| arg.get_long() == Some(long.as_str()) && long != CONFIG_ARG)
        else {
            return Err(unknown_key(key, subcommand));
        };
        let overridden = matches!(
            given.value_source(arg.get_id().as_str()),
            Some(ValueSource::CommandLine | ValueSource::EnvVariable)
        );
        if overridden {
            continue;
        }
        let flag = format!("--{long}");
        match (arg.get_action(), value) {
            (ArgAction::SetTrue, toml::Value::Boolean(on)) => {
                if *on {
                    arguments.push(flag);
                }
            }
            (ArgAction::SetTrue, _) => return Err(format!("{key} must be true or false")),
            (_, toml::Value::Array(items)) => {
                let items = items
                    .iter()
                    .map(|item| scalar(key, item))
                    .collect::<Result<Vec<_>, _>>()?;
                if matches!(arg.get_action(), ArgAction::Append) {
                    for item in items {
                        arguments.extend([flag.clone(), item]);
                    }
                } else {
                    // Lists given on the command line are comma-separated.
                    let delimiter = arg.get_value_delimiter().unwrap_or(',');
                    arguments.extend([flag, items.join(&delimiter.to_string())]);
                }
            }
            (_, value) => arguments.extend([flag, scalar(key, value)?]),
        }
    }
    Ok(arguments)
}

fn scalar(key: &str, value: &toml::Value) -> Result<String, String> {
    match value {
        toml::Value::String(text) => Ok(text.clone()),
        toml::Value::Integer(n) => Ok(n.to_string()),
        toml::Value::Float(x) => Ok(x.to_string()),
        toml::Value::Boolean(b) => Ok(b.to_string()),
        other => Err(format!(
            "{key}: a {} is not a setting value",
            other.type_str()
        )),
    }
}

fn unknown_key(key: &str, subcommand: &clap::Command) -> String {
    let secret = ["secret", "signing", "api-keys", "sensitive-keys", "key"]
        .iter()
        .any(|word| key.replace('_', "-").contains(word));
    let mut known: Vec<&str> = subcommand
        .get_arguments()
        .filter_map(|arg| arg.get_long())
        .filter(|long| *long != CONFIG_ARG && *long != "help")
        .collect();
    known.sort_unstable();
    if secret {
        format!(
            "unknown setting {key:?}: secrets are never read from the config file; set \
             CLERK_SECRET_KEY, CLERK_WEBHOOK_SIGNING_SECRET, CLERK_INDEX_API_KEYS or \
             CLERK_INDEX_SENSITIVE_KEYS in the environment, or name a file with \
             api-keys-file / sensitive-keys-file"
        )
    } else {
        format!(
            "unknown setting {key:?} for `clerk-index {}` (settings: {})",
            subcommand.get_name(),
            known.join(", ")
        )
    }
}
