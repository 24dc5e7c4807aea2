//! `update-metadata`: write metadata through to Clerk for a user or an organization; the index
//! holds the change when the command returns.

use serde_json::Value;

use super::client::{ConnectArgs, connect, status_error};
use super::output::{OutputArgs, Printed, Rows};
use super::users::leaves;
use crate::api::proto;

#[derive(Debug, clap::Args)]
#[command(group(clap::ArgGroup::new("target").required(true).args(["user", "organization"])))]
#[command(group(
    clap::ArgGroup::new("patch")
        .required(true)
        .multiple(true)
        .args(["public", "private", "unsafe_metadata"])
))]
pub struct UpdateMetadataArgs {
    #[command(flatten)]
    pub connect: ConnectArgs,
    /// The user to change (user_...); needs the `write` scope.
    #[arg(long)]
    pub user: Option<String>,
    /// The organization to change (org_...); needs the `write` scope.
    #[arg(long)]
    pub organization: Option<String>,
    /// A JSON object deep-merged into public_metadata (a null value removes its key); needs `public`.
    #[arg(long, value_parser = json_object)]
    pub public: Option<String>,
    /// A JSON object deep-merged into private_metadata; needs `private`.
    #[arg(long, value_parser = json_object)]
    pub private: Option<String>,
    /// A JSON object deep-merged into unsafe_metadata (users only); needs `unsafe`.
    #[arg(long = "unsafe", value_parser = json_object, conflicts_with = "organization")]
    pub unsafe_metadata: Option<String>,
    #[command(flatten)]
    pub output: OutputArgs,
}

/// A JSON object, as Clerk's metadata patches are.
fn json_object(text: &str) -> Result<String, String> {
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(_)) => Ok(text.to_string()),
        Ok(_) => Err("must be a JSON object, e.g. '{\"plan\": \"pro\"}'".into()),
        Err(error) => Err(format!("is not JSON: {error}")),
    }
}

pub async fn update_metadata(args: UpdateMetadataArgs) -> anyhow::Result<()> {
    let mut client = connect(&args.connect).await?;
    let json = match (&args.user, &args.organization) {
        (Some(user_id), _) => {
            let response = client
                .update_user_metadata(proto::UpdateUserMetadataRequest {
                    user_id: user_id.clone(),
                    public_metadata: args.public.clone(),
                    private_metadata: args.private.clone(),
                    unsafe_metadata: args.unsafe_metadata.clone(),
                    fields: Vec::new(),
                })
                .await
                .map_err(status_error)?
                .into_inner();
            response.user.unwrap_or_default().json
        }
        (None, Some(organization_id)) => {
            let response = client
                .update_organization_metadata(proto::UpdateOrganizationMetadataRequest {
                    organization_id: organization_id.clone(),
                    public_metadata: args.public.clone(),
                    private_metadata: args.private.clone(),
                })
                .await
                .map_err(status_error)?
                .into_inner();
            response.organization_json
        }
        (None, None) => unreachable!("clap requires --user or --organization"),
    };
    let value: Value = serde_json::from_str(&json)?;
    let mut rows = Rows::new(&["path", "value"]);
    leaves(&value, String::new(), &mut rows);
    let line = value.clone();
    Printed::new(value, rows)
        .with_lines(vec![line])
        .print(args.output.format)
}
