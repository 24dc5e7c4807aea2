//! `destinations ...`: webhook destinations of segment events on a running server.

use super::client::{ConnectArgs, channel, status_error};
use super::output::{OutputArgs, Printed, Rows, json_of};
use crate::api::proto;
use crate::api::proto::segments_client::SegmentsClient;

#[derive(Debug, clap::Args)]
pub struct DestinationsArgs {
    #[command(flatten)]
    pub connect: ConnectArgs,
    #[command(flatten)]
    pub output: OutputArgs,
    #[command(subcommand)]
    pub command: DestinationsCommand,
}

#[derive(Debug, clap::Subcommand)]
pub enum DestinationsCommand {
    /// Every destination with its state, position, failures and lag.
    List,
    /// Send the events of segments to an HTTPS URL, signed (prints the signing secret once).
    Create {
        /// 1-64 lower-case letters, digits, - and _.
        name: String,
        /// Where to POST, e.g. https://hooks.example.com/clerk-index.
        #[arg(long)]
        url: String,
        /// A segment to follow (repeat for several).
        #[arg(long = "segment", required = true)]
        segments: Vec<String>,
        /// Events per request (0: 100).
        #[arg(long, default_value_t = 0)]
        batch_size: u32,
        /// Milliseconds the first event of a batch waits for more (0: 200).
        #[arg(long, default_value_t = 0)]
        batch_delay_ms: u64,
    },
    /// Change a destination's URL, segments or batching (what is not given stays).
    Update {
        /// The destination's name.
        name: String,
        /// A new URL to POST to (retries start over).
        #[arg(long)]
        url: Option<String>,
        /// The segments to follow instead (repeat for several).
        #[arg(long = "segment")]
        segments: Vec<String>,
        /// Events per request (0: 100).
        #[arg(long)]
        batch_size: Option<u32>,
        /// Milliseconds the first event of a batch waits for more (0: 200).
        #[arg(long)]
        batch_delay_ms: Option<u64>,
    },
    /// Stop delivering until resumed.
    Pause {
        /// The destination's name.
        name: String,
    },
    /// Deliver again from where it stopped (a paused or failing destination).
    Resume {
        /// The destination's name.
        name: String,
    },
    /// Send its segments' members as a snapshot, then the events after it.
    Resync {
        /// The destination's name.
        name: String,
    },
    /// A new signing secret (printed); the old one signs too for 24 hours.
    Rotate {
        /// The destination's name.
        name: String,
    },
    /// Send one signed test request now and print how it went.
    Test {
        /// The destination's name.
        name: String,
    },
    /// Delete a destination.
    Delete {
        /// The destination's name.
        name: String,
    },
}

fn state_name(state: i32) -> &'static str {
    match proto::DestinationState::try_from(state) {
        Ok(proto::DestinationState::Active) => "active",
        Ok(proto::DestinationState::Paused) => "paused",
        Ok(proto::DestinationState::Failing) => "failing",
        Ok(proto::DestinationState::Gap) => "gap",
        _ => "unknown",
    }
}

fn rows(destinations: &[proto::Destination]) -> Rows {
    let mut rows = Rows::new(&[
        "name",
        "state",
        "url",
        "segments",
        "delivered_through",
        "delivered",
        "lag_events",
        "failed_attempts",
        "last_error",
    ]);
    for d in destinations {
        rows.push(vec![
            d.name.clone(),
            state_name(d.state).into(),
            d.url.clone(),
            d.segments.join(","),
            d.delivered_through_sequence.to_string(),
            d.delivered_events.to_string(),
            d.lag_events.to_string(),
            d.failed_attempts.to_string(),
            d.last_error.clone(),
        ]);
    }
    rows
}

fn one(destination: Option<proto::Destination>) -> anyhow::Result<Printed> {
    let destination = destination.unwrap_or_default();
    let document = json_of(&destination)?;
    Ok(Printed::new(document.clone(), rows(&[destination])).with_lines(vec![document]))
}

