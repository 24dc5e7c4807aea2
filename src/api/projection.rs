//! Field masks: reduce a user's Clerk JSON to the requested paths.

use serde_json::{Map, Value};

/// Whether a field mask asks for the id alone, which the index answers without reading stored
/// users.
pub fn ids_only(paths: &[String]) -> bool {
    paths.len() == 1 && paths[0] == "id"
}

/// `{"id": ...}`: the projection of any user to `["id"]`.
pub fn id_json(id: &str) -> String {
    // Written directly: an export of 100k ids otherwise spends most of its time building and
    // dropping one-key JSON maps.
    let mut json = String::with_capacity(id.len() + 10);
    json.push_str("{\"id\":");
    serde_json::to_writer(unsafe_free_string_writer(&mut json), id)
        .expect("a string always serializes");
    json.push('}');
    json
}

/// Lets serde_json append to a `String` (it only ever writes valid UTF-8).
fn unsafe_free_string_writer(json: &mut String) -> impl std::io::Write + '_ {
    struct Appender<'a>(&'a mut String);
    impl std::io::Write for Appender<'_> {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            let text = std::str::from_utf8(bytes)
                .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
            self.0.push_str(text);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    Appender(json)
}

/// Keeps only `paths` (dot-separated Clerk JSON paths; `public.`/`private.`/`unsafe.` stand for
/// the metadata objects) plus `id`, in Clerk's own key order. An empty list keeps everything.
pub fn project_json(raw_json: &str, paths: &[String]) -> Result<String, serde_json::Error> {
    if paths.is_empty() {
        return Ok(raw_json.to_string());
    }
    let source: Value = serde_json::from_str(raw_json)?;
    let mut wanted: Vec<Vec<&str>> = vec![vec!["id"]];
    for path in paths {
        let mut keys: Vec<&str> = path.split('.').filter(|k| !k.is_empty()).collect();
        if let Some(first) = keys.first_mut()
            && let Some(namespace) = crate::user::MetadataNamespace::parse(first)
        {
            *first = namespace.field_name();
        }
        wanted.push(keys);
    }
    let projected = select(&source, &wanted).unwrap_or_else(|| Value::Object(Map::new()));
    serde_json::to_string(&projected)
}

/// The parts of `value` that `paths` (relative to it) select, in `value`'s key order.
fn select(value: &Value, paths: &[Vec<&str>]) -> Option<Value> {
    if paths.iter().any(|p| p.is_empty()) {
        return Some(value.clone());
    }
    let Value::Object(map) = value else {
        return None;
    };
    let mut out = Map::new();
    for (key, child) in map {
        let below: Vec<Vec<&str>> = paths
            .iter()
            .filter(|p| p[0] == key)
            .map(|p| p[1..].to_vec())
            .collect();
        if !below.is_empty()
            && let Some(selected) = select(child, &below)
        {
            out.insert(key.clone(), selected);
        }
    }
    Some(Value::Object(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_requested_paths_and_the_id() {
        let raw = r#"{"id":"user_1","first_name":"Ann","public_metadata":{"plan":"pro","tier":"gold"},"private_metadata":{"ltv":3}}"#;
        let projected = project_json(
            raw,
            &[
                "public.plan".into(),
                "first_name".into(),
                "missing.key".into(),
            ],
        )
        .unwrap();
        assert_eq!(
            projected,
            r#"{"id":"user_1","first_name":"Ann","public_metadata":{"plan":"pro"}}"#
        );
        assert_eq!(project_json(raw, &[]).unwrap(), raw);
    }

    #[test]
    fn the_id_only_shortcut_equals_the_projection() {
        let raw = r#"{"object":"user","id":"user_1","first_name":"Ann"}"#;
        let mask = vec!["id".to_string()];
        assert!(ids_only(&mask));
        assert_eq!(id_json("user_1"), project_json(raw, &mask).unwrap());
        assert!(!ids_only(&["id".into(), "first_name".into()]));
    }
}
