//! Sealing, opening, blind-index filters and key rings, end to end on plain users.

use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::Value as Json;

use super::keyring::BLIND_INDEX_ID;
use super::*;
use crate::index::Sealer;
use crate::query::{FieldPath, FilterLimits, parse_filter, parse_path};
use crate::user::User;

fn user(private: Json) -> User {
    let raw = serde_json::json!({
        "id": "user_1", "object": "user", "created_at": 1, "updated_at": 2,
        "public_metadata": {"plan": "pro"}, "private_metadata": private, "unsafe_metadata": {}
    });
    let raw = serde_json::value::RawValue::from_string(raw.to_string()).unwrap();
    crate::clerk::model::parse_user(&raw).unwrap()
}

fn sensitive(paths: &str, ring: &str) -> Sensitive {
    Sensitive::new(
        SensitivePaths::parse(paths).unwrap(),
        KeyRing::parse(ring).unwrap(),
    )
}

#[test]
fn paths_parse_and_cover_what_is_below_them() {
    let paths =
        SensitivePaths::parse("private.ssn, private_metadata.medical.*, public.`a.b`").unwrap();
    for covered in [
        "private.ssn",
        "private.medical",
        "private.medical.condition",
        "public.`a.b`.c",
    ] {
        assert!(paths.covers(&parse_path(covered).unwrap()), "{covered}");
    }
    for open in [
        "private.ltv",
        "private.ssn_last4",
        "public.a",
        "unsafe.ssn",
        "email",
    ] {
        assert!(!paths.covers(&parse_path(open).unwrap()), "{open}");
    }
    assert!(SensitivePaths::parse("email").is_err());
    assert!(SensitivePaths::parse("private").is_err());
}

#[test]
fn a_metadata_patch_touches_what_it_writes_replaces_or_deletes() {
    use crate::user::MetadataNamespace::{Private, Public};
    let paths = SensitivePaths::parse("private.ssn, private.medical.codes").unwrap();
    let touched = |namespace, patch: Json| paths.touched_by_patch(namespace, &patch);
    for patch in [
        serde_json::json!({"ssn": "x"}),
        serde_json::json!({"ssn": null}),
        serde_json::json!({"medical": null}),
        serde_json::json!({"medical": "gone"}),
        serde_json::json!({"medical": {"codes": [1]}}),
        serde_json::json!({"ltv": 3, "ssn": {"nested": 1}}),
        serde_json::json!(null),
        serde_json::json!("replaces everything"),
    ] {
        assert!(touched(Private, patch.clone()).is_some(), "{patch}");
    }
    assert_eq!(
        touched(Private, serde_json::json!({"medical": {"codes": 1}})).as_deref(),
        Some("private_metadata.medical.codes")
    );
    for patch in [
        serde_json::json!({}),
        serde_json::json!({"ltv": 3}),
        serde_json::json!({"medical": {"condition": "x"}}),
        serde_json::json!({"ssn_last4": "1234"}),
    ] {
        assert_eq!(touched(Private, patch.clone()), None, "{patch}");
    }
    assert_eq!(touched(Public, serde_json::json!({"ssn": "x"})), None);
}

#[test]
fn key_rings_parse_and_never_quote_a_key() {
    let ring = KeyRing::parse(&test_ring(&["k2", "k1"])).unwrap();
    assert_eq!(ring.active_id(), "k2");
    assert_eq!(ring.ids().collect::<Vec<_>>(), ["k2", "k1"]);
    assert!(
        KeyRing::parse("k1 c2hvcnQ=")
            .unwrap_err()
            .to_string()
            .contains("32 bytes")
    );
    assert!(
        KeyRing::parse(&generate_key_line("k1"))
            .unwrap_err()
            .to_string()
            .contains("blind-index")
    );
    assert!(
        KeyRing::parse(&generate_key_line(BLIND_INDEX_ID))
            .unwrap_err()
            .to_string()
            .contains("no encryption key")
    );
    let secret = generate_key_line("k1");
    let error = KeyRing::parse(&format!("{secret} extra"))
        .unwrap_err()
        .to_string();
    assert!(
        !error.contains(secret.split(' ').nth(1).unwrap()),
        "{error}"
    );
    assert!(!format!("{ring:?}").contains(&BASE64.encode(ring.blind_key())));
}

