//! Re-sealing sensitive values under the active key (`Sync.ReencryptSensitive`): every user
//! sealed with another key is opened and sealed again, and written through the destination like
//! any other change, so it is durable and a newer version of a user written meanwhile wins as
//! usual. Old keys can be dropped from the ring afterwards.

use std::sync::Arc;

use super::destination::ChangeDestination;
use crate::auth::Sensitive;
use crate::change::{Change, ChangeSource, UserChange};
use crate::clerk::user_from_json;
use crate::error::Error;

/// Users re-sealed per write.
const BATCH: usize = 500;

/// What [`reseal_all`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resealed {
    pub users: u64,
    /// The index generation that holds every re-sealed user.
    pub generation: u64,
}

/// Re-seals every user sealed with a key other than the active one.
pub async fn reseal_all(
    sensitive: &Sensitive,
    destination: &ChangeDestination,
) -> Result<Resealed, Error> {
    let snapshot = destination.local_index().snapshot();
    let mut users = 0;
    let mut generation = snapshot.freshness.generation;
    let ring = sensitive.ring();
    let active = ring.active_id();
    for key_id in ring.ids().filter(|id| *id != active) {
        let addresses = snapshot.with_blind_token(&Sensitive::key_token(key_id))?;
        for batch in addresses.chunks(BATCH) {
            let mut changes: Vec<Change> = Vec::with_capacity(batch.len());
            for address in batch {
                let stored = snapshot.stored_at(*address)?;
                let Some(sealed) = stored.sealed else {
                    continue;
                };
                let user = user_from_json(&stored.raw_json)
                    .map_err(|e| Error::Internal(format!("a stored user does not parse: {e}")))?;
                let resealed = sensitive
                    .reseal(&user, &sealed)
                    .map_err(|e| Error::Internal(e.to_string()))?;
                if let Some(resealed) = resealed {
                    changes.push(Change::User(UserChange::Upsert {
                        user: Arc::new(resealed),
                        source: ChangeSource::Reencrypt,
                    }));
                }
            }
            users += changes.len() as u64;
            let recorded = destination.record(changes, None).await?;
            generation = destination.applied(recorded).await?;
        }
    }
    if users > 0 {
        tracing::info!(users, active_key = active, "re-sealed sensitive values");
    }
    Ok(Resealed { users, generation })
}
