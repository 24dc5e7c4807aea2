//! The Clerk instance this process mirrors, as `GET /v1/instance` describes it, and the request
//! budgets that follow from it.
//!
//! Clerk limits the Backend API per instance (production 1000 requests / 10 s, development
//! 100 / 10 s) and, after a 429, blocks *that endpoint* for the `Retry-After` it sends. A
//! [`Budget`] keeps both: a token bucket under the instance's limit (given, or learned from the
//! instance's `environment_type`, or guessed from the secret key's `sk_test_`/`sk_live_` prefix
//! until the instance answers) and the endpoints blocked until when, so concurrent walks wait out
//! a block together instead of each earning its own 429.
//!
//! In cluster mode every replica writes through to Clerk but only the sync lease holder reads
//! in bulk, so the budget is split statically: reads get 90% of the limit (one holder at a
//! time), and each of the `replicas` gets an equal share of the other 10% for writes. The sum
//! over the cluster stays under the limit however the lease moves.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use serde::Deserialize;
use tokio::time::Instant;

use super::rate_limit::{RateLimit, RateLimiter};

/// What `GET /v1/instance` says of the instance (other fields are ignored).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Instance {
    pub id: String,
    /// `production`, `development` (or `staging`); empty when Clerk leaves it out.
    #[serde(default)]
    pub environment_type: String,
}

/// The instance, once learned: set at most once, read by every webhook delivery.
#[derive(Debug, Default)]
pub struct KnownInstance(OnceLock<Instance>);

impl KnownInstance {
    pub fn get(&self) -> Option<&Instance> {
        self.0.get()
    }

    pub(super) fn set(&self, instance: Instance) {
        let _ = self.0.set(instance);
    }

    /// Whether a webhook envelope's `instance_id` names another instance than this one. An
    /// envelope without one, or an instance not learned yet, is not foreign.
    pub fn is_foreign(&self, instance_id: Option<&str>) -> bool {
        match (self.get(), instance_id) {
            (Some(known), Some(id)) => !id.is_empty() && id != known.id,
            _ => false,
        }
    }
}

/// Where the rate limit comes from.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum LimitSource {
    /// Set by the operator; never changed.
    Given(RateLimit),
    /// Clerk's default for the instance's environment, under its limit: guessed from the key
    /// at start, then taken from `GET /v1/instance`.
    Instance,
}

/// How the budget is shared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BudgetShare {
    /// One process: reads and writes share one bucket.
    Whole,
    /// Cluster mode with this many replicas: reads get 90%, each replica 10% / replicas for
    /// writes.
    Cluster { replicas: u32 },
}

/// Which bucket a request draws from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Spend {
    Read,
    Write,
}

/// The client's request budget: the rate limit (split as [`BudgetShare`] says) and the
/// endpoints Clerk has blocked.
#[derive(Debug)]
pub struct Budget {
    source: LimitSource,
    share: BudgetShare,
    limit: Mutex<RateLimit>,
    reads: RateLimiter,
    writes: Option<RateLimiter>,
    blocked: Mutex<HashMap<&'static str, Instant>>,
}

const READ_SHARE: f64 = 0.9;

impl Budget {
    pub fn new(source: LimitSource, share: BudgetShare, secret_key: &str) -> Budget {
        let limit = match source {
            LimitSource::Given(limit) => limit,
            LimitSource::Instance => RateLimit::for_secret_key(secret_key),
        };
        let (reads, writes) = split(limit, share);
        Budget {
            source,
            share,
            limit: Mutex::new(limit),
            reads: RateLimiter::new(reads),
            writes: writes.map(RateLimiter::new),
            blocked: Mutex::new(HashMap::new()),
        }
    }

    /// The instance's whole limit as this process counts it.
    pub fn limit(&self) -> RateLimit {
        *self.limit.lock().expect("budget lock")
    }

    /// Adopts the default for the instance's environment, unless a limit was given.
    pub async fn adopt(&self, instance: &Instance) {
        if self.source != LimitSource::Instance {
            return;
        }
        let limit = RateLimit::for_environment(&instance.environment_type);
        *self.limit.lock().expect("budget lock") = limit;
        let (reads, writes) = split(limit, self.share);
        self.reads.set_limit(reads).await;
        if let (Some(limiter), Some(writes)) = (&self.writes, writes) {
            limiter.set_limit(writes).await;
        }
    }

