//! Projections answered from the index's columns (`index::ValueColumns`) instead of stored users.
//!
//! A field mask whose every field has a faithful column (names, the external id, times, flags,
//! metadata paths) becomes a [`ColumnPlan`]: the paths to read, nested as the mask nests them.
//! Each user is then written from what the columns hold, and reads as the same JSON value the
//! stored document gives under the same mask (a property test holds the two equal). A user for
//! whom any path is [`Cell::Unknown`] (an array, an object asked for whole, a name whose key
//! Clerk left out) is projected from its stored document instead, so the answer never depends
//! on which way a user was read.

use std::sync::Arc;

use super::mask::Mask;
use crate::auth::Sensitive;
use crate::index::{Cell, Cells, IndexError, ValuePath, push_json_str};
use crate::user::MetadataNamespace;

/// How one projection is written from columns.
#[derive(Debug)]
pub struct ColumnPlan {
    paths: Vec<ValuePath>,
    /// The top-level keys after `id`, in the order they are written.
    nodes: Vec<Node>,
}

#[derive(Debug)]
struct Node {
    /// The key as JSON, with its colon: `"first_name":`.
    key: String,
    /// Index in `paths`.
    path: usize,
    /// `None` for a leaf (the whole value), else the keys asked for beneath it.
    children: Option<Vec<Node>>,
}

/// The most paths (the mask's fields and the objects they lie in) a plan reads.
pub const MAX_PATHS: usize = 32;

/// Top-level keys in the order Clerk writes them (the stored path keeps Clerk's order).
const KEY_ORDER: [&str; 18] = [
    "external_id",
    "first_name",
    "last_name",
    "has_image",
    "public_metadata",
    "private_metadata",
    "unsafe_metadata",
    "password_enabled",
    "two_factor_enabled",
    "totp_enabled",
    "backup_code_enabled",
    "last_sign_in_at",
    "banned",
    "locked",
    "updated_at",
    "created_at",
    "last_active_at",
    "legal_accepted_at",
];

impl ColumnPlan {
    /// The plan of `mask`, or `None` when some field it names has no faithful column: the whole
    /// user (an empty mask), a key without a column (`email_addresses`, `username`, `org`), a
    /// whole namespace, or a path that may hold a sealed value for a caller who may open it.
    pub(super) fn of(mask: &Mask, revealed: Option<&Arc<Sensitive>>) -> Option<ColumnPlan> {
        if mask.all {
            return None;
        }
        let mut plan = ColumnPlan {
            paths: Vec::new(),
            nodes: Vec::new(),
        };
        let mut keys: Vec<&String> = mask.children.keys().filter(|k| *k != "id").collect();
        if keys.is_empty() {
            return None;
        }
        keys.sort_by_key(|key| KEY_ORDER.iter().position(|k| k == key));
        for key in keys {
            let child = &mask.children[key];
            if let Some(path) = ValuePath::core(key) {
                if !child.all {
                    return None;
                }
                let leaf = plan.leaf(key, path);
                plan.nodes.push(leaf);
                continue;
            }
            let namespace = MetadataNamespace::ALL
                .into_iter()
                .find(|ns| ns.field_name() == key.as_str())?;
            if child.all {
                return None;
            }
            let node = plan.inner(key, ValuePath::Namespace(namespace), child, namespace, &[])?;
            plan.nodes.push(node);
        }
        // An export holds a byte per path per match: wide masks read stored users instead.
        if plan.paths.len() > MAX_PATHS {
            return None;
        }
        if let Some(sensitive) = revealed
            && plan
                .paths
                .iter()
                .any(|path| may_hold_sealed(path, sensitive))
        {
            return None;
        }
        Some(plan)
    }

    fn leaf(&mut self, key: &str, path: ValuePath) -> Node {
        self.paths.push(path);
        Node {
            key: json_key(key),
            path: self.paths.len() - 1,
            children: None,
        }
    }

    fn inner(
        &mut self,
        key: &str,
        path: ValuePath,
        mask: &Mask,
        namespace: MetadataNamespace,
        keys: &[String],
    ) -> Option<Node> {
        self.paths.push(path);
        let at = self.paths.len() - 1;
        let mut names: Vec<&String> = mask.children.keys().collect();
        names.sort();
        let mut children = Vec::with_capacity(names.len());
        for name in names {
            let child = &mask.children[name];
            let mut keys = keys.to_vec();
            keys.push(name.clone());
            let path = ValuePath::Metadata {
                namespace,
                keys: keys.clone(),
            };
            children.push(match child.all {
                true => self.leaf(name, path),
                false => self.inner(name, path, child, namespace, &keys)?,
            });
        }
        Some(Node {
            key: json_key(key),
            path: at,
            children: Some(children),
        })
    }

    /// The paths to read, in the order [`ColumnPlan::render`] takes their slots.
    pub fn paths(&self) -> &[ValuePath] {
        &self.paths
    }

    /// The user's JSON from its `cells` (one per path), or `None` when its stored document
    /// must say. Written straight into the answer's text: an export writes a hundred thousand
    /// users.
    pub fn render(&self, id: &str, cells: &mut impl Cells) -> Result<Option<String>, IndexError> {
        let mut json = String::with_capacity(64 + 32 * self.paths.len());
        json.push_str("{\"id\":");
        push_json_str(&mut json, id);
        for node in &self.nodes {
            if node.write(cells, &mut json)?.is_none() {
                return Ok(None);
            }
        }
        json.push('}');
        Ok(Some(json))
    }
}

impl Node {
    /// Appends `,"key":value` (nothing when the key is left out); `None` when the stored
    /// document must say.
    fn write(&self, cells: &mut impl Cells, json: &mut String) -> Result<Option<()>, IndexError> {
        let start = json.len();
        json.push(',');
        json.push_str(&self.key);
        Ok(match (&self.children, cells.write(self.path, json)?) {
            (_, Cell::Unknown) => None,
            // Absent, or keys asked beneath a scalar or `null` (nothing to select): the key is
            // left out.
            (_, Cell::Absent) | (Some(_), Cell::Written) => {
                json.truncate(start);
                Some(())
            }
            (None, Cell::Written) => Some(()),
            // A whole object: only the document has all of it.
            (None, Cell::Object) => None,
            (Some(children), Cell::Object) => {
                json.push('{');
                let first = json.len();
                for child in children {
                    if child.write(cells, json)?.is_none() {
                        return Ok(None);
                    }
                }
                if json.len() > first {
                    // The first child's comma.
                    json.remove(first);
                }
                json.push('}');
                Some(())
            }
        })
    }
}

/// `"key":`.
fn json_key(key: &str) -> String {
    let mut json = String::with_capacity(key.len() + 3);
    push_json_str(&mut json, key);
    json.push(':');
    json
}

/// Whether `path` is, or lies above or below, a sensitive path.
fn may_hold_sealed(path: &ValuePath, sensitive: &Sensitive) -> bool {
    match path {
        // A namespace is only ever asked whether it is an object: its keys are paths below.
        ValuePath::Core(_) | ValuePath::Namespace(_) => false,
        ValuePath::Metadata { namespace, keys } => sensitive.paths().overlaps(*namespace, keys),
    }
}

#[cfg(test)]
mod tests;
