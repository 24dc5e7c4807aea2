//! Cluster mode: every replica mirrors the cluster's destinations (so any replica lists them
//! and takes edits), and the replica holding the sync lease runs their delivery tasks, woken by
//! each event published to the shared stream. When the lease moves, the new holder starts from
//! the positions saved in the cluster: at most the batch in flight is sent again.

use std::sync::atomic::Ordering;
use std::time::Duration;

use futures_util::{FutureExt, StreamExt};
use tokio_util::sync::CancellationToken;

use super::service::{Destinations, lock};
use super::store::Store;

/// At most one wake-up of the delivery tasks per this interval: each wake-up is a read of the
/// stream per destination, and events are published far faster than that at busy times.
const WAKE_EVERY: Duration = Duration::from_millis(50);

impl Destinations {
    /// Cluster mode: mirrors the cluster's destinations into this replica until cancelled,
    /// starting and stopping delivery tasks while this replica delivers.
    pub async fn follow_shared(self, cancel: CancellationToken) {
        let Some(bucket) = self.inner.store.bucket().cloned() else {
            return;
        };
        loop {
            match bucket.watch().await {
                Ok(mut changes) => loop {
                    let change = tokio::select! {
                        _ = cancel.cancelled() => return,
                        change = changes.next() => change,
                    };
                    match change {
                        Some(Ok((name, value, revision))) => {
                            self.mirror(&name, value.as_deref(), revision)
                        }
                        Some(Err(error)) => {
                            tracing::warn!(%error, "lost the cluster's destinations; watching again");
                            break;
                        }
                        None => break,
                    }
                },
                Err(error) => {
                    tracing::warn!(%error, "cannot watch the cluster's destinations; retrying")
                }
            }
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
        }
    }

    /// One destination as the cluster holds it at `revision` (`None`: deleted).
    fn mirror(&self, name: &str, value: Option<&[u8]>, revision: u64) {
        let store = &self.inner.store;
        let Some(bytes) = value else {
            let removed = store.apply(&self.inner.state, name, revision, None, false);
            // Its task too, also when a save that found it gone removed it from the list.
            if removed || !lock(&self.inner.state).contains_key(name) {
                self.inner.forget(name);
            }
            return;
        };
        let destination = match Store::decode(name, bytes) {
            Ok(destination) => destination,
            Err(error) => {
                tracing::error!(destination = %name, %error, "a destination in the cluster does not parse; ignored");
                return;
            }
        };
        if !store.apply(&self.inner.state, name, revision, Some(destination), false) {
            return;
        }
        let running = lock(&self.inner.workers)
            .get(name)
            .map(|worker| worker.wake.clone());
        match running {
            Some(wake) => wake.notify_one(),
            None if self.inner.delivering.load(Ordering::Relaxed) => self.spawn(name),
            None => {}
        }
    }

    /// Cluster mode: runs the delivery tasks until `term` ends (the sync lease is lost or the
    /// process stops), woken by every event published to the shared stream.
    pub async fn deliver_during(&self, term: CancellationToken) {
        let Some(bucket) = self.inner.store.bucket().cloned() else {
            return;
        };
        self.inner.delivering.store(true, Ordering::Relaxed);
        let names: Vec<String> = lock(&self.inner.state).keys().cloned().collect();
        for name in &names {
            self.spawn(name);
        }
        tracing::info!(
            destinations = names.len(),
            "this replica delivers the destinations"
        );
        let mut published = None;
        loop {
            if published.is_none() {
                match bucket.subscribe_events().await {
                    Ok(subscriber) => published = Some(subscriber),
                    Err(error) => {
                        tracing::warn!(%error, "cannot follow the segment events; delivery tasks poll instead")
                    }
                }
            }
            let next = async {
                match published.as_mut() {
                    Some(subscriber) => subscriber.next().await.is_some(),
                    None => {
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        true
                    }
                }
            };
            tokio::select! {
                _ = term.cancelled() => break,
                _ = self.inner.shutdown.cancelled() => break,
                open = next => {
                    if !open {
                        published = None;
                    }
                    for worker in lock(&self.inner.workers).values() {
                        worker.wake.notify_one();
                    }
                }
            }
            // What is published meanwhile is covered by the reads this wake-up causes.
            tokio::select! {
                _ = term.cancelled() => break,
                _ = self.inner.shutdown.cancelled() => break,
                _ = tokio::time::sleep(WAKE_EVERY) => {}
            }
            if let Some(subscriber) = published.as_mut() {
                while let Some(Some(_)) = subscriber.next().now_or_never() {}
            }
        }
        self.inner.delivering.store(false, Ordering::Relaxed);
        for (_, worker) in lock(&self.inner.workers).drain() {
            worker.stop.cancel();
        }
        tracing::info!("this replica no longer delivers the destinations");
    }
}
