//! What the pipeline is doing: jobs per state, failures, per-job outcomes.

use crate::cost::ledger::{self, Estimates};
use crate::db::UtcTime;
use crate::domain::state::JobState;
use crate::error::Result;
use crate::external::breakers::{self, ServiceBreaker};
use deadpool_postgres::GenericClient;
use serde::Serialize;
use std::collections::BTreeMap;
use uuid::Uuid;

/// How many recent failures `overview` lists.
pub const RECENT_FAILURES: i64 = 10;

#[derive(Debug, Clone, Serialize)]
pub struct JobOutcome {
    pub job_id: Uuid,
    pub tenant: String,
    pub source_key: String,
    pub state: JobState,
    pub error_code: Option<String>,
    pub error_message: Option<String>,
    pub chunk_count: Option<i32>,
    pub token_count: Option<i64>,
    /// When the job last changed state (RFC 3339, UTC).
    pub state_changed_at: UtcTime,
    /// Why the job waits (spending stopped), and until when (RFC 3339, UTC).
    pub waiting_reason: Option<String>,
    pub waiting_until: Option<UtcTime>,
}

/// Jobs waiting for spending to resume, by reason.
#[derive(Debug, Clone, Serialize)]
pub struct Waiting {
    pub reason: String,
    pub jobs: i64,
    /// When the last of them may resume (RFC 3339, UTC).
    pub until: UtcTime,
}

#[derive(Debug, Clone, Serialize)]
pub struct Overview {
    pub jobs_by_state: BTreeMap<String, i64>,
    pub documents: i64,
    pub searchable_chunks: i64,
    pub recent_failures: Vec<FailedJob>,
    pub waiting: Vec<Waiting>,
    /// Each external service's circuit breaker, as last reported.
    pub breakers: Vec<ServiceBreaker>,
    /// Paid calls of the last day on the bill at their estimate, not yet
    /// (or never) settled with the provider's figure.
    pub spend_estimates: Estimates,
}

/// A failed job as operators see it: the tenant's outcome, and the reason
/// in full (a provider's words, credentials redacted), which tenants never see.
#[derive(Debug, Clone, Serialize)]
pub struct FailedJob {
    #[serde(flatten)]
    pub outcome: JobOutcome,
    pub error_detail: Option<String>,
}

/// The columns of a [`JobOutcome`], and `error_detail` for operators' views.
const OUTCOME_SELECT: &str = "SELECT id, tenant, source_key, state, error_code, error_message, \
     error_detail, chunk_count, token_count, state_changed_at AS changed, waiting_reason, waiting_until \
     FROM upload_pipeline.upload_jobs";

fn outcome(row: &tokio_postgres::Row) -> JobOutcome {
    JobOutcome {
        job_id: row.get("id"),
        tenant: row.get("tenant"),
        source_key: row.get("source_key"),
        state: row.get("state"),
        error_code: row.get("error_code"),
        error_message: row.get("error_message"),
        chunk_count: row.get("chunk_count"),
        token_count: row.get("token_count"),
        state_changed_at: row.get("changed"),
        waiting_reason: row.get("waiting_reason"),
        waiting_until: row.get("waiting_until"),
    }
}

/// Embedding tokens the provider billed for these jobs (the rest of their
/// tokens came from the cache).
pub async fn tokens_paid(client: &impl GenericClient, job_ids: &[Uuid]) -> Result<i64> {
    let row = client
        .query_one(
            "SELECT coalesce(sum(units), 0)::int8 FROM upload_pipeline.cost_ledger
              WHERE job_id = ANY($1) AND unit = 'tokens'",
            &[&job_ids],
        )
        .await?;
    Ok(row.get(0))
}

/// The outcome of each of these jobs, in no particular order.
pub async fn outcomes(client: &impl GenericClient, job_ids: &[Uuid]) -> Result<Vec<JobOutcome>> {
    let sql = format!("{OUTCOME_SELECT} WHERE id = ANY($1)");
    Ok(client
        .query(&sql, &[&job_ids])
        .await?
        .iter()
        .map(outcome)
        .collect())
}

/// `tenant`'s job `id`; another tenant's id finds nothing.
pub async fn tenant_job(
    client: &impl GenericClient,
    tenant: &str,
    id: Uuid,
) -> Result<Option<JobOutcome>> {
    let sql = format!("{OUTCOME_SELECT} WHERE id = $1 AND tenant = $2");
    Ok(client
        .query_opt(&sql, &[&id, &tenant])
        .await?
        .as_ref()
        .map(outcome))
}

