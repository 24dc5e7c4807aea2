//! Webhook verification and parsing against Svix's vectors and Clerk's example events.

use super::*;

fn parse(body: &[u8], received_at_ms: i64) -> Result<WebhookEvent, UserParseError> {
    parse_delivery(body, received_at_ms).map(|d| d.event)
}

fn examples() -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/clerk/examples")
}

#[derive(Deserialize)]
struct Vector {
    secret: String,
    msg_id: String,
    timestamp: String,
    payload: String,
    signature: String,
}

fn vectors() -> Vec<Vector> {
    #[derive(Deserialize)]
    struct File {
        vectors: Vec<Vector>,
    }
    let text =
        std::fs::read_to_string(examples().join("svix-signature-test-vectors.json")).unwrap();
    serde_json::from_str::<File>(&text).unwrap().vectors
}

#[test]
fn official_svix_vectors_verify_and_sign() {
    let vectors = vectors();
    assert_eq!(vectors.len(), 2);
    for v in vectors {
        let verifier = WebhookVerifier::new(std::slice::from_ref(&v.secret)).unwrap();
        verifier
            .verify_signature(&v.msg_id, &v.timestamp, v.payload.as_bytes(), &v.signature)
            .unwrap();
        let now: i64 = v.timestamp.parse().unwrap();
        let headers = SvixHeaders {
            id: Some(&v.msg_id),
            timestamp: Some(&v.timestamp),
            signature: Some(&v.signature),
        };
        verifier
            .verify(headers, v.payload.as_bytes(), now + 299)
            .unwrap();
        assert_eq!(
            verifier.sign(&v.msg_id, now, v.payload.as_bytes()),
            v.signature
        );
    }
}

#[test]
fn tampering_and_stale_timestamps_are_refused() {
    let v = &vectors()[0];
    let verifier = WebhookVerifier::new(std::slice::from_ref(&v.secret)).unwrap();
    let now: i64 = v.timestamp.parse().unwrap();
    let ok = SvixHeaders {
        id: Some(&v.msg_id),
        timestamp: Some(&v.timestamp),
        signature: Some(&v.signature),
    };
    let tampered_body = v.payload.replace("test_user", "test_usex");
    assert_eq!(
        verifier.verify(ok, tampered_body.as_bytes(), now),
        Err(VerifyError::NoMatchingSignature)
    );
    let other_id = SvixHeaders {
        id: Some("msg_other"),
        ..ok
    };
    assert_eq!(
        verifier.verify(other_id, v.payload.as_bytes(), now),
        Err(VerifyError::NoMatchingSignature)
    );
    assert_eq!(
        verifier.verify(ok, v.payload.as_bytes(), now + 301),
        Err(VerifyError::TimestampOutOfTolerance)
    );
    assert_eq!(
        verifier.verify(ok, v.payload.as_bytes(), now - 301),
        Err(VerifyError::TimestampOutOfTolerance)
    );
    // Timestamps at the ends of i64 are refused, not wrapped into the window.
    for far in [i64::MIN, i64::MAX, now - i64::MAX] {
        let far = far.to_string();
        let headers = SvixHeaders {
            timestamp: Some(&far),
            ..ok
        };
        assert_eq!(
            verifier.verify(headers, v.payload.as_bytes(), now),
            Err(VerifyError::TimestampOutOfTolerance)
        );
    }
    let missing = SvixHeaders {
        signature: None,
        ..ok
    };
    assert_eq!(
        verifier.verify(missing, v.payload.as_bytes(), now),
        Err(VerifyError::MissingHeader("svix-signature"))
    );
    let wrong_secret =
        WebhookVerifier::new(&["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".into()]).unwrap();
    assert_eq!(
        wrong_secret.verify(ok, v.payload.as_bytes(), now),
        Err(VerifyError::NoMatchingSignature)
    );
}

#[test]
fn several_signatures_and_rotated_secrets_are_accepted() {
    let v = &vectors()[0];
    let rotated = WebhookVerifier::new(&[
        "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".into(),
        v.secret.clone(),
    ])
    .unwrap();
    let signatures = format!("v1,AAAA v1a,ignored {}", v.signature);
    rotated
        .verify_signature(&v.msg_id, &v.timestamp, v.payload.as_bytes(), &signatures)
        .unwrap();
    assert!(WebhookVerifier::new(&["whsec_!!".into()]).is_err());
    // Empty and short keys are refused; 16 decoded bytes are the least accepted.
    for (secret, bytes) in [
        ("whsec_", 0),
        ("whsec_AA==", 1),
        ("whsec_AAAAAAAAAAAAAAAAAAAA", 15),
    ] {
        assert_eq!(
            WebhookVerifier::new(&[secret.into()]).unwrap_err(),
            WebhookSecretError::TooShort(bytes)
        );
    }
    WebhookVerifier::new(&["whsec_AAAAAAAAAAAAAAAAAAAAAA==".into()]).unwrap();
    assert!(WebhookVerifier::new(&[]).is_err());
}

