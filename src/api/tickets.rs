//! Single-use export tickets, so a browser can download an export without its key in a URL.
//!
//! `POST /console/v1/export-tickets` (the key in `Authorization`, the filter or segment, the
//! format and columns in a JSON body) checks the key and the filter or segment at once, and
//! answers a random ticket that lives a minute. `GET /console/v1/exports/{ticket}` spends it:
//! the export runs as that key, through the same `ExportUsers` or `ListSegmentMembers` as every
//! other caller, streamed as CSV or JSON lines with its total in `X-Export-Total`. A ticket
//! works once; an expired or spent one is 404. At most [`MAX_TICKETS`] are outstanding.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::Bytes;
use prost::Message;
use rand::RngCore;
use serde::Deserialize;
use tokio::time::Instant;

use super::connect::{ApiBridge, error_response};
use super::connect_error::http_status;
use super::connect_stream::{Messages, Next, status_of};
use super::proto;
use crate::user::{DEFAULT_COLUMNS, column_fields, column_value};

/// How long a ticket may wait to be spent.
pub const TICKET_LIFETIME: Duration = Duration::from_secs(60);
/// Tickets issued and not yet spent or expired, in all.
pub const MAX_TICKETS: usize = 256;
/// The most columns one CSV export may ask for.
const MAX_COLUMNS: usize = 200;

/// What a ticket's export is of.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct TicketRequest {
    /// A filter expression; absent (and no segment) = every user.
    #[serde(default)]
    filter: Option<String>,
    /// A saved segment's name, instead of a filter.
    #[serde(default)]
    segment: Option<String>,
    /// `csv` or `jsonl`.
    format: Format,
    /// CSV columns (paths, `email` for the primary address); JSON lines: the fields to keep.
    #[serde(default)]
    columns: Vec<String>,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Format {
    Csv,
    Jsonl,
}

/// An issued ticket: whose it is and what it exports.
struct Ticket {
    authorization: Option<HeaderValue>,
    path: &'static str,
    request: Vec<u8>,
    format: Format,
    columns: Vec<String>,
    expires: Instant,
}

#[derive(Clone)]
struct Tickets {
    bridge: ApiBridge,
    issued: Arc<Mutex<HashMap<String, Ticket>>>,
}

/// The ticket routes, calling the API through `bridge`.
pub(super) fn ticket_router(bridge: ApiBridge) -> Router {
    let tickets = Tickets {
        bridge,
        issued: Arc::default(),
    };
    Router::new()
        .route("/console/v1/export-tickets", post(issue))
        .route("/console/v1/exports/{ticket}", get(download))
        .with_state(tickets)
}

fn peer_of(request: &Request) -> Option<SocketAddr> {
    request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(peer)| *peer)
}

fn refuse(code: tonic::Code, message: impl Into<String>) -> Response {
    let status = tonic::Status::new(code, message);
    error_response(http_status(code), &status, &HeaderMap::new())
}

async fn issue(State(tickets): State<Tickets>, request: Request) -> Response {
    let peer = peer_of(&request);
    let (parts, body) = request.into_parts();
    let Ok(body) = axum::body::to_bytes(body, 64 << 10).await else {
        return refuse(
            tonic::Code::ResourceExhausted,
            "a ticket request is at most 64 KiB",
        );
    };
    let asked: TicketRequest = match serde_json::from_slice(&body) {
        Ok(asked) => asked,
        Err(e) => {
            return refuse(
                tonic::Code::InvalidArgument,
                format!("the ticket request: {e}"),
            );
        }
    };
    if asked.columns.len() > MAX_COLUMNS {
        let message = format!("at most {MAX_COLUMNS} columns");
        return refuse(tonic::Code::InvalidArgument, message);
    }
    let format = asked.format;
    let (check_path, check, path, export, columns) = plan(asked);
    // The key, its scopes and the filter or segment are checked now, by the API itself.
    let checked = tickets
        .bridge
        .call(check_path, &parts.headers, &check, peer)
        .await;
    let (checked_parts, checked_body) = checked.into_parts();
    let (_, status, _) = super::connect_stream::collect(&checked_parts.headers, checked_body).await;
    if status.code() != tonic::Code::Ok {
        return error_response(http_status(status.code()), &status, &HeaderMap::new());
    }
    let ticket = Ticket {
        authorization: parts.headers.get(header::AUTHORIZATION).cloned(),
        path,
        request: export,
        format,
        columns,
        expires: Instant::now() + TICKET_LIFETIME,
    };
    let Some(id) = tickets.insert(ticket) else {
        let message = format!("{MAX_TICKETS} export tickets are outstanding; retry in a minute");
        return refuse(tonic::Code::ResourceExhausted, message);
    };
    let answer = serde_json::json!({
        "ticket": id,
        "url": format!("/console/v1/exports/{id}"),
        "expiresInSeconds": TICKET_LIFETIME.as_secs(),
    });
    (StatusCode::OK, axum::Json(answer)).into_response()
}

