//! Write-through metadata updates: Clerk first (it owns the data), then the index, then the
//! caller, so a search right after the call sees the change (read-your-writes). In cluster mode
//! "the index" is reached through the change log: the call publishes Clerk's answer and waits
//! until this replica has applied it; the other replicas apply it as they follow the log. Both
//! are the [`ChangeDestination`]'s business.

use std::sync::Arc;

use serde_json::{Map, Value};

use super::destination::ChangeDestination;
use crate::change::{ChangeSource, OrganizationChange, UserChange};
use crate::clerk::ClerkClient;
use crate::error::Error;
use crate::organization::Organization;
use crate::user::{MetadataNamespace, User};

/// A deep-merge patch per namespace; `None` leaves a namespace alone, `null` inside removes a key.
#[derive(Debug, Clone, Default)]
pub struct MetadataPatch {
    pub public: Option<Value>,
    pub private: Option<Value>,
    pub unsafe_: Option<Value>,
}

impl MetadataPatch {
    fn into_body(self) -> Result<Value, Error> {
        let mut body = Map::new();
        for (namespace, patch) in [
            (MetadataNamespace::Public, self.public),
            (MetadataNamespace::Private, self.private),
            (MetadataNamespace::Unsafe, self.unsafe_),
        ] {
            match patch {
                None => {}
                Some(Value::Object(object)) => {
                    body.insert(namespace.field_name().into(), Value::Object(object));
                }
                Some(_) => {
                    return Err(Error::invalid(
                        namespace.field_name(),
                        format!("{} must be a JSON object", namespace.field_name()),
                    ));
                }
            }
        }
        if body.is_empty() {
            return Err(Error::invalid(
                "public_metadata",
                "give at least one of public_metadata, private_metadata, unsafe_metadata",
            ));
        }
        Ok(Value::Object(body))
    }
}

/// Applies metadata changes through Clerk and into the index.
#[derive(Clone)]
pub struct WriteThrough {
    clerk: ClerkClient,
    destination: ChangeDestination,
}

impl WriteThrough {
    pub fn new(clerk: ClerkClient, destination: ChangeDestination) -> Self {
        WriteThrough { clerk, destination }
    }

    /// Patches the user in Clerk, records Clerk's answer and waits until this replica's index
    /// holds it. Returns Clerk's user and the index generation that holds it.
    /// Patches an organization's metadata in Clerk (`{"public_metadata": {...},
    /// "private_metadata": {...}}`), records Clerk's answer (which reaches every member's
    /// document in the same commit) and waits until this replica's index holds it.
    pub async fn update_organization_metadata(
        &self,
        organization_id: &str,
        patch: Value,
    ) -> Result<(Arc<Organization>, u64), Error> {
        let organization = Arc::new(
            self.clerk
                .update_organization_metadata(organization_id, &patch)
                .await?,
        );
        let change = OrganizationChange::Upsert {
            organization: organization.clone(),
            source: ChangeSource::WriteThrough,
        };
        let recorded = self.destination.record(vec![change.into()], None).await?;
        let generation = self.destination.applied(recorded).await?;
        tracing::info!(%organization_id, generation, "organization metadata updated through clerk");
        Ok((organization, generation))
    }

    pub async fn update_metadata(
        &self,
        user_id: &str,
        patch: MetadataPatch,
    ) -> Result<(Arc<User>, u64), Error> {
        if user_id.is_empty() {
            return Err(Error::invalid("user_id", "user_id is required"));
        }
        let body = patch.into_body()?;
        let user = Arc::new(self.clerk.update_user_metadata(user_id, &body).await?);
        let change = UserChange::Upsert {
            user: user.clone(),
            source: ChangeSource::WriteThrough,
        };
        let recorded = self.destination.record(vec![change.into()], None).await?;
        let generation = self.destination.applied(recorded).await?;
        tracing::info!(%user_id, generation, "metadata updated through clerk");
        Ok((user, generation))
    }
}
