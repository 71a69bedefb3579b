//! A tenant's fair share of a stage's workers. A stage queue is first in,
//! first out, so one tenant's burst of uploads would hold every worker
//! until it had passed, and another tenant's one document would wait
//! behind it all. Instead, while a tenant with fewer messages in hand has a
//! job waiting for the stage, a tenant keeps at most `TENANT_STAGE_SHARE`
//! of the stage's messages in hand; a message past that share goes to the
//! back of the queue for a moment, and the workers reach the waiting work
//! sooner. Alone, or beside tenants as busy, a tenant has every worker.
//!
//! A message lets others go first at most [`MAX_YIELDS`] times, so a
//! misjudged wait (a job whose message is lost, until the sweeper resends
//! it) delays the burst by at most `MAX_YIELDS` × [`YIELD_DELAY`].

use super::Pipeline;
use docpipe_aws::queue::{Stage, StageMessage};
use docpipe_core::domain::state::JobState;
use docpipe_core::error::Result;
use docpipe_core::ops::metrics::{self, Metric};
use docpipe_core::store::stage_work::{self, Taken, Work};
use std::time::Duration;

/// How long a message that let others go first stays out of sight.
pub const YIELD_DELAY: Duration = Duration::from_secs(2);
/// How often one message lets others go first before it goes regardless.
pub const MAX_YIELDS: u32 = 10;

/// How a stage's workers are shared between tenants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FairShare {
    /// A tenant's messages in hand at most while another's job waits; 0: no limit.
    pub per_tenant: u32,
    /// How long work counts as in hand if its holder never says it ended
    /// (the stage deadline).
    pub hold: Duration,
}

/// Whether a message's work goes now.
#[derive(Debug)]
pub enum Turn {
    /// Work on it now; hand the `Work` (if any was taken) to [`leave`].
    Go(Option<Work>),
    /// It was sent to the back of the queue: acknowledge this delivery.
    Yielded,
}

/// Takes `message`'s work in hand, or sends it to the back of the queue if
/// its tenant is past its share while another tenant's job waits.
pub async fn enter(pipeline: &Pipeline, message: &StageMessage) -> Result<Turn> {
    let policy = pipeline.fair_share;
    if policy.per_tenant == 0 {
        return Ok(Turn::Go(None));
    }
    let work = work_of(message);
    let mut client = pipeline.db.get().await?;
    // Past its yields, the message still counts as in hand, for the others' share.
    let share = if message.yields >= MAX_YIELDS {
        u32::MAX
    } else {
        policy.per_tenant
    };
    let taken = stage_work::take(&mut client, work, share, policy.hold).await?;
    drop(client); // not held across the queue's call
    match taken {
        Taken::InHand => Ok(Turn::Go(Some(work))),
        Taken::NoJob => Ok(Turn::Go(None)),
        Taken::OverShare => {
            pipeline
                .queue
                .send_later(message.yielded(), YIELD_DELAY)
                .await?;
            metrics::add(Metric::FairShareYields, 1.0);
            tracing::debug!(
                yields = message.yields + 1,
                "past the tenant's share; another tenant's work goes first"
            );
            Ok(Turn::Yielded)
        }
    }
}

/// The work taken by [`enter`] has ended. If this fails, the work counts
/// as in hand until its hold passes: the share is smaller for that long.
pub async fn leave(pipeline: &Pipeline, work: Option<Work>) {
    let Some(work) = work else { return };
    let released = async { stage_work::release(&pipeline.db.get().await?, work).await };
    if let Err(error) = released.await {
        tracing::warn!(%error, "could not release stage work; it expires with its hold");
    }
}

fn work_of(message: &StageMessage) -> Work {
    let (part, waits_in) = match message.stage {
        Stage::Parse | Stage::ParseCheck { .. } => (0, JobState::Queued),
        Stage::Chunk => (0, JobState::Parsed),
        Stage::Embed { first_chunk, .. } => (first_chunk as i32, JobState::Chunked),
    };
    Work {
        job_id: message.job_id,
        stage: message.stage.name(),
        part,
        waits_in,
    }
}
