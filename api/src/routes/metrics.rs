//! `GET /v1/metrics`: the caller's jobs per state, throughput, spending
//! today and its own limits; never another tenant's figures.

use crate::auth::Tenant;
use crate::error::ApiError;
use crate::state::Api;
use axum::Json;
use axum::extract::State;
use docpipe_core::cost;
use docpipe_core::cost::ledger;
use docpipe_core::store::status;
use docpipe_ingest::pipeline::reembed;
use docpipe_ingest::store::model_change;
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
    /// While the deployment changes embedding model, the caller's progress.
    #[serde(skip_serializing_if = "Option::is_none")]
    model_change: Option<ModelChangeProgress>,
}

#[derive(Debug, Serialize)]
struct ModelChangeProgress {
    current: String,
    next: String,
    #[serde(flatten)]
    progress: model_change::Progress,
}

pub(super) async fn report(
    State(api): State<Arc<Api>>,
    Tenant(tenant): Tenant,
) -> Result<Json<MetricsReport>, ApiError> {
    let client = api.client().await?;
    let policy = &api.search.models.cost;
    let model_change = match reembed::model_change(&api.pipeline)? {
        Some(change) => Some(ModelChangeProgress {
            current: change.current.to_string(),
            next: change.next.to_string(),
            progress: model_change::tenant_progress(&client, &change, &tenant).await?,
        }),
        None => None,
    };
    Ok(Json(MetricsReport {
        model_change,
        metrics: status::tenant_metrics(&client, &tenant).await?,
        limits: cost::tenant_limits(&client, policy, &tenant).await?,
        requests_last_hour: ledger::spending(&client, Some(tenant.as_str()))
            .await?
            .requests_last_hour,
        tenant: tenant.to_string(),
    }))
}
