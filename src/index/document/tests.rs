use serde_json::json;
use tantivy::TantivyDocument;
use tantivy::schema::{OwnedValue, Value};

use super::PlainJson;
use crate::index::sandbox::population_users;
use crate::index::schema::Fields;
use crate::user::MetadataNamespace;

/// What documents were built from before `PlainJson`: a copy of the value as tantivy's own tree,
/// strings kept as strings.
fn owned(value: &serde_json::Value) -> OwnedValue {
    match value {
        serde_json::Value::Null => OwnedValue::Null,
        serde_json::Value::Bool(b) => OwnedValue::Bool(*b),
        serde_json::Value::Number(n) => match (n.as_i64(), n.as_u64()) {
            (Some(i), _) => OwnedValue::I64(i),
            (None, Some(u)) => OwnedValue::U64(u),
            (None, None) => OwnedValue::F64(n.as_f64().unwrap_or(f64::NAN)),
        },
        serde_json::Value::String(s) => OwnedValue::Str(s.clone()),
        serde_json::Value::Array(items) => OwnedValue::Array(items.iter().map(owned).collect()),
        serde_json::Value::Object(map) => {
            OwnedValue::Object(map.iter().map(|(k, v)| (k.clone(), owned(v))).collect())
        }
    }
}

/// The document bytes (through `Debug`, which shows them all) with the value read in place and
/// with it copied first.
fn both_ways(fields: &Fields, value: &serde_json::Value) -> (String, String) {
    let field = fields.metadata(MetadataNamespace::Public);
    let mut in_place = TantivyDocument::default();
    in_place.add_field_value(field, PlainJson(value));
    let mut copied = TantivyDocument::default();
    copied.add_field_value(field, &owned(value));
    (format!("{in_place:?}"), format!("{copied:?}"))
}

#[test]
fn json_read_in_place_makes_the_same_document_as_a_copy() {
    let fields = Fields::build();
    let edges = json!({
        "date_like": "2024-01-01T00:00:00Z",
        "numbers": [0, -1, 1.5, 18446744073709551615u64, -9223372036854775808i64, 1e300],
        "nested": {"a": [{"b": null}, [], {}], "empty": ""},
        "flags": [true, false],
        "unicode": "Zoë \u{1F600}",
    });
    let (in_place, copied) = both_ways(&fields, &edges);
    assert_eq!(in_place, copied);
    // Kept a string where tantivy's own impl makes a date.
    let field = fields.metadata(MetadataNamespace::Public);
    let mut doc = TantivyDocument::default();
    doc.add_field_value(field, PlainJson(&edges));
    let object = doc.get_first(field).and_then(|v| v.as_object()).unwrap();
    let (_, date_like) = object.into_iter().find(|(k, _)| *k == "date_like").unwrap();
    assert_eq!(date_like.as_str(), Some("2024-01-01T00:00:00Z"));
    for user in population_users(300) {
        for namespace in MetadataNamespace::ALL {
            let (in_place, copied) = both_ways(&fields, user.metadata(namespace));
            assert_eq!(in_place, copied, "{} {namespace:?}", user.id);
        }
    }
}
