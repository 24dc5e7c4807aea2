//! Everything that knows Clerk's wire formats: the lenient User models, the Backend API client
//! with its rate limiter, and the fake Clerk server used by tests and the demo.
//!
//! Nothing outside this module parses Clerk JSON; it hands out [`crate::user::User`]s.

pub mod client;
mod error;
pub mod fake;
mod instance;
mod listing;
pub mod model;
mod org_client;
pub mod organization;
pub mod rate_limit;
mod stats;
pub mod webhook;

pub use client::{ClerkApiError, ClerkApiStats, ClerkClient, ClerkClientConfig};
pub use instance::{BudgetShare, Instance, KnownInstance, LimitSource};
pub use listing::{ActivityField, CreatedPage, PageCursor};
pub use model::{ListedKey, RejectedUser, UserPage, UserParseError, user_from_json};
pub use org_client::{IDS_PER_FILTER, ListPage, ORGANIZATION_PAGE_LIMIT, Order, parse_list_page};
pub use organization::{
    OrganizationParseError, ParsedMembership, parse_membership, parse_organization,
    parse_stored_membership,
};