/// The check to run now and the export to run later: (check method, its request, export
/// method, its request, CSV columns).
fn plan(asked: TicketRequest) -> (&'static str, Vec<u8>, &'static str, Vec<u8>, Vec<String>) {
    let TicketRequest {
        filter,
        segment,
        format,
        columns,
    } = asked;
    let columns = match (format, columns.is_empty()) {
        (Format::Csv, true) => DEFAULT_COLUMNS.iter().map(|c| c.to_string()).collect(),
        _ => columns,
    };
    let fields = match format {
        Format::Csv => column_fields(&columns),
        Format::Jsonl => columns.clone(),
    };
    match segment {
        Some(name) => (
            "/clerkindex.v1.Segments/CountSegment",
            proto::CountSegmentRequest {
                name: name.clone(),
                ..Default::default()
            }
            .encode_to_vec(),
            "/clerkindex.v1.Segments/ListSegmentMembers",
            proto::ListSegmentMembersRequest {
                name,
                fields,
                ..Default::default()
            }
            .encode_to_vec(),
            columns,
        ),
        None => {
            let filter = filter.map(|expression| proto::FilterSpec {
                spec: Some(proto::filter_spec::Spec::Expression(expression)),
            });
            (
                // A one-user search checks the filter and the fields' scopes.
                "/clerkindex.v1.UserIndex/SearchUsers",
                proto::SearchUsersRequest {
                    filter: filter.clone(),
                    page_size: 1,
                    fields: fields.clone(),
                    ..Default::default()
                }
                .encode_to_vec(),
                "/clerkindex.v1.UserIndex/ExportUsers",
                proto::ExportUsersRequest {
                    filter,
                    fields,
                    ..Default::default()
                }
                .encode_to_vec(),
                columns,
            )
        }
    }
}

impl Tickets {
    /// Files `ticket` under a new random id, unless too many are outstanding.
    fn insert(&self, ticket: Ticket) -> Option<String> {
        let mut issued = self.issued.lock().expect("tickets lock");
        let now = Instant::now();
        issued.retain(|_, ticket| ticket.expires > now);
        if issued.len() >= MAX_TICKETS {
            return None;
        }
        let mut random = [0u8; 24];
        rand::rng().fill_bytes(&mut random);
        let id = URL_SAFE_NO_PAD.encode(random);
        issued.insert(id.clone(), ticket);
        Some(id)
    }

    /// The ticket `id`, spent: it cannot be used again.
    fn spend(&self, id: &str) -> Option<Ticket> {
        let mut issued = self.issued.lock().expect("tickets lock");
        issued
            .remove(id)
            .filter(|ticket| ticket.expires > Instant::now())
    }
}

async fn download(
    State(tickets): State<Tickets>,
    Path(id): Path<String>,
    request: Request,
) -> Response {
    let Some(ticket) = tickets.spend(&id) else {
        return refuse(
            tonic::Code::NotFound,
            "no such export ticket (each works once, for a minute)",
        );
    };
    let mut headers = HeaderMap::new();
    if let Some(authorization) = &ticket.authorization {
        headers.insert(header::AUTHORIZATION, authorization.clone());
    }
    let peer = peer_of(&request);
    let response = tickets
        .bridge
        .call(ticket.path, &headers, &ticket.request, peer)
        .await;
    let (parts, body) = response.into_parts();
    if let Some(status) = status_of(&parts.headers) {
        return error_response(http_status(status.code()), &status, &HeaderMap::new());
    }
    let mut rows = Rows {
        messages: Messages::new(body),
        format: ticket.format,
        columns: ticket.columns,
        header_written: false,
    };
    // The first message says how many users follow; an error before it is the answer.
    let first = match rows.next_message().await {
        Ok(Some(first)) => first,
        Ok(None) => proto::ExportUsersResponse::default(),
        Err(status) => {
            return error_response(http_status(status.code()), &status, &HeaderMap::new());
        }
    };
    let (content_type, extension) = match ticket.format {
        Format::Csv => ("text/csv; charset=utf-8", "csv"),
        Format::Jsonl => ("application/x-ndjson", "jsonl"),
    };
    let disposition = format!("attachment; filename=\"clerk-index-export.{extension}\"");
    let first_rows = rows.render(&first);
    let chunks =
        futures_util::stream::unfold((rows, Some(first_rows)), |(mut rows, first)| async move {
            if let Some(first) = first {
                return Some((Ok(first), (rows, None)));
            }
            match rows.next_message().await {
                Ok(Some(message)) => {
                    let chunk = rows.render(&message);
                    Some((Ok(chunk), (rows, None)))
                }
                Ok(None) => None,
                // Cut the download short, so the browser reports it failed rather than complete.
                Err(status) => Some((
                    Err(std::io::Error::other(status.message().to_string())),
                    (rows, None),
                )),
            }
        });
    (
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, content_type.to_string()),
            (header::CONTENT_DISPOSITION, disposition),
            (header::CACHE_CONTROL, "no-store".to_string()),
            (
                header::HeaderName::from_static("x-export-total"),
                first.total.to_string(),
            ),
        ],
        Body::from_stream(chunks),
    )
        .into_response()
}

