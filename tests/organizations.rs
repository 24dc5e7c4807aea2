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
