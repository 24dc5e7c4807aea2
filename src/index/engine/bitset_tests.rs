//! The bitset evaluation of whole queries over a real index, with the cache.

use std::sync::Arc;

use tantivy::collector::{Count, DocSetCollector};
use tantivy::query::{BooleanQuery, Occur, Query, TermQuery};
use tantivy::schema::{IndexRecordOption, STRING, Schema};
use tantivy::{Index, Term, doc};

use proptest::prelude::*;
use tantivy::{COLLECT_BLOCK_BUFFER_LEN, DocId, DocSet, TERMINATED};

use super::bits::Bits;
use super::bitset::BitsDocSet;
use super::{BitsetQuery, ColumnCache};

#[test]
fn frequent_terms_are_served_from_the_cache_with_deletes_applied() {
    let mut schema = Schema::builder();
    let s = schema.add_text_field("s", STRING);
    let index = Index::create_in_ram(schema.build());
    let mut writer = index.writer_with_num_threads(1, 15 << 20).unwrap();
    // 1000 docs: "often" in 890, "seldom" in 10 (below one in 32), "x" in the rest.
    for doc in 0..1000 {
        let word = match doc % 100 {
            0 => "seldom",
            1..90 => "often",
            _ => "x",
        };
        writer
            .add_document(doc!(s => word, s => format!("n{doc}")))
            .unwrap();
    }
    writer.commit().unwrap();
    let term = |word: &str| Term::from_field_text(s, word);
    let cache = Arc::new(ColumnCache::new(1 << 20));
    let query = |words: &[&str]| {
        let clauses = words
            .iter()
            .map(|word| {
                let leaf: Box<dyn Query> =
                    Box::new(TermQuery::new(term(word), IndexRecordOption::Basic));
                (Occur::Should, leaf)
            })
            .collect();
        BitsetQuery::new(Box::new(BooleanQuery::new(clauses)), cache.clone())
    };
    let searcher = index.reader().unwrap().searcher();
    assert_eq!(searcher.search(&query(&["seldom"]), &Count).unwrap(), 10);
    assert_eq!(cache.bytes(), 0, "a rare term is decoded, not kept");
    assert_eq!(searcher.search(&query(&["often"]), &Count).unwrap(), 890);
    let kept = cache.bytes();
    assert_eq!(kept, 1000usize.div_ceil(64) * 8, "a frequent term is kept");
    let both = searcher
        .search(&query(&["often", "seldom"]), &Count)
        .unwrap();
    assert_eq!(both, 900);
    assert_eq!(cache.bytes(), kept, "the second use reads the kept bits");

    // Deletes leave the kept postings as they are and are applied to every answer.
    for doc in (1..90).step_by(2) {
        writer.delete_term(term(&format!("n{doc}")));
    }
    writer.commit().unwrap();
    let searcher = index.reader().unwrap().searcher();
    let matched = searcher
        .search(&query(&["often"]), &DocSetCollector)
        .unwrap();
    assert_eq!(matched.len(), 890 - 45);
    assert_eq!(searcher.search(&query(&["often"]), &Count).unwrap(), 845);
}

proptest! {
    /// Every operation gives the same docs whichever form (bits or doc ids) each side has.
    #[test]
    fn bit_operations_match_sets(
        max_doc in 1u32..700,
        a in proptest::collection::btree_set(0u32..700, 0..300),
        b in proptest::collection::btree_set(0u32..700, 0..300),
        seek in 0u32..800,
        (a_sparse, b_sparse) in (any::<bool>(), any::<bool>()),
    ) {
        let a: Vec<DocId> = a.into_iter().filter(|d| *d < max_doc).collect();
        let b: Vec<DocId> = b.into_iter().filter(|d| *d < max_doc).collect();
        let bits_a = Bits::in_form(max_doc, &a, a_sparse);
        let bits_b = Bits::in_form(max_doc, &b, b_sparse);
        let docs = |bits: Bits| {
            let mut set = BitsDocSet::new(bits);
            let mut out = Vec::new();
            while set.doc() != TERMINATED {
                out.push(set.doc());
                set.advance();
            }
            out
        };
        prop_assert_eq!(docs(bits_a.clone()), a.clone());
        prop_assert_eq!(bits_a.docs().collect::<Vec<_>>(), a.clone());
        let both: Vec<DocId> = a.iter().copied().filter(|d| b.contains(d)).collect();
        let mut and = bits_a.clone();
        and.and(&bits_b);
        prop_assert_eq!(and.len(), both.len() as u64);
        prop_assert_eq!(docs(and), both.clone());
        prop_assert_eq!(docs(Bits::and_of(&bits_a, &bits_b)), both);
        let mut or = bits_a.clone();
        or.or(&bits_b);
        let mut union: Vec<DocId> = a.iter().chain(&b).copied().collect();
        union.sort_unstable();
        union.dedup();
        prop_assert_eq!(or.len(), union.len() as u64);
        prop_assert_eq!(docs(or), union.clone());
        prop_assert_eq!(docs(Bits::or_of(&bits_a, &bits_b)), union);
        let mut minus = bits_a.clone();
        minus.and_not(&bits_b);
        let only_a: Vec<DocId> = a.iter().copied().filter(|d| !b.contains(d)).collect();
        prop_assert_eq!(docs(minus), only_a);
        let mut not = Bits::full(max_doc);
        not.and_not(&bits_a);
        prop_assert_eq!(not.len(), (max_doc as usize - a.len()) as u64);
        let mut odd = bits_a.clone();
        odd.retain(|d| d % 2 == 1);
        prop_assert_eq!(docs(odd), a.iter().copied().filter(|d| d % 2 == 1).collect::<Vec<_>>());
        for doc in [0, max_doc / 2, max_doc - 1] {
            prop_assert_eq!(bits_a.contains(doc), a.contains(&doc));
            let mut changed = bits_a.clone();
            changed.insert(doc);
            prop_assert!(changed.contains(doc));
            prop_assert_eq!(changed.len(), a.len() as u64 + u64::from(!a.contains(&doc)));
            changed.remove(doc);
            prop_assert!(!changed.contains(doc));
        }
        let mut dense = bits_a.clone();
        dense.words_mut();
        prop_assert!(dense.dense_words().is_some());
        prop_assert_eq!(docs(dense), a.clone());
        // seek, fill_buffer and count agree with a plain walk.
        let mut set = BitsDocSet::new(bits_a.clone());
        let sought = set.seek(seek);
        prop_assert_eq!(sought, a.iter().copied().find(|d| *d >= seek).unwrap_or(TERMINATED));
        let mut buffered = Vec::new();
        let mut buffer = [0; COLLECT_BLOCK_BUFFER_LEN];
        loop {
            let n = set.fill_buffer(&mut buffer);
            buffered.extend_from_slice(&buffer[..n]);
            if n < buffer.len() {
                break;
            }
        }
        prop_assert_eq!(buffered, a.iter().copied().filter(|d| *d >= seek).collect::<Vec<_>>());
        let mut counted = BitsDocSet::new(bits_a);
        counted.seek(seek);
        prop_assert_eq!(counted.count_including_deleted() as usize, a.iter().filter(|d| **d >= seek).count());
    }
}
