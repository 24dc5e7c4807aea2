//! What `clerk-index bench` measured, summed up: latency percentiles per query from the client's
//! samples, and from two scrapes of the server's metrics its own time per method (mean, and
//! p50/p99 estimated from the histogram's buckets as Prometheus's `histogram_quantile` does) and
//! the CPU it used.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::output::{Format, Printed, Rows};

/// One measured call: which query, how long from when it was due to its answer, and the answer.
pub(super) struct Sample {
    pub query: usize,
    pub micros: u64,
    pub outcome: Outcome,
}

/// A call's answer as a number, or the status it failed with.
pub(super) enum Outcome {
    Answer(u64),
    Failed(String),
}

impl Outcome {
    fn answer(&self) -> Option<u64> {
        match self {
            Outcome::Answer(answer) => Some(*answer),
            Outcome::Failed(_) => None,
        }
    }

    fn error(&self) -> Option<&String> {
        match self {
            Outcome::Answer(_) => None,
            Outcome::Failed(error) => Some(error),
        }
    }
}

/// A query of the mix as the report names it.
pub(super) struct Named {
    pub name: String,
    pub kind: &'static str,
}

/// The samples of one metrics scrape: series name and labels to value.
#[derive(Debug, Default)]
pub(super) struct Scrape(BTreeMap<(String, Vec<(String, String)>), f64>);

pub(super) async fn scrape(http: &reqwest::Client, url: &str) -> anyhow::Result<Scrape> {
    let response = http
        .get(url)
        .send()
        .await
        .map_err(|e| anyhow::anyhow!("--metrics {url}: {e}"))?;
    anyhow::ensure!(
        response.status().is_success(),
        "--metrics {url}: HTTP {}",
        response.status()
    );
    Ok(parse_metrics(&response.text().await?))
}

/// The Prometheus text format (and OpenMetrics'): `name{label="value",...} value [timestamp]`,
/// with `# ` lines and exemplars ignored.
fn parse_metrics(text: &str) -> Scrape {
    let mut samples = BTreeMap::new();
    // The value is the first token after the series: a timestamp or an exemplar may follow it.
    for line in text.lines().filter(|line| !line.starts_with('#')) {
        // Labels open before the first space; a `{` later belongs to an exemplar.
        let labels_at = line.find('{').filter(|&open| !line[..open].contains(' '));
        let (series, rest) = match labels_at {
            Some(open) => match closing_brace(&line[open..]) {
                Some(close) => (&line[..open + close + 1], &line[open + close + 1..]),
                None => continue,
            },
            None => match line.split_once(' ') {
                Some(parts) => parts,
                None => continue,
            },
        };
        let Some(Ok(value)) = rest.split_whitespace().next().map(str::parse::<f64>) else {
            continue;
        };
        let (name, labels) = match series.split_once('{') {
            Some((name, labels)) => (name, parse_labels(labels.trim_end_matches('}'))),
            None => (series, Vec::new()),
        };
        samples.insert((name.to_string(), labels), value);
    }
    Scrape(samples)
}

/// Where the label set opened at the start of `text` closes: the first `}` outside a quoted
/// value (label values may hold `}` and escaped quotes).
fn closing_brace(text: &str) -> Option<usize> {
    let mut quoted = false;
    let mut escaped = false;
    for (i, c) in text.char_indices() {
        match (quoted, escaped, c) {
            (true, true, _) => escaped = false,
            (true, false, '\\') => escaped = true,
            (_, _, '"') => quoted = !quoted,
            (false, _, '}') => return Some(i),
            _ => {}
        }
    }
    None
}

fn parse_labels(text: &str) -> Vec<(String, String)> {
    let mut labels = Vec::new();
    let mut rest = text;
    while let Some((key, after)) = rest.split_once("=\"") {
        let mut value = String::new();
        let mut chars = after.char_indices();
        let mut end = after.len();
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => match chars.next() {
                    Some((_, 'n')) => value.push('\n'),
                    Some((_, other)) => value.push(other),
                    None => {}
                },
                '"' => {
                    end = i + 1;
                    break;
                }
                c => value.push(c),
            }
        }
        labels.push((key.trim_start_matches(',').trim().to_string(), value));
        rest = &after[end..];
    }
    labels.sort();
    labels
}

impl Scrape {
    /// The sum over series of `name` whose labels include every one of `having`.
    fn sum(&self, name: &str, having: &[(&str, &str)]) -> f64 {
        self.0
            .iter()
            .filter(|((n, labels), _)| {
                n == name
                    && having
                        .iter()
                        .all(|(k, v)| labels.iter().any(|(lk, lv)| lk == k && lv == v))
            })
            .map(|(_, value)| value)
            .sum()
    }

    /// The `(service, method)` pairs with successful calls.
    fn methods(&self) -> Vec<(String, String)> {
        let mut methods: Vec<_> = self
            .0
            .keys()
            .filter(|(name, labels)| {
                name == REQUESTS && labels.iter().any(|(k, v)| k == "code" && v == "OK")
            })
            .filter_map(|(_, labels)| {
                let get = |key: &str| {
                    labels
                        .iter()
                        .find(|(k, _)| k == key)
                        .map(|(_, v)| v.clone())
                };
                Some((get("service")?, get("method")?))
            })
            .collect();
        methods.dedup();
        methods
    }

