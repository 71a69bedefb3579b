//! Ingest: an object appeared under `uploads/<tenant>/…`; record its document
//! and job idempotently and send it to parse.

use super::Pipeline;
use super::metadata::sidecar_changed;
use docpipe_aws::queue::{Stage, StageMessage};
use docpipe_core::domain::keys::{UploadKey, sidecar_key};
use docpipe_core::domain::state::JobState;
use docpipe_core::domain::{ids, metadata};
use docpipe_core::error::{Error, Rejection, Result};
use docpipe_core::ops::metrics::{self, Metric};
use docpipe_core::store::documents;
use docpipe_core::store::jobs::{self, NewJob};
use tracing::Instrument;
use uuid::Uuid;

/// What ingest did with an object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// First time this content was seen for this key.
    New,
    /// The same content as the document's latest version: nothing to do.
    Unchanged,
    /// Processed again: content seen before (but not latest) came back, or
    /// the latest content failed and was uploaded again.
    Requeued,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ingested {
    pub document_id: Uuid,
    pub job_id: Uuid,
    pub state: JobState,
    pub change: Change,
    /// The job's error code if ingest failed it (an object over
    /// `MAX_FILE_BYTES` is never read).
    pub failure: Option<&'static str>,
}

/// The span around handling one upload notification: every line logged for
/// it carries the key and the correlation id its stage messages will carry.
pub fn upload_span(key: &str, correlation_id: &str) -> tracing::Span {
    tracing::info_span!("upload", key, correlation_id)
}

/// Records the object at `key` (an upload) as a document and job, and sends
/// new work to parse. `correlation_id` names the upload in every later log
/// line. One metrics line (`Stage` ingest) counts it.
pub async fn ingest(pipeline: &Pipeline, key: &str, correlation_id: &str) -> Result<Ingested> {
    let work = async {
        let ingested = record_upload(pipeline, key, correlation_id).await;
        match &ingested {
            Ok(done) if done.state == JobState::Queued => {
                metrics::add(Metric::DocumentsIngested, 1.0)
            }
            Ok(_) => {}
            Err(error) => metrics::error(error.kind()),
        }
        ingested
    };
    metrics::scope("ingest", work.instrument(upload_span(key, correlation_id))).await
}

async fn record_upload(pipeline: &Pipeline, key: &str, correlation_id: &str) -> Result<Ingested> {
    let tenant = UploadKey::parse(key)?.tenant();
    let document_id = ids::document_id(tenant, key);
    let object = pipeline.blobs.head(key).await?;
    let (object_metadata, ignored) = metadata::from_object(&object.user_metadata);
    if !ignored.is_empty() {
        tracing::warn!(
            ?ignored,
            "S3 user metadata left out of the attributes: reserved or over a limit"
        );
    }
    let too_large = object.size > pipeline.max_file_bytes;
    let content_sha256 = if too_large {
        // Never read an oversized object; its version identifies it instead.
        ids::sha256(format!("unread:{}", object.version).as_bytes())
    } else {
        pipeline.blobs.sha256(key, pipeline.max_file_bytes).await?
    };
    let job_id = ids::job_id(document_id, &content_sha256);

    let mut client = pipeline.db.get().await?;
    let tx = client.transaction().await?;
    // Ingests of one key, and its sidecar's changes, take turns.
    documents::lock_key(&tx, key).await?;
    let previous = documents::upsert(&tx, document_id, tenant, key).await?;
    documents::set_object_metadata(&tx, document_id, &object_metadata).await?;
    documents::set_object_version(&tx, document_id, &object.version).await?;
    documents::refresh_metadata(&tx, document_id).await?;
    let new_job = NewJob {
        id: job_id,
        document_id,
        tenant,
        source_key: key,
        content_sha256: &content_sha256,
        size_bytes: object.size,
        correlation_id,
    };
    let (mut state, change) = if jobs::create(&tx, &new_job).await? {
        (JobState::Queued, Change::New)
    } else {
        // The insert conflicted, so the job exists unless it was deleted since.
        let job = jobs::lock(&tx, job_id)
            .await?
            .ok_or_else(|| Error::Transient(format!("job {job_id} vanished during ingest")))?;
        // Uploading a failed document again retries it (the way to reprocess
        // one); a completed one with the same content is left as it is.
        let retry = job.state == JobState::Failed;
        if retry || (previous != Some(job_id) && job.state.is_terminal()) {
            let why = if retry {
                "uploaded again after failing"
            } else {
                "content uploaded again"
            };
            jobs::requeue(&tx, job_id, job.state, why, correlation_id).await?;
            (JobState::Queued, Change::Requeued)
        } else {
            (job.state, Change::Unchanged)
        }
    };
    if previous != Some(job_id) {
        documents::set_latest_job(&tx, document_id, job_id).await?;
        if let Some(older) = previous
            && let Some(older) = jobs::lock(&tx, older).await?
            && !older.state.is_terminal()
        {
            let detail = serde_json::json!({ "by_job": job_id });
            jobs::transition(&tx, older.id, older.state, JobState::Superseded, detail).await?;
        }
    }
    let mut failure = None;
    if too_large && state == JobState::Queued {
        let reason = Rejection::TooLarge {
            size: object.size,
            limit: pipeline.max_file_bytes,
        };
        jobs::fail_in(&tx, job_id, state, &reason).await?;
        metrics::error(reason.code());
        failure = Some(reason.code());
        metrics::add(Metric::JobsFailed, 1.0);
        state = JobState::Failed;
    }
    tx.commit().await?;

    if state == JobState::Queued {
        send_to_parse(pipeline, job_id, correlation_id).await?;
    }
    tracing::info!(%job_id, %state, ?change, "ingested");
    Ok(Ingested {
        document_id,
        job_id,
        state,
        change,
        failure,
    })
}