    /// Waits until `endpoint` is not blocked and a token is free.
    pub async fn acquire(&self, endpoint: &'static str, spend: Spend) {
        loop {
            let until = self
                .blocked
                .lock()
                .expect("budget lock")
                .get(endpoint)
                .copied();
            match until {
                Some(until) if until > Instant::now() => tokio::time::sleep_until(until).await,
                _ => break,
            }
        }
        match (spend, &self.writes) {
            (Spend::Write, Some(writes)) => writes.acquire().await,
            _ => self.reads.acquire().await,
        }
    }

    /// Clerk answered 429 with `retry_after`: nothing more goes to `endpoint` until it passes.
    pub fn block(&self, endpoint: &'static str, retry_after: Duration) {
        let until = Instant::now() + retry_after;
        let mut blocked = self.blocked.lock().expect("budget lock");
        let entry = blocked.entry(endpoint).or_insert(until);
        *entry = (*entry).max(until);
    }
}

fn split(limit: RateLimit, share: BudgetShare) -> (RateLimit, Option<RateLimit>) {
    match share {
        BudgetShare::Whole => (limit, None),
        BudgetShare::Cluster { replicas } => (
            limit.share(READ_SHARE),
            Some(limit.share((1.0 - READ_SHARE) / f64::from(replicas.max(1)))),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn instance(environment_type: &str) -> Instance {
        Instance {
            id: "ins_1".into(),
            environment_type: environment_type.into(),
        }
    }

    #[tokio::test]
    async fn the_limit_follows_the_key_then_the_instance_unless_given() {
        let learned = Budget::new(LimitSource::Instance, BudgetShare::Whole, "sk_test_x");
        assert_eq!(learned.limit(), RateLimit::CLERK_DEVELOPMENT_DEFAULT);
        learned.adopt(&instance("production")).await;
        assert_eq!(learned.limit(), RateLimit::CLERK_PRODUCTION_DEFAULT);
        assert_eq!(
            learned.reads.limit().await,
            RateLimit::CLERK_PRODUCTION_DEFAULT
        );

        let given = RateLimit::parse("5/1s").unwrap();
        let fixed = Budget::new(LimitSource::Given(given), BudgetShare::Whole, "sk_test_x");
        fixed.adopt(&instance("production")).await;
        assert_eq!(fixed.limit(), given);
    }

    #[tokio::test]
    async fn a_cluster_never_adds_up_past_the_limit() {
        for replicas in [1, 2, 3, 7, 40] {
            let budget = Budget::new(
                LimitSource::Instance,
                BudgetShare::Cluster { replicas },
                "sk_live_x",
            );
            let reads = budget.reads.limit().await.requests;
            let writes = budget.writes.as_ref().unwrap().limit().await.requests;
            // One lease holder reads; every replica writes.
            assert!(
                reads + replicas * writes <= 900 || writes == 1,
                "{replicas}"
            );
            assert!(reads >= 800, "{replicas}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_blocked_endpoint_waits_for_its_retry_after_and_others_do_not() {
        let budget = Budget::new(LimitSource::Instance, BudgetShare::Whole, "sk_live_x");
        budget.block("GET /v1/users", Duration::from_secs(3));
        let start = Instant::now();
        budget.acquire("GET /v1/users/count", Spend::Read).await;
        assert!(start.elapsed() < Duration::from_millis(10));
        budget.acquire("GET /v1/users", Spend::Read).await;
        assert!(start.elapsed() >= Duration::from_secs(3));
        assert!(start.elapsed() < Duration::from_millis(3100));
    }

    #[test]
    fn only_a_named_other_instance_is_foreign() {
        let known = KnownInstance::default();
        assert!(!known.is_foreign(Some("ins_other")), "not learned yet");
        known.set(instance("production"));
        assert!(known.is_foreign(Some("ins_other")));
        assert!(!known.is_foreign(Some("ins_1")));
        assert!(!known.is_foreign(None));
        assert!(!known.is_foreign(Some("")));
    }
}
