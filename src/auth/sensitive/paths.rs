//! Which metadata paths are sensitive, as configured (`private.ssn,private.medical.*`).

use crate::query::FieldPath;
use crate::user::{MetadataNamespace, encode_metadata_path};

/// A configured path that cannot be sensitive, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {reason}")]
pub struct SensitivePathError {
    pub path: String,
    pub reason: String,
}

/// Which metadata paths are sensitive.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SensitivePaths {
    paths: Vec<(MetadataNamespace, Vec<String>)>,
}

impl SensitivePaths {
    /// Comma-separated metadata paths as filters spell them (`private.ssn`,
    /// ``private.`a.b` ``, `private_metadata.medical.*`); a trailing `.*` is allowed and means
    /// the same as without it: everything at and below the path.
    pub fn parse(text: &str) -> Result<SensitivePaths, SensitivePathError> {
        let mut paths = Vec::new();
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let path_text = part.strip_suffix(".*").unwrap_or(part);
            match crate::query::parse_path(path_text) {
                Ok(FieldPath::Metadata { namespace, keys }) if !keys.is_empty() => {
                    paths.push((namespace, keys))
                }
                Ok(_) => {
                    return Err(SensitivePathError {
                        path: part.to_string(),
                        reason:
                            "only paths inside public, private or unsafe metadata can be sensitive"
                                .into(),
                    });
                }
                Err(e) => {
                    return Err(SensitivePathError {
                        path: part.to_string(),
                        reason: e.to_string(),
                    });
                }
            }
        }
        paths.sort();
        paths.dedup();
        Ok(SensitivePaths { paths })
    }

    pub fn is_empty(&self) -> bool {
        self.paths.is_empty()
    }

    /// Whether `path` is at or below a sensitive path.
    pub fn covers(&self, path: &FieldPath) -> bool {
        match path {
            FieldPath::Core(_) => false,
            FieldPath::Metadata { namespace, keys } => self
                .paths
                .iter()
                .any(|(ns, prefix)| ns == namespace && keys.starts_with(prefix)),
        }
    }

    /// Whether a sensitive path lies at, above or below `keys` of `namespace` (what a value
    /// there may hold or be part of).
    pub fn overlaps(&self, namespace: MetadataNamespace, keys: &[String]) -> bool {
        self.paths.iter().any(|(ns, sealed)| {
            let n = sealed.len().min(keys.len());
            *ns == namespace && sealed[..n] == keys[..n]
        })
    }

    /// The first sensitive path a metadata update of `namespace` with `patch` would write or
    /// delete. Clerk merges a patch deeply: a key set to an object merges into it, anything
    /// else (a value, an array, `null`) replaces or removes everything below it.
    pub fn touched_by_patch(
        &self,
        namespace: MetadataNamespace,
        patch: &serde_json::Value,
    ) -> Option<String> {
        self.paths
            .iter()
            .filter(|(ns, _)| *ns == namespace)
            .find(|(_, keys)| {
                let mut node = patch;
                for key in keys {
                    match node {
                        serde_json::Value::Object(map) => match map.get(key) {
                            Some(below) => node = below,
                            None => return false,
                        },
                        // Replaces (or deletes) an object the sensitive path is inside.
                        _ => return true,
                    }
                }
                true
            })
            .map(|(ns, keys)| encode_metadata_path(*ns, keys))
    }

    /// The paths, canonical and sorted: `private_metadata.ssn`, ...
    pub fn describe_list(&self) -> Vec<String> {
        self.paths
            .iter()
            .map(|(ns, keys)| encode_metadata_path(*ns, keys))
            .collect()
    }

    pub(super) fn describe(&self) -> String {
        self.describe_list().join(",")
    }

    /// Every sensitive path as `(namespace, keys)`, sorted.
    pub(super) fn entries(&self) -> &[(MetadataNamespace, Vec<String>)] {
        &self.paths
    }
}
