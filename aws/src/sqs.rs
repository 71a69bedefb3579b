//! The stage queues in SQS, and their depths. An emulator is reached the
//! same way, through `AWS_ENDPOINT_URL`; nothing here knows it.

use crate::queue::{Queue, Stage, StageMessage};
use crate::transient;
use async_trait::async_trait;
use aws_sdk_sqs::types::SendMessageBatchRequestEntry;
use docpipe_core::error::{Error, Result};
use docpipe_core::settings::QueueUrls;
use std::time::Duration;

/// SQS takes at most ten messages per batch call.
const SQS_BATCH_LIMIT: usize = 10;

/// Stage messages to their SQS queues, as JSON bodies.
#[derive(Debug, Clone)]
pub struct SqsQueue {
    client: aws_sdk_sqs::Client,
    urls: QueueUrls,
}

impl SqsQueue {
    pub fn new(client: aws_sdk_sqs::Client, urls: QueueUrls) -> Self {
        SqsQueue { client, urls }
    }

    fn url_for(&self, stage: Stage) -> &str {
        match stage {
            Stage::Parse | Stage::ParseCheck { .. } => &self.urls.parse,
            Stage::Chunk => &self.urls.chunk,
            Stage::Embed { .. } => &self.urls.embed,
        }
    }
}

#[async_trait]
impl Queue for SqsQueue {
    async fn send(&self, messages: Vec<StageMessage>) -> Result<()> {
        let mut by_queue: Vec<(&str, Vec<&StageMessage>)> = Vec::new();
        for message in &messages {
            let url = self.url_for(message.stage);
            match by_queue.iter_mut().find(|(u, _)| *u == url) {
                Some((_, group)) => group.push(message),
                None => by_queue.push((url, vec![message])),
            }
        }
        for (url, group) in by_queue {
            for batch in group.chunks(SQS_BATCH_LIMIT) {
                let entries = batch
                    .iter()
                    .enumerate()
                    .map(|(i, message)| {
                        let body = serde_json::to_string(message)
                            .map_err(|e| Error::transient("encoding a stage message", e))?;
                        SendMessageBatchRequestEntry::builder()
                            .id(i.to_string())
                            .message_body(body)
                            .build()
                            .map_err(|e| Error::transient("building an SQS entry", e))
                    })
                    .collect::<Result<Vec<_>>>()?;
                let sent = self
                    .client
                    .send_message_batch()
                    .queue_url(url)
                    .set_entries(Some(entries))
                    .send()
                    .await
                    .map_err(|e| transient("SQS SendMessageBatch", e))?;
                // Partial failures are retried by the caller's redelivery; the
                // messages already sent are harmless duplicates then.
                if let Some(failed) = sent.failed().first() {
                    return Err(Error::Transient(format!(
                        "SQS SendMessageBatch: {} of {} messages failed, first: {} {}",
                        sent.failed().len(),
                        batch.len(),
                        failed.code(),
                        failed.message().unwrap_or_default()
                    )));
                }
            }
        }
        Ok(())
    }

    async fn send_later(&self, message: StageMessage, delay: Duration) -> Result<()> {
        let body = serde_json::to_string(&message)
            .map_err(|e| Error::transient("encoding a stage message", e))?;
        self.client
            .send_message()
            .queue_url(self.url_for(message.stage))
            .message_body(body)
            .delay_seconds(delay.min(crate::queue::MAX_DELAY).as_secs() as i32)
            .send()
            .await
            .map_err(|e| transient("SQS SendMessage", e))?;
        Ok(())
    }
}

/// Messages in a queue: waiting to be received, and received but not yet deleted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct QueueDepth {
    pub waiting: u64,
    pub in_flight: u64,
    /// Sent with a delay not yet passed: LlamaParse re-checks, and messages
    /// that let another tenant go first (`pipeline::fair_share`).
    pub delayed: u64,
}

impl QueueDepth {
    /// Every message the queue holds.
    pub fn total(&self) -> u64 {
        self.waiting + self.in_flight + self.delayed
    }
}

/// Sends `body` to the queue at `url` as one message, out of sight for
/// `delay` (at most 15 minutes).
pub async fn send_one(
    sqs: &aws_sdk_sqs::Client,
    url: &str,
    body: String,
    delay: Duration,
) -> Result<()> {
    sqs.send_message()
        .queue_url(url)
        .message_body(body)
        .delay_seconds(delay.as_secs().min(900) as i32)
        .send()
        .await
        .map_err(|e| transient("SQS SendMessage", e))?;
    Ok(())
}

pub async fn queue_depth(sqs: &aws_sdk_sqs::Client, url: &str) -> Result<QueueDepth> {
    use aws_sdk_sqs::types::QueueAttributeName as A;
    let out = sqs
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(A::ApproximateNumberOfMessages)
        .attribute_names(A::ApproximateNumberOfMessagesNotVisible)
        .attribute_names(A::ApproximateNumberOfMessagesDelayed)
        .send()
        .await
        .map_err(|e| transient("SQS GetQueueAttributes", e))?;
    let count = |name: &A| {
        out.attributes()
            .and_then(|a| a.get(name))
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    };
    Ok(QueueDepth {
        waiting: count(&A::ApproximateNumberOfMessages),
        in_flight: count(&A::ApproximateNumberOfMessagesNotVisible),
        delayed: count(&A::ApproximateNumberOfMessagesDelayed),
    })
}
