//! The store against a plain reference: every live user as JSON, filtered and sorted naively.
//! Both ways of holding generated users (JSON kept, or generated per page) must answer every
//! list request, lookup and change exactly as the reference does.

use std::cmp::Ordering;

use serde_json::{Value, json};

use super::super::generator::Population;
use super::super::user_listing::{Selection, parse_list_params};
use super::{StoredUser, UserStore};

/// 1,200 users with a bulk import: 240 of them share one `created_at`.
fn population() -> Population {
    Population::new(1_200).with_bulk_import()
}

/// The reference: every live user's JSON, in no particular order.
struct Reference {
    users: Vec<Value>,
}

impl Reference {
    fn put(&mut self, user: &Value) {
        self.users.retain(|u| u["id"] != user["id"]);
        self.users.push(user.clone());
    }

    fn remove(&mut self, id: &str) {
        self.users.retain(|u| u["id"] != id);
    }

    /// The page's ids for a query string, the way Clerk's listing is specified.
    fn page(&self, query: &str) -> Vec<String> {
        let mut limit = 10;
        let mut offset = 0;
        let (mut field, mut descending) = ("created_at".to_string(), true);
        let mut after_id = None;
        let mut ids: Vec<String> = Vec::new();
        let mut windows: Vec<(String, bool, i64)> = Vec::new();
        for (key, value) in form_urlencoded::parse(query.as_bytes()) {
            match key.as_ref() {
                "limit" => limit = value.parse().unwrap(),
                "offset" => offset = value.parse().unwrap(),
                "order_by" => {
                    descending = value.starts_with('-');
                    field = value.trim_start_matches(['-', '+']).to_string();
                }
                "starting_after" => after_id = Some(value.to_string()),
                "user_id" => ids.push(value.to_string()),
                key => {
                    let (name, side) = key.rsplit_once('_').unwrap();
                    windows.push((name.to_string(), side == "after", value.parse().unwrap()));
                }
            }
        }
        let mut selected: Vec<&Value> = (self.users.iter())
            .filter(|u| ids.is_empty() || ids.iter().any(|id| u["id"] == id.as_str()))
            .filter(|u| {
                windows.iter().all(|(name, after, ms)| {
                    u[name.as_str()]
                        .as_i64()
                        .is_some_and(|t| if *after { t > *ms } else { t < *ms })
                })
            })
            .collect();
        let key = |u: &Value| -> (bool, Value) {
            let value = match field.as_str() {
                "email_address" => u["email_addresses"][0]["email_address"].to_string().into(),
                "first_name" => u["first_name"].to_string().into(),
                name => u[name].clone(),
            };
            (value.is_null(), value)
        };
        let cmp_values = |a: &Value, b: &Value| match (a, b) {
            (Value::Number(a), Value::Number(b)) => a.as_i64().cmp(&b.as_i64()),
            (Value::String(a), Value::String(b)) => a.cmp(b),
            _ => Ordering::Equal,
        };
        selected.sort_by(|a, b| {
            let ((na, ka), (nb, kb)) = (key(a), key(b));
            let order = na
                .cmp(&nb)
                .then_with(|| cmp_values(&ka, &kb))
                .then_with(|| a["id"].as_str().cmp(&b["id"].as_str()));
            if descending { order.reverse() } else { order }
        });
        let start = match after_id {
            Some(id) => {
                selected
                    .iter()
                    .position(|u| u["id"] == id.as_str())
                    .unwrap()
                    + 1
            }
            None => offset,
        };
        (selected.iter().skip(start).take(limit))
            .map(|u| u["id"].as_str().unwrap().to_string())
            .collect()
    }
}