#[test]
fn sealing_cuts_values_out_encrypts_them_and_opens_them_again() {
    let s = sensitive(
        "private.ssn, private.medical.*, private.contacts.phone",
        &test_ring(&["k1"]),
    );
    let user = user(serde_json::json!({
        "ssn": "123-45-6789", "ltv": 10,
        "medical": {"condition": "asthma", "since": 2019},
        "contacts": [{"phone": "555-0100", "name": "Al"}]
    }));
    let sealed = s.seal_user(&user).unwrap().unwrap();
    for secret in ["123-45-6789", "asthma", "555-0100"] {
        assert!(
            !sealed.raw_json.contains(secret),
            "{secret} in {}",
            sealed.raw_json
        );
        assert!(!sealed.private_metadata.to_string().contains(secret));
        assert!(!sealed.sealed.as_ref().unwrap().values.contains(secret));
    }
    assert_eq!(sealed.private_metadata["ltv"], 10);
    assert!(sealed.raw_json.contains("\"ltv\":10"));
    let opened = s
        .reveal(&user.id, &sealed.sealed.as_ref().unwrap().values)
        .unwrap();
    let find = |path: &str| {
        let FieldPath::Metadata { namespace, keys } = parse_path(path).unwrap() else {
            panic!()
        };
        opened
            .iter()
            .find(|(n, k, _)| *n == namespace && *k == keys)
            .map(|(_, _, v)| v.clone())
    };
    assert_eq!(find("private.ssn").unwrap(), "123-45-6789");
    assert_eq!(
        find("private.medical").unwrap(),
        serde_json::json!({"condition": "asthma", "since": 2019})
    );
    // Under an array, the whole array is sealed.
    assert_eq!(
        find("private.contacts").unwrap(),
        serde_json::json!([{"phone": "555-0100", "name": "Al"}])
    );
    // A ciphertext opens only for its own user and path.
    let values = &sealed.sealed.as_ref().unwrap().values;
    assert!(matches!(
        s.reveal("user_2", values),
        Err(SealError::Damaged { .. })
    ));
    let swapped = values.replacen("private_metadata.ssn", "private_metadata.zzz", 1);
    assert!(s.reveal(&user.id, &swapped).is_err());
    // Without sensitive values, nothing changes.
    assert!(
        s.seal_user(&self::user(serde_json::json!({"ltv": 1})))
            .unwrap()
            .is_none()
    );
}

