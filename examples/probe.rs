use std::time::Instant;
use tantivy::Index;
use tantivy::collector::Count;
use tantivy::query::QueryParser;

fn main() {
    let index = Index::open_in_dir("/tmp/p1m/data/index").unwrap();
    clerk_index::index::register_tokenizers_for_probe(&index);
    let reader = index.reader().unwrap();
    let searcher = reader.searcher();
    let fields = clerk_index::index::Fields::build();
    for f in std::env::args().skip(1) {
        let filter = clerk_index::query::parse_filter(&f, &Default::default()).unwrap();
        let q = clerk_index::index::compile_for_probe(&fields, &filter);
        let mut best = std::time::Duration::MAX;
        let mut n = 0;
        for _ in 0..std::env::var("N").map(|v| v.parse().unwrap()).unwrap_or(10) {
            let t = Instant::now();
            n = searcher.search(&q, &Count).unwrap();
            best = best.min(t.elapsed());
        }
        println!("{f:70} {n:8} {best:?}");
    }
    let _ = QueryParser::for_index;
}
