//! A deterministic population of realistic Clerk users.
//!
//! User `i` of seed `s` is always the same JSON, whatever else is generated, so a population can
//! be generated in parallel, on demand, and reproduced by tests. Values are skewed the way real
//! populations are (most users are on the free plan, a few are platinum), keys are sparse, some
//! values are nested objects or arrays, a few keys hold explicit `null`, and `membership_tier` has
//! a deliberate type conflict (a number for ~1% of users) for the field catalog to find.

use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::random::{chance, clerk_id, weighted};
use serde_json::{Map, Value, json};

/// 2026-11-01T00:00:00Z: the default anchor, so tests see the same population on every day.
pub const DEFAULT_ANCHOR_MS: i64 = 1_793_491_200_000;
const DAY_MS: i64 = 86_400_000;
/// Users were created over the three years before the anchor.
const SPAN_MS: i64 = 3 * 365 * DAY_MS;

/// Parameters of a generated population.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Population {
    pub seed: u64,
    pub count: usize,
    /// "Now" for the population: every timestamp is before it.
    pub anchor_ms: i64,
    /// Users created by one bulk import share one `created_at` (see [`bulk_import`]).
    pub bulk_import: bool,
    /// The fake also serves organizations and memberships (one organization per ten users).
    pub organizations: bool,
}

impl Population {
    pub fn new(count: usize) -> Self {
        Population {
            seed: 42,
            count,
            anchor_ms: DEFAULT_ANCHOR_MS,
            bulk_import: false,
            organizations: false,
        }
    }

    /// The same population in organizations (docs/ORGANIZATIONS.md: the fake's B2B shape).
    pub fn with_organizations(mut self) -> Self {
        self.organizations = true;
        self
    }

    /// The same population with a bulk import in its middle.
    pub fn with_bulk_import(mut self) -> Self {
        self.bulk_import = true;
        self
    }

    /// User `index`, `0 <= index < count`, ordered by `created_at` ascending.
    pub fn user(&self, index: usize) -> Value {
        generate_user(self, index)
    }
}

const FIRST_NAMES: &[&str] = &[
    "Olivia", "Liam", "Emma", "Noah", "Ava", "Lukas", "Mia", "Elias", "Sofia", "Mateo", "Yuki",
    "Hana", "Aarav", "Priya", "Chloé", "Louis", "Zoe", "Ben", "Léa", "Jonas", "Amara", "Kofi",
    "Ana", "João",
];
const LAST_NAMES: &[&str] = &[
    "Smith",
    "Müller",
    "Garcia",
    "Johnson",
    "Schmidt",
    "Martin",
    "Brown",
    "Tanaka",
    "Kumar",
    "Silva",
    "Dubois",
    "Rossi",
    "Nguyen",
    "Kowalski",
    "O'Brien",
    "Andersson",
    "Okafor",
    "Lee",
    "Schneider",
    "Costa",
];
const FREE_MAIL: &[(&str, u32)] = &[
    ("gmail.com", 40),
    ("yahoo.com", 10),
    ("outlook.com", 10),
    ("icloud.com", 6),
    ("proton.me", 3),
    ("gmx.de", 3),
];
const COMPANIES: &[&str] = &[
    "acme.io",
    "globex.com",
    "initech.com",
    "umbrella.co",
    "hooli.xyz",
    "stark.industries",
];
const GENRES: &[(&str, u32)] = &[
    ("fiction", 30),
    ("mystery", 20),
    ("sci-fi", 16),
    ("fantasy", 14),
    ("romance", 10),
    ("thriller", 9),
    ("biography", 5),
    ("history", 4),
    ("poetry", 2),
    ("horror", 3),
];
const COUNTRIES: &[(&str, u32)] = &[
    ("US", 35),
    ("DE", 12),
    ("GB", 10),
    ("FR", 8),
    ("IN", 8),
    ("BR", 6),
    ("JP", 5),
    ("CA", 5),
    ("AU", 4),
    ("NG", 3),
    ("SE", 2),
    ("PL", 2),
];
const TIERS: &[(&str, u32)] = &[
    ("bronze", 45),
    ("silver", 30),
    ("gold", 17),
    ("platinum", 6),
];
const PLANS: &[(&str, u32)] = &[("free", 55), ("pro", 25), ("team", 12), ("enterprise", 8)];
const TAGS: &[&str] = &[
    "early_adopter",
    "vip",
    "churn_risk",
    "newsletter",
    "power_user",
];
/// The users of one bulk import (one `created_at`) mid-population: longer than Clerk's largest
/// page (500) from 3,000 users, a fifth of smaller ones from 1,000.
pub fn bulk_import(count: usize) -> Option<std::ops::Range<usize>> {
    (count >= 1_000).then(|| {
        let start = count / 2;
        start..start + (count / 5).min(600)
    })
}

