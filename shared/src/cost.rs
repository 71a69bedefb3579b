//! What external calls cost, and when spending stops. Every paid call is a
//! `cost_ledger` row (units, dollars from the price table, HTTP requests) per
//! job, tenant and UTC day. Before a new paid call the daily budget and the
//! hourly request cap are checked; past either, the job waits (it does not
//! fail) and the sweeper resumes it when spending may go on.

use crate::config::CostPolicy;
use crate::error::{Error, Result, Wait};
use crate::metrics::{self, Metric};
use deadpool_postgres::GenericClient;
use std::time::SystemTime;
use uuid::Uuid;

/// One external call's cost, as recorded.
#[derive(Debug, Clone)]
pub struct Spend<'a> {
    pub tenant: &'a str,
    pub job_id: Uuid,
    pub service: &'a str,
    pub model: &'a str,
    pub units: i64,
    /// `tokens` or `pages`.
    pub unit: &'a str,
    pub usd: f64,
    pub requests: u32,
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

/// Spending so far: today (UTC) and over the last hour.
#[derive(Debug, Clone, PartialEq)]
pub struct Spending {
    pub usd_today: f64,
    pub requests_last_hour: i64,
    /// When the UTC day ends.
    pub day_ends: SystemTime,
    /// When the oldest request of the last hour leaves the hour.
    pub hour_frees: Option<SystemTime>,
}

pub async fn spending(client: &impl GenericClient) -> Result<Spending> {
    let row = client
        .query_one(
            "SELECT coalesce(sum(usd) FILTER (WHERE day = (now() AT TIME ZONE 'utc')::date), 0)::float8,
                    coalesce(sum(requests) FILTER (WHERE created_at > now() - interval '1 hour'), 0)::int8,
                    (date_trunc('day', now() AT TIME ZONE 'utc') + interval '1 day') AT TIME ZONE 'utc',
                    min(created_at) FILTER (WHERE created_at > now() - interval '1 hour') + interval '1 hour'
               FROM upload_pipeline.cost_ledger
              WHERE created_at > now() - interval '25 hours'",
            &[],
        )
        .await?;
    Ok(Spending {
        usd_today: row.get(0),
        requests_last_hour: row.get(1),
        day_ends: row.get(2),
        hour_frees: row.get(3),
    })
}

impl Spending {
    /// Why no new paid call may start now, if so.
    pub fn stop(&self, policy: &CostPolicy) -> Option<Wait> {
        if self.usd_today >= policy.daily_budget_usd {
            return Some(Wait {
                reason: format!(
                    "daily budget reached: {} spent today of {} (DAILY_BUDGET_USD); resumes at 00:00 UTC",
                    usd(self.usd_today),
                    usd(policy.daily_budget_usd)
                ),
                until: self.day_ends,
            });
        }
        if self.requests_last_hour >= i64::from(policy.hourly_request_cap) {
            return Some(Wait {
                reason: format!(
                    "hourly request cap reached: {} requests in the last hour (HOURLY_REQUEST_CAP={})",
                    self.requests_last_hour, policy.hourly_request_cap
                ),
                until: self.hour_frees.unwrap_or_else(SystemTime::now),
            });
        }
        None
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

/// Refuses a new paid call while spending is stopped.
pub async fn check_allowance(client: &impl GenericClient, policy: &CostPolicy) -> Result<()> {
    match spending(client).await?.stop(policy) {
        Some(wait) => {
            tracing::warn!(reason = %wait.reason, "spending stopped; job waits");
            Err(Error::Waiting(wait))
        }
        None => Ok(()),
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
