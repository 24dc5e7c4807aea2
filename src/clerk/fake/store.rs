//! The fake's user table: users in `created_at` order with an id index, serialized once.

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::Value;

use super::generator::Population;

/// One stored user: the fields the fake sorts and filters on, and its JSON.
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

/// Users ordered by `(created_at, id)`, as Clerk's default listing order (reversed) implies.
#[derive(Debug, Default)]
pub struct UserStore {
    users: Vec<StoredUser>,
    positions: HashMap<String, usize>,
}

impl UserStore {
    /// Generates the population on all cores; user `i` is the same whatever the split.
    pub fn generate(population: &Population) -> UserStore {
        let threads = std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .max(1);
        let chunk = population.count.div_ceil(threads).max(1);
        let mut users: Vec<StoredUser> = Vec::with_capacity(population.count);
        std::thread::scope(|scope| {
            let handles: Vec<_> = (0..population.count)
                .step_by(chunk)
                .map(|start| {
                    scope.spawn(move || {
                        (start..(start + chunk).min(population.count))
                            .map(|i| {
                                StoredUser::from_json(&population.user(i))
                                    .expect("generated users are complete")
                            })
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            for handle in handles {
                users.extend(handle.join().expect("generator thread panicked"));
            }
        });
        let mut store = UserStore {
            users,
            positions: HashMap::new(),
        };
        store.reindex();
        store
    }

    fn reindex(&mut self) {
        self.users
            .sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
        self.positions = self
            .users
            .iter()
            .enumerate()
            .map(|(i, u)| (u.id.clone(), i))
            .collect();
    }

    pub fn len(&self) -> usize {
        self.users.len()
    }

    pub fn get(&self, id: &str) -> Option<&StoredUser> {
        self.positions.get(id).map(|&i| &self.users[i])
    }

    /// All users in ascending `created_at` order.
    pub fn ascending(&self) -> &[StoredUser] {
        &self.users
    }

    /// Inserts or replaces a user.
    pub fn put(&mut self, user: StoredUser) {
        match self.positions.get(&user.id) {
            Some(&i) if self.users[i].created_at == user.created_at => self.users[i] = user,
            _ => {
                self.users.retain(|u| u.id != user.id);
                self.users.push(user);
                self.reindex();
            }
        }
    }

    /// Removes a user; returns whether it existed.
    pub fn remove(&mut self, id: &str) -> bool {
        if self.positions.contains_key(id) {
            self.users.retain(|u| u.id != id);
            self.reindex();
            true
        } else {
            false
        }
    }
}
