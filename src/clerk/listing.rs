//! What a `GET /v1/users` request asks for: which page of the `created_at` walk, and the user
//! timestamps the list can be filtered and ordered by.

use crate::user::User;

/// Where in a listing the next page starts.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PageCursor {
    /// The first page.
    Start,
    /// `starting_after=<id of the last element of the previous page>`.
    After(String),
    /// `offset=N`: only inside a run of users created in the same millisecond.
    Offset(u64),
}

/// One page of the ascending `created_at` listing (`order_by=created_at`), optionally limited to
/// `created_at_after` / `created_at_before` (milliseconds; Clerk does not say whether they are
/// inclusive, so callers ask for a little more and drop what is out of their range).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreatedPage {
    pub after: Option<i64>,
    pub before: Option<i64>,
    pub cursor: PageCursor,
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
