//! `cost_ledger` and `tenant_limits`: what was spent, and each tenant's own
//! limits. What the amounts mean, and when spending stops, is `cost`'s.

use crate::cost::Spend;
use crate::error::Result;
use deadpool_postgres::GenericClient;
use std::time::{Duration, SystemTime};
use uuid::Uuid;

/// Records one external call's cost, settled.
pub async fn insert(client: &impl GenericClient, spend: &Spend<'_>) -> Result<()> {
    write(client, spend, "settled").await.map(drop)
}

/// Puts one share of a paid call's estimate on the bill; returns its row.
pub async fn reserve(client: &impl GenericClient, spend: &Spend<'_>) -> Result<i64> {
    write(client, spend, "reserved").await
}

async fn write(client: &impl GenericClient, spend: &Spend<'_>, settlement: &str) -> Result<i64> {
    Ok(client
        .query_one(
            "INSERT INTO upload_pipeline.cost_ledger
                    (tenant, job_id, service, model, units, unit, usd, requests, settlement)
             VALUES ($1, $2, $3, $4, $5, $6, $7::float8::numeric, $8, $9)
             RETURNING id",
            &[
                &spend.tenant,
                &spend.job_id,
                &spend.service,
                &spend.model,
                &spend.units,
                &spend.unit,
                &spend.usd,
                &(spend.requests as i32),
                &settlement,
            ],
        )
        .await?
        .get(0))
}

/// One reserved row's part of what the provider billed.
#[derive(Debug, Clone, PartialEq)]
pub struct Settled {
    pub id: i64,
    pub units: i64,
    pub usd: f64,
    pub requests: i32,
}

/// Settles reserved rows with their parts of the bill, and the service and
/// model that served the call. A row the sweeper already closed as
/// `estimated` is settled all the same: the provider's figure is the truth.
pub async fn settle(
    client: &impl GenericClient,
    rows: &[Settled],
    service: &str,
    model: &str,
) -> Result<()> {
    let ids: Vec<i64> = rows.iter().map(|r| r.id).collect();
    let units: Vec<i64> = rows.iter().map(|r| r.units).collect();
    let usd: Vec<f64> = rows.iter().map(|r| r.usd).collect();
    let requests: Vec<i32> = rows.iter().map(|r| r.requests).collect();
    client
        .execute(
            "UPDATE upload_pipeline.cost_ledger l
                SET units = s.units, usd = s.usd::numeric, requests = s.requests,
                    service = $5, model = $6, settlement = 'settled'
               FROM unnest($1::int8[], $2::int8[], $3::float8[], $4::int4[])
                    AS s(id, units, usd, requests)
              WHERE l.id = s.id AND l.settlement <> 'settled'",
            &[&ids, &units, &usd, &requests, &service, &model],
        )
        .await?;
    Ok(())
}

/// Takes a failed call's reservation off the bill.
pub async fn cancel(client: &impl GenericClient, ids: &[i64]) -> Result<()> {
    client
        .execute(
            "DELETE FROM upload_pipeline.cost_ledger WHERE id = ANY($1) AND settlement = 'reserved'",
            &[&ids],
        )
        .await?;
    Ok(())
}

/// Settles the oldest open reservation of `service` for `job_id` with
/// `spend` (a call answered in a later message than it was made: LlamaParse);
/// without one, records `spend`.
pub async fn settle_job(client: &impl GenericClient, spend: &Spend<'_>) -> Result<()> {
    let settled = client
        .execute(
            "UPDATE upload_pipeline.cost_ledger
                SET units = $3, usd = $4::float8::numeric, requests = $5, model = $6,
                    settlement = 'settled'
              WHERE id = (SELECT id FROM upload_pipeline.cost_ledger
                           WHERE job_id = $1 AND service = $2 AND settlement <> 'settled'
                           ORDER BY id LIMIT 1)",
            &[
                &spend.job_id,
                &spend.service,
                &spend.units,
                &spend.usd,
                &(spend.requests as i32),
                &spend.model,
            ],
        )
        .await?;
    if settled == 0 {
        insert(client, spend).await?;
    }
    Ok(())
}

/// Takes `service`'s open reservations for `job_id` off the bill: its call
/// failed in a later message than it was made (LlamaParse).
pub async fn cancel_job(client: &impl GenericClient, job_id: Uuid, service: &str) -> Result<()> {
    client
        .execute(
            "DELETE FROM upload_pipeline.cost_ledger
              WHERE job_id = $1 AND service = $2 AND settlement <> 'settled'",
            &[&job_id, &service],
        )
        .await?;
    Ok(())
}

/// Closes reservations older than `age` as `estimated`: their calls can no
/// longer settle them, and the estimate stays on the bill. Returns how many.
pub async fn close_stale_reservations(client: &impl GenericClient, age: Duration) -> Result<u64> {
    Ok(client
        .execute(
            "UPDATE upload_pipeline.cost_ledger SET settlement = 'estimated'
              WHERE settlement = 'reserved' AND created_at < now() - make_interval(secs => $1)",
            &[&age.as_secs_f64()],
        )
        .await?)
}

/// Rows of the bill that are estimates, not the provider's figures:
/// `reserved` (calls in flight, or unsettled) and `estimated` (closed so).
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Estimates {
    pub reserved: i64,
    pub reserved_usd: f64,
    pub estimated: i64,
    pub estimated_usd: f64,
}

impl std::fmt::Display for Estimates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "paid calls on the bill at their estimate (last day): {} in flight or unsettled ({}), \
             {} closed as estimates ({})",
            self.reserved,
            crate::cost::usd(self.reserved_usd),
            self.estimated,
            crate::cost::usd(self.estimated_usd)
        )
    }
}

/// The bill's estimates over the last day, of `tenant` or of all (`None`).
pub async fn estimates(client: &impl GenericClient, tenant: Option<&str>) -> Result<Estimates> {
    let row = client
        .query_one(
            "SELECT count(*) FILTER (WHERE settlement = 'reserved'),
                    coalesce(sum(usd) FILTER (WHERE settlement = 'reserved'), 0)::float8,
                    count(*) FILTER (WHERE settlement = 'estimated'),
                    coalesce(sum(usd) FILTER (WHERE settlement = 'estimated'), 0)::float8
               FROM upload_pipeline.cost_ledger
              WHERE settlement <> 'settled' AND created_at > now() - interval '1 day'
                AND ($1::text IS NULL OR tenant = $1)",
            &[&tenant],
        )
        .await?;
    Ok(Estimates {
        reserved: row.get(0),
        reserved_usd: row.get(1),
        estimated: row.get(2),
        estimated_usd: row.get(3),
    })
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
