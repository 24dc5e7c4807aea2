//! A fake Clerk Backend API: a real HTTP server speaking Clerk's wire format over a generated
//! population, for tests, the demo and `clerk-index fake-clerk`.

mod generator;
mod server;
mod store;

pub use generator::{DEFAULT_ANCHOR_MS, Population};
pub use server::{FakeClerk, FakeClerkConfig, FaultInjection};
