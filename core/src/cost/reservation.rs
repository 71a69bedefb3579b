//! The one way a paid call is made: its estimated cost is reserved on the
//! bill (a `cost_ledger` row) in the allowance check's transaction, before
//! the call; the provider's own figure settles it after. A call that fails
//! cancels its reservation. A reservation never settled (the process died,
//! or the database was away when the answer came and stayed away) keeps the
//! estimate on the bill; the sweeper closes it as `estimated`. So spending
//! is never lost, and never recorded twice.

use super::{Spend, stopped};
use crate::cost::ledger;
use crate::db;
use crate::embedding::{Embedder, Embeddings};
use crate::error::{Error, Result};
use crate::ops::metrics::{self, Metric};
use crate::settings::CostPolicy;
use deadpool_postgres::Pool;
use std::time::Duration;

/// How long settling waits out a database outage (a restart's crash
/// recovery) before it leaves the estimate on the bill.
pub const SETTLE_PATIENCE: Duration = Duration::from_secs(30);

/// Whose allowance a paid call is checked against.
#[derive(Debug, Clone, Copy)]
pub enum Allowance<'a> {
    /// The tenant's limits, then the deployment's.
    Tenant(&'a str),
    /// The deployment's only (work for several tenants at once).
    Deployment,
    /// None: an in-process model costs nothing, but its use is recorded.
    Free,
}

/// What a call cost, by the provider's answer: the service and model that
/// served it (a fallback model, in hybrid mode), its units and dollars, and
/// the HTTP requests it took.
#[derive(Debug, Clone, PartialEq)]
pub struct Bill {
    pub service: &'static str,
    pub model: String,
    pub units: i64,
    pub usd: f64,
    pub requests: u32,
}

/// A paid call's estimated cost, on the bill: one row per share (a job or
/// a tenant that the call serves).
#[derive(Debug)]
#[must_use = "a reservation is settled or cancelled; left alone, its estimate stays on the bill"]
pub struct Reservation {
    /// Each row's id and estimated units.
    rows: Vec<(i64, i64)>,
    /// `tokens`, `pages` or `search_units`.
    unit: &'static str,
}

