//! JSON written from columns reads as serde_json writes it.

use proptest::prelude::*;

use super::*;

proptest! {
    #[test]
    fn strings_are_written_as_serde_json_writes_them(text in any::<String>()) {
        let mut out = String::from("[");
        push_json_str(&mut out, &text);
        prop_assert_eq!(&out[1..], serde_json::to_string(&text).unwrap());
    }
}

#[test]
fn quotes_backslashes_and_control_characters_are_escaped() {
    for text in [
        "plain",
        "a\"b",
        "back\\slash",
        "tab\tnew\nline\u{1}",
        "é🙂\u{7f}",
        "",
    ] {
        let mut out = String::new();
        push_json_str(&mut out, text);
        assert_eq!(out, serde_json::to_string(text).unwrap());
        assert_eq!(serde_json::from_str::<String>(&out).unwrap(), text);
    }
    let mut out = String::new();
    push_json_value(&mut out, &serde_json::json!(1.5));
    push_json_value(&mut out, &serde_json::json!(null));
    push_json_value(&mut out, &serde_json::json!("x\"y"));
    assert_eq!(out, r#"1.5null"x\"y""#);
}
