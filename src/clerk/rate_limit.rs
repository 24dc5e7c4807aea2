//! A token bucket shared by every request a process makes to one Clerk instance.
//!
//! Clerk limits the Backend API per instance (production 1000 requests / 10 s, development
//! 100 / 10 s), and the limit is shared with the customer's own application, so the default stays
//! below it. Uses `tokio::time`, so tests can run it under a paused clock.

use std::time::Duration;

use tokio::sync::Mutex;
use tokio::time::Instant;

/// A rate limit that does not parse, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("rate limit {text:?}: {problem}")]
pub struct RateLimitError {
    pub text: String,
    pub problem: String,
}

/// `requests` per `per`, with a burst of at most `requests`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateLimit {
    pub requests: u32,
    pub per: Duration,
}

impl RateLimit {
    /// 900 requests per 10 s: Clerk's production limit with 10% left for the application itself.
    pub const CLERK_PRODUCTION_DEFAULT: RateLimit = RateLimit {
        requests: 900,
        per: Duration::from_secs(10),
    };

    /// 90 requests per 10 s: Clerk's development limit (100 / 10 s) with 10% left.
    pub const CLERK_DEVELOPMENT_DEFAULT: RateLimit = RateLimit {
        requests: 90,
        per: Duration::from_secs(10),
    };

    /// The default for an instance of this `environment_type` (Clerk's `GET /v1/instance`):
    /// `development` gets the development limit, anything else (`production`, `staging`) the
    /// production one.
    pub fn for_environment(environment_type: &str) -> RateLimit {
        if environment_type.eq_ignore_ascii_case("development") {
            RateLimit::CLERK_DEVELOPMENT_DEFAULT
        } else {
            RateLimit::CLERK_PRODUCTION_DEFAULT
        }
    }

    /// The default guessed from a secret key when the instance cannot be asked: `sk_test_` keys
    /// belong to development instances, `sk_live_` keys to production ones.
    pub fn for_secret_key(secret_key: &str) -> RateLimit {
        if secret_key.starts_with("sk_test_") {
            RateLimit::CLERK_DEVELOPMENT_DEFAULT
        } else {
            RateLimit::CLERK_PRODUCTION_DEFAULT
        }
    }

    /// This limit times `fraction` (at least one request per window).
    pub fn share(self, fraction: f64) -> RateLimit {
        RateLimit {
            requests: ((f64::from(self.requests) * fraction).floor() as u32).max(1),
            per: self.per,
        }
    }

    /// Parses `N/10s`, `N/1s`, `N/1m` (the number before `/` is requests, after it a duration).
    pub fn parse(text: &str) -> Result<RateLimit, RateLimitError> {
        let error = |problem: String| RateLimitError {
            text: text.to_string(),
            problem,
        };
        let (count, window) = text
            .split_once('/')
            .ok_or_else(|| error("it must look like 900/10s".into()))?;
        let requests: u32 = count
            .trim()
            .parse()
            .map_err(|_| error(format!("{count:?} is not a request count")))?;
        let window = window.trim();
        let (digits, unit) = window.split_at(
            window
                .find(|c: char| !c.is_ascii_digit())
                .unwrap_or(window.len()),
        );
        let amount: u64 = if digits.is_empty() {
            1
        } else {
            digits
                .parse()
                .map_err(|_| error(format!("bad window {window:?}")))?
        };
        let per = match unit {
            "ms" => Duration::from_millis(amount),
            "s" | "" => Duration::from_secs(amount),
            "m" => Duration::from_secs(amount * 60),
            _ => return Err(error("the unit must be ms, s or m".into())),
        };
        if requests == 0 || per.is_zero() {
            return Err(error(
                "it must allow at least one request per non-zero window".into(),
            ));
        }
        Ok(RateLimit { requests, per })
    }
}

/// `900/10s`: requests, then the window in seconds (as `--clerk-rate-limit` takes it).
impl std::fmt::Display for RateLimit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}s", self.requests, self.per.as_secs_f64())
    }
}

/// An async token bucket whose limit can change (when the instance's environment is learned).
#[derive(Debug)]
pub struct RateLimiter {
    state: Mutex<Bucket>,
}

#[derive(Debug)]
struct Bucket {
    limit: RateLimit,
    tokens: f64,
    refilled_at: Instant,
}

