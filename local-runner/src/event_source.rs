//! What Lambda's SQS event source mapping does, done locally: long-poll a
//! queue, hand each batch to the function as a real `SqsEvent`, delete the
//! records it did not report in `batchItemFailures`, and leave the rest to
//! reappear after the queue's visibility timeout (and, after
//! `maxReceiveCount` receives, to move to the dead-letter queue).

use aws_lambda_events::sqs::{SqsBatchResponse, SqsEvent, SqsMessage};
use aws_sdk_sqs::types::{DeleteMessageBatchRequestEntry, Message, MessageSystemAttributeName};
use docpipe_aws::sqs::send_one;
use docpipe_core::settings::SweepPolicy;
use docpipe_ingest::drivers::{Deployment, handlers};
use docpipe_ingest::pipeline::{ChunkStage, EmbedStage, ParseStage};
use docpipe_ingest::sync::Reconcile;
use futures::FutureExt;
use std::collections::HashSet;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinSet;

/// Which handler a queue feeds, as in the function crates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Function {
    Uploads,
    Parse,
    Chunk,
    Embed,
}

/// One queue → function mapping.
#[derive(Debug, Clone)]
pub struct EventSource {
    pub queue_url: String,
    pub queue_arn: String,
    pub function: Function,
    /// Records per invocation (SQS allows 1–10 per receive).
    pub batch_size: i32,
    /// Concurrent invocations, like the mapping's maximum concurrency.
    pub concurrency: usize,
    /// Long-poll wait per receive, 0–20 s.
    pub wait_secs: i32,
    /// A drill: S3's notifications on this queue are deleted unread, as if
    /// lost on the way (a sync's and the reconcile's messages still go).
    pub lose_notifications: bool,
}

/// Whether `record` is an S3 notification of changed objects.
fn is_notification(record: &SqsMessage) -> bool {
    let body = record.body.as_deref().unwrap_or_default();
    docpipe_aws::s3_notification::parse(body).is_ok_and(|changes| !changes.is_empty())
}

/// The Lambda view of a received SQS message.
fn record(message: Message, queue_arn: &str, region: &str) -> SqsMessage {
    let mut record = SqsMessage::default();
    record.attributes = message
        .attributes
        .unwrap_or_default()
        .into_iter()
        .map(|(name, value)| (name.as_str().to_string(), value))
        .collect();
    record.message_id = message.message_id;
    record.receipt_handle = message.receipt_handle;
    record.body = message.body;
    record.md5_of_body = message.md5_of_body;
    record.event_source = Some("aws:sqs".into());
    record.event_source_arn = Some(queue_arn.to_string());
    record.aws_region = Some(region.to_string());
    record
}

/// Receipt handles of the records the function did not report as failed.
/// An identifier that names no record of the batch fails the whole batch,
/// as Lambda does.
fn succeeded(event: &SqsEvent, response: &SqsBatchResponse) -> Vec<String> {
    let ids: HashSet<&str> = event
        .records
        .iter()
        .filter_map(|r| r.message_id.as_deref())
        .collect();
    let failed: HashSet<&str> = response
        .batch_item_failures
        .iter()
        .map(|f| f.item_identifier.as_str())
        .collect();
    if !failed.is_subset(&ids) {
        return Vec::new();
    }
    event
        .records
        .iter()
        .filter(|r| !failed.contains(r.message_id.as_deref().unwrap_or_default()))
        .filter_map(|r| r.receipt_handle.clone())
        .collect()
}

/// One invocation. A panic fails the whole batch, as a crashed Lambda
/// invocation does, instead of ending the poller.
async fn invoke(deployment: &Deployment, function: Function, event: &SqsEvent) -> SqsBatchResponse {
    let handled = match function {
        Function::Uploads => handlers::handle_upload_events(deployment, event.clone()).boxed(),
        Function::Parse => {
            handlers::handle_stage_events::<ParseStage>(deployment, event.clone()).boxed()
        }
        Function::Chunk => {
            handlers::handle_stage_events::<ChunkStage>(deployment, event.clone()).boxed()
        }
        Function::Embed => {
            handlers::handle_stage_events::<EmbedStage>(deployment, event.clone()).boxed()
        }
    };
    AssertUnwindSafe(handled)
        .catch_unwind()
        .await
        .unwrap_or_else(|_| {
            tracing::error!("handler panicked; the whole batch will be retried");
            let mut all_failed = SqsBatchResponse::default();
            all_failed.set_failures(event.records.iter().filter_map(|r| r.message_id.clone()));
            all_failed
        })
}

