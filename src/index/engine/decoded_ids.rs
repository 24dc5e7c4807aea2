//! A segment's user ids, decoded once from their column's dictionary into one arena.
//!
//! A page of search hits knows each hit's id as an ordinal of the segment's id dictionary, and
//! answers with the id itself. Through the sstable dictionary each ordinal copies its block and
//! walks the block's deltas up to it: a top-50 page of a million users spent ~20% of its server
//! time there (`bench/profile-top50-2026-12-08.txt`). Decoded, an ordinal is two array reads.
//! The ids take ~36 bytes a user, so they are kept only while the ids of every segment a page
//! reads take at most a quarter of the column cache's budget (a million users with the default
//! budget; not ten million, whose pages read the dictionary as before rather than push the
//! decoded columns out).

use std::sync::Arc;

use tantivy::columnar::StrColumn;
use tantivy::index::SegmentId;

use super::column_cache::ColumnCache;

/// What a Clerk user id takes, about (`user_` and 27 characters), for the size estimate.
const ID_BYTES: usize = 32;

/// The ids of one segment's dictionary, by ordinal.
pub struct DecodedIds {
    bytes: Vec<u8>,
    /// Where each ordinal's id ends in `bytes` (it starts where the one before ends).
    ends: Vec<u32>,
}

impl DecodedIds {
    /// Every term of `ids`' dictionary; `None` past 4 GiB of ids or when the dictionary fails.
    fn decode(ids: &StrColumn) -> Option<DecodedIds> {
        let dictionary = ids.dictionary();
        let mut decoded = DecodedIds {
            bytes: Vec::with_capacity(dictionary.num_terms() * ID_BYTES),
            ends: Vec::with_capacity(dictionary.num_terms()),
        };
        let mut terms = dictionary.stream().ok()?;
        while terms.advance() {
            decoded.bytes.extend_from_slice(terms.key());
            decoded.ends.push(u32::try_from(decoded.bytes.len()).ok()?);
        }
        Some(decoded)
    }

    /// The id of ordinal `ord`.
    pub fn get(&self, ord: u64) -> Option<&[u8]> {
        let ord = usize::try_from(ord).ok()?;
        let end = *self.ends.get(ord)? as usize;
        let start = match ord {
            0 => 0,
            _ => self.ends[ord - 1] as usize,
        };
        Some(&self.bytes[start..end])
    }

    fn size(&self) -> usize {
        self.bytes.capacity() + self.ends.capacity() * 4
    }
}

/// The decoded ids of `segment`'s id column `ids`, kept in `cache`; `None` when the ids of all
/// the `searched_docs` of the query's segments would take more than a quarter of its budget
/// (read through the dictionary then): each segment alone may be small, but a page decodes the
/// ids of every segment it reads.
pub fn decoded_ids(
    cache: &ColumnCache,
    segment: SegmentId,
    ids: &StrColumn,
    searched_docs: usize,
) -> Option<Arc<DecodedIds>> {
    let estimate = searched_docs.max(ids.dictionary().num_terms()) * (ID_BYTES + 4);
    // The cache refuses what is over its whole budget; four times the estimate makes that a
    // quarter.
    cache.made(segment, b"decoded-ids".to_vec(), 4 * estimate, || {
        let decoded = DecodedIds::decode(ids)?;
        let size = decoded.size();
        Some((decoded, size))
    })
}

#[cfg(test)]
mod tests {
    use tantivy::schema::{FAST, STRING, Schema};
    use tantivy::{Index, doc};

    use super::*;

    #[test]
    fn every_ordinal_reads_the_id_the_dictionary_holds_and_large_ids_stay_out() {
        let mut schema = Schema::builder();
        let id = schema.add_text_field("id", STRING | FAST);
        let index = Index::create_in_ram(schema.build());
        let mut writer = index.writer_with_num_threads(1, 15 << 20).unwrap();
        for n in 0..3000 {
            writer
                .add_document(doc!(id => format!("user_{:027}", n * 7919 % 3001)))
                .unwrap();
        }
        writer.commit().unwrap();
        let searcher = index.reader().unwrap().searcher();
        let reader = searcher.segment_reader(0);
        let ids = reader.fast_fields().str("id").unwrap().unwrap();
        let cache = ColumnCache::new(1 << 20);
        let decoded = decoded_ids(&cache, reader.segment_id(), &ids, 3000).expect("fits");
        let terms = ids.dictionary().num_terms() as u64;
        for ord in 0..terms {
            let mut want = Vec::new();
            assert!(ids.dictionary().ord_to_term(ord, &mut want).unwrap());
            assert_eq!(decoded.get(ord), Some(want.as_slice()), "ordinal {ord}");
        }
        assert_eq!(decoded.get(terms), None);
        assert!(
            Arc::ptr_eq(
                &decoded,
                &decoded_ids(&cache, reader.segment_id(), &ids, 3000).unwrap()
            ),
            "kept"
        );
        // 3000 ids take ~108 KB: over a quarter of a 400 KB budget, they are not decoded; nor
        // are they when the query reads 10,000 docs in all against a budget of 1 MB.
        let small = ColumnCache::new(400_000);
        assert!(decoded_ids(&small, reader.segment_id(), &ids, 3000).is_none());
        let other = ColumnCache::new(1 << 20);
        assert!(decoded_ids(&other, reader.segment_id(), &ids, 10_000).is_none());
        assert!(decoded_ids(&other, reader.segment_id(), &ids, 3000).is_some());
    }
}
