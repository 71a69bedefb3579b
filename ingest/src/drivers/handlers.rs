//! What each Lambda function does with its event. The function crates wrap
//! these in `lambda_runtime`; the local runner calls them with the SQS events
//! it builds, so both run the same code.

use crate::drivers::Deployment;
use crate::drivers::delivery::{self, Verdict};
use crate::pipeline::sweeper::{self, SweepReport};
use crate::pipeline::{Stages, ingest, metadata};
use crate::sync;
use aws_lambda_events::sqs::{SqsBatchResponse, SqsEvent, SqsMessage};
use docpipe_aws::s3_notification::{self, ObjectEvent};
use docpipe_core::db;
use docpipe_core::domain::keys::sidecar_target;
use docpipe_core::error::{ConfigError, Error, Result};
use docpipe_core::ops::secrets;
use docpipe_core::settings::{DatabaseSettings, Env, SweepPolicy};
use std::time::Duration;
use tracing::Instrument;

/// Runs `handle` on every record concurrently and reports the ones that
/// failed, so only they are delivered again (`ReportBatchItemFailures`).
async fn each_record<'a, F, Fut>(event: SqsEvent, handle: F) -> SqsBatchResponse
where
    F: Fn(SqsMessage) -> Fut,
    Fut: Future<Output = bool> + 'a,
{
    let outcomes = futures::future::join_all(event.records.into_iter().map(|record| {
        let id = record.message_id.clone().unwrap_or_default();
        let done = handle(record);
        async move { (id, done.await) }
    }))
    .await;
    let mut response = SqsBatchResponse::default();
    response.set_failures(
        outcomes
            .into_iter()
            .filter(|(_, done)| !done)
            .map(|(id, _)| id),
    );
    response
}

/// How often SQS has delivered this record, counting this delivery.
fn receive_count(record: &SqsMessage) -> u32 {
    record
        .attributes
        .get("ApproximateReceiveCount")
        .and_then(|n| n.parse().ok())
        .unwrap_or(1)
}

/// `ingest`: S3 notifications (via SQS). Created objects become jobs; removed
/// ones are forgotten. A notification that cannot be read is retried and then
/// kept in the dead-letter queue for inspection.
pub async fn handle_upload_events(deployment: &Deployment, event: SqsEvent) -> SqsBatchResponse {
    each_record(event, |record| async move {
        let message_id = record.message_id.as_deref().unwrap_or_default();
        match handle_notification(deployment, &record).await {
            Ok(()) => true,
            Err(error) => {
                tracing::error!(message_id, %error, "upload notification not handled; will be retried");
                false
            }
        }
    })
    .await
}

async fn handle_notification(deployment: &Deployment, record: &SqsMessage) -> Result<()> {
    let deadline = deployment.delivery.deadline;
    delivery::isolated(deadline, handle_changes(deployment, record)).await?
}

async fn handle_changes(deployment: &Deployment, record: &SqsMessage) -> Result<()> {
    let body = record.body.as_deref().unwrap_or_default();
    if let Some(id) = sync::read_slice_message(body) {
        return sync_slice(deployment, id).await;
    }
    if let Some(page) = sync::Reconcile::read(body) {
        return reconcile(deployment, &page).await;
    }
    let changes = s3_notification::parse(body)
        .map_err(|e| Error::Transient(format!("unreadable S3 notification: {e}")))?;
    for change in changes {
        let key = change.key.as_str();
        if change.bucket != deployment.aws.bucket {
            tracing::warn!(bucket = %change.bucket, key, "notification for another bucket; ignored");
            continue;
        }
        let correlation_id = change
            .request_id
            .or_else(|| record.message_id.clone())
            .unwrap_or_default();
        let span = ingest::upload_span(key, &correlation_id);
        let outcome = match change.event {
            // Created, rewritten or deleted: the sidecar is read as it is now.
            _ if sidecar_target(key).is_some() => {
                metadata::sidecar_changed(&deployment.pipeline, key)
                    .instrument(span.clone())
                    .await
                    .map(|_| ())
            }
            ObjectEvent::Created => ingest::ingest(&deployment.pipeline, key, &correlation_id)
                .await
                .map(|_| ()),
            ObjectEvent::Removed => ingest::remove(&deployment.pipeline, key)
                .instrument(span.clone())
                .await
                .map(|removal| span.in_scope(|| tracing::info!(?removal, "object removed"))),
        };
        let _in_span = span.enter();
        match outcome {
            Ok(()) => {}
            // No job can carry these (the key names no tenant, or the object is
            // already gone): the log is the record.
            Err(Error::Rejected(reason)) => {
                tracing::warn!(code = reason.code(), %reason, "upload rejected")
            }
            Err(transient) => return Err(transient),
        }
    }
    Ok(())
}

