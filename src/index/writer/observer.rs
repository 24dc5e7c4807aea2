//! What takes part in the writer's work: the sealer every user passes through, and the
//! observer that sees every applied change and joins every commit.

use std::sync::Arc;

use super::super::error::WriteError;
use crate::change::UserChange;
use crate::user::User;

/// Seals each user's sensitive values before it reaches the index (`auth::sensitive`).
pub trait Sealer: Send + Sync {
    /// The user with its sensitive values sealed into [`User::sealed`] and removed from its
    /// metadata and Clerk JSON; a user holding none comes back as it is. A user already sealed
    /// (a re-encryption) is passed through.
    fn seal(&self, user: Arc<User>) -> Result<Arc<User>, WriteError>;
}

/// A user as it was before a change: `None` when the index did not hold it.
pub type Previous = Option<Arc<User>>;

/// Sees every change the writer applies, with the user's previous state, and takes part in
/// commits: whatever it records for a change must be durable before the change is, and is
/// dropped if the commit fails. (Saved segments use this for their membership events.)
pub trait ChangeObserver: Send {
    /// Whether [`ChangeObserver::observe`] needs the previous state (reading it costs a lookup).
    fn wants_previous(&self) -> bool;
    fn observe(&mut self, previous: Previous, change: &UserChange);
    /// Makes what was observed since the last commit durable; returns the sequence number to
    /// record in the commit.
    fn prepare_commit(&mut self) -> Result<u64, WriteError>;
    /// The commit holding the observed changes succeeded.
    fn committed(&mut self);
    /// The commit failed: forget what was observed since the last commit.
    fn rolled_back(&mut self);
}
