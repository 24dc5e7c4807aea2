//! Where a verified change goes to become durable: straight into the local index writer
//! (single mode), or into the cluster's change log, from which every replica applies it
//! (cluster mode). Webhooks answer 2xx only once [`ChangeSink::record`] returns.

use crate::cluster::{ChangeLog, Outcome};
use crate::index::WriterHandle;
use crate::user::UserChange;

/// The durable destination of changes.
#[derive(Clone)]
pub enum ChangeSink {
    /// Committed to this process's index.
    Index(WriterHandle),
    /// Acknowledged by JetStream; the replicators apply it.
    Log(std::sync::Arc<ChangeLog>),
}

/// Where a recorded change is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recorded {
    /// In the index commit of this generation.
    Generation(u64),
    /// In the change log at this sequence (see [`Outcome`] for what publishing did).
    Sequence { sequence: u64, outcome: Outcome },
}

impl ChangeSink {
    /// Makes `change` durable; `message_id` deduplicates in the change log (the `svix-id`).
    pub async fn record(
        &self,
        change: UserChange,
        message_id: Option<&str>,
    ) -> Result<Recorded, String> {
        match self {
            ChangeSink::Index(writer) => writer
                .apply(vec![change], None)
                .await
                .map(Recorded::Generation)
                .map_err(|e| e.to_string()),
            ChangeSink::Log(log) => log
                .publish(&change, message_id)
                .await
                .map(|published| Recorded::Sequence {
                    sequence: published.sequence,
                    outcome: published.outcome,
                })
                .map_err(|e| e.to_string()),
        }
    }
}
