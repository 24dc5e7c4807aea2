//! A destination's delivery task. It reads its segments' committed events after its
//! delivered-through position, waits up to the batch delay for a batch to fill, POSTs it, and
//! on a 2xx saves the new position (so a crash at worst sends that batch again: at least once,
//! in sequence order, one request in flight). A failed request is retried with exponential
//! backoff and jitter (honouring `Retry-After`), the same batch under the same id, until it has
//! failed for the whole retry window; then the destination is failing until resumed. Events
//! evicted before delivery give the destination a gap; a resync sends its segments' members
//! as a snapshot and continues after it.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use rand::Rng;
use tokio::sync::Notify;
use tokio::sync::broadcast::error::RecvError;
use tokio_util::sync::CancellationToken;

use super::model::{Destination, DestinationError, State};
use super::payload::{Message, SnapshotPart, events_message, snapshot_message};
use super::service::{Destinations, Failure, Inner, Worker, lock};
use crate::clock::now_ms;
use crate::segments::{EventKind, SegmentError};

/// How often an idle task reads the shared events stream without being woken (cluster mode).
const SHARED_POLL: Duration = Duration::from_secs(1);

/// What the task does next.
enum Step {
    /// Work again at once.
    Again,
    /// Wait for a committed event (or a wake-up).
    Idle,
    /// Wait this long (or for a wake-up).
    Sleep(Duration),
}

/// A batch being delivered: kept across retries, so its id and contents stay the same.
struct Batch {
    message: Message,
    events: usize,
    through: u64,
    /// Segments whose deletion the batch carries: not followed once it is delivered.
    deleted: Vec<String>,
}

/// What one task remembers between steps.
#[derive(Default)]
struct Progress {
    batch: Option<Batch>,
    /// The first undelivered event and when the task first saw it (for the batch delay).
    first_seen: Option<(u64, Instant)>,
}

impl Destinations {
    /// Starts the delivery task of `name` unless it runs already (two tasks of one destination
    /// would send the same batch twice; in cluster mode a watched change and the start of a
    /// lease term may both ask for it).
    pub(super) fn spawn(&self, name: &str) {
        let mut workers = lock(&self.inner.workers);
        if workers.contains_key(name) {
            return;
        }
        let worker = Worker {
            wake: Arc::new(Notify::new()),
            stop: CancellationToken::new(),
        };
        let (wake, stop) = (worker.wake.clone(), worker.stop.clone());
        workers.insert(name.to_string(), worker);
        tokio::spawn(run(self.inner.clone(), name.to_string(), wake, stop));
    }
}

async fn run(inner: Arc<Inner>, name: String, wake: Arc<Notify>, stop: CancellationToken) {
    let mut live = inner.source.segments().subscribe();
    let mut progress = Progress::default();
    loop {
        let Some(destination) = lock(&inner.state).get(&name).cloned() else {
            return;
        };
        let next = step(&inner, &destination, &mut progress).await;
        let wait = match next {
            Step::Again => continue,
            // The shared stream's wake-ups are hints (a read may race the publish): look
            // again every second as well.
            Step::Idle if inner.source.is_shared() => Some(SHARED_POLL),
            Step::Idle => None,
            Step::Sleep(duration) => Some(duration),
        };
        tokio::select! {
            () = stop.cancelled() => return,
            () = inner.shutdown.cancelled() => return,
            () = wake.notified() => {}
            received = live.recv(), if wait.is_none() => {
                if matches!(received, Err(RecvError::Closed)) {
                    return;
                }
                // One look covers every event committed so far.
                while live.try_recv().is_ok() {}
            }
            () = tokio::time::sleep(wait.unwrap_or_default()), if wait.is_some() => {}
        }
    }
}

async fn step(inner: &Inner, destination: &Destination, progress: &mut Progress) -> Step {
    if destination.state != State::Active {
        progress.batch = None;
        return Step::Idle;
    }
    let now = now_ms();
    if let Some(at) = destination.next_attempt_ms
        && at > now
    {
        return Step::Sleep(Duration::from_millis((at - now) as u64));
    }
    if destination.resync {
        progress.batch = None;
        return resync(inner, destination).await;
    }
    if progress.batch.is_none() {
        match next_batch(inner, destination, progress).await {
            Ok(Some(batch)) => progress.batch = Some(batch),
            Ok(None) => return Step::Idle,
            Err(step) => return step,
        }
    }
    let batch = progress.batch.as_ref().expect("a batch is ready");
    match inner.send(destination, &batch.message).await {
        Ok(_) => {
            let batch = progress.batch.take().expect("a batch was sent");
            progress.first_seen = None;
            delivered(inner, &destination.name, &batch).await;
            Step::Again
        }
        Err(failure) => failed(inner, destination, failure).await,
    }
}