/// The export's messages, rendered as rows.
struct Rows {
    messages: Messages,
    format: Format,
    columns: Vec<String>,
    header_written: bool,
}

impl Rows {
    /// The next message of the export; `None` at its successful end.
    async fn next_message(&mut self) -> Result<Option<proto::ExportUsersResponse>, tonic::Status> {
        match self.messages.next().await {
            Next::Message(message) => proto::ExportUsersResponse::decode(message)
                .map(Some)
                .map_err(|e| tonic::Status::internal(e.to_string())),
            Next::End(status, _) if status.code() == tonic::Code::Ok => Ok(None),
            Next::End(status, _) => Err(status),
        }
    }

    fn render(&mut self, message: &proto::ExportUsersResponse) -> Bytes {
        let mut out = Vec::new();
        match self.format {
            Format::Jsonl => {
                for user in &message.users {
                    out.extend_from_slice(user.json.as_bytes());
                    out.push(b'\n');
                }
            }
            Format::Csv => {
                let mut writer = csv::Writer::from_writer(&mut out);
                if !self.header_written {
                    let _ = writer.write_record(&self.columns);
                    self.header_written = true;
                }
                for user in &message.users {
                    let json: serde_json::Value =
                        serde_json::from_str(&user.json).unwrap_or_default();
                    let row: Vec<String> = self
                        .columns
                        .iter()
                        .map(|c| column_value(&json, c))
                        .collect();
                    let _ = writer.write_record(&row);
                }
                let _ = writer.flush();
            }
        }
        Bytes::from(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tickets() -> Tickets {
        let api = tower::util::BoxCloneSyncService::new(tower::service_fn(
            |_: http::Request<tonic::body::Body>| async {
                Ok::<_, std::convert::Infallible>(http::Response::new(tonic::body::Body::empty()))
            },
        ));
        Tickets {
            bridge: ApiBridge::new(api, Duration::from_secs(15)),
            issued: Arc::default(),
        }
    }

    fn ticket(expires: Instant) -> Ticket {
        Ticket {
            authorization: None,
            path: "/clerkindex.v1.UserIndex/ExportUsers",
            request: Vec::new(),
            format: Format::Csv,
            columns: Vec::new(),
            expires,
        }
    }

    #[tokio::test]
    async fn a_ticket_is_spent_once_and_expires() {
        let tickets = tickets();
        let id = tickets
            .insert(ticket(Instant::now() + TICKET_LIFETIME))
            .unwrap();
        assert!(id.len() >= 32, "{id}");
        assert!(tickets.spend(&id).is_some());
        assert!(tickets.spend(&id).is_none());
        let stale = tickets.insert(ticket(Instant::now())).unwrap();
        assert!(tickets.spend(&stale).is_none());
    }

    #[tokio::test]
    async fn outstanding_tickets_are_bounded_and_expired_ones_make_room() {
        let tickets = tickets();
        for _ in 0..MAX_TICKETS {
            tickets
                .insert(ticket(Instant::now() + Duration::from_millis(200)))
                .unwrap();
        }
        assert!(
            tickets
                .insert(ticket(Instant::now() + TICKET_LIFETIME))
                .is_none()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
        assert!(
            tickets
                .insert(ticket(Instant::now() + TICKET_LIFETIME))
                .is_some()
        );
    }

    #[test]
    fn csv_rows_have_a_header_once_and_the_primary_email() {
        let mut rows = Rows {
            messages: Messages::new(tonic::body::Body::empty()),
            format: Format::Csv,
            columns: vec!["id".into(), "email".into(), "public.plan".into()],
            header_written: false,
        };
        let user = |id: &str, plan: &str| {
            proto::User {
            id: id.into(),
            json: serde_json::json!({
                "id": id,
                "primary_email_address_id": "e2",
                "email_addresses": [{"id": "e1", "email_address": "old@x.io"}, {"id": "e2", "email_address": "a,b@x.io"}],
                "public_metadata": {"plan": plan},
            })
            .to_string(),
        }
        };
        let message = proto::ExportUsersResponse {
            users: vec![user("u1", "pro")],
            ..Default::default()
        };
        let first = rows.render(&message);
        assert_eq!(&first[..], b"id,email,public.plan\nu1,\"a,b@x.io\",pro\n");
        let second = rows.render(&proto::ExportUsersResponse {
            users: vec![user("u2", "<img src=x>")],
            ..Default::default()
        });
        assert_eq!(&second[..], b"u2,\"a,b@x.io\",<img src=x>\n");
    }
}
