//! Job rows and their state moves. Every move is a conditional UPDATE plus an
//! `events` row in the caller's transaction.

mod progress;

pub use progress::{
    add_embedded, claim_parse_request, parsed_keys, release_older_texts, release_parse_request,
    set_chunked, set_parse_request, set_parsed,
};

use crate::domain::state::JobState;
use crate::error::{Error, Rejection, Result, Wait};
use deadpool_postgres::GenericClient;
use serde_json::Value;
use tokio_postgres::Row;
use uuid::Uuid;

/// A job as the stages see it.
#[derive(Debug, Clone)]
pub struct Job {
    pub id: Uuid,
    pub document_id: Uuid,
    pub tenant: String,
    pub source_key: String,
    pub state: JobState,
    pub parsed_key: Option<String>,
    pub chunk_count: Option<i32>,
    pub correlation_id: String,
    /// How often the sweeper resumed this job.
    pub sweep_count: i32,
    /// The LlamaParse job parsing this version, once submitted.
    pub parse_request_id: Option<String>,
    pub parse_requested_at: Option<std::time::SystemTime>,
}

const JOB_COLUMNS: &str = "id, document_id, tenant, source_key, state, parsed_key, chunk_count, \
                           correlation_id, sweep_count, parse_request_id, parse_requested_at";

impl Job {
    fn from_row(row: &Row) -> Result<Job> {
        Ok(Job {
            id: row.get("id"),
            document_id: row.get("document_id"),
            tenant: row.get("tenant"),
            source_key: row.get("source_key"),
            state: row.try_get("state")?,
            parsed_key: row.get("parsed_key"),
            chunk_count: row.get("chunk_count"),
            correlation_id: row.get("correlation_id"),
            sweep_count: row.get("sweep_count"),
            parse_request_id: row.get("parse_request_id"),
            parse_requested_at: row.get("parse_requested_at"),
        })
    }
}

/// The job, or `None` if no such job exists.
pub async fn find(client: &impl GenericClient, job_id: Uuid) -> Result<Option<Job>> {
    let sql = format!("SELECT {JOB_COLUMNS} FROM upload_pipeline.upload_jobs WHERE id = $1");
    client
        .query_opt(&sql, &[&job_id])
        .await?
        .map(|row| Job::from_row(&row))
        .transpose()
}

/// The job, locked until the transaction ends, so concurrent stage messages of
/// one job take turns. Rows that refer to it (events, chunks) may still be
/// written meanwhile (`FOR NO KEY UPDATE`, as [`documents::lock`](super::documents::lock)).
pub async fn lock(tx: &impl GenericClient, job_id: Uuid) -> Result<Option<Job>> {
    let sql = format!(
        "SELECT {JOB_COLUMNS} FROM upload_pipeline.upload_jobs WHERE id = $1 FOR NO KEY UPDATE"
    );
    tx.query_opt(&sql, &[&job_id])
        .await?
        .map(|row| Job::from_row(&row))
        .transpose()
}

/// Unfinished jobs idle (no `updated_at` change) for longer than their
/// state's timeout, oldest first, locked; jobs another transaction holds are
/// skipped, so concurrent sweepers never claim the same job.
pub async fn claim_stuck(
    tx: &impl GenericClient,
    timeouts: [(JobState, std::time::Duration); 3],
    limit: u32,
) -> Result<Vec<Job>> {
    let states: Vec<JobState> = timeouts.iter().map(|(s, _)| *s).collect();
    let secs: Vec<f64> = timeouts.iter().map(|(_, t)| t.as_secs_f64()).collect();
    let sql = format!(
        "SELECT {JOB_COLUMNS} FROM upload_pipeline.upload_jobs j
           JOIN unnest($1::text[], $2::float8[]) AS t(stuck_state, idle_secs) ON t.stuck_state = j.state
          WHERE j.updated_at < now() - make_interval(secs => t.idle_secs)
            AND j.waiting_until IS NULL
          ORDER BY j.updated_at
          LIMIT $3
          FOR UPDATE OF j SKIP LOCKED"
    );
    tx.query(&sql, &[&states, &secs, &i64::from(limit)])
        .await?
        .iter()
        .map(Job::from_row)
        .collect()
}

