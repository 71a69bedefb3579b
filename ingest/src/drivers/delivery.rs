//! One policy for a delivered message, whatever delivered it: Lambda's SQS
//! event source, the local runner (which calls the Lambda handlers), or the
//! CLI's in-process queue. The work for one message runs isolated, so a panic
//! ends only that message's work (and fails its job with the reason: the
//! same input would panic again), and within a deadline, as the function
//! timeout would end it. A transient failure comes again until the last
//! attempt, on which the job is failed with the error, so it says why. The
//! transports only deliver, acknowledge, and deliver again.

use crate::pipeline::{self, Handled, Pipeline, Stages};
use backon::{BackoffBuilder, ExponentialBuilder};
use docpipe_aws::queue::StageMessage;
use docpipe_core::domain::state::JobState;
use docpipe_core::error::{Error, Rejection, Result};
use futures::FutureExt;
use std::panic::AssertUnwindSafe;
use std::time::Duration;

/// How many times a message is delivered, and how long each may take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeliveryPolicy {
    /// Deliveries before the message is given up (SQS `maxReceiveCount`).
    pub max_attempts: u32,
    /// The longest one delivery's work may take (`STAGE_DEADLINE_SECS`, the
    /// function timeout).
    pub deadline: Duration,
    /// The wait before a second delivery where the transport waits itself
    /// (the CLI; SQS waits its visibility timeout), doubling after.
    pub first_backoff: Duration,
}

impl DeliveryPolicy {
    /// The wait before delivery `attempt` (2 or more) of a message.
    pub fn backoff(&self, attempt: u32) -> Duration {
        let mut delays = ExponentialBuilder::default()
            .with_min_delay(self.first_backoff)
            .with_max_delay(self.deadline)
            .without_max_times()
            .build();
        delays
            .nth(attempt.saturating_sub(2) as usize)
            .unwrap_or(self.deadline)
    }
}

/// What became of one delivery of a stage message.
#[derive(Debug)]
pub enum Verdict {
    /// Done with: acknowledge it (the job may have ended, failed included).
    Done(Handled),
    /// Deliver it again later.
    Retry(Error),
    /// That was its last delivery: the job is failed with the error (unless
    /// it had already ended), and the message is not acknowledged, so a
    /// queue keeps it in its dead-letter queue.
    GaveUp { job_failed: bool, error: Error },
}

/// Runs `work` within `deadline`, a panic caught: both are errors of this
/// work alone.
pub async fn isolated<T>(
    deadline: Duration,
    work: impl Future<Output = Result<T>>,
) -> std::result::Result<Result<T>, Trouble> {
    match tokio::time::timeout(deadline, AssertUnwindSafe(work).catch_unwind()).await {
        Ok(Ok(result)) => Ok(result),
        Ok(Err(panic)) => Err(Trouble::Panicked(docpipe_core::error::panic_message(
            panic.as_ref(),
        ))),
        Err(_) => Err(Trouble::TimedOut(deadline)),
    }
}

/// Why isolated work returned nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Trouble {
    Panicked(String),
    TimedOut(Duration),
}

impl From<Trouble> for Error {
    fn from(trouble: Trouble) -> Error {
        match trouble {
            Trouble::Panicked(detail) => Error::Transient(format!("panicked: {detail}")),
            Trouble::TimedOut(deadline) => Error::Transient(format!(
                "ran past its deadline of {} s (STAGE_DEADLINE_SECS)",
                deadline.as_secs()
            )),
        }
    }
}

/// The stage message in a delivered body; an unreadable body is an error
/// (such a message reaches the dead-letter queue).
pub fn decode(body: &str) -> Result<StageMessage> {
    serde_json::from_str(body)
        .map_err(|e| Error::Transient(format!("unreadable stage message: {e}")))
}

/// Handles the `attempt`th delivery of `message` in a process that runs
/// the stages `S`.
pub async fn stage_message<S: Stages>(
    pipeline: &Pipeline,
    message: &StageMessage,
    attempt: u32,
    policy: &DeliveryPolicy,
) -> Verdict {
    let error = match isolated(
        policy.deadline,
        pipeline::handle_stages::<S>(pipeline, message),
    )
    .await
    {
        Ok(Ok(handled)) => return Verdict::Done(handled),
        Ok(Err(error)) => error,
        Err(Trouble::Panicked(detail)) => {
            let reason = Rejection::StagePanicked { detail };
            let failed = pipeline::fail_job(pipeline, message, &reason).await;
            return Verdict::Done(Handled {
                job_id: message.job_id,
                ended: failed.then_some(JobState::Failed),
            });
        }
        Err(timed_out) => timed_out.into(),
    };
    let last = attempt >= policy.max_attempts;
    pipeline::stage_span(message)
        .in_scope(|| tracing::warn!(attempt, last, %error, "stage failed; will be retried"));
    if !last {
        return Verdict::Retry(error);
    }
    let job_failed = pipeline::give_up(pipeline, message, attempt, &error).await;
    Verdict::GaveUp { job_failed, error }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_panic_or_the_deadline_ends_only_the_work_itself() {
        let deadline = Duration::from_millis(50);
        let panicked = isolated(deadline, async { panic!("boom") as Result<()> }).await;
        assert_eq!(panicked.unwrap_err(), Trouble::Panicked("boom".into()));
        let slow = isolated(deadline, async {
            tokio::time::sleep(Duration::from_secs(5)).await;
            Ok(())
        })
        .await;
        assert_eq!(slow.unwrap_err(), Trouble::TimedOut(deadline));
        assert_eq!(
            isolated(deadline, async { Ok(7) }).await.unwrap().unwrap(),
            7
        );
    }

    #[test]
    fn backoff_doubles_from_the_first_wait_up_to_the_deadline() {
        let policy = DeliveryPolicy {
            max_attempts: 5,
            deadline: Duration::from_secs(1),
            first_backoff: Duration::from_millis(200),
        };
        let waits: Vec<u128> = (2..=6).map(|n| policy.backoff(n).as_millis()).collect();
        assert_eq!(waits, [200, 400, 800, 1000, 1000]);
    }
}
