//! `segments ...` (saved segments), `watch` (their Entered/Exited events) and `sync ...` (the
//! mirror's freshness and repairs) against a running server.

use super::client::{ConnectArgs, channel, filter_spec, query_error, status_error};
use super::output::{Format, OutputArgs, Printed, Rows, json_of};
use crate::api::proto;
use crate::api::proto::segments_client::SegmentsClient;
use crate::api::proto::sync_client::SyncClient;

#[derive(Debug, clap::Args)]
pub struct SegmentsArgs {
    #[command(flatten)]
    pub connect: ConnectArgs,
    #[command(flatten)]
    pub output: OutputArgs,
    #[command(subcommand)]
    pub command: SegmentsCommand,
}

#[derive(Debug, clap::Subcommand)]
pub enum SegmentsCommand {
    /// Every saved segment, by name.
    List,
    /// One segment's definition.
    Get {
        /// The segment's name.
        name: String,
    },
    /// Save a filter as a named segment (needs the segments scope).
    Create {
        /// 1-64 lower-case letters, digits, - and _.
        name: String,
        /// The filter, e.g. 'last_active_at < now-30d'.
        #[arg(long, short)]
        filter: String,
        /// What the segment is for.
        #[arg(long, default_value = "")]
        description: String,
    },
    /// Change a segment's filter or description.
    Update {
        /// The segment's name.
        name: String,
        /// The new filter; omit to keep it.
        #[arg(long, short)]
        filter: Option<String>,
        /// The new description; omit to keep it.
        #[arg(long)]
        description: Option<String>,
        /// Fail (exit 1, reason VERSION_MISMATCH) unless the segment is at this version.
        #[arg(long, default_value_t = 0)]
        expected_version: u64,
    },
    /// Delete a segment.
    Delete {
        /// The segment's name.
        name: String,
    },
    /// The number of users in a segment now.
    Count {
        /// The segment's name.
        name: String,
    },
    /// The segments one user is in now.
    Of {
        /// The user's Clerk id (user_...).
        user_id: String,
    },
    /// A segment's size, entries and exits per day (or --hourly for the last week), with a
    /// sparkline of its size.
    History {
        /// The segment's name.
        name: String,
        /// Per hour instead of per day.
        #[arg(long)]
        hourly: bool,
    },
}

/// The values as a line of block characters, lowest to highest.
pub fn sparkline(values: &[u64]) -> String {
    const BLOCKS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];
    let (Some(low), Some(high)) = (values.iter().min(), values.iter().max()) else {
        return String::new();
    };
    let span = (high - low).max(1);
    values
        .iter()
        .map(|v| BLOCKS[((v - low) * 7 / span) as usize])
        .collect()
}

fn segment_rows(segments: &[proto::Segment]) -> Rows {
    let mut rows = Rows::new(&[
        "name",
        "version",
        "filter",
        "description",
        "required_scopes",
    ]);
    for segment in segments {
        let filter = match segment.filter.as_ref().and_then(|f| f.spec.as_ref()) {
            Some(proto::filter_spec::Spec::Expression(text)) => text.clone(),
            _ => String::new(),
        };
        rows.push(vec![
            segment.name.clone(),
            segment.version.to_string(),
            filter,
            segment.description.clone(),
            segment.required_scopes.join(","),
        ]);
    }
    rows
}

