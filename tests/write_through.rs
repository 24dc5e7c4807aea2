//! UpdateUserMetadata: Clerk first, then the index, then the caller; and reads that wait for a
//! generation.

mod common;

use clerk_index::api::proto::{
    CountUsersRequest, FilterSpec, GetUserRequest, UpdateUserMetadataRequest,
};
use common::TestServer;
use serde_json::{Value, json};
use tonic::Code;

fn expression(text: &str) -> Option<FilterSpec> {
    common::expression(text)
}

fn patch(user_id: &str, public: Value) -> UpdateUserMetadataRequest {
    UpdateUserMetadataRequest {
        user_id: user_id.into(),
        public_metadata: Some(public.to_string()),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_update_is_in_clerk_and_searchable_when_the_call_returns() {
    let dir = tempfile::tempdir().unwrap();
    let (fake, server) = TestServer::with_population(dir.path(), 200).await;
    let mut client = server.client().await;
    let id = fake
        .fake
        .user_ids()
        .into_iter()
        .find(|id| {
            fake.fake.user_json(id).unwrap()["public_metadata"]["user_preferences"]["theme"]
                .is_string()
        })
        .unwrap();
    let before = fake.fake.user_json(&id).unwrap();
    let response = client
        .update_user_metadata(UpdateUserMetadataRequest {
            user_id: id.clone(),
            public_metadata: Some(
                json!({"plan_type": "enterprise_plus", "user_preferences": {"theme": null}})
                    .to_string(),
            ),
            private_metadata: Some(json!({"crm": {"segment": "strategic"}}).to_string()),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let returned: Value = serde_json::from_str(&response.user.unwrap().json).unwrap();
    assert_eq!(returned["public_metadata"]["plan_type"], "enterprise_plus");
    // Deep merge: the sibling keys survive, the null removed `theme`.
    assert!(
        returned["public_metadata"]["user_preferences"]
            .get("theme")
            .is_none()
    );
    assert_eq!(
        returned["public_metadata"]["user_preferences"]["language"],
        before["public_metadata"]["user_preferences"]["language"]
    );
    assert_eq!(
        returned["public_metadata"]["favorite_genre"],
        before["public_metadata"]["favorite_genre"]
    );
    assert_eq!(
        fake.fake.user_json(&id).unwrap()["public_metadata"]["plan_type"],
        "enterprise_plus",
        "Clerk holds the change"
    );
    // Read-your-writes without asking for a generation.
    let count = client
        .count_users(CountUsersRequest { filter: expression(r#"public.plan_type = "enterprise_plus" AND private.crm.segment = "strategic" AND NOT public.user_preferences.theme EXISTS"#), ..Default::default() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(count.count, 1);
    assert!(count.freshness.unwrap().generation >= response.freshness.unwrap().generation);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clerk_refusals_map_to_grpc_codes() {
    let dir = tempfile::tempdir().unwrap();
    let (fake, server) = TestServer::with_population(dir.path(), 20).await;
    let mut client = server.client().await;
    let id = fake.fake.user_ids()[0].clone();
    let missing = client
        .update_user_metadata(patch("user_nobody", json!({"a": 1})))
        .await
        .unwrap_err();
    assert_eq!(missing.code(), Code::NotFound);
    // Ids Clerk could not have are refused before any request (`..` once became
    // `PATCH /v1/metadata`), and are not repeated in the answer.
    let long = format!("user_{}", "x".repeat(100_000));
    for bad in ["..", ".", "user_a\0b", "user_../metadata", long.as_str()] {
        let refused = client
            .update_user_metadata(patch(bad, json!({"a": 1})))
            .await
            .unwrap_err();
        assert_eq!(refused.code(), Code::InvalidArgument, "{bad:.40}");
        assert!(refused.message().len() < 300, "{bad:.40}");
        let read = client
            .get_user(GetUserRequest {
                user_id: bad.to_string(),
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(read.code(), Code::InvalidArgument, "{bad:.40}");
    }
    let not_object = client
        .update_user_metadata(patch(&id, json!([1, 2])))
        .await
        .unwrap_err();
    assert_eq!(not_object.code(), Code::InvalidArgument);
    let nothing = client
        .update_user_metadata(UpdateUserMetadataRequest {
            user_id: id.clone(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(nothing.code(), Code::InvalidArgument);
    // Clerk allows 10 metadata writes per user per 10 s.
    for n in 0..10 {
        client
            .update_user_metadata(patch(&id, json!({"counter": n})))
            .await
            .unwrap();
    }
    let limited = client
        .update_user_metadata(patch(&id, json!({"counter": 10})))
        .await
        .unwrap_err();
    assert_eq!(limited.code(), Code::ResourceExhausted, "{limited:?}");
    let retry_after: u64 = limited
        .metadata()
        .get("retry-after")
        .unwrap()
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=10).contains(&retry_after));
    // The same delay as a google.rpc.RetryInfo, with the reason.
    use tonic_types::StatusExt;
    let retry = limited
        .get_details_retry_info()
        .unwrap()
        .retry_delay
        .unwrap();
    assert_eq!(retry.as_secs(), retry_after, "{limited:?}");
    let info = limited.get_details_error_info().unwrap();
    assert_eq!(
        info.reason,
        clerk_index::api::Reason::ClerkRateLimited.as_str()
    );
    let user = client
        .get_user(GetUserRequest {
            user_id: id,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let json: Value = serde_json::from_str(&user.user.unwrap().json).unwrap();
    assert_eq!(
        json["public_metadata"]["counter"], 9,
        "the refused write changed nothing"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_wait_for_a_generation_and_give_up_with_deadline_exceeded() {
    let dir = tempfile::tempdir().unwrap();
    let (fake, server) = TestServer::with_population(dir.path(), 20).await;
    let mut client = server.client().await;
    let now = client
        .count_users(CountUsersRequest::default())
        .await
        .unwrap()
        .into_inner()
        .freshness
        .unwrap()
        .generation;
    let future = client.count_users(CountUsersRequest {
        min_generation: now + 1,
        ..Default::default()
    });
    // A write lands while the read waits: the read answers from the new generation.
    let id = fake.fake.user_ids()[1].clone();
    let mut writer = server.client().await;
    let (waited, _) = tokio::join!(future, async {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        writer
            .update_user_metadata(patch(&id, json!({"waited": true})))
            .await
            .unwrap()
    });
    assert!(waited.unwrap().into_inner().freshness.unwrap().generation > now);
    let too_far = client
        .count_users(CountUsersRequest {
            min_generation: now + 1_000,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(too_far.code(), Code::DeadlineExceeded);
    server.stop().await;
}