/// A document: whose, where its upload is, its metadata, and its latest job.
#[derive(Debug, Clone, Serialize)]
pub struct Document {
    pub document_id: Uuid,
    pub tenant: String,
    pub source_key: String,
    pub latest_job_id: Option<Uuid>,
    /// Its attributes: its object's S3 user metadata under its sidecar's.
    pub metadata: serde_json::Value,
    /// Why its latest sidecar was not applied, if it was not.
    pub metadata_error: Option<String>,
}

/// `tenant`'s document `id`; another tenant's id finds nothing.
pub async fn document(
    client: &impl GenericClient,
    tenant: &str,
    id: Uuid,
) -> Result<Option<Document>> {
    Ok(client
        .query_opt(
            "SELECT d.id, d.tenant, d.source_key, d.latest_job_id, d.metadata, s.error
               FROM upload_pipeline.documents d
               LEFT JOIN upload_pipeline.metadata_sidecars s USING (source_key)
              WHERE d.id = $1 AND d.tenant = $2",
            &[&id, &tenant],
        )
        .await?
        .map(|row| Document {
            document_id: row.get(0),
            tenant: row.get(1),
            source_key: row.get(2),
            latest_job_id: row.get(3),
            metadata: row.get(4),
            metadata_error: row.get(5),
        }))
}

/// One tenant's figures: jobs per state, completions in the last hour, and
/// its spending today (UTC). Nothing of other tenants.
#[derive(Debug, Clone, Serialize)]
pub struct TenantMetrics {
    pub jobs_by_state: BTreeMap<String, i64>,
    pub completed_last_hour: i64,
    /// Jobs that ended in each minute of the last hour, oldest first (minutes
    /// in which none ended are left out).
    pub throughput: Vec<MinuteThroughput>,
    pub tokens_today: i64,
    pub pages_today: i64,
    pub usd_today: f64,
    /// The tenant's paid calls of the last day on the bill at their estimate.
    pub spend_estimates: Estimates,
}

#[derive(Debug, Clone, Serialize)]
pub struct MinuteThroughput {
    /// The minute's start (RFC 3339, UTC).
    pub minute: UtcTime,
    pub completed: i64,
    pub failed: i64,
    pub chunks: i64,
}

pub async fn tenant_metrics(client: &impl GenericClient, tenant: &str) -> Result<TenantMetrics> {
    let mut jobs_by_state: BTreeMap<String, i64> =
        JobState::ALL.iter().map(|s| (s.to_string(), 0)).collect();
    for row in client
        .query(
            "SELECT state, count(*) FROM upload_pipeline.upload_jobs WHERE tenant = $1 GROUP BY state",
            &[&tenant],
        )
        .await?
    {
        jobs_by_state.insert(row.get(0), row.get(1));
    }
    let row = client
        .query_one(
            "SELECT
               (SELECT count(*) FROM upload_pipeline.upload_jobs
                 WHERE tenant = $1 AND state = 'complete' AND state_changed_at > now() - interval '1 hour'),
               coalesce(sum(units) FILTER (WHERE tenant = $1 AND unit = 'tokens'), 0)::int8,
               coalesce(sum(units) FILTER (WHERE tenant = $1 AND unit = 'pages'), 0)::int8,
               coalesce(sum(usd) FILTER (WHERE tenant = $1), 0)::float8
             FROM upload_pipeline.cost_ledger
            WHERE day = (now() AT TIME ZONE 'utc')::date AND tenant = $1",
            &[&tenant],
        )
        .await?;
    let throughput = client
        .query(
            "SELECT date_trunc('minute', state_changed_at),
                    count(*) FILTER (WHERE state = 'complete'),
                    count(*) FILTER (WHERE state = 'failed'),
                    coalesce(sum(chunk_count) FILTER (WHERE state = 'complete'), 0)::int8
               FROM upload_pipeline.upload_jobs
              WHERE tenant = $1 AND state IN ('complete', 'failed')
                AND state_changed_at > now() - interval '1 hour'
              GROUP BY 1 ORDER BY 1",
            &[&tenant],
        )
        .await?
        .iter()
        .map(|row| MinuteThroughput {
            minute: row.get(0),
            completed: row.get(1),
            failed: row.get(2),
            chunks: row.get(3),
        })
        .collect();
    Ok(TenantMetrics {
        jobs_by_state,
        throughput,
        completed_last_hour: row.get(0),
        tokens_today: row.get(1),
        pages_today: row.get(2),
        usd_today: row.get(3),
        spend_estimates: ledger::estimates(client, Some(tenant)).await?,
    })
}