fn store_page(store: &UserStore, query: &str) -> Vec<String> {
    let params = parse_list_params(Some(query.to_string())).unwrap_or_else(|_| panic!("{query}"));
    let selected = Selection::of(store, &params);
    let start = match &params.starting_after {
        Some(id) => selected.position(store, id).expect("cursor user exists") + 1,
        None => params.offset,
    };
    (selected.page(store, start, params.limit).iter())
        .map(|json| {
            serde_json::from_str::<Value>(json).unwrap()["id"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect()
}

fn queries(reference: &Reference) -> Vec<String> {
    let mut ids: Vec<&Value> = reference.users.iter().collect();
    ids.sort_by_key(|u| {
        (
            u["created_at"].as_i64(),
            u["id"].as_str().map(str::to_string),
        )
    });
    let id = |i: usize| ids[i]["id"].as_str().unwrap().to_string();
    let tie = ids[700]["created_at"].as_i64().unwrap();
    let mut queries = vec![
        "limit=500&order_by=created_at".to_string(),
        "limit=500&order_by=created_at&offset=500".into(),
        "limit=37&order_by=-created_at&offset=650".into(),
        format!("limit=100&order_by=created_at&created_at_after={tie}"),
        format!(
            "limit=100&order_by=created_at&created_at_before={}",
            tie + 1
        ),
        format!(
            "limit=100&order_by=-created_at&created_at_before={}&created_at_after={}",
            tie + 1,
            tie - 1
        ),
        "limit=50&order_by=-updated_at".into(),
        "limit=50&order_by=-updated_at&offset=1000".into(),
        "limit=20&order_by=updated_at&offset=5000".into(),
        "limit=100&order_by=-last_sign_in_at&offset=1100".into(),
        "limit=100&order_by=last_sign_in_at&offset=1100".into(),
        "limit=30&order_by=-last_active_at&offset=3".into(),
        format!(
            "limit=500&order_by=-last_sign_in_at&last_sign_in_at_after={}",
            tie
        ),
        format!(
            "limit=500&order_by=created_at&last_active_at_before={}",
            tie
        ),
        "limit=40&order_by=first_name&offset=100".into(),
        "limit=40&order_by=-email_address".into(),
        format!(
            "limit=10&user_id={}&user_id={}&user_id=user_nobody&user_id={}",
            id(3),
            id(900),
            id(3)
        ),
        format!(
            "limit=10&order_by=-updated_at&user_id={}&user_id={}",
            id(650),
            id(5)
        ),
    ];
    for at in [0, 599, 600, 601, 700, 839, 840, ids.len() - 1] {
        queries.push(format!(
            "limit=77&order_by=created_at&starting_after={}",
            id(at)
        ));
        queries.push(format!(
            "limit=77&order_by=-created_at&starting_after={}",
            id(at)
        ));
    }
    queries
}

fn assert_agree(stores: &[&UserStore], reference: &Reference) {
    for store in stores {
        assert_eq!(store.len(), reference.users.len());
        for query in queries(reference) {
            assert_eq!(store_page(store, &query), reference.page(&query), "{query}");
        }
        for user in reference.users.iter().step_by(37) {
            let got = store
                .get(user["id"].as_str().unwrap())
                .expect("live user found");
            assert_eq!(serde_json::from_str::<Value>(&got.json).unwrap(), *user);
        }
        let mut sorted: Vec<&Value> = reference.users.iter().collect();
        sorted.sort_by_key(|u| {
            (
                u["created_at"].as_i64(),
                u["id"].as_str().map(str::to_string),
            )
        });
        let expected: Vec<&str> = sorted.iter().map(|u| u["id"].as_str().unwrap()).collect();
        assert_eq!(store.ids(), expected);
    }
}

#[test]
fn generated_pages_and_kept_json_answer_as_the_reference_before_and_after_changes() {
    let population = population();
    let mut kept = UserStore::generate(&population, usize::MAX);
    let mut generated = UserStore::generate(&population, 0);
    assert!(kept.generated_json.is_some() && generated.generated_json.is_none());
    let mut reference = Reference {
        users: (0..population.count).map(|i| population.user(i)).collect(),
    };
    assert_agree(&[&kept, &generated], &reference);

    let tie = population.user(700)["created_at"].as_i64().unwrap();
    let mut changed_in_place = population.user(650);
    changed_in_place["public_metadata"] = json!({"plan": "changed"});
    changed_in_place["updated_at"] = json!(9_000_000_000_000i64);
    let mut moved = population.user(10);
    moved["created_at"] = json!(tie);
    let mut joins_the_tie = population.user(20);
    joins_the_tie["id"] = json!("user_0000AZnew");
    joins_the_tie["created_at"] = json!(tie);
    joins_the_tie["last_sign_in_at"] = Value::Null;
    let mut newest = joins_the_tie.clone();
    newest["id"] = json!("user_zzzzzzzzzz");
    newest["created_at"] = json!(9_000_000_000_000i64);
    let mut moved_again = joins_the_tie.clone();
    moved_again["created_at"] = json!(5);
    let gone = [
        population.user(701)["id"].as_str().unwrap().to_string(),
        population.user(0)["id"].as_str().unwrap().to_string(),
        "user_zzzzzzzzzz".to_string(),
    ];
    let changes = [
        &changed_in_place,
        &moved,
        &joins_the_tie,
        &newest,
        &moved_again,
    ];
    for store in [&mut kept, &mut generated] {
        for user in changes {
            store.put(StoredUser::from_json(user).unwrap());
        }
        for id in &gone {
            assert!(store.remove(id));
            assert!(!store.remove(id), "a removed user is gone");
            assert!(store.get(id).is_none());
        }
        // An id that looks generated but is not the generated user's is not found.
        let mut forged = gone[1].clone();
        forged.replace_range(forged.len() - 3.., "abc");
        assert!(store.get(&forged).is_none());
    }
    for user in changes {
        reference.put(user);
    }
    for id in &gone {
        reference.remove(id);
    }
    assert_agree(&[&kept, &generated], &reference);
}