/// Refuses the call if spending is stopped for `allowance`; else puts
/// `estimate` on the bill, share by share, in the same transaction.
pub async fn reserve(
    db: &Pool,
    policy: &CostPolicy,
    allowance: Allowance<'_>,
    estimate: &[Spend<'_>],
) -> Result<Reservation> {
    let mut client = db.get().await?;
    let tx = client.transaction().await?;
    let tenant = match allowance {
        Allowance::Tenant(tenant) => Some(Some(tenant)),
        Allowance::Deployment => Some(None),
        Allowance::Free => None,
    };
    if let Some(tenant) = tenant
        && let Some(wait) = stopped(&tx, policy, tenant).await?
    {
        tracing::warn!(reason = %wait.reason, "spending stopped; the call waits");
        return Err(Error::Waiting(wait));
    }
    let mut rows = Vec::with_capacity(estimate.len());
    for share in estimate {
        rows.push((ledger::reserve(&tx, share).await?, share.units));
    }
    tx.commit().await?;
    let unit = estimate.first().map_or("tokens", |share| share.unit);
    Ok(Reservation { rows, unit })
}

/// Makes a paid call: reserves `estimate`, runs `call`, then settles the
/// reservation with what the answer says it cost (`billed`), or cancels it
/// if the call failed.
pub async fn pay<T>(
    db: &Pool,
    policy: &CostPolicy,
    allowance: Allowance<'_>,
    estimate: &[Spend<'_>],
    call: impl Future<Output = Result<T>>,
    billed: impl FnOnce(&T) -> Bill,
) -> Result<T> {
    let reservation = reserve(db, policy, allowance, estimate).await?;
    match call.await {
        Ok(answer) => {
            reservation.settle(db, &billed(&answer)).await;
            Ok(answer)
        }
        Err(error) => {
            reservation.cancel(db).await;
            Err(error)
        }
    }
}

/// Makes an embedding call through [`pay`]: paid by `payer` when the
/// embedder's calls cost money (free otherwise), reserved at `estimate`
/// (one share per tenant and job), billed at what the provider counted.
pub async fn pay_embeddings(
    db: &Pool,
    policy: &CostPolicy,
    embedder: &dyn Embedder,
    payer: Allowance<'_>,
    estimate: &[Spend<'_>],
    call: impl Future<Output = Result<Embeddings>>,
) -> Result<Embeddings> {
    let allowance = if embedder.billable() {
        payer
    } else {
        Allowance::Free
    };
    pay(db, policy, allowance, estimate, call, |embeddings| {
        Bill::of_embeddings(policy, embeddings)
    })
    .await
}

impl Reservation {
    /// Settles the reservation with `bill`, shared among its rows as their
    /// estimates were (the requests with the first). Waits out a database
    /// outage for up to [`SETTLE_PATIENCE`]; past it the estimate stays.
    pub async fn settle(self, db: &Pool, bill: &Bill) {
        let shares = &self.shares(bill);
        let settled = db::outlast_outage(SETTLE_PATIENCE, || async move {
            ledger::settle(&db.get().await?, shares, bill.service, &bill.model).await
        })
        .await;
        match settled {
            Ok(()) => record_metrics(self.unit, bill.units, bill.usd, bill.requests),
            Err(error) => tracing::error!(
                %error, service = bill.service, units = bill.units, usd = bill.usd,
                "could not settle a paid call; its estimate stays on the bill"
            ),
        }
    }

    /// The call failed before the provider billed it: the estimate goes.
    pub async fn cancel(self, db: &Pool) {
        let ids: &[i64] = &self.rows.iter().map(|(id, _)| *id).collect::<Vec<_>>();
        let cancelled = db::outlast_outage(SETTLE_PATIENCE, || async move {
            ledger::cancel(&db.get().await?, ids).await
        })
        .await;
        if let Err(error) = cancelled {
            tracing::error!(%error, "could not cancel a failed call's reservation; its estimate stays on the bill");
        }
    }

    /// Each row's part of `bill`: by its share of the estimated units (the
    /// rounding's remainder to the last), the requests with the first.
    fn shares(&self, bill: &Bill) -> Vec<ledger::Settled> {
        let estimated: i64 = self.rows.iter().map(|(_, units)| units.max(&0)).sum();
        let mut left = bill.units;
        let count = self.rows.len();
        self.rows
            .iter()
            .enumerate()
            .map(|(n, &(id, units))| {
                let fraction = if estimated > 0 {
                    units.max(0) as f64 / estimated as f64
                } else {
                    1.0 / count as f64
                };
                let share = if n + 1 == count {
                    left
                } else {
                    (bill.units as f64 * fraction).floor() as i64
                };
                left -= share;
                ledger::Settled {
                    id,
                    units: share,
                    usd: bill.usd * fraction,
                    requests: if n == 0 { bill.requests as i32 } else { 0 },
                }
            })
            .collect()
    }
}

/// A settled call's figures, in the unit of work's metrics line.
pub fn record_metrics(unit: &str, units: i64, usd: f64, requests: u32) {
    let metric = match unit {
        "pages" => Metric::PagesParsed,
        "search_units" => Metric::RerankSearchUnits,
        _ => Metric::EmbeddingTokens,
    };
    metrics::add(metric, units as f64);
    metrics::add(Metric::CostUsd, usd);
    metrics::add(Metric::ExternalRequests, f64::from(requests));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bill_is_shared_as_the_estimate_was_and_adds_up() {
        let reservation = Reservation {
            rows: vec![(1, 300), (2, 100), (3, 0)],
            unit: "tokens",
        };
        let bill = Bill {
            service: "openai",
            model: "m".into(),
            units: 401,
            usd: 4.0,
            requests: 2,
        };
        let shares = reservation.shares(&bill);
        let units: Vec<i64> = shares.iter().map(|s| s.units).collect();
        assert_eq!(units, [300, 100, 1]);
        assert_eq!(shares.iter().map(|s| s.units).sum::<i64>(), 401);
        assert!((shares.iter().map(|s| s.usd).sum::<f64>() - 4.0).abs() < 1e-9);
        let requests: Vec<i32> = shares.iter().map(|s| s.requests).collect();
        assert_eq!(requests, [2, 0, 0]);
    }
}
