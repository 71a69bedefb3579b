//! What external calls cost, and when spending stops. Every paid call is a
//! `cost_ledger` row (units, dollars from the price table, HTTP requests) per
//! job, tenant and UTC day, reserved before the call and settled after it
//! ([`reservation`]). Before a new paid call the daily budget and the hourly
//! request cap are checked; past either, the job waits (it does not fail)
//! and the sweeper resumes it when spending may go on.

pub mod ledger;
pub mod reservation;

pub use reservation::{Allowance, Bill, Reservation, pay, pay_embeddings, reserve};

use crate::embedding::{Embedder, Embeddings};
use crate::error::{Result, Wait};
use crate::settings::CostPolicy;
use deadpool_postgres::GenericClient;
use ledger::Spending;
use std::time::SystemTime;
use uuid::Uuid;

/// One external call's cost, or one share of it (a job's, a tenant's).
#[derive(Debug, Clone)]
pub struct Spend<'a> {
    pub tenant: &'a str,
    /// `None` for spending outside jobs (a search's query).
    pub job_id: Option<Uuid>,
    pub service: &'a str,
    pub model: &'a str,
    pub units: i64,
    /// `tokens`, `pages` or `search_units`.
    pub unit: &'static str,
    pub usd: f64,
    pub requests: u32,
}

/// The estimate of embedding `tokens` (cl100k, as counted at chunking) for
/// `tenant`'s `job_id` (or a search's query) with `embedder`: one request.
/// The in-process models are free.
pub fn embedding_estimate<'a>(
    policy: &CostPolicy,
    embedder: &'a dyn Embedder,
    tenant: &'a str,
    job_id: Option<Uuid>,
    tokens: i64,
) -> Spend<'a> {
    Spend {
        tenant,
        job_id,
        service: embedder.service(),
        model: embedder.model(),
        units: tokens,
        unit: "tokens",
        usd: embedding_usd(policy, embedder.service(), tokens),
        requests: 1,
    }
}

impl Bill {
    /// What `embeddings` cost, as the provider counted them.
    pub fn of_embeddings(policy: &CostPolicy, embeddings: &Embeddings) -> Bill {
        let units = embeddings.billed_tokens as i64;
        Bill {
            service: embeddings.service,
            model: embeddings.model.clone(),
            units,
            usd: embedding_usd(policy, embeddings.service, units),
            requests: embeddings.requests,
        }
    }
}

/// Dollars for `tokens` of `service` at the policy's price; the in-process
/// mock is free.
fn embedding_usd(policy: &CostPolicy, service: &str, tokens: i64) -> f64 {
    if service == "mock" {
        0.0
    } else {
        tokens as f64 * policy.embedding_usd_per_million_tokens / 1e6
    }
}

/// How much one tenant may spend: the defaults, or its row in `tenant_limits`.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct TenantLimits {
    pub daily_budget_usd: f64,
    pub hourly_request_cap: i64,
}

/// `tenant`'s limits: its overrides in `tenant_limits`, else the policy's defaults.
pub async fn tenant_limits(
    client: &impl GenericClient,
    policy: &CostPolicy,
    tenant: &str,
) -> Result<TenantLimits> {
    let (budget, cap) = ledger::tenant_overrides(client, tenant).await?;
    Ok(TenantLimits {
        daily_budget_usd: budget.unwrap_or(policy.tenant_daily_budget_usd),
        hourly_request_cap: i64::from(cap.unwrap_or(policy.tenant_hourly_request_cap as i32)),
    })
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
        let own = ledger::spending(client, Some(tenant)).await?;
        let who = Limits::tenant(tenant);
        if let Some(wait) = own.stop(limits.daily_budget_usd, limits.hourly_request_cap, &who) {
            return Ok(Some(wait));
        }
    }
    let all = ledger::spending(client, None).await?;
    let cap = i64::from(policy.hourly_request_cap);
    Ok(all.stop(policy.daily_budget_usd, cap, &Limits::deployment()))
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