fn generate_user(population: &Population, index: usize) -> Value {
    let mut rng = ChaCha8Rng::seed_from_u64(
        population.seed ^ (index as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15),
    );
    let count = population.count.max(1) as i64;
    // Increasing with the index, with jitter inside each user's slot; a bulk import ties a run.
    let slot = SPAN_MS / count;
    let mut created_at =
        population.anchor_ms - SPAN_MS + index as i64 * slot + rng.random_range(0..slot.max(1));
    if let Some(import) = bulk_import(population.count).filter(|_| population.bulk_import)
        && import.contains(&index)
    {
        created_at = population.anchor_ms - SPAN_MS + import.start as i64 * slot;
    }
    let age = population.anchor_ms - created_at;
    let updated_at = created_at + rng.random_range(0..=age.min(400 * DAY_MS));
    let first = *FIRST_NAMES.choose(&mut rng).expect("non-empty");
    let last = *LAST_NAMES.choose(&mut rng).expect("non-empty");
    let local = format!("{}.{}{}", ascii_lower(first), ascii_lower(last), index);
    let mut emails = Vec::new();
    let primary_domain = if chance(&mut rng, 0.7) {
        weighted(&mut rng, FREE_MAIL).to_string()
    } else {
        COMPANIES.choose(&mut rng).expect("non-empty").to_string()
    };
    emails.push(format!("{local}@{primary_domain}"));
    for _ in 0..rng.random_range(0..=2) {
        if chance(&mut rng, 0.4) {
            let domain = COMPANIES.choose(&mut rng).expect("non-empty");
            emails.push(format!("{}{}@{domain}", ascii_lower(first), index));
        }
    }
    let email_objects: Vec<Value> = emails
        .iter()
        .enumerate()
        .map(|(n, address)| {
            json!({
                "id": clerk_id(&mut rng, "idn", index * 4 + n),
                "object": "email_address",
                "email_address": address,
                "reserved": false,
                "verification": {"object": "verification_otp", "status": "verified", "strategy": "email_code", "attempts": 1, "expire_at": null},
                "linked_to": [],
                "created_at": created_at,
                "updated_at": created_at,
            })
        })
        .collect();
    let primary_email_id = email_objects[0]["id"].clone();
    let phones: Vec<Value> = if chance(&mut rng, 0.3) {
        vec![json!({
            "id": clerk_id(&mut rng, "idn", index * 4 + 3),
            "object": "phone_number",
            "phone_number": format!("+1555{:07}", index % 10_000_000),
            "reserved_for_second_factor": false,
            "reserved": false,
            "verification": {"object": "verification_otp", "status": "verified", "strategy": "phone_code", "attempts": 1, "expire_at": null},
            "linked_to": [],
            "created_at": created_at,
            "updated_at": created_at,
        })]
    } else {
        Vec::new()
    };
    let last_sign_in_at = if chance(&mut rng, 0.85) {
        Value::from(updated_at.max(population.anchor_ms - rng.random_range(0..age.max(1))))
    } else {
        Value::Null
    };
    let last_active_at = match last_sign_in_at.as_i64() {
        Some(ms) => Value::from(
            (ms + rng.random_range(0..5 * DAY_MS)).min(population.anchor_ms) / DAY_MS * DAY_MS,
        ),
        None => Value::Null,
    };
    let two_factor = chance(&mut rng, 0.2);
    let has_image = chance(&mut rng, 0.5);
    let username = if chance(&mut rng, 0.6) {
        Value::from(format!(
            "{}_{}{}",
            ascii_lower(first),
            ascii_lower(last),
            index
        ))
    } else {
        Value::Null
    };
    let mut user = json!({
        "id": clerk_id(&mut rng, "user", index),
        "object": "user",
        "external_id": if chance(&mut rng, 0.3) { Value::from(format!("ext_{index}")) } else { Value::Null },
        "primary_email_address_id": primary_email_id,
        "primary_phone_number_id": phones.first().map(|p| p["id"].clone()).unwrap_or(Value::Null),
        "primary_web3_wallet_id": null,
        "username": username,
        "first_name": if chance(&mut rng, 0.95) { Value::from(first) } else { Value::Null },
        "last_name": if chance(&mut rng, 0.93) { Value::from(last) } else { Value::Null },
        "image_url": format!("https://img.clerk.com/{}", index),
        "has_image": has_image,
        "public_metadata": public_metadata(&mut rng),
        "private_metadata": private_metadata(&mut rng),
        "unsafe_metadata": unsafe_metadata(&mut rng),
        "email_addresses": email_objects,
        "phone_numbers": phones,
        "web3_wallets": [],
        "passkeys": [],
        "password_enabled": chance(&mut rng, 0.8),
        "two_factor_enabled": two_factor,
        "totp_enabled": two_factor,
        "backup_code_enabled": false,
        "mfa_enabled_at": if two_factor { Value::from(created_at) } else { Value::Null },
        "mfa_disabled_at": null,
        "external_accounts": [],
        "saml_accounts": [],
        "enterprise_accounts": [],
        "last_sign_in_at": last_sign_in_at,
        "banned": chance(&mut rng, 0.01),
        "locked": chance(&mut rng, 0.005),
        "lockout_expires_in_seconds": null,
        "verification_attempts_remaining": 100,
        "created_at": created_at,
        "updated_at": updated_at,
        "delete_self_enabled": true,
        "create_organization_enabled": true,
        "create_organizations_limit": null,
        "last_active_at": last_active_at,
        "legal_accepted_at": null,
    });
    identities(population, index, &mut user);
    user
}

