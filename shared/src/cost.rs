//! What external calls cost, and when spending stops. Every paid call is a
//! `cost_ledger` row (units, dollars from the price table, HTTP requests) per
//! job, tenant and UTC day. Before a new paid call the daily budget and the
//! hourly request cap are checked; past either, the job waits (it does not
//! fail) and the sweeper resumes it when spending may go on.

use crate::embedding::Embeddings;
use crate::error::{Error, Result, Wait};
use crate::ops::metrics::{self, Metric};
use crate::settings::CostPolicy;
use deadpool_postgres::GenericClient;
use std::time::SystemTime;
use uuid::Uuid;

/// One external call's cost, as recorded.
#[derive(Debug, Clone)]
pub struct Spend<'a> {
    pub tenant: &'a str,
    /// `None` for spending outside jobs (a search's query).
    pub job_id: Option<Uuid>,
    pub service: &'a str,
    pub model: &'a str,
    pub units: i64,
    /// `tokens` or `pages`.
    pub unit: &'a str,
    pub usd: f64,
    pub requests: u32,
}

/// What `embeddings` cost `tenant` (for `job_id`, or a search's query).
/// The in-process mock is free.
pub fn embedding_spend<'a>(
    policy: &CostPolicy,
    tenant: &'a str,
    job_id: Option<Uuid>,
    embeddings: &'a Embeddings,
) -> Spend<'a> {
    let usd = if embeddings.service == "mock" {
        0.0
    } else {
        embeddings.billed_tokens as f64 * policy.embedding_usd_per_million_tokens / 1e6
    };
    Spend {
        tenant,
        job_id,
        service: embeddings.service,
        model: &embeddings.model,
        units: embeddings.billed_tokens as i64,
        unit: "tokens",
        usd,
        requests: embeddings.requests,
    }
}

pub async fn record(client: &impl GenericClient, spend: &Spend<'_>) -> Result<()> {
    let units = if spend.unit == "pages" {
        Metric::PagesParsed
    } else {
        Metric::EmbeddingTokens
    };
    metrics::add(units, spend.units as f64);
    metrics::add(Metric::CostUsd, spend.usd);
    metrics::add(Metric::ExternalRequests, f64::from(spend.requests));
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

/// How much one tenant may spend: the defaults, or its row in `tenant_limits`.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct TenantLimits {
    pub daily_budget_usd: f64,
    pub hourly_request_cap: i64,
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

/// `tenant`'s limits: its overrides in `tenant_limits`, else the policy's defaults.
pub async fn tenant_limits(
    client: &impl GenericClient,
    policy: &CostPolicy,
    tenant: &str,
) -> Result<TenantLimits> {
    let row = client
        .query_opt(
            "SELECT daily_budget_usd, hourly_request_cap FROM upload_pipeline.tenant_limits
              WHERE tenant = $1",
            &[&tenant],
        )
        .await?;
    let budget: Option<f64> = row.as_ref().and_then(|r| r.get(0));
    let cap: Option<i32> = row.as_ref().and_then(|r| r.get(1));
    Ok(TenantLimits {
        daily_budget_usd: budget.unwrap_or(policy.tenant_daily_budget_usd),
        hourly_request_cap: i64::from(cap.unwrap_or(policy.tenant_hourly_request_cap as i32)),
    })
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

impl Spending {
    /// Why no new paid call may start now under these limits, if so; `who`
    /// names whose limits they are in the reason.
    pub fn stop(&self, budget_usd: f64, request_cap: i64, who: &Limits) -> Option<Wait> {
        if self.usd_today >= budget_usd {
            return Some(Wait {
                reason: format!(
                    "daily budget reached: {} spent today of {} by {} ({}); resumes at 00:00 UTC",
                    usd(self.usd_today),
                    usd(budget_usd),
                    who.name,
                    who.budget_setting
                ),
                until: self.day_ends,
            });
        }
        if self.requests_last_hour >= request_cap {
            return Some(Wait {
                reason: format!(
                    "hourly request cap reached: {} requests in the last hour of {} by {} ({})",
                    self.requests_last_hour, request_cap, who.name, who.cap_setting
                ),
                until: self.hour_frees.unwrap_or_else(SystemTime::now),
            });
        }
        None
    }
}

/// Whose limits stopped spending, and the settings that set them.
pub struct Limits {
    name: String,
    budget_setting: &'static str,
    cap_setting: &'static str,
}

impl Limits {
    fn deployment() -> Limits {
        Limits {
            name: "all tenants".into(),
            budget_setting: "DAILY_BUDGET_USD",
            cap_setting: "HOURLY_REQUEST_CAP",
        }
    }

    fn tenant(tenant: &str) -> Limits {
        Limits {
            name: format!("tenant {tenant}"),
            budget_setting: "TENANT_DAILY_BUDGET_USD or tenant_limits",
            cap_setting: "TENANT_HOURLY_REQUEST_CAP or tenant_limits",
        }
    }
}

/// Why no new paid call may start for `tenant` now (its own limits, then
/// the deployment's), if so; `None` for `tenant` checks the deployment's only.
pub async fn stopped(
    client: &impl GenericClient,
    policy: &CostPolicy,
    tenant: Option<&str>,
) -> Result<Option<Wait>> {
    if let Some(tenant) = tenant {
        let limits = tenant_limits(client, policy, tenant).await?;
        let own = spending(client, Some(tenant)).await?;
        let who = Limits::tenant(tenant);
        if let Some(wait) = own.stop(limits.daily_budget_usd, limits.hourly_request_cap, &who) {
            return Ok(Some(wait));
        }
    }
    let all = spending(client, None).await?;
    let cap = i64::from(policy.hourly_request_cap);
    Ok(all.stop(policy.daily_budget_usd, cap, &Limits::deployment()))
}

/// Refuses a new paid call for `tenant` while its spending, or the
/// deployment's, is stopped.
pub async fn check_allowance(
    client: &impl GenericClient,
    policy: &CostPolicy,
    tenant: Option<&str>,
) -> Result<()> {
    match stopped(client, policy, tenant).await? {
        Some(wait) => {
            tracing::warn!(reason = %wait.reason, "spending stopped; job waits");
            Err(Error::Waiting(wait))
        }
        None => Ok(()),
    }
}

/// Dollars with the decimals the amount needs, at least two and at most six:
/// a budget of $0.005 reads `$0.005`, not `$0.01`.
pub fn usd(amount: f64) -> String {
    let six = format!("{amount:.6}");
    let trimmed = six.trim_end_matches('0');
    let decimals = trimmed.split_once('.').map_or(0, |(_, d)| d.len());
    if decimals >= 2 {
        format!("${trimmed}")
    } else {
        format!("${amount:.2}")
    }
}

#[cfg(test)]
mod tests {
    use super::usd;

    #[test]
    fn dollars_keep_the_decimals_they_need() {
        assert_eq!(usd(5.0), "$5.00");
        assert_eq!(usd(0.005), "$0.005");
        assert_eq!(usd(0.1 + 0.2), "$0.30");
        assert_eq!(usd(0.000_123), "$0.000123");
        assert_eq!(usd(12.5), "$12.50");
    }
}