impl Bucket {
    fn tokens_per_second(&self) -> f64 {
        f64::from(self.limit.requests) / self.limit.per.as_secs_f64()
    }

    fn refill(&mut self) {
        let now = Instant::now();
        let elapsed = now.duration_since(self.refilled_at).as_secs_f64();
        self.tokens =
            (self.tokens + elapsed * self.tokens_per_second()).min(f64::from(self.limit.requests));
        self.refilled_at = now;
    }
}

impl RateLimiter {
    pub fn new(limit: RateLimit) -> Self {
        RateLimiter {
            state: Mutex::new(Bucket {
                limit,
                tokens: f64::from(limit.requests),
                refilled_at: Instant::now(),
            }),
        }
    }

    /// The limit in force.
    pub async fn limit(&self) -> RateLimit {
        self.state.lock().await.limit
    }

    /// Changes the limit; tokens already in the bucket stay, up to the new burst.
    pub async fn set_limit(&self, limit: RateLimit) {
        let mut bucket = self.state.lock().await;
        bucket.refill();
        bucket.limit = limit;
        bucket.tokens = bucket.tokens.min(f64::from(limit.requests));
    }

    /// Takes one token without waiting; on failure returns how long until one is available.
    pub async fn try_acquire(&self) -> Result<(), Duration> {
        let mut bucket = self.state.lock().await;
        bucket.refill();
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64(
                (1.0 - bucket.tokens) / bucket.tokens_per_second(),
            ))
        }
    }

    /// Waits until a token is available and takes it.
    pub async fn acquire(&self) {
        while let Err(wait) = self.try_acquire().await {
            tokio::time::sleep(wait).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_windows_and_rejects_nonsense() {
        assert_eq!(
            RateLimit::parse("900/10s").unwrap(),
            RateLimit {
                requests: 900,
                per: Duration::from_secs(10)
            }
        );
        assert_eq!(
            RateLimit::parse("5/250ms").unwrap().per,
            Duration::from_millis(250)
        );
        assert_eq!(
            RateLimit::parse("60/m").unwrap().per,
            Duration::from_secs(60)
        );
        assert!(RateLimit::parse("0/1s").is_err());
        assert!(RateLimit::parse("10").is_err());
        assert!(RateLimit::parse("10/1h").is_err());
        assert_eq!(RateLimit::parse("900/10s").unwrap().to_string(), "900/10s");
        assert_eq!(RateLimit::parse("5/250ms").unwrap().to_string(), "5/0.25s");
    }

    #[test]
    fn defaults_follow_the_instance_or_the_key() {
        assert_eq!(RateLimit::for_environment("development").requests, 90);
        assert_eq!(RateLimit::for_environment("production").requests, 900);
        assert_eq!(RateLimit::for_environment("staging").requests, 900);
        assert_eq!(RateLimit::for_secret_key("sk_test_abc").requests, 90);
        assert_eq!(RateLimit::for_secret_key("sk_live_abc").requests, 900);
        assert_eq!(RateLimit::CLERK_PRODUCTION_DEFAULT.share(0.1).requests, 90);
        assert_eq!(
            RateLimit::CLERK_DEVELOPMENT_DEFAULT.share(0.001).requests,
            1
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_lower_limit_takes_effect_at_once() {
        let limiter = RateLimiter::new(RateLimit {
            requests: 100,
            per: Duration::from_secs(1),
        });
        limiter
            .set_limit(RateLimit {
                requests: 2,
                per: Duration::from_secs(1),
            })
            .await;
        assert!(limiter.try_acquire().await.is_ok());
        assert!(limiter.try_acquire().await.is_ok());
        assert!(limiter.try_acquire().await.is_err());
        assert_eq!(limiter.limit().await.requests, 2);
    }

    #[tokio::test(start_paused = true)]
    async fn bursts_up_to_the_limit_then_paces_requests() {
        let limiter = RateLimiter::new(RateLimit {
            requests: 10,
            per: Duration::from_secs(10),
        });
        let start = Instant::now();
        for _ in 0..10 {
            limiter.acquire().await;
        }
        assert!(
            start.elapsed() < Duration::from_millis(1),
            "the burst must not wait"
        );
        for _ in 0..5 {
            limiter.acquire().await;
        }
        let waited = start.elapsed();
        assert!(
            waited >= Duration::from_millis(4990) && waited < Duration::from_millis(5100),
            "{waited:?}"
        );
    }
}