    /// The bucket bounds of the latency histogram (cumulative counts) for one method.
    fn buckets(&self, service: &str, method: &str) -> Vec<(f64, f64)> {
        let mut buckets: Vec<(f64, f64)> = self
            .0
            .iter()
            .filter(|((name, labels), _)| {
                name == &format!("{DURATION}_bucket")
                    && [("service", service), ("method", method), ("code", "OK")]
                        .iter()
                        .all(|(k, v)| labels.iter().any(|(lk, lv)| lk == k && lv == v))
            })
            .filter_map(|((_, labels), count)| {
                let le = labels.iter().find(|(k, _)| k == "le")?;
                let bound = if le.1 == "+Inf" {
                    f64::INFINITY
                } else {
                    le.1.parse().ok()?
                };
                Some((bound, *count))
            })
            .collect();
        buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
        buckets
    }
}

const REQUESTS: &str = "clerk_index_grpc_requests_total";
const DURATION: &str = "clerk_index_grpc_request_duration_seconds";
const CPU: &str = "clerk_index_process_cpu_seconds_total";

/// The `q` quantile of the calls counted between two cumulative bucket lists, interpolating
/// inside the bucket it falls in (the upper bound of the last finite bucket past it).
fn bucket_quantile(before: &[(f64, f64)], after: &[(f64, f64)], q: f64) -> Option<f64> {
    let delta: Vec<(f64, f64)> = after
        .iter()
        .map(|(bound, count)| {
            let earlier = before
                .iter()
                .find(|(b, _)| b == bound)
                .map_or(0.0, |(_, c)| *c);
            (*bound, count - earlier)
        })
        .collect();
    let total = delta.last()?.1;
    if total <= 0.0 {
        return None;
    }
    let rank = q * total;
    let mut previous = (0.0, 0.0);
    for &(bound, count) in &delta {
        if count >= rank {
            if bound.is_infinite() {
                return Some(previous.0);
            }
            let inside = (count - previous.1).max(f64::MIN_POSITIVE);
            return Some(previous.0 + (bound - previous.0) * (rank - previous.1) / inside);
        }
        previous = (bound, count);
    }
    None
}

/// The nearest-rank percentile of sorted values.
fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil().max(1.0) as usize;
    sorted[rank.min(sorted.len()) - 1] as f64
}

pub(super) struct Report {
    document: Value,
    queries: Rows,
    server: Rows,
    summary: Vec<String>,
}

