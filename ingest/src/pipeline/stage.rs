//! How a stage message becomes its stage's work: one shape for every stage
//! (`StageHandler`), the stages a process runs (`Stages`), and what each
//! outcome does to the job.

use super::fair_share::{self, Turn};
use super::{Pipeline, chunk, embed, parse};
use docpipe_aws::queue::{Stage, StageMessage};
use docpipe_core::domain::state::JobState;
use docpipe_core::error::{Error, Result};
use docpipe_core::ops::metrics::{self, Metric};
use docpipe_core::settings::Parts;
use docpipe_core::store::jobs;
use futures::FutureExt;
use futures::future::BoxFuture;
use tracing::Instrument;
use uuid::Uuid;

/// What handling one stage message did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Handled {
    pub job_id: Uuid,
    /// The state the job ended in, if this message ended it.
    pub ended: Option<JobState>,
}

/// One stage of the pipeline: which messages it takes, and its work on one.
/// Every stage has this shape, so a process runs one stage or all alike.
pub trait StageHandler {
    /// The parts of the pipeline it uses: what a process running it builds
    /// (and whose settings, and keys, it reads).
    const PARTS: Parts;
    fn accepts(message: &StageMessage) -> bool;
    /// The work for `message` (one it accepts); `Some(state)` when it ended the job.
    fn run<'a>(
        pipeline: &'a Pipeline,
        message: &'a StageMessage,
    ) -> BoxFuture<'a, Result<Option<JobState>>>;
}

pub struct ParseStage;
pub struct ChunkStage;
pub struct EmbedStage;

impl StageHandler for ParseStage {
    const PARTS: Parts = Parts {
        parse: true,
        ..Parts::NONE
    };
    fn accepts(message: &StageMessage) -> bool {
        matches!(message.stage, Stage::Parse | Stage::ParseCheck { .. })
    }
    fn run<'a>(
        pipeline: &'a Pipeline,
        message: &'a StageMessage,
    ) -> BoxFuture<'a, Result<Option<JobState>>> {
        parse::parse(pipeline, message).boxed()
    }
}

impl StageHandler for ChunkStage {
    const PARTS: Parts = Parts {
        chunk: true,
        ..Parts::NONE
    };
    fn accepts(message: &StageMessage) -> bool {
        matches!(message.stage, Stage::Chunk)
    }
    fn run<'a>(
        pipeline: &'a Pipeline,
        message: &'a StageMessage,
    ) -> BoxFuture<'a, Result<Option<JobState>>> {
        chunk::chunk(pipeline, message).boxed()
    }
}

impl StageHandler for EmbedStage {
    const PARTS: Parts = Parts::EMBED;
    fn accepts(message: &StageMessage) -> bool {
        matches!(message.stage, Stage::Embed { .. })
    }
    fn run<'a>(
        pipeline: &'a Pipeline,
        message: &'a StageMessage,
    ) -> BoxFuture<'a, Result<Option<JobState>>> {
        embed::embed(pipeline, message).boxed()
    }
}

/// The stages a process runs: one (each Lambda function), or all
/// ([`AllStages`]: the local pipeline and tests). A stage's code is in a
/// binary only if the binary runs it.
pub trait Stages {
    const PARTS: Parts;
    /// The work for `message`, if this process runs its stage. Chosen
    /// outside any async state machine, and boxed: an async `match` would
    /// keep every arm's code (the unreachable states of its state machine),
    /// so the binary would hold all stages again.
    fn work<'a>(
        pipeline: &'a Pipeline,
        message: &'a StageMessage,
    ) -> Option<BoxFuture<'a, Result<Option<JobState>>>>;
}

impl<S: StageHandler> Stages for S {
    const PARTS: Parts = S::PARTS;
    fn work<'a>(
        pipeline: &'a Pipeline,
        message: &'a StageMessage,
    ) -> Option<BoxFuture<'a, Result<Option<JobState>>>> {
        S::accepts(message).then(|| S::run(pipeline, message))
    }
}

pub struct AllStages;

impl Stages for AllStages {
    const PARTS: Parts = Parts::ALL;
    fn work<'a>(
        pipeline: &'a Pipeline,
        message: &'a StageMessage,
    ) -> Option<BoxFuture<'a, Result<Option<JobState>>>> {
        ParseStage::work(pipeline, message)
            .or_else(|| ChunkStage::work(pipeline, message))
            .or_else(|| EmbedStage::work(pipeline, message))
    }
}

/// Runs one stage message. A rejection fails the job and is handled (the
/// message is done); a transient error is returned so the message is retried.
pub async fn handle(pipeline: &Pipeline, message: &StageMessage) -> Result<Handled> {
    handle_stages::<AllStages>(pipeline, message).await
}

/// [`handle`] in a process that runs the stages `S` only. A message for
/// another stage (on the wrong queue) is sent on to its own queue.
pub async fn handle_stages<S: Stages>(
    pipeline: &Pipeline,
    message: &StageMessage,
) -> Result<Handled> {
    let handled = metrics::scope(
        message.stage.name(),
        run_stage::<S>(pipeline, message).instrument(stage_span(message)),
    )
    .await;
    pipeline.record_breakers().await;
    handled
}

/// The span around work on a stage message: every log line inside carries
/// the stage, the job and the upload's correlation id.
pub fn stage_span(message: &StageMessage) -> tracing::Span {
    tracing::info_span!(
        "stage",
        stage = message.stage.name(),
        job_id = %message.job_id,
        correlation_id = %message.correlation_id,
    )
}

async fn run_stage<S: Stages>(pipeline: &Pipeline, message: &StageMessage) -> Result<Handled> {
    let job_id = message.job_id;
    let started = std::time::Instant::now();
    let Some(work) = S::work(pipeline, message) else {
        tracing::warn!("message for another stage's queue; sent on to its own");
        pipeline.queue.send(vec![message.clone()]).await?;
        return Ok(Handled {
            job_id,
            ended: None,
        });
    };
    let taken = match fair_share::enter(pipeline, message).await? {
        Turn::Go(taken) => taken,
        Turn::Yielded => {
            return Ok(Handled {
                job_id,
                ended: None,
            });
        }
    };
    let result = work.await;
    fair_share::leave(pipeline, taken).await;
    match result {
        Ok(ended) => {
            count_ended(ended);
            let elapsed_ms = started.elapsed().as_millis() as u64;
            tracing::info!(
                elapsed_ms,
                ended = ended.map(JobState::as_str),
                "stage done"
            );
            Ok(Handled { job_id, ended })
        }
        Err(Error::Rejected(reason)) => {
            tracing::warn!(code = reason.code(), %reason, "job failed");
            metrics::error(reason.code());
            let failed = jobs::fail(&mut pipeline.db.get().await?, job_id, &reason).await?;
            count_ended(failed.then_some(JobState::Failed));
            Ok(Handled {
                job_id,
                ended: failed.then_some(JobState::Failed),
            })
        }
        Err(Error::Waiting(wait)) => {
            metrics::add(Metric::SpendingStopped, 1.0);
            jobs::wait(&pipeline.db.get().await?, job_id, &wait).await?;
            Ok(Handled {
                job_id,
                ended: None,
            })
        }
        Err(transient) => {
            metrics::error(transient.kind());
            Err(transient)
        }
    }
}

fn count_ended(ended: Option<JobState>) {
    match ended {
        Some(JobState::Complete) => metrics::add(Metric::JobsCompleted, 1.0),
        Some(JobState::Failed) => metrics::add(Metric::JobsFailed, 1.0),
        _ => {}
    }
}
