//! Clerk webhook deliveries become changes: verify, parse, record, and say what happened.
//!
//! Order of checks: signature first (nothing changes), then the body (nothing changes), then the
//! change is recorded and the answer waits for it to be durable (the index commit, or in cluster
//! mode JetStream's acknowledgement): `Applied` is answered only for what a crash cannot lose.
//! The writer batches concurrent deliveries into one commit. Deliveries are at-least-once and
//! unordered: a recently seen `svix-id` is acknowledged without work, and everything else is
//! safe to apply twice (older `updated_at`s and users deleted later are ignored by the writer),
//! so the duplicate memory need not survive restarts. A delivery whose envelope names another
//! Clerk instance than the one learned at start is acknowledged and applied nowhere. The HTTP
//! route is `api`'s.

use std::collections::{HashSet, VecDeque};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use super::destination::ChangeDestination;
use super::recorded::Recorded;
use crate::change::{Change, ChangeSource, MembershipChange, OrganizationChange, UserChange};
use crate::clerk::KnownInstance;
use crate::clerk::webhook::{
    ENVELOPE_SKEW_MS, SvixHeaders, WebhookEvent, WebhookVerifier, parse_delivery,
};
use crate::clock::now_ms;
use crate::limits::Budgets;
use crate::redact::clip;

/// How many recent `svix-id`s are remembered for duplicate detection.
const REMEMBERED_IDS: usize = 100_000;

/// What became of one delivery: the answer's `outcome`, its HTTP status, its metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WebhookOutcome {
    /// Verified, parsed and durably recorded.
    Applied,
    /// A recently seen `svix-id`: acknowledged without work.
    Duplicate,
    /// Verified, of a type the index does not use (organizations, emails, ...), or a session
    /// event without its user.
    Ignored,
    /// The signature did not verify: nothing changed.
    BadSignature,
    /// Verified, but the body is not a Clerk event: nothing changed.
    Malformed,
    /// Verified and well-formed, but recording failed: Svix should retry.
    Failed,
    /// No signing secret is configured: every delivery is refused.
    NotConfigured,
    /// Verified, but its envelope names another Clerk instance (a signing secret configured
    /// that belongs to another instance): acknowledged, applied nowhere.
    ForeignInstance,
}

impl WebhookOutcome {
    pub const ALL: [WebhookOutcome; 8] = [
        WebhookOutcome::Applied,
        WebhookOutcome::Duplicate,
        WebhookOutcome::Ignored,
        WebhookOutcome::BadSignature,
        WebhookOutcome::Malformed,
        WebhookOutcome::Failed,
        WebhookOutcome::NotConfigured,
        WebhookOutcome::ForeignInstance,
    ];

    /// The name in webhook answers and spans.
    pub fn name(self) -> &'static str {
        match self {
            WebhookOutcome::Applied => "applied",
            WebhookOutcome::Duplicate => "duplicate",
            WebhookOutcome::Ignored => "ignored",
            WebhookOutcome::BadSignature => "bad_signature",
            WebhookOutcome::Malformed => "malformed",
            WebhookOutcome::Failed => "failed",
            WebhookOutcome::NotConfigured => "not_configured",
            WebhookOutcome::ForeignInstance => "foreign_instance",
        }
    }

    fn slot(self) -> usize {
        self as usize
    }
}

/// What the answer to a delivery says besides its outcome.
#[derive(Debug, Clone, PartialEq)]
pub enum WebhookDetail {
    None,
    /// Why the delivery was refused or failed.
    Message(String),
    /// The type of an ignored event.
    EventType(String),
    /// Where an applied change was recorded, and what it was about: `user_id`,
    /// `organization_id` or `membership_id`, and the id.
    Recorded {
        about: &'static str,
        id: String,
        recorded: Recorded,
    },
}

/// The answer to one delivery.
#[derive(Debug, Clone, PartialEq)]
pub struct WebhookAnswer {
    pub outcome: WebhookOutcome,
    pub detail: WebhookDetail,
}

/// Deliveries by outcome since start, and the newest event time applied.
#[derive(Debug, Default)]
pub struct WebhookCounters {
    by_outcome: [AtomicU64; WebhookOutcome::ALL.len()],
    /// Newest envelope event time applied, ms.
    newest_event_at_ms: AtomicU64,
}

impl WebhookCounters {
    fn count(&self, outcome: WebhookOutcome) {
        self.by_outcome[outcome.slot()].fetch_add(1, Ordering::Relaxed);
    }

