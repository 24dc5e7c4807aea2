//! Write-through metadata updates: Clerk first (it owns the data), then the index, then the
//! caller, so a search right after the call sees the change (read-your-writes).

use std::sync::Arc;

use serde_json::{Map, Value};

use crate::clerk::ClerkClient;
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

/// Applies metadata changes through Clerk and into the index.
#[derive(Clone)]
pub struct WriteThrough {
    clerk: ClerkClient,
    writer: WriterHandle,
}

impl WriteThrough {
    pub fn new(clerk: ClerkClient, writer: WriterHandle) -> Self {
        WriteThrough { clerk, writer }
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
        let generation = self
            .writer
            .apply(
                vec![UserChange::Upsert {
                    user: user.clone(),
                    source: ChangeSource::WriteThrough,
                }],
                None,
            )
            .await?;
        tracing::info!(%user_id, generation, "metadata updated through clerk");
        Ok((user, generation))
    }
}
