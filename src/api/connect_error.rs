//! A gRPC status in the Connect protocol's error shape: the snake_case code name, the HTTP status
//! the code maps to, and the `google.rpc` details as `{type, value, debug}` objects (the value
//! is the detail's protobuf encoding, the debug its JSON rendering for people and pages that do
//! not decode protobuf).

use axum::http::StatusCode;
use base64::Engine;
use base64::engine::general_purpose::STANDARD_NO_PAD;
use prost::Message;
use serde_json::{Map, Value, json};
use tonic::Code;
use tonic_types::pb;

/// Connect's name for `code`.
pub(super) fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "ok",
        Code::Cancelled => "canceled",
        Code::Unknown => "unknown",
        Code::InvalidArgument => "invalid_argument",
        Code::DeadlineExceeded => "deadline_exceeded",
        Code::NotFound => "not_found",
        Code::AlreadyExists => "already_exists",
        Code::PermissionDenied => "permission_denied",
        Code::ResourceExhausted => "resource_exhausted",
        Code::FailedPrecondition => "failed_precondition",
        Code::Aborted => "aborted",
        Code::OutOfRange => "out_of_range",
        Code::Unimplemented => "unimplemented",
        Code::Internal => "internal",
        Code::Unavailable => "unavailable",
        Code::DataLoss => "data_loss",
        Code::Unauthenticated => "unauthenticated",
    }
}

/// The HTTP status of a unary error with `code`, as the Connect protocol maps it.
pub(super) fn http_status(code: Code) -> StatusCode {
    match code {
        Code::Ok => StatusCode::OK,
        Code::Cancelled => StatusCode::from_u16(499).expect("499 is a status code"),
        Code::InvalidArgument | Code::FailedPrecondition | Code::OutOfRange => {
            StatusCode::BAD_REQUEST
        }
        Code::DeadlineExceeded => StatusCode::GATEWAY_TIMEOUT,
        Code::NotFound => StatusCode::NOT_FOUND,
        Code::AlreadyExists | Code::Aborted => StatusCode::CONFLICT,
        Code::PermissionDenied => StatusCode::FORBIDDEN,
        Code::ResourceExhausted => StatusCode::TOO_MANY_REQUESTS,
        Code::Unimplemented => StatusCode::NOT_IMPLEMENTED,
        Code::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        Code::Unauthenticated => StatusCode::UNAUTHORIZED,
        Code::Unknown | Code::Internal | Code::DataLoss => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// `status` as Connect's error JSON object.
pub(super) fn error_json(status: &tonic::Status) -> Value {
    let mut error = Map::new();
    error.insert("code".into(), code_name(status.code()).into());
    if !status.message().is_empty() {
        error.insert("message".into(), status.message().into());
    }
    let details: Vec<Value> = pb::Status::decode(status.details())
        .map(|decoded| decoded.details.iter().map(detail_json).collect())
        .unwrap_or_default();
    if !details.is_empty() {
        error.insert("details".into(), details.into());
    }
    Value::Object(error)
}

fn detail_json(any: &prost_types::Any) -> Value {
    let name = any.type_url.rsplit('/').next().unwrap_or_default();
    let mut detail = json!({ "type": name, "value": STANDARD_NO_PAD.encode(&any.value) });
    if let Some(debug) = debug_json(name, &any.value) {
        detail["debug"] = debug;
    }
    detail
}

/// The JSON rendering of the detail types the service sends.
fn debug_json(name: &str, value: &[u8]) -> Option<Value> {
    Some(match name {
        "google.rpc.ErrorInfo" => {
            let info = pb::ErrorInfo::decode(value).ok()?;
            json!({ "reason": info.reason, "domain": info.domain, "metadata": info.metadata })
        }
        "google.rpc.BadRequest" => {
            let bad = pb::BadRequest::decode(value).ok()?;
            let violations: Vec<Value> = bad
                .field_violations
                .iter()
                .map(|v| json!({ "field": v.field, "description": v.description }))
                .collect();
            json!({ "fieldViolations": violations })
        }
        "google.rpc.RetryInfo" => {
            let delay = pb::RetryInfo::decode(value).ok()?.retry_delay?;
            let seconds = delay.seconds as f64 + f64::from(delay.nanos) / 1e9;
            json!({ "retryDelay": format!("{seconds}s") })
        }
        "google.rpc.QuotaFailure" => {
            let quota = pb::QuotaFailure::decode(value).ok()?;
            let violations: Vec<Value> = quota
                .violations
                .iter()
                .map(|v| json!({ "subject": v.subject, "description": v.description }))
                .collect();
            json!({ "violations": violations })
        }
        "google.rpc.ResourceInfo" => {
            let info = pb::ResourceInfo::decode(value).ok()?;
            json!({
                "resourceType": info.resource_type,
                "resourceName": info.resource_name,
                "owner": info.owner,
                "description": info.description,
            })
        }
        "google.rpc.PreconditionFailure" => {
            let failure = pb::PreconditionFailure::decode(value).ok()?;
            let violations: Vec<Value> = failure
                .violations
                .iter()
                .map(|v| json!({ "type": v.r#type, "subject": v.subject, "description": v.description }))
                .collect();
            json!({ "violations": violations })
        }
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic_types::{ErrorDetails, StatusExt};

    #[test]
    fn details_carry_their_encoding_and_a_readable_rendering() {
        let mut details = ErrorDetails::new();
        details
            .set_error_info(
                "FILTER_SYNTAX",
                "clerk-index",
                [("position".into(), "7".into())],
            )
            .add_bad_request_violation("filter", "expected a value at 7")
            .set_retry_info(Some(std::time::Duration::from_millis(1500)));
        let status =
            tonic::Status::with_error_details(Code::InvalidArgument, "bad filter", details);
        let error = error_json(&status);
        assert_eq!(error["code"], "invalid_argument");
        assert_eq!(error["message"], "bad filter");
        let details = error["details"].as_array().unwrap();
        let info = details
            .iter()
            .find(|d| d["type"] == "google.rpc.ErrorInfo")
            .unwrap();
        assert_eq!(info["debug"]["metadata"]["position"], "7");
        let decoded = pb::ErrorInfo::decode(
            &*STANDARD_NO_PAD
                .decode(info["value"].as_str().unwrap())
                .unwrap(),
        )
        .unwrap();
        assert_eq!(decoded.reason, "FILTER_SYNTAX");
        let bad = details
            .iter()
            .find(|d| d["type"] == "google.rpc.BadRequest")
            .unwrap();
        assert_eq!(bad["debug"]["fieldViolations"][0]["field"], "filter");
        let retry = details
            .iter()
            .find(|d| d["type"] == "google.rpc.RetryInfo")
            .unwrap();
        assert_eq!(retry["debug"]["retryDelay"], "1.5s");
    }

    #[test]
    fn codes_map_to_connect_names_and_http_statuses() {
        assert_eq!(code_name(Code::Cancelled), "canceled");
        assert_eq!(http_status(Code::Unauthenticated), StatusCode::UNAUTHORIZED);
        assert_eq!(
            http_status(Code::ResourceExhausted),
            StatusCode::TOO_MANY_REQUESTS
        );
        assert_eq!(
            http_status(Code::FailedPrecondition),
            StatusCode::BAD_REQUEST
        );
        assert_eq!(http_status(Code::Cancelled).as_u16(), 499);
        let plain = error_json(&tonic::Status::not_found(""));
        assert_eq!(plain, json!({ "code": "not_found" }));
    }
}