pub async fn segments(args: SegmentsArgs) -> anyhow::Result<()> {
    let mut client = SegmentsClient::new(channel(&args.connect).await?)
        .accept_compressed(tonic::codec::CompressionEncoding::Gzip);
    let printed = match args.command {
        SegmentsCommand::List => {
            let response = client
                .list_segments(proto::ListSegmentsRequest {})
                .await
                .map_err(status_error)?
                .into_inner();
            let document = json_of(&response)?;
            let lines = document["segments"].as_array().cloned().unwrap_or_default();
            Printed::new(document, segment_rows(&response.segments)).with_lines(lines)
        }
        SegmentsCommand::Get { name } => {
            let segment = client
                .get_segment(proto::GetSegmentRequest { name })
                .await
                .map_err(status_error)?
                .into_inner();
            one_segment(segment)?
        }
        SegmentsCommand::Create {
            name,
            filter,
            description,
        } => {
            let segment = client
                .create_segment(proto::CreateSegmentRequest {
                    name,
                    description,
                    filter: filter_spec(&Some(filter.clone())),
                })
                .await
                .map_err(|status| query_error(status, Some(&filter)))?
                .into_inner();
            one_segment(segment)?
        }
        SegmentsCommand::Update {
            name,
            filter,
            description,
            expected_version,
        } => {
            let segment = client
                .update_segment(proto::UpdateSegmentRequest {
                    name,
                    description,
                    filter: filter_spec(&filter),
                    expected_version,
                })
                .await
                .map_err(|status| query_error(status, filter.as_deref()))?
                .into_inner();
            one_segment(segment)?
        }
        SegmentsCommand::Delete { name } => {
            client
                .delete_segment(proto::DeleteSegmentRequest { name: name.clone() })
                .await
                .map_err(status_error)?;
            let mut rows = Rows::new(&["deleted"]);
            rows.push(vec![name.clone()]);
            Printed::new(serde_json::json!({ "deleted": name }), rows)
        }
        SegmentsCommand::Count { name } => {
            let response = client
                .count_segment(proto::CountSegmentRequest {
                    name,
                    min_generation: 0,
                    min_log_sequence: 0,
                })
                .await
                .map_err(status_error)?
                .into_inner();
            let mut rows = Rows::new(&["count"]);
            rows.push(vec![response.count.to_string()]);
            Printed::new(json_of(&response)?, rows)
        }
        SegmentsCommand::History { name, hourly } => {
            use proto::get_segment_history_request::Granularity;
            let granularity = if hourly {
                Granularity::Hour
            } else {
                Granularity::Day
            };
            let response = client
                .get_segment_history(proto::GetSegmentHistoryRequest {
                    name,
                    granularity: granularity as i32,
                })
                .await
                .map_err(status_error)?
                .into_inner();
            let mut rows = Rows::new(&["period", "entered", "exited", "size"]);
            for period in &response.periods {
                rows.push(vec![
                    period_label(period.start_time_ms, hourly),
                    period.entered.to_string(),
                    period.exited.to_string(),
                    period.size.to_string(),
                ]);
            }
            if args.output.format == super::output::Format::Table {
                let sizes: Vec<u64> = response.periods.iter().map(|p| p.size).collect();
                println!("size {}  {}", response.size, sparkline(&sizes));
            }
            let document = json_of(&response)?;
            let lines = document["periods"].as_array().cloned().unwrap_or_default();
            Printed::new(document, rows).with_lines(lines)
        }
        SegmentsCommand::Of { user_id } => {
            let response = client
                .get_user_segments(proto::GetUserSegmentsRequest {
                    user_id,
                    min_generation: 0,
                    min_log_sequence: 0,
                })
                .await
                .map_err(status_error)?
                .into_inner();
            let mut rows = Rows::new(&["segment"]);
            for name in &response.segments {
                rows.push(vec![name.clone()]);
            }
            let lines = (response.segments.iter())
                .map(|name| serde_json::json!({ "segment": name }))
                .collect();
            Printed::new(json_of(&response)?, rows).with_lines(lines)
        }
    };
    printed.print(args.output.format)
}

/// A period's start as `2026-12-06` (days) or `2026-12-06T13:00Z` (hours), in UTC.
fn period_label(start_ms: i64, hourly: bool) -> String {
    let Ok(at) = time::OffsetDateTime::from_unix_timestamp(start_ms.div_euclid(1_000)) else {
        return start_ms.to_string();
    };
    let (date, hour) = (at.date(), at.hour());
    if hourly {
        format!("{date}T{hour:02}:00Z")
    } else {
        date.to_string()
    }
}

fn one_segment(segment: proto::Segment) -> anyhow::Result<Printed> {
    for warning in &segment.warnings {
        eprintln!("warning: {}", super::users::warning_line(warning));
    }
    let document = json_of(&segment)?;
    Ok(Printed::new(document.clone(), segment_rows(&[segment])).with_lines(vec![document]))
}

#[derive(Debug, clap::Args)]
pub struct WatchArgs {
    #[command(flatten)]
    pub connect: ConnectArgs,
    /// The segments to watch, on one stream (none: every segment the key may read).
    pub segments: Vec<String>,
    /// Replay the events after this sequence number first (0: every retained event); without
    /// it, only events from now on.
    #[arg(long)]
    pub after: Option<u64>,
    /// Stop after this many events (default: until interrupted or the segment is deleted).
    #[arg(long)]
    pub limit: Option<u64>,
    /// table or csv print a line per event as it arrives; json and jsonl print one JSON
    /// object per line.
    #[command(flatten)]
    pub output: OutputArgs,
}

