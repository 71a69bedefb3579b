//! The sweeper: resumes jobs whose messages were lost or keep failing
//! silently, fails the ones that stay stuck, resumes jobs whose wait for
//! spending (budget, request cap) is over, and re-embeds searchable chunks
//! (`reembed`: fallback vectors, a model change).

use crate::pipeline::metadata;
use crate::pipeline::reembed::{self, ModelChangeReport};
use crate::pipeline::{self, Pipeline};
use docpipe_core::cost::ledger;
use docpipe_core::domain::state::JobState;
use docpipe_core::error::{Rejection, Result};
use docpipe_core::ops::metrics::{self, Metric};
use docpipe_core::settings::SweepPolicy;
use docpipe_core::store::{jobs, sidecars};
use std::time::Duration;
use uuid::Uuid;

/// What one sweep did.
#[derive(Debug, Default, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SweepReport {
    /// Jobs whose next messages were sent again.
    pub resumed: Vec<Uuid>,
    /// Jobs failed with `stuck` after `max_retries` resumes.
    pub failed: Vec<Uuid>,
    /// Jobs whose wait for spending to resume was over, sent on again.
    pub unpaused: Vec<Uuid>,
    /// Searchable vectors of the fallback model replaced with the provider's.
    pub replaced_fallback_vectors: u64,
    /// A model change's progress (`NEXT_EMBEDDING_*`).
    pub model_change: ModelChangeReport,
    /// Paid calls' reservations that no call can settle any more, closed at
    /// their estimate.
    pub estimated_spend: u64,
    /// Sidecars `POST /v1/uploads` wrote for uploads that never came, removed.
    pub unclaimed_sidecars: u64,
}

/// How long after its upload URL expires a sidecar waits for its document:
/// an upload started just before the expiry may still be landing.
pub const UNCLAIMED_SIDECAR_GRACE: Duration = Duration::from_secs(15 * 60);

/// A reservation older than this can no longer be settled by its call: no
/// call waits so long (a Lambda function runs 15 minutes at most). A
/// LlamaParse result, which comes in a later message, settles its
/// reservation even after this.
pub const RESERVATION_TTL: Duration = Duration::from_secs(15 * 60);

/// Claims up to `policy.batch` stuck jobs and resumes or fails each. The
/// messages are sent before the commit: if the commit fails they are
/// duplicates, which every stage acknowledges; the reverse could lose them.
pub async fn sweep(pipeline: &Pipeline, policy: &SweepPolicy) -> Result<SweepReport> {
    metrics::scope("sweeper", sweep_once(pipeline, policy)).await
}

async fn sweep_once(pipeline: &Pipeline, policy: &SweepPolicy) -> Result<SweepReport> {
    let mut client = pipeline.db.get().await?;
    let tx = client.transaction().await?;
    let timeouts = [
        (JobState::Queued, policy.queued_timeout),
        (JobState::Parsed, policy.parsed_timeout),
        (JobState::Chunked, policy.chunked_timeout),
    ];
    let mut report = SweepReport::default();
    let mut messages = Vec::new();
    for job in jobs::claim_stuck(&tx, timeouts, policy.batch).await? {
        if job.sweep_count as u32 >= policy.max_retries {
            let reason = Rejection::Stuck {
                state: job.state.to_string(),
                resumes: job.sweep_count as u32,
            };
            tracing::warn!(job_id = %job.id, correlation_id = %job.correlation_id, %reason, "failing stuck job");
            jobs::fail_in(&tx, job.id, job.state, &reason).await?;
            report.failed.push(job.id);
        } else {
            tracing::info!(job_id = %job.id, correlation_id = %job.correlation_id, state = %job.state, "resuming stuck job");
            jobs::mark_resumed(&tx, &job).await?;
            messages.extend(pipeline::resume_messages(&job, pipeline.embed_batch_size));
            report.resumed.push(job.id);
        }
    }
    for job in jobs::claim_waited(&tx, policy.batch).await? {
        tracing::info!(job_id = %job.id, correlation_id = %job.correlation_id, state = %job.state, "wait over; resuming job");
        messages.extend(pipeline::resume_messages(&job, pipeline.embed_batch_size));
        report.unpaused.push(job.id);
    }
    pipeline.queue.send(messages).await?;
    report.estimated_spend = ledger::close_stale_reservations(&tx, RESERVATION_TTL).await?;
    tx.commit().await?;
    if report.estimated_spend > 0 {
        tracing::warn!(
            reservations = report.estimated_spend,
            "paid calls never settled: their estimates stay on the bill"
        );
    }
    metrics::add(Metric::SpendEstimated, report.estimated_spend as f64);
    metrics::add(Metric::JobsFailed, report.failed.len() as f64);
    let resumed = report.resumed.len() + report.unpaused.len();
    metrics::add(Metric::JobsResumed, resumed as f64);
    // Best effort: the provider may still be down; the next sweep tries again.
    match remove_unclaimed_sidecars(pipeline, policy.batch).await {
        Ok(removed) => report.unclaimed_sidecars = removed,
        Err(error) => tracing::warn!(%error, "unclaimed sidecars not removed yet"),
    }
    match reembed::replace_fallback_vectors(pipeline, policy.batch * 10).await {
        Ok(replaced) => report.replaced_fallback_vectors = replaced,
        Err(error) => tracing::warn!(%error, "fallback vectors not replaced yet"),
    }
    match reembed::advance_model_change(pipeline, policy.model_change_batch).await {
        Ok(progress) => report.model_change = progress,
        Err(error) => tracing::warn!(%error, "model change not moved on this sweep"),
    }
    pipeline.record_breakers().await;
    Ok(report)
}

/// Removes up to `limit` sidecars written by `POST /v1/uploads` whose upload
/// never came, and their attributes. The list entries go only once their
/// sidecars are gone (the transaction commits after the deletes).
async fn remove_unclaimed_sidecars(pipeline: &Pipeline, limit: u32) -> Result<u64> {
    let mut client = pipeline.db.get().await?;
    let tx = client.transaction().await?;
    let unclaimed =
        sidecars::take_unclaimed(&tx, UNCLAIMED_SIDECAR_GRACE, i64::from(limit)).await?;
    for sidecar_key in &unclaimed {
        pipeline.blobs.delete(sidecar_key).await?;
    }
    tx.commit().await?;
    for sidecar_key in &unclaimed {
        // As its delete notification would (it may come too, and find it done).
        metadata::sidecar_changed(pipeline, sidecar_key).await?;
        tracing::info!(sidecar_key, "sidecar of an upload that never came removed");
    }
    Ok(unclaimed.len() as u64)
}
