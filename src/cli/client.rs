//! Client commands: talk to a running clerk-index over gRPC and print the answer.

use serde_json::Value;

use crate::api::proto::user_index_client::UserIndexClient;
use crate::api::proto::{self, FilterSpec, filter_spec};

#[derive(Debug, clap::Args)]
pub struct ConnectArgs {
    /// The server's gRPC address.
    #[arg(
        long,
        env = "CLERK_INDEX_SERVER",
        default_value = "http://127.0.0.1:50051"
    )]
    pub server: String,
    /// API key sent as `authorization: Bearer <key>` (not needed against the demo).
    #[arg(long, env = "CLERK_INDEX_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
    /// PEM CA certificate(s) to verify an https:// server with.
    #[arg(long, env = "CLERK_INDEX_CA_CERT_FILE")]
    pub ca_cert: Option<std::path::PathBuf>,
    /// PEM client certificate, for a server that requires mutual TLS (with --client-key).
    #[arg(long, env = "CLERK_INDEX_CLIENT_CERT_FILE", requires = "client_key")]
    pub client_cert: Option<std::path::PathBuf>,
    #[arg(long, env = "CLERK_INDEX_CLIENT_KEY_FILE", requires = "client_cert")]
    pub client_key: Option<std::path::PathBuf>,
}

impl ConnectArgs {
    /// TLS settings for an https:// server.
    fn tls(&self) -> anyhow::Result<Option<tonic::transport::ClientTlsConfig>> {
        if !self.server.starts_with("https://") {
            return Ok(None);
        }
        let read = |flag: &str, path: &std::path::Path| {
            std::fs::read(path).map_err(|e| anyhow::anyhow!("{flag} {}: {e}", path.display()))
        };
        let ca = self.ca_cert.as_deref().ok_or_else(|| {
            anyhow::anyhow!(
                "an https:// server needs --ca-cert (the CA that signed its certificate)"
            )
        })?;
        let mut tls = tonic::transport::ClientTlsConfig::new().ca_certificate(
            tonic::transport::Certificate::from_pem(read("--ca-cert", ca)?),
        );
        if let (Some(cert), Some(key)) = (&self.client_cert, &self.client_key) {
            tls = tls.identity(tonic::transport::Identity::from_pem(
                read("--client-cert", cert)?,
                read("--client-key", key)?,
            ));
        }
        Ok(Some(tls))
    }
}

#[derive(Debug, clap::Args)]
pub struct CountArgs {
    #[command(flatten)]
    pub connect: ConnectArgs,
    /// Filter expression, e.g. 'public.plan_type = "pro" AND created_at > now-30d'. Omit for all users.
    #[arg(long, short)]
    pub filter: Option<String>,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, clap::Args)]
pub struct SearchArgs {
    #[command(flatten)]
    pub connect: ConnectArgs,
    #[arg(long, short)]
    pub filter: Option<String>,
    /// Sort path; prefix with - for descending (e.g. -public.points). Default: by id.
    #[arg(long, allow_hyphen_values = true)]
    pub sort: Option<String>,
    /// Users per page.
    #[arg(long, default_value_t = 20)]
    pub limit: u32,
    /// Continue after a previous page (printed as next_page_token).
    #[arg(long)]
    pub page_token: Option<String>,
    /// Comma-separated paths to return and show, e.g. public.points,email_addresses.
    #[arg(long, value_delimiter = ',')]
    pub fields: Vec<String>,
    /// Print one JSON user per line instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// Sends an `authorization` value (`Bearer <api key>`) with every call; `None` sends none.
#[derive(Clone)]
pub struct Authorization(pub Option<tonic::metadata::MetadataValue<tonic::metadata::Ascii>>);

impl tonic::service::Interceptor for Authorization {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(value) = &self.0 {
            request
                .metadata_mut()
                .insert("authorization", value.clone());
        }
        Ok(request)
    }
}

/// A connection to the server that authenticates every call.
pub(super) type Connection =
    tonic::service::interceptor::InterceptedService<tonic::transport::Channel, Authorization>;

