//! Circuit breaker states where operators can see them. Each process has its
//! own breakers; a change of state is written to `service_breakers`, so
//! status and health show the latest any instance observed.

use super::ExternalService;
use super::breaker::BreakerState;
use crate::external::breakers;
use crate::ops::metrics;
use deadpool_postgres::Pool;
use std::sync::atomic::Ordering;
use std::time::SystemTime;

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
        match breakers::write(db, service.name, state, SystemTime::now()).await {
            Ok(()) => service.reported_changes.store(changes, Ordering::Relaxed),
            Err(error) => {
                tracing::warn!(service = service.name, %error, "could not record breaker state")
            }
        }
    }
}
