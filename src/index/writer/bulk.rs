//! Bulk loads (the backfill). While one runs, changes nobody waits for are committed by size
//! instead of every two seconds, and tantivy merges only small segments (those of commits that
//! waiters forced, such as webhooks arriving during the backfill). A commit holds as many users
//! as the writer's memory does ([`bulk_commit_size`]), split evenly over the load, so each
//! indexing thread writes a few large segments: at 1M users with the default 1 GiB, two commits
//! of 500k make the serving layout's four segments directly. The default policy merged the
//! growing index level by level (at 1M users ~18% of the backfill's CPU); 200k-user commits
//! then left ten segments whose final merge took a quarter of the load (~20 s of 80). At the end
//! the segments are merged once into the serving layout ([`IndexConfig::serving_segments`]
//! segments of about equal size, in parallel on tantivy's merge threads) when there are more
//! than that, and the default policy takes over.
//!
//! [`IndexConfig::serving_segments`]: super::super::config::IndexConfig::serving_segments

use tantivy::index::SegmentId;
use tantivy::indexer::{LogMergePolicy, MergePolicy, NoMergePolicy};
use tokio::sync::oneshot;

use super::super::config::IndexConfig;
use super::super::error::WriteError;
use super::{BulkAnswer, BulkStep, Command, IndexWriterTask, WriterHandle};

/// How many times the final merge is planned again when some of its merges failed to start
/// (a segment was still in a merge of small segments started before the bulk load ended).
const MERGE_ROUNDS: usize = 3;

impl WriterHandle {
    /// Enters bulk-load mode for about `expected` users, when known (see the module docs).
    /// Idempotent: a second call keeps the first one's commit size.
    pub async fn begin_bulk_load(&self, expected: Option<u64>) -> Result<(), WriteError> {
        self.bulk_step(BulkStep::Begin(expected)).await.map(drop)
    }

    /// Ends bulk-load mode: commits what is pending, merges the segments once into the serving
    /// layout and waits for the merges, then commits again so the merged segments are what
    /// queries read. A merge that fails is logged and left to the default policy (the users are
    /// committed either way); a commit that fails is returned.
    pub async fn finish_bulk_load(&self) -> Result<u64, WriteError> {
        let started = std::time::Instant::now();
        for round in 1..=MERGE_ROUNDS {
            let merges = self.bulk_step(BulkStep::Merge).await?;
            if merges.is_empty() {
                break;
            }
            let mut failed = 0;
            for merge in merges {
                if let Err(error) = merge.await {
                    failed += 1;
                    tracing::warn!(%error, round, "a merge after the bulk load failed");
                }
            }
            if failed == 0 {
                break;
            }
        }
        self.bulk_step(BulkStep::End).await?;
        let generation = self.flush().await?;
        tracing::info!(
            took_ms = started.elapsed().as_millis() as u64,
            "bulk load merged into its serving layout"
        );
        Ok(generation)
    }

    async fn bulk_step(&self, step: BulkStep) -> BulkAnswer {
        let (ack, answer) = oneshot::channel();
        self.commands
            .send(Command::Bulk { step, ack })
            .await
            .map_err(|_| WriteError::Stopped)?;
        answer.await.map_err(|_| WriteError::Stopped)?
    }
}

impl IndexWriterTask {
    /// Runs a bulk-load step on the writer thread.
    pub(super) fn bulk(&mut self, step: BulkStep, ack: oneshot::Sender<BulkAnswer>) {
        let answer = match step {
            BulkStep::Begin(expected) => {
                if self.bulk_load.is_none() {
                    let size = bulk_commit_size(&self.config, expected);
                    tracing::info!(
                        expected,
                        commit_changes = size,
                        "bulk load: committing by size"
                    );
                    self.bulk_load = Some(size);
                    self.writer
                        .set_merge_policy(small_segments_only(size, self.config.writer_threads));
                }
                Ok(Vec::new())
            }
            BulkStep::Merge => self.start_serving_merges(),
            BulkStep::End => {
                self.bulk_load = None;
                self.writer
                    .set_merge_policy(Box::new(LogMergePolicy::default()));
                Ok(Vec::new())
            }
        };
        let _ = ack.send(answer);
    }

