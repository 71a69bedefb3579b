//! Where a job is, and the messages that move it on: the redelivery guard
//! every stage runs first, and what the sweeper and local runs send again.

use super::{Pipeline, chunk};
use docpipe_aws::queue::{Stage, StageMessage};
use docpipe_core::domain::state::JobState;
use docpipe_core::error::Result;
use docpipe_core::store::jobs::{self, Job};
use uuid::Uuid;

/// The job if it is in `expected`; `None` (logged) for a stale or unknown job,
/// whose message is then acknowledged without effect.
pub(crate) async fn job_in_state(
    pipeline: &Pipeline,
    job_id: Uuid,
    expected: JobState,
    stage: &str,
) -> Result<Option<Job>> {
    let job = jobs::find(&pipeline.db.get().await?, job_id).await?;
    match job {
        Some(job) if job.state == expected => Ok(Some(job)),
        // This stage's work is done but the message came back: the instance
        // that did it may have died before sending the next stage's messages.
        // Send them again (every stage is idempotent) rather than leave the
        // job to the sweeper.
        Some(job)
            if matches!(
                (expected, job.state),
                (JobState::Queued, JobState::Parsed) | (JobState::Parsed, JobState::Chunked)
            ) =>
        {
            tracing::info!(%job_id, stage, state = %job.state, "redelivered after its work was done; next stage sent again");
            pipeline
                .queue
                .send(resume_messages(&job, pipeline.embed_batch_size))
                .await?;
            Ok(None)
        }
        Some(job) => {
            tracing::info!(%job_id, stage, state = %job.state, "stale message: job already moved; acknowledged");
            Ok(None)
        }
        None => {
            tracing::warn!(%job_id, stage, "message for an unknown job; acknowledged");
            Ok(None)
        }
    }
}

/// The messages that move a job on from where it is; empty for an ended job.
/// For resuming work whose messages were lost (local runs, the sweeper).
pub fn resume_messages(job: &Job, embed_batch_size: u32) -> Vec<StageMessage> {
    let stages: Vec<Stage> = match job.state {
        JobState::Queued => vec![Stage::Parse],
        JobState::Parsed => vec![Stage::Chunk],
        JobState::Chunked => {
            chunk::embed_stages(job.chunk_count.unwrap_or(0) as u32, embed_batch_size).collect()
        }
        JobState::Complete | JobState::Failed | JobState::Superseded => Vec::new(),
    };
    stages
        .into_iter()
        .map(|stage| StageMessage::new(job.id, job.correlation_id.clone(), stage))
        .collect()
}
