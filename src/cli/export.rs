//! `clerk-index export`: streams every user of a filter or saved segment into a JSON-lines or
//! CSV file, with a progress bar, resuming by itself after a broken stream.

use std::fs::OpenOptions;
use std::io::{BufWriter, Write};
use std::path::PathBuf;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use serde_json::Value;
use tonic::Code;

use super::client::{ConnectArgs, channel, filter_spec, status_error};
use crate::api::proto;
use crate::api::proto::segments_client::SegmentsClient;
use crate::api::proto::user_index_client::UserIndexClient;
use crate::user::{DEFAULT_COLUMNS, column_fields, column_value};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// One Clerk user JSON object per line (reduced to --fields when given).
    Jsonl,
    /// One row per user, one column per --fields path (`email` is the primary email address).
    Csv,
}

#[derive(Debug, clap::Args)]
pub struct ExportArgs {
    #[command(flatten)]
    pub connect: ConnectArgs,
    /// Filter expression; omit (and omit --segment) to export every user.
    #[arg(long, short, conflicts_with = "segment")]
    pub filter: Option<String>,
    /// Export the members of this saved segment.
    #[arg(long)]
    pub segment: Option<String>,
    /// Output format: `jsonl` (one Clerk user JSON object per line) or `csv` (as every data
    /// command's `-o`; `--format` is the older spelling).
    #[arg(
        short = 'o',
        long = "output",
        alias = "format",
        value_enum,
        default_value = "jsonl"
    )]
    pub format: Format,
    /// Comma-separated paths to export, e.g. id,email,public.plan_type. CSV default:
    /// id,email,first_name,last_name,created_at.
    #[arg(long, value_delimiter = ',')]
    pub fields: Vec<String>,
    /// File to write; `-` (the default) is standard output.
    #[arg(long, value_name = "PATH", default_value = "-")]
    pub file: PathBuf,
    /// Users per streamed chunk.
    #[arg(long, default_value_t = 1000)]
    pub chunk_size: u32,
    /// Continue an export that stopped: the cursor it printed. Appends to --file.
    #[arg(long)]
    pub resume: Option<String>,
    /// How many times a broken stream is resumed automatically.
    #[arg(long, default_value_t = 5)]
    pub retries: u32,
    /// No progress bar (it is shown only on a terminal anyway).
    #[arg(long)]
    pub no_progress: bool,
}

/// Where users go.
enum Sink {
    Jsonl(Box<dyn Write>),
    Csv {
        writer: Box<csv::Writer<Box<dyn Write>>>,
        columns: Vec<String>,
    },
}

impl Sink {
    fn write(&mut self, user: &proto::User) -> anyhow::Result<()> {
        match self {
            Sink::Jsonl(out) => {
                out.write_all(user.json.as_bytes())?;
                out.write_all(b"\n")?;
            }
            Sink::Csv { writer, columns } => {
                let json: Value = serde_json::from_str(&user.json)?;
                let row: Vec<String> = columns.iter().map(|c| column_value(&json, c)).collect();
                writer.write_record(&row)?;
            }
        }
        Ok(())
    }

    fn flush(&mut self) -> anyhow::Result<()> {
        match self {
            Sink::Jsonl(out) => out.flush()?,
            Sink::Csv { writer, .. } => writer.flush()?,
        }
        Ok(())
    }
}

/// The paths to ask the server for, and the CSV columns.
fn plan(args: &ExportArgs) -> (Vec<String>, Vec<String>) {
    match args.format {
        Format::Jsonl => (args.fields.clone(), Vec::new()),
        Format::Csv => {
            let columns: Vec<String> = if args.fields.is_empty() {
                DEFAULT_COLUMNS.iter().map(|s| s.to_string()).collect()
            } else {
                args.fields.clone()
            };
            (column_fields(&columns), columns)
        }
    }
}

fn open_sink(args: &ExportArgs, columns: Vec<String>) -> anyhow::Result<Sink> {
    let appending = args.resume.is_some();
    let out: Box<dyn Write> = if args.file.as_os_str() == "-" {
        Box::new(BufWriter::new(std::io::stdout()))
    } else {
        let file = OpenOptions::new()
            .create(true)
            .write(true)
            .append(appending)
            .truncate(!appending)
            .open(&args.file)
            .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", args.file.display()))?;
        Box::new(BufWriter::new(file))
    };
    Ok(match args.format {
        Format::Jsonl => Sink::Jsonl(out),
        Format::Csv => {
            let mut writer = csv::Writer::from_writer(out);
            if !appending {
                writer.write_record(&columns)?;
            }
            Sink::Csv {
                writer: Box::new(writer),
                columns,
            }
        }
    })
}

