//! `clerk-index bench`: a compiled load client. It runs a mix of queries against a running
//! server from several callers over one or more HTTP/2 connections, either as fast as the
//! callers can (saturation) or on a fixed schedule (an open loop: each call's latency counts from
//! the time it was due, so a slow answer cannot hide the calls queued behind it), and reports
//! latency percentiles per query; with `--metrics`, also the server's own time per method and the
//! CPU both sides used.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde::Deserialize;

use super::bench_report::{Named, Outcome, Report, Sample, Scrape, scrape};
use super::client::{ConnectArgs, Connection, channel, filter_spec};
use super::output::OutputArgs;
use crate::api::proto;
use crate::api::proto::user_index_client::UserIndexClient;

/// The mix run without `--mix`: bench/bench.py's queries and an export with names, over the
/// paths of the generated population (`demo`, `fake-clerk`).
const DEFAULT_MIX: &str = include_str!("../../bench/mix.json");

#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    #[command(flatten)]
    pub connect: ConnectArgs,
    /// A JSON file with the queries: an array of {"name", "kind": count | search | facet | export,
    /// "filter"}, with "sort" ("-path" for descending), "page_size" and "fields" for search,
    /// "terms" (a path) for facet, "fields" or "ids_only" for export. Default: bench/mix.json.
    #[arg(long)]
    pub mix: Option<PathBuf>,
    /// Callers, each with one call in flight at a time.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub concurrency: u16,
    /// HTTP/2 connections the callers share (caller i uses connection i mod N).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=256))]
    pub connections: u16,
    /// Calls per second in all, on a fixed schedule (the queries take turns); 0 sends as fast as
    /// the callers can.
    #[arg(long, default_value_t = 0.0)]
    pub rate: f64,
    /// Seconds measured.
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,
    /// Seconds of calls before the measurement starts (not counted).
    #[arg(long, default_value_t = 2.0)]
    pub warmup: f64,
    /// The server's metrics address (`http://host:8080/metrics`): adds its time per method and
    /// the CPU it used while measured.
    #[arg(long)]
    pub metrics: Option<String>,
    #[command(flatten)]
    pub output: OutputArgs,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
