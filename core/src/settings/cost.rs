//! Spending limits: for the deployment and for each tenant alone.

use super::Settings;
use serde::Deserialize;

/// Prices and spending limits. Dollars are estimates from the price table,
/// recorded per call in `cost_ledger`.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct CostPolicy {
    /// `DAILY_BUDGET_USD` (5): new external calls stop for the day once all
    /// tenants spent this much.
    pub daily_budget_usd: f64,
    /// `HOURLY_REQUEST_CAP` (5000): new external calls stop once this many
    /// went out in the last hour.
    pub hourly_request_cap: u32,
    /// `TENANT_DAILY_BUDGET_USD` (1), `TENANT_HOURLY_REQUEST_CAP` (1000): the
    /// same limits for each tenant alone, unless `tenant_limits` says
    /// otherwise for it: one tenant at its limit never stops another.
    pub tenant_daily_budget_usd: f64,
    pub tenant_hourly_request_cap: u32,
    /// The embedding model's price ([`super::EmbeddingSettings::usd_per_million_tokens`]);
    /// 0 in a process that embeds nothing.
    #[serde(skip)]
    pub embedding_usd_per_million_tokens: f64,
    /// `LLAMAPARSE_USD_PER_PAGE` (0.003).
    pub llamaparse_usd_per_page: f64,
}

impl Default for CostPolicy {
    fn default() -> Self {
        CostPolicy {
            daily_budget_usd: 5.0,
            hourly_request_cap: 5000,
            tenant_daily_budget_usd: 1.0,
            tenant_hourly_request_cap: 1000,
            embedding_usd_per_million_tokens: 0.0,
            llamaparse_usd_per_page: 0.003,
        }
    }
}

impl Settings for CostPolicy {}