/// One step of a job's audit history.
#[derive(Debug, Clone, Serialize)]
pub struct JobEvent {
    pub from_state: Option<JobState>,
    pub to_state: Option<JobState>,
    pub action: String,
    pub detail: serde_json::Value,
    /// RFC 3339, UTC, to the millisecond.
    pub at: String,
}

/// A job's audit history, oldest first.
pub async fn history(
    client: &impl GenericClient,
    tenant: &str,
    job_id: Uuid,
) -> Result<Vec<JobEvent>> {
    let sql = concat!(
        "SELECT e.from_state, e.to_state, e.action, e.detail, ",
        "to_char(e.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"') ",
        "FROM upload_pipeline.events e JOIN upload_pipeline.upload_jobs j ON j.id = e.job_id ",
        "WHERE e.job_id = $1 AND j.tenant = $2 ORDER BY e.id"
    );
    Ok(client
        .query(sql, &[&job_id, &tenant])
        .await?
        .iter()
        .map(|row| JobEvent {
            from_state: row.get(0),
            to_state: row.get(1),
            action: row.get(2),
            detail: row.get(3),
            at: row.get(4),
        })
        .collect())
}

/// A page of `tenant`'s jobs, newest first, optionally in one state;
/// `after` is the last job of the previous page.
pub async fn jobs(
    client: &impl GenericClient,
    tenant: &str,
    state: Option<JobState>,
    after: Option<Uuid>,
    limit: i64,
) -> Result<Vec<JobOutcome>> {
    let sql = format!(
        "{OUTCOME_SELECT} WHERE tenant = $1 AND ($2::text IS NULL OR state = $2)
           AND ($3::uuid IS NULL OR (created_at, id) <
                (SELECT created_at, id FROM upload_pipeline.upload_jobs WHERE id = $3 AND tenant = $1))
         ORDER BY created_at DESC, id DESC LIMIT $4"
    );
    Ok(client
        .query(&sql, &[&tenant, &state, &after, &limit])
        .await?
        .iter()
        .map(outcome)
        .collect())
}

pub async fn overview(client: &impl GenericClient) -> Result<Overview> {
    let mut jobs_by_state: BTreeMap<String, i64> =
        JobState::ALL.iter().map(|s| (s.to_string(), 0)).collect();
    for row in client
        .query(
            "SELECT state, count(*) FROM upload_pipeline.upload_jobs GROUP BY state",
            &[],
        )
        .await?
    {
        jobs_by_state.insert(row.get(0), row.get(1));
    }
    let counts = client
        .query_one(
            "SELECT (SELECT count(*) FROM upload_pipeline.documents),
                    (SELECT count(*) FROM upload_pipeline.document_chunks)",
            &[],
        )
        .await?;
    let sql =
        format!("{OUTCOME_SELECT} WHERE state = 'failed' ORDER BY state_changed_at DESC LIMIT $1");
    let recent_failures = client
        .query(&sql, &[&RECENT_FAILURES])
        .await?
        .iter()
        .map(|row| FailedJob {
            outcome: outcome(row),
            error_detail: row.get("error_detail"),
        })
        .collect();
    let waiting = client
        .query(
            "SELECT waiting_reason, count(*), max(waiting_until)
               FROM upload_pipeline.upload_jobs WHERE waiting_reason IS NOT NULL
              GROUP BY waiting_reason ORDER BY waiting_reason",
            &[],
        )
        .await?
        .iter()
        .map(|row| Waiting {
            reason: row.get(0),
            jobs: row.get(1),
            until: row.get(2),
        })
        .collect();
    Ok(Overview {
        spend_estimates: ledger::estimates(client, None).await?,
        jobs_by_state,
        documents: counts.get(0),
        searchable_chunks: counts.get(1),
        recent_failures,
        waiting,
        breakers: breakers::read(client).await?,
    })
}