/// One page of the scheduled reconcile: a sync of each tenant folder on it,
/// each new (or stalled) one's first slice asked for, and the next page.
async fn reconcile(deployment: &Deployment, page: &sync::Reconcile) -> Result<()> {
    let reconciled = sync::reconcile(&deployment.pipeline, page).await?;
    let mut messages: Vec<String> = reconciled
        .syncs
        .iter()
        .filter(|started| started.needs_a_slice())
        .map(|started| sync::slice_message(started.id()))
        .collect();
    tracing::info!(
        tenants = reconciled.syncs.len(),
        started = messages.len(),
        "reconcile"
    );
    messages.extend(reconciled.next.as_ref().map(sync::Reconcile::message));
    let url = uploads_queue(deployment)?;
    for message in messages {
        docpipe_aws::sqs::send_one(&deployment.sqs, url, message, Duration::ZERO).await?;
    }
    Ok(())
}

/// The uploads queue, where a sync's slices and a reconcile's pages go.
fn uploads_queue(deployment: &Deployment) -> Result<&str> {
    deployment
        .aws
        .uploads_queue_url
        .as_deref()
        .ok_or_else(|| Error::Transient("syncs need UPLOADS_QUEUE_URL".into()))
}

/// One slice of sync `id`, and a message for the next while there is more
/// (after the wait, if it waits): a sync moves through the uploads queue a
/// page at a time, each page in an invocation of its own.
async fn sync_slice(deployment: &Deployment, id: uuid::Uuid) -> Result<()> {
    let span = tracing::info_span!("sync", %id);
    let next_after = match sync::slice(&deployment.pipeline, id)
        .instrument(span.clone())
        .await?
    {
        sync::Slice::More(_) => Duration::ZERO,
        sync::Slice::Waiting(wait) => {
            span.in_scope(|| tracing::info!(%wait, "sync waits"));
            sync::wait_for(&wait)
        }
        sync::Slice::Done(counts) => {
            span.in_scope(|| tracing::info!(?counts, "sync complete"));
            return Ok(());
        }
        sync::Slice::Failed(reason) => {
            span.in_scope(|| tracing::warn!(code = reason.code(), %reason, "sync failed"));
            return Ok(());
        }
        sync::Slice::Idle => return Ok(()),
    };
    let message = sync::slice_message(id);
    docpipe_aws::sqs::send_one(
        &deployment.sqs,
        uploads_queue(deployment)?,
        message,
        next_after,
    )
    .await
}

/// `parse`, `chunk`, `embed`: one stage message per record. Transient errors
/// are retried by redelivery; on the last receive before the dead-letter
/// queue the job is failed with the error, so it says why.
pub async fn handle_stage_events<S: Stages>(
    deployment: &Deployment,
    event: SqsEvent,
) -> SqsBatchResponse {
    each_record(event, |record| async move {
        let message_id = record.message_id.as_deref().unwrap_or_default();
        let message = match delivery::decode(record.body.as_deref().unwrap_or_default()) {
            Ok(message) => message,
            Err(error) => {
                tracing::error!(message_id, %error, "will reach the dead-letter queue");
                return false;
            }
        };
        let attempt = receive_count(&record);
        let policy = &deployment.delivery;
        let verdict = delivery::stage_message::<S>(&deployment.pipeline, &message, attempt, policy);
        matches!(verdict.await, Verdict::Done(_))
    })
    .await
}

