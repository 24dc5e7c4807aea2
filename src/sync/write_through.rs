//! Write-through metadata updates: Clerk first (it owns the data), then the index, then the
//! caller, so a search right after the call sees the change (read-your-writes). In cluster mode
//! "the index" is reached through the change log: the call publishes Clerk's answer and waits
//! until this replica has applied it; the other replicas apply it as they follow the log.

use std::sync::Arc;

use serde_json::{Map, Value};

use super::replicate::Replicator;
use crate::clerk::ClerkClient;
use crate::cluster::ChangeLog;
use crate::error::Error;
use crate::index::WriterHandle;
use crate::user::{ChangeSource, MetadataNamespace, User, UserChange};

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
                    return Err(Error::InvalidArgument(format!(
                        "{} must be a JSON object",
                        namespace.field_name()
                    )));
                }
            }
        }
        if body.is_empty() {
            return Err(Error::InvalidArgument(
                "give at least one of public_metadata, private_metadata, unsafe_metadata".into(),
            ));
        }
        Ok(Value::Object(body))
    }
}

/// How long a write-through waits in cluster mode for this replica to apply its own change.
const LOCAL_APPLY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Applies metadata changes through Clerk and into the index.
#[derive(Clone)]
pub struct WriteThrough {
    clerk: ClerkClient,
    writer: WriterHandle,
    cluster: Option<(Arc<ChangeLog>, Arc<Replicator>)>,
}

impl WriteThrough {
    pub fn new(clerk: ClerkClient, writer: WriterHandle) -> Self {
        WriteThrough {
            clerk,
            writer,
            cluster: None,
        }
    }

    /// Cluster mode: Clerk's answer goes to the change log (so every replica gets it), and the
    /// call waits until this replica's index holds it.
    pub fn through_log(mut self, log: Arc<ChangeLog>, replicator: Arc<Replicator>) -> Self {
        self.cluster = Some((log, replicator));
        self
    }

    /// Patches the user in Clerk, applies Clerk's answer to the index and waits for the commit.
    /// Returns Clerk's user and the index generation that holds it.
    pub async fn update_metadata(
        &self,
        user_id: &str,
        patch: MetadataPatch,
    ) -> Result<(Arc<User>, u64), Error> {
        if user_id.is_empty() {
            return Err(Error::InvalidArgument("user_id is required".into()));
        }
        let body = patch.into_body()?;
        let user = Arc::new(self.clerk.update_user_metadata(user_id, &body).await?);
        let change = UserChange::Upsert {
            user: user.clone(),
            source: ChangeSource::WriteThrough,
        };
        let generation = match &self.cluster {
            None => self.writer.apply(vec![change], None).await?,
            Some((log, replicator)) => {
                let published = log
                    .publish(&change, None)
                    .await
                    .map_err(|e| Error::Unavailable(e.to_string()))?;
                tokio::time::timeout(LOCAL_APPLY_TIMEOUT, replicator.wait_for(published.sequence))
                    .await
                    .map_err(|_| {
                        Error::Unavailable(format!(
                            "clerk and the change log have the update (sequence {}), but this \
                         replica has not applied it within {} s",
                            published.sequence,
                            LOCAL_APPLY_TIMEOUT.as_secs()
                        ))
                    })?
            }
        };
        tracing::info!(%user_id, generation, "metadata updated through clerk");
        Ok((user, generation))
    }
}
