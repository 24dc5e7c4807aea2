//! The fake's user table: users in `(created_at, id)` order, generated from the population's
//! seed and changed through the API.
//!
//! A generated user is not kept as JSON unless the population is small enough
//! ([`FakeClerkConfig::keep_json_up_to`](super::FakeClerkConfig)): user `i` is the same JSON
//! every time it is generated, so a page is generated when it is asked for. What the fake sorts
//! and filters on is kept for every user (48 bytes each: its keys and its place in the order),
//! so 10M users fit in ~0.5 GB beside the service instead of the ~19 GB their JSON would take.
//! Users created or changed through the API are kept whole; a generated user they replace or
//! delete is marked gone.

use std::borrow::Cow;
use std::cmp::Ordering;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use serde_json::Value;

use super::generator::Population;

/// One user as the fake sorts and filters on it, with its JSON.
#[derive(Debug, Clone)]
pub struct StoredUser {
    pub id: String,
    pub created_at: i64,
    pub updated_at: i64,
    pub last_sign_in_at: Option<i64>,
    pub last_active_at: Option<i64>,
    pub json: Arc<str>,
}

impl StoredUser {
    pub fn from_json(json: &Value) -> Option<StoredUser> {
        Some(StoredUser {
            id: json.get("id")?.as_str()?.to_string(),
            created_at: json.get("created_at")?.as_i64()?,
            updated_at: json.get("updated_at")?.as_i64()?,
            last_sign_in_at: json.get("last_sign_in_at").and_then(Value::as_i64),
            last_active_at: json.get("last_active_at").and_then(Value::as_i64),
            json: Arc::from(serde_json::to_string(json).ok()?),
        })
    }
}

/// Which user an entry of the order is: generated user `i`, or slot `k` of the kept users.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Who {
    Generated(u32),
    Kept(u32),
}

/// One place in the `(created_at, id)` order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    pub created_at: i64,
    pub who: Who,
}

/// What is kept of a generated user: its sort and filter keys (`i64::MIN` for none).
#[derive(Debug, Clone, Copy)]
struct Keys {
    created_at: i64,
    updated_at: i64,
    last_sign_in_at: i64,
    last_active_at: i64,
}

const NONE: i64 = i64::MIN;

fn optional(ms: i64) -> Option<i64> {
    (ms != NONE).then_some(ms)
}

impl Keys {
    fn of(user: &StoredUser) -> Keys {
        Keys {
            created_at: user.created_at,
            updated_at: user.updated_at,
            last_sign_in_at: user.last_sign_in_at.unwrap_or(NONE),
            last_active_at: user.last_active_at.unwrap_or(NONE),
        }
    }
}

/// Users ordered by `(created_at, id)`, as Clerk's default listing order (reversed) implies.
#[derive(Debug, Default)]
pub struct UserStore {
    population: Option<Population>,
    order: Vec<Entry>,
    generated: Vec<Keys>,
    /// The generated users' JSON, when the population is small enough to keep it.
    generated_json: Option<Vec<Arc<str>>>,
    /// Generated users replaced or deleted through the API.
    gone: HashSet<u32>,
    kept: Vec<Option<StoredUser>>,
    kept_ids: HashMap<String, u32>,
}

