//! The field catalog: every metadata path the index holds, with the JSON types seen at it and how
//! many users hold each. Read from the `field_types` terms (one per user, path and type), counting
//! only live documents, so the numbers are exact.

use std::collections::BTreeMap;

use tantivy::schema::IndexRecordOption;
use tantivy::{DocSet, TERMINATED};

use super::error::IndexError;
use super::paths::TYPE_SEPARATOR;
use super::snapshot::Snapshot;
use crate::query::CoreField;
use crate::query::Filter;
use crate::query::ast::{FieldPath, Op, Predicate};
use crate::user::decode_metadata_path;

/// One metadata path of the catalog.
#[derive(Debug, Clone, PartialEq)]
pub struct PathTypes {
    pub path: FieldPath,
    /// `(type, users)`, most common first.
    pub types: Vec<(String, u64)>,
}

impl PathTypes {
    /// More than one kind of value among strings, numbers, booleans and objects: filters on the
    /// path match only the users holding the type they compare with.
    pub fn type_conflict(&self) -> bool {
        let mut classes: Vec<&str> = self
            .types
            .iter()
            .filter_map(|(kind, _)| match kind.as_str() {
                "string" => Some("string"),
                "integer" | "float" => Some("number"),
                "boolean" => Some("boolean"),
                "object" => Some("object"),
                _ => None,
            })
            .collect();
        classes.sort_unstable();
        classes.dedup();
        classes.len() > 1
    }
}

impl Snapshot {
    /// Every metadata path with its types, in path order.
    pub fn field_catalog(&self) -> Result<Vec<PathTypes>, IndexError> {
        let mut counts: BTreeMap<Vec<u8>, u64> = BTreeMap::new();
        for segment in self.searcher.segment_readers() {
            let inverted = segment.inverted_index(self.fields.field_types)?;
            let mut terms = inverted.terms().stream()?;
            while terms.advance() {
                let info = terms.value();
                let live = if segment.has_deletes() {
                    let mut postings =
                        inverted.read_postings_from_terminfo(info, IndexRecordOption::Basic)?;
                    let mut live = 0;
                    let mut doc = postings.doc();
                    while doc != TERMINATED {
                        if !segment.is_deleted(doc) {
                            live += 1;
                        }
                        doc = postings.advance();
                    }
                    live
                } else {
                    u64::from(info.doc_freq)
                };
                if live > 0 {
                    *counts.entry(terms.key().to_vec()).or_default() += live;
                }
            }
        }
        let mut catalog: BTreeMap<String, PathTypes> = BTreeMap::new();
        for (term, users) in counts {
            let Ok(term) = String::from_utf8(term) else {
                continue;
            };
            let Some((encoded, kind)) = term.rsplit_once(TYPE_SEPARATOR) else {
                continue;
            };
            let Some((namespace, keys)) = decode_metadata_path(encoded) else {
                continue;
            };
            catalog
                .entry(encoded.to_string())
                .or_insert_with(|| PathTypes {
                    path: FieldPath::Metadata { namespace, keys },
                    types: Vec::new(),
                })
                .types
                .push((kind.to_string(), users));
        }
        let mut paths: Vec<PathTypes> = catalog.into_values().collect();
        for path in &mut paths {
            path.types
                .sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        }
        Ok(paths)
    }

    /// How many users hold a value in each core field.
    pub fn core_field_counts(&self) -> Result<Vec<(CoreField, u64)>, IndexError> {
        CoreField::ALL
            .into_iter()
            .map(|field| {
                let exists = Filter::Predicate(Predicate {
                    path: FieldPath::Core(field),
                    op: Op::Exists,
                    position: 0,
                });
                Ok((field, self.count(Some(&exists), 0)?))
            })
            .collect()
    }
}
