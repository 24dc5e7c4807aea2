//! Learns which Clerk instance this index mirrors (`GET /v1/instance`) at start: its id decides
//! which webhook deliveries are ours, its environment the default rate limit. Until Clerk
//! answers, the limit guessed from the secret key holds and every verified delivery is accepted;
//! a failure is asked again every minute.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::clerk::ClerkClient;

/// How long to wait before asking again after a failure.
const RETRY_EVERY: Duration = Duration::from_secs(60);

/// Asks until Clerk answers or `cancel` fires.
pub async fn learn_instance(clerk: ClerkClient, cancel: CancellationToken) {
    loop {
        let asked = tokio::select! {
            asked = clerk.learn_instance() => asked,
            _ = cancel.cancelled() => return,
        };
        match asked {
            Ok(instance) => {
                let limit = clerk.rate_limit();
                tracing::info!(
                    instance_id = instance.id,
                    environment_type = instance.environment_type,
                    rate_limit = %limit,
                    "mirroring this Clerk instance"
                );
                return;
            }
            Err(error) => {
                let limit = clerk.rate_limit();
                tracing::warn!(
                    %error,
                    rate_limit = %limit,
                    "could not ask Clerk which instance this is; webhook deliveries for any instance are accepted meanwhile; asking again in a minute"
                );
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(RETRY_EVERY) => {}
            _ = cancel.cancelled() => return,
        }
    }
}