/// Streams segments' events, one line each, as they arrive. The last sequence printed is what
/// `--after` takes to resume.
pub async fn watch(args: WatchArgs) -> anyhow::Result<()> {
    let mut client = SegmentsClient::new(channel(&args.connect).await?)
        .accept_compressed(tonic::codec::CompressionEncoding::Gzip);
    let watched = match args.segments.as_slice() {
        [name] => {
            client
                .watch_segment(proto::WatchSegmentRequest {
                    name: name.clone(),
                    after_sequence: args.after,
                })
                .await
        }
        names => {
            client
                .watch_segments(proto::WatchSegmentsRequest {
                    names: names.to_vec(),
                    after_sequence: args.after,
                })
                .await
        }
    };
    let mut stream = watched.map_err(status_error)?.into_inner();
    let headers = [
        "sequence",
        "segment",
        "kind",
        "user_id",
        "change_time_ms",
        "cause",
    ];
    match args.output.format {
        Format::Table => println!("{}", headers.join("  ")),
        Format::Csv => println!("{}", headers.join(",")),
        Format::Json | Format::Jsonl => {}
    }
    let mut seen = 0;
    while args.limit.is_none_or(|limit| seen < limit) {
        let Some(event) = stream.message().await.map_err(status_error)? else {
            break;
        };
        seen += 1;
        let kind = event
            .kind()
            .as_str_name()
            .trim_start_matches("KIND_")
            .to_lowercase();
        let cells = [
            event.sequence.to_string(),
            event.segment.clone(),
            kind,
            event.user_id.clone(),
            event.change_time_ms.to_string(),
            event.cause.clone(),
        ];
        match args.output.format {
            Format::Table => println!("{}", cells.join("  ")),
            Format::Csv => println!("{}", super::output::csv_line(&cells)),
            Format::Json | Format::Jsonl => println!("{}", json_of(&event)?),
        }
    }
    Ok(())
}

#[derive(Debug, clap::Args)]
pub struct SyncArgs {
    #[command(flatten)]
    pub connect: ConnectArgs,
    #[command(flatten)]
    pub output: OutputArgs,
    #[command(subcommand)]
    pub command: SyncCommand,
}

#[derive(Debug, clap::Subcommand)]
pub enum SyncCommand {
    /// Freshness, backfill progress, reconcile runs, webhook deliveries and writer counts.
    Status,
    /// Run a catch-up, a sweep or both now and print what they did (waits for the runs).
    Reconcile {
        /// catch-up, sweep or both.
        #[arg(long, value_enum, default_value_t = ReconcileKind::Both)]
        kind: ReconcileKind,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ReconcileKind {
    /// Users updated since the last catch-up.
    CatchUp,
    /// Compare every id with Clerk.
    Sweep,
    Both,
}

pub async fn sync(args: SyncArgs) -> anyhow::Result<()> {
    let mut client = SyncClient::new(channel(&args.connect).await?)
        .accept_compressed(tonic::codec::CompressionEncoding::Gzip);
    let document = match args.command {
        SyncCommand::Status => json_of(
            &client
                .get_sync_status(proto::GetSyncStatusRequest {})
                .await
                .map_err(status_error)?
                .into_inner(),
        )?,
        SyncCommand::Reconcile { kind } => {
            let kind = match kind {
                ReconcileKind::CatchUp => proto::ReconcileKind::CatchUp,
                ReconcileKind::Sweep => proto::ReconcileKind::Sweep,
                ReconcileKind::Both => proto::ReconcileKind::Both,
            };
            json_of(
                &client
                    .trigger_reconcile(proto::TriggerReconcileRequest { kind: kind as i32 })
                    .await
                    .map_err(status_error)?
                    .into_inner(),
            )?
        }
    };
    // Table and CSV: every leaf of the answer as `path, value`.
    let mut rows = Rows::new(&["path", "value"]);
    super::users::leaves(&document, String::new(), &mut rows);
    Printed::new(document.clone(), rows)
        .with_lines(vec![document])
        .print(args.output.format)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sparkline_spans_the_lowest_to_the_highest_block() {
        assert_eq!(sparkline(&[3, 3, 10, 5]), "▁▁█▃");
        assert_eq!(sparkline(&[7, 7]), "▁▁");
        assert_eq!(sparkline(&[]), "");
        assert_eq!(
            period_label(86_400_000 + 13 * 3_600_000, true),
            "1970-01-02T13:00Z"
        );
        assert_eq!(period_label(86_400_000, false), "1970-01-02");
    }
}
