//! How metadata paths become index terms: which paths a user's metadata holds (for `EXISTS`
//! and `= null`) and which JSON types each holds (for the field catalog). The encoding is baked
//! into the index files, so it lives with the index.

use serde_json::Value;

use crate::user::{MetadataNamespace, push_escaped_key};

/// Every metadata path of one namespace that `EXISTS` (holds a value somewhere beneath it), and
/// every path holding an explicit `null` (directly or as an array element). Arrays are
/// transparent: `{"a": [{"b": 1}]}` has the path `a.b`, as it has in the index's JSON field.
pub fn metadata_path_facts(
    namespace: MetadataNamespace,
    value: &Value,
) -> (Vec<String>, Vec<String>) {
    json_path_facts(namespace.field_name(), value)
}

/// [`metadata_path_facts`] for any JSON field, its paths spelled from `root`.
pub fn json_path_facts(root: &str, value: &Value) -> (Vec<String>, Vec<String>) {
    let mut present = Vec::new();
    let mut nulls = Vec::new();
    walk_paths(value, &mut root.to_string(), true, &mut present, &mut nulls);
    present.sort_unstable();
    present.dedup();
    nulls.sort_unstable();
    nulls.dedup();
    (present, nulls)
}

fn walk_paths(
    value: &Value,
    path: &mut String,
    is_root: bool,
    present: &mut Vec<String>,
    nulls: &mut Vec<String>,
) -> bool {
    match value {
        Value::Null => {
            if !is_root {
                nulls.push(path.clone());
            }
            false
        }
        Value::Array(items) => {
            let mut any = false;
            for item in items {
                any |= walk_paths(item, path, is_root, present, nulls);
            }
            any
        }
        Value::Object(map) => {
            let mut any = false;
            for (key, child) in map {
                let len = path.len();
                path.push('.');
                push_escaped_key(path, key);
                if walk_paths(child, path, false, present, nulls) {
                    present.push(path.clone());
                    any = true;
                }
                path.truncate(len);
            }
            any
        }
        _ => true,
    }
}

/// Separates a path from a JSON type name in [`metadata_path_types`] entries.
pub const TYPE_SEPARATOR: char = '\u{1f}';

/// The JSON types held at each path of one namespace, as `{encoded path}\u{1f}{type}` entries,
/// sorted and deduplicated. Types are `string`, `integer`, `float`, `boolean`, `null`, `object`
/// and `array`; an array also contributes the types of its elements (arrays are transparent, as
/// in filters), and an object the paths beneath it.
pub fn metadata_path_types(namespace: MetadataNamespace, value: &Value) -> Vec<String> {
    let mut entries = Vec::new();
    if let Value::Object(map) = value {
        let mut path = namespace.field_name().to_string();
        for (key, child) in map {
            let len = path.len();
            path.push('.');
            push_escaped_key(&mut path, key);
            walk_types(child, &mut path, &mut entries);
            path.truncate(len);
        }
    }
    entries.sort_unstable();
    entries.dedup();
    entries
}

fn walk_types(value: &Value, path: &mut String, entries: &mut Vec<String>) {
    let kind = match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_f64() => "float",
        Value::Number(_) => "integer",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    };
    entries.push(format!("{path}{TYPE_SEPARATOR}{kind}"));
    match value {
        Value::Array(items) => {
            for item in items {
                walk_types(item, path, entries);
            }
        }
        Value::Object(map) => {
            for (key, child) in map {
                let len = path.len();
                path.push('.');
                push_escaped_key(path, key);
                walk_types(child, path, entries);
                path.truncate(len);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn path_facts_look_through_arrays_and_skip_empty_values() {
        let value = json!({
            "tier": "gold", "referrer": null, "tags": [], "maybe": [null, null],
            "orgs": [{"role": "admin"}, {"role": null}], "empty": {}, "a.b": {"c": 1}
        });
        let (present, nulls) = metadata_path_facts(MetadataNamespace::Public, &value);
        assert_eq!(
            present,
            vec![
                "public_metadata.a\\.b",
                "public_metadata.a\\.b.c",
                "public_metadata.orgs",
                "public_metadata.orgs.role",
                "public_metadata.tier"
            ]
        );
        assert_eq!(
            nulls,
            vec![
                "public_metadata.maybe",
                "public_metadata.orgs.role",
                "public_metadata.referrer"
            ]
        );
    }

    #[test]
    fn path_types_name_every_json_type_and_look_into_arrays() {
        let value = json!({
            "tier": "gold", "n": 3, "f": 0.5, "whole": 5.0, "ok": true, "gone": null,
            "tags": ["a", 1], "orgs": [{"role": "admin"}], "a.b": {}
        });
        let entries: Vec<String> = metadata_path_types(MetadataNamespace::Unsafe, &value)
            .into_iter()
            .map(|e| e.replace(TYPE_SEPARATOR, " "))
            .collect();
        assert_eq!(
            entries,
            vec![
                "unsafe_metadata.a\\.b object",
                "unsafe_metadata.f float",
                "unsafe_metadata.gone null",
                "unsafe_metadata.n integer",
                "unsafe_metadata.ok boolean",
                "unsafe_metadata.orgs array",
                "unsafe_metadata.orgs object",
                "unsafe_metadata.orgs.role string",
                "unsafe_metadata.tags array",
                "unsafe_metadata.tags integer",
                "unsafe_metadata.tags string",
                "unsafe_metadata.tier string",
                "unsafe_metadata.whole float",
            ]
        );
    }

    #[test]
    fn null_metadata_has_no_paths() {
        let (present, nulls) = metadata_path_facts(MetadataNamespace::Private, &Value::Null);
        assert!(present.is_empty() && nulls.is_empty());
    }
}
