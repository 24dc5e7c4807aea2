//! Reconcile repairs organizations and memberships whose webhooks were missed: a catch-up the
//! creations, a sweep everything (updates, deletions, organizations gone with their members).
//! Every change here is made through the fake Clerk's API with no webhook target, as if every
//! delivery were lost.

mod common;

use clerk_index::api::proto::sync_client::SyncClient;
use clerk_index::api::proto::{ReconcileKind, ReconcileRun, TriggerReconcileRequest};
use clerk_index::clerk::fake::{FakeClerkConfig, Population};
use common::{TestServer, clerk_api};
use reqwest::Method;
use serde_json::json;

async fn reconcile(server: &TestServer, kind: ReconcileKind) -> ReconcileRun {
    let mut sync = SyncClient::new(server.channel().await);
    let answer = sync
        .trigger_reconcile(TriggerReconcileRequest { kind: kind as i32 })
        .await
        .unwrap()
        .into_inner();
    match kind {
        ReconcileKind::CatchUp => answer.catch_up.unwrap(),
        _ => answer.sweep.unwrap(),
    }
}

async fn serving(dir: &std::path::Path, users: usize) -> (common::RunningFakeClerk, TestServer) {
    let config = FakeClerkConfig::new(Population::new(users).with_organizations());
    let fake = common::RunningFakeClerk::start(config).await;
    let server = TestServer::start(dir, common::TestOptions::new(&fake.url)).await;
    server.wait_serving().await;
    common::assert_org_mirror(&fake, &server).await;
    (fake, server)
}