/// What a delete notification did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Removal {
    /// The document, its jobs, chunks, vectors and parsed text are gone.
    Removed { document_id: Uuid, jobs: usize },
    /// No document had this key.
    Unknown,
    /// The object exists again (uploaded after the delete): nothing removed.
    StillExists,
}

/// Forgets the document at `key` after its object was deleted: its rows go
/// (chunks, vectors, jobs, events cascade) and so does its parsed text.
/// Stage messages still in flight for its jobs then find no job and are
/// acknowledged. Vectors in `embedding_cache` stay: they hold no text.
pub async fn remove(pipeline: &Pipeline, key: &str) -> Result<Removal> {
    let tenant = UploadKey::parse(key)?.tenant();
    // Notifications can arrive out of order: only forget a document whose
    // object is really gone.
    match pipeline.blobs.head(key).await {
        Ok(_) => return Ok(Removal::StillExists),
        Err(Error::Rejected(Rejection::ObjectMissing { .. })) => {}
        Err(other) => return Err(other),
    }
    let document_id = ids::document_id(tenant, key);
    let mut client = pipeline.db.get().await?;
    let tx = client.transaction().await?;
    if documents::lock(&tx, document_id).await?.is_none() {
        return Ok(Removal::Unknown);
    }
    let parsed = jobs::parsed_keys(&tx, document_id).await?;
    // Parsed text first: if the commit then fails, the retried delete finds
    // the rows and finishes; the other order could leave text nobody tracks.
    for parsed_key in parsed.iter().flatten() {
        pipeline.blobs.delete(parsed_key).await?;
    }
    documents::delete(&tx, document_id).await?;
    tx.commit().await?;
    Ok(Removal::Removed {
        document_id,
        jobs: parsed.len(),
    })
}

/// Deletes an upload and everything made from it, its metadata sidecar
/// included, as their S3 delete notifications would (which may still come,
/// and then find nothing).
pub async fn delete_upload(pipeline: &Pipeline, key: &str) -> Result<Removal> {
    let sidecar = sidecar_key(key);
    pipeline.blobs.delete(&sidecar).await?;
    sidecar_changed(pipeline, &sidecar).await?;
    pipeline.blobs.delete(key).await?;
    remove(pipeline, key).await
}

/// What a reprocess request did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reprocess {
    /// The latest job is queued again from the start (cached vectors make it cheap).
    Queued(Uuid),
    /// The latest job is still running: nothing done.
    Running(JobState),
    /// No such document.
    Unknown,
}

/// Runs the document's latest job again, unless it is still running.
pub async fn reprocess(
    pipeline: &Pipeline,
    document_id: Uuid,
    correlation_id: &str,
) -> Result<Reprocess> {
    let mut client = pipeline.db.get().await?;
    let tx = client.transaction().await?;
    // Lock order everywhere: document, then job.
    let latest = documents::lock(&tx, document_id).await?;
    let Some(job) = (match latest.flatten() {
        Some(job_id) => jobs::lock(&tx, job_id).await?,
        None => None,
    }) else {
        return Ok(Reprocess::Unknown);
    };
    if !job.state.is_terminal() {
        return Ok(Reprocess::Running(job.state));
    }
    jobs::requeue(
        &tx,
        job.id,
        job.state,
        "reprocess requested",
        correlation_id,
    )
    .await?;
    tx.commit().await?;
    send_to_parse(pipeline, job.id, correlation_id).await?;
    Ok(Reprocess::Queued(job.id))
}

/// Starts a queued job: its first stage message.
pub(crate) async fn send_to_parse(
    pipeline: &Pipeline,
    job_id: Uuid,
    correlation_id: &str,
) -> Result<()> {
    let message = StageMessage::new(job_id, correlation_id, Stage::Parse);
    pipeline.queue.send(vec![message]).await
}
