//! Ingest: an object appeared under `uploads/<tenant>/…`; record its document
//! and job idempotently and send it to parse.

use super::Pipeline;
use crate::error::{Error, Rejection, Result};
use crate::ids;
use crate::jobs::{self, NewJob};
use crate::metrics::{self, Metric};
use crate::queue::{Stage, StageMessage};
use crate::state::JobState;
use tracing::Instrument;
use uuid::Uuid;

/// Where uploads live in the bucket.
pub const UPLOAD_PREFIX: &str = "uploads/";

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
}

/// Tenants name folders and rows: keep them plain.
pub fn check_tenant(tenant: &str) -> Result<(), Rejection> {
    let plain = tenant
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if (1..=64).contains(&tenant.len()) && plain {
        Ok(())
    } else {
        Err(Rejection::InvalidKey {
            key: format!("{UPLOAD_PREFIX}{tenant}/"),
            detail: "tenant must be 1-64 characters of A-Z, a-z, 0-9, '-' and '_'".into(),
        })
    }
}

/// The tenant of an upload key `uploads/<tenant>/<path>`.
pub fn tenant_of(key: &str) -> Result<&str, Rejection> {
    let invalid = |detail: &str| Rejection::InvalidKey {
        key: key.to_string(),
        detail: detail.to_string(),
    };
    if key.chars().any(char::is_control) {
        return Err(invalid(
            "control characters (NUL, newlines…) are not allowed in keys",
        ));
    }
    let rest = key
        .strip_prefix(UPLOAD_PREFIX)
        .ok_or_else(|| invalid("not under uploads/"))?;
    let (tenant, path) = rest
        .split_once('/')
        .ok_or_else(|| invalid("no tenant folder"))?;
    check_tenant(tenant)
        .map_err(|_| invalid("tenant must be 1-64 characters of A-Z, a-z, 0-9, '-' and '_'"))?;
    if path.is_empty()
        || path.ends_with('/')
        || path
            .split('/')
            .any(|s| s.is_empty() || s == "." || s == "..")
    {
        return Err(invalid(
            "path after the tenant must name a file without empty, '.' or '..' segments",
        ));
    }
    Ok(tenant)
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
    let tenant = tenant_of(key)?;
    let document_id = ids::document_id(tenant, key);
    let object = pipeline.blobs.head(key).await?;
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
    // Upserting the document locks its row: ingests of one key take turns.
    let previous: Option<Uuid> = tx
        .query_one(
            "INSERT INTO upload_pipeline.documents (id, tenant, source_key) VALUES ($1, $2, $3)
             ON CONFLICT (id) DO UPDATE SET updated_at = now()
             RETURNING latest_job_id",
            &[&document_id, &tenant, &key],
        )
        .await?
        .get(0);
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
        tx.execute(
            "UPDATE upload_pipeline.documents SET latest_job_id = $2 WHERE id = $1",
            &[&document_id, &job_id],
        )
        .await?;
        if let Some(older) = previous
            && let Some(older) = jobs::lock(&tx, older).await?
            && !older.state.is_terminal()
        {
            let detail = serde_json::json!({ "by_job": job_id });
            jobs::transition(&tx, older.id, older.state, JobState::Superseded, detail).await?;
        }
    }
    if too_large && state == JobState::Queued {
        let reason = Rejection::TooLarge {
            size: object.size,
            limit: pipeline.max_file_bytes,
        };
        jobs::fail_in(&tx, job_id, state, &reason).await?;
        metrics::error(reason.code());
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
    let tenant = tenant_of(key)?;
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
    let locked = tx
        .query_opt(
            "SELECT id FROM upload_pipeline.documents WHERE id = $1 FOR UPDATE",
            &[&document_id],
        )
        .await?;
    if locked.is_none() {
        return Ok(Removal::Unknown);
    }
    let jobs = tx
        .query(
            "SELECT parsed_key FROM upload_pipeline.upload_jobs WHERE document_id = $1",
            &[&document_id],
        )
        .await?;
    // Parsed text first: if the commit then fails, the retried delete finds
    // the rows and finishes; the other order could leave text nobody tracks.
    for parsed_key in jobs
        .iter()
        .filter_map(|row| row.get::<_, Option<String>>(0))
    {
        pipeline.blobs.delete(&parsed_key).await?;
    }
    tx.execute(
        "DELETE FROM upload_pipeline.documents WHERE id = $1",
        &[&document_id],
    )
    .await?;
    tx.commit().await?;
    Ok(Removal::Removed {
        document_id,
        jobs: jobs.len(),
    })
}

/// Deletes an upload and everything made from it, as its S3 delete
/// notification would (which may still come, and then finds nothing).
pub async fn delete_upload(pipeline: &Pipeline, key: &str) -> Result<Removal> {
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
    let latest: Option<Option<Uuid>> = tx
        .query_opt(
            "SELECT latest_job_id FROM upload_pipeline.documents WHERE id = $1 FOR UPDATE",
            &[&document_id],
        )
        .await?
        .map(|row| row.get(0));
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
async fn send_to_parse(pipeline: &Pipeline, job_id: Uuid, correlation_id: &str) -> Result<()> {
    let message = StageMessage {
        job_id,
        correlation_id: correlation_id.to_string(),
        stage: Stage::Parse,
    };
    pipeline.queue.send(vec![message]).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upload_keys_name_a_tenant_and_a_file() {
        assert_eq!(tenant_of("uploads/acme/a.txt"), Ok("acme"));
        assert_eq!(
            tenant_of("uploads/acme-2_x/dir/sub dir/ü.md"),
            Ok("acme-2_x")
        );
        for bad in [
            "parsed/acme/a.txt",
            "uploads/a.txt",
            "uploads//a.txt",
            "uploads/ac me/a.txt",
            "uploads/acme/",
            "uploads/acme/../other/a.txt",
            "uploads/acme/./a.txt",
            "uploads/acme/dir//a.txt",
            "uploads/acme/a\0.txt",
            "uploads/acme/a\n.txt",
            "uploads/acme/\u{7f}.txt",
        ] {
            assert!(
                matches!(tenant_of(bad), Err(Rejection::InvalidKey { .. })),
                "{bad}"
            );
        }
        assert!(check_tenant(&"t".repeat(65)).is_err());
        assert!(check_tenant("").is_err());
    }
}