impl Report {
    pub fn new(
        queries: &[Named],
        samples: Vec<Sample>,
        seconds: f64,
        (concurrency, connections, rate): (u16, u16, Option<f64>),
        not_sent: u64,
        server: Option<(Scrape, Scrape)>,
        client_cpu: Option<f64>,
    ) -> Report {
        let headers = [
            "query", "kind", "calls", "errors", "per_s", "p50_ms", "p90_ms", "p99_ms", "max_ms",
            "answer",
        ];
        let mut rows = Rows::new(&headers);
        let mut per_query = Vec::new();
        let total = samples.len();
        for (index, query) in queries.iter().enumerate() {
            let mine: Vec<&Sample> = samples.iter().filter(|s| s.query == index).collect();
            let mut micros: Vec<u64> = mine
                .iter()
                .filter(|s| s.outcome.answer().is_some())
                .map(|s| s.micros)
                .collect();
            micros.sort_unstable();
            let errors: Vec<&String> = mine.iter().filter_map(|s| s.outcome.error()).collect();
            let answer = mine.iter().find_map(|s| s.outcome.answer());
            let ms = |p: f64| percentile(&micros, p) / 1000.0;
            let max = micros.last().copied().unwrap_or(0) as f64 / 1000.0;
            let per_second = micros.len() as f64 / seconds;
            rows.push(vec![
                query.name.clone(),
                query.kind.to_string(),
                micros.len().to_string(),
                errors.len().to_string(),
                format!("{per_second:.1}"),
                format!("{:.3}", ms(50.0)),
                format!("{:.3}", ms(90.0)),
                format!("{:.3}", ms(99.0)),
                format!("{max:.3}"),
                answer.map_or(String::new(), |a| a.to_string()),
            ]);
            per_query.push(json!({
                "name": query.name, "calls": micros.len(), "errors": errors.len(),
                "first_error": errors.first(), "per_second": per_second,
                "p50_ms": ms(50.0), "p90_ms": ms(90.0), "p99_ms": ms(99.0), "max_ms": max,
                "answer": answer,
            }));
        }
        let mut server_rows = Rows::new(&["method", "calls", "mean_ms", "p50_ms", "p99_ms"]);
        let mut methods = Vec::new();
        let mut server_cpu = None;
        if let Some((before, after)) = &server {
            for (service, method) in after.methods() {
                let having = [
                    ("service", service.as_str()),
                    ("method", method.as_str()),
                    ("code", "OK"),
                ];
                let delta = |name: &str| after.sum(name, &having) - before.sum(name, &having);
                let calls = delta(&format!("{DURATION}_count"));
                if calls <= 0.0 {
                    continue;
                }
                let mean = delta(&format!("{DURATION}_sum")) / calls * 1000.0;
                let (b, a) = (
                    before.buckets(&service, &method),
                    after.buckets(&service, &method),
                );
                let q = |q: f64| bucket_quantile(&b, &a, q).map(|s| s * 1000.0);
                let show = |v: Option<f64>| v.map_or(String::from("-"), |v| format!("{v:.3}"));
                server_rows.push(vec![
                    method.clone(),
                    calls.to_string(),
                    format!("{mean:.3}"),
                    show(q(0.5)),
                    show(q(0.99)),
                ]);
                methods.push(json!({
                    "service": service, "method": method, "calls": calls,
                    "mean_ms": mean, "p50_ms": q(0.5), "p99_ms": q(0.99),
                }));
            }
            server_cpu = Some((after.sum(CPU, &[]) - before.sum(CPU, &[])) / seconds);
        }
        let client_cores = client_cpu.map(|cpu| cpu / seconds);
        let per_second = total as f64 / seconds;
        let mut summary = vec![format!(
            "{total} calls in {seconds:.2} s: {per_second:.1}/s from {concurrency} callers over {connections} connection(s), {}",
            rate.map_or("as fast as they could".to_string(), |r| format!(
                "scheduled at {r}/s"
            ))
        )];
        if let Some(rate) = rate.filter(|rate| per_second < rate * 0.95 || not_sent > 0) {
            summary.push(format!(
                "the callers fell behind the schedule ({per_second:.1} of {rate}/s): latencies include the time calls waited, and {not_sent} calls still waiting at the end were not sent"
            ));
        }
        let cores = |c: Option<f64>| c.map_or("-".to_string(), |c| format!("{c:.2}"));
        summary.push(format!(
            "CPU cores used: server {}, this client {}",
            cores(server_cpu),
            cores(client_cores)
        ));
        let document = json!({
            "seconds": seconds, "concurrency": concurrency, "connections": connections,
            "rate": rate, "calls": total, "not_sent": not_sent, "per_second": per_second,
            "queries": per_query, "server_methods": methods,
            "server_cpu_cores": server_cpu, "client_cpu_cores": client_cores,
        });
        Report {
            document,
            queries: rows,
            server: server_rows,
            summary,
        }
    }

    pub fn print(self, format: Format) -> anyhow::Result<()> {
        if format != Format::Table {
            return Printed::new(self.document, self.queries).print(format);
        }
        let mut out = std::io::stdout().lock();
        self.queries.table(&mut out)?;
        if !self.server.objects().is_empty() {
            use std::io::Write;
            writeln!(out, "\nserver time per method (from its metrics):")?;
            self.server.table(&mut out)?;
        }
        for line in self.summary {
            eprintln!("{line}");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_text_is_read_with_labels_and_exemplars() {
        let text = "# TYPE x counter\n\
            clerk_index_grpc_requests_total{service=\"clerkindex.v1.UserIndex\",method=\"CountUsers\",code=\"OK\"} 7\n\
            clerk_index_process_cpu_seconds_total 1.5 # {trace_id=\"a\"} 1\n\
            weird{a=\"x\\\"} # y\",b=\"2\"} 3\n";
        let scrape = parse_metrics(text);
        assert_eq!(scrape.sum(REQUESTS, &[("method", "CountUsers")]), 7.0);
        assert_eq!(scrape.sum(CPU, &[]), 1.5);
        assert_eq!(scrape.sum("weird", &[("a", "x\"} # y"), ("b", "2")]), 3.0);
        assert_eq!(
            scrape.methods(),
            [(
                "clerkindex.v1.UserIndex".to_string(),
                "CountUsers".to_string()
            )]
        );
    }

    #[test]
    fn quantiles_interpolate_inside_the_bucket_between_two_scrapes() {
        let before = [(0.001, 10.0), (0.002, 10.0), (f64::INFINITY, 10.0)];
        // 100 more calls: 50 under 1 ms, 50 between 1 and 2 ms.
        let after = [(0.001, 60.0), (0.002, 110.0), (f64::INFINITY, 110.0)];
        assert_eq!(bucket_quantile(&before, &after, 0.5), Some(0.001));
        let p75 = bucket_quantile(&before, &after, 0.75).unwrap();
        assert!((p75 - 0.0015).abs() < 1e-12, "{p75}");
        assert_eq!(bucket_quantile(&after, &after, 0.5), None);
    }

    #[test]
    fn percentiles_are_nearest_rank() {
        let values: Vec<u64> = (1..=100).collect();
        assert_eq!(percentile(&values, 50.0), 50.0);
        assert_eq!(percentile(&values, 99.0), 99.0);
        assert_eq!(percentile(&values, 100.0), 100.0);
        assert_eq!(percentile(&[], 50.0), 0.0);
    }
}