    fn start_serving_merges(&mut self) -> BulkAnswer {
        self.writer.set_merge_policy(Box::new(NoMergePolicy));
        if self.pending_since.is_some() || !self.waiting.is_empty() {
            self.commit();
        }
        if let Some(pause) = self.stats.paused() {
            return Err(WriteError::Paused(pause.reason.into()));
        }
        let metas = self
            .writer
            .index()
            .searchable_segment_metas()
            .map_err(WriteError::commit)?;
        let sizes: Vec<(SegmentId, u64)> = metas
            .iter()
            .map(|meta| (meta.id(), u64::from(meta.num_docs())))
            .collect();
        let groups = serving_groups(&sizes, self.config.serving_segments);
        tracing::info!(
            segments = sizes.len(),
            merges = groups.len(),
            target = self.config.serving_segments,
            "merging the bulk load into its serving layout"
        );
        Ok(groups.iter().map(|ids| self.writer.merge(ids)).collect())
    }
}

/// What one user takes in tantivy's indexing buffers (postings, columns, terms, doc store):
/// tantivy flushed its 127 MB per-thread buffer at ~98.8k generated users (1.29 KB each),
/// rounded up for users with more metadata. A larger user only makes tantivy flush a thread's
/// segment before the commit: one more segment to merge at the end, no more memory.
const BULK_BYTES_PER_USER: usize = 1536;

/// The changes a bulk load commits at a time: as many users as the writer's memory holds,
/// spread evenly over the expected load (1M users in a 1 GiB buffer, which holds 699k: two
/// commits of 500k, not 699k and 301k), never fewer than
/// [`IndexConfig::bulk_commit_changes`], which is also the size when the load's size is unknown.
pub(super) fn bulk_commit_size(config: &IndexConfig, expected: Option<u64>) -> usize {
    let floor = config.bulk_commit_changes.max(1);
    let Some(expected) = expected.filter(|&n| n > 0) else {
        return floor;
    };
    let expected = usize::try_from(expected).unwrap_or(usize::MAX);
    let fits = (config.writer_memory_bytes / BULK_BYTES_PER_USER).max(floor);
    let commits = expected.div_ceil(fits);
    expected.div_ceil(commits).max(floor)
}

/// During a bulk load: tantivy's log policy over segments below a quarter of what one
/// indexing thread writes between two size commits.
fn small_segments_only(commit_changes: usize, writer_threads: usize) -> Box<dyn MergePolicy> {
    let mut policy = LogMergePolicy::default();
    policy.set_max_docs_before_merge(commit_changes / (4 * writer_threads.max(1)));
    Box::new(policy)
}

