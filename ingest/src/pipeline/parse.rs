//! Parse: read the uploaded object, extract its text, store the text under
//! `parsed/`, and send the job to chunk. Text, markdown, HTML and PDF text
//! layers are parsed here; extensions configured for LlamaParse are uploaded
//! to it and checked on with delayed messages until its markdown is ready.

use super::{Pipeline, RemoteParser, job_in_state};
use crate::parsing::{self, StoredText, layout::Layout};
use bytes::Bytes;
use docpipe_aws::llamaparse::JobStatus;
use docpipe_aws::queue::{Stage, StageMessage};
use docpipe_core::cost::ledger;
use docpipe_core::cost::{self, Allowance, Spend, reservation::SETTLE_PATIENCE};
use docpipe_core::domain::keys;
use docpipe_core::domain::state::JobState;
use docpipe_core::error::{Rejection, Result};
use docpipe_core::store::jobs::{self, Job};
use std::time::Duration;

/// A document's text, however it was parsed.
struct Parsed {
    text: StoredText,
    format: String,
    pages: Option<u32>,
    /// Pages LlamaParse billed, and the requests it took.
    billed: Option<(u32, u32)>,
}

pub async fn parse(pipeline: &Pipeline, message: &StageMessage) -> Result<Option<JobState>> {
    let Some(job) = job_in_state(pipeline, message.job_id, JobState::Queued, "parse").await? else {
        return Ok(None);
    };
    let remote = pipeline
        .parsing()?
        .llamaparse
        .as_ref()
        .filter(|remote| remote.client.handles(&job.source_key));
    let parsed = match remote {
        None => parse_locally(pipeline, &job).await?,
        Some(remote) => match parse_remotely(pipeline, remote, &job, message).await {
            Ok(Some(parsed)) => parsed,
            // Submitted, or still running: a check is on its way.
            Ok(None) => return Ok(None),
            Err(error) if error.is_transient() && remote.local_fallback => {
                tracing::warn!(%error, "LlamaParse unavailable; parsing locally (not production)");
                parse_locally(pipeline, &job).await?
            }
            Err(error) => return Err(error),
        },
    };
    store(pipeline, &job, message, parsed).await
}

async fn parse_locally(pipeline: &Pipeline, job: &Job) -> Result<Parsed> {
    let read = pipeline.blobs.get(&job.source_key, pipeline.max_file_bytes);
    let document = pipeline
        .parsing()?
        .sandbox
        .parse(&job.source_key, read)
        .await?;
    Ok(Parsed {
        format: document.format.name().to_string(),
        pages: document.pages,
        text: StoredText {
            markdown: document.format.is_markdown(),
            layout: document.layout,
            text: document.text,
        },
        billed: None,
    })
}

/// Submits the document, or checks on it; its text once LlamaParse is done.
async fn parse_remotely(
    pipeline: &Pipeline,
    remote: &RemoteParser,
    job: &Job,
    message: &StageMessage,
) -> Result<Option<Parsed>> {
    let attempt = match message.stage {
        Stage::ParseCheck { attempt } => attempt,
        _ => 0,
    };
    let Some(request_id) = &job.parse_request_id else {
        submit(pipeline, remote, job, message).await?;
        return Ok(None);
    };
    let waited = job
        .parse_requested_at
        .and_then(|at| at.elapsed().ok())
        .unwrap_or_default();
    if waited > remote.job_timeout {
        unbilled(pipeline, job).await?;
        return Err(Rejection::ParseTimedOut {
            secs: remote.job_timeout.as_secs(),
        }
        .into());
    }
    match remote.client.status(request_id).await? {
        JobStatus::Pending => {
            // Still working: not stuck, as far as the sweeper is concerned.
            jobs::touch(&pipeline.db.get().await?, job.id).await?;
            let delay = poll_delay(remote, attempt + 1);
            tracing::info!(
                request_id,
                attempt,
                delay_secs = delay.as_secs(),
                "LlamaParse still parsing"
            );
            let check = message.next(Stage::ParseCheck {
                attempt: attempt + 1,
            });
            pipeline.queue.send_later(check, delay).await?;
            Ok(None)
        }
        JobStatus::Failed(detail) => {
            unbilled(pipeline, job).await?;
            Err(Rejection::ParseFailed { detail }.into())
        }
        JobStatus::Done => {
            let result = remote.client.result(request_id).await?;
            // LlamaParse's text is held to PARSE_MAX_CHARS like any other.
            let bounds = pipeline
                .parsing()?
                .sandbox
                .limits()
                .bounds(docpipe_core::domain::format::Format::Text, 0);
            let checked = parsing::check_length(result.markdown.chars().count(), &bounds);
            if checked.is_err() {
                // Parsed, and so billed, though the text is refused.
                let spend = llamaparse_spend(pipeline, job, result.pages, attempt + 2);
                ledger::settle_job(&pipeline.db.get().await?, &spend).await?;
            }
            checked?;
            let layout = Layout {
                headings: parsing::layout::markdown_headings(&result.markdown),
                ..Layout::default()
            };
            Ok(Some(Parsed {
                text: StoredText {
                    markdown: true,
                    layout,
                    text: result.markdown,
                },
                format: "llamaparse".into(),
                pages: Some(result.pages),
                // The upload, each check, and the result.
                billed: Some((result.pages, attempt + 2)),
            }))
        }
    }
}

