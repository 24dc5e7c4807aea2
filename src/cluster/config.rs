//! Where the cluster's NATS is, what this deployment and replica are called there, and the
//! settings of the stream and buckets; checked against what NATS accepts, naming the flag.

use std::time::Duration;

use crate::redact::mask_url;

/// A cluster setting NATS would refuse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{setting} {problem}")]
pub struct ClusterConfigError {
    pub setting: &'static str,
    pub problem: String,
}

/// Where the cluster's NATS is and what this replica is called in it.
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    /// `nats://host:4222` (several comma-separated; credentials in the URL if needed).
    pub url: String,
    /// Prefix of the stream and subjects, so several deployments can share one NATS.
    pub name: String,
    /// This replica's durable consumer name; stable across restarts (the pod name).
    pub replica_id: String,
    /// How long JetStream remembers message ids for deduplication.
    pub duplicate_window: Duration,
    /// How long the sync lease outlives its holder's last renewal (renewed every third of it).
    pub lease_ttl: Duration,
    /// Copies NATS keeps of the stream and buckets (3 on a three-node NATS cluster).
    pub stream_replicas: usize,
    /// How many replicas the deployment runs: each writes through to Clerk on its own share of
    /// the instance's rate limit.
    pub replicas: u32,
}

impl ClusterConfig {
    pub fn new(url: impl Into<String>, replica_id: impl Into<String>) -> Self {
        ClusterConfig {
            url: url.into(),
            name: "clerk-index".into(),
            replica_id: replica_id.into(),
            duplicate_window: Duration::from_secs(120),
            lease_ttl: Duration::from_secs(15),
            stream_replicas: 1,
            replicas: 2,
        }
    }

    pub(super) fn stream_name(&self) -> String {
        format!("{}-changes", self.name)
    }

    pub(super) fn subject_prefix(&self) -> String {
        format!("{}.changes", self.name)
    }

    /// Checks the names NATS will accept, with messages that say which setting is wrong.
    pub fn validate(&self) -> Result<(), ClusterConfigError> {
        let token = |value: &str, what: &'static str| {
            if value.is_empty()
                || !value
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            {
                Err(ClusterConfigError {
                    setting: what,
                    problem: format!("must be letters, digits, '-' or '_' (got {value:?})"),
                })
            } else {
                Ok(())
            }
        };
        token(&self.name, "--cluster-name")?;
        token(&self.replica_id, "--replica-id")?;
        if !(1..=100).contains(&self.replicas) {
            return Err(ClusterConfigError {
                setting: "--cluster-replicas",
                problem: format!("must be 1 to 100 (got {})", self.replicas),
            });
        }
        if !(1..=5).contains(&self.stream_replicas) {
            return Err(ClusterConfigError {
                setting: "--cluster-stream-replicas",
                problem: format!(
                    "must be 1 to 5, as NATS allows (got {})",
                    self.stream_replicas
                ),
            });
        }
        if self.lease_ttl < Duration::from_secs(1) {
            return Err(ClusterConfigError {
                setting: "--sync-lease-ttl-secs",
                problem: format!("must be at least 1 (got {} ms)", self.lease_ttl.as_millis()),
            });
        }
        if !self.url.starts_with("nats://") && !self.url.starts_with("tls://") {
            return Err(ClusterConfigError {
                setting: "--cluster",
                problem: format!(
                    "must be a nats:// or tls:// URL (got {:?})",
                    mask_url(&self.url)
                ),
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_nats_would_refuse_are_refused_by_name_and_passwords_never_shown() {
        let config = |url: &str, id: &str| ClusterConfig::new(url, id).validate();
        assert_eq!(config("nats://127.0.0.1:4222", "clerk-index-0"), Ok(()));
        assert_eq!(config("tls://a:4222,tls://b:4222", "r_1"), Ok(()));
        assert!(
            config("nats://h:4222", "pod.0")
                .unwrap_err()
                .to_string()
                .contains("--replica-id")
        );
        assert!(
            config("nats://h:4222", "")
                .unwrap_err()
                .to_string()
                .contains("--replica-id")
        );
        let mut replicated = ClusterConfig::new("nats://h:4222", "r");
        replicated.stream_replicas = 3;
        assert_eq!(replicated.validate(), Ok(()));
        replicated.stream_replicas = 7;
        assert!(
            replicated
                .validate()
                .unwrap_err()
                .to_string()
                .contains("--cluster-stream-replicas")
        );
        let mut short = ClusterConfig::new("nats://h:4222", "r");
        short.lease_ttl = Duration::from_millis(500);
        assert!(
            short
                .validate()
                .unwrap_err()
                .to_string()
                .contains("--sync-lease-ttl-secs")
        );
        let error = config("http://app:s3cret@h:4222", "r")
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("--cluster") && !error.contains("s3cret"),
            "{error}"
        );
        assert_eq!(
            crate::redact::mask_url("nats://app:s3cret@a:4222,nats://token@b:4222,nats://c:4222"),
            "nats://app:***@a:4222,nats://***@b:4222,nats://c:4222"
        );
    }
}
