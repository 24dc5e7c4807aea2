//! A B2B shape for the fake's population: one organization per ten users, most of them small and
//! a few large (sizes fall off as a power of the organization's rank), members drawn from the
//! whole population, so users belong to none, one or several organizations; admins and members
//! with Clerk's system permissions; organization metadata with a plan and seats.
//! Deterministic: the same population gives the same organizations and memberships.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::{Value, json};

use super::generator::Population;
use super::random::{clerk_id, weighted};

/// Users per organization, on average over the population.
const USERS_PER_ORGANIZATION: usize = 10;
/// The largest organization holds this share of the population; the `r`-th largest holds
/// `LARGEST_SHARE / r^SIZE_EXPONENT` of it (at 1M users: 20,000 members at the top, a median of
/// about 3, about one membership per user in all).
const LARGEST_SHARE: f64 = 0.02;
const SIZE_EXPONENT: f64 = 0.8;
const SPAN_MS: i64 = 3 * 365 * 86_400_000;

pub const ADMIN_PERMISSIONS: &[&str] = &[
    "org:sys_domains:manage",
    "org:sys_domains:read",
    "org:sys_memberships:manage",
    "org:sys_memberships:read",
    "org:sys_profile:delete",
    "org:sys_profile:manage",
];
pub const MEMBER_PERMISSIONS: &[&str] = &["org:sys_memberships:read"];

/// One generated organization (its JSON is made by [`organization_json`]).
#[derive(Debug, Clone, PartialEq)]
pub struct GeneratedOrganization {
    pub id: String,
    pub name: String,
    pub slug: String,
    pub created_at: i64,
    pub updated_at: i64,
    pub max_allowed_memberships: i64,
    pub public_metadata: Value,
    pub private_metadata: Value,
    /// Indices into the population of its members, the first an admin.
    pub members: Vec<usize>,
    pub admins: usize,
}

const WORDS: &[&str] = &[
    "Acme",
    "Globex",
    "Initech",
    "Umbrella",
    "Hooli",
    "Vandelay",
    "Stark",
    "Wayne",
    "Tyrell",
    "Cyberdyne",
    "Soylent",
    "Wonka",
    "Gringotts",
    "Monarch",
    "Aperture",
    "Oscorp",
];
const SUFFIXES: &[&str] = &[
    "Labs", "Corp", "Systems", "Group", "Studio", "Health", "Bank",
];
const PLANS: &[(&str, u32)] = &[
    ("free", 50),
    ("starter", 25),
    ("business", 17),
    ("enterprise", 8),
];

/// How many organizations the population has.
pub fn organization_count(population: &Population) -> usize {
    population.count / USERS_PER_ORGANIZATION
}

/// Organization `index`, `0 <= index < organization_count`, ordered by `created_at`.
pub fn generate_organization(population: &Population, index: usize) -> GeneratedOrganization {
    let count = organization_count(population).max(1);
    let mut rng = ChaCha8Rng::seed_from_u64(
        population.seed ^ 0x6F72_6773 ^ (index as u64).wrapping_mul(0xD6E8_FEB8_6659_FD93),
    );
    // Sizes by rank: a few large organizations, a long tail of small ones. The rank is a
    // shuffle of the index, so large ones are spread over time.
    let rank = (index as u64).wrapping_mul(0x9E37_79B9) % count as u64;
    let largest = (population.count as f64 * LARGEST_SHARE).max(1.0);
    let size = ((largest / (rank as f64 + 1.0).powf(SIZE_EXPONENT)).round() as usize)
        .clamp(1, population.count);
    let mut chosen = std::collections::HashSet::with_capacity(size);
    let mut members = Vec::with_capacity(size);
    while members.len() < size {
        let user = rng.random_range(0..population.count);
        if chosen.insert(user) {
            members.push(user);
        }
    }
    let admins = 1 + members.len() / 20;
    let slot = SPAN_MS / count as i64;
    let created_at =
        population.anchor_ms - SPAN_MS + index as i64 * slot + rng.random_range(0..slot.max(1));
    let updated_at =
        created_at + rng.random_range(0..=(population.anchor_ms - created_at).min(90 * 86_400_000));
    let name = format!(
        "{} {} {index}",
        WORDS[rng.random_range(0..WORDS.len())],
        SUFFIXES[rng.random_range(0..SUFFIXES.len())]
    );
    let slug = name.to_lowercase().replace(' ', "-");
    let plan = if members.len() >= 100 {
        "enterprise"
    } else {
        weighted(&mut rng, PLANS)
    };
    let seats = members.len() as i64 + rng.random_range(0..10);
    GeneratedOrganization {
        id: clerk_id(&mut rng, "org", index),
        name,
        slug,
        created_at,
        updated_at,
        max_allowed_memberships: if plan == "free" { 5.max(seats) } else { 0 },
        public_metadata: json!({ "plan": plan, "seats": seats, "industry": weighted(&mut rng, &[("software", 40), ("finance", 20), ("health", 15), ("retail", 25)]) }),
        private_metadata: json!({ "mrr": if plan == "free" { 0 } else { seats * rng.random_range(8..40) }, "account_manager": format!("am{}", rng.random_range(1..20)) }),
        members,
        admins,
    }
}