pub(super) async fn channel(args: &ConnectArgs) -> anyhow::Result<Connection> {
    let token = match &args.api_key {
        Some(key) => Some(
            format!("Bearer {}", key.trim())
                .parse()
                .map_err(|_| anyhow::anyhow!("--api-key holds characters a header cannot"))?,
        ),
        None => None,
    };
    let mut endpoint = tonic::transport::Endpoint::from_shared(args.server.clone())
        .map_err(|e| anyhow::anyhow!("--server {}: {e}", args.server))?;
    if let Some(tls) = args.tls()? {
        endpoint = endpoint
            .tls_config(tls)
            .map_err(|e| anyhow::anyhow!("TLS settings for {}: {e}", args.server))?;
    }
    let channel = endpoint
        .connect()
        .await
        .map_err(|e| anyhow::anyhow!("cannot connect to clerk-index at {}: {e}", args.server))?;
    Ok(tonic::service::interceptor::InterceptedService::new(
        channel,
        Authorization(token),
    ))
}

async fn connect(args: &ConnectArgs) -> anyhow::Result<UserIndexClient<Connection>> {
    Ok(UserIndexClient::new(channel(args).await?))
}

pub(super) fn filter_spec(filter: &Option<String>) -> Option<FilterSpec> {
    filter.as_ref().map(|text| FilterSpec {
        spec: Some(filter_spec::Spec::Expression(text.clone())),
    })
}

pub(super) fn status_error(status: tonic::Status) -> anyhow::Error {
    anyhow::anyhow!("{:?}: {}", status.code(), status.message())
}

pub async fn count(args: CountArgs) -> anyhow::Result<()> {
    let mut client = connect(&args.connect).await?;
    let response = client
        .count_users(proto::CountUsersRequest {
            filter: filter_spec(&args.filter),
            min_generation: 0,
            min_log_sequence: 0,
        })
        .await
        .map_err(status_error)?
        .into_inner();
    let freshness = response.freshness.unwrap_or_default();
    if args.json {
        println!(
            "{}",
            serde_json::json!({"count": response.count, "generation": freshness.generation, "user_count": freshness.user_count})
        );
    } else {
        println!("{}", response.count);
        eprintln!(
            "(of {} users, index generation {})",
            freshness.user_count, freshness.generation
        );
    }
    Ok(())
}

pub async fn search(args: SearchArgs) -> anyhow::Result<()> {
    let mut client = connect(&args.connect).await?;
    let sort = args.sort.as_ref().map(|s| match s.strip_prefix('-') {
        Some(path) => proto::SortSpec {
            path: path.to_string(),
            descending: true,
        },
        None => proto::SortSpec {
            path: s.trim_start_matches('+').to_string(),
            descending: false,
        },
    });
    let response = client
        .search_users(proto::SearchUsersRequest {
            filter: filter_spec(&args.filter),
            sort,
            page_size: args.limit,
            page_token: args.page_token.clone().unwrap_or_default(),
            fields: requested_fields(&args),
            min_generation: 0,
            min_log_sequence: 0,
        })
        .await
        .map_err(status_error)?
        .into_inner();
    let users: Vec<Value> = response
        .users
        .iter()
        .map(|u| serde_json::from_str(&u.json).unwrap_or(Value::Null))
        .collect();
    if args.json {
        for user in &users {
            println!(
                "{}",
                crate::read::project_json(&user.to_string(), &args.fields)?
            );
        }
    } else {
        print_table(&users, &args.fields);
    }
    if !response.next_page_token.is_empty() {
        eprintln!("next_page_token: {}", response.next_page_token);
    }
    Ok(())
}

/// The field mask sent to the server: what the table shows, or what `--json` asked for.
fn requested_fields(args: &SearchArgs) -> Vec<String> {
    if args.json {
        return args.fields.clone();
    }
    let mut fields: Vec<String> = [
        "first_name",
        "last_name",
        "email_addresses",
        "primary_email_address_id",
    ]
    .into_iter()
    .map(String::from)
    .collect();
    fields.extend(args.fields.iter().cloned());
    fields
}

pub(super) fn primary_email(user: &Value) -> String {
    let primary = &user["primary_email_address_id"];
    user["email_addresses"]
        .as_array()
        .and_then(|emails| {
            emails
                .iter()
                .find(|e| &e["id"] == primary)
                .or(emails.first())
        })
        .and_then(|e| e["email_address"].as_str())
        .unwrap_or("")
        .to_string()
}

