//! `count`, `search`, `get`, `fields` and `validate`: read users (and check filters) on a
//! running server.

use serde_json::{Value, json};

use super::client::{ConnectArgs, connect, filter_spec, primary_email, query_error, status_error};
use super::output::{OutputArgs, Printed, Rows, json_of};
use crate::api::proto;

#[derive(Debug, clap::Args)]
pub struct CountArgs {
    #[command(flatten)]
    pub connect: ConnectArgs,
    /// Filter expression, e.g. 'public.plan_type = "pro" AND created_at > now-30d'. Omit for all users.
    #[arg(long, short)]
    pub filter: Option<String>,
    #[command(flatten)]
    pub output: OutputArgs,
}

pub async fn count(args: CountArgs) -> anyhow::Result<()> {
    let response = connect(&args.connect)
        .await?
        .count_users(proto::CountUsersRequest {
            filter: filter_spec(&args.filter),
            min_generation: 0,
            min_log_sequence: 0,
        })
        .await
        .map_err(|status| query_error(status, args.filter.as_deref()))?
        .into_inner();
    let freshness = response.freshness.unwrap_or_default();
    let mut rows = Rows::new(&["count", "of_users", "generation"]);
    rows.push(vec![
        response.count.to_string(),
        freshness.user_count.to_string(),
        freshness.generation.to_string(),
    ]);
    if args.output.format == super::output::Format::Table {
        // The number alone, for `$(clerk-index count ...)`; the context goes to stderr.
        println!("{}", response.count);
        eprintln!(
            "(of {} users, index generation {})",
            freshness.user_count, freshness.generation
        );
        return Ok(());
    }
    Printed::new(json_of(&response)?, rows).print(args.output.format)
}

#[derive(Debug, clap::Args)]
pub struct SearchArgs {
    #[command(flatten)]
    pub connect: ConnectArgs,
    /// Filter expression, e.g. 'public.plan_type = "pro"'. Omit for all users.
    #[arg(long, short)]
    pub filter: Option<String>,
    /// Sort path; prefix with - for descending (e.g. -public.points). Default: by id.
    #[arg(long, allow_hyphen_values = true)]
    pub sort: Option<String>,
    /// Users per page (the server's limit is 1000 by default).
    #[arg(long, alias = "limit", default_value_t = 20)]
    pub page_size: u32,
    /// Continue after a previous page (its token is printed on stderr).
    #[arg(long)]
    pub page_token: Option<String>,
    /// Follow every page to the last one (for more than a few thousand users, `export` streams
    /// from one snapshot instead).
    #[arg(long)]
    pub all: bool,
    /// Comma-separated paths to return and show, e.g. public.points,email_addresses.
    #[arg(long, value_delimiter = ',')]
    pub fields: Vec<String>,
    #[command(flatten)]
    pub output: OutputArgs,
}

/// The columns shown besides `--fields` in a table or CSV.
const USER_COLUMNS: [&str; 4] = [
    "first_name",
    "last_name",
    "email_addresses",
    "primary_email_address_id",
];

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
    let structured = matches!(
        args.output.format,
        super::output::Format::Json | super::output::Format::Jsonl
    );
    let mut fields = args.fields.clone();
    if !structured {
        fields.extend(USER_COLUMNS.map(String::from));
    }
    let mut users: Vec<Value> = Vec::new();
    let mut page_token = args.page_token.clone().unwrap_or_default();
    let freshness = loop {
        let response = client
            .search_users(proto::SearchUsersRequest {
                filter: filter_spec(&args.filter),
                sort: sort.clone(),
                page_size: args.page_size,
                page_token: page_token.clone(),
                fields: fields.clone(),
                min_generation: 0,
                min_log_sequence: 0,
            })
            .await
            .map_err(|status| query_error(status, args.filter.as_deref()))?
            .into_inner();
        for user in &response.users {
            let user: Value = serde_json::from_str(&user.json)?;
            users.push(if structured {
                serde_json::from_str(&crate::read::project_json(&user.to_string(), &args.fields)?)?
            } else {
                user
            });
        }
        page_token = response.next_page_token;
        if !args.all || page_token.is_empty() {
            break response.freshness.unwrap_or_default();
        }
    };
    if !page_token.is_empty() {
        eprintln!("next page: --page-token {page_token}");
    }
    if users.is_empty() {
        eprintln!("(no users match)");
    }
    let mut rows = Rows::new(&["id", "email", "name"]);
    rows.headers.extend(args.fields.iter().cloned());
    for user in &users {
        let name = format!(
            "{} {}",
            super::client::value_at(user, "first_name"),
            super::client::value_at(user, "last_name")
        );
        let mut row = vec![
            super::client::value_at(user, "id"),
            primary_email(user),
            name.trim().to_string(),
        ];
        row.extend(args.fields.iter().map(|f| super::client::value_at(user, f)));
        rows.push(row);
    }
    let document = json!({
        "users": users,
        "nextPageToken": page_token,
        "freshness": json_of(&freshness)?,
    });
    Printed::new(document, rows)
        .with_lines(users)
        .print(args.output.format)
}

