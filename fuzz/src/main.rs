//! One AFL++ harness for every fuzz target: `FUZZ_TARGET` names it (`filter`, `webhook`,
//! `page_token`, `clerk_json`).

fn main() {
    let name = std::env::var("FUZZ_TARGET").unwrap_or_default();
    let Some((_, target)) = clerk_index::fuzzing::TARGETS
        .into_iter()
        .find(|(target, _)| *target == name)
    else {
        let names: Vec<&str> = clerk_index::fuzzing::TARGETS.iter().map(|(n, _)| *n).collect();
        eprintln!("set FUZZ_TARGET to one of {names:?}");
        std::process::exit(2);
    };
    afl::fuzz!(|data: &[u8]| target(data));
}
