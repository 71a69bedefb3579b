//! Circuit breaker states where operators can see them. Each process has its
//! own breakers; a change of state is written to `service_breakers`, so
//! status and health show the latest any instance observed.

use super::ExternalService;
use super::breaker::BreakerState;
use crate::error::Result;
use crate::ops::metrics;
use crate::store::db::UtcTime;
use deadpool_postgres::{GenericClient, Pool};
use serde::Serialize;
use std::sync::atomic::Ordering;
use std::time::SystemTime;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ServiceBreaker {
    pub service: String,
    pub state: String,
    /// When an instance saw the breaker in this state (RFC 3339, UTC).
    pub observed_at: UtcTime,
}

/// Writes the state of each breaker this instance has not written since it
/// changed, starting with its state after the first call (so a new instance
/// that finds a service well says so). Costs a few atomic loads when nothing
/// changed; a failed write is logged and tried again next time.
pub async fn record(db: &Pool, services: &[&ExternalService]) {
    for service in services {
        let changes = service.breaker.changes();
        if !service.called.load(Ordering::Relaxed)
            || service.reported_changes.load(Ordering::Relaxed) == changes
        {
            continue;
        }
        let state = service.breaker.state();
        metrics::breaker(service.name, state != BreakerState::Closed);
        match write(db, service.name, state, SystemTime::now()).await {
            Ok(()) => service.reported_changes.store(changes, Ordering::Relaxed),
            Err(error) => {
                tracing::warn!(service = service.name, %error, "could not record breaker state")
            }
        }
    }
}

async fn write(
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
