use super::*;

#[test]
fn users_are_deterministic_unique_and_ordered_by_creation() {
    let population = Population::new(2_000);
    assert_eq!(population.user(7), population.user(7));
    let users: Vec<Value> = (0..population.count).map(|i| population.user(i)).collect();
    let ids: std::collections::HashSet<&str> =
        users.iter().map(|u| u["id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), users.len());
    for pair in users.windows(2) {
        assert!(pair[0]["created_at"].as_i64() < pair[1]["created_at"].as_i64());
    }
    // With a bulk import, a run longer than Clerk's largest page shares one creation time.
    let imported = Population::new(3_000).with_bulk_import();
    let times: Vec<i64> = (0..imported.count)
        .map(|i| imported.user(i)["created_at"].as_i64().unwrap())
        .collect();
    assert!(times.windows(2).all(|w| w[0] <= w[1]));
    let run = bulk_import(3_000).unwrap();
    assert!(run.len() > 500);
    assert!(times[run.clone()].iter().all(|&t| t == times[run.start]));
    assert!(times[run.start - 1] < times[run.start] && times[run.end] > times[run.start]);
    for user in &users {
        assert!(user["updated_at"].as_i64() >= user["created_at"].as_i64());
        assert!(user["updated_at"].as_i64().unwrap() <= population.anchor_ms);
    }
}

#[test]
fn population_has_skew_sparsity_nulls_and_a_type_conflict() {
    let population = Population::new(5_000);
    let users: Vec<Value> = (0..population.count).map(|i| population.user(i)).collect();
    let count = |f: &dyn Fn(&Value) -> bool| users.iter().filter(|u| f(u)).count();
    let free = count(&|u| u["public_metadata"]["plan_type"] == "free");
    let enterprise = count(&|u| u["public_metadata"]["plan_type"] == "enterprise");
    assert!(
        free > 4 * enterprise,
        "free {free} vs enterprise {enterprise}"
    );
    assert!(count(&|u| u["public_metadata"]["membership_tier"].is_number()) > 0);
    assert!(count(&|u| u["public_metadata"]["beta_cohort"] == true) < users.len() / 5);
    assert!(
        count(&|u| u["public_metadata"]
            .get("referrer")
            .is_some_and(Value::is_null))
            > 0
    );
    assert!(count(&|u| u["private_metadata"].is_null()) > 0);
    assert!(count(&|u| u["email_addresses"].as_array().unwrap().len() > 1) > 0);
    assert!(
        count(&|u| u["public_metadata"]["score"]
            .as_f64()
            .is_some_and(|s| s.fract() == 0.0))
            > 0
    );
}
