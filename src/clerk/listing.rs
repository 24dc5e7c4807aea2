//! What a `GET /v1/users` request asks for: which page of the `created_at` walk, and the user
//! timestamps the list can be filtered and ordered by.

use crate::user::User;

/// Which page of `GET /v1/users` to fetch, always in ascending `created_at` order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PageCursor {
    /// `starting_after=<id of the last user seen>`; `None` for the first page.
    After(Option<String>),
    /// `offset=N`: the fallback for servers without cursor paging.
    Offset(u64),
}

/// A user timestamp Clerk's list filters (`_after`, `_before`) and orders by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActivityField {
    /// `last_sign_in_at` (milliseconds).
    SignIn,
    /// `last_active_at` (Clerk keeps it to the day).
    Active,
}

impl ActivityField {
    pub fn name(self) -> &'static str {
        match self {
            ActivityField::SignIn => "last_sign_in_at",
            ActivityField::Active => "last_active_at",
        }
    }

    pub(super) fn after_param(self) -> &'static str {
        match self {
            ActivityField::SignIn => "last_sign_in_at_after",
            ActivityField::Active => "last_active_at_after",
        }
    }

    pub(super) fn before_param(self) -> &'static str {
        match self {
            ActivityField::SignIn => "last_sign_in_at_before",
            ActivityField::Active => "last_active_at_before",
        }
    }

    /// The user's value of this field.
    pub fn of(self, user: &User) -> Option<i64> {
        match self {
            ActivityField::SignIn => user.last_sign_in_at,
            ActivityField::Active => user.last_active_at,
        }
    }
}