/// Doubling from the first delay up to the longest, per check.
fn poll_delay(remote: &RemoteParser, attempt: u32) -> Duration {
    let factor = 2u32.saturating_pow(attempt.saturating_sub(1).min(16));
    remote
        .first_poll_delay
        .saturating_mul(factor)
        .min(remote.max_poll_delay)
}

/// Uploads the document once, however often this message is delivered:
/// the job is claimed first, and a claim older than ten minutes (its holder
/// died) may be taken over. No connection is held across the upload: a slow
/// LlamaParse would hold it from every other document.
async fn submit(
    pipeline: &Pipeline,
    remote: &RemoteParser,
    job: &Job,
    message: &StageMessage,
) -> Result<()> {
    let db = &pipeline.db;
    // Pages are known once parsed: one is reserved, and the result settles it.
    let estimate = llamaparse_spend(pipeline, job, 1, 1);
    let allowance = Allowance::Tenant(&job.tenant);
    let reservation = cost::reserve(db, &pipeline.cost, allowance, &[estimate]).await?;
    if !jobs::claim_parse_request(&db.get().await?, job.id).await? {
        tracing::info!("another delivery is submitting this document to LlamaParse");
        reservation.cancel(db).await;
        return Ok(());
    }
    let bytes: Bytes = pipeline
        .blobs
        .get(&job.source_key, pipeline.max_file_bytes)
        .await?;
    let name = keys::file_name(&job.source_key);
    let request_id = match remote.client.submit(name, bytes).await {
        Ok(id) => id,
        Err(error) => {
            reservation.cancel(db).await;
            jobs::release_parse_request(&db.get().await?, job.id).await?;
            return Err(error);
        }
    };
    // Left open: the result, in a later message, settles it (`store`).
    drop(reservation);
    // The upload is paid for: its record waits out a database outage, or
    // the claim would hold the document back and a later delivery pay again.
    docpipe_core::db::outlast_outage(SETTLE_PATIENCE, || async {
        jobs::set_parse_request(&db.get().await?, job.id, &request_id).await
    })
    .await?;
    tracing::info!(%request_id, "submitted to LlamaParse");
    let check = message.next(Stage::ParseCheck { attempt: 1 });
    pipeline
        .queue
        .send_later(check, remote.first_poll_delay)
        .await
}

async fn store(
    pipeline: &Pipeline,
    job: &Job,
    message: &StageMessage,
    parsed: Parsed,
) -> Result<Option<JobState>> {
    let job_id = job.id;
    let parsed_key = keys::parsed_key(&job.tenant, job_id);
    let chars = parsed.text.text.chars().count() as i64;
    let detail = serde_json::json!({
        "format": parsed.format,
        "chars": chars,
        "pages": parsed.pages,
    });
    pipeline
        .blobs
        .put(&parsed_key, parsed.text.to_bytes())
        .await?;

    let mut client = pipeline.db.get().await?;
    let tx = client.transaction().await?;
    if !jobs::transition(&tx, job_id, JobState::Queued, JobState::Parsed, detail).await? {
        // The document was deleted while this ran: nothing tracks the text now.
        if jobs::find(&tx, job_id).await?.is_none() {
            pipeline.blobs.delete(&parsed_key).await?;
        }
        return Ok(None);
    }
    jobs::set_parsed(&tx, job_id, &parsed_key, chars).await?;
    if let Some((pages, requests)) = parsed.billed {
        let spend = llamaparse_spend(pipeline, job, pages, requests);
        ledger::settle_job(&tx, &spend).await?;
        cost::reservation::record_metrics(spend.unit, spend.units, spend.usd, requests);
    }
    tx.commit().await?;
    pipeline
        .queue
        .send(vec![message.next(Stage::Chunk)])
        .await?;
    Ok(None)
}

/// LlamaParse failed or never finished the job: it bills nothing for it.
async fn unbilled(pipeline: &Pipeline, job: &Job) -> Result<()> {
    ledger::cancel_job(&pipeline.db.get().await?, job.id, "llamaparse").await
}

/// What LlamaParse bills for `pages` of `job`'s document.
fn llamaparse_spend<'a>(pipeline: &Pipeline, job: &'a Job, pages: u32, requests: u32) -> Spend<'a> {
    Spend {
        tenant: &job.tenant,
        job_id: Some(job.id),
        service: "llamaparse",
        model: "llamaparse",
        units: i64::from(pages),
        unit: "pages",
        usd: f64::from(pages) * pipeline.cost.llamaparse_usd_per_page,
        requests,
    }
}
