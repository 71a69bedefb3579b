//! Ending a job that cannot go on: its message's retries are used up, or
//! its work panicked. The reason is recorded on the job.

use super::{Pipeline, stage_span};
use docpipe_aws::queue::StageMessage;
use docpipe_core::error::{Error, Rejection};
use docpipe_core::ops::metrics;
use docpipe_core::store::jobs;
use tracing::Instrument;
use uuid::Uuid;

/// Fails the job of a message that will not be delivered again (its retries
/// are used up), recording the last error. Returns whether the job failed now.
pub async fn give_up(
    pipeline: &Pipeline,
    message: &StageMessage,
    attempts: u32,
    error: &Error,
) -> bool {
    record_give_up(pipeline, message.job_id, attempts, error)
        .instrument(stage_span(message))
        .await
}

async fn record_give_up(pipeline: &Pipeline, job_id: Uuid, attempts: u32, error: &Error) -> bool {
    let last_error = match error {
        Error::Transient(detail) => detail.clone(),
        other => other.to_string(),
    };
    let reason = Rejection::RetriesExhausted {
        attempts,
        last_error,
    };
    tracing::error!(%job_id, attempts, %error, "giving up on message");
    record_failure(pipeline, job_id, &reason).await
}

/// Fails the job of `message` with `reason` (its work cannot go on: it
/// panicked). Returns whether the job failed now.
pub async fn fail_job(pipeline: &Pipeline, message: &StageMessage, reason: &Rejection) -> bool {
    let job_id = message.job_id;
    let span = stage_span(message);
    span.in_scope(|| tracing::error!(code = reason.code(), %reason, "job failed"));
    metrics::error(reason.code());
    record_failure(pipeline, job_id, reason)
        .instrument(span)
        .await
}

async fn record_failure(pipeline: &Pipeline, job_id: Uuid, reason: &Rejection) -> bool {
    let failed = match pipeline.db.get().await {
        Ok(mut client) => jobs::fail(&mut client, job_id, reason).await,
        Err(e) => Err(e.into()),
    };
    failed.unwrap_or_else(|e| {
        // The sweeper fails the job later if this could not.
        tracing::error!(%job_id, error = %e, "could not record the failure on the job");
        false
    })
}
