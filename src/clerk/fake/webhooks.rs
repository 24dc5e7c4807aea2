//! The fake's outgoing webhooks, delivered the way Svix delivers Clerk's: signed `svix-*`
//! headers, a retry schedule (immediately, 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h; scalable
//! for tests), and optionally duplicates and reordering, since real deliveries are at-least-once
//! and unordered.

use std::time::Duration;

use rand::Rng;
use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::clerk::webhook::{WebhookSecretError, WebhookVerifier};

/// Svix's retry schedule after the first attempt.
const SVIX_RETRIES: [Duration; 7] = [
    Duration::from_secs(5),
    Duration::from_secs(5 * 60),
    Duration::from_secs(30 * 60),
    Duration::from_secs(2 * 3600),
    Duration::from_secs(5 * 3600),
    Duration::from_secs(10 * 3600),
    Duration::from_secs(10 * 3600),
];

/// The fake's instance id, in `GET /v1/instance` and every webhook envelope.
pub const FAKE_INSTANCE_ID: &str = "ins_fake_clerk";

/// Where and how the fake delivers webhooks.
#[derive(Debug, Clone)]
pub struct WebhookTarget {
    /// e.g. `http://127.0.0.1:8080/webhooks/clerk`
    pub url: String,
    /// The `whsec_...` secret the receiver verifies with.
    pub secret: String,
    /// Multiplies Svix's retry delays (1.0 = real schedule; tests use ~0.001).
    pub retry_scale: f64,
    /// Chance that a message is delivered twice.
    pub duplicate_probability: f64,
    /// Each message waits a random time up to this before its first attempt, so later messages
    /// can overtake earlier ones.
    pub max_reorder_delay: Duration,
}

impl WebhookTarget {
    pub fn new(url: impl Into<String>, secret: impl Into<String>) -> Self {
        WebhookTarget {
            url: url.into(),
            secret: secret.into(),
            retry_scale: 1.0,
            duplicate_probability: 0.0,
            max_reorder_delay: Duration::ZERO,
        }
    }
}

/// Queues events and delivers each one on its own task.
#[derive(Clone)]
pub struct WebhookDispatcher {
    events: mpsc::UnboundedSender<Value>,
}

impl WebhookDispatcher {
    /// Starts the dispatcher on the current runtime.
    pub fn start(target: WebhookTarget) -> Result<Self, WebhookSecretError> {
        let verifier = WebhookVerifier::new(std::slice::from_ref(&target.secret))?;
        let (events, mut queue) = mpsc::unbounded_channel::<Value>();
        let http = reqwest::Client::new();
        tokio::spawn(async move {
            while let Some(event) = queue.recv().await {
                let body = serde_json::to_vec(&event).expect("events serialize");
                let svix_id = format!("msg_{:024x}", rand::random::<u128>() >> 32);
                let copies = if rand::rng().random_bool(target.duplicate_probability) {
                    2
                } else {
                    1
                };
                for _ in 0..copies {
                    let delay = target.max_reorder_delay.mul_f64(rand::random::<f64>());
                    tokio::spawn(deliver(
                        http.clone(),
                        target.clone(),
                        verifier.clone(),
                        svix_id.clone(),
                        body.clone(),
                        delay,
                    ));
                }
            }
        });
        Ok(WebhookDispatcher { events })
    }

    /// Sends a Clerk event envelope around `data`.
    pub fn send(&self, event_type: &str, data: Value) {
        let event = json!({
            "data": data,
            "object": "event",
            "type": event_type,
            "timestamp": crate::clock::now_ms(),
            "instance_id": FAKE_INSTANCE_ID,
            "event_attributes": {"http_request": {"client_ip": "127.0.0.1", "user_agent": "fake-clerk"}},
        });
        let _ = self.events.send(event);
    }
}

async fn deliver(
    http: reqwest::Client,
    target: WebhookTarget,
    verifier: WebhookVerifier,
    svix_id: String,
    body: Vec<u8>,
    delay: Duration,
) {
    tokio::time::sleep(delay).await;
    let mut waits = SVIX_RETRIES.iter().map(|d| d.mul_f64(target.retry_scale));
    loop {
        let timestamp = crate::clock::now_ms() / 1000;
        let attempt = http
            .post(&target.url)
            .header("svix-id", &svix_id)
            .header("svix-timestamp", timestamp.to_string())
            .header("svix-signature", verifier.sign(&svix_id, timestamp, &body))
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .timeout(Duration::from_secs(15))
            .body(body.clone())
            .send()
            .await;
        match attempt {
            Ok(response) if response.status().is_success() => return,
            Ok(response) => {
                tracing::debug!(%svix_id, status = %response.status(), "webhook delivery failed")
            }
            Err(error) => tracing::debug!(%svix_id, %error, "webhook delivery failed"),
        }
        match waits.next() {
            Some(wait) => tokio::time::sleep(wait).await,
            None => {
                tracing::warn!(%svix_id, "webhook delivery failed 8 times; giving up like Svix");
                return;
            }
        }
    }
}
