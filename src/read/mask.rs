//! Field masks as trees of keys, and the selection they make of a user's Clerk JSON.

use std::collections::HashMap;

use serde_json::{Map, Value};

use crate::user::MetadataNamespace;

/// A field mask as a tree of keys: a node either takes everything below it or the children
/// it names. Namespaces are spelled as Clerk does, and `id` is always included.
#[derive(Debug, Default)]
pub(super) struct Mask {
    pub(super) all: bool,
    pub(super) children: HashMap<String, Mask>,
}

impl Mask {
    pub(super) fn of(paths: &[String]) -> Mask {
        let mut root = Mask::default();
        if paths.is_empty() {
            root.all = true;
            return root;
        }
        root.children.entry("id".into()).or_default().all = true;
        for path in paths {
            let mut node = &mut root;
            for (n, key) in path.split('.').filter(|k| !k.is_empty()).enumerate() {
                let key = match MetadataNamespace::parse(key) {
                    Some(namespace) if n == 0 => namespace.field_name(),
                    _ => key,
                };
                node = node.children.entry(key.to_string()).or_default();
            }
            node.all = true;
        }
        root
    }

    pub(super) fn project_json(&self, raw_json: &str) -> Result<String, serde_json::Error> {
        if self.all {
            return Ok(raw_json.to_string());
        }
        let source: Value = serde_json::from_str(raw_json)?;
        serde_json::to_string(&self.select_user(&source))
    }

    pub(super) fn select_user(&self, user: &Value) -> Value {
        self.select(user)
            .unwrap_or_else(|| Value::Object(Map::new()))
    }

    /// The parts of `value` this mask selects, in `value`'s key order.
    fn select(&self, value: &Value) -> Option<Value> {
        if self.all {
            return Some(value.clone());
        }
        if let Value::Array(items) = value {
            // A mask below an array (`org.role`) applies to each element.
            return Some(Value::Array(
                items.iter().filter_map(|item| self.select(item)).collect(),
            ));
        }
        let Value::Object(map) = value else {
            return None;
        };
        let mut out = Map::new();
        for (key, child) in map {
            if let Some(selected) = self.children.get(key).and_then(|m| m.select(child)) {
                out.insert(key.clone(), selected);
            }
        }
        Some(Value::Object(out))
    }
}
