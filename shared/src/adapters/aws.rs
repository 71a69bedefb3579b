//! The blob store and queue in AWS: S3 and SQS through the SDK. Emulators are
//! reached the same way, through `AWS_ENDPOINT_URL`; nothing here knows them.

use crate::adapters::blob::{BlobStore, ObjectInfo, check_size};
use crate::adapters::queue::{Queue, Stage, StageMessage};
use async_trait::async_trait;
use aws_config::BehaviorVersion;
use aws_config::timeout::TimeoutConfig;
use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_sqs::types::SendMessageBatchRequestEntry;
use bytes::Bytes;
use docpipe_core::error::{Error, Rejection, Result};
use docpipe_core::external::Failure;
use docpipe_core::settings::QueueUrls;
use sha2::{Digest, Sha256};
use std::time::Duration;

/// SQS takes at most ten messages per batch call.
const SQS_BATCH_LIMIT: usize = 10;

/// Shared SDK settings: region, credentials and endpoint from the standard
/// sources, and timeouts on every call (long enough for a 20 s SQS long poll).
pub async fn sdk_config() -> aws_config::SdkConfig {
    let timeouts = TimeoutConfig::builder()
        .connect_timeout(Duration::from_secs(5))
        .operation_attempt_timeout(Duration::from_secs(40))
        .operation_timeout(Duration::from_secs(120))
        .build();
    aws_config::defaults(BehaviorVersion::latest())
        .http_client(docpipe_core::ops::tls::aws_http_client())
        .timeout_config(timeouts)
        .load()
        .await
}

/// [`sdk_config`] with the SDK's own retries off, for the clients of an
/// [`ExternalService`](docpipe_core::external::ExternalService) (Bedrock): it
/// retries with its breaker and limiter, and two layers would multiply attempts.
pub async fn sdk_config_without_retries() -> aws_config::SdkConfig {
    sdk_config()
        .await
        .into_builder()
        .retry_config(aws_config::retry::RetryConfig::disabled())
        .build()
}

/// What a Bedrock service error means, by its code (the same for each of
/// Bedrock's APIs): throttling and an exceeded quota ("resubmit later", in
/// Bedrock's words) are a rate limit; a request refused for itself
/// (validation, access, an unknown model) is final, turned into `rejected`;
/// the rest is the service being unwell.
pub fn bedrock_failure(
    error: &impl ProvideErrorMetadata,
    rejected: impl FnOnce(String) -> Error,
) -> Failure {
    let code = error.code().unwrap_or("error");
    let message = docpipe_core::ops::redact::credentials(error.message().unwrap_or_default());
    let detail = format!("{code}: {message}");
    match code {
        "ThrottlingException" | "ServiceQuotaExceededException" => {
            Failure::RateLimited(Error::Transient(detail), None)
        }
        "ValidationException" | "AccessDeniedException" | "ResourceNotFoundException" => {
            Failure::Rejected(rejected(detail))
        }
        _ => Failure::Unavailable(Error::Transient(detail)),
    }
}

/// The ARN of Bedrock foundation model `model` in `region`, in the region's
/// partition (China and GovCloud regions are partitions of their own).
pub fn foundation_model_arn(region: &str, model: &str) -> String {
    let partition = match region {
        r if r.starts_with("cn-") => "aws-cn",
        r if r.starts_with("us-gov-") => "aws-us-gov",
        r if r.starts_with("us-isob-") => "aws-iso-b",
        r if r.starts_with("us-iso-") => "aws-iso",
        _ => "aws",
    };
    format!("arn:{partition}:bedrock:{region}::foundation-model/{model}")
}

/// An S3 client; `force_path_style` for emulators (see [`docpipe_core::settings::AwsConfig`]).
pub fn s3_client(sdk: &aws_config::SdkConfig, force_path_style: bool) -> aws_sdk_s3::Client {
    let s3 = aws_sdk_s3::config::Builder::from(sdk)
        .force_path_style(force_path_style)
        .build();
    aws_sdk_s3::Client::from_conf(s3)
}

fn transient<E: std::error::Error>(context: &str, err: E) -> Error {
    Error::transient(context, DisplayErrorContext(err))
}

/// Objects in one S3 bucket.
#[derive(Debug, Clone)]
pub struct S3BlobStore {
    client: aws_sdk_s3::Client,
    bucket: String,
}

impl S3BlobStore {
    pub fn new(client: aws_sdk_s3::Client, bucket: impl Into<String>) -> Self {
        S3BlobStore {
            client,
            bucket: bucket.into(),
        }
    }

    /// The object's size and body, unread; one over `max_bytes` is refused
    /// (dropping the body closes the connection without reading it).
    async fn open(&self, key: &str, max_bytes: u64) -> Result<(u64, ByteStream)> {
        let object = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| match e.as_service_error() {
                Some(service) if service.is_no_such_key() => Rejection::ObjectMissing {
                    key: key.to_string(),
                }
                .into(),
                _ => transient("S3 GetObject", e),
            })?;
        let size = object.content_length().unwrap_or(0).max(0) as u64;
        check_size(size, max_bytes)?;
        Ok((size, object.body))
    }
}

