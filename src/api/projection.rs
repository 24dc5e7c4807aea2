//! Field masks: reduce a user's Clerk JSON to the requested paths, and to what the caller may
//! read.

use serde_json::{Map, Value};

use crate::auth::Caller;
use crate::error::Error;
use crate::user::MetadataNamespace;

/// What a response holds of each user: the requested paths, less the metadata namespaces the
/// caller may not read.
#[derive(Debug, Clone, Default)]
pub struct Projection {
    fields: Vec<String>,
    hidden: Vec<MetadataNamespace>,
}

impl Projection {
    /// A mask naming a namespace the caller cannot read is refused; an empty mask returns
    /// everything the caller can.
    pub fn new(fields: Vec<String>, caller: &Caller) -> Result<Projection, Error> {
        caller.check_field_mask(&fields)?;
        Ok(Projection {
            fields,
            hidden: caller.hidden_namespaces(),
        })
    }

    /// Whether the mask asks for the id alone (answered without reading stored users).
    pub fn ids_only(&self) -> bool {
        ids_only(&self.fields)
    }

    /// Whether the mask is empty or the id alone.
    pub fn is_empty_or_ids_only(&self) -> bool {
        self.fields.is_empty() || self.ids_only()
    }

    /// The projection of one stored user's Clerk JSON.
    pub fn apply(&self, raw_json: &str) -> Result<String, serde_json::Error> {
        if self.hidden.is_empty() || !self.fields.is_empty() {
            // A non-empty mask was checked to name only readable namespaces.
            return project_json(raw_json, &self.fields);
        }
        let mut user: Value = serde_json::from_str(raw_json)?;
        if let Value::Object(map) = &mut user {
            for namespace in &self.hidden {
                map.shift_remove(namespace.field_name());
            }
        }
        serde_json::to_string(&user)
    }
}

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
    fn namespaces_the_caller_cannot_read_are_left_out() {
        let raw = r#"{"id":"user_1","first_name":"Ann","public_metadata":{"plan":"pro"},"private_metadata":{"ltv":3},"unsafe_metadata":{}}"#;
        let caller = |scopes: &str| Caller {
            name: "k".into(),
            scopes: crate::auth::Scopes::parse_list(scopes).unwrap(),
        };
        let everything = Projection::new(vec![], &caller("public,private,unsafe")).unwrap();
        assert_eq!(everything.apply(raw).unwrap(), raw);
        let public = Projection::new(vec![], &caller("public")).unwrap();
        assert_eq!(
            public.apply(raw).unwrap(),
            r#"{"id":"user_1","first_name":"Ann","public_metadata":{"plan":"pro"}}"#
        );
        let masked = Projection::new(vec!["public.plan".into()], &caller("public")).unwrap();
        assert_eq!(
            masked.apply(raw).unwrap(),
            r#"{"id":"user_1","public_metadata":{"plan":"pro"}}"#
        );
        let error = Projection::new(vec!["private.ltv".into()], &caller("public")).unwrap_err();
        assert!(matches!(error, Error::PermissionDenied(_)), "{error}");
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