enum Kind {
    Count,
    Search,
    Facet,
    Export,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Count => "count",
            Kind::Search => "search",
            Kind::Facet => "facet",
            Kind::Export => "export",
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct Query {
    pub name: String,
    pub kind: Kind,
    #[serde(default)]
    pub filter: Option<String>,
    #[serde(default)]
    pub sort: Option<String>,
    #[serde(default)]
    pub page_size: Option<u32>,
    #[serde(default)]
    pub fields: Vec<String>,
    #[serde(default)]
    pub terms: Option<String>,
    #[serde(default)]
    pub ids_only: bool,
}

fn parse_mix(text: &str) -> anyhow::Result<Vec<Query>> {
    let queries: Vec<Query> = serde_json::from_str(text)
        .map_err(|e| anyhow::anyhow!("the mix is not a list of queries: {e}"))?;
    anyhow::ensure!(!queries.is_empty(), "the mix holds no query");
    anyhow::ensure!(
        queries.len() <= 1000,
        "the mix holds more than 1000 queries"
    );
    for query in &queries {
        anyhow::ensure!(
            (query.kind == Kind::Facet) == query.terms.is_some(),
            "{:?}: \"terms\" (the path to count values of) goes with kind facet, and only there",
            query.name
        );
    }
    Ok(queries)
}

/// One call of `query`; its answer as a number (the count, the users returned, the users
/// matched by the facet, the users exported).
async fn call(
    client: &mut UserIndexClient<Connection>,
    query: &Query,
) -> Result<u64, tonic::Status> {
    let filter = filter_spec(&query.filter);
    Ok(match query.kind {
        Kind::Count => {
            let request = proto::CountUsersRequest {
                filter,
                ..Default::default()
            };
            client.count_users(request).await?.into_inner().count
        }
        Kind::Search => {
            let sort = query.sort.as_deref().map(|sort| proto::SortSpec {
                path: sort.trim_start_matches('-').to_string(),
                descending: sort.starts_with('-'),
            });
            let fields = match query.fields.is_empty() {
                true => vec!["id".to_string()],
                false => query.fields.clone(),
            };
            let request = proto::SearchUsersRequest {
                filter,
                sort,
                fields,
                page_size: query.page_size.unwrap_or(50),
                ..Default::default()
            };
            client.search_users(request).await?.into_inner().users.len() as u64
        }
        Kind::Facet => {
            let facet = proto::FacetRequest {
                name: String::new(),
                path: query.terms.clone().unwrap_or_default(),
                kind: Some(proto::facet_request::Kind::Terms(proto::TermsFacet {
                    size: 10,
                    include_missing: false,
                })),
            };
            let request = proto::FacetUsersRequest {
                filter,
                facets: vec![facet],
                ..Default::default()
            };
            client.facet_users(request).await?.into_inner().matched
        }
        Kind::Export => {
            let request = proto::ExportUsersRequest {
                filter,
                fields: query.fields.clone(),
                ids_only: query.ids_only,
                chunk_size: 5000,
                ..Default::default()
            };
            let mut stream = client.export_users(request).await?.into_inner();
            let mut users = 0;
            while let Some(chunk) = stream.message().await? {
                users += (chunk.users.len() + chunk.ids.len()) as u64;
            }
            users
        }
    })
}

/// When calls run and which of them are measured.
#[derive(Clone, Copy)]
struct Schedule {
    start: Instant,
    measured_from: Instant,
    end: Instant,
    /// Calls per second in all; `None` for saturation.
    rate: Option<f64>,
}

impl Schedule {
    /// When call `k` is due (open loop), or `None` to send it now.
    fn due(&self, k: u64) -> Option<Instant> {
        self.rate
            .map(|rate| self.start + Duration::from_secs_f64(k as f64 / rate))
    }
}

/// One caller: takes the next call number, waits until it is due, calls, and records the
/// latency of the calls that began in the measured window. On a schedule the callers can fall
/// behind; calls still waiting for a caller when the window closes are not sent but counted, so
/// a rate the server cannot keep up with ends on time. Returns the samples and that count.
async fn caller(
    mut client: UserIndexClient<Connection>,
    queries: Arc<Vec<Query>>,
    next: Arc<AtomicU64>,
    schedule: Schedule,
) -> (Vec<Sample>, u64) {
    let (mut samples, mut not_sent) = (Vec::new(), 0);
    loop {
        let k = next.fetch_add(1, Ordering::Relaxed);
        let began = match schedule.due(k) {
            // Early: the call counts from when it is sent. The timer wakes up to a millisecond
            // (its granularity) after `due`, and that lateness is this client's, not the
            // server's: counted from `due`, every answer at a fixed rate looked ~1 ms slower.
            Some(due) if Instant::now() < due => {
                tokio::time::sleep_until(due.into()).await;
                Instant::now()
            }
            // Behind (the previous calls took longer): the wait for a caller is part of the
            // latency, so a slow answer shows in the calls queued behind it.
            Some(due) => due,
            None => Instant::now(),
        };
        if began >= schedule.end {
            return (samples, not_sent);
        }
        if Instant::now() >= schedule.end {
            not_sent += 1;
            continue;
        }
        let query = (k % queries.len() as u64) as usize;
        let answer = call(&mut client, &queries[query]).await;
        if began >= schedule.measured_from {
            samples.push(Sample {
                query,
                micros: began.elapsed().as_micros() as u64,
                outcome: match answer {
                    Ok(answer) => Outcome::Answer(answer),
                    Err(status) => {
                        Outcome::Failed(format!("{:?}: {}", status.code(), status.message()))
                    }
                },
            });
        }
    }
}

pub async fn bench(args: BenchArgs) -> anyhow::Result<()> {
    let text = match &args.mix {
        Some(path) => std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("--mix {}: {e}", path.display()))?,
        None => DEFAULT_MIX.to_string(),
    };
    let queries = Arc::new(parse_mix(&text)?);
    anyhow::ensure!(
        args.rate >= 0.0 && args.rate.is_finite(),
        "--rate is 0 or more"
    );
    anyhow::ensure!(
        args.duration > 0.0 && args.warmup >= 0.0,
        "--duration is above 0 and --warmup 0 or more"
    );
    let mut connections = Vec::new();
    for _ in 0..args.connections {
        let client = UserIndexClient::new(channel(&args.connect).await?)
            .max_decoding_message_size(64 * 1024 * 1024);
        connections.push(client);
    }
    let start = Instant::now() + Duration::from_millis(100);
    let measured_from = start + Duration::from_secs_f64(args.warmup);
    let schedule = Schedule {
        start,
        measured_from,
        end: measured_from + Duration::from_secs_f64(args.duration),
        rate: (args.rate > 0.0).then_some(args.rate),
    };
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()?;
    let first = tokio::spawn(measure_from(
        http.clone(),
        args.metrics.clone(),
        measured_from,
    ));
    let next = Arc::new(AtomicU64::new(0));
    let callers: Vec<_> = (0..args.concurrency as usize)
        .map(|i| {
            let client = connections[i % connections.len()].clone();
            tokio::spawn(caller(client, queries.clone(), next.clone(), schedule))
        })
        .collect();
    let (mut samples, mut not_sent) = (Vec::new(), 0);
    for handle in callers {
        let (taken, missed) = handle.await?;
        samples.extend(taken);
        not_sent += missed;
    }
    // Calls sent before the end run to their answer, so the window closes when the last one did.
    let (before, own_before) = first.await??;
    let own_after = crate::telemetry::process_cpu_seconds();
    let server = match (&args.metrics, before) {
        (Some(url), Some(before)) => Some((before, scrape(&http, url).await?)),
        _ => None,
    };
    let seconds = measured_from.elapsed().as_secs_f64();
    let client_cpu = own_before
        .zip(own_after)
        .map(|(before, after)| after - before);
    let named: Vec<Named> = queries
        .iter()
        .map(|query| Named {
            name: query.name.clone(),
            kind: query.kind.name(),
        })
        .collect();
    let report = Report::new(
        &named,
        samples,
        seconds,
        (args.concurrency, args.connections, schedule.rate),
        not_sent,
        server,
        client_cpu,
    );
    report.print(args.output.format)
}