#[test]
fn envelope_times_order_changes_no_later_than_now_plus_the_skew() {
    let deleted_at = |timestamp: i64, received_at_ms: i64| {
        let body = format!(
            r#"{{"type":"user.deleted","timestamp":{timestamp},"data":{{"id":"user_1","deleted":true}}}}"#
        );
        match parse(body.as_bytes(), received_at_ms).unwrap() {
            WebhookEvent::UserDeleted { deleted_at_ms, .. } => deleted_at_ms,
            other => panic!("{other:?}"),
        }
    };
    let now = 1_800_000_000_000;
    assert_eq!(deleted_at(now - 5, now), now - 5);
    assert_eq!(deleted_at(now + 1_000, now), now + 1_000);
    // A far-future deletion would leave a tombstone refusing the user forever.
    assert_eq!(deleted_at(i64::MAX, now), now + ENVELOPE_SKEW_MS);
    assert_eq!(deleted_at(4_000_000_000, now), now + ENVELOPE_SKEW_MS);
    // A far-past one saturates instead of wrapping (a debug build would panic).
    assert_eq!(deleted_at(i64::MIN, now), i64::MIN);
    assert_eq!(deleted_at(-(1 << 62), now), i64::MIN);
}

#[test]
fn clerk_example_events_parse_with_both_timestamp_units() {
    let read = |name: &str| std::fs::read(examples().join(name)).unwrap();
    let delivery = parse_delivery(&read("spec-user.created.json"), 0).unwrap();
    assert_eq!(
        delivery.instance_id.as_deref(),
        Some("ins_2g7np7Hrk0SN6kj5EDMLDaKNL0S")
    );
    let without = br#"{"type":"email.created","object":"event","data":{}}"#;
    assert_eq!(parse_delivery(without, 0).unwrap().instance_id, None);
    match parse(&read("spec-user.created.json"), 0).unwrap() {
        WebhookEvent::UserUpserted { user, event_type } => {
            assert_eq!(event_type, "user.created");
            assert_eq!(user.id, "user_2g7np7Hrk0SN6kj5EDMLDaKNL0S");
        }
        other => panic!("{other:?}"),
    }
    match parse(&read("spec-user.deleted.json"), 1_716_883_201_000).unwrap() {
        WebhookEvent::UserDeleted {
            user_id,
            deleted_at_ms,
        } => {
            assert_eq!(user_id, "user_2g7np7Hrk0SN6kj5EDMLDaKNL0S");
            assert_eq!(
                deleted_at_ms, 1_716_883_200_000,
                "seconds are turned into milliseconds"
            );
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        parse(&read("docs-user.created.json"), 0).unwrap(),
        WebhookEvent::UserUpserted { .. }
    ));
    // A sign-in is the session's user, with its sign-in and activity times.
    match parse(&read("spec-session.created.json"), 0).unwrap() {
        WebhookEvent::UserUpserted { user, event_type } => {
            assert_eq!(event_type, "session.created");
            assert_eq!(user.id, "user_2g7np7Hrk0SN6kj5EDMLDaKNL0S");
            assert_eq!(user.last_sign_in_at, Some(1_716_883_200_000));
            assert_eq!(user.last_active_at, Some(1_716_883_200_000));
        }
        other => panic!("{other:?}"),
    }
    let without_user =
        br#"{"type": "session.ended", "data": {"object": "session", "id": "sess_1"}}"#;
    assert!(matches!(
        parse(without_user, 0).unwrap(),
        WebhookEvent::Other { event_type } if event_type == "session.ended"
    ));
    assert!(parse(br#"{"type": "user.updated"}"#, 0).is_err());
    assert!(parse(b"not json", 0).is_err());
}

#[test]
fn clerk_example_organization_events_parse() {
    let read = |name: &str| std::fs::read(examples().join(name)).unwrap();
    for name in [
        "spec-organization.created.json",
        "spec-organization.updated.json",
    ] {
        match parse(&read(name), 0).unwrap() {
            WebhookEvent::OrganizationUpserted {
                organization,
                event_type,
            } => {
                assert_eq!(organization.id, "org_2g7np7Hrk0SN6kj5EDMLDaKNL0S");
                assert!(name.contains(&event_type), "{name}: {event_type}");
            }
            other => panic!("{name}: {other:?}"),
        }
    }
    match parse(&read("spec-organization.deleted.json"), 1_716_883_201_000).unwrap() {
        WebhookEvent::OrganizationDeleted {
            organization_id,
            deleted_at_ms,
        } => {
            assert_eq!(organization_id, "org_2g7np7Hrk0SN6kj5EDMLDaKNL0S");
            assert_eq!(deleted_at_ms, 1_716_883_200_000);
        }
        other => panic!("{other:?}"),
    }
    for name in [
        "spec-organizationMembership.created.json",
        "spec-organizationMembership.updated.json",
    ] {
        match parse(&read(name), 0).unwrap() {
            WebhookEvent::MembershipUpserted {
                membership,
                organization,
                event_type,
            } => {
                assert_eq!(membership.user_id, "user_2h8op3Isl1QR7tKu5FGNfaLKEoU");
                assert_eq!(organization.id, membership.organization_id);
                assert!(name.contains(&event_type), "{name}: {event_type}");
            }
            other => panic!("{name}: {other:?}"),
        }
    }
    // The delete payload is the membership itself, ordered by the envelope's time.
    match parse(
        &read("spec-organizationMembership.deleted.json"),
        1_716_883_201_000,
    )
    .unwrap()
    {
        WebhookEvent::MembershipDeleted {
            membership,
            deleted_at_ms,
        } => {
            assert_eq!(membership.id, "orgmem_2g7np7Hrk0SN6kj5EDMLDaKNL0S");
            assert_eq!(deleted_at_ms, 1_716_883_200_000);
        }
        other => panic!("{other:?}"),
    }
    let no_org = br#"{"type": "organizationMembership.created", "data": {"id": "orgmem_1"}}"#;
    assert!(parse(no_org, 0).is_err());
    let bad_delete = br#"{"type": "organization.deleted", "data": {"id": "user_1"}}"#;
    assert!(parse(bad_delete, 0).is_err());
}