/// Some user in no organization.
fn outsider(fake: &common::RunningFakeClerk) -> String {
    let members: std::collections::HashSet<String> = fake
        .fake
        .memberships()
        .into_iter()
        .map(|(_, u, _)| u)
        .collect();
    (fake.fake.user_ids().into_iter())
        .find(|id| !members.contains(id))
        .expect("a user in no organization")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_catch_up_applies_organizations_and_memberships_created_without_webhooks() {
    let dir = tempfile::tempdir().unwrap();
    let (fake, server) = serving(dir.path(), 400).await;
    let (org_id, _, _) = fake.fake.memberships().pop().unwrap();
    let joiner = outsider(&fake);
    clerk_api(
        &fake.url,
        Method::POST,
        &format!("/v1/organizations/{org_id}/memberships"),
        Some(json!({"user_id": joiner, "role": "org:member"})),
    )
    .await;
    let founder = fake.fake.user_ids()[3].clone();
    let created = clerk_api(
        &fake.url,
        Method::POST,
        "/v1/organizations",
        Some(json!({"name": "Missed Co", "created_by": founder, "public_metadata": {"plan": "missed"}})),
    )
    .await;
    let new_org = created["id"].as_str().unwrap().to_string();
    let founded =
        format!(r#"org[id = "{new_org}" AND role = "org:admin" AND public.plan = "missed"]"#);
    let joined = format!(r#"id = "{joiner}" AND org.id = "{org_id}""#);
    assert_eq!(server.count(&founded).await, 0, "no webhook was delivered");
    assert_eq!(server.count(&joined).await, 0);

    let run = reconcile(&server, ReconcileKind::CatchUp).await;
    assert_eq!(server.count(&founded).await, 1, "{run:?}");
    assert_eq!(server.count(&joined).await, 1);
    // The new organization and the two new memberships: newest first, stopping at the
    // watermark after one page each.
    assert_eq!(run.upserts, 3, "{run:?}");
    assert!(
        run.organizations_listed >= 1 && run.memberships_listed >= 2,
        "{run:?}"
    );
    common::assert_org_mirror(&fake, &server).await;
    let again = reconcile(&server, ReconcileKind::CatchUp).await;
    assert_eq!(again.upserts, 0, "nothing new since: {again:?}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sweep_repairs_missed_role_changes_departures_metadata_and_deleted_organizations() {
    let dir = tempfile::tempdir().unwrap();
    let (fake, server) = serving(dir.path(), 400).await;
    let memberships = fake.fake.memberships();
    let (promoted_org, promoted, _) = memberships.iter().find(|(_, _, a)| !a).unwrap().clone();
    let (left_org, leaver, _) = memberships
        .iter()
        .rev()
        .find(|(o, u, _)| *o != promoted_org && *u != promoted)
        .unwrap()
        .clone();
    // An organization other than those two, with its members, to delete.
    let doomed = memberships
        .iter()
        .map(|(o, _, _)| o)
        .find(|o| **o != promoted_org && **o != left_org)
        .unwrap()
        .clone();
    let doomed_members = memberships.iter().filter(|(o, _, _)| *o == doomed).count() as u64;
    let org_members = memberships
        .iter()
        .filter(|(o, _, _)| *o == promoted_org)
        .count() as u64;

    clerk_api(
        &fake.url,
        Method::PATCH,
        &format!("/v1/organizations/{promoted_org}/memberships/{promoted}"),
        Some(json!({"role": "org:admin"})),
    )
    .await;
    clerk_api(
        &fake.url,
        Method::DELETE,
        &format!("/v1/organizations/{left_org}/memberships/{leaver}"),
        None,
    )
    .await;
    // Someone joins the organization the leaver left, so once a catch-up applied the joiner
    // its count is as the index holds it: the sweep finds the departure by comparing the
    // memberships themselves, not by relisting the organization.
    let joiner = outsider(&fake);
    clerk_api(
        &fake.url,
        Method::POST,
        &format!("/v1/organizations/{left_org}/memberships"),
        Some(json!({"user_id": joiner, "role": "org:member"})),
    )
    .await;
    clerk_api(
        &fake.url,
        Method::PATCH,
        &format!("/v1/organizations/{promoted_org}/metadata"),
        Some(json!({"public_metadata": {"plan": "swept"}})),
    )
    .await;
    clerk_api(
        &fake.url,
        Method::DELETE,
        &format!("/v1/organizations/{doomed}"),
        None,
    )
    .await;
    let promotion =
        format!(r#"id = "{promoted}" AND org[id = "{promoted_org}" AND role = "org:admin"]"#);
    let departed = format!(r#"id = "{leaver}" AND org.id = "{left_org}""#);
    let plan = format!(r#"org[id = "{promoted_org}" AND public.plan = "swept"]"#);
    let gone = format!(r#"org.id = "{doomed}""#);
    let before = [
        server.count(&promotion).await,
        server.count(&departed).await,
        server.count(&plan).await,
        server.count(&gone).await,
    ];
    assert_eq!(
        before,
        [0, 1, 0, doomed_members],
        "no webhook was delivered"
    );
    // A catch-up applies the new membership only; the rest is not a creation.
    assert_eq!(reconcile(&server, ReconcileKind::CatchUp).await.upserts, 1);
    assert_eq!(server.count(&departed).await, 1);

    let run = reconcile(&server, ReconcileKind::Sweep).await;
    let after = [
        server.count(&promotion).await,
        server.count(&departed).await,
        server.count(&plan).await,
        server.count(&gone).await,
    ];
    assert_eq!(after, [1, 0, org_members, 0], "{run:?}");
    common::assert_org_mirror(&fake, &server).await;
    assert!(
        run.organizations_listed > 0 && run.memberships_listed > 0,
        "{run:?}"
    );
    // The organization, and the membership that left (the deleted organization's memberships
    // go with it).
    assert_eq!(run.deletes, 2, "{run:?}");
    assert_eq!(run.organizations_relisted, 0, "{run:?}");
    // A second sweep finds nothing to do: the comparison does not churn.
    let again = reconcile(&server, ReconcileKind::Sweep).await;
    assert_eq!((again.upserts, again.deletes), (0, 0), "{again:?}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sweep_racing_deletions_deletes_exactly_what_clerk_deleted() {
    use clerk_index::clerk::fake::FaultInjection;
    let dir = tempfile::tempdir().unwrap();
    let (fake, server) = serving(dir.path(), 8_000).await;
    let held = fake.fake.memberships().len();
    assert!(held > 1_000, "several pages of memberships: {held}");
    // From now on every full page of the instance's membership listing deletes its first
    // membership behind it (no webhook): the next page starts one later, so a membership the
    // index holds is not listed although Clerk still has it.
    fake.fake.set_faults(FaultInjection {
        delete_listed_membership_every: Some(1),
        ..FaultInjection::default()
    });
    let run = reconcile(&server, ReconcileKind::Sweep).await;
    let deleted = held - fake.fake.memberships().len();
    assert!(deleted > 0, "the sweep raced deletions");
    common::assert_org_mirror(&fake, &server).await;
    assert_eq!(run.deletes, deleted as u64, "{run:?}");
    server.stop().await;
}
