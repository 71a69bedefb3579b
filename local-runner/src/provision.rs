//! Creates what the deployed stack has, in an emulator (or any account): the
//! bucket, one queue and dead-letter queue per consumer, the redrive
//! policies, and the bucket's notifications of `uploads/` to the ingest queue.
//! Every call is idempotent, so provisioning again repairs rather than fails.

use aws_sdk_s3::types::{
    Event, FilterRule, FilterRuleName, NotificationConfiguration, NotificationConfigurationFilter,
    QueueConfiguration, S3KeyFilter,
};
use aws_sdk_sqs::types::QueueAttributeName;
use docpipe_shared::config::QueueUrls;
use docpipe_shared::stages::ingest::UPLOAD_PREFIX;
use std::collections::HashMap;

pub type Error = Box<dyn std::error::Error + Send + Sync>;

/// How the queues behave; the same knobs as the SAM template's parameters.
#[derive(Debug, Clone)]
pub struct QueueSettings {
    /// Seconds a received message stays invisible (the retry delay).
    pub visibility_timeout_secs: u32,
    /// Receives before a message moves to its dead-letter queue.
    pub max_receive_count: u32,
}

/// One consumer's queue.
#[derive(Debug, Clone)]
pub struct ProvisionedQueue {
    pub url: String,
    pub arn: String,
    pub dlq_url: String,
}

#[derive(Debug, Clone)]
pub struct Resources {
    pub bucket: String,
    /// S3 notifications, consumed by `ingest`.
    pub uploads: ProvisionedQueue,
    pub parse: ProvisionedQueue,
    pub chunk: ProvisionedQueue,
    pub embed: ProvisionedQueue,
}

impl Resources {
    pub fn stage_queue_urls(&self) -> QueueUrls {
        QueueUrls {
            parse: self.parse.url.clone(),
            chunk: self.chunk.url.clone(),
            embed: self.embed.url.clone(),
        }
    }

    /// The settings functions and tools read, as `export NAME=value` lines.
    pub fn env_lines(&self) -> String {
        [
            ("DOCPIPE_BUCKET", &self.bucket),
            ("UPLOADS_QUEUE_URL", &self.uploads.url),
            ("PARSE_QUEUE_URL", &self.parse.url),
            ("CHUNK_QUEUE_URL", &self.chunk.url),
            ("EMBED_QUEUE_URL", &self.embed.url),
            ("UPLOADS_DLQ_URL", &self.uploads.dlq_url),
            ("PARSE_DLQ_URL", &self.parse.dlq_url),
            ("CHUNK_DLQ_URL", &self.chunk.dlq_url),
            ("EMBED_DLQ_URL", &self.embed.dlq_url),
        ]
        .iter()
        .map(|(name, value)| format!("export {name}={value}\n"))
        .collect()
    }
}

/// A queue's ARN, which event sources and redrive policies name it by.
pub async fn queue_arn(sqs: &aws_sdk_sqs::Client, url: &str) -> Result<String, Error> {
    let attributes = sqs
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await?;
    attributes
        .attributes()
        .and_then(|a| a.get(&QueueAttributeName::QueueArn))
        .cloned()
        .ok_or_else(|| format!("queue {url} has no ARN").into())
}

async fn queue(
    sqs: &aws_sdk_sqs::Client,
    name: &str,
    settings: &QueueSettings,
) -> Result<ProvisionedQueue, Error> {
    let dlq_url = sqs
        .create_queue()
        .queue_name(format!("{name}-dlq"))
        .attributes(QueueAttributeName::MessageRetentionPeriod, "1209600")
        .send()
        .await?
        .queue_url
        .ok_or("CreateQueue returned no URL")?;
    let dlq_arn = queue_arn(sqs, &dlq_url).await?;
    let url = sqs
        .create_queue()
        .queue_name(name)
        .send()
        .await?
        .queue_url
        .ok_or("CreateQueue returned no URL")?;
    let redrive = serde_json::json!({
        "deadLetterTargetArn": dlq_arn,
        "maxReceiveCount": settings.max_receive_count.to_string(),
    });
    sqs.set_queue_attributes()
        .queue_url(&url)
        .attributes(
            QueueAttributeName::VisibilityTimeout,
            settings.visibility_timeout_secs.to_string(),
        )
        .attributes(QueueAttributeName::RedrivePolicy, redrive.to_string())
        .send()
        .await?;
    Ok(ProvisionedQueue {
        arn: queue_arn(sqs, &url).await?,
        url,
        dlq_url,
    })
}

/// Creates (or repairs) `<prefix>-documents` and the `<prefix>-uploads`,
/// `-parse`, `-chunk`, `-embed` queues with their `-dlq`s.
pub async fn provision(
    s3: &aws_sdk_s3::Client,
    sqs: &aws_sdk_sqs::Client,
    prefix: &str,
    settings: &QueueSettings,
) -> Result<Resources, Error> {
    let bucket = format!("{prefix}-documents");
    if let Err(e) = s3.create_bucket().bucket(&bucket).send().await
        && !e
            .as_service_error()
            .is_some_and(|e| e.is_bucket_already_owned_by_you())
    {
        return Err(e.into());
    }
    let resources = Resources {
        uploads: queue(sqs, &format!("{prefix}-uploads"), settings).await?,
        parse: queue(sqs, &format!("{prefix}-parse"), settings).await?,
        chunk: queue(sqs, &format!("{prefix}-chunk"), settings).await?,
        embed: queue(sqs, &format!("{prefix}-embed"), settings).await?,
        bucket,
    };

    // S3 may only send to the uploads queue on behalf of this bucket.
    let policy = serde_json::json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Effect": "Allow",
            "Principal": {"Service": "s3.amazonaws.com"},
            "Action": "sqs:SendMessage",
            "Resource": resources.uploads.arn,
            "Condition": {"ArnLike": {"aws:SourceArn": format!("arn:aws:s3:::{}", resources.bucket)}},
        }],
    });
    sqs.set_queue_attributes()
        .queue_url(&resources.uploads.url)
        .set_attributes(Some(HashMap::from([(
            QueueAttributeName::Policy,
            policy.to_string(),
        )])))
        .send()
        .await?;

    let uploads_only = NotificationConfigurationFilter::builder()
        .key(
            S3KeyFilter::builder()
                .filter_rules(
                    FilterRule::builder()
                        .name(FilterRuleName::Prefix)
                        .value(UPLOAD_PREFIX)
                        .build(),
                )
                .build(),
        )
        .build();
    let notification = QueueConfiguration::builder()
        .id("docpipe-uploads")
        .queue_arn(&resources.uploads.arn)
        .events(Event::from("s3:ObjectCreated:*"))
        .events(Event::from("s3:ObjectRemoved:*"))
        .filter(uploads_only)
        .build()?;
    s3.put_bucket_notification_configuration()
        .bucket(&resources.bucket)
        .notification_configuration(
            NotificationConfiguration::builder()
                .queue_configurations(notification)
                .build(),
        )
        .send()
        .await?;
    Ok(resources)
}
