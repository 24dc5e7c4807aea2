//! Exports must return every match once, in id order, whatever the chunk and window sizes,
//! and resume exactly after a cursor.

use proptest::prelude::*;

use super::tests::{expected_ids, fixture, valid_filter};

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn exports_return_every_match_once_in_id_order_and_resume_after_a_cursor(
        seed in any::<u64>(),
        chunk in 1usize..700,
        cut in 0usize..3000,
        window in prop_oneof![1usize..40, Just(super::export::EXPORT_WINDOW)],
    ) {
        let fixture = fixture();
        let filter = valid_filter(seed, &fixture.users);
        let expected: Vec<String> = expected_ids(fixture, &filter).into_iter().collect();
        let snapshot = fixture.index.snapshot();
        // Small windows: each segment's query runs again for every few matches.
        let mut export = snapshot.export_in_windows(Some(&filter), None, fixture.now_ms, window).unwrap();
        prop_assert_eq!(export.total(), expected.len() as u64);
        let mut ids = Vec::new();
        loop {
            let next = export.next_chunk(chunk).unwrap();
            if next.is_empty() {
                break;
            }
            prop_assert!(next.len() == chunk || export.remaining() == 0);
            for crate::index::ExportMatch { id, address, .. } in next {
                // The address is the user's own document (checked on a sample: reads are slow).
                if ids.len() % 97 == 0 {
                    let json = snapshot.raw_json_at(address).unwrap();
                    let quoted = format!("\"{id}\"");
                    prop_assert!(json.contains(&quoted));
                }
                ids.push(id);
            }
        }
        prop_assert_eq!(&ids, &expected);
        let segments = snapshot.searcher.segment_readers().len();
        if window * segments < expected.len() {
            prop_assert!(export.reloads() > 0, "{} matches in {} segments, windows of {}", expected.len(), segments, window);
        }
        // Resuming after any id (present or not) yields exactly the ids after it.
        let after = match expected.get(cut % expected.len().max(1)) {
            Some(id) if seed % 2 == 0 => id.clone(),
            Some(id) => format!("{id}~"),
            None => "user_".to_string(),
        };
        let mut resumed = snapshot.export_in_windows(Some(&filter), Some(&after), fixture.now_ms, window).unwrap();
        let rest: Vec<String> = resumed.next_chunk(usize::MAX >> 1).unwrap().into_iter().map(|m| m.id).collect();
        let want: Vec<String> = expected.iter().filter(|id| **id > after).cloned().collect();
        prop_assert_eq!(rest, want);
    }
}
