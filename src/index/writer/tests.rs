//! A failed commit rolls back, pauses the writer until a retry commits, and makes producers
//! that streamed changes without waiting start again from the committed state. The failure is
//! injected through the observer, which takes part in every commit.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use super::{Change, ChangeObserver, Checkpoint, Previous, UserChange, WriteError};
use crate::change::ChangeSource;
use crate::index::sandbox::{Sandbox, population_users};
use crate::user::User;

/// Fails every commit while `fail` is set, as a full disk would.
struct FailingObserver {
    fail: Arc<AtomicBool>,
}

impl ChangeObserver for FailingObserver {
    fn wants_previous(&self) -> bool {
        false
    }
    fn observe(&mut self, _: Previous, _: &UserChange) {}
    fn prepare_commit(&mut self) -> Result<u64, WriteError> {
        match self.fail.load(Ordering::SeqCst) {
            true => Err(WriteError::commit(std::io::Error::other(
                "No space left on device",
            ))),
            false => Ok(0),
        }
    }
    fn committed(&mut self) {}
    fn rolled_back(&mut self) {}
}

/// A sandbox whose commits fail while the returned flag is set (starting at `failing`).
fn failing_sandbox(failing: bool) -> (Sandbox, Arc<AtomicBool>, tempfile::TempDir) {
    let fail = Arc::new(AtomicBool::new(failing));
    let observer = FailingObserver { fail: fail.clone() };
    let dir = tempfile::tempdir().unwrap();
    let sandbox = Sandbox::open_at(
        dir.path(),
        |_| {},
        |_, task| task.with_observer(Box::new(observer)),
    );
    (sandbox, fail, dir)
}

fn upsert(user: &Arc<User>) -> Vec<Change> {
    vec![Change::User(UserChange::Upsert {
        user: user.clone(),
        source: ChangeSource::Backfill,
    })]
}

fn checkpoint(step: u64, epoch: u64) -> Option<Checkpoint> {
    Some(Checkpoint {
        state: serde_json::json!({ "step": step }),
        epoch,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_commit_pauses_writes_until_a_retry_commits_and_loses_nothing_acknowledged() {
    let (sandbox, fail, _dir) = failing_sandbox(false);
    let users = population_users(5);
    let writer = &sandbox.writer;
    writer
        .apply(upsert(&users[0]), checkpoint(1, 0))
        .await
        .unwrap();
    assert_eq!(writer.losses(), 0);

    // A producer streams a change with its checkpoint, then the commit fails.
    fail.store(true, Ordering::SeqCst);
    writer
        .submit(upsert(&users[1]), checkpoint(2, 0))
        .await
        .unwrap();
    let failed = writer.apply(upsert(&users[2]), None).await.unwrap_err();
    assert!(failed.to_string().contains("No space left"), "{failed}");
    assert_eq!(writer.losses(), 1, "the streamed change was lost");
    let stats = writer.stats();
    assert_eq!(stats.commit_failures.load(Ordering::Relaxed), 1);
    let pause = stats.paused().expect("writes are paused");
    assert!(pause.reason.contains("No space left"), "{pause:?}");
    // While paused, writes are refused at once and reads serve the last commit.
    let refused = writer.apply(upsert(&users[3]), None).await.unwrap_err();
    assert!(matches!(refused, WriteError::Paused(_)), "{refused:?}");
    let snapshot = sandbox.index.snapshot();
    assert_eq!(snapshot.freshness.user_count, 1);
    assert_eq!(snapshot.sync_state, serde_json::json!({ "step": 1 }));

    // Space returns: a retry commits by itself and writes resume.
    fail.store(false, Ordering::SeqCst);
    for _ in 0..100 {
        if stats.paused().is_none() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(stats.paused().is_none(), "the retry did not resume writes");
    // The failed batch's checkpoint did not come back with the retry.
    let snapshot = sandbox.index.snapshot();
    assert_eq!(snapshot.sync_state, serde_json::json!({ "step": 1 }));
    // The producer's old epoch is refused, queued or waited for; a fresh one is taken.
    let lost = writer.submit(upsert(&users[4]), checkpoint(3, 0)).await;
    assert!(matches!(lost, Err(WriteError::Lost)), "{lost:?}");
    let lost = writer.apply(upsert(&users[4]), checkpoint(3, 0)).await;
    assert!(matches!(lost, Err(WriteError::Lost)), "{lost:?}");
    let epoch = writer.losses();
    writer
        .apply(upsert(&users[1]), checkpoint(2, epoch))
        .await
        .unwrap();
    writer.apply(upsert(&users[2]), None).await.unwrap();
    let snapshot = sandbox.index.snapshot();
    assert_eq!(snapshot.sync_state, serde_json::json!({ "step": 2 }));
    for (i, user) in users.iter().enumerate() {
        let held = snapshot.get_raw_json(&user.id).unwrap().is_some();
        assert_eq!(held, i < 3, "user {i}");
    }
    // A close commits and the reopened index holds the same.
    let reopened = sandbox.reopen().await;
    let snapshot = reopened.index.snapshot();
    assert_eq!(snapshot.freshness.user_count, 3);
    assert_eq!(snapshot.sync_state, serde_json::json!({ "step": 2 }));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_streamed_while_paused_are_counted_as_lost() {
    let (sandbox, fail, _dir) = failing_sandbox(true);
    let users = population_users(2);
    let writer = &sandbox.writer;
    // The first failure holds only a waited-for change: nothing streamed is lost.
    writer.apply(upsert(&users[0]), None).await.unwrap_err();
    assert_eq!(writer.losses(), 0);
    // A streamed change that raced the pause into the queue is dropped and counted.
    // Past the handle's own check, as a submit sent just before the pause began would be.
    let command = super::Command::Apply {
        changes: upsert(&users[1]),
        checkpoint: checkpoint(1, 0),
        ack: None,
    };
    assert!(writer.commands.send(command).await.is_ok());
    for _ in 0..100 {
        if writer.losses() == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(writer.losses(), 1);
    fail.store(false, Ordering::SeqCst);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_producer_faster_than_the_writer_still_gets_a_commit_every_commit_max_changes() {
    let sandbox = Sandbox::configured(|config| {
        config.commit_max_changes = 50;
        config.commit_interval = Duration::from_secs(3_600);
    });
    let users = population_users(2_000);
    // Queued without waiting: the queue stays full while the writer applies, so it never
    // finds it empty; what is pending must still be committed (and freed) as it goes.
    for chunk in users.chunks(10) {
        let changes = (chunk.iter())
            .map(|user| {
                Change::User(UserChange::Upsert {
                    user: user.clone(),
                    source: ChangeSource::Backfill,
                })
            })
            .collect();
        sandbox.writer.submit(changes, None).await.unwrap();
    }
    let stats = sandbox.writer.stats().clone();
    for _ in 0..400 {
        if stats.applied.load(Ordering::Relaxed) == 2_000 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(stats.applied.load(Ordering::Relaxed), 2_000);
    let commits = stats.commits.load(Ordering::Relaxed);
    assert!(
        commits >= 2_000 / 50 - 1,
        "{commits} commits for 2,000 changes"
    );
}