impl UserStore {
    /// Generates the population on all cores (user `i` is the same whatever the split), keeping
    /// each user's keys, and its JSON too when there are at most `keep_json_up_to` users.
    pub fn generate(population: &Population, keep_json_up_to: usize) -> UserStore {
        assert!(
            population.count <= u32::MAX as usize,
            "the fake holds at most 2^32 generated users"
        );
        let keep_json = population.count <= keep_json_up_to;
        let threads = std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .max(1);
        let chunk = population.count.div_ceil(threads).max(1);
        let mut generated = Vec::with_capacity(population.count);
        let mut json = Vec::with_capacity(if keep_json { population.count } else { 0 });
        std::thread::scope(|scope| {
            let handles: Vec<_> = (0..population.count)
                .step_by(chunk)
                .map(|start| {
                    scope.spawn(move || {
                        let end = (start + chunk).min(population.count);
                        let mut keys = Vec::with_capacity(end - start);
                        let mut json = Vec::new();
                        for i in start..end {
                            let user = StoredUser::from_json(&population.user(i))
                                .expect("generated users are complete");
                            keys.push(Keys::of(&user));
                            if keep_json {
                                json.push(user.json);
                            }
                        }
                        (keys, json)
                    })
                })
                .collect();
            for handle in handles {
                let (keys, part) = handle.join().expect("generator thread panicked");
                generated.extend(keys);
                json.extend(part);
            }
        });
        // Generated users are in `(created_at, id)` order already: `created_at` grows with the
        // index, and ties (a bulk import) are in index order, which is id order.
        let order = generated
            .iter()
            .enumerate()
            .map(|(i, keys)| Entry {
                created_at: keys.created_at,
                who: Who::Generated(i as u32),
            })
            .collect();
        UserStore {
            population: Some(*population),
            order,
            generated,
            generated_json: keep_json.then_some(json),
            ..UserStore::default()
        }
    }

    pub fn len(&self) -> usize {
        self.order.len()
    }

    /// Every user in ascending `(created_at, id)` order.
    pub fn entries(&self) -> &[Entry] {
        &self.order
    }

    /// The user with this id, if it exists now.
    pub fn get(&self, id: &str) -> Option<StoredUser> {
        self.locate(id).map(|entry| self.user(entry.who))
    }

    /// Where the user with this id sorts, if it exists now.
    pub fn locate(&self, id: &str) -> Option<Entry> {
        if let Some(&slot) = self.kept_ids.get(id) {
            let user = self.kept[slot as usize].as_ref()?;
            return Some(Entry {
                created_at: user.created_at,
                who: Who::Kept(slot),
            });
        }
        let index = super::random::clerk_id_index(id, "user")?;
        let index = u32::try_from(index).ok()?;
        let keys = self.generated.get(index as usize)?;
        let who = Who::Generated(index);
        (!self.gone.contains(&index) && self.id(who) == id).then_some(Entry {
            created_at: keys.created_at,
            who,
        })
    }

    /// The user, generated again when its JSON is not kept.
    pub fn user(&self, who: Who) -> StoredUser {
        match who {
            Who::Kept(slot) => self.kept_user(slot).clone(),
            Who::Generated(i) => {
                let keys = self.generated[i as usize];
                let json = self.json(who);
                StoredUser {
                    id: id_in(&json).to_string(),
                    created_at: keys.created_at,
                    updated_at: keys.updated_at,
                    last_sign_in_at: optional(keys.last_sign_in_at),
                    last_active_at: optional(keys.last_active_at),
                    json,
                }
            }
        }
    }

    /// The user's JSON as the API answers it.
    pub fn json(&self, who: Who) -> Arc<str> {
        match who {
            Who::Kept(slot) => self.kept_user(slot).json.clone(),
            Who::Generated(i) => match &self.generated_json {
                Some(json) => json[i as usize].clone(),
                None => {
                    let population = self.population.as_ref().expect("generated users");
                    let user = population.user(i as usize);
                    Arc::from(serde_json::to_string(&user).expect("generated users serialize"))
                }
            },
        }
    }

