//! What an organization change that reaches every member's document costs: the index holds
//! `--users` generated users, then `--members` of them are re-indexed with a changed value (as
//! renaming an organization of that many members would re-index each member's document, whose
//! organization fields are copies), in batches of `--batch` per commit. Prints the time, users
//! per second and the commit count. A measurement for docs/ORGANIZATIONS.md, not a test.
//!
//!   cargo run --release --example org_rename_cost -- --users 300000 --members 50000

use std::sync::Arc;
use std::time::Instant;

use clerk_index::change::{Change, ChangeSource, UserChange};
use clerk_index::clerk::fake::Population;
use clerk_index::clerk::user_from_json;
use clerk_index::index::{IndexConfig, UserIndex};

fn arg(name: &str, default: usize) -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .map(|v| v.parse().expect("a number"))
        .unwrap_or(default)
}

fn main() {
    let users = arg("--users", 300_000);
    let members = arg("--members", 50_000).min(users);
    let batch = arg("--batch", 5_000);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async move {
        let dir = tempfile::tempdir().unwrap();
        let mut config = IndexConfig::new(dir.path());
        config.writer_memory_bytes = 256 << 20;
        let (index, task) = UserIndex::open(&config).unwrap();
        let (writer, thread) = task.spawn();
        let population = Population::new(users);
        let started = Instant::now();
        for chunk in (0..users).collect::<Vec<_>>().chunks(10_000) {
            let changes = chunk
                .iter()
                .map(|&i| {
                    let user = user_from_json(&population.user(i).to_string()).unwrap();
                    Change::User(UserChange::Upsert {
                        user: Arc::new(user),
                        source: ChangeSource::Backfill,
                    })
                })
                .collect();
            writer.apply(changes, None).await.unwrap();
        }
        println!(
            "indexed {users} users in {:.1} s",
            started.elapsed().as_secs_f64()
        );

        // The members: spread over the population, as an organization's members are.
        let step = users / members;
        let mut renamed: Vec<serde_json::Value> = (0..members)
            .map(|k| population.user(k * step))
            .collect();
        for user in &mut renamed {
            let updated = user["updated_at"].as_i64().unwrap() + 1;
            user["updated_at"] = updated.into();
            user["public_metadata"]["org_name"] = "Acme Corp Renamed".into();
        }
        let started = Instant::now();
        let mut commits = 0;
        for chunk in renamed.chunks(batch) {
            let changes = chunk
                .iter()
                .map(|json| {
                    let user = user_from_json(&json.to_string()).unwrap();
                    Change::User(UserChange::Upsert {
                        user: Arc::new(user),
                        source: ChangeSource::Webhook,
                    })
                })
                .collect();
            writer.apply(changes, None).await.unwrap();
            commits += 1;
        }
        let seconds = started.elapsed().as_secs_f64();
        println!(
            "re-indexed {members} of {users} users in {seconds:.2} s ({:.0} users/s, {commits} commits of {batch})",
            members as f64 / seconds
        );
        assert_eq!(index.snapshot().freshness.user_count, users as u64);
        drop(writer);
        thread.close().await.unwrap();
    });
}