/// Splits segments (with their live doc counts) into at most `target` groups of about equal
/// docs, largest first into the lightest group; returns the groups of two or more (a segment
/// alone stays as it is). Nothing is merged when there are no more segments than `target`.
pub(super) fn serving_groups<T: Copy>(segments: &[(T, u64)], target: usize) -> Vec<Vec<T>> {
    let target = target.max(1);
    if segments.len() <= target {
        return Vec::new();
    }
    let mut by_size: Vec<&(T, u64)> = segments.iter().collect();
    by_size.sort_by_key(|(_, docs)| std::cmp::Reverse(*docs));
    let mut groups: Vec<(u64, Vec<T>)> = vec![(0, Vec::new()); target];
    for &(id, docs) in by_size {
        let lightest = (groups.iter_mut())
            .min_by_key(|(total, _)| *total)
            .expect("target >= 1");
        lightest.0 += docs;
        lightest.1.push(id);
    }
    groups
        .into_iter()
        .filter(|(_, ids)| ids.len() > 1)
        .map(|(_, ids)| ids)
        .collect()
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::super::{ChangeObserver, IndexWriterTask, Previous, WriteError};
    use super::{bulk_commit_size, serving_groups};
    use crate::change::{Change, ChangeSource, UserChange};
    use crate::index::config::IndexConfig;
    use crate::index::sandbox::{Sandbox, population_users};
    use crate::user::User;

    fn upserts(users: &[Arc<User>]) -> Vec<Change> {
        (users.iter())
            .map(|user| {
                Change::User(UserChange::Upsert {
                    user: user.clone(),
                    source: ChangeSource::Backfill,
                })
            })
            .collect()
    }

    fn segments(sandbox: &Sandbox) -> usize {
        sandbox.index.snapshot().searcher.segment_readers().len()
    }

    async fn users_reach(sandbox: &Sandbox, users: u64) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while sandbox.index.snapshot().freshness.user_count < users {
            assert!(
                tokio::time::Instant::now() < deadline,
                "{users} users never committed"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    #[test]
    fn segments_are_grouped_into_the_target_count_by_size() {
        let sizes = [(1, 100), (2, 90), (3, 50), (4, 40), (5, 10), (6, 5)];
        let mut groups = serving_groups(&sizes, 2);
        groups.iter_mut().for_each(|group| group.sort());
        groups.sort();
        // Largest first into the lightest group: 100 | 90, 50 | 40 ... balanced at 150/145.
        assert_eq!(groups, vec![vec![1, 4, 5], vec![2, 3, 6]]);
        assert_eq!(serving_groups(&sizes, 6), Vec::<Vec<i32>>::new());
        assert_eq!(serving_groups(&sizes, 0), vec![vec![1, 2, 3, 4, 5, 6]]);
        // Five segments into four groups: only the two smallest are merged.
        let groups = serving_groups(&sizes[..5], 4);
        assert_eq!(groups, vec![vec![4, 5]]);
    }

    #[test]
    fn a_bulk_commit_holds_what_the_writer_memory_does_spread_evenly_over_the_load() {
        let mut config = IndexConfig::new("unused");
        config.writer_memory_bytes = 1 << 30;
        config.bulk_commit_changes = 200_000;
        // 1 GiB holds 699,050 users: 1M in two commits of 500k, not 699k and 301k.
        assert_eq!(bulk_commit_size(&config, Some(1_000_000)), 500_000);
        assert_eq!(bulk_commit_size(&config, Some(699_050)), 699_050);
        assert_eq!(bulk_commit_size(&config, Some(699_051)), 349_526);
        // 10M in 15 commits of 666,667.
        assert_eq!(bulk_commit_size(&config, Some(10_000_000)), 666_667);
        // Never fewer than the floor, which is also the size of a load of unknown size.
        assert_eq!(bulk_commit_size(&config, Some(5_000)), 200_000);
        assert_eq!(bulk_commit_size(&config, None), 200_000);
        assert_eq!(bulk_commit_size(&config, Some(0)), 200_000);
        // A buffer smaller than the floor commits at the floor (tantivy flushes a thread's
        // segment early when its share of the buffer fills).
        config.writer_memory_bytes = 64 << 20;
        assert_eq!(bulk_commit_size(&config, Some(1_000_000)), 200_000);
        assert_eq!(bulk_commit_size(&config, Some(u64::MAX)), 200_000);
    }

    /// Commits of 5 as usual, of at least 40 during a bulk load, and none by age.
    fn small_commits(config: &mut IndexConfig) {
        config.commit_max_changes = 5;
        config.bulk_commit_changes = 40;
        config.bulk_commit_interval = Duration::from_secs(3600);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_bulk_load_of_known_size_commits_once_when_the_writer_memory_holds_it() {
        let sandbox = Sandbox::configured(small_commits);
        let writer = &sandbox.writer;
        let users = population_users(90);
        writer.begin_bulk_load(Some(90)).await.unwrap();
        // 85 of the 90 are past the floor of 40 and still pending: the load is one commit.
        for page in users[..85].chunks(5) {
            writer.submit(upserts(page), None).await.unwrap();
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(sandbox.index.snapshot().freshness.user_count, 0);
        writer.submit(upserts(&users[85..]), None).await.unwrap();
        users_reach(&sandbox, 90).await;
        writer.finish_bulk_load().await.unwrap();
        assert_eq!(sandbox.index.snapshot().freshness.user_count, 90);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_bulk_load_commits_by_size_and_ends_merged_into_the_serving_layout() {
        let sandbox = Sandbox::configured(|config| {
            small_commits(config);
            config.serving_segments = 2;
        });
        let writer = &sandbox.writer;
        let users = population_users(245);
        writer.begin_bulk_load(None).await.unwrap();
        // Pages of five are committed 40 at a time, not 5 (the usual limit), and what is short
        // of 40 waits: the bulk interval is an hour.
        for page in users[..45].chunks(5) {
            writer.submit(upserts(page), None).await.unwrap();
        }
        users_reach(&sandbox, 40).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(sandbox.index.snapshot().freshness.user_count, 40);
        // A waiter (a webhook during the backfill) is committed at once, with what is pending.
        writer.apply(upserts(&users[45..50]), None).await.unwrap();
        assert_eq!(sandbox.index.snapshot().freshness.user_count, 50);
        for page in users[50..].chunks(5) {
            writer.submit(upserts(page), None).await.unwrap();
        }
        users_reach(&sandbox, 210).await;
        assert!(segments(&sandbox) >= 6, "one segment per commit");

        writer.finish_bulk_load().await.unwrap();
        let snapshot = sandbox.index.snapshot();
        assert_eq!(snapshot.freshness.user_count, 245);
        assert_eq!(segments(&sandbox), 2);
        // Back to the usual limits: five pending changes are a commit's worth again.
        writer.submit(upserts(&users[..5]), None).await.unwrap();
        let generation = snapshot.freshness.generation;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while sandbox.index.snapshot().freshness.generation == generation {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the usual limits are back"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Wants previous states, as saved segments do: pending users are then kept whole.
    struct WantsPrevious;

    impl ChangeObserver for WantsPrevious {
        fn wants_previous(&self) -> bool {
            true
        }
        fn observe(&mut self, _: Previous, _: &UserChange) {}
        fn prepare_commit(&mut self) -> Result<u64, WriteError> {
            Ok(0)
        }
        fn committed(&mut self) {}
        fn rolled_back(&mut self) {}
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn users_kept_whole_are_committed_at_the_usual_limits_during_a_bulk_load() {
        let dir = tempfile::tempdir().unwrap();
        let attach = |_: &_, task: IndexWriterTask| task.with_observer(Box::new(WantsPrevious));
        let sandbox = Sandbox::open_at(dir.path(), small_commits, attach);
        let writer = &sandbox.writer;
        writer.begin_bulk_load(None).await.unwrap();
        // Each user is held whole until its commit: five at a time, not forty.
        let users = population_users(10);
        for page in users.chunks(5) {
            writer.submit(upserts(page), None).await.unwrap();
        }
        users_reach(&sandbox, 10).await;
        writer.finish_bulk_load().await.unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_bulk_load_ends_cleanly_with_nothing_to_merge() {
        let sandbox = Sandbox::configured(|config| config.serving_segments = 4);
        let writer = &sandbox.writer;
        writer.begin_bulk_load(None).await.unwrap();
        writer.begin_bulk_load(None).await.unwrap();
        writer.finish_bulk_load().await.unwrap();
        sandbox
            .upsert(&population_users(3), ChangeSource::Backfill)
            .await;
        writer.begin_bulk_load(None).await.unwrap();
        writer.finish_bulk_load().await.unwrap();
        assert_eq!(sandbox.index.snapshot().freshness.user_count, 3);
        assert_eq!(segments(&sandbox), 1);
    }
}
