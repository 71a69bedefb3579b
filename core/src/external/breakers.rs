//! `service_breakers`: the last state any instance saw of each external
//! service's circuit breaker.

use crate::db::UtcTime;
use crate::error::Result;
use crate::external::breaker::BreakerState;
use deadpool_postgres::{GenericClient, Pool};
use serde::Serialize;
use std::time::SystemTime;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ServiceBreaker {
    pub service: String,
    pub state: String,
    /// When an instance saw the breaker in this state (RFC 3339, UTC).
    pub observed_at: UtcTime,
}

/// Records `service`'s breaker in `state` as seen at `observed_at`, unless a
/// later observation is there already.
pub async fn write(
    db: &Pool,
    service: &str,
    state: BreakerState,
    observed_at: SystemTime,
) -> Result<()> {
    db.get()
        .await?
        .execute(
            "INSERT INTO upload_pipeline.service_breakers (service, state, observed_at)
             VALUES ($1, $2, $3)
             ON CONFLICT (service) DO UPDATE SET state = EXCLUDED.state, observed_at = EXCLUDED.observed_at
             WHERE service_breakers.observed_at <= EXCLUDED.observed_at",
            &[&service, &<&str>::from(state), &observed_at],
        )
        .await?;
    Ok(())
}

/// The last reported state of every external service's breaker, by name.
pub async fn read(client: &impl GenericClient) -> Result<Vec<ServiceBreaker>> {
    Ok(client
        .query(
            "SELECT service, state, observed_at FROM upload_pipeline.service_breakers ORDER BY service",
            &[],
        )
        .await?
        .iter()
        .map(|row| ServiceBreaker {
            service: row.get(0),
            state: row.get(1),
            observed_at: row.get(2),
        })
        .collect())
}
