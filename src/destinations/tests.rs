//! Unit tests of the parts: addresses refused, signatures Svix's scheme verifies, backoff
//! bounds, secrets sealed at rest.

use std::net::IpAddr;
use std::sync::Arc;

use super::address::{Policy, is_internal};
use super::model::{Destination, State};
use super::payload::{events_message, new_secret, signature};
use super::store::{Store, hold_of, load};
use crate::clerk::webhook::{SvixHeaders, WebhookVerifier};
use crate::segments::{EventKind, SegmentEvent};

const STRICT: Policy = Policy {
    allow_private: false,
    allow_http: false,
};

#[test]
fn internal_addresses_are_recognized() {
    for ip in [
        "127.0.0.1",
        "10.1.2.3",
        "172.16.0.1",
        "192.168.1.1",
        "169.254.169.254",
        "100.64.0.1",
        "0.0.0.0",
        "255.255.255.255",
        "224.0.0.1",
        "::1",
        "::",
        "fe80::1",
        "fd00::1",
        "::ffff:127.0.0.1",
        "::ffff:169.254.169.254",
        "64:ff9b::7f00:1",
        "64:ff9b::a9fe:a9fe",
    ] {
        assert!(
            is_internal(ip.parse::<IpAddr>().unwrap()),
            "{ip} is internal"
        );
    }
    for ip in [
        "8.8.8.8",
        "1.1.1.1",
        "2606:4700:4700::1111",
        "::ffff:8.8.8.8",
        "64:ff9b::808:808",
    ] {
        assert!(
            !is_internal(ip.parse::<IpAddr>().unwrap()),
            "{ip} is public"
        );
    }
}

#[test]
fn urls_are_checked() {
    assert!(
        STRICT
            .check_url("https://hooks.example.com/clerk?token=1")
            .is_ok()
    );
    for (url, says) in [
        ("http://hooks.example.com/", "plain http"),
        ("ftp://hooks.example.com/", "not https"),
        ("https://user:pw@hooks.example.com/", "credentials"),
        ("https://127.0.0.1/", "private"),
        ("https://0x7f.1/", "private"),
        ("https://[::1]:8443/", "private"),
        ("https://169.254.169.254/latest", "private"),
        ("https://localhost:9000/", "local host name"),
        ("https://api.localhost/", "local host name"),
        ("not a url", "not a URL"),
    ] {
        let error = STRICT.check_url(url).expect_err(url).to_string();
        assert!(error.contains(says), "{url}: {error}");
    }
    let long = format!("https://example.com/{}", "a".repeat(3_000));
    assert!(STRICT.check_url(&long).is_err());
    let open = Policy {
        allow_private: true,
        allow_http: true,
    };
    assert!(open.check_url("http://127.0.0.1:8080/hook").is_ok());
}

#[tokio::test]
async fn the_resolver_refuses_names_of_internal_addresses() {
    use reqwest::dns::Resolve;
    let name = || "localhost".parse::<reqwest::dns::Name>().unwrap();
    let refused = STRICT.resolver().resolve(name()).await;
    let error = refused.err().expect("localhost resolves only to loopback");
    assert!(error.to_string().contains("refused"), "{error}");
    let open = Policy {
        allow_private: true,
        allow_http: false,
    };
    let addrs: Vec<_> = open.resolver().resolve(name()).await.unwrap().collect();
    assert!(addrs.iter().all(|a| a.ip().is_loopback()) && !addrs.is_empty());
}

fn event(sequence: u64, kind: EventKind, user: &str) -> Arc<SegmentEvent> {
    Arc::new(SegmentEvent {
        sequence,
        segment: "win-back".into(),
        kind,
        user_id: user.into(),
        change_time_ms: 1_764_000_000_000,
        recorded_at_ms: 1_764_000_000_100,
        cause: "time".into(),
    })
}