/// The destination with its new secret; the secret also goes to stderr in table form, where
/// the table has no column for it.
fn with_secret(destination: Option<proto::Destination>, secret: String) -> anyhow::Result<Printed> {
    eprintln!("signing secret (shown once): {secret}");
    let destination = destination.unwrap_or_default();
    let mut document = json_of(&destination)?;
    document["signingSecret"] = secret.into();
    Ok(Printed::new(document.clone(), rows(&[destination])).with_lines(vec![document]))
}

pub async fn destinations(args: DestinationsArgs) -> anyhow::Result<()> {
    let mut client = SegmentsClient::new(channel(&args.connect).await?)
        .accept_compressed(tonic::codec::CompressionEncoding::Gzip);
    let printed = match args.command {
        DestinationsCommand::List => {
            let response = (client
                .list_destinations(proto::ListDestinationsRequest {})
                .await)
                .map_err(status_error)?
                .into_inner();
            let document = json_of(&response)?;
            let lines = (document["destinations"].as_array().cloned()).unwrap_or_default();
            Printed::new(document, rows(&response.destinations)).with_lines(lines)
        }
        DestinationsCommand::Create {
            name,
            url,
            segments,
            batch_size,
            batch_delay_ms,
        } => {
            let request = proto::CreateDestinationRequest {
                name,
                url,
                segments,
                batch_size,
                batch_delay_ms,
            };
            let response = (client.create_destination(request).await)
                .map_err(status_error)?
                .into_inner();
            with_secret(response.destination, response.signing_secret)?
        }
        DestinationsCommand::Update {
            name,
            url,
            segments,
            batch_size,
            batch_delay_ms,
        } => {
            let request = proto::UpdateDestinationRequest {
                name,
                url,
                segments: (!segments.is_empty()).then_some(proto::SegmentNames { names: segments }),
                batch_size,
                batch_delay_ms,
            };
            let response = client.update_destination(request).await;
            one(response.map_err(status_error)?.into_inner().destination)?
        }
        DestinationsCommand::Pause { name } => {
            let request = proto::PauseDestinationRequest { name };
            let response = client.pause_destination(request).await;
            one(response.map_err(status_error)?.into_inner().destination)?
        }
        DestinationsCommand::Resume { name } => {
            let request = proto::ResumeDestinationRequest { name };
            let response = client.resume_destination(request).await;
            one(response.map_err(status_error)?.into_inner().destination)?
        }
        DestinationsCommand::Resync { name } => {
            let request = proto::ResyncDestinationRequest { name };
            let response = client.resync_destination(request).await;
            one(response.map_err(status_error)?.into_inner().destination)?
        }
        DestinationsCommand::Rotate { name } => {
            let request = proto::RotateDestinationSecretRequest { name };
            let response = (client.rotate_destination_secret(request).await)
                .map_err(status_error)?
                .into_inner();
            with_secret(response.destination, response.signing_secret)?
        }
        DestinationsCommand::Test { name } => {
            let request = proto::TestDestinationRequest { name };
            let response = (client.test_destination(request).await)
                .map_err(status_error)?
                .into_inner();
            let mut rows = Rows::new(&["status", "latency_ms", "error"]);
            rows.push(vec![
                response.status_code.to_string(),
                response.latency_ms.to_string(),
                response.error.clone(),
            ]);
            Printed::new(json_of(&response)?, rows)
        }
        DestinationsCommand::Delete { name } => {
            let request = proto::DeleteDestinationRequest { name: name.clone() };
            client
                .delete_destination(request)
                .await
                .map_err(status_error)?;
            let mut rows = Rows::new(&["deleted"]);
            rows.push(vec![name.clone()]);
            Printed::new(serde_json::json!({ "deleted": name }), rows)
        }
    };
    printed.print(args.output.format)
}