/// The server's metrics at the start and the end of the measured window, and the CPU this
/// process used between them (seconds).
/// The server's metrics and this process's CPU seconds when the measurement starts.
async fn measure_from(
    http: reqwest::Client,
    url: Option<String>,
    at: Instant,
) -> anyhow::Result<(Option<Scrape>, Option<f64>)> {
    tokio::time::sleep_until(at.into()).await;
    let own = crate::telemetry::process_cpu_seconds();
    let server = match &url {
        Some(url) => Some(scrape(&http, url).await?),
        None => None,
    };
    Ok((server, own))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_mix_parses() {
        let mix = parse_mix(DEFAULT_MIX).unwrap();
        assert!(mix.iter().any(|q| q.kind == Kind::Facet));
        assert!(
            mix.iter()
                .any(|q| q.kind == Kind::Export && !q.fields.is_empty())
        );
    }

    #[test]
    fn a_facet_needs_its_path_and_unknown_keys_are_refused() {
        let error = parse_mix(r#"[{"name": "f", "kind": "facet"}]"#).unwrap_err();
        assert!(error.to_string().contains("terms"), "{error}");
        let error = parse_mix(r#"[{"name": "c", "kind": "count", "filtr": "x"}]"#).unwrap_err();
        assert!(error.to_string().contains("filtr"), "{error}");
        assert!(parse_mix("[]").is_err());
    }

    #[test]
    fn an_open_loop_schedules_calls_at_the_rate() {
        let start = Instant::now();
        let schedule = Schedule {
            start,
            measured_from: start,
            end: start + Duration::from_secs(1),
            rate: Some(200.0),
        };
        assert_eq!(schedule.due(0), Some(start));
        assert_eq!(schedule.due(100), Some(start + Duration::from_millis(500)));
        let saturated = Schedule {
            rate: None,
            ..schedule
        };
        assert_eq!(saturated.due(100), None);
    }
}
