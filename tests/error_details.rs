//! Errors over real gRPC carry `google.rpc` details: an `ErrorInfo` with a stable reason and the
//! service's domain on every status, and the detail that lets a program act without reading the
//! message (the bad field, the filter position, what was not found, the version it lost to,
//! the limit it hit, when to retry).

mod common;

use clerk_index::api::proto::segments_client::SegmentsClient;
use clerk_index::api::proto::user_index_client::UserIndexClient;
use clerk_index::api::proto::{
    CountUsersRequest, CreateSegmentRequest, GetSegmentRequest, GetUserRequest, SearchUsersRequest,
    UpdateSegmentRequest,
};
use clerk_index::api::{ERROR_DOMAIN, Reason};
use clerk_index::auth::{ApiKeys, AuthConfig, generate_key};
use clerk_index::clerk::fake::{FakeClerkConfig, Population};
use common::{RunningFakeClerk, TestOptions, TestServer, expression, with_header};
use tonic::{Code, Status};
use tonic_types::StatusExt;

/// The status's `ErrorInfo` reason, after checking the domain.
fn reason(status: &Status) -> String {
    let info = status
        .get_details_error_info()
        .unwrap_or_else(|| panic!("no ErrorInfo in {status:?}"));
    assert_eq!(info.domain, ERROR_DOMAIN, "{status:?}");
    info.reason
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_error_names_its_reason_and_the_detail_to_act_on() {
    let dir = tempfile::tempdir().unwrap();
    let fake = RunningFakeClerk::start(FakeClerkConfig::new(Population::new(50))).await;
    let (everything, hash) = generate_key();
    let (frontend, frontend_hash) = generate_key();
    let mut options = TestOptions::new(&fake.url);
    options.auth = AuthConfig {
        keys: ApiKeys::parse(&format!(
            "everything public,private,segments {hash}\nfrontend public {frontend_hash}\n"
        ))
        .unwrap(),
        allow_unauthenticated: false,
        sensitive: None,
    };
    let server = TestServer::start(dir.path(), options).await;
    server.wait_serving().await;
    let channel = server.channel().await;
    let authed = |key: &str| with_header(channel.clone(), Some(format!("Bearer {key}")));
    let mut users = UserIndexClient::new(authed(&everything));
    let mut segments = SegmentsClient::new(authed(&everything));

    // A filter error: the field, the position (as a number, and in the description).
    let text = "public.plan = \"pro\" AND AND created_at > now-1d";
    let error = users
        .count_users(CountUsersRequest {
            filter: expression(text),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(error.code(), Code::InvalidArgument);
    assert_eq!(reason(&error), Reason::InvalidFilter.as_str());
    let info = error.get_details_error_info().unwrap();
    let position: usize = info.metadata["position"].parse().unwrap();
    assert_eq!(&text[position..position + 3], "AND", "{error:?}");
    let violations = error.get_details_bad_request().unwrap().field_violations;
    assert_eq!(violations[0].field, "filter.expression");
    assert!(violations[0].description.contains("AND"), "{violations:?}");

    // An out-of-range field names that field.
    let error = users
        .search_users(SearchUsersRequest {
            page_size: 1_000_000,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(reason(&error), Reason::InvalidArgument.as_str());
    let violations = error.get_details_bad_request().unwrap().field_violations;
    assert_eq!(violations[0].field, "page_size");

    // What was not found, by type and name.
    let missing = "user_2ZZZZZZZZZZZZZZZZZZZZZZZZZZ";
    let error = users
        .get_user(GetUserRequest {
            user_id: missing.into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(error.code(), Code::NotFound);
    assert_eq!(reason(&error), Reason::UserNotFound.as_str());
    let resource = error.get_details_resource_info().unwrap();
    assert_eq!(
        (
            resource.resource_type.as_str(),
            resource.resource_name.as_str()
        ),
        ("clerkindex.v1.User", missing)
    );
    let error = segments
        .get_segment(GetSegmentRequest {
            name: "nothing-here".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(reason(&error), Reason::SegmentNotFound.as_str());
    assert_eq!(
        error.get_details_resource_info().unwrap().resource_name,
        "nothing-here"
    );

    // A segment that exists already, and an update that lost to another.
    let create = CreateSegmentRequest {
        name: "vips".into(),
        description: String::new(),
        filter: expression("public.plan = \"pro\""),
    };
    let saved = segments
        .create_segment(create.clone())
        .await
        .unwrap()
        .into_inner();
    let error = segments.create_segment(create).await.unwrap_err();
    assert_eq!(error.code(), Code::AlreadyExists);
    assert_eq!(reason(&error), Reason::SegmentExists.as_str());
    let error = segments
        .update_segment(UpdateSegmentRequest {
            name: "vips".into(),
            description: Some("stale".into()),
            filter: None,
            expected_version: saved.version + 5,
        })
        .await
        .unwrap_err();
    assert_eq!(error.code(), Code::Aborted);
    assert_eq!(reason(&error), Reason::VersionMismatch.as_str());
    let failure = error.get_details_precondition_failure().unwrap();
    assert_eq!(failure.violations[0].r#type, "VERSION");
    assert_eq!(failure.violations[0].subject, "segments/vips");
    let info = error.get_details_error_info().unwrap();
    assert_eq!(info.metadata["actual_version"], saved.version.to_string());

    // A missing scope names the scope; a missing or unknown key says which.
    let error = UserIndexClient::new(authed(&frontend))
        .count_users(CountUsersRequest {
            filter: expression("private.ltv > 10"),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(error.code(), Code::PermissionDenied);
    assert_eq!(reason(&error), Reason::ScopeMissing.as_str());
    assert_eq!(
        error.get_details_error_info().unwrap().metadata["scope"],
        "private"
    );
    let error = UserIndexClient::new(with_header(channel.clone(), None))
        .count_users(CountUsersRequest::default())
        .await
        .unwrap_err();
    assert_eq!(reason(&error), Reason::ApiKeyMissing.as_str());
    let error = UserIndexClient::new(authed("ck_not-a-key"))
        .count_users(CountUsersRequest::default())
        .await
        .unwrap_err();
    assert_eq!(reason(&error), Reason::ApiKeyUnknown.as_str());
    server.stop().await;
}

/// docs/API.md lists every reason a status can carry, so callers can branch on all of them.
#[test]
fn the_api_docs_list_every_reason() {
    let docs =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/API.md")).unwrap();
    let missing: Vec<&str> = Reason::ALL
        .iter()
        .map(|r| r.as_str())
        .filter(|r| !docs.contains(&format!("| `{r}` |")))
        .collect();
    assert!(missing.is_empty(), "docs/API.md does not list {missing:?}");
}
