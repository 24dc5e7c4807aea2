//! The destinations a caller manages: create, list, pause, resume, resync, rotate the secret,
//! test, delete. Each destination has a delivery task (`deliver.rs`); this half keeps the
//! definitions and positions, saves them, and holds the segment log's retention back to the
//! slowest one.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::address::Policy;
use super::model::{
    Destination, DestinationError, DestinationsConfig, SealedSecret, Spec, State, Update,
};
use super::payload::{Message, new_secret, signature, test_message};
use super::source::Source;
use super::store::{Store, hold_of};
use crate::clock::now_ms;
use crate::segments::{Segments, name_problem};

/// Counters of one destination since start-up (for metrics).
#[derive(Debug, Default)]
pub struct Counters {
    pub delivered_events: AtomicU64,
    pub delivered_requests: AtomicU64,
    pub failed_attempts: AtomicU64,
    /// Cluster mode: when the delivering task first found it behind the stream (0: caught up).
    pub behind_since_ms: AtomicI64,
}

/// A running delivery task's controls.
pub(super) struct Worker {
    pub(super) wake: Arc<Notify>,
    pub(super) stop: CancellationToken,
}

pub(super) struct Inner {
    pub(super) source: Source,
    pub(super) config: DestinationsConfig,
    pub(super) policy: Policy,
    pub(super) store: Store,
    pub(super) client: reqwest::Client,
    pub(super) state: Mutex<BTreeMap<String, Destination>>,
    pub(super) workers: Mutex<HashMap<String, Worker>>,
    pub(super) counters: Mutex<HashMap<String, Arc<Counters>>>,
    pub(super) shutdown: CancellationToken,
    /// Whether this process runs the delivery tasks: always in single mode; in cluster mode
    /// while it holds the sync lease (`Destinations::deliver_during`).
    pub(super) delivering: AtomicBool,
}

/// What a test request got back.
#[derive(Debug, Clone, PartialEq)]
pub struct TestResult {
    /// The HTTP status, 0 when no response came.
    pub status: u16,
    pub latency: Duration,
    pub error: Option<String>,
}

/// A spec's parts, checked.
struct Checked {
    url: reqwest::Url,
    segments: Vec<String>,
    batch_size: usize,
    batch_delay_ms: u64,
}

/// The destinations and their delivery tasks.
#[derive(Clone)]
pub struct Destinations {
    pub(super) inner: Arc<Inner>,
}