async fn poll(deployment: Arc<Deployment>, sqs: aws_sdk_sqs::Client, source: EventSource) {
    let region = sqs
        .config()
        .region()
        .map(|r| r.to_string())
        .unwrap_or_default();
    loop {
        let received = sqs
            .receive_message()
            .queue_url(&source.queue_url)
            .max_number_of_messages(source.batch_size)
            .wait_time_seconds(source.wait_secs)
            .message_system_attribute_names(MessageSystemAttributeName::All)
            .send()
            .await;
        let messages = match received {
            Ok(out) => out.messages.unwrap_or_default(),
            Err(e) => {
                tracing::warn!(queue = %source.queue_url, error = %aws_sdk_sqs::error::DisplayErrorContext(e), "receive failed");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        if messages.is_empty() {
            continue;
        }
        let mut event = SqsEvent::default();
        event.records = messages
            .into_iter()
            .map(|m| record(m, &source.queue_arn, &region))
            .collect();
        let mut done = Vec::new();
        if source.lose_notifications {
            let (lost, kept): (Vec<SqsMessage>, _) =
                event.records.into_iter().partition(is_notification);
            event.records = kept;
            tracing::warn!(count = lost.len(), "S3 notifications lost (drill)");
            done.extend(lost.into_iter().filter_map(|r| r.receipt_handle));
        }
        if !event.records.is_empty() {
            let response = invoke(&deployment, source.function, &event).await;
            done.extend(succeeded(&event, &response));
        }
        for batch in done.chunks(10) {
            let entries = batch
                .iter()
                .enumerate()
                .map(|(i, handle)| {
                    DeleteMessageBatchRequestEntry::builder()
                        .id(i.to_string())
                        .receipt_handle(handle)
                        .build()
                        .expect("id and receipt handle are set")
                })
                .collect();
            if let Err(e) = sqs
                .delete_message_batch()
                .queue_url(&source.queue_url)
                .set_entries(Some(entries))
                .send()
                .await
            {
                // The messages come back and are handled again: idempotent.
                tracing::warn!(error = %aws_sdk_sqs::error::DisplayErrorContext(e), "delete failed");
            }
        }
    }
}

/// The sweeper's schedule: how often, and its policy.
pub struct Sweeps {
    pub every: Duration,
    pub policy: SweepPolicy,
}

/// The reconcile's schedule, as the template's EventBridge schedule: how
/// often it sends `{"reconcile": {}}` to the uploads queue.
pub struct Reconciles {
    pub every: Duration,
    pub uploads_queue_url: String,
}

/// What the runner does on a schedule besides polling.
#[derive(Default)]
pub struct Schedules {
    pub sweeps: Option<Sweeps>,
    pub reconciles: Option<Reconciles>,
}

/// Starts polling every source, sweeping and reconciling on their
/// schedules if set. Runs until the returned tasks are aborted (or dropped).
pub fn start(
    deployment: Arc<Deployment>,
    sqs: aws_sdk_sqs::Client,
    sources: Vec<EventSource>,
    schedules: Schedules,
) -> JoinSet<()> {
    let mut tasks = JoinSet::new();
    for source in sources {
        for _ in 0..source.concurrency.max(1) {
            tasks.spawn(poll(deployment.clone(), sqs.clone(), source.clone()));
        }
    }
    if let Some(Reconciles {
        every,
        uploads_queue_url,
    }) = schedules.reconciles
    {
        let sqs = sqs.clone();
        tasks.spawn(async move {
            let mut ticks = tokio::time::interval(every);
            loop {
                ticks.tick().await;
                let message = Reconcile::default().message();
                let sent = send_one(&sqs, &uploads_queue_url, message, Duration::ZERO).await;
                if let Err(error) = sent {
                    tracing::warn!(%error, "the reconcile's message was not sent");
                }
            }
        });
    }
    if let Some(Sweeps { every, policy }) = schedules.sweeps {
        tasks.spawn(async move {
            let mut ticks = tokio::time::interval(every);
            loop {
                ticks.tick().await;
                if let Err(error) = handlers::handle_schedule(&deployment, &policy).await {
                    tracing::warn!(%error, "sweep failed");
                }
            }
        });
    }
    tasks
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(ids: &[&str]) -> SqsEvent {
        let mut event = SqsEvent::default();
        event.records = ids
            .iter()
            .map(|id| {
                let mut record = SqsMessage::default();
                record.message_id = Some(id.to_string());
                record.receipt_handle = Some(format!("handle-{id}"));
                record
            })
            .collect();
        event
    }

    fn failing(ids: &[&str]) -> SqsBatchResponse {
        let mut response = SqsBatchResponse::default();
        response.set_failures(ids.iter().copied());
        response
    }

    #[test]
    fn only_unreported_records_are_deleted() {
        let batch = event(&["a", "b", "c"]);
        assert_eq!(
            succeeded(&batch, &failing(&[])),
            ["handle-a", "handle-b", "handle-c"]
        );
        assert_eq!(
            succeeded(&batch, &failing(&["b"])),
            ["handle-a", "handle-c"]
        );
        assert!(succeeded(&batch, &failing(&["a", "b", "c"])).is_empty());
    }

    #[test]
    fn an_unknown_or_empty_identifier_fails_the_whole_batch() {
        let batch = event(&["a", "b"]);
        assert!(succeeded(&batch, &failing(&["zzz"])).is_empty());
        assert!(succeeded(&batch, &failing(&[""])).is_empty());
    }
}
