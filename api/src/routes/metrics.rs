//! `GET /v1/metrics`: the caller's jobs per state, throughput, spending
//! today and its own limits; never another tenant's figures.

use crate::auth::Tenant;
use crate::error::ApiError;
use crate::state::Api;
use axum::Json;
use axum::extract::State;
use docpipe_shared::cost;
use docpipe_shared::store::{ledger, status};
use serde::Serialize;
use std::sync::Arc;

#[derive(Debug, Serialize)]
pub(super) struct MetricsReport {
    tenant: String,
    #[serde(flatten)]
    metrics: status::TenantMetrics,
    /// The caller's own limits, and its paid requests in the last hour.
    #[serde(flatten)]
    limits: cost::TenantLimits,
    requests_last_hour: i64,
}

pub(super) async fn report(
    State(api): State<Arc<Api>>,
    Tenant(tenant): Tenant,
) -> Result<Json<MetricsReport>, ApiError> {
    let client = api.client().await?;
    let policy = &api.search.cost;
    Ok(Json(MetricsReport {
        metrics: status::tenant_metrics(&client, &tenant).await?,
        limits: cost::tenant_limits(&client, policy, &tenant).await?,
        requests_last_hour: ledger::spending(&client, Some(tenant.as_str()))
            .await?
            .requests_last_hour,
        tenant: tenant.to_string(),
    }))
}