/// The next batch to send, `None` when there is nothing (yet), or what to do instead.
async fn next_batch(
    inner: &Inner,
    destination: &Destination,
    progress: &mut Progress,
) -> Result<Option<Batch>, Step> {
    let names: BTreeSet<String> = destination.segments.iter().cloned().collect();
    let after = destination.delivered_through;
    let behind_since = &inner.counters(&destination.name).behind_since_ms;
    let page = match (inner.source)
        .page(&names, after, destination.batch_size)
        .await
    {
        Ok(page) => page,
        Err(SegmentError::OutOfRange(message)) => {
            gap(inner, &destination.name, message).await;
            return Err(Step::Again);
        }
        Err(error) => {
            tracing::error!(destination = %destination.name, %error, "could not read the segment events to deliver");
            return Err(Step::Sleep(Duration::from_secs(1)));
        }
    };
    let Some(first) = page.events.first().map(|e| e.sequence) else {
        progress.first_seen = None;
        if page.through > after {
            // Nothing of its segments in between: move on (saved with the next delivery), and
            // look again (a read in cluster mode looks at a bounded number of messages).
            let through = page.through;
            let moved = |d: &mut Destination| {
                d.delivered_through = d.delivered_through.max(through);
                Ok(())
            };
            record(inner, &destination.name, false, moved).await;
            return Err(Step::Again);
        }
        behind_since.store(0, Ordering::Relaxed);
        return Ok(None);
    };
    let _ = behind_since.compare_exchange(0, now_ms(), Ordering::Relaxed, Ordering::Relaxed);
    if page.events.len() < destination.batch_size {
        let seen = match progress.first_seen {
            Some((sequence, at)) if sequence == first => at,
            _ => progress.first_seen.insert((first, Instant::now())).1,
        };
        let delay = Duration::from_millis(destination.batch_delay_ms);
        if seen.elapsed() < delay {
            return Err(Step::Sleep(delay - seen.elapsed()));
        }
    }
    let deleted = (page.events.iter())
        .filter(|e| e.kind == EventKind::SegmentDeleted)
        .map(|e| e.segment.clone())
        .collect();
    Ok(Some(Batch {
        message: events_message(&destination.name, &page.events, now_ms()),
        events: page.events.len(),
        through: page.through,
        deleted,
    }))
}

/// Changes a destination's delivery state; `save`: save it now (else it is saved with the next
/// change that is).
async fn record(
    inner: &Inner,
    name: &str,
    save: bool,
    change: impl Fn(&mut Destination) -> Result<(), DestinationError>,
) {
    if !save {
        if let Some(destination) = lock(&inner.state).get_mut(name) {
            let _ = change(destination);
        }
    } else if let Err(error) = inner.store.persist(&inner.state, name, change).await {
        // A destination deleted meanwhile has nothing to save.
        if !matches!(error, DestinationError::NotFound(_)) {
            tracing::error!(destination = %name, %error, "could not save a destination's delivery position; it is kept in memory");
            if let Some(destination) = lock(&inner.state).get_mut(name) {
                destination.last_error = Some(format!("saving its position: {error}"));
            }
        }
    }
    inner.update_hold();
}

async fn delivered(inner: &Inner, name: &str, batch: &Batch) {
    let counters = inner.counters(name);
    counters
        .delivered_events
        .fetch_add(batch.events as u64, Ordering::Relaxed);
    counters.delivered_requests.fetch_add(1, Ordering::Relaxed);
    let now = now_ms();
    let change = |d: &mut Destination| {
        d.delivered_through = d.delivered_through.max(batch.through);
        d.delivered_events += batch.events as u64;
        d.last_delivered_ms = Some(now);
        d.segments.retain(|s| !batch.deleted.contains(s));
        clear_failures(d);
        Ok(())
    };
    record(inner, name, true, change).await;
}

fn clear_failures(destination: &mut Destination) {
    destination.failed_attempts = 0;
    destination.failing_since_ms = None;
    destination.last_error = None;
    destination.next_attempt_ms = None;
}

