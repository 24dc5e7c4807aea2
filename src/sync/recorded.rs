//! Where recorded changes are, and how long anyone waits for this replica to hold them.

use std::time::Duration;

use crate::cluster::Outcome;

/// How long a caller waits for this replica's index to hold what it recorded (cluster mode: the
/// replicator applying the log; it is behind only while it catches up).
pub const LOCAL_APPLY_TIMEOUT: Duration = Duration::from_secs(30);

/// Where recorded changes are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recorded {
    /// In the local index commit of this generation.
    Committed { generation: u64 },
    /// In the change log, up to this sequence. For a single change, `outcome` says what
    /// publishing did (a superseded change reports the sequence of the state the log keeps);
    /// for a batch it is `Stored` when any change was stored.
    Logged { sequence: u64, outcome: Outcome },
}
