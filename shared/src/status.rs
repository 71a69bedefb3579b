//! What the pipeline is doing: jobs per state, failures, per-job outcomes.

use crate::error::Result;
use crate::state::JobState;
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
    pub state: String,
    pub error_code: Option<String>,
    pub error_message: Option<String>,
    pub chunk_count: Option<i32>,
    pub token_count: Option<i64>,
    /// When the job last changed state (RFC 3339, UTC).
    pub state_changed_at: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Overview {
    pub jobs_by_state: BTreeMap<String, i64>,
    pub documents: i64,
    pub searchable_chunks: i64,
    pub recent_failures: Vec<JobOutcome>,
}

const OUTCOME_SELECT: &str =
    "SELECT id, tenant, source_key, state, error_code, error_message, chunk_count, token_count,
        to_char(state_changed_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"') AS changed
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
    }
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
        .map(outcome)
        .collect();
    Ok(Overview {
        jobs_by_state,
        documents: counts.get(0),
        searchable_chunks: counts.get(1),
        recent_failures,
    })
}