pub(super) fn value_at(user: &Value, path: &str) -> String {
    let mut keys = path.split('.');
    let mut current = match keys.next() {
        Some(first) => match crate::user::MetadataNamespace::parse(first) {
            Some(namespace) => &user[namespace.field_name()],
            None => &user[first],
        },
        None => return String::new(),
    };
    for key in keys {
        current = &current[key];
    }
    match current {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn print_table(users: &[Value], fields: &[String]) {
    let mut headers = vec!["id".to_string(), "email".into(), "name".into()];
    headers.extend(fields.iter().cloned());
    let rows: Vec<Vec<String>> = users
        .iter()
        .map(|user| {
            let name = format!(
                "{} {}",
                value_at(user, "first_name"),
                value_at(user, "last_name")
            )
            .trim()
            .to_string();
            let mut row = vec![value_at(user, "id"), primary_email(user), name];
            row.extend(fields.iter().map(|f| value_at(user, f)));
            row
        })
        .collect();
    let widths: Vec<usize> = (0..headers.len())
        .map(|i| {
            rows.iter()
                .map(|r| r[i].chars().count())
                .chain([headers[i].len()])
                .max()
                .unwrap_or(0)
                .min(48)
        })
        .collect();
    let line = |cells: &[String]| {
        cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{:<w$}", c.chars().take(*w).collect::<String>(), w = w))
            .collect::<Vec<_>>()
            .join("  ")
    };
    println!("{}", line(&headers));
    for row in &rows {
        println!("{}", line(row));
    }
    if rows.is_empty() {
        println!("(no users match)");
    }
}

#[derive(Debug, clap::Args)]
pub struct FacetArgs {
    #[command(flatten)]
    pub connect: ConnectArgs,
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
    /// Print the response as JSON.
    #[arg(long)]
    pub json: bool,
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
        Some(Kind::String(s)) => format!("{s:?}"),
        Some(Kind::Integer(i)) => i.to_string(),
        Some(Kind::Number(n)) => n.to_string(),
        Some(Kind::Boolean(b)) => b.to_string(),
        _ => "?".into(),
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
        .map_err(status_error)?
        .into_inner();
    if args.json {
        println!("{response:#?}");
        return Ok(());
    }
    println!("{} users match", response.matched);
    use proto::facet_result::Result as Outcome;
    for facet in &response.facets {
        println!("\n{}", facet.name);
        match &facet.result {
            Some(Outcome::Terms(terms)) => {
                for bucket in &terms.buckets {
                    println!("  {:<32} {:>10}", value_text(&bucket.value), bucket.count);
                }
                println!("  {:<32} {:>10}", "(other)", terms.other_count);
                println!("  {:<32} {:>10}", "(no value)", terms.missing);
                println!(
                    "  {} distinct values{}",
                    terms.distinct_values,
                    if terms.distinct_values_exact {
                        ""
                    } else {
                        " or more"
                    }
                );
            }
            Some(Outcome::Stats(stats)) => {
                println!(
                    "  count {}  min {}  max {}  avg {:.3}  sum {}",
                    stats.count, stats.min, stats.max, stats.avg, stats.sum
                );
                for p in &stats.percentiles {
                    println!("  p{} ~ {}", p.percent, p.value);
                }
            }
            Some(Outcome::Histogram(h)) | Some(Outcome::DateHistogram(h)) => {
                for bucket in &h.buckets {
                    let key = if bucket.key_as_string.is_empty() {
                        bucket.key.to_string()
                    } else {
                        bucket.key_as_string[..10].to_string()
                    };
                    println!("  {key:<24} {:>10}", bucket.count);
                }
            }
            None => {}
        }
    }
    Ok(())
}

#[derive(Debug, clap::Args)]
pub struct HealthArgs {
    #[command(flatten)]
    pub connect: ConnectArgs,
    /// The service to ask about; empty: the whole server.
    #[arg(long, default_value = "")]
    pub service: String,
}

/// Asks the server's gRPC health service; exits non-zero unless SERVING (for probes, `helm test`
/// and scripts).
pub async fn health(args: HealthArgs) -> anyhow::Result<()> {
    use tonic_health::pb::health_check_response::ServingStatus;
    let channel = channel(&args.connect).await?;
    let response = tonic_health::pb::health_client::HealthClient::new(channel)
        .check(tonic_health::pb::HealthCheckRequest {
            service: args.service.clone(),
        })
        .await
        .map_err(|status| anyhow::anyhow!("{}: {}", status.code(), status.message()))?
        .into_inner();
    let status = ServingStatus::try_from(response.status).unwrap_or(ServingStatus::Unknown);
    println!("{}", status.as_str_name());
    anyhow::ensure!(
        status == ServingStatus::Serving,
        "the server is not serving yet"
    );
    Ok(())
}
