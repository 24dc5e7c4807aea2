//! `clerk-index facet`: value counts, stats and histograms of the users matching a filter.

use super::client::{ConnectArgs, connect, filter_spec, query_error};
use super::output::{OutputArgs, Printed, Rows, json_of};
use crate::api::proto;

#[derive(Debug, clap::Args)]
pub struct FacetArgs {
    #[command(flatten)]
    pub connect: ConnectArgs,
    /// Filter expression, e.g. 'created_at > now-30d'. Omit for all users.
    #[arg(long, short)]
    pub filter: Option<String>,
    /// Value counts: PATH or PATH:SIZE (repeatable), e.g. --terms public.plan_type:5.
    #[arg(long)]
    pub terms: Vec<String>,
    /// count/min/max/avg/sum and p50/p90/p99 of a numeric path or date field (repeatable).
    #[arg(long)]
    pub stats: Vec<String>,
    /// Numeric buckets: PATH:INTERVAL (repeatable), e.g. --histogram public.points:1000.
    #[arg(long)]
    pub histogram: Vec<String>,
    /// Calendar buckets: PATH:day|week|month (repeatable), e.g. --date-histogram created_at:month.
    #[arg(long)]
    pub date_histogram: Vec<String>,
    #[command(flatten)]
    pub output: OutputArgs,
}

fn facet_requests(args: &FacetArgs) -> anyhow::Result<Vec<proto::FacetRequest>> {
    use proto::facet_request::Kind;
    let split = |spec: &str| match spec.rsplit_once(':') {
        Some((path, arg)) => (path.to_string(), Some(arg.to_string())),
        None => (spec.to_string(), None),
    };
    let request = |path: String, kind: Kind| proto::FacetRequest {
        name: String::new(),
        path,
        kind: Some(kind),
    };
    let mut requests = Vec::new();
    for spec in &args.terms {
        let (path, size) = split(spec);
        let size = size
            .map(|s| {
                s.parse()
                    .map_err(|_| anyhow::anyhow!("--terms {spec}: SIZE must be a number"))
            })
            .transpose()?
            .unwrap_or(10);
        requests.push(request(
            path,
            Kind::Terms(proto::TermsFacet {
                size,
                include_missing: true,
            }),
        ));
    }
    for path in &args.stats {
        requests.push(request(
            path.clone(),
            Kind::Stats(proto::NumericStatsFacet {
                percentiles: vec![50.0, 90.0, 99.0],
            }),
        ));
    }
    for spec in &args.histogram {
        let (path, interval) = split(spec);
        let interval = interval
            .and_then(|i| i.parse().ok())
            .ok_or_else(|| anyhow::anyhow!("--histogram {spec}: use PATH:INTERVAL"))?;
        requests.push(request(
            path,
            Kind::Histogram(proto::HistogramFacet {
                interval,
                offset: 0.0,
            }),
        ));
    }
    for spec in &args.date_histogram {
        let (path, unit) = split(spec);
        let interval = match unit.as_deref() {
            Some("day") => proto::CalendarInterval::Day,
            Some("week") => proto::CalendarInterval::Week,
            Some("month") | None => proto::CalendarInterval::Month,
            Some(other) => {
                anyhow::bail!("--date-histogram {spec}: {other} is not day, week or month")
            }
        };
        requests.push(request(
            path,
            Kind::DateHistogram(proto::DateHistogramFacet {
                interval: interval as i32,
            }),
        ));
    }
    anyhow::ensure!(
        !requests.is_empty(),
        "ask for at least one of --terms, --stats, --histogram, --date-histogram"
    );
    Ok(requests)
}

fn value_text(value: &Option<proto::Value>) -> String {
    use proto::value::Kind;
    match value.as_ref().and_then(|v| v.kind.as_ref()) {
        Some(Kind::String(s)) => s.clone(),
        Some(Kind::Integer(i)) => i.to_string(),
        Some(Kind::Number(n)) => n.to_string(),
        Some(Kind::Boolean(b)) => b.to_string(),
        _ => String::new(),
    }
}

pub async fn facet(args: FacetArgs) -> anyhow::Result<()> {
    let facets = facet_requests(&args)?;
    let mut client = connect(&args.connect).await?;
    let response = client
        .facet_users(proto::FacetUsersRequest {
            filter: filter_spec(&args.filter),
            facets,
            min_generation: 0,
            min_log_sequence: 0,
        })
        .await
        .map_err(|status| query_error(status, args.filter.as_deref()))?
        .into_inner();
    let document = json_of(&response)?;
    let rows = facet_rows(&response);
    let lines = document["facets"].as_array().cloned().unwrap_or_default();
    Printed::new(document, rows)
        .with_lines(lines)
        .print(args.output.format)
}

/// One row per bucket or statistic: `facet, key, count, value`. `key` is the bucket's value (or
/// `(other)`, `(no value)`, a statistic's name); `value` holds a statistic's number.
fn facet_rows(response: &proto::FacetUsersResponse) -> Rows {
    use proto::facet_result::Result as Outcome;
    let mut rows = Rows::new(&["facet", "key", "count", "value"]);
    let mut row = |facet: &str, key: String, count: String, value: String| {
        rows.push(vec![facet.to_string(), key, count, value]);
    };
    row(
        "(matched)",
        String::new(),
        response.matched.to_string(),
        String::new(),
    );
    for facet in &response.facets {
        let name = facet.name.as_str();
        match &facet.result {
            Some(Outcome::Terms(terms)) => {
                for bucket in &terms.buckets {
                    row(
                        name,
                        value_text(&bucket.value),
                        bucket.count.to_string(),
                        String::new(),
                    );
                }
                row(
                    name,
                    "(other)".into(),
                    terms.other_count.to_string(),
                    String::new(),
                );
                row(
                    name,
                    "(no value)".into(),
                    terms.missing.to_string(),
                    String::new(),
                );
            }
            Some(Outcome::Stats(stats)) => {
                row(name, "count".into(), stats.count.to_string(), String::new());
                for (key, value) in [
                    ("min", stats.min),
                    ("max", stats.max),
                    ("avg", stats.avg),
                    ("sum", stats.sum),
                ] {
                    row(name, key.into(), String::new(), value.to_string());
                }
                for p in &stats.percentiles {
                    row(
                        name,
                        format!("p{}", p.percent),
                        String::new(),
                        p.value.to_string(),
                    );
                }
            }
            Some(Outcome::Histogram(h)) | Some(Outcome::DateHistogram(h)) => {
                for bucket in &h.buckets {
                    let key = match bucket.key_as_string.get(..10) {
                        Some(day) => day.to_string(),
                        None => bucket.key.to_string(),
                    };
                    row(name, key, bucket.count.to_string(), String::new());
                }
            }
            None => {}
        }
    }
    rows
}
