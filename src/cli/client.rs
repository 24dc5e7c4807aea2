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

pub(super) async fn channel(args: &ConnectArgs) -> anyhow::Result<tonic::transport::Channel> {
    tonic::transport::Endpoint::from_shared(args.server.clone())
        .map_err(|e| anyhow::anyhow!("--server {}: {e}", args.server))?
        .connect()
        .await
        .map_err(|e| anyhow::anyhow!("cannot connect to clerk-index at {}: {e}", args.server))
}

async fn connect(args: &ConnectArgs) -> anyhow::Result<UserIndexClient<tonic::transport::Channel>> {
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
                crate::api::project_json(&user.to_string(), &args.fields)?
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
