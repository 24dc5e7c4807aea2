//! Sensitive paths: metadata values that are never indexed or stored in plaintext.
//!
//! Configured paths (`private.ssn`, `private.medical.*`) are cut out of a user's metadata and
//! Clerk JSON before the user reaches the index. Each cut subtree is encrypted with
//! XChaCha20-Poly1305 under the active key of a key ring (random 24-byte nonce; the key id in
//! each ciphertext; the user id and path as associated data, so a ciphertext cannot be moved to
//! another user or path) and stored beside the user. For equality filters each value is also
//! indexed as a blind-index token: HMAC-SHA256 under a separate key of the path and the
//! normalized value. A `sensitive`-scoped caller can then filter with `=`, `!=` and `IN` (the
//! literals are turned into tokens the same way) and read the values back (decrypted per
//! response); nothing else, and a copy of the index directory holds neither plaintext nor
//! anything to test guesses against without the keys.
//!
//! Keys rotate without downtime: new values are sealed with the first key of the ring, older
//! keys still open what they sealed, and `Sync.ReencryptSensitive` re-seals everything under the
//! active key so old keys can then be dropped (the job runs in `sync`, through the writer).

mod filter;
mod keyring;
mod paths;
mod seal;

pub use filter::SensitiveFilterError;
pub use keyring::{KeyRing, KeyRingError, generate_key_line};
pub use paths::{SensitivePathError, SensitivePaths};
pub use seal::{RingRefused, SealError, Sensitive};

#[cfg(test)]
pub(crate) use keyring::test_ring;

#[cfg(test)]
mod tests;