#[derive(Debug, clap::Args)]
pub struct GetArgs {
    #[command(flatten)]
    pub connect: ConnectArgs,
    /// The user's Clerk id (user_...).
    pub user_id: String,
    /// Comma-separated paths to return, e.g. email_addresses,public_metadata; default: all.
    #[arg(long, value_delimiter = ',')]
    pub fields: Vec<String>,
    #[command(flatten)]
    pub output: OutputArgs,
}

pub async fn get(args: GetArgs) -> anyhow::Result<()> {
    let response = connect(&args.connect)
        .await?
        .get_user(proto::GetUserRequest {
            user_id: args.user_id.clone(),
            fields: args.fields.clone(),
            min_generation: 0,
            min_log_sequence: 0,
        })
        .await
        .map_err(status_error)?
        .into_inner();
    let user: Value = serde_json::from_str(&response.user.unwrap_or_default().json)?;
    // A table of one user: every leaf path and its value.
    let mut rows = Rows::new(&["path", "value"]);
    leaves(&user, String::new(), &mut rows);
    let line = user.clone();
    Printed::new(user, rows)
        .with_lines(vec![line])
        .print(args.output.format)
}

/// Every scalar (and empty container) under `value`, by dotted path (`[n]` for array items).
pub(super) fn leaves(value: &Value, path: String, rows: &mut Rows) {
    match value {
        Value::Object(map) if !map.is_empty() => {
            for (key, child) in map {
                let child_path = if path.is_empty() {
                    key.clone()
                } else {
                    format!("{path}.{key}")
                };
                leaves(child, child_path, rows);
            }
        }
        Value::Array(items) if !items.is_empty() => {
            for (n, child) in items.iter().enumerate() {
                leaves(child, format!("{path}[{n}]"), rows);
            }
        }
        Value::String(text) => rows.push(vec![path, text.clone()]),
        other => rows.push(vec![path, other.to_string()]),
    }
}

#[derive(Debug, clap::Args)]
pub struct FieldsArgs {
    #[command(flatten)]
    pub connect: ConnectArgs,
    /// Only paths starting with this, e.g. public. or private.prefs.
    #[arg(long, default_value = "")]
    pub prefix: String,
    #[command(flatten)]
    pub output: OutputArgs,
}

pub async fn fields(args: FieldsArgs) -> anyhow::Result<()> {
    let response = connect(&args.connect)
        .await?
        .describe_fields(proto::DescribeFieldsRequest {
            path_prefix: args.prefix.clone(),
            min_generation: 0,
            min_log_sequence: 0,
        })
        .await
        .map_err(status_error)?
        .into_inner();
    let mut rows = Rows::new(&["path", "types", "users", "type_conflict"]);
    for field in &response.fields {
        let types: Vec<String> = field
            .types
            .iter()
            .map(|t| format!("{}:{}", t.r#type, t.users))
            .collect();
        let users: u64 = field.types.iter().map(|t| t.users).sum();
        rows.push(vec![
            field.path.clone(),
            types.join(" "),
            users.to_string(),
            field.type_conflict.to_string(),
        ]);
    }
    let document = json_of(&response)?;
    let lines = document["fields"].as_array().cloned().unwrap_or_default();
    Printed::new(document, rows)
        .with_lines(lines)
        .print(args.output.format)
}

#[derive(Debug, clap::Args)]
pub struct ValidateArgs {
    #[command(flatten)]
    pub connect: ConnectArgs,
    /// The filter expression to check, e.g. 'public.membership_tier = "gold"'.
    pub filter: String,
    #[command(flatten)]
    pub output: OutputArgs,
}

/// One warning as a line: what, where, and the paths meant.
pub(super) fn warning_line(warning: &proto::FilterWarning) -> String {
    let mut line = warning.message.clone();
    if warning.position > 0 {
        line.push_str(&format!(" (at character {})", warning.position));
    }
    if !warning.suggestions.is_empty() {
        line.push_str(&format!(
            "; did you mean {}?",
            warning.suggestions.join(" or ")
        ));
    }
    line
}

pub async fn validate(args: ValidateArgs) -> anyhow::Result<()> {
    let response = connect(&args.connect)
        .await?
        .validate_filter(proto::ValidateFilterRequest {
            filter: filter_spec(&Some(args.filter.clone())),
        })
        .await
        .map_err(|status| query_error(status, Some(&args.filter)))?
        .into_inner();
    let mut rows = Rows::new(&["code", "path", "position", "warning"]);
    for warning in &response.warnings {
        let code = proto::filter_warning::Code::try_from(warning.code)
            .map_or("unknown", |c| c.as_str_name());
        rows.push(vec![
            code.trim_start_matches("CODE_").to_lowercase(),
            warning.path.clone(),
            warning.position.to_string(),
            warning_line(warning),
        ]);
    }
    if args.output.format == super::output::Format::Table {
        println!("{}", response.expression);
        eprintln!(
            "(needs scopes: {}; time-driven: {})",
            if response.required_scopes.is_empty() {
                "none beyond reading".to_string()
            } else {
                response.required_scopes.join(",")
            },
            if response.time_driven { "yes" } else { "no" }
        );
        for warning in &response.warnings {
            eprintln!("warning: {}", warning_line(warning));
        }
        return Ok(());
    }
    let document = json_of(&response)?;
    let lines = document["warnings"].as_array().cloned().unwrap_or_default();
    Printed::new(document, rows)
        .with_lines(lines)
        .print(args.output.format)
}
