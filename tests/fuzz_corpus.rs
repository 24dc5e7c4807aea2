//! Replays the committed fuzz corpus (`fuzz/corpus/<target>/`) through each fuzz target: every
//! input a fuzzing run kept, and every crash it found once fixed, must go through without a
//! panic, in the ordinary test command. The fuzzing itself runs outside CI (`fuzz/README.md`).

use std::path::Path;
use std::time::{Duration, Instant};

use clerk_index::fuzzing::TARGETS;

#[test]
fn every_corpus_input_goes_through_its_target() {
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus");
    for (name, target) in TARGETS {
        let dir = corpus.join(name);
        let mut inputs = 0;
        for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
            let path = entry.unwrap().path();
            let data = std::fs::read(&path).unwrap();
            let started = Instant::now();
            let outcome = std::panic::catch_unwind(|| target(&data));
            assert!(outcome.is_ok(), "{name} panicked on {}", path.display());
            assert!(
                started.elapsed() < Duration::from_secs(5),
                "{name} took {:?} on {}",
                started.elapsed(),
                path.display()
            );
            inputs += 1;
        }
        assert!(inputs >= 4, "the {name} corpus has only {inputs} inputs");
    }
}

#[test]
fn tokens_the_server_issues_go_through_the_page_token_target() {
    use clerk_index::index::SortCursor;
    use clerk_index::query::sort::{SortSpec, SortValue};
    let token = clerk_index::read::encode_page_token(
        SortCursor {
            value: SortValue::Str("user_5".into()),
            id: "user_5".into(),
        },
        None,
        &SortSpec::by_id(),
    );
    let decoded = clerk_index::read::decode_page_token(&token, None, &SortSpec::by_id()).unwrap();
    assert_eq!(decoded.unwrap().id, "user_5");
    clerk_index::fuzzing::page_token(token.as_bytes());
}
