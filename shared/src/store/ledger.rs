//! `cost_ledger` and `tenant_limits`: what was spent, and each tenant's own
//! limits. What the amounts mean, and when spending stops, is `cost`'s.

use crate::cost::Spend;
use crate::error::Result;
use deadpool_postgres::GenericClient;
use std::time::SystemTime;

/// Records one external call's cost.
pub async fn insert(client: &impl GenericClient, spend: &Spend<'_>) -> Result<()> {
    client
        .execute(
            "INSERT INTO upload_pipeline.cost_ledger
                    (tenant, job_id, service, model, units, unit, usd, requests)
             VALUES ($1, $2, $3, $4, $5, $6, $7::float8::numeric, $8)",
            &[
                &spend.tenant,
                &spend.job_id,
                &spend.service,
                &spend.model,
                &spend.units,
                &spend.unit,
                &spend.usd,
                &(spend.requests as i32),
            ],
        )
        .await?;
    Ok(())
}

/// Spending so far, today (UTC) and over the last hour, of all tenants or
/// of one.
#[derive(Debug, Clone, PartialEq)]
pub struct Spending {
    pub usd_today: f64,
    pub requests_last_hour: i64,
    /// When the UTC day ends.
    pub day_ends: SystemTime,
    /// When the oldest request of the last hour leaves the hour.
    pub hour_frees: Option<SystemTime>,
}

/// Spending of `tenant`, or of every tenant (`None`).
pub async fn spending(client: &impl GenericClient, tenant: Option<&str>) -> Result<Spending> {
    let row = client
        .query_one(
            "SELECT coalesce(sum(usd) FILTER (WHERE day = (now() AT TIME ZONE 'utc')::date), 0)::float8,
                    coalesce(sum(requests) FILTER (WHERE created_at > now() - interval '1 hour'), 0)::int8,
                    (date_trunc('day', now() AT TIME ZONE 'utc') + interval '1 day') AT TIME ZONE 'utc',
                    min(created_at) FILTER (WHERE created_at > now() - interval '1 hour') + interval '1 hour'
               FROM upload_pipeline.cost_ledger
              WHERE created_at > now() - interval '25 hours'
                AND ($1::text IS NULL OR tenant = $1)",
            &[&tenant],
        )
        .await?;
    Ok(Spending {
        usd_today: row.get(0),
        requests_last_hour: row.get(1),
        day_ends: row.get(2),
        hour_frees: row.get(3),
    })
}

/// `tenant`'s daily budget and hourly request cap in `tenant_limits`, where set.
pub async fn tenant_overrides(
    client: &impl GenericClient,
    tenant: &str,
) -> Result<(Option<f64>, Option<i32>)> {
    let row = client
        .query_opt(
            "SELECT daily_budget_usd, hourly_request_cap FROM upload_pipeline.tenant_limits
              WHERE tenant = $1",
            &[&tenant],
        )
        .await?;
    Ok(row.map_or((None, None), |r| (r.get(0), r.get(1))))
}

/// `tenant`'s own API requests a minute, if `tenant_limits` sets them.
pub async fn api_requests_per_minute(
    client: &impl GenericClient,
    tenant: &str,
) -> Result<Option<u32>> {
    let row = client
        .query_opt(
            "SELECT api_requests_per_minute FROM upload_pipeline.tenant_limits WHERE tenant = $1",
            &[&tenant],
        )
        .await?;
    let per_minute: Option<i32> = row.and_then(|r| r.get(0));
    Ok(per_minute.and_then(|n| u32::try_from(n).ok()))
}
