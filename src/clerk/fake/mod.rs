//! A fake Clerk Backend API: a real HTTP server speaking Clerk's wire format over a generated
//! population, for tests, the demo and `clerk-index fake-clerk`. Changes made through its API
//! (create, metadata patch, delete) are announced with signed webhooks when a target is set.

mod generator;
mod membership_writes;
mod org_generator;
mod org_store;
mod organization_writes;
mod organizations;
mod random;
mod record;
mod server;
mod state;
mod store;
mod user_listing;
mod webhooks;
mod writes;

pub use generator::{DEFAULT_ANCHOR_MS, Population};
pub use server::FakeClerk;
pub use state::{CursorGone, FakeClerkConfig, FaultInjection};
pub use webhooks::{FAKE_INSTANCE_ID, WebhookDispatcher, WebhookTarget};
pub use writes::merge_patch;