#[test]
fn messages_are_signed_with_every_secret_in_force() {
    let (new, old) = (new_secret(), new_secret());
    let events = [
        event(7, EventKind::Entered, "user_1"),
        event(9, EventKind::Exited, "user_2"),
    ];
    let message = events_message("crm", &events, 1_764_000_001_000);
    assert_eq!(message.id, "msg_crm_7_9");
    let body: serde_json::Value = serde_json::from_slice(&message.body).unwrap();
    assert_eq!(body["type"], "segment.events");
    assert_eq!(body["data"]["events"][0]["id"], "evt_7");
    assert_eq!(body["data"]["events"][0]["type"], "segment.entered");
    assert_eq!(body["data"]["events"][1]["user_id"], "user_2");
    assert_eq!(
        body["data"]["events"][0]["change_time"],
        "2025-11-24T16:00:00Z"
    );
    let header = signature(
        &[new.clone(), old.clone()],
        &message.id,
        1_764_000_001,
        &message.body,
    );
    assert_eq!(header.split(' ').count(), 2);
    for secret in [new, old] {
        let verifier = WebhookVerifier::new(&[secret]).unwrap();
        let headers = SvixHeaders {
            id: Some(&message.id),
            timestamp: Some("1764000001"),
            signature: Some(&header),
        };
        verifier
            .verify(headers, &message.body, 1_764_000_001)
            .unwrap();
        let tampered = [message.body.as_slice(), b" "].concat();
        assert!(verifier.verify(headers, &tampered, 1_764_000_001).is_err());
    }
    let stranger = WebhookVerifier::new(&[new_secret()]).unwrap();
    assert!(
        stranger
            .verify_signature(&message.id, "1764000001", &message.body, &header)
            .is_err()
    );
}

fn destination(name: &str, through: u64, state: State) -> Destination {
    Destination {
        name: name.into(),
        url: "https://hooks.example.com/".into(),
        segments: vec!["win-back".into()],
        batch_size: 100,
        batch_delay_ms: 0,
        created_ms: 0,
        updated_ms: 0,
        state,
        delivered_through: through,
        delivered_events: 0,
        last_delivered_ms: None,
        failed_attempts: 0,
        failing_since_ms: None,
        last_error: None,
        next_attempt_ms: None,
        resync: false,
        secrets: Vec::new(),
    }
}

#[test]
fn the_hold_is_the_slowest_destination_without_a_gap() {
    let all = [
        destination("a", 50, State::Active),
        destination("b", 20, State::Paused),
        destination("c", 5, State::Gap),
    ];
    assert_eq!(hold_of(&all), Some(20));
    assert_eq!(hold_of(&all[2..]), None);
}

#[test]
fn secrets_are_sealed_at_rest_and_state_survives_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), None).unwrap();
    let secret = new_secret();
    let mut saved = destination("crm", 42, State::Failing);
    saved.secrets = vec![store.seal("crm", &secret, None).unwrap()];
    let map = [("crm".to_string(), saved.clone())].into();
    store.save(&map).unwrap();
    let on_disk = std::fs::read_to_string(dir.path().join("state.json")).unwrap();
    assert!(
        !on_disk.contains(&secret[6..]),
        "the secret is not stored in plaintext"
    );
    let keys = dir.path().join("secret-keys");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&keys).unwrap().permissions().mode();
        assert_eq!(
            mode & 0o077,
            0,
            "the local key ring is readable by its owner only"
        );
    }
    let reopened = Store::open(dir.path(), None).unwrap();
    let loaded = load(dir.path()).unwrap();
    assert_eq!(loaded, vec![saved.clone()]);
    assert_eq!(
        reopened.open_secret("crm", &loaded[0].secrets[0]).unwrap(),
        secret
    );
    // Bound to its destination: moved to another name, it does not open.
    assert!(
        reopened
            .open_secret("other", &loaded[0].secrets[0])
            .is_err()
    );
}

mod delivery;
