//! Organizations over real HTTP and gRPC: Clerk's own organization and membership webhook
//! examples applied in any order, and the `org.*` paths they make filterable.

mod common;

use common::{TestServer, event, newcomer};
use serde_json::Value;

/// The member of every membership in Clerk's examples.
const EXAMPLE_MEMBER: &str = "user_2h8op3Isl1QR7tKu5FGNfaLKEoU";

fn example(name: &str) -> Value {
    let path = format!("../shared/clerk/examples/spec-{name}.json");
    let mut event: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    event["instance_id"] = clerk_index::clerk::fake::FAKE_INSTANCE_ID.into();
    event
}

async fn deliver_applied(server: &TestServer, svix_id: &str, event: &Value) -> Value {
    let (status, answer) = server.deliver(svix_id, event).await;
    assert_eq!(
        (status, answer["outcome"].as_str()),
        (200, Some("applied")),
        "{svix_id}: {answer}"
    );
    answer
}

async fn member_arrives(server: &TestServer) {
    let mut user = newcomer(3);
    user["id"] = EXAMPLE_MEMBER.into();
    deliver_applied(
        server,
        "msg_user",
        &event("user.created", user, 1_716_000_000_000),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clerks_organization_events_are_applied_and_their_paths_filter_users() {
    let dir = tempfile::tempdir().unwrap();
    let (_fake, server) = TestServer::with_population(dir.path(), 20).await;
    member_arrives(&server).await;
    let answer = deliver_applied(&server, "msg_1", &example("organization.created")).await;
    assert_eq!(
        answer["detail"]["organization_id"],
        "org_2g7np7Hrk0SN6kj5EDMLDaKNL0S"
    );
    assert_eq!(server.count("org_count = 0").await, 21);

    let answer =
        deliver_applied(&server, "msg_2", &example("organizationMembership.created")).await;
    assert_eq!(
        answer["detail"]["membership_id"],
        "orgmem_2g7np7Hrk0SN6kj5EDMLDaKNL0S"
    );
    assert_eq!(server.count(r#"org.role = "org:member""#).await, 1);
    assert_eq!(server.count(r#"org.slug = "acme-corp""#).await, 1);
    assert_eq!(server.count("org_count = 1").await, 1);
    assert_eq!(
        server.count(r#"org.permissions = "org:posts:write""#).await,
        1
    );

    // An organization update (name, slug, metadata) reaches its member.
    deliver_applied(&server, "msg_3", &example("organization.updated")).await;
    assert_eq!(server.count(r#"org.slug = "acme-corp-updated""#).await, 1);
    assert_eq!(
        server
            .count(r#"org.public.department = "engineering""#)
            .await,
        1
    );
    assert_eq!(server.count(r#"org.slug = "acme-corp""#).await, 0);

    deliver_applied(&server, "msg_4", &example("organizationMembership.updated")).await;
    assert_eq!(server.count(r#"org.role = "org:admin""#).await, 1);
    assert_eq!(
        server
            .count(r#"org.permissions = "org:members:manage""#)
            .await,
        1
    );

    deliver_applied(&server, "msg_5", &example("organizationMembership.deleted")).await;
    assert_eq!(server.count("org_count = 0").await, 21);
    assert_eq!(server.count("org.role EXISTS").await, 0);
    deliver_applied(&server, "msg_6", &example("organization.deleted")).await;
    // Organizations and memberships are never counted as users.
    assert_eq!(server.count_matching(None).await.count, 21);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn membership_events_in_any_order_converge_and_a_deletion_is_not_undone() {
    let dir = tempfile::tempdir().unwrap();
    let (_fake, server) = TestServer::with_population(dir.path(), 5).await;
    // The deletion first (Svix retries reorder deliveries), then the older events, then the
    // user itself: nothing brings the membership back.
    deliver_applied(&server, "msg_1", &example("organizationMembership.deleted")).await;
    let (status, answer) = server
        .deliver("msg_2", &example("organizationMembership.created"))
        .await;
    assert_eq!(status, 200, "{answer}");
    member_arrives(&server).await;
    assert_eq!(server.count("org_count = 0").await, 6);

    // The update is newer than the deletion's envelope in Clerk's examples: it is a later
    // state of the membership, and it is applied.
    deliver_applied(&server, "msg_3", &example("organizationMembership.updated")).await;
    assert_eq!(server.count(r#"org.role = "org:admin""#).await, 1);
    // The created event is older than what is held: acknowledged, changes nothing.
    let (status, _) = server
        .deliver("msg_4", &example("organizationMembership.created"))
        .await;
    assert_eq!(status, 200);
    assert_eq!(server.count(r#"org.role = "org:member""#).await, 0);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_backfill_copies_organizations_exactly_while_memberships_change_under_it() {
    use clerk_index::clerk::fake::{FakeClerkConfig, Population};
    let dir = tempfile::tempdir().unwrap();
    let mut config = FakeClerkConfig::new(Population::new(8_000).with_organizations());
    // Every full page of the membership walk deletes its first membership behind it, so the
    // next page starts one later and a membership is never listed by the walk.
    config.faults.delete_listed_membership_every = Some(1);
    let fake = common::RunningFakeClerk::start(config).await;
    let generated = fake.fake.memberships().len();
    assert!(
        generated > 1_000,
        "several pages of memberships: {generated}"
    );
    let server = TestServer::start(dir.path(), common::TestOptions::new(&fake.url)).await;
    server.wait_serving().await;
    // Readiness waited for the organizations too.
    assert!(
        fake.fake.memberships().len() < generated,
        "the walk raced deletions"
    );
    common::assert_org_mirror(&fake, &server).await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memberships_changed_through_the_fake_clerk_arrive_by_webhook_and_move_segment_members() {
    use clerk_index::api::proto;
    use clerk_index::clerk::fake::{FakeClerkConfig, Population, WebhookTarget};
    let dir = tempfile::tempdir().unwrap();
    let config = FakeClerkConfig::new(Population::new(300).with_organizations());
    let fake = common::RunningFakeClerk::start(config).await;
    let server = TestServer::start(dir.path(), common::TestOptions::new(&fake.url)).await;
    server.wait_serving().await;
    common::assert_org_mirror(&fake, &server).await;
    let target = WebhookTarget::new(
        format!("{}/webhooks/clerk", server.http_url),
        common::WEBHOOK_SECRET,
    );
    fake.fake.set_webhook_target(target).unwrap();

    // A member (not an admin) of some organization.
    let (org_id, user_id, _) = fake
        .fake
        .memberships()
        .into_iter()
        .find(|(_, _, admin)| !admin)
        .unwrap();
    let filter = format!(r#"id = "{user_id}" AND org[id = "{org_id}" AND role = "org:admin"]"#);
    let mut segments = proto::segments_client::SegmentsClient::new(server.channel().await);
    segments
        .create_segment(proto::CreateSegmentRequest {
            name: "promoted".into(),
            description: String::new(),
            filter: common::expression(&filter),
        })
        .await
        .unwrap();
    let mut watch = segments
        .watch_segment(proto::WatchSegmentRequest {
            name: "promoted".into(),
            after_sequence: None,
        })
        .await
        .unwrap()
        .into_inner();
    common::clerk_api(
        &fake.url,
        reqwest::Method::PATCH,
        &format!("/v1/organizations/{org_id}/memberships/{user_id}"),
        Some(serde_json::json!({"role": "org:admin"})),
    )
    .await;
    let event = tokio::time::timeout(std::time::Duration::from_secs(20), watch.message())
        .await
        .expect("an event within 20 s")
        .unwrap()
        .unwrap();
    assert_eq!(event.user_id, user_id);
    assert_eq!(event.kind, proto::segment_event::Kind::Entered as i32);

    // A new membership and a departure, through Clerk's API, reach the index by webhook.
    let outsider = fake.fake.user_ids().pop().unwrap();
    common::clerk_api(
        &fake.url,
        reqwest::Method::POST,
        &format!("/v1/organizations/{org_id}/memberships"),
        Some(serde_json::json!({"user_id": outsider, "role": "org:member"})),
    )
    .await;
    common::clerk_api(
        &fake.url,
        reqwest::Method::DELETE,
        &format!("/v1/organizations/{org_id}/memberships/{user_id}"),
        None,
    )
    .await;
    let joined = format!(r#"id = "{outsider}" AND org.id = "{org_id}""#);
    let left = format!(r#"id = "{user_id}" AND org.id = "{org_id}""#);
    for _ in 0..200 {
        if server.count(&joined).await == 1 && server.count(&left).await == 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(server.count(&joined).await, 1);
    assert_eq!(server.count(&left).await, 0);
    common::assert_org_mirror(&fake, &server).await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn organization_metadata_written_through_is_read_back_at_once_by_every_member() {
    use clerk_index::api::proto;
    use clerk_index::api::proto::user_index_client::UserIndexClient;
    use clerk_index::auth::{ApiKeys, AuthConfig, generate_key};
    use clerk_index::clerk::fake::{FakeClerkConfig, Population};
    let dir = tempfile::tempdir().unwrap();
    let fake = common::RunningFakeClerk::start(FakeClerkConfig::new(
        Population::new(300).with_organizations(),
    ))
    .await;
    let (all, all_hash) = generate_key();
    let (writer, writer_hash) = generate_key();
    let mut options = common::TestOptions::new(&fake.url);
    options.auth = AuthConfig {
        keys: ApiKeys::parse(&format!(
            "all public,private,write {all_hash}\nwriter public,write {writer_hash}\n"
        ))
        .unwrap(),
        allow_unauthenticated: false,
        sensitive: None,
    };
    let server = TestServer::start(dir.path(), options).await;
    server.wait_serving().await;
    let channel = server.channel().await;
    let client = |key: &str| {
        UserIndexClient::new(common::with_header(
            channel.clone(),
            Some(format!("Bearer {key}")),
        ))
    };
    let memberships = fake.fake.memberships();
    let (org_id, _, _) = memberships[0].clone();
    let members = memberships.iter().filter(|(o, _, _)| *o == org_id).count() as u64;
    let request =
        |public: Option<&str>, private: Option<&str>| proto::UpdateOrganizationMetadataRequest {
            organization_id: org_id.clone(),
            public_metadata: public.map(String::from),
            private_metadata: private.map(String::from),
        };
    let answer = client(&writer)
        .update_organization_metadata(request(Some(r#"{"plan": "written_through"}"#), None))
        .await
        .unwrap()
        .into_inner();
    let json: serde_json::Value = serde_json::from_str(&answer.organization_json).unwrap();
    assert_eq!(json["public_metadata"]["plan"], "written_through");
    assert!(json.get("private_metadata").is_none(), "{json}");
    // No waiting: every member's document holds it.
    let filter = format!(r#"org[id = "{org_id}" AND public.plan = "written_through"]"#);
    let count = client(&all)
        .count_users(proto::CountUsersRequest {
            filter: common::expression(&filter),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .count;
    assert_eq!(count, members);
    // A member read back: its memberships under `org`, with what the key may read of them.
    let member = fake
        .fake
        .memberships()
        .into_iter()
        .find(|(o, _, _)| *o == org_id)
        .unwrap()
        .1;
    let get = |fields: Vec<String>| proto::GetUserRequest {
        user_id: member.clone(),
        fields,
        ..Default::default()
    };
    let read = client(&all)
        .get_user(get(vec![]))
        .await
        .unwrap()
        .into_inner();
    let user: serde_json::Value = serde_json::from_str(&read.user.unwrap().json).unwrap();
    let view = (user["org"].as_array().unwrap().iter())
        .find(|v| v["id"] == org_id.as_str())
        .unwrap()
        .clone();
    assert_eq!(view["public"]["plan"], "written_through", "{user}");
    assert!(view["private"].is_object(), "{view}");
    let read = client(&writer)
        .get_user(get(vec![]))
        .await
        .unwrap()
        .into_inner();
    let user: serde_json::Value = serde_json::from_str(&read.user.unwrap().json).unwrap();
    assert!(user["org"][0].get("private").is_none(), "{user}");
    assert!(user.get("private_metadata").is_none(), "{user}");
    let read = (client(&writer).get_user(get(vec!["org.slug".into()])).await)
        .unwrap()
        .into_inner();
    let user: serde_json::Value = serde_json::from_str(&read.user.unwrap().json).unwrap();
    assert!(user["org"][0]["slug"].is_string(), "{user}");
    assert_eq!(user["org"][0].as_object().unwrap().len(), 1, "{user}");
    // Private metadata needs `private`.
    let refused = client(&writer)
        .update_organization_metadata(request(None, Some(r#"{"crm": "x"}"#)))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::PermissionDenied);
    let bad = client(&all)
        .update_organization_metadata(proto::UpdateOrganizationMetadataRequest {
            organization_id: "../v1/users".into(),
            public_metadata: Some("{}".into()),
            private_metadata: None,
        })
        .await
        .unwrap_err();
    assert_eq!(bad.code(), tonic::Code::InvalidArgument);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_users_segments_are_those_whose_filters_it_matches_now() {
    use clerk_index::api::proto;
    use clerk_index::clerk::fake::{FakeClerkConfig, Population};
    let dir = tempfile::tempdir().unwrap();
    let config = FakeClerkConfig::new(Population::new(300).with_organizations());
    let fake = common::RunningFakeClerk::start(config).await;
    let server = TestServer::start(dir.path(), common::TestOptions::new(&fake.url)).await;
    server.wait_serving().await;
    let definitions = [
        ("admins", r#"org[role = "org:admin"]"#),
        ("in-several", "org_count > 1"),
        ("pro", r#"public.plan_type = "pro""#),
        (
            "pro-or-enterprise-org",
            r#"public.plan_type = "pro" OR org.public.plan = "enterprise""#,
        ),
        ("recent", "created_at > now-365d"),
        ("nobody", r#"id = "user_nobody""#),
    ];
    let mut segments = proto::segments_client::SegmentsClient::new(server.channel().await);
    for (name, filter) in definitions {
        segments
            .create_segment(proto::CreateSegmentRequest {
                name: name.into(),
                description: String::new(),
                filter: common::expression(filter),
            })
            .await
            .unwrap();
    }
    let mut answers = std::collections::BTreeSet::new();
    for user_id in fake.fake.user_ids().into_iter().step_by(15) {
        let mut expected = Vec::new();
        for (name, filter) in definitions {
            if server
                .count(&format!(r#"id = "{user_id}" AND ({filter})"#))
                .await
                == 1
            {
                expected.push(name.to_string());
            }
        }
        expected.sort();
        let answer = segments
            .get_user_segments(proto::GetUserSegmentsRequest {
                user_id: user_id.clone(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(answer.segments, expected, "{user_id}");
        answers.insert(answer.segments);
    }
    assert!(
        answers.len() >= 3,
        "users in different segments: {answers:?}"
    );
    let missing = segments
        .get_user_segments(proto::GetUserSegmentsRequest {
            user_id: "user_unknown".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(missing.code(), tonic::Code::NotFound);
    server.stop().await;
}