    /// Deliveries that ended with `outcome`.
    pub fn get(&self, outcome: WebhookOutcome) -> u64 {
        self.by_outcome[outcome.slot()].load(Ordering::Relaxed)
    }

    /// Time since the newest change the index is known to hold was made in Clerk: the newest
    /// applied webhook event or `newest_updated_at_ms` (the index's), whichever is later; 0
    /// before any. Quiet periods count too: it bounds staleness, it does not measure delivery
    /// delay.
    pub fn freshness_lag_ms(&self, newest_updated_at_ms: i64) -> i64 {
        let newest =
            (self.newest_event_at_ms.load(Ordering::Relaxed) as i64).max(newest_updated_at_ms);
        if newest > 0 {
            (now_ms() - newest).max(0)
        } else {
            0
        }
    }
}

/// A bounded set of recently seen ids (oldest forgotten first).
#[derive(Default)]
struct RecentIds {
    set: HashSet<String>,
    order: VecDeque<String>,
}

impl RecentIds {
    fn contains(&self, id: &str) -> bool {
        self.set.contains(id)
    }

    fn insert(&mut self, id: String) {
        if self.set.insert(id.clone()) {
            self.order.push_back(id);
            if self.order.len() > REMEMBERED_IDS
                && let Some(oldest) = self.order.pop_front()
            {
                self.set.remove(&oldest);
            }
        }
    }
}

/// Receives Clerk webhook deliveries and records their changes.
pub struct WebhookReceiver {
    verifier: Option<WebhookVerifier>,
    instance: Arc<KnownInstance>,
    /// When a foreign delivery was last logged, ms: one line a minute at most.
    foreign_logged_at_ms: AtomicI64,
    destination: ChangeDestination,
    seen: Mutex<RecentIds>,
    counters: std::sync::Arc<WebhookCounters>,
    /// Refused deliveries are unauthenticated input: their log lines come out of this budget.
    budgets: Arc<Budgets>,
}

impl WebhookReceiver {
    /// `verifier` is `None` when no signing secret is configured: every delivery is then refused
    /// (`NotConfigured`), so a misconfiguration is loud in Clerk's dashboard instead of silent.
    /// `instance` is the Clerk instance this index mirrors, once learned: deliveries naming
    /// another one are refused.
    pub fn new(
        verifier: Option<WebhookVerifier>,
        instance: Arc<KnownInstance>,
        destination: ChangeDestination,
        budgets: Arc<Budgets>,
    ) -> Self {
        WebhookReceiver {
            verifier,
            instance,
            foreign_logged_at_ms: AtomicI64::new(i64::MIN),
            destination,
            seen: Mutex::new(RecentIds::default()),
            counters: std::sync::Arc::default(),
            budgets,
        }
    }

    pub fn counters(&self) -> &std::sync::Arc<WebhookCounters> {
        &self.counters
    }

