//! Destinations: HTTPS endpoints that receive saved segments' events as signed webhooks (the
//! Standard Webhooks scheme), at least once and in order, with retries, a durable position,
//! and a hold on the segment log's retention for what they have not received yet.
//!
//! This file only declares and re-exports.

mod address;
mod deliver;
mod follow;
mod model;
mod payload;
mod service;
mod source;
mod store;

pub use address::{Policy, is_internal};
pub use model::{
    Destination, DestinationError, DestinationsConfig, SealedSecret, Spec, State, Update,
};
pub use payload::{event_id, rfc3339};
pub use service::{Counters, Destinations, TestResult};
pub use store::{Store, hold_of, load};

#[cfg(test)]
mod tests;