/// Marks an unfinished job as waiting for spending to resume; the first
/// stage to hit the stop records it, later ones find it already waiting.
pub async fn wait(client: &impl GenericClient, job_id: Uuid, wait: &Wait) -> Result<()> {
    let row = client
        .query_opt(
            "UPDATE upload_pipeline.upload_jobs
                SET waiting_reason = $2, waiting_until = $3, updated_at = now()
              WHERE id = $1 AND state IN ('queued', 'parsed', 'chunked') AND waiting_reason IS NULL
          RETURNING state",
            &[&job_id, &wait.reason, &wait.until],
        )
        .await?;
    if let Some(row) = row {
        let state: JobState = row.try_get(0)?;
        let detail = serde_json::json!({ "reason": wait.reason });
        record(client, job_id, Some(state), state, "waiting", &detail).await?;
    }
    Ok(())
}

/// Waiting jobs whose wait is over, oldest first, locked and no longer waiting.
pub async fn claim_waited(tx: &impl GenericClient, limit: u32) -> Result<Vec<Job>> {
    let sql = format!(
        "UPDATE upload_pipeline.upload_jobs
            SET waiting_reason = NULL, waiting_until = NULL, updated_at = now()
          WHERE id IN (SELECT id FROM upload_pipeline.upload_jobs
                        WHERE waiting_until <= now() AND state IN ('queued', 'parsed', 'chunked')
                        ORDER BY waiting_until
                        LIMIT $1
                        FOR UPDATE SKIP LOCKED)
      RETURNING {JOB_COLUMNS}"
    );
    tx.query(&sql, &[&i64::from(limit)])
        .await?
        .iter()
        .map(Job::from_row)
        .collect()
}

/// Restarts a job's idle clock: it is waiting on a service, not stuck.
pub async fn touch(client: &impl GenericClient, job_id: Uuid) -> Result<()> {
    client
        .execute(
            "UPDATE upload_pipeline.upload_jobs SET updated_at = now(), sweep_count = 0 WHERE id = $1",
            &[&job_id],
        )
        .await?;
    Ok(())
}

/// Records that the sweeper resumed a stuck job, restarting its idle clock.
pub async fn mark_resumed(tx: &impl GenericClient, job: &Job) -> Result<()> {
    tx.execute(
        "UPDATE upload_pipeline.upload_jobs
            SET sweep_count = sweep_count + 1, updated_at = now()
          WHERE id = $1",
        &[&job.id],
    )
    .await?;
    let detail = serde_json::json!({ "resume": job.sweep_count + 1 });
    record(tx, job.id, Some(job.state), job.state, "resumed", &detail).await
}

/// What ingest knows about a new job.
pub struct NewJob<'a> {
    pub id: Uuid,
    pub document_id: Uuid,
    pub tenant: &'a str,
    pub source_key: &'a str,
    pub content_sha256: &'a [u8; 32],
    pub size_bytes: u64,
    pub correlation_id: &'a str,
}

/// Inserts a job in `queued` unless it exists. Returns whether it was created.
pub async fn create(tx: &impl GenericClient, job: &NewJob<'_>) -> Result<bool> {
    let created = tx
        .execute(
            "INSERT INTO upload_pipeline.upload_jobs
                 (id, document_id, tenant, source_key, content_sha256, size_bytes, state, correlation_id)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
             ON CONFLICT (id) DO NOTHING",
            &[
                &job.id,
                &job.document_id,
                &job.tenant,
                &job.source_key,
                &hex::encode(job.content_sha256),
                &(job.size_bytes as i64),
                &JobState::Queued,
                &job.correlation_id,
            ],
        )
        .await?
        == 1;
    if created {
        let detail = serde_json::json!({ "key": job.source_key, "size_bytes": job.size_bytes });
        record(tx, job.id, None, JobState::Queued, "created", &detail).await?;
    }
    Ok(created)
}