    pub fn id(&self, who: Who) -> Cow<'_, str> {
        match who {
            Who::Kept(slot) => Cow::Borrowed(&self.kept_user(slot).id),
            Who::Generated(_) => Cow::Owned(id_in(&self.json(who)).to_string()),
        }
    }

    pub fn updated_at(&self, who: Who) -> i64 {
        match who {
            Who::Kept(slot) => self.kept_user(slot).updated_at,
            Who::Generated(i) => self.generated[i as usize].updated_at,
        }
    }

    pub fn last_sign_in_at(&self, who: Who) -> Option<i64> {
        match who {
            Who::Kept(slot) => self.kept_user(slot).last_sign_in_at,
            Who::Generated(i) => optional(self.generated[i as usize].last_sign_in_at),
        }
    }

    pub fn last_active_at(&self, who: Who) -> Option<i64> {
        match who {
            Who::Kept(slot) => self.kept_user(slot).last_active_at,
            Who::Generated(i) => optional(self.generated[i as usize].last_active_at),
        }
    }

    fn kept_user(&self, slot: u32) -> &StoredUser {
        self.kept[slot as usize]
            .as_ref()
            .expect("the order only holds live kept users")
    }

    /// Orders two users by id. Generated users' ids start with their index in fixed-width
    /// base62, so two of them compare by index without generating either.
    pub fn cmp_ids(&self, a: Who, b: Who) -> Ordering {
        match (a, b) {
            (Who::Generated(a), Who::Generated(b)) => a.cmp(&b),
            _ => self.id(a).cmp(&self.id(b)),
        }
    }

    /// Orders two entries as the store does: `created_at`, then id.
    pub fn cmp_entries(&self, a: &Entry, b: &Entry) -> Ordering {
        a.created_at
            .cmp(&b.created_at)
            .then_with(|| self.cmp_ids(a.who, b.who))
    }

    /// Where this entry is in the order (it must be in it).
    pub fn position(&self, entry: Entry) -> Option<usize> {
        let from = self
            .order
            .partition_point(|e| e.created_at < entry.created_at);
        self.order[from..]
            .iter()
            .take_while(|e| e.created_at == entry.created_at)
            .position(|e| e.who == entry.who)
            .map(|at| from + at)
    }

    /// Every user's id, oldest first (generating each one whose JSON is not kept).
    pub fn ids(&self) -> Vec<String> {
        self.order
            .iter()
            .map(|e| self.id(e.who).into_owned())
            .collect()
    }

    /// Inserts or replaces a user.
    pub fn put(&mut self, user: StoredUser) {
        let created_at = user.created_at;
        let existing = self.locate(&user.id);
        let slot = match existing.map(|e| e.who) {
            Some(Who::Kept(slot)) => {
                self.kept[slot as usize] = Some(user);
                slot
            }
            other => {
                if let Some(Who::Generated(i)) = other {
                    self.gone.insert(i);
                }
                let slot = u32::try_from(self.kept.len()).expect("fewer than 2^32 changes");
                self.kept_ids.insert(user.id.clone(), slot);
                self.kept.push(Some(user));
                slot
            }
        };
        let entry = Entry {
            created_at,
            who: Who::Kept(slot),
        };
        match existing.and_then(|e| Some((e, self.position(e)?))) {
            Some((old, at)) if old.created_at == created_at => self.order[at] = entry,
            found => {
                if let Some((_, at)) = found {
                    self.order.remove(at);
                }
                let at = self
                    .order
                    .partition_point(|e| self.cmp_entries(e, &entry) == Ordering::Less);
                self.order.insert(at, entry);
            }
        }
    }

    /// Removes a user; returns whether it existed.
    pub fn remove(&mut self, id: &str) -> bool {
        let Some(entry) = self.locate(id) else {
            return false;
        };
        if let Some(at) = self.position(entry) {
            self.order.remove(at);
        }
        match entry.who {
            Who::Generated(i) => {
                self.gone.insert(i);
            }
            Who::Kept(slot) => {
                self.kept[slot as usize] = None;
                self.kept_ids.remove(id);
            }
        }
        true
    }
}

/// The `id` of a user's JSON text, without parsing the rest.
fn id_in(json: &str) -> &str {
    #[derive(serde::Deserialize)]
    struct Id<'a> {
        #[serde(borrow)]
        id: &'a str,
    }
    serde_json::from_str::<Id>(json)
        .expect("a stored user has a plain string id")
        .id
}

#[cfg(test)]
mod tests;