#[test]
fn equality_filters_match_the_tokens_of_the_sealed_values_only() {
    let s = sensitive("private.ssn, private.medical", &test_ring(&["k1"]));
    let user = Arc::new(user(
        serde_json::json!({"ssn": "123-45-6789", "medical": {"codes": [7, 9.5]}}),
    ));
    let sealed = s.seal(user.clone()).unwrap();
    let limits = FilterLimits::default();
    let check = |text: &str, expected: bool| {
        let filter = s.seal_filter(parse_filter(text, &limits).unwrap()).unwrap();
        assert_eq!(
            crate::query::eval::matches(&filter, &sealed, 0),
            expected,
            "{text}"
        );
    };
    check(r#"private.ssn = "123-45-6789""#, true);
    check(r#"private.ssn = "123-45-6780""#, false);
    check(r#"private.ssn != "123-45-6789""#, false);
    check(r#"private.ssn IN ["x", "123-45-6789"]"#, true);
    check("private.medical.codes = 7.0", true);
    check("private.medical.codes = 9.5", true);
    check(r#"private.medical.codes = "7""#, false);
    check(
        r#"private.ssn = "123-45-6789" AND public.plan = "pro""#,
        true,
    );
    for refused in [
        r#"private.ssn > "1""#,
        r#"private.ssn STARTS WITH "123""#,
        "private.ssn EXISTS",
        "private.ssn = 2024-01-01",
    ] {
        let error = s
            .seal_filter(parse_filter(refused, &limits).unwrap())
            .unwrap_err()
            .to_string();
        assert!(error.contains("private.ssn is a sensitive path"), "{error}");
        assert!(!error.contains("123"), "{error}");
    }
    // Another blind-index key gives other tokens (and another fingerprint).
    let other = sensitive("private.ssn, private.medical", &test_ring(&["k1"]));
    let filter = other
        .seal_filter(parse_filter(r#"private.ssn = "123-45-6789""#, &limits).unwrap())
        .unwrap();
    assert!(!crate::query::eval::matches(&filter, &sealed, 0));
    assert_ne!(s.fingerprint(), other.fingerprint());
}

#[test]
fn rotation_keeps_old_values_readable_and_reseals_them_under_the_new_key() {
    let old_ring = test_ring(&["k1"]);
    let old = sensitive("private.ssn", &old_ring);
    let user = user(serde_json::json!({"ssn": "123-45-6789"}));
    let sealed_old = old.seal_user(&user).unwrap().unwrap();
    let values_old = sealed_old.sealed.as_ref().unwrap().values.clone();
    assert!(values_old.contains("\"k1:"));
    // The new ring: k2 active, k1 still there, the same blind-index key.
    let blind = old_ring.lines().next().unwrap();
    let new_ring = format!(
        "{blind}\n{}\n{}",
        generate_key_line("k2"),
        old_ring.lines().nth(1).unwrap()
    );
    let new = sensitive("private.ssn", &new_ring);
    assert_eq!(
        new.fingerprint(),
        old.fingerprint(),
        "same paths, same blind key"
    );
    assert_eq!(
        new.reveal(&user.id, &values_old).unwrap()[0].2,
        "123-45-6789"
    );
    let resealed = new.reseal(&sealed_old, &values_old).unwrap().unwrap();
    let values_new = &resealed.sealed.as_ref().unwrap().values;
    assert!(values_new.contains("\"k2:") && !values_new.contains("\"k1:"));
    assert!(
        resealed
            .sealed
            .as_ref()
            .unwrap()
            .tokens
            .contains(&Sensitive::key_token("k2"))
    );
    assert_eq!(
        new.reveal(&user.id, values_new).unwrap()[0].2,
        "123-45-6789"
    );
    assert!(
        new.reseal(&resealed, values_new).unwrap().is_none(),
        "already current"
    );
    // Without k1 the old value cannot be opened, and the error names the key only.
    let without_k1 = sensitive(
        "private.ssn",
        &format!("{blind}\n{}", generate_key_line("k2")),
    );
    assert_eq!(
        without_k1.reveal(&user.id, &values_old).unwrap_err(),
        SealError::UnknownKey("k1".into())
    );
}

#[test]
fn a_new_ring_keeps_the_blind_key_and_the_material_of_every_id_in_use() {
    let blind = generate_key_line(BLIND_INDEX_ID);
    let k1 = generate_key_line("k1");
    let sensitive = sensitive("private.ssn", &format!("{blind}\n{k1}"));
    let sealed = sensitive
        .seal_user(&user(serde_json::json!({"ssn": "123"})))
        .unwrap()
        .unwrap();
    let values = sealed.sealed.as_ref().unwrap().values.clone();
    let refused = |ring: String| sensitive.replace_ring(KeyRing::parse(&ring).unwrap());
    assert_eq!(
        refused(format!("{}\n{k1}", generate_key_line(BLIND_INDEX_ID))),
        Err(RingRefused::BlindKey)
    );
    assert_eq!(
        refused(format!("{blind}\n{}", generate_key_line("k1"))),
        Err(RingRefused::KeyChanged("k1".into()))
    );
    let k2 = generate_key_line("k2");
    refused(format!("{blind}\n{k2}\n{k1}")).unwrap();
    assert_eq!(sensitive.ring().active_id(), "k2");
    // What k1 sealed still opens, and k2 seals from now on.
    assert_eq!(sensitive.reveal("user_1", &values).unwrap().len(), 1);
    let resealed = sensitive.reseal(&sealed, &values).unwrap().unwrap();
    assert!(resealed.sealed.unwrap().values.contains("\"k2:"));
}
