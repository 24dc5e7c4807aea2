use std::path::PathBuf;

use super::*;
use serde_json::json;

fn examples_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/clerk/examples")
}

fn read_example(name: &str) -> String {
    std::fs::read_to_string(examples_dir().join(name))
        .unwrap_or_else(|e| panic!("reading example {name}: {e}"))
}

/// The `data` of a webhook event file, as raw JSON.
fn event_data(name: &str) -> Box<RawValue> {
    #[derive(Deserialize)]
    struct Envelope {
        data: Box<RawValue>,
    }
    serde_json::from_str::<Envelope>(&read_example(name))
        .unwrap()
        .data
}

#[test]
fn every_example_that_holds_users_parses() {
    let mut parsed = 0;
    for entry in std::fs::read_dir(examples_dir()).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        let text = read_example(&name);
        let json: Value = serde_json::from_str(&text).unwrap();
        if json.is_array() {
            let page = parse_user_page(text.as_bytes()).unwrap();
            assert!(!page.users.is_empty() && page.rejected.is_empty());
            parsed += 1;
        } else if json["data"]["object"] == "user" && json["type"] != "user.deleted" {
            parse_user(&event_data(&name)).unwrap();
            parsed += 1;
        }
    }
    assert_eq!(
        parsed, 4,
        "expected the docs event, two spec events and the ruby list fixture"
    );
}

#[test]
fn docs_example_without_object_tags_keeps_legacy_fields_in_raw_json() {
    let user = parse_user(&event_data("docs-user.created.json")).unwrap();
    assert_eq!(user.id, "user_29w83sxmDNGwOuEthce5gg56FcC");
    assert_eq!(user.primary_email.as_deref(), Some("example@example.org"));
    assert_eq!(user.external_id.as_deref(), Some("567772"));
    assert_eq!(user.updated_at, 1654012591835);
    assert!(user.raw_json.contains("\"birthday\""));
    assert!(user.has_image, "image_url present implies an image");
}

#[test]
fn spec_update_with_null_private_metadata_parses() {
    let user = parse_user(&event_data("spec-user.updated.json")).unwrap();
    assert_eq!(user.public_metadata["department"], "engineering");
    assert!(user.private_metadata.is_null());
    assert_eq!(user.username.as_deref(), Some("johndoe"));
    assert!(user.two_factor_enabled);
    assert_eq!(user.last_sign_in_at, Some(1716883400000));
}

#[test]
fn ruby_fixture_list_is_a_bare_array_with_primary_email_first() {
    let text = read_example("sdk-ruby-fixture-all_users.json");
    let users = parse_user_page(text.as_bytes()).unwrap().users;
    assert_eq!(users.len(), 2);
    assert_eq!(users[0].emails, vec!["developer@clerk.dev"]);
    assert_eq!(users[0].phone_numbers, vec!["+31600000000"]);
    assert_eq!(users[0].last_sign_in_at, None);
    assert_eq!(users[1].created_at, 1621421265123);
}

#[test]
fn deleted_object_parses_with_and_without_external_id() {
    let fixture: ClerkDeletedObject =
        serde_json::from_str(&read_example("sdk-ruby-fixture-user_1_deleted.json")).unwrap();
    assert_eq!(fixture.id.as_deref(), Some("user_1"));
    assert_eq!(fixture.deleted, Some(true));
    let event: ClerkDeletedObject =
        serde_json::from_str(event_data("spec-user.deleted.json").get()).unwrap();
    assert_eq!(event.external_id.as_deref(), Some("ex_123456789"));
}

#[test]
fn a_malformed_user_is_rejected_alone_and_still_counted() {
    let body = br#"[{"id":"user_1"},{"id":"user_2","created_at":"yesterday"},{"id":"user_3"}]"#;
    let page = parse_user_page(body).unwrap();
    assert_eq!(page.len(), 3);
    assert_eq!(
        page.users.iter().map(|u| u.id.as_str()).collect::<Vec<_>>(),
        ["user_1", "user_3"]
    );
    assert_eq!(page.rejected.len(), 1);
    assert_eq!(page.rejected[0].id.as_deref(), Some("user_2"));
    assert_eq!(
        page.keys[1],
        ListedKey {
            id: Some("user_2".into()),
            created_at: None
        }
    );
}

