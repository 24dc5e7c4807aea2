//! The generators' random helpers: weighted choices and Clerk-looking ids.

use rand::Rng;
use rand_chacha::ChaCha8Rng;

const BASE62: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

pub(super) fn weighted<'a>(rng: &mut ChaCha8Rng, items: &[(&'a str, u32)]) -> &'a str {
    let total: u32 = items.iter().map(|(_, w)| w).sum();
    let mut roll = rng.random_range(0..total);
    for (item, weight) in items {
        if roll < *weight {
            return item;
        }
        roll -= weight;
    }
    items[0].0
}

pub(super) fn chance(rng: &mut ChaCha8Rng, probability: f64) -> bool {
    rng.random_bool(probability)
}

/// A Clerk-looking id: prefix, then the index in base62 (for uniqueness), then random characters.
pub(super) fn clerk_id(rng: &mut ChaCha8Rng, prefix: &str, index: usize) -> String {
    let mut digits = Vec::with_capacity(27);
    let mut n = index as u64;
    for _ in 0..6 {
        digits.push(BASE62[(n % 62) as usize]);
        n /= 62;
    }
    digits.reverse();
    while digits.len() < 27 {
        digits.push(BASE62[rng.random_range(0..62)]);
    }
    format!(
        "{prefix}_{}",
        String::from_utf8(digits).expect("base62 is ascii")
    )
}

/// The index a [`clerk_id`] of this prefix was made from (its six base62 digits), if it is one.
pub(super) fn clerk_id_index(id: &str, prefix: &str) -> Option<usize> {
    let digits = id.strip_prefix(prefix)?.strip_prefix('_')?.get(..6)?;
    digits.bytes().try_fold(0usize, |n, digit| {
        let value = BASE62.iter().position(|&c| c == digit)?;
        Some(n * 62 + value)
    })
}