/// Hands each part of `body` to `take` as it arrives.
async fn each_part(mut body: ByteStream, mut take: impl FnMut(&[u8])) -> Result<()> {
    while let Some(part) = body
        .try_next()
        .await
        .map_err(|e| Error::transient("S3 GetObject body", e))?
    {
        take(&part);
    }
    Ok(())
}

#[async_trait]
impl BlobStore for S3BlobStore {
    async fn head(&self, key: &str) -> Result<ObjectInfo> {
        let object = self
            .client
            .head_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| match e.as_service_error() {
                Some(service) if service.is_not_found() => Rejection::ObjectMissing {
                    key: key.to_string(),
                }
                .into(),
                _ => transient("S3 HeadObject", e),
            })?;
        Ok(ObjectInfo {
            size: object.content_length().unwrap_or(0).max(0) as u64,
            version: object.e_tag().unwrap_or_default().to_string(),
            user_metadata: object
                .metadata()
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .collect(),
        })
    }

    async fn get(&self, key: &str, max_bytes: u64) -> Result<Bytes> {
        // Into one buffer of the object's size as it streams in: collecting
        // the parts first and joining them would hold the object twice.
        let (size, body) = self.open(key, max_bytes).await?;
        let mut buffer = Vec::with_capacity(size as usize);
        each_part(body, |part| buffer.extend_from_slice(part)).await?;
        Ok(Bytes::from(buffer))
    }

    async fn sha256(&self, key: &str, max_bytes: u64) -> Result<[u8; 32]> {
        let (_, body) = self.open(key, max_bytes).await?;
        let mut hasher = Sha256::new();
        each_part(body, |part| hasher.update(part)).await?;
        Ok(hasher.finalize().into())
    }

    async fn put(&self, key: &str, body: Bytes) -> Result<()> {
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .body(ByteStream::from(body))
            .send()
            .await
            .map_err(|e| transient("S3 PutObject", e))?;
        Ok(())
    }

    async fn delete(&self, key: &str) -> Result<()> {
        self.client
            .delete_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| transient("S3 DeleteObject", e))?;
        Ok(())
    }
}

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
            .delay_seconds(delay.min(crate::adapters::queue::MAX_DELAY).as_secs() as i32)
            .send()
            .await
            .map_err(|e| transient("SQS SendMessage", e))?;
        Ok(())
    }
}

/// A URL the holder may `PUT` one object to until it expires, and the
/// headers the request must carry.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PresignedPut {
    pub url: String,
    pub method: String,
    pub headers: std::collections::BTreeMap<String, String>,
}

/// Presigns a `PUT` of `key` of exactly `size` bytes (the length is signed,
/// so S3 refuses any other body) that expires after `expires_in`.
pub async fn presign_put(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    key: &str,
    size: u64,
    expires_in: Duration,
) -> Result<PresignedPut> {
    let config = aws_sdk_s3::presigning::PresigningConfig::expires_in(expires_in)
        .map_err(|e| Error::transient("presigning config", e))?;
    let request = s3
        .put_object()
        .bucket(bucket)
        .key(key)
        .content_length(size as i64)
        .presigned(config)
        .await
        .map_err(|e| transient("presigning S3 PutObject", e))?;
    Ok(PresignedPut {
        url: request.uri().to_string(),
        method: request.method().to_string(),
        headers: request
            .headers()
            .map(|(name, value)| (name.to_string(), value.to_string()))
            .collect(),
    })
}

/// Whether the bucket exists and this role may use it.
pub async fn check_bucket(s3: &aws_sdk_s3::Client, bucket: &str) -> Result<()> {
    s3.head_bucket()
        .bucket(bucket)
        .send()
        .await
        .map_err(|e| transient("S3 HeadBucket", e))?;
    Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_s3::error::ErrorMetadata;

    fn failure(code: &str) -> Failure {
        let error = ErrorMetadata::builder()
            .code(code)
            .message("said by Bedrock")
            .build();
        bedrock_failure(&error, |detail| {
            Rejection::EmbeddingRejected { detail }.into()
        })
    }

    #[test]
    fn bedrock_errors_are_read_by_their_code() {
        for code in ["ThrottlingException", "ServiceQuotaExceededException"] {
            assert!(matches!(failure(code), Failure::RateLimited(..)), "{code}");
        }
        for code in [
            "ValidationException",
            "AccessDeniedException",
            "ResourceNotFoundException",
        ] {
            let Failure::Rejected(e) = failure(code) else {
                panic!("{code} is not final");
            };
            assert!(
                e.to_string().contains(&format!("{code}: said by Bedrock")),
                "{e}"
            );
        }
        for code in ["ModelNotReadyException", "InternalServerException", ""] {
            assert!(matches!(failure(code), Failure::Unavailable(_)), "{code}");
        }
    }

    #[test]
    fn a_foundation_model_is_named_in_its_regions_partition() {
        let model = "cohere.rerank-v3-5:0";
        for (region, partition) in [
            ("us-west-2", "aws"),
            ("eu-central-1", "aws"),
            ("cn-north-1", "aws-cn"),
            ("us-gov-west-1", "aws-us-gov"),
            ("us-iso-east-1", "aws-iso"),
            ("us-isob-east-1", "aws-iso-b"),
        ] {
            assert_eq!(
                foundation_model_arn(region, model),
                format!("arn:{partition}:bedrock:{region}::foundation-model/{model}")
            );
        }
    }
}