const LOCALES: &[(&str, u32)] = &[
    ("en-US", 45),
    ("en-GB", 12),
    ("de-DE", 10),
    ("fr-FR", 9),
    ("es-ES", 8),
    ("pt-BR", 8),
    ("ja-JP", 5),
];
const OAUTH: &[(&str, f64)] = &[
    ("oauth_google", 0.4),
    ("oauth_github", 0.1),
    ("oauth_apple", 0.05),
    ("oauth_microsoft", 0.03),
];

/// How the user signs in: unverified and reserved addresses, OAuth and enterprise accounts, a
/// locale, passkeys, MFA methods, legal acceptance; from a stream of its own (the rest stays).
fn identities(population: &Population, index: usize, user: &mut Value) {
    let mut rng = ChaCha8Rng::seed_from_u64(
        population.seed ^ 0x1D_E4_71_7E ^ (index as u64).wrapping_mul(0xD6E8_FEB8_6659_FD93),
    );
    let created_at = user["created_at"].as_i64().unwrap_or_default();
    if let Some(addresses) = user["email_addresses"].as_array_mut() {
        for (n, address) in addresses.iter_mut().enumerate() {
            // Primary addresses are mostly verified, secondary ones less often.
            if chance(&mut rng, if n == 0 { 0.04 } else { 0.2 }) {
                address["verification"] = json!({"object": "verification_otp", "status": "unverified", "strategy": "email_code", "attempts": 0, "expire_at": created_at + 600_000});
            }
            address["reserved"] = (n > 0 && chance(&mut rng, 0.01)).into();
        }
    }
    let email = user["email_addresses"][0]["email_address"].clone();
    let mut accounts = Vec::new();
    for &(provider, probability) in OAUTH {
        if chance(&mut rng, probability) {
            accounts.push(json!({
                "object": "external_account",
                "id": clerk_id(&mut rng, "eac", index * 8 + accounts.len()),
                "provider": provider,
                "identification_id": clerk_id(&mut rng, "idn", index * 8 + 4 + accounts.len()),
                "provider_user_id": format!("{}", rng.random::<u64>()),
                "approved_scopes": "email profile openid",
                "email_address": email,
                "first_name": user["first_name"].as_str().unwrap_or(""),
                "last_name": user["last_name"].as_str().unwrap_or(""),
                "image_url": "",
                "username": null,
                "phone_number": null,
                "public_metadata": {},
                "label": null,
                "created_at": created_at,
                "updated_at": created_at,
                "verification": {"object": "verification_oauth", "status": "verified", "strategy": provider, "attempts": null, "expire_at": created_at + 600_000},
            }));
        }
    }
    user["external_accounts"] = accounts.into();
    if chance(&mut rng, 0.03) {
        let connection = format!("entconn_fake{:02}", rng.random_range(0..12));
        user["enterprise_accounts"] = json!([{
            "id": clerk_id(&mut rng, "enta", index),
            "object": "enterprise_account",
            "protocol": "saml",
            "provider": "saml_okta",
            "active": true,
            "email_address": email,
            "first_name": user["first_name"],
            "last_name": user["last_name"],
            "provider_user_id": format!("okta|{index}"),
            "enterprise_connection_id": connection,
            "public_metadata": {},
            "verification": {"object": "verification_saml", "status": "verified", "strategy": "saml", "attempts": null, "expire_at": null},
            "enterprise_connection": {
                "id": connection, "protocol": "saml", "provider": "saml_okta",
                "name": format!("Okta {connection}"), "logo_public_url": null,
                "domains": ["example.com"], "active": true, "sync_user_attributes": true,
                "allow_subdomains": false, "allow_idp_initiated": false,
                "disable_additional_identifications": false,
                "created_at": created_at, "updated_at": created_at,
            },
            "last_authenticated_at": user["last_sign_in_at"],
        }]);
    }
    user["locale"] = if chance(&mut rng, 0.7) {
        weighted(&mut rng, LOCALES).into()
    } else {
        Value::Null
    };
    let passkeys = if chance(&mut rng, 0.08) {
        rng.random_range(1..=2)
    } else {
        0
    };
    user["passkeys"] = (0..passkeys)
        .map(|n| {
            json!({
                "id": clerk_id(&mut rng, "pkey", index * 2 + n),
                "object": "passkey",
                "name": if n == 0 { "iCloud Keychain" } else { "YubiKey" },
                "last_used_at": user["last_sign_in_at"].as_i64().unwrap_or(created_at),
                "verification": {"object": "verification_passkey", "status": "verified", "strategy": "passkey", "attempts": null, "expire_at": null},
            })
        })
        .collect::<Vec<_>>()
        .into();
    let two_factor = user["two_factor_enabled"].as_bool().unwrap_or(false);
    user["backup_code_enabled"] = (two_factor && chance(&mut rng, 0.5)).into();
    if chance(&mut rng, 0.6) {
        user["legal_accepted_at"] = created_at.into();
    }
}