type ExportStream = tonic::Streaming<proto::ExportUsersResponse>;

async fn open_stream(
    args: &ExportArgs,
    fields: &[String],
    cursor: &str,
) -> Result<ExportStream, tonic::Status> {
    let channel = channel(&args.connect)
        .await
        .map_err(|e| tonic::Status::unavailable(e.to_string()))?;
    let response = match &args.segment {
        Some(name) => {
            SegmentsClient::new(channel)
                .accept_compressed(tonic::codec::CompressionEncoding::Gzip)
                .list_segment_members(proto::ListSegmentMembersRequest {
                    name: name.clone(),
                    fields: fields.to_vec(),
                    chunk_size: args.chunk_size,
                    resume_cursor: cursor.to_string(),
                    min_generation: 0,
                    min_log_sequence: 0,
                })
                .await?
        }
        None => {
            UserIndexClient::new(channel)
                .accept_compressed(tonic::codec::CompressionEncoding::Gzip)
                .export_users(proto::ExportUsersRequest {
                    filter: filter_spec(&args.filter),
                    fields: fields.to_vec(),
                    chunk_size: args.chunk_size,
                    resume_cursor: cursor.to_string(),
                    min_generation: 0,
                    min_log_sequence: 0,
                    ids_only: false,
                })
                .await?
        }
    };
    Ok(response.into_inner())
}

/// Errors worth resuming after: the connection or the server went away.
fn retryable(status: &tonic::Status) -> bool {
    matches!(
        status.code(),
        Code::Unavailable | Code::Unknown | Code::Internal | Code::Aborted | Code::Cancelled
    )
}

pub async fn export(args: ExportArgs) -> anyhow::Result<()> {
    let (fields, columns) = plan(&args);
    let mut sink = open_sink(&args, columns)?;
    let progress = if args.no_progress {
        ProgressBar::hidden()
    } else {
        ProgressBar::new(0)
    };
    progress.set_style(
        ProgressStyle::with_template(
            "{spinner} {human_pos}/{human_len} users [{bar:40}] {per_sec} eta {eta}",
        )
        .expect("valid template")
        .progress_chars("=> "),
    );
    let mut cursor = args.resume.clone().unwrap_or_default();
    let mut exported: u64 = 0;
    let mut attempts = 0;
    loop {
        let result = async {
            let mut stream = open_stream(&args, &fields, &cursor).await?;
            let mut first = true;
            while let Some(chunk) = stream.message().await? {
                if first {
                    progress.set_length(exported + chunk.total);
                    first = false;
                }
                for user in &chunk.users {
                    sink.write(user).map_err(|e| {
                        tonic::Status::data_loss(format!("writing the output: {e}"))
                    })?;
                }
                // The cursor moves only once its users are on disk.
                sink.flush()
                    .map_err(|e| tonic::Status::data_loss(format!("writing the output: {e}")))?;
                exported += chunk.users.len() as u64;
                progress.set_position(exported);
                if !chunk.cursor.is_empty() {
                    cursor = chunk.cursor;
                }
            }
            Ok::<(), tonic::Status>(())
        }
        .await;
        match result {
            Ok(()) => break,
            Err(status) if retryable(&status) && attempts < args.retries => {
                attempts += 1;
                progress.println(format!(
                    "export interrupted ({}: {}); resuming (attempt {attempts} of {})",
                    status.code(),
                    status.message(),
                    args.retries
                ));
                tokio::time::sleep(Duration::from_millis(250 * 2u64.pow(attempts.min(5)))).await;
            }
            Err(status) => {
                progress.abandon();
                if !cursor.is_empty() {
                    eprintln!(
                        "{exported} users written; continue with: --resume {cursor} (same filter, output appended)"
                    );
                }
                return Err(status_error(status));
            }
        }
    }
    progress.finish_and_clear();
    let target = if args.file.as_os_str() == "-" {
        "standard output".to_string()
    } else {
        args.file.display().to_string()
    };
    eprintln!("exported {exported} users to {target}");
    Ok(())
}
