//! The bitset evaluation of whole queries over a real index, with the cache.

use std::sync::Arc;

use tantivy::collector::{Count, DocSetCollector};
use tantivy::query::{BooleanQuery, Occur, Query, TermQuery};
use tantivy::schema::{IndexRecordOption, STRING, Schema};
use tantivy::{Index, Term, doc};

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