    /// Logs a delivery for another instance, at most once a minute (the sender is verified,
    /// but its deliveries are not ours, and there may be many).
    fn log_foreign(&self, named: &str, svix_id: &str) {
        let now = now_ms();
        let last = self.foreign_logged_at_ms.load(Ordering::Relaxed);
        if now.saturating_sub(last) >= 60_000
            && self
                .foreign_logged_at_ms
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            let ours = self.instance.get().map(|i| i.id.as_str()).unwrap_or("");
            tracing::warn!(
                instance_id = named,
                ours,
                svix_id,
                "a webhook for another Clerk instance was refused (is a signing secret of another instance configured?); further ones are counted, logged at most once a minute"
            );
        }
    }

    fn remember(&self, svix_id: String) {
        self.seen.lock().expect("webhook id lock").insert(svix_id);
    }

    /// Handles one delivery: its Svix headers and raw body.
    pub async fn receive(&self, svix: SvixHeaders<'_>, body: &[u8]) -> WebhookAnswer {
        let answer = self.answer(svix, body).await;
        self.counters.count(answer.outcome);
        answer
    }

    async fn answer(&self, svix: SvixHeaders<'_>, body: &[u8]) -> WebhookAnswer {
        // Answers may carry what the sender sent (a path in its body): never much of it.
        let refused = |outcome, message: String| WebhookAnswer {
            outcome,
            detail: WebhookDetail::Message(clip(&message, 256).into_owned()),
        };
        let Some(verifier) = &self.verifier else {
            return refused(
                WebhookOutcome::NotConfigured,
                "no webhook signing secret is configured".into(),
            );
        };
        if let Err(error) = verifier.verify(svix, body, now_ms() / 1000) {
            // Nothing the sender chose (its svix-id) is logged before the signature holds, and
            // a flood of forgeries is counted rather than written line by line.
            if self.budgets.unauthenticated_log.allow() {
                tracing::warn!(%error, "webhook refused (further refusals beyond the log budget are only counted)");
            }
            return refused(WebhookOutcome::BadSignature, error.to_string());
        }
        let svix_id = svix.id.unwrap_or_default().to_string();
        if self
            .seen
            .lock()
            .expect("webhook id lock")
            .contains(&svix_id)
        {
            return WebhookAnswer {
                outcome: WebhookOutcome::Duplicate,
                detail: WebhookDetail::None,
            };
        }
        let event = match parse_delivery(body, now_ms()) {
            Ok(delivery) if self.instance.is_foreign(delivery.instance_id.as_deref()) => {
                let named = delivery.instance_id.unwrap_or_default();
                self.log_foreign(&named, &svix_id);
                return refused(
                    WebhookOutcome::ForeignInstance,
                    format!("this index mirrors another Clerk instance than {named}"),
                );
            }
            Ok(delivery) => delivery.event,
            Err(error) => {
                let error = error.to_string();
                tracing::warn!(error = %clip(&error, 256), svix_id = %clip(&svix_id, 64), "webhook body refused");
                return refused(WebhookOutcome::Malformed, error.to_string());
            }
        };
        let source = ChangeSource::Webhook;
        let (change, event_at_ms): (Change, i64) = match event {
            WebhookEvent::UserUpserted { user, .. } => {
                let version = user.version();
                let at = version
                    .updated_at
                    .max(version.last_sign_in_at)
                    .max(version.last_active_at);
                (UserChange::Upsert { user, source }.into(), at)
            }
            WebhookEvent::UserDeleted {
                user_id,
                deleted_at_ms,
            } => (
                UserChange::Delete {
                    user_id,
                    deleted_at_ms,
                    source,
                }
                .into(),
                deleted_at_ms,
            ),
            WebhookEvent::OrganizationUpserted { organization, .. } => {
                let at = organization.updated_at;
                let change = OrganizationChange::Upsert {
                    organization,
                    source,
                };
                (change.into(), at)
            }
            WebhookEvent::OrganizationDeleted {
                organization_id,
                deleted_at_ms,
            } => (
                OrganizationChange::Delete {
                    organization_id,
                    deleted_at_ms,
                    source,
                }
                .into(),
                deleted_at_ms,
            ),
            WebhookEvent::MembershipUpserted {
                membership,
                organization,
                ..
            } => {
                let at = membership.updated_at;
                let change = MembershipChange::Upsert {
                    membership,
                    organization: Some(organization),
                    source,
                };
                (change.into(), at)
            }
            WebhookEvent::MembershipDeleted {
                membership,
                deleted_at_ms,
            } => (
                MembershipChange::Delete {
                    membership,
                    deleted_at_ms,
                    source,
                }
                .into(),
                deleted_at_ms,
            ),
            WebhookEvent::Other { event_type } => {
                self.remember(svix_id);
                return WebhookAnswer {
                    outcome: WebhookOutcome::Ignored,
                    detail: WebhookDetail::EventType(event_type),
                };
            }
        };
        let about = match &change {
            Change::User(_) => "user_id",
            Change::Organization(_) => "organization_id",
            Change::Membership(_) => "membership_id",
        };
        let id = change.key().to_string();
        match self.destination.record_delivery(change, &svix_id).await {
            Ok(recorded) => {
                // A far-future time would pin the freshness lag at zero.
                let event_at_ms = event_at_ms.clamp(0, now_ms().saturating_add(ENVELOPE_SKEW_MS));
                self.counters
                    .newest_event_at_ms
                    .fetch_max(event_at_ms as u64, Ordering::Relaxed);
                self.remember(svix_id);
                WebhookAnswer {
                    outcome: WebhookOutcome::Applied,
                    detail: WebhookDetail::Recorded {
                        about,
                        id,
                        recorded,
                    },
                }
            }
            Err(error) => {
                tracing::error!(%error, %svix_id, "webhook change could not be committed");
                refused(WebhookOutcome::Failed, error.to_string())
            }
        }
    }
}