/// The organization's Clerk JSON (`components.schemas.Organization`), with `members_count`.
pub fn organization_json(org: &GeneratedOrganization, members_count: usize) -> Value {
    json!({
        "object": "organization",
        "id": org.id,
        "name": org.name,
        "slug": org.slug,
        "image_url": "https://img.clerk.com/eyJ0eXBlIjoiZGVmYXVsdCJ9",
        "has_image": false,
        "members_count": members_count,
        "missing_member_with_elevated_permissions": false,
        "pending_invitations_count": 0,
        "max_allowed_memberships": org.max_allowed_memberships,
        "admin_delete_enabled": true,
        "public_metadata": org.public_metadata,
        "private_metadata": org.private_metadata,
        "created_at": org.created_at,
        "updated_at": org.updated_at,
    })
}

/// The id of the membership of the `k`-th member of organization `org_index`.
pub fn membership_id(population: &Population, org_index: usize, k: usize) -> String {
    let mut rng =
        ChaCha8Rng::seed_from_u64(population.seed ^ ((org_index as u64) << 20 | k as u64));
    clerk_id(&mut rng, "orgmem", org_index * 4096 + k)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn organizations_are_deterministic_skewed_and_overlapping() {
        let population = Population::new(20_000);
        let count = organization_count(&population);
        assert_eq!(count, 2_000);
        let orgs: Vec<GeneratedOrganization> = (0..count)
            .map(|i| generate_organization(&population, i))
            .collect();
        assert_eq!(orgs[7], generate_organization(&population, 7));
        let mut sizes: Vec<usize> = orgs.iter().map(|o| o.members.len()).collect();
        sizes.sort_unstable();
        let median = sizes[sizes.len() / 2];
        let largest = *sizes.last().unwrap();
        assert!(median <= 3, "most organizations are small: median {median}");
        assert!(largest >= 300, "a few are large: {largest}");
        // Users in none, one and several organizations.
        let mut per_user = vec![0usize; population.count];
        for org in &orgs {
            let mut seen = org.members.clone();
            seen.sort_unstable();
            seen.dedup();
            assert_eq!(
                seen.len(),
                org.members.len(),
                "no user twice in one organization"
            );
            for &user in &org.members {
                per_user[user] += 1;
            }
        }
        let none = per_user.iter().filter(|&&n| n == 0).count();
        let several = per_user.iter().filter(|&&n| n >= 2).count();
        assert!(none > 0 && several > 0, "none {none}, several {several}");
        // Ids are unique and Clerk-shaped; creation times increase.
        let ids: std::collections::HashSet<&str> = orgs.iter().map(|o| o.id.as_str()).collect();
        assert_eq!(ids.len(), count);
        assert!(
            orgs.iter()
                .all(|o| crate::organization::is_clerk_id(&o.id, "org_"))
        );
        assert!(orgs.windows(2).all(|w| w[0].created_at <= w[1].created_at));
        let mem = membership_id(&population, 3, 1);
        assert!(crate::organization::is_clerk_id(&mem, "orgmem_"), "{mem}");
        assert_ne!(mem, membership_id(&population, 1, 3));
    }
}