#[test]
fn a_parse_error_names_the_field_but_never_its_value() {
    let body = br#"[{"id":"user_1","first_name":"x","email_addresses":[{"id":"e","email_address":["secret@example.com"]}]}]"#;
    let page = parse_user_page(body).unwrap();
    let error = page.rejected[0].error.to_string();
    assert!(
        error.contains("email_addresses[0].email_address"),
        "{error}"
    );
    assert!(!error.contains("secret"), "{error}");
    let error = parse_user_page(b"<html>502 Bad Gateway</html>").unwrap_err();
    assert_eq!(
        error.to_string(),
        "clerk user json is malformed: the page is not JSON"
    );
    let error = parse_user_page(br#"{"data":[]}"#).unwrap_err();
    assert!(error.to_string().contains("not a JSON array"), "{error}");
}

#[test]
fn user_without_id_is_rejected_and_minimal_user_is_accepted() {
    let raw = RawValue::from_string(r#"{"first_name":"x"}"#.into()).unwrap();
    assert_eq!(parse_user(&raw), Err(UserParseError::MissingId));
    // Ids not shaped like Clerk's are refused, and a listed one is not fetched again by id.
    for id in [
        ".",
        "..",
        "user_..",
        "user_\u{0}",
        "usr_1",
        "user_a-b",
        &"user_x".repeat(20),
    ] {
        let raw = RawValue::from_string(json!({"id": id}).to_string()).unwrap();
        let error = parse_user(&raw).unwrap_err();
        assert!(
            matches!(error, UserParseError::InvalidId(_)),
            "{id}: {error}"
        );
        assert!(!error.to_string().contains(id), "the id is not repeated");
    }
    let page =
        parse_user_page(br#"[{"id":"..","created_at":1},{"id":"user_2","created_at":2}]"#).unwrap();
    assert_eq!(page.users.len(), 1);
    assert_eq!(page.rejected[0].id, None);
    assert_eq!(page.keys[0].id.as_deref(), Some(".."));
    let raw = RawValue::from_string(r#"{"id":"user_1","created_at":5}"#.into()).unwrap();
    let user = parse_user(&raw).unwrap();
    assert_eq!(
        (user.created_at, user.updated_at, user.emails.len()),
        (5, 5, 0)
    );
}

#[test]
fn how_a_user_signs_in_is_read_from_accounts_and_verifications() {
    let json = r#"{"id":"user_1","primary_email_address_id":"idn_p",
        "email_addresses":[
          {"id":"idn_p","email_address":"a@x.io","verification":{"status":"unverified","strategy":"email_code"}},
          {"id":"idn_s","email_address":"a@y.io","verification":{"status":"verified","strategy":"ticket"}}],
        "external_accounts":[{"provider":"oauth_google"},{"provider":"oauth_github"},{"provider":"oauth_google"}],
        "enterprise_accounts":[{"enterprise_connection_id":null,"enterprise_connection":{"id":"entconn_1","name":"Acme"}}],
        "saml_accounts":[{"saml_connection":{"id":"samlc_2"}}],
        "locale":"de-DE","legal_accepted_at":1700000000000,
        "mfa_enabled_at":100,"mfa_disabled_at":200,"totp_enabled":true,"backup_code_enabled":true}"#;
    let user = user_from_json(json).unwrap();
    assert!(!user.primary_email_verified);
    assert!(user.email_verified);
    assert_eq!(user.oauth_providers, ["oauth_google", "oauth_github"]);
    assert_eq!(user.enterprise_connections, ["entconn_1", "samlc_2"]);
    assert_eq!(user.locale.as_deref(), Some("de-DE"));
    assert_eq!(user.legal_accepted_at, Some(1_700_000_000_000));
    assert!(!user.mfa_enabled, "disabled after it was enabled");
    assert!(user.totp_enabled && user.backup_code_enabled);

    // Clerk's own example: nothing verified is claimed that is not there.
    let user = parse_user(&event_data("spec-user.created.json")).unwrap();
    assert_eq!(user.oauth_providers.is_empty(), {
        let raw: Value = serde_json::from_str(&user.raw_json).unwrap();
        raw["external_accounts"]
            .as_array()
            .is_none_or(Vec::is_empty)
    });
}