/// The process environment with the secrets it names laid over it.
pub async fn settings(sdk: &aws_config::SdkConfig) -> std::result::Result<Env, ConfigError> {
    let client = aws_sdk_secretsmanager::Client::new(sdk);
    let env = Env::from_process();
    let secrets = secrets::resolve(&client, &env).await?;
    Ok(env.overlay(secrets))
}

/// `migrate`: applies the migrations the database lacks (the deploy step
/// invokes it after each deploy).
pub async fn handle_migrate(
    config: &DatabaseSettings,
) -> std::result::Result<db::schema::MigrationReport, ConfigError> {
    let report = db::schema::migrate(config).await?;
    tracing::info!(applied = ?report.applied, "migrations applied");
    Ok(report)
}

/// `sweeper`: one sweep per scheduled invocation.
pub async fn handle_schedule(deployment: &Deployment, policy: &SweepPolicy) -> Result<SweepReport> {
    let report = sweeper::sweep(&deployment.pipeline, policy).await?;
    tracing::info!(
        resumed = report.resumed.len(),
        failed = report.failed.len(),
        "sweep done"
    );
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use docpipe_aws::queue::{Stage, StageMessage};

    fn event(json: &str) -> SqsEvent {
        serde_json::from_str(json).expect("a Lambda SQS event")
    }

    fn body(event: &SqsEvent) -> &str {
        event.records[0].body.as_deref().unwrap()
    }

    /// The bucket `scripts/local up` makes: the template's name for the stack
    /// `docpipe` in LocalStack's account and region.
    const LOCAL_BUCKET: &str = "docpipe-uploads-000000000000-us-east-1";

    /// The sample events for `cargo lambda invoke` are what the handlers read,
    /// for the bucket of the local stack (another bucket's are ignored).
    #[test]
    fn sample_events_are_valid() {
        let put = event(include_str!("../../../events/ingest-s3-put.json"));
        let changes = s3_notification::parse(body(&put)).unwrap();
        assert_eq!(changes[0].event, ObjectEvent::Created);
        assert_eq!(changes[0].key, "uploads/demo/fog signals.txt");
        assert_eq!(changes[0].bucket, LOCAL_BUCKET);
        assert_eq!(receive_count(&put.records[0]), 1);
        let delete = event(include_str!("../../../events/ingest-s3-delete.json"));
        let removed = &s3_notification::parse(body(&delete)).unwrap()[0];
        assert_eq!(removed.event, ObjectEvent::Removed);
        assert_eq!(removed.bucket, LOCAL_BUCKET);
        let test = event(include_str!("../../../events/ingest-s3-test-event.json"));
        assert_eq!(s3_notification::parse(body(&test)).unwrap(), []);
        assert!(body(&test).contains(LOCAL_BUCKET));
        for (json, stage) in [
            (include_str!("../../../events/parse.json"), "parse"),
            (include_str!("../../../events/chunk.json"), "chunk"),
            (include_str!("../../../events/embed.json"), "embed"),
        ] {
            let message: StageMessage = serde_json::from_str(body(&event(json))).unwrap();
            assert_eq!(message.stage.name(), stage);
        }
        let embed: StageMessage =
            serde_json::from_str(body(&event(include_str!("../../../events/embed.json")))).unwrap();
        assert_eq!(
            embed.stage,
            Stage::Embed {
                first_chunk: 0,
                chunk_count: 128
            }
        );
        let schedule: serde_json::Value =
            serde_json::from_str(include_str!("../../../events/sweeper-schedule.json")).unwrap();
        assert_eq!(schedule["detail-type"], "Scheduled Event");
    }
}