/// The wait before retry number `attempt` (1 for the first retry): doubling from the initial
/// delay up to the most, each drawn between half and all of it.
pub(super) fn backoff(inner: &Inner, attempt: u32, retry_after: Option<Duration>) -> Duration {
    let config = &inner.config;
    let doubled = config
        .retry_initial_delay
        .saturating_mul(1u32 << attempt.saturating_sub(1).min(30));
    let ceiling = doubled.min(config.retry_max_delay);
    let drawn = ceiling.mul_f64(rand::rng().random_range(0.5..=1.0));
    match retry_after {
        Some(asked) => drawn.max(asked.min(config.retry_max_delay)),
        None => drawn,
    }
}

async fn failed(inner: &Inner, destination: &Destination, failure: Failure) -> Step {
    inner
        .counters(&destination.name)
        .failed_attempts
        .fetch_add(1, Ordering::Relaxed);
    let now = now_ms();
    let attempt = destination.failed_attempts + 1;
    let since = destination.failing_since_ms.unwrap_or(now);
    let given_up = now - since >= inner.config.failing_after.as_millis() as i64;
    let wait = backoff(inner, attempt, failure.retry_after);
    let change = |d: &mut Destination| {
        d.failed_attempts = attempt;
        d.failing_since_ms = Some(since);
        d.last_error = Some(failure.message.clone());
        if given_up {
            d.state = State::Failing;
            d.next_attempt_ms = None;
        } else {
            d.next_attempt_ms = Some(now + wait.as_millis() as i64);
        }
        Ok(())
    };
    record(inner, &destination.name, true, change).await;
    if given_up {
        tracing::error!(
            destination = %destination.name,
            attempts = attempt,
            error = %failure.message,
            "destination failing: deliveries failed for the whole retry window; resume it once the receiver is fixed"
        );
        return Step::Idle;
    }
    tracing::warn!(
        destination = %destination.name,
        attempt,
        status = failure.status,
        error = %failure.message,
        retry_in_ms = wait.as_millis() as u64,
        "delivery failed; retrying"
    );
    Step::Sleep(wait)
}

async fn gap(inner: &Inner, name: &str, message: String) {
    tracing::error!(destination = %name, %message, "destination has a gap: events it had not delivered were evicted; resync it");
    let change = |d: &mut Destination| {
        d.state = State::Gap;
        d.last_error = Some(format!("gap: {message}"));
        d.next_attempt_ms = None;
        Ok(())
    };
    record(inner, name, true, change).await;
}

/// Ids per snapshot request.
fn snapshot_part_size(destination: &Destination) -> usize {
    (destination.batch_size * 10).max(1_000)
}

/// Sends the members of the destination's segments, then continues after the snapshot. A
/// failed part starts the resync over (with a new snapshot) after the backoff.
async fn resync(inner: &Inner, destination: &Destination) -> Step {
    let names: BTreeSet<String> = destination.segments.iter().cloned().collect();
    let snapshot = match inner.source.snapshot(names).await {
        Ok(snapshot) => snapshot,
        Err(error) => {
            let error = DestinationError::from(error);
            tracing::error!(destination = %destination.name, %error, "could not take a snapshot to resync");
            return Step::Sleep(Duration::from_secs(1));
        }
    };
    let mut sent = 0u64;
    for (segment, ids) in &snapshot.segments {
        let chunks: Vec<&[String]> = match ids.is_empty() {
            true => vec![&[]],
            false => ids.chunks(snapshot_part_size(destination)).collect(),
        };
        for (part, user_ids) in chunks.iter().enumerate() {
            let message = snapshot_message(
                &SnapshotPart {
                    destination: &destination.name,
                    segment,
                    sequence: snapshot.sequence,
                    part,
                    last: part + 1 == chunks.len(),
                    user_ids,
                },
                now_ms(),
            );
            if let Err(failure) = inner.send(destination, &message).await {
                return failed(inner, destination, failure).await;
            }
            sent += user_ids.len() as u64;
        }
    }
    tracing::info!(destination = %destination.name, sequence = snapshot.sequence, members = sent, "destination resynced");
    let kept: Vec<String> = snapshot.segments.iter().map(|(s, _)| s.clone()).collect();
    let now = now_ms();
    let change = |d: &mut Destination| {
        d.resync = false;
        d.delivered_through = snapshot.sequence;
        d.last_delivered_ms = Some(now);
        d.segments.retain(|s| kept.contains(s));
        clear_failures(d);
        Ok(())
    };
    record(inner, &destination.name, true, change).await;
    Step::Again
}