pub(super) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Destinations {
    /// Starts a delivery task for each saved destination. `saved` comes from
    /// [`super::store::load`] (read before the segment log, whose retention it holds). In
    /// cluster mode (a shared `store`) the destinations come from the cluster
    /// ([`Destinations::follow_shared`]) and deliver from the shared events stream while this
    /// replica holds the sync lease ([`Destinations::deliver_during`]).
    pub fn start(
        segments: Segments,
        config: DestinationsConfig,
        store: Store,
        saved: Vec<Destination>,
        shutdown: CancellationToken,
    ) -> Result<Destinations, DestinationError> {
        let source = match store.bucket() {
            None => Source::Local(segments),
            Some(bucket) => Source::shared(segments, bucket.clone()),
        };
        let delivering = !source.is_shared();
        let policy = Policy {
            allow_private: config.allow_private,
            allow_http: config.allow_http,
        };
        let client = reqwest::Client::builder()
            .dns_resolver(policy.resolver())
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(config.request_timeout.min(Duration::from_secs(5)))
            .timeout(config.request_timeout)
            .user_agent(concat!("clerk-index/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| DestinationError::FailedPrecondition(format!("http client: {e}")))?;
        let destinations = Destinations {
            inner: Arc::new(Inner {
                source,
                config,
                policy,
                store,
                client,
                state: Mutex::new(saved.into_iter().map(|d| (d.name.clone(), d)).collect()),
                workers: Mutex::new(HashMap::new()),
                counters: Mutex::new(HashMap::new()),
                shutdown,
                delivering: AtomicBool::new(delivering),
            }),
        };
        destinations.inner.update_hold();
        if delivering {
            let names: Vec<String> = lock(&destinations.inner.state).keys().cloned().collect();
            for name in names {
                destinations.spawn(&name);
            }
        }
        Ok(destinations)
    }

    /// How long a batch waits for more when a caller does not say.
    pub fn default_batch_delay(&self) -> Duration {
        self.inner.config.default_batch_delay
    }

    pub fn list(&self) -> Vec<Destination> {
        lock(&self.inner.state).values().cloned().collect()
    }

    pub fn get(&self, name: &str) -> Result<Destination, DestinationError> {
        lock(&self.inner.state)
            .get(name)
            .cloned()
            .ok_or_else(|| DestinationError::NotFound(name.to_string()))
    }

    /// Counters of each destination since start-up.
    pub fn counters(&self) -> Vec<(String, Arc<Counters>)> {
        let names: Vec<String> = lock(&self.inner.state).keys().cloned().collect();
        names
            .into_iter()
            .map(|name| {
                let counters = self.inner.counters(&name);
                (name, counters)
            })
            .collect()
    }

    /// A spec's URL, segments and batching, checked; the defaults filled in.
    fn checked(&self, spec: &Spec) -> Result<Checked, DestinationError> {
        let config = &self.inner.config;
        let url = self.inner.policy.check_url(&spec.url)?;
        let segments: BTreeSet<String> = spec.segments.iter().cloned().collect();
        if segments.is_empty() {
            return Err(DestinationError::invalid(
                "segments",
                "a destination follows at least one segment",
            ));
        }
        if segments.len() > config.max_segments_per_destination {
            return Err(DestinationError::invalid(
                "segments",
                format!(
                    "{} segments given; a destination follows at most {}",
                    segments.len(),
                    config.max_segments_per_destination
                ),
            ));
        }
        for name in &segments {
            self.inner.source.segments().get(name)?;
        }
        let batch_size = match spec.batch_size {
            0 => config.default_batch_size,
            n if n > config.max_batch_size => {
                return Err(DestinationError::invalid(
                    "batch_size",
                    format!(
                        "batch_size {n} is above the most, {}",
                        config.max_batch_size
                    ),
                ));
            }
            n => n,
        };
        let batch_delay = spec.batch_delay.unwrap_or(config.default_batch_delay);
        if batch_delay > config.max_batch_delay {
            return Err(DestinationError::invalid(
                "batch_delay",
                format!(
                    "batch_delay {batch_delay:?} is above the most, {:?}",
                    config.max_batch_delay
                ),
            ));
        }
        Ok(Checked {
            url,
            segments: segments.into_iter().collect(),
            batch_size,
            batch_delay_ms: batch_delay.as_millis() as u64,
        })
    }

    /// Creates a destination delivering from now on; returns it with its signing secret (the
    /// only time the secret is shown).
    pub async fn create(&self, spec: Spec) -> Result<(Destination, String), DestinationError> {
        let config = &self.inner.config;
        if let Some(problem) = name_problem("destination", &spec.name) {
            return Err(DestinationError::invalid("name", problem));
        }
        let Checked {
            url,
            segments,
            batch_size,
            batch_delay_ms,
        } = self.checked(&spec)?;
        let secret = new_secret();
        let sealed = self.inner.store.seal(&spec.name, &secret, None)?;
        let now = now_ms();
        let destination = Destination {
            name: spec.name.clone(),
            url: url.to_string(),
            segments,
            batch_size,
            batch_delay_ms,
            created_ms: now,
            updated_ms: now,
            state: State::Active,
            delivered_through: self.inner.source.head().await?,
            delivered_events: 0,
            last_delivered_ms: None,
            failed_attempts: 0,
            failing_since_ms: None,
            last_error: None,
            next_attempt_ms: None,
            resync: false,
            secrets: vec![sealed],
        };
        (self.inner.store)
            .insert(&self.inner.state, &destination, config.max_destinations)
            .await?;
        self.inner.update_hold();
        if self.inner.delivering.load(Ordering::Relaxed) {
            self.spawn(&spec.name);
        }
        // The host only: a query may hold the receiver's token.
        let host = url.host_str().unwrap_or_default();
        tracing::info!(destination = %spec.name, %host, "destination created");
        Ok((destination, secret))
    }

    /// Changes what `update` sets (the URL, the segments followed, the batching) and keeps the
    /// rest, its position and its secrets. A new URL starts its retries over.
    pub async fn update(
        &self,
        name: &str,
        update: Update,
    ) -> Result<Destination, DestinationError> {
        let current = self.get(name)?;
        let spec = Spec {
            name: name.to_string(),
            url: update.url.unwrap_or(current.url.clone()),
            segments: update.segments.unwrap_or(current.segments.clone()),
            batch_size: update.batch_size.unwrap_or(current.batch_size),
            batch_delay: Some(
                (update.batch_delay).unwrap_or(Duration::from_millis(current.batch_delay_ms)),
            ),
        };
        let checked = self.checked(&spec)?;
        let url = checked.url.to_string();
        self.inner
            .change(name, |d| {
                if d.url != url {
                    d.failed_attempts = 0;
                    d.failing_since_ms = None;
                    d.last_error = None;
                    d.next_attempt_ms = None;
                }
                d.url = url.clone();
                d.segments = checked.segments.clone();
                d.batch_size = checked.batch_size;
                d.batch_delay_ms = checked.batch_delay_ms;
                Ok(())
            })
            .await
    }

    /// Stops delivering until resumed (retention is still held for it, up to the cap).
    pub async fn pause(&self, name: &str) -> Result<Destination, DestinationError> {
        self.inner
            .change(name, |d| {
                d.state = State::Paused;
                d.next_attempt_ms = None;
                Ok(())
            })
            .await
    }

    /// Delivers again from where it stopped (a paused or failing destination).
    pub async fn resume(&self, name: &str) -> Result<Destination, DestinationError> {
        self.inner.change(name, |d| {
            if d.state == State::Gap {
                return Err(DestinationError::FailedPrecondition(format!(
                    "destination {:?} has a gap: events it had not delivered were evicted; resync it",
                    d.name
                )));
            }
            d.state = State::Active;
            d.failed_attempts = 0;
            d.failing_since_ms = None;
            d.next_attempt_ms = None;
            Ok(())
        })
        .await
    }

    /// Sends the members of its segments as a snapshot, then the events after it; resumes it.
    pub async fn resync(&self, name: &str) -> Result<Destination, DestinationError> {
        self.inner
            .change(name, |d| {
                d.resync = true;
                d.state = State::Active;
                d.failed_attempts = 0;
                d.failing_since_ms = None;
                d.next_attempt_ms = None;
                Ok(())
            })
            .await
    }

    /// A new signing secret; the previous one signs as well for the rotation overlap.
    pub async fn rotate_secret(
        &self,
        name: &str,
    ) -> Result<(Destination, String), DestinationError> {
        let secret = new_secret();
        let sealed = self.inner.store.seal(name, &secret, None)?;
        let overlap = self.inner.config.rotation_overlap.as_millis() as i64;
        let change = |d: &mut Destination| {
            let now = now_ms();
            d.secrets.retain(|s| s.expires_ms.is_none_or(|at| at > now));
            for old in &mut d.secrets {
                old.expires_ms = Some(old.expires_ms.unwrap_or(now + overlap).min(now + overlap));
            }
            d.secrets.insert(0, sealed.clone());
            Ok(())
        };
        let destination = self.inner.change(name, change).await?;
        Ok((destination, secret))
    }

    pub async fn delete(&self, name: &str) -> Result<(), DestinationError> {
        self.inner.store.remove(&self.inner.state, name).await?;
        self.inner.forget(name);
        tracing::info!(destination = %name, "destination deleted");
        Ok(())
    }

    /// Sends one signed test request (no events) now, without retries.
    pub async fn test(&self, name: &str) -> Result<TestResult, DestinationError> {
        let destination = self.get(name)?;
        let message = test_message(name, now_ms());
        let started = Instant::now();
        let answer = self.inner.send(&destination, &message).await;
        let latency = started.elapsed();
        Ok(match answer {
            Ok(status) => TestResult {
                status,
                latency,
                error: None,
            },
            Err(failure) => TestResult {
                status: failure.status,
                latency,
                error: Some(failure.message),
            },
        })
    }

    /// How many undelivered events of its segments each destination has, and how old the
    /// oldest is (seconds).
    pub fn lag(&self, destination: &Destination) -> (u64, f64) {
        if self.inner.source.is_shared() && !self.inner.delivering.load(Ordering::Relaxed) {
            // Cluster mode: only the delivering replica reads the stream.
            return (0, 0.0);
        }
        let names: BTreeSet<String> = destination.segments.iter().cloned().collect();
        let behind = self
            .inner
            .counters(&destination.name)
            .behind_since_ms
            .load(Ordering::Relaxed);
        let behind = (behind > 0).then_some(behind);
        (self.inner.source).lag(&names, destination.delivered_through, behind)
    }
}

/// Why a request failed.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Failure {
    /// 0 when no response came.
    pub(super) status: u16,
    pub(super) message: String,
    /// The receiver's `Retry-After`, if it gave one.
    pub(super) retry_after: Option<Duration>,
}

impl Inner {
    pub(super) fn counters(&self, name: &str) -> Arc<Counters> {
        lock(&self.counters)
            .entry(name.to_string())
            .or_default()
            .clone()
    }

    /// Stops a removed destination's task and forgets its counters.
    pub(super) fn forget(&self, name: &str) {
        if let Some(worker) = lock(&self.workers).remove(name) {
            worker.stop.cancel();
        }
        lock(&self.counters).remove(name);
        self.update_hold();
    }

    /// Applies `change` to a destination, saves, and wakes its task.
    pub(super) async fn change(
        &self,
        name: &str,
        change: impl Fn(&mut Destination) -> Result<(), DestinationError>,
    ) -> Result<Destination, DestinationError> {
        let destination = self.store.persist(&self.state, name, change).await?;
        self.update_hold();
        if let Some(worker) = lock(&self.workers).get(name) {
            worker.wake.notify_one();
        }
        Ok(destination)
    }

    /// Holds the segment log's retention at the slowest destination (single mode: in cluster
    /// mode they read the shared stream, which keeps events for its own retention).
    pub(super) fn update_hold(&self) {
        if let Source::Local(segments) = &self.source {
            segments.set_retention_hold(hold_of(lock(&self.state).values()));
        }
    }

    /// The secrets signing now, the current one first.
    fn secrets(&self, destination: &Destination) -> Result<Vec<String>, DestinationError> {
        let now = now_ms();
        destination
            .secrets
            .iter()
            .filter(|s: &&SealedSecret| s.expires_ms.is_none_or(|at| at > now))
            .map(|s| self.store.open_secret(&destination.name, s))
            .collect()
    }

    /// POSTs a signed message; the status of a 2xx answer.
    pub(super) async fn send(
        &self,
        destination: &Destination,
        message: &Message,
    ) -> Result<u16, Failure> {
        let failure = |status: u16, message: String| Failure {
            status,
            message,
            retry_after: None,
        };
        let url =
            (self.policy.check_url(&destination.url)).map_err(|e| failure(0, e.to_string()))?;
        let secrets = self
            .secrets(destination)
            .map_err(|e| failure(0, e.to_string()))?;
        let timestamp = now_ms().div_euclid(1000);
        let signed = signature(&secrets, &message.id, timestamp, &message.body);
        let response = self
            .client
            .post(url)
            .header("content-type", "application/json")
            .header("webhook-id", &message.id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", signed)
            .body(message.body.clone())
            .send()
            .await
            .map_err(|e| failure(0, describe(e)))?;
        let status = response.status();
        if status.is_success() {
            return Ok(status.as_u16());
        }
        let retry_after = response
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        Err(Failure {
            status: status.as_u16(),
            message: format!("the receiver answered HTTP {status}"),
            retry_after,
        })
    }
}

/// A request error in one line, with its cause (reqwest's own message is terse), without the
/// URL: its query may hold the receiver's token, and the message is logged and listed.
fn describe(error: reqwest::Error) -> String {
    let error = error.without_url();
    let mut text = error.to_string();
    let mut source = std::error::Error::source(&error);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
