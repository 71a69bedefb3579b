//! `GET /v1/health`: every part the pipeline needs, checked now, and the
//! breakers' last reported states. Checks run concurrently, each with the
//! SDK's or the pool's timeout, so one part down cannot hang the answer.

use crate::auth::Tenant;
use crate::state::{Api, WatchedQueue};
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use docpipe_aws::s3;
use docpipe_aws::sqs::{self, QueueDepth};
use docpipe_core::external::breakers::{self, ServiceBreaker};
use serde::Serialize;
use std::sync::Arc;

#[derive(Debug, Serialize)]
pub struct Health {
    /// `ok`: all parts answer and no breaker is open; `degraded`: a breaker is
    /// open or a queue unreachable (work waits); `down`: the database or the
    /// bucket is unreachable.
    pub status: &'static str,
    pub database: &'static str,
    pub storage: &'static str,
    pub queues: Vec<QueueHealth>,
    pub services: Vec<ServiceHealth>,
}

/// A queue's reachability; its depths (every tenant's messages) for
/// operators only: nothing one tenant sees may tell how busy another is.
#[derive(Debug, Serialize)]
pub struct QueueHealth {
    pub name: &'static str,
    pub status: &'static str,
    #[serde(flatten)]
    pub depth: Option<QueueDepth>,
    /// Messages that failed every delivery and wait for an operator.
    pub dead_letters: Option<u64>,
}

impl QueueHealth {
    /// Without the figures of every tenant's messages.
    fn for_a_tenant(self) -> QueueHealth {
        QueueHealth {
            depth: None,
            dead_letters: None,
            ..self
        }
    }
}

#[derive(Debug, Serialize)]
pub struct ServiceHealth {
    pub service: String,
    /// `closed` (calls flow), `open` (calls fail fast), `half_open` (probing).
    pub breaker: String,
    /// When an instance last reported a change; absent before any call.
    pub observed_at: Option<docpipe_core::db::UtcTime>,
}

fn ok_or_unavailable(ok: bool) -> &'static str {
    if ok { "ok" } else { "unavailable" }
}

async fn queue_health(api: &Api, queue: &WatchedQueue) -> QueueHealth {
    let sqs = &api.infrastructure.sqs;
    let (depth, dead) = futures::join!(sqs::queue_depth(sqs, &queue.url), async {
        match &queue.dead_letter_url {
            Some(url) => Some(sqs::queue_depth(sqs, url).await),
            None => None,
        }
    });
    let dead_letters = match dead {
        Some(Ok(depth)) => Some(depth.total()),
        _ => None,
    };
    let reachable = depth.is_ok() && !matches!(dead, Some(Err(_)));
    QueueHealth {
        name: queue.name,
        status: ok_or_unavailable(reachable),
        depth: depth.ok(),
        dead_letters,
    }
}

/// Breakers of the configured services (closed until one reports) and any
/// other service an instance reported.
fn services(api: &Api, reported: Vec<ServiceBreaker>) -> Vec<ServiceHealth> {
    let mut services: Vec<ServiceHealth> = reported
        .into_iter()
        .map(|b| ServiceHealth {
            service: b.service,
            breaker: b.state,
            observed_at: Some(b.observed_at),
        })
        .collect();
    for configured in api.search.services() {
        if !services.iter().any(|s| s.service == configured.name) {
            services.push(ServiceHealth {
                service: configured.name.to_string(),
                breaker: "closed".into(),
                observed_at: None,
            });
        }
    }
    services
}

pub(super) async fn report(
    State(api): State<Arc<Api>>,
    Tenant(caller): Tenant,
) -> (StatusCode, Json<Health>) {
    let infrastructure = &api.infrastructure;
    let (breakers, storage, queues) = futures::join!(
        async {
            let client = api.db.get().await.ok()?;
            breakers::read(&client).await.ok()
        },
        s3::check_bucket(&infrastructure.s3, &infrastructure.bucket),
        futures::future::join_all(infrastructure.queues.iter().map(|q| queue_health(&api, q))),
    );
    let (database, storage) = (breakers.is_some(), storage.is_ok());
    let services = services(&api, breakers.unwrap_or_default());
    let status = if !database || !storage {
        "down"
    } else if queues.iter().any(|q| q.status != "ok")
        || services.iter().any(|s| s.breaker == "open")
    {
        "degraded"
    } else {
        "ok"
    };
    let queues = if api.operators.contains(caller.as_str()) {
        queues
    } else {
        queues.into_iter().map(QueueHealth::for_a_tenant).collect()
    };
    let code = if status == "down" {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::OK
    };
    (
        code,
        Json(Health {
            status,
            database: ok_or_unavailable(database),
            storage: ok_or_unavailable(storage),
            queues,
            services,
        }),
    )
}