fn ascii_lower(name: &str) -> String {
    name.chars()
        .filter(char::is_ascii_alphabetic)
        .collect::<String>()
        .to_ascii_lowercase()
}

fn public_metadata(rng: &mut ChaCha8Rng) -> Value {
    let mut m = Map::new();
    if chance(rng, 0.9) {
        let tier = if chance(rng, 0.01) {
            Value::from(rng.random_range(1..=4))
        } else {
            Value::from(weighted(rng, TIERS))
        };
        m.insert("membership_tier".into(), tier);
    }
    if chance(rng, 0.95) {
        m.insert("plan_type".into(), weighted(rng, PLANS).into());
    }
    if chance(rng, 0.7) {
        let mut genres: Vec<&str> = Vec::new();
        for _ in 0..rng.random_range(0..=3) {
            let genre = weighted(rng, GENRES);
            if !genres.contains(&genre) {
                genres.push(genre);
            }
        }
        m.insert("favorite_genre".into(), json!(genres));
    }
    if chance(rng, 0.8) {
        let language = weighted(
            rng,
            &[("en", 50), ("de", 15), ("fr", 12), ("es", 13), ("ja", 10)],
        );
        m.insert(
            "user_preferences".into(),
            json!({
                "theme": weighted(rng, &[("dark", 45), ("light", 40), ("system", 15)]),
                "language": language,
                "notifications": {"email": chance(rng, 0.7), "sms": chance(rng, 0.15), "push": chance(rng, 0.5)},
                "newsletter": chance(rng, 0.35),
            }),
        );
    }
    if chance(rng, 0.92) {
        m.insert("country".into(), weighted(rng, COUNTRIES).into());
    }
    if chance(rng, 0.85) {
        // Exponential-ish: most users have few points.
        let points = (-(1.0 - rng.random::<f64>()).ln() * 800.0) as i64;
        m.insert("points".into(), points.min(50_000).into());
    }
    if chance(rng, 0.75) {
        // One in ten scores is a whole float (`50.0`), which tantivy indexes as an integer term.
        let score = if chance(rng, 0.1) {
            f64::from(rng.random_range(0..=10) * 10)
        } else {
            (rng.random::<f64>() * 1000.0).round() / 10.0
        };
        m.insert("score".into(), json!(score));
    }
    if chance(rng, 0.1) {
        m.insert("beta_cohort".into(), true.into());
    }
    if chance(rng, 0.6) {
        m.insert(
            "signup_source".into(),
            weighted(
                rng,
                &[
                    ("organic", 50),
                    ("ads", 25),
                    ("referral", 18),
                    ("partner", 7),
                ],
            )
            .into(),
        );
    }
    if chance(rng, 0.4) {
        let tags: Vec<&str> = TAGS.iter().copied().filter(|_| chance(rng, 0.3)).collect();
        m.insert("tags".into(), json!(tags));
    }
    if chance(rng, 0.05) {
        m.insert("referrer".into(), Value::Null);
    }
    if chance(rng, 0.05) {
        m.insert(
            "utm-campaign".into(),
            weighted(rng, &[("spring_sale", 3), ("black_friday", 2)]).into(),
        );
    }
    Value::Object(m)
}