async fn record(
    tx: &impl GenericClient,
    job_id: Uuid,
    from: Option<JobState>,
    to: JobState,
    action: &str,
    detail: &Value,
) -> Result<()> {
    tx.execute(
        "INSERT INTO upload_pipeline.events (job_id, from_state, to_state, action, detail)
         VALUES ($1, $2, $3, $4, $5)",
        &[&job_id, &from, &to, &action, detail],
    )
    .await?;
    Ok(())
}

/// Moves a job `from -> to` if it is still in `from`, and records the move.
/// Returns `false` (and changes nothing) when the job had already moved: the
/// caller's message is stale. An illegal move is a bug and is refused.
/// A job that ends drops its buffered chunks and vectors.
pub async fn transition(
    tx: &impl GenericClient,
    job_id: Uuid,
    from: JobState,
    to: JobState,
    detail: Value,
) -> Result<bool> {
    let action = from.action_to(to).ok_or_else(|| {
        Error::Transient(format!(
            "illegal job transition {from} -> {to} for job {job_id}"
        ))
    })?;
    let moved = tx
        .execute(
            "UPDATE upload_pipeline.upload_jobs
                SET state = $3, state_changed_at = now(), updated_at = now(),
                    waiting_reason = NULL, waiting_until = NULL,
                    -- Progress: the sweeper's count of resumes without any starts again.
                    sweep_count = 0
              WHERE id = $1 AND state = $2",
            &[&job_id, &from, &to],
        )
        .await?;
    if moved == 0 {
        return Ok(false);
    }
    record(tx, job_id, Some(from), to, action, &detail).await?;
    if to.is_terminal() {
        for table in ["document_chunk_buffer", "document_vector_buffer"] {
            let sql = format!("DELETE FROM upload_pipeline.{table} WHERE job_id = $1");
            tx.execute(&sql, &[&job_id]).await?;
        }
    }
    Ok(true)
}

/// Puts an ended job back to `queued` with its progress cleared, under the
/// correlation id of whatever asked for it.
pub async fn requeue(
    tx: &impl GenericClient,
    job_id: Uuid,
    from: JobState,
    reason: &str,
    correlation_id: &str,
) -> Result<bool> {
    if !transition(
        tx,
        job_id,
        from,
        JobState::Queued,
        serde_json::json!({ "reason": reason }),
    )
    .await?
    {
        return Ok(false);
    }
    tx.execute(
        "UPDATE upload_pipeline.upload_jobs
            SET error_code = NULL, error_message = NULL, error_detail = NULL, chunk_count = NULL,
                token_count = NULL, embedded_chunks = 0, sweep_count = 0, correlation_id = $2,
                parse_request_id = NULL, parse_requested_at = NULL
          WHERE id = $1",
        &[&job_id, &correlation_id],
    )
    .await?;
    Ok(true)
}

/// Fails a job that is in `from`, recording the reason users will see.
pub async fn fail_in(
    tx: &impl GenericClient,
    job_id: Uuid,
    from: JobState,
    reason: &Rejection,
) -> Result<bool> {
    let message = reason.tenant_message();
    let detail = serde_json::json!({ "code": reason.code(), "message": message });
    if !transition(tx, job_id, from, JobState::Failed, detail).await? {
        return Ok(false);
    }
    tx.execute(
        "UPDATE upload_pipeline.upload_jobs SET error_code = $2, error_message = $3, error_detail = $4
          WHERE id = $1",
        &[&job_id, &reason.code(), &message, &reason.operator_detail()],
    )
    .await?;
    Ok(true)
}

/// Fails a job wherever it is, unless it already ended. Returns whether it failed now.
pub async fn fail(
    client: &mut deadpool_postgres::Client,
    job_id: Uuid,
    reason: &Rejection,
) -> Result<bool> {
    let tx = client.transaction().await?;
    let Some(job) = lock(&tx, job_id).await? else {
        return Ok(false);
    };
    if job.state.is_terminal() || !fail_in(&tx, job_id, job.state, reason).await? {
        return Ok(false);
    }
    tx.commit().await?;
    Ok(true)
}
