//! Field masks: reduce a user's Clerk JSON to the requested paths.

use serde_json::{Map, Value};

/// Keeps only `paths` (dot-separated Clerk JSON paths; `public.`/`private.`/`unsafe.` stand for
/// the metadata objects) plus `id`. An empty list keeps everything.
pub fn project_json(raw_json: &str, paths: &[String]) -> Result<String, serde_json::Error> {
    if paths.is_empty() {
        return Ok(raw_json.to_string());
    }
    let source: Value = serde_json::from_str(raw_json)?;
    let mut out = Map::new();
    if let Some(id) = source.get("id") {
        out.insert("id".into(), id.clone());
    }
    for path in paths {
        let mut keys: Vec<&str> = path.split('.').filter(|k| !k.is_empty()).collect();
        if let Some(first) = keys.first_mut()
            && let Some(namespace) = crate::user::MetadataNamespace::parse(first)
        {
            *first = namespace.field_name();
        }
        copy_path(&source, &mut out, &keys);
    }
    serde_json::to_string(&Value::Object(out))
}

fn copy_path(source: &Value, out: &mut Map<String, Value>, keys: &[&str]) {
    let Some((first, rest)) = keys.split_first() else { return };
    let Some(value) = source.get(*first) else { return };
    if rest.is_empty() {
        out.insert(first.to_string(), value.clone());
        return;
    }
    if value.is_object() {
        let child = out.entry(first.to_string()).or_insert_with(|| Value::Object(Map::new()));
        if let Value::Object(child) = child {
            copy_path(value, child, rest);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_requested_paths_and_the_id() {
        let raw = r#"{"id":"user_1","first_name":"Ann","public_metadata":{"plan":"pro","tier":"gold"},"private_metadata":{"ltv":3}}"#;
        let projected = project_json(raw, &["public.plan".into(), "first_name".into(), "missing.key".into()]).unwrap();
        assert_eq!(projected, r#"{"id":"user_1","first_name":"Ann","public_metadata":{"plan":"pro"}}"#);
        assert_eq!(project_json(raw, &[]).unwrap(), raw);
    }
}
