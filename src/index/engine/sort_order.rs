//! A segment's docs in the order of their values in one decoded column, cached beside it for
//! top-N pages (`sort_walk`).

use tantivy::DocId;

use super::decoded_column::DecodedColumn;

/// The docs of one segment in the order of their values in one decoded column.
pub struct SortOrder {
    /// Docs holding a value, by ascending value (ties in doc order).
    pub(super) by_value: Vec<DocId>,
    /// Docs holding none (last in either direction).
    pub(super) missing: Vec<DocId>,
}

impl SortOrder {
    pub fn build(decoded: &DecodedColumn, max_doc: DocId) -> SortOrder {
        let mut valued: Vec<(u64, DocId)> = Vec::with_capacity(max_doc as usize);
        let mut missing = Vec::new();
        for doc in 0..max_doc {
            match decoded.value(doc) {
                Some(value) => valued.push((value, doc)),
                None => missing.push(doc),
            }
        }
        valued.sort_unstable();
        SortOrder {
            by_value: valued.into_iter().map(|(_, doc)| doc).collect(),
            missing,
        }
    }

    /// The size of what [`SortOrder::build`] makes for `max_doc` docs.
    pub fn size_of(max_doc: DocId) -> usize {
        max_doc as usize * std::mem::size_of::<DocId>()
    }

    pub fn bytes(&self) -> usize {
        (self.by_value.len() + self.missing.len()) * std::mem::size_of::<DocId>()
    }
}