fn private_metadata(rng: &mut ChaCha8Rng) -> Value {
    if chance(rng, 0.02) {
        return Value::Null;
    }
    let mut m = Map::new();
    if chance(rng, 0.8) {
        let ltv = ((-(1.0 - rng.random::<f64>()).ln() * 300.0) * 100.0).round() / 100.0;
        m.insert("ltv".into(), json!(ltv));
    }
    if chance(rng, 0.6) {
        m.insert(
            "stripe_customer_id".into(),
            format!("cus_{:014x}", rng.random::<u64>() >> 8).into(),
        );
    }
    if chance(rng, 0.3) {
        m.insert("seats".into(), rng.random_range(1..=500).into());
    }
    if chance(rng, 0.5) {
        m.insert(
            "risk_score".into(),
            json!((rng.random::<f64>() * 1000.0).round() / 1000.0),
        );
    }
    if chance(rng, 0.05) {
        m.insert(
            "internal_notes".into(),
            "asked for an invoice in EUR".into(),
        );
    }
    if chance(rng, 0.2) {
        m.insert(
            "ssn".into(),
            format!(
                "{:03}-{:02}-{:04}",
                rng.random_range(100..900),
                rng.random_range(10..99),
                rng.random_range(1000..9999)
            )
            .into(),
        );
    }
    if chance(rng, 0.3) {
        m.insert(
            "crm".into(),
            json!({
                "segment": weighted(rng, &[("smb", 60), ("mid", 30), ("ent", 10)]),
                "account_manager": if chance(rng, 0.3) { Value::from(*FIRST_NAMES.choose(rng).expect("non-empty")) } else { Value::Null },
            }),
        );
    }
    Value::Object(m)
}

fn unsafe_metadata(rng: &mut ChaCha8Rng) -> Value {
    let mut m = Map::new();
    if chance(rng, 0.7) {
        m.insert("onboarding_step".into(), rng.random_range(0..=6).into());
    }
    if chance(rng, 0.6) {
        m.insert("onboarding_complete".into(), chance(rng, 0.5).into());
    }
    if chance(rng, 0.2) {
        m.insert(
            "referral_code".into(),
            format!("REF{:05}", rng.random_range(0..100_000)).into(),
        );
    }
    if chance(rng, 0.3) {
        m.insert(
            "nickname".into(),
            (*FIRST_NAMES.choose(rng).expect("non-empty")).into(),
        );
    }
    Value::Object(m)
}

#[cfg(test)]
mod tests;
